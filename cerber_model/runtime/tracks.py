"""Tracks: from a probability map to a table with one row per track.

Pixels at or above the threshold form connected components (8-connectivity).
A component with more than one probability maximum (touching tracks; maxima
found on the map smoothed by 1 px) is split by a watershed between its maxima. Where the image's
contrast is measured, a region that holds several spots of the image itself (peaks of its LoG
response at the spots' scale, :meth:`~cerber_model.runtime.contrast.SpotContrast.spot_peaks`) is
split between them as well. Each resulting region is a track,
unless its contrast (:mod:`cerber_model.runtime.contrast`) is below the model's smallest one.
A model may let tracks grow (hysteresis, ``grow_to``): the components are then those of the pixels
at or above a fraction of the threshold that reach the threshold somewhere, and a track that only
growing makes (fewer pixels at the threshold than the smallest track) counts where the image is
round there (:data:`GROWN_ROUNDNESS`), not an edge.

Coordinates: ``row`` and ``col`` are 0-based with pixel centres at integers,
sub-pixel, the centroid weighted by the background-subtracted input intensity
(where the contrast is measured, intensity above the local background of the network's input
levels; then minus the track's lowest pixel), which follows the spot rather than
the outline of the thresholded region. Intensities are in the input's own units.
``orientation_deg`` is the angle of the major axis from the image's horizontal
(column) axis, counter-clockwise as displayed (rows grow downwards), in (-90, 90].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .contrast import SpotContrast
    from .images import BackgroundLevels
    from .progress import CancelToken

TRACK_COLUMNS = (
    "track_id",
    "row",
    "col",
    "area_px",
    "mean_intensity",
    "max_intensity",
    "integrated_intensity",
    "max_probability",
    "major_axis_px",
    "minor_axis_px",
    "orientation_deg",
    "eccentricity",
    "contrast",
)
#: SD (px) of the smoothing applied before looking for separate maxima.
SPLIT_SMOOTHING = 1.0
#: How far (in probability) a maximum must rise above the saddle to a higher one to count as a
#: track of its own: ripples on the broad plateau of one bright spot (0.02-0.05 with the default
#: model) do not split it; two touching spots 8 px apart dip far more between them.
SPLIT_PROMINENCE = 0.1
#: Tracks that grow down to a lower level than the threshold (a bundle's ``grow_to``): a track that only
#: growing makes, with fewer pixels at the threshold than the smallest track, counts where it is
#: round: at its centre the image bends down both ways at GROWN_SCALE px, the gentler curvature at
#: least GROWN_ROUNDNESS of the steeper. The edge of a nucleus or a cell bends across and hardly along.
GROWN_SCALE = 1.5
GROWN_ROUNDNESS = 0.5
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class Tracks:
    """The tracks of one image: columns of equal length, plus the label image.

    labels: int32 image, 0 = background, k = the track with ``track_id`` k.
    threshold, min_contrast: the probability and the smallest contrast they were found at (0: all kept).
    clean_background: whether those were the model's setting for an image with a clean background
    (:class:`~cerber_model.runtime.bundle.CleanBackground`) rather than its own threshold.
    coarse_count: how many of the tracks (the last ones) the coarse look on the binned image added
    (:func:`add_coarse_tracks`).
    """

    columns: dict[str, np.ndarray]
    labels: np.ndarray
    threshold: float
    image_shape: tuple[int, int]
    pixel_size_um: float | None = None
    min_contrast: float = 0.0
    clean_background: bool = False
    coarse_count: int = 0

    def __len__(self) -> int:
        return len(self.columns["track_id"])

    @property
    def count(self) -> int:
        return len(self)

    @property
    def density_per_mm2(self) -> float | None:
        """Tracks per mm^2 of image, or None without a pixel size."""
        if not self.pixel_size_um:
            return None
        area_mm2 = self.image_shape[0] * self.image_shape[1] * (self.pixel_size_um * 1e-3) ** 2
        return self.count / area_mm2



def _split_touching(prob: np.ndarray, labels: np.ndarray, n: int, cancel: CancelToken | None = None) -> int:
    """Split components that hold several probability maxima, by watershed, in place.

    Maxima are found on the map smoothed with a 1-px Gaussian (so noise ripples
    and flat, saturated tops do not count), as connected sets of pixels equal to
    the maximum of their 5x5 neighbourhood that rise at least ``SPLIT_PROMINENCE``
    above the way to any higher maximum (so ripples on a plateau do not count).
    Returns the new number of labels.
    """
    from scipy import ndimage
    from skimage.morphology import h_maxima

    def maxima(box: tuple[slice, slice], region: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        if region.sum() < 8:  # too small to hold two tracks
            return None
        smoothed = ndimage.gaussian_filter(prob[box].astype(np.float32), SPLIT_SMOOTHING)
        peaks = (smoothed == ndimage.maximum_filter(smoothed, size=5)) & region
        if ndimage.label(peaks, structure=_EIGHT)[1] < 2:
            return None
        peaks &= h_maxima(np.where(region, smoothed, 0).astype(np.float64), SPLIT_PROMINENCE).astype(bool)
        markers, m = ndimage.label(peaks, structure=_EIGHT)
        return (markers, smoothed) if m >= 2 else None

    return _split_each(labels, n, 4 * int(np.ceil(SPLIT_SMOOTHING)), maxima, cancel)


def _split_at_spots(image: np.ndarray, labels: np.ndarray, n: int, contrast: SpotContrast,
                    cancel: CancelToken | None = None) -> int:
    """Split tracks that hold several spots of the image, in place: at the peaks of the image's own
    LoG response (:meth:`SpotContrast.spot_peaks`), by watershed of that response. The network
    marks two broad spots a few px apart as one region without a dip in probability between
    them; the image, looked at at the spots' scale, often shows two. Returns the new number of
    labels."""
    from .contrast import SPLIT_MARGIN

    return _split_each(labels, n, SPLIT_MARGIN, lambda box, region: contrast.spot_peaks(image, box, region), cancel)


def _split_each(labels: np.ndarray, n: int, pad: int, markers_of, cancel: CancelToken | None = None) -> int:
    """Split the tracks 1..n of ``labels`` in place, each inside its bounding box enlarged by ``pad``
    px (so memory follows the tracks, not the image): ``markers_of(box, region)`` gives the markers
    (int labels) and the surface (high inside a spot) to split ``region``, the track's pixels in
    ``labels[box]``, along by watershed, or None to keep it whole. The first basin keeps the track's
    label, the others get new ones. ``cancel`` is checked before each track. Returns the new number
    of labels."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    next_label = n + 1
    h, w = labels.shape
    # Boxes are found before any split, so new labels are never revisited.
    for index, bbox in enumerate(ndimage.find_objects(labels, max_label=n), start=1):
        if cancel is not None:
            cancel.check()
        if bbox is None:
            continue
        box = (slice(max(bbox[0].start - pad, 0), min(bbox[0].stop + pad, h)),
               slice(max(bbox[1].start - pad, 0), min(bbox[1].stop + pad, w)))
        region = labels[box] == index
        found = markers_of(box, region)
        if found is None:
            continue
        markers, surface = found
        split = watershed(-surface, markers, mask=region)
        basins = np.unique(split[region])
        lut = np.zeros(int(basins.max()) + 1, dtype=labels.dtype)
        lut[basins] = np.r_[index, np.arange(next_label, next_label + len(basins) - 1)]
        labels[box][region] = lut[split[region]]
        next_label += len(basins) - 1
    return next_label - 1


def label_tracks(probability: np.ndarray, threshold: float, min_area_px: int = 1,
                 cancel: CancelToken | None = None) -> tuple[np.ndarray, int]:
    """The label image of the tracks (int32, 0 = background, 1..count) and their count; ``cancel``
    is checked between tracks while they are split."""
    from scipy import ndimage

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    labels, n = ndimage.label(probability >= threshold, structure=_EIGHT)
    labels = labels.astype(np.int32, copy=False)
    n = _split_touching(probability, labels, n, cancel)
    # Drop specks smaller than the minimum area, then number the rest 1..count (in place).
    areas = np.bincount(_foreground(labels)[1], minlength=n + 1)
    keep = areas[1:] >= max(min_area_px, 1)
    return labels, _keep_labels(labels, keep)


def _spot_labels(probability: np.ndarray, image: np.ndarray, threshold: float, min_area_px: int,
                 contrast: SpotContrast | None, cancel: CancelToken | None = None,
                 grow_to: float | None = None) -> tuple[np.ndarray, int]:
    """:func:`label_tracks`, then, where the image's contrast is measured, tracks that hold several
    of its spots split (:func:`_split_at_spots`). With ``grow_to``, the tracks are labelled at
    ``grow_to`` times the threshold, and those that reach the threshold nowhere are dropped
    (:func:`_grown_tracks`)."""
    level = threshold if grow_to is None else threshold * grow_to
    labels, count = label_tracks(probability, level, min_area_px, cancel)
    if contrast is not None:
        count = _split_at_spots(image, labels, count, contrast, cancel)
    if grow_to is not None and count:
        count = _grown_tracks(probability, image, labels, count, threshold, min_area_px,
                              contrast.levels if contrast is not None else None)
    return labels, count


def _grown_tracks(probability: np.ndarray, image: np.ndarray, labels: np.ndarray, count: int, threshold: float,
                  min_area_px: int, levels: BackgroundLevels | None) -> int:
    """Of the tracks 1..count labelled below ``threshold``, keep (in place, renumbering) those that
    reach it, and of those with fewer than ``min_area_px`` pixels at it (tracks only because they
    grew) the round ones (:func:`_round_at` their centres). Returns the count."""
    fg, lab = _foreground(labels)
    values = probability.ravel()[fg]
    keep = _per_label(np.maximum, values.astype(np.float64), lab, count) >= threshold
    core = np.bincount(lab[values >= threshold], minlength=count + 1)[1:]
    grown = keep & (core < min_area_px)
    if grown.any():
        keep[grown] = _round_at(image, _track_centres(image, labels, count, levels)[grown])
    return _keep_labels(labels, keep)


def _round_at(image: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Whether ``image`` bends down both ways at :data:`GROWN_SCALE` px at each of ``centres`` ((N, 2)
    row, col), the gentler curvature (eigenvalue of its Hessian) at least :data:`GROWN_ROUNDNESS` of
    the steeper: a spot, not an edge or a ridge."""
    from scipy import ndimage

    from .images import crops_at, filter_reach

    h, w = image.shape
    m = filter_reach(GROWN_SCALE) + 1
    crops = crops_at(image, np.clip(np.rint(centres[:, 0]).astype(np.intp), 0, h - 1),
                     np.clip(np.rint(centres[:, 1]).astype(np.intp), 0, w - 1), m, np.float64)
    rr, cc, rc = (ndimage.gaussian_filter(crops, (0.0, GROWN_SCALE, GROWN_SCALE), order=(0,) + order)[:, m, m]
                  for order in ((2, 0), (0, 2), (1, 1)))
    half_trace = (rr + cc) / 2
    spread = np.sqrt(np.maximum(half_trace * half_trace - (rr * cc - rc * rc), 0.0))
    steep, gentle = half_trace - spread, half_trace + spread
    return (gentle < 0) & (-gentle >= GROWN_ROUNDNESS * -steep)


def _foreground(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat indices of the labelled pixels and their labels. Per-track sums, minima and maxima
    are taken over these alone: scipy.ndimage's over the whole image sort it (on an 8000 x 8000 px
    image with 3,000 tracks, 13-16 s and 0.9 GiB each), and numpy's bincount of the whole label
    image makes a 64-bit copy of it."""
    fg = np.flatnonzero(labels)
    return fg, labels.ravel()[fg]


def _per_label(ufunc: np.ufunc, values: np.ndarray, lab: np.ndarray, count: int) -> np.ndarray:
    """``ufunc`` (np.minimum or np.maximum) of ``values`` per label 1..count (each present)."""
    out = np.full(count, np.inf if ufunc is np.minimum else -np.inf)
    ufunc.at(out, lab - 1, values)
    return out


def _keep_labels(labels: np.ndarray, keep: np.ndarray) -> int:
    """Keep the labels 1..n where ``keep[label - 1]`` is true, renumbered 1..count in order
    (in place); the others become background. Returns the count."""
    lut = np.zeros(len(keep) + 1, dtype=np.int32)
    lut[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    np.take(lut, labels, out=labels)
    return int(keep.sum())


def _track_centres(image: np.ndarray, labels: np.ndarray, count: int,
                   levels: BackgroundLevels | None = None) -> np.ndarray:
    """The (count, 2) centres (row, col) of labels 1..count: weighted centroids (by the intensity above
    the local background of ``levels``, where given), or the plain centroid where a track is perfectly flat."""
    rows, cols = _weighted_centroids(image, labels, count, levels)
    if count and np.isnan(rows).any():
        from scipy import ndimage

        plain = np.array(ndimage.center_of_mass(labels > 0, labels, np.arange(1, count + 1))).reshape(-1, 2)
        flat = np.isnan(rows)
        rows[flat], cols[flat] = plain[flat, 0], plain[flat, 1]
    return np.c_[rows, cols]


def _contrast_filter(image: np.ndarray, labels: np.ndarray, count: int, contrast: SpotContrast | None,
                     min_contrast: float, cancel: CancelToken | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centres and contrasts (NaN without ``contrast``) of the tracks, after dropping (in place,
    renumbering ``labels``) those whose contrast is below ``min_contrast``."""
    centres = _track_centres(image, labels, count, contrast.levels if contrast is not None else None)
    if contrast is None:
        if min_contrast > 0:
            raise ValueError("a smallest contrast needs the image's contrast measured (measure_contrast)")
        return centres, np.full(count, np.nan)
    values = contrast.of(image, centres, cancel)
    if min_contrast > 0:
        keep = values >= min_contrast
        if not keep.all():
            _keep_labels(labels, keep)
            centres, values = centres[keep], values[keep]
    return centres, values


def track_centres(probability: np.ndarray, image: np.ndarray, threshold: float, min_area_px: int = 1,
                  contrast: SpotContrast | None = None, min_contrast: float = 0.0,
                  cancel: CancelToken | None = None, grow_to: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Just the (N, 2) track centres (row, col) of :func:`extract_tracks` and their contrasts (NaN
    without ``contrast``), computed faster."""
    labels, count = _spot_labels(probability, image, threshold, min_area_px, contrast, cancel, grow_to)
    return _contrast_filter(image.astype(np.float32, copy=False), labels, count, contrast, min_contrast, cancel)


def extract_tracks(
    probability: np.ndarray,
    image: np.ndarray,
    threshold: float,
    min_area_px: int = 1,
    pixel_size_um: float | None = None,
    contrast: SpotContrast | None = None,
    min_contrast: float = 0.0,
    cancel: CancelToken | None = None,
    grow_to: float | None = None,
) -> Tracks:
    """Tracks in ``probability`` (2-D, 0..1), measured on ``image`` (same shape).

    ``contrast`` (:func:`~cerber_model.runtime.contrast.measure_contrast` of ``image``) fills
    the ``contrast`` column (NaN without it), and tracks below ``min_contrast`` are dropped.
    With ``grow_to`` (0..1), tracks are the regions above ``grow_to`` times the threshold that reach
    the threshold, those with fewer than ``min_area_px`` pixels at it where round (hysteresis).
    ``cancel`` is checked between tracks while they are split and measured (an image of 8000 x 8000 px
    takes seconds here). Returns a :class:`Tracks` table; ``track_id`` starts at 1 and matches the
    label image.
    """
    if probability.shape != image.shape:
        raise ValueError(f"probability map {probability.shape} and image {image.shape} differ in shape")
    if pixel_size_um is not None and not pixel_size_um > 0:
        raise ValueError(f"pixel size must be positive, got {pixel_size_um}")
    if grow_to is not None and not 0.0 < grow_to < 1.0:
        raise ValueError(f"grow_to must be between 0 and 1, got {grow_to}")
    labels, count = _spot_labels(probability, image, threshold, min_area_px, contrast, cancel, grow_to)
    centres, contrasts = _contrast_filter(image, labels, count, contrast, min_contrast, cancel)
    fg, lab = _foreground(labels)
    max_prob = _per_label(np.maximum, probability.ravel()[fg].astype(np.float64), lab, len(centres))
    return _table(labels, image, centres, contrasts, max_prob, float(threshold), pixel_size_um, float(min_contrast))


def _table(labels: np.ndarray, image: np.ndarray, centres: np.ndarray, contrasts: np.ndarray, max_prob: np.ndarray,
           threshold: float, pixel_size_um: float | None, min_contrast: float) -> Tracks:
    """The :class:`Tracks` of ``labels`` (1..count, in the order of ``centres``, their contrasts and
    their highest probabilities), measured on ``image``."""
    from skimage.measure import regionprops_table

    count = len(centres)
    # The image is measured as it is (no float copy of a large image).
    props = regionprops_table(
        labels,
        intensity_image=image,
        properties=("label", "area", "intensity_mean", "intensity_max", "axis_major_length",
                    "axis_minor_length", "orientation", "eccentricity"),
    )
    idx = np.arange(1, count + 1)
    row, col = centres[:, 0].copy(), centres[:, 1].copy()
    area = np.asarray(props["area"], dtype=np.int64)
    # skimage's orientation is from the row axis; convert to the column axis,
    # counter-clockwise as displayed.
    orientation = np.degrees(np.asarray(props["orientation"], dtype=np.float64)) - 90.0
    orientation = np.where(orientation <= -90.0, orientation + 180.0, orientation)
    columns = {
        "track_id": idx.astype(np.int64),
        "row": row,
        "col": col,
        "area_px": area,
        "mean_intensity": np.asarray(props["intensity_mean"], dtype=np.float64),
        "max_intensity": np.asarray(props["intensity_max"], dtype=np.float64),
        "integrated_intensity": np.asarray(props["intensity_mean"], dtype=np.float64) * area,
        "max_probability": np.asarray(max_prob, dtype=np.float64),
        "major_axis_px": np.asarray(props["axis_major_length"], dtype=np.float64),
        "minor_axis_px": np.asarray(props["axis_minor_length"], dtype=np.float64),
        "orientation_deg": orientation,
        "eccentricity": np.asarray(props["eccentricity"], dtype=np.float64),
        "contrast": np.asarray(contrasts, dtype=np.float64),
    }
    return Tracks(columns, labels, threshold, (int(labels.shape[0]), int(labels.shape[1])), pixel_size_um,
                  min_contrast)


def add_coarse_tracks(tracks: Tracks, coarse: Tracks, image: np.ndarray, factor: int,
                      contrast: SpotContrast | None = None, min_contrast: float = 0.0,
                      fragment: float = 0.0, cancel: CancelToken | None = None) -> Tracks:
    """``tracks`` of ``image`` and, numbered after them, the tracks ``coarse`` found on ``image``
    binned ``factor`` x ``factor`` (its top-left ``factor`` multiples) that overlap none of them
    (a spot found at full resolution keeps its own track) and, where ``contrast`` (``image``'s) is
    given, whose contrast on ``image`` itself reaches ``min_contrast``: its scales stop at the
    largest spot's, so a broad blob that only the binned image's larger scales pick out is left
    out. With ``fragment`` above 0, a coarse track that overlaps exactly one track, which overlaps
    no other coarse track, has under 1 / ``fragment`` of its area and a lower highest probability,
    replaces it: the network saw only the brightest part of a broad faint spot at full resolution,
    and that part's centre lies off the spot's. The added tracks are measured on ``image``, their
    outline the coarse one enlarged; they keep the contrast and the highest probability that the
    coarse look gave them, and its centre (the weighted centre of a broad faint spot is steadier on
    the binned image, whose noise is half as strong). ``tracks.labels`` becomes the label image of
    the result (changed in place: no second label image of a large image)."""
    small = coarse.labels
    ch, cw = small.shape
    n, m = len(tracks), len(coarse)
    # The (coarse track, track) pairs that share a pixel, one offset within the blocks at a time.
    keys = []
    for dr in range(factor):
        for dc in range(factor):
            under = tracks.labels[dr:ch * factor:factor, dc:cw * factor:factor]
            both = (small > 0) & (under > 0)
            keys.append(small[both].astype(np.int64) * (n + 1) + under[both])
    pairs = np.unique(np.concatenate(keys))
    pair_coarse, pair_track = np.divmod(pairs, n + 1)
    touching = np.bincount(pair_coarse, minlength=m + 1)[1:]  # tracks each coarse track overlaps
    covered = np.bincount(pair_track, minlength=n + 1)  # coarse tracks over each track
    keep = touching == 0
    replaced = np.zeros(n + 1, dtype=bool)
    if fragment > 0 and len(pairs):
        area = np.asarray(tracks.columns["area_px"], dtype=np.float64)
        coarse_area = np.asarray(coarse.columns["area_px"], dtype=np.float64) * factor**2
        one = (touching[pair_coarse - 1] == 1) & (covered[pair_track] == 1)
        one &= area[pair_track - 1] * fragment < coarse_area[pair_coarse - 1]
        one &= (np.asarray(tracks.columns["max_probability"])[pair_track - 1]
                < np.asarray(coarse.columns["max_probability"])[pair_coarse - 1])
        keep[pair_coarse[one] - 1] = True
    # Binned pixel i holds pixels factor * i .. factor * i + factor - 1: its centre is theirs.
    centres = np.c_[coarse.columns["row"], coarse.columns["col"]] * factor + (factor - 1) / 2
    if contrast is not None and min_contrast > 0 and keep.any():
        keep[keep] = contrast.of(image, centres[keep], cancel) >= min_contrast
    if not keep.any():
        return tracks
    if fragment > 0 and len(pairs):
        replaced[pair_track[one & keep[pair_coarse - 1]]] = True
    labels = tracks.labels
    kept = ~replaced[1:]
    n = _keep_labels(labels, kept)  # the fragments go, the others are numbered 1..n again
    lut = np.zeros(m + 1, dtype=np.int32)
    lut[1:][keep] = np.arange(n + 1, n + 1 + int(keep.sum()), dtype=np.int32)
    fg, lab = _foreground(small)
    added = lut[lab]
    fg, added = fg[added > 0], added[added > 0]
    rows, cols = np.divmod(fg, cw)
    for dr in range(factor):
        for dc in range(factor):
            labels[rows * factor + dr, cols * factor + dc] = added
    own = {name: np.asarray(values)[kept] for name, values in tracks.columns.items()}
    centres = np.r_[np.c_[own["row"], own["col"]], centres[keep]]
    contrasts = np.r_[own["contrast"], coarse.columns["contrast"][keep]]
    max_prob = np.r_[own["max_probability"], coarse.columns["max_probability"][keep]]
    merged = _table(labels, image, centres, contrasts, max_prob, tracks.threshold, tracks.pixel_size_um,
                    tracks.min_contrast)
    merged.coarse_count = tracks.coarse_count + int(keep.sum())
    return merged


def _weighted_centroids(intensity: np.ndarray, labels: np.ndarray, count: int,
                        levels: BackgroundLevels | None = None):
    """Centroids weighted by intensity (less the local background of ``levels``, where given: a
    background that rises across a broad spot would pull a centroid towards its bright side) minus
    each track's lowest pixel (NaN where flat).

    Works on the foreground pixels only, so memory follows the tracks, not the image.
    """
    if count == 0:
        return np.zeros(0), np.zeros(0)
    fg, lab = _foreground(labels)
    values = intensity.ravel()[fg].astype(np.float64)
    rows, cols = np.divmod(fg, labels.shape[1])
    if levels is not None:
        values -= levels.background_at(rows, cols)
    floor = _per_label(np.minimum, values, lab, count)
    w = values - floor[lab - 1]
    total = np.bincount(lab, w, minlength=count + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.bincount(lab, w * rows, minlength=count + 1)[1:] / total
        c = np.bincount(lab, w * cols, minlength=count + 1)[1:] / total
    flat = total <= 0
    r[flat] = np.nan
    c[flat] = np.nan
    return r, c
