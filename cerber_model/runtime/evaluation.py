"""Evaluation: how well detected tracks match the truth, for Cerber and for a classical baseline.

Detections and true centres are matched one-to-one (Hungarian assignment on
distances, scipy) within a radius (default 3 px); precision = matched / detected,
recall = matched / true, F1 their harmonic mean. The truth is the pair's points
file (annotated points, or the generator's centres) where there is one, else the
centroids of the mask's components.

The baseline is a Laplacian-of-Gaussian spot detector (TrackMate's method: the
scale-normalised LoG response and its local maxima, with scipy and scikit-image),
tuned on the same data, so every report shows where
the network stands against the classical method.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .datasets import Pair, pair_mask
from .points import DEFAULT_POINT_RADIUS, read_points

if TYPE_CHECKING:
    from .contrast import SpotContrast
    from .regions import Regions


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
    """True centres (N, 2) of a pair: its points file, or the centroids of its mask's components."""
    if pair.points is not None:
        return read_points(pair.points).centres
    from scipy import ndimage

    from .images import read_image

    assert pair.mask is not None
    mask = read_image(pair.mask).data > 0 if mask is None else mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    return np.array(ndimage.center_of_mass(mask, labels, range(1, n + 1))).reshape(-1, 2)


def log_response(image: np.ndarray, sigma: float) -> np.ndarray:
    """Scale-normalised negative Laplacian of Gaussian of the percentile-normalised image
    (bright spots of SD ``sigma`` give peaks of about their amplitude / 2)."""
    from .contrast import log_filter
    from .images import Normalization, normalize

    return log_filter(normalize(image, Normalization()), sigma)


def log_peaks(response: np.ndarray, sigma: float, threshold: float) -> np.ndarray:
    """Spot centres (N, 2): local maxima of a LoG response above ``threshold``."""
    from skimage.feature import peak_local_max

    return peak_local_max(response, min_distance=max(1, int(round(sigma))), threshold_abs=threshold,
                          exclude_border=False).astype(np.float64)


def log_detect(image: np.ndarray, sigma: float = 2.5, threshold: float = 0.05) -> np.ndarray:
    """Laplacian-of-Gaussian spot detection (TrackMate's detector): centres (N, 2)."""
    return log_peaks(log_response(image, sigma), sigma, threshold)


@dataclass
class ImageScore:
    """One image's scores for one detector."""

    name: str
    match: Match
    true_count: int
    found_count: int
    pixel_iou: float | None = None

    @property
    def count_ratio(self) -> float:
        return self.found_count / self.true_count if self.true_count else float("nan")


@dataclass
class Evaluation:
    """Per-image and overall scores of the network and the LoG baseline on the same images."""

    radius: float
    network: list[ImageScore]
    log: list[ImageScore]
    log_settings: dict

    @staticmethod
    def overall(scores: list[ImageScore]) -> Match:
        total = Match(0, 0, 0)
        for s in scores:
            total = total + s.match
        return total

    def table(self) -> str:
        lines = [f"{'image':24s} {'detector':8s} {'P':>6s} {'R':>6s} {'F1':>6s} {'count ratio':>11s} {'IoU':>6s}"]
        for net, log in zip(self.network, self.log, strict=True):
            for label, s in (("cerber", net), ("LoG", log)):
                iou = f"{s.pixel_iou:6.3f}" if s.pixel_iou is not None else "     -"
                lines.append(f"{s.name[:24]:24s} {label:8s} {s.match.precision:6.3f} {s.match.recall:6.3f} "
                             f"{s.match.f1:6.3f} {s.count_ratio:11.3f} {iou}")
        for label, scores in (("cerber", self.network), ("LoG", self.log)):
            m = self.overall(scores)
            ratio = sum(s.found_count for s in scores) / max(sum(s.true_count for s in scores), 1)
            lines.append(f"{'OVERALL':24s} {label:8s} {m.precision:6.3f} {m.recall:6.3f} {m.f1:6.3f} {ratio:11.3f}")
        lines.append(f"matching radius {self.radius} px; LoG tuned on these images: {self.log_settings}")
        return "\n".join(lines)


LOG_SIGMAS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
LOG_THRESHOLDS = (0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.12, 0.15, 0.18, 0.25, 0.35)


#: The decision thresholds tried when one is chosen on validation images.
THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.1, 0.95, 0.05), 2))
#: A threshold that marks more than this share of pixels as track is no useful
#: operating point (tracks cover well under 1% of an image); it scores F1 = 0
#: without the cost of labelling a map-sized blob.
MAX_FOREGROUND = 0.05


#: The smallest track contrasts (noise SDs, see :mod:`.contrast`) tried with each threshold
#: when ``cerber threshold`` chooses both; 0 keeps every track.
CONTRASTS = (0.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)


@dataclass(frozen=True)
class ThresholdSweep:
    """Matches summed over images at every threshold of :data:`THRESHOLDS` and every smallest
    track contrast swept (``by_contrast[k][t]``: at threshold ``t``, keeping the tracks of
    contrast ``k`` or more), and the pixel overlap of the map at 0.5 with the masks."""

    by_contrast: dict[float, dict[float, Match]]
    intersection: int
    union: int

    @property
    def best_setting(self) -> tuple[float, float]:
        """The (threshold, smallest contrast) of the best F1 (of equal ones, the threshold
        nearest 0.5, then the smallest contrast)."""
        table = self.by_contrast
        return max(((t, k) for k, row in table.items() for t in row),
                   key=lambda tk: (table[tk[1]][tk[0]].f1, -abs(tk[0] - 0.5), -tk[1]))


def setting_matches(probability: np.ndarray, data: np.ndarray, contrast, truth: np.ndarray,
                    thresholds: tuple[float, ...], contrasts: tuple[float, ...], *, min_area_px: int,
                    grow_to: float | None = None, radius: float = 3.0, inside=None, progress=None,
                    cancel=None) -> dict[float, dict[float, Match]]:
    """One image's tracks in its ``probability`` map matched to its ``truth`` (N, 2) at every threshold
    and smallest contrast (``[k][t]``; a contrast of 0 keeps every track, as do all where ``contrast``
    is None): the tracks are found once per threshold, as analysis finds them at a setting of the
    user's (split at the image's spots, grown down to ``grow_to`` times the threshold), and each
    contrast keeps a part of them; ``inside(centres)`` (bool per row), where given, keeps the tracks
    that count (those in an image's usable area). ``progress(done, total)`` after each threshold;
    ``cancel`` is checked between thresholds and tracks."""
    from .tracks import track_centres

    out: dict[float, dict[float, Match]] = {k: {} for k in contrasts}
    for i, t in enumerate(thresholds):
        if cancel:
            cancel.check()
        if np.count_nonzero(probability >= t) > MAX_FOREGROUND * probability.size:
            for row in out.values():
                row[t] = Match(tp=0, fp=1, fn=len(truth))  # one blob: every track missed
        else:
            found, values = track_centres(probability, data, t, min_area_px, contrast, cancel=cancel, grow_to=grow_to)
            if contrast is None:
                values = np.zeros(len(found))
            if inside is not None:
                keep = inside(found)
                found, values = found[keep], values[keep]
            for k, row in out.items():
                row[t] = match_points(found[values >= k], truth, radius)
        if progress:
            progress(i + 1, len(thresholds))
    return out


#: The thresholds and smallest contrasts tried when a setting is fitted to the points of images.
FIT_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.05, 0.95, 0.05), 2))
FIT_CONTRASTS = (0.0, 3.0, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 9.0, 10.0, 12.0)


@dataclass(frozen=True)
class MarkedImage:
    """One image in a fit of the setting: its probability map, its pixels, what measuring track
    contrast on it needs (None: not measured), the marks of every spot on it (N, 2; none on an image
    without spots), the centres of the tracks found on it now (M, 2) and its usable area (None: the
    whole image), outside which neither marks nor tracks count."""

    probability: np.ndarray
    data: np.ndarray
    contrast: SpotContrast | None
    points: np.ndarray
    current: np.ndarray
    regions: Regions | None = None

    def inside(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """A function telling which of (N, 2) centres lie in the usable area; None: all do."""
        regions = self.regions
        if regions is None or regions.is_empty:
            return None
        shape = (self.data.shape[0], self.data.shape[1])
        mask = regions.mask(shape)
        return lambda centres: regions.contains(centres[:, 0], centres[:, 1], shape, mask)


@dataclass(frozen=True)
class SettingFit:
    """The threshold and smallest contrast whose tracks best match the images' points (``match``,
    summed over them), and how the tracks at the setting in use matched them (``before``);
    ``changed`` is False where no other setting matches better than that one."""

    threshold: float
    min_contrast: float
    match: Match
    before: Match

    @property
    def changed(self) -> bool:
        return self.match.f1 > self.before.f1


def fit_setting(images: Sequence[MarkedImage], threshold: float, min_contrast: float, *, min_area_px: int,
                grow_to: float | None = None, radius: float = 3.0, skip: tuple[float, float] | None = None,
                progress=None, cancel=None) -> SettingFit:
    """The setting (of :data:`FIT_THRESHOLDS` and, where every image's contrast is measured,
    :data:`FIT_CONTRASTS`) whose tracks in the ``images``' probability maps best match their points
    (every spot of each image marked; matches summed over the images), against the tracks found now
    (at ``threshold`` and ``min_contrast``). Of settings that match equally well, the one nearest the
    setting in use (a step of 0.05 in the threshold counting as one of 0.5 in the contrast): a few
    points should not move it further than they show. Where none matches better than the tracks found now, the setting
    in use. ``skip``: a setting not to choose (a model's own on an image with a clean background,
    where its setting for those applies instead of what is measured here). ``progress(done, total)``
    after each threshold tried on each image; ``cancel`` is checked between them."""
    points: list[np.ndarray] = []
    current: list[np.ndarray] = []
    inside = []
    for m in images:
        keep = m.inside()
        for kept, centres in ((points, m.points), (current, m.current)):
            centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
            kept.append(centres if keep is None else centres[keep(centres)])
        inside.append(keep)
    if sum(len(p) for p in points) == 0:
        raise ValueError("there are no points to fit a setting to: mark the spots of the image first")
    before = sum((match_points(c, p, radius) for c, p in zip(current, points, strict=True)), Match(0, 0, 0))
    contrasts = FIT_CONTRASTS if all(m.contrast is not None for m in images) else (0.0,)
    table = {k: dict.fromkeys(FIT_THRESHOLDS, Match(0, 0, 0)) for k in contrasts}
    steps = len(FIT_THRESHOLDS)
    for i, (m, p, keep) in enumerate(zip(images, points, inside, strict=True)):
        def step(done: int, _total: int, i: int = i) -> None:
            progress(i * steps + done, len(images) * steps)

        found = setting_matches(m.probability, m.data, m.contrast if contrasts != (0.0,) else None, p, FIT_THRESHOLDS,
                                contrasts, min_area_px=min_area_px, grow_to=grow_to, radius=radius, inside=keep,
                                progress=step if progress else None, cancel=cancel)
        for k, row in table.items():
            for t in FIT_THRESHOLDS:
                row[t] += found[k][t]

    def rank(tk: tuple[float, float]) -> tuple[float, float]:
        return table[tk[1]][tk[0]].f1, -abs(tk[0] - threshold) / 0.05 - abs(tk[1] - min_contrast) / 0.5

    t, k = max(((t, k) for k, row in table.items() for t in row if (t, k) != skip), key=rank)
    best = table[k][t]
    if best.f1 <= before.f1:
        return SettingFit(threshold, min_contrast, before, before)
    return SettingFit(t, k, best, before)


def sweep_thresholds(engine, pairs: list[Pair], normalization, *, min_area_px: int, radius: float = 3.0,
                     point_radius: float = DEFAULT_POINT_RADIUS, window: int = 512,
                     contrasts: tuple[float, ...] = (0.0,), grow_to: float | None = None, progress=None,
                     cancel=None) -> ThresholdSweep:
    """Whole images of ``pairs`` through ``engine`` (inputs normalised with ``normalization``),
    scored at every threshold and smallest track contrast of ``contrasts`` (0: every track), tracks
    growing down to ``grow_to`` times each threshold where given (a bundle's ``grow_to``): what
    training validates with and how a threshold is chosen."""
    from .analysis import predict_probability
    from .contrast import measure_contrast
    from .images import read_image

    by_contrast = {k: dict.fromkeys(THRESHOLDS, Match(0, 0, 0)) for k in contrasts}
    inter = union = 0
    for i, pair in enumerate(pairs):
        if cancel:
            cancel.check()
        image = read_image(pair.image)
        mask = pair_mask(pair, image.shape, point_radius)
        prob = predict_probability(image.data, engine, normalization, window=window)
        truth = truth_centres(pair, mask)
        contrast = measure_contrast(image.data) if any(contrasts) else None
        found = setting_matches(prob, image.data, contrast, truth, THRESHOLDS, contrasts, min_area_px=min_area_px,
                                grow_to=grow_to, radius=radius, cancel=cancel)
        for k, row in by_contrast.items():
            for t in THRESHOLDS:
                row[t] += found[k][t]
        pred = prob >= 0.5
        inter += int(np.count_nonzero(pred & mask))
        union += int(np.count_nonzero(pred | mask))
        if progress:
            progress(i + 1, len(pairs))
    return ThresholdSweep(by_contrast, inter, union)


def evaluate(bundle, pairs: list[Pair], radius: float = 3.0, threshold: float | None = None,
             progress=None, cancel=None, min_contrast: float | None = None) -> Evaluation:
    """Score ``bundle`` (at its own setting, unless ``threshold`` or ``min_contrast`` is given) and a
    LoG detector (tuned here for the best overall F1) on ``pairs``."""
    from .analysis import analyze
    from .images import read_image

    network, log_found, truths = [], [], []
    for i, pair in enumerate(pairs):
        if cancel:
            cancel.check()
        image = read_image(pair.image)
        mask = pair_mask(pair, image.shape) if pair.mask is not None else None
        truth = truth_centres(pair, mask)
        result = analyze(image, bundle, threshold=threshold, min_contrast=min_contrast)
        found = np.c_[result.tracks.columns["row"], result.tracks.columns["col"]]
        iou = None  # pixel overlap only against a drawn mask, not against discs around points
        if mask is not None:
            pred = result.tracks.labels > 0
            union = np.count_nonzero(pred | mask)
            iou = np.count_nonzero(pred & mask) / union if union else 1.0
        network.append(ImageScore(pair.name, match_points(found, truth, radius), len(truth), len(found), iou))
        responses = {s: log_response(image.data, s) for s in LOG_SIGMAS}
        log_found.append({(s, t): log_peaks(responses[s], s, t) for s in LOG_SIGMAS for t in LOG_THRESHOLDS})
        truths.append(truth)
        if progress:
            progress(i + 1, len(pairs))

    def total(key):
        m = Match(0, 0, 0)
        for found, truth in zip(log_found, truths, strict=True):
            m = m + match_points(found[key], truth, radius)
        return m.f1

    best = max(log_found[0], key=total) if log_found else (LOG_SIGMAS[0], LOG_THRESHOLDS[0])
    log = [ImageScore(p.name, match_points(f[best], t, radius), len(t), len(f[best]))
           for p, f, t in zip(pairs, log_found, truths, strict=True)]
    return Evaluation(radius, network, log, {"sigma_px": best[0], "threshold": best[1]})
