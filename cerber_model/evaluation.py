"""Evaluation: how well detected tracks match the truth, for Cerber and for a classical baseline.

Detections and true centres are matched one-to-one (Hungarian assignment on
distances, scipy) within a radius (default 3 px); precision = matched / detected,
recall = matched / true, F1 their harmonic mean. The truth is the data set's
centre CSV where there is one, else the centroids of the mask's components.

The baseline is a Laplacian-of-Gaussian spot detector (TrackMate's method,
scikit-image's ``blob_log``), tuned on the same data, so every report shows where
the network stands against the classical method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .datasets import Pair, read_centres


@dataclass(frozen=True)
class Match:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / max(self.tp + self.fp, 1)

    @property
    def recall(self) -> float:
        return self.tp / max(self.tp + self.fn, 1)

    @property
    def f1(self) -> float:
        return 2 * self.tp / max(2 * self.tp + self.fp + self.fn, 1)

    def __add__(self, other: Match) -> Match:
        return Match(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def match_points(found: np.ndarray, truth: np.ndarray, radius: float = 3.0) -> Match:
    """One-to-one matching of (N, 2) detections to (M, 2) true points within ``radius`` px."""
    from scipy.optimize import linear_sum_assignment

    found = np.asarray(found, dtype=np.float64).reshape(-1, 2)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
    if len(found) == 0 or len(truth) == 0:
        return Match(0, len(found), len(truth))
    d = np.hypot(found[:, None, 0] - truth[None, :, 0], found[:, None, 1] - truth[None, :, 1])
    # Distances beyond the radius can never match; a large cost keeps them out.
    cost = np.where(d <= radius, d, 1e6)
    rows, cols = linear_sum_assignment(cost)
    tp = int(np.count_nonzero(d[rows, cols] <= radius))
    return Match(tp, len(found) - tp, len(truth) - tp)


def truth_centres(pair: Pair, mask: np.ndarray | None = None) -> np.ndarray:
    """True centres of a pair: its CSV, or the centroids of its mask's components."""
    if pair.tracks is not None:
        return read_centres(pair.tracks)
    from scipy import ndimage

    from .images import read_image

    mask = read_image(pair.mask).data > 0 if mask is None else mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    return np.array(ndimage.center_of_mass(mask, labels, range(1, n + 1))).reshape(-1, 2)


def log_detect(image: np.ndarray, sigma: float = 2.5, threshold: float = 0.05) -> np.ndarray:
    """Laplacian-of-Gaussian spot centres (N, 2) of an image normalised to 0..1 (percentiles)."""
    from skimage.feature import blob_log

    from .images import Normalization, normalize

    x = np.clip(normalize(image, Normalization()), 0, None)
    blobs = blob_log(x, min_sigma=sigma, max_sigma=sigma, num_sigma=1, threshold=threshold,
                     exclude_border=False)
    return blobs[:, :2].astype(np.float64)
