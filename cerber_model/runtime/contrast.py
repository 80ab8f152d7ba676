"""Track contrast: how far a track stands out of its image's own background, at its own size.

A network trained on synthetic images learns that a faint bump the size of a large spot
is a spot. On a real image, whose background has texture at the scale of several pixels
(autofluorescence, out-of-focus light, smoothed noise), such bumps are everywhere and are
not spots. What tells them apart is measured on the image itself:

* the response of a scale-normalised Laplacian of Gaussian (LoG) at each scale of
  :data:`CONTRAST_SCALES`, on the image in units of its local pixel noise
  (:func:`~cerber_model.runtime.images.background_levels`);
* the robust SD of that response over the image (median absolute deviation, on up to 9
  windows of 256 px spread over it, as the noise correlation is measured): the noise *and the
  texture* at that scale.

A track's contrast is the largest ratio of the two over the scales, taken at the pixel of
its centre and its 8 neighbours: the number of noise SDs by which it rises above what the
background does at the scale where it stands out most. A scale counts only where the response
peaks there (its largest within 2 px of the centre is the largest within max(3, SD + 1) px): at
large scales a bright spot's response reaches several pixels out, and a faint bump beside it
would otherwise borrow it (0 where no scale peaks at the track). A small sharp spot on a textured
background keeps a high contrast; a broad faint blob, of which the texture makes many,
gets a low one. On white noise a spot's contrast grows with its amplitude and size.
Only the scales at which the background's response is made of the image's noise count
(:meth:`SpotContrast.measured`): white noise varies less at every larger scale, so where the
response varies more at the next larger scale, something else sets it. At small scales that is an
8-bit image of a few grey levels, whose pixels mostly share one value (the response hardly varies,
and the steps of a spot's grey levels count as thousands of noise SDs); at large scales, texture,
sparse and strong, of which the robust SD counts the common part and not how high it reaches (on
the annotated hybiss sample the response varies least at 2 px and more at each larger scale, and
leaving out 2-5 px there drops false tracks on texture and keeps the spots).
Bundles may drop tracks below a contrast (``BundleConfig.min_contrast``), chosen with the
threshold on validation images (``cerber threshold``).

On a clean background a bundle may count contrast by its rarity (``SpotContrast.rarity``; the
README's "Contrast by rarity"): noise makes fewer bumps at larger scales (about (s / 1 px)^-2 times
as many per megapixel at scale s), so a bump of r noise SDs at a large scale is rarer than one at
a small scale, and a broad faint spot need not stand out by as many noise SDs as a small one to
be told from noise. Counted by its rarity, r at scale s becomes sqrt(r^2 + k ln(s / 1 px)), k
being :data:`RARITY_GAIN`: on white noise the peaks at 3-5 px then reach a given contrast about
as often as those at 1 px do (measured: the level that as many peaks reach at 3, 4 and 5 px as
reach 4-5 at 1 px needs k = 2.0-3.0; Gaussian theory gives 4 for a continuous image, the pixel
grid fewer at small scales). Counted plainly, the small scales make most of the false tracks.

Where spots crowd everywhere (thousands on a megapixel), the background's response counts them at
every scale but the smallest. What the image's noise alone makes at each scale comes from how its
high-pass correlates between neighbouring pixels, which such spots hardly touch
(:func:`~cerber_model.runtime.images.noise_model`, :attr:`SpotContrast.noise_only`): a scale whose
background varies more than :data:`CROWD_FACTOR` times that is not measured, and on a clean
background crowded spots are told from the noise between them (:func:`noise_among_crowds`).

The same windows say how textured the background is (:attr:`SpotContrast.texture`): texture
makes dark dips as well as bright bumps, spots only bright ones. The dark dips that stand out by
:data:`TEXTURE_LEVEL` or more per megapixel, leaving out the dark rings of bright spots, are 0-19
on camera-like synthetic images (thousands on a few 8-bit ones with 4-5 grey levels in all), 0-34
on the prototype's look, and 65 and 300 on the annotated samples. On a clean background a model
may then keep fainter tracks (``BundleConfig.clean_background``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .images import (
    BackgroundLevels,
    background_levels,
    crops_at,
    filter_reach,
    grey_levels_rule,
    noise_model,
    robust_sd,
    sample_windows,
)

if TYPE_CHECKING:
    from .progress import CancelToken

#: Spot SDs (px) at which the contrast is measured: the sizes of spots Cerber detects.
CONTRAST_SCALES = (0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)
#: Contrast counted by its rarity (see above): the scale (px) at which it is the plain ratio, and
#: the gain k of sqrt(r^2 + k ln(s / RARITY_SCALE)).
RARITY_SCALE = 1.0
RARITY_GAIN = 2.5
#: Tracks measured at once (memory: about 8 KB per track at the largest scale).
_CHUNK = 2048
#: Windows of 256 px (at most; see images.sample_windows) and values in them that measure the
#: background's response at each scale.
_WINDOWS = 9
_SAMPLES = 200_000
#: Lowest SD of a LoG response counted as the background's (flat images have none).
_NOISE_FLOOR = 1e-3
#: How many times the response that the image's own noise would give (:attr:`SpotContrast.noise_only`)
#: the background's may vary at a scale that counts as measured: more is spots or texture at that
#: scale, not noise (6,400 spots of SD 1.2-2.5 px on a megapixel: 12-25 times at 3-5 px, 1.1-1.6 at
#: 0.75-1 px; noise of every kind benchmarked, 0.75-1.75; the hybiss sample's texture 1.1-1.6 at the
#: scales it keeps).
CROWD_FACTOR = 2.5
#: On a clean background, spots crowded everywhere show as a response beyond CROWD_FACTOR times the
#: noise's already at this scale (px) or below (:func:`noise_among_crowds`).
CROWD_SCALE = 2.0
#: Bright objects, away from which the background's response is measured (:func:`_away_from_objects`):
#: pixels that stand out by this many SDs at any scale; and the share of pixels that must stay.
OBJECT_LEVEL = 25.0
OBJECT_FREE = 0.1
#: Contrast (noise SDs) of the dark dips counted by :attr:`SpotContrast.texture`.
TEXTURE_LEVEL = 5.0
#: A dip is the ring of bright spots when the peaks near it that are each at least RING_PEAK times its
#: depth together reach RING_RATIO times it (the rings of neighbouring spots add up).
RING_RATIO = 3.0
RING_PEAK = 2.0
#: Scales (px, among :data:`CONTRAST_SCALES`) at which one track is looked at for several spots,
#: the largest first (:meth:`SpotContrast.spot_peaks`): a larger scale is less easily fooled by
#: noise, a smaller one parts closer spots. A track of equivalent radius r (sqrt(area / pi)) is
#: looked at only at scales of r / SPLIT_SCALE_RATIO or more: small scales split broad spots on noise.
#: Only scales where the image's noise is measured are used (:meth:`SpotContrast.measured`).
SPLIT_SCALES = (3.0, 2.0, 1.5, 1.0)
SPLIT_SCALE_RATIO = 4.0
#: A spot's own peak in a track: its contrast at that scale (noise SDs), and how far it rises above
#: the way to a higher peak: SPLIT_DIP of its own response, and SPLIT_MIN_DIP at least. Of its own,
#: not of the track's highest: a faint spot beside a bright one (a bead 5-6 px from one 10-20 times as
#: bright) rises far less than a third of the bright one's peak above the way between them.
SPLIT_CONTRAST = 5.0
SPLIT_DIP = 0.3
SPLIT_MIN_DIP = 2.0
#: A fainter spot on a bright one's flank (:func:`_shoulder_peaks`): the image smoothed over
#: SHOULDER_SMOOTHING px, less its own reflection through the bright peak's centre, shows the fainter
#: one where it stands out by SHOULDER_CONTRAST SDs of that residual's noise and SHOULDER_FRACTION of
#: the bright peak, at least SHOULDER_DISTANCE px from its centre; only beside a peak of
#: SHOULDER_PEAK of those SDs or more (bright beads, where the LoG's dip rule asks most).
SHOULDER_SMOOTHING = 1.0
SHOULDER_CONTRAST = 6.0
SHOULDER_FRACTION = 0.1
SHOULDER_DISTANCE = 3.0
SHOULDER_PEAK = 30.0
#: Peaks on one flat top (:func:`_rim_peaks`): at most RIM_SPAN px apart, with the track's light spread
#: along their line by less than RIM_SPREAD (half their distance)^2 more than across it.
RIM_SPREAD = 0.25
RIM_SPAN = 5.0
#: Pixels (at least) of the box around a track, 2 px or more from it, that measure the residual's noise.
_SHOULDER_BACKGROUND = 50
#: Tracks looked at: at least this many pixels, and not longer than this eccentricity (a ridge or
#: filament has peaks all along it; two touching round spots are 0.8-0.9).
SPLIT_MIN_AREA = 20
SPLIT_MAX_ECCENTRICITY = 0.95
_EIGHT = np.ones((3, 3), dtype=bool)


#: How far (px) the box given to :meth:`SpotContrast.spot_peaks` reaches beyond the track.
SPLIT_MARGIN = filter_reach(max(SPLIT_SCALES)) + 1


def log_filter(x: np.ndarray, scale: float) -> np.ndarray:
    """Scale-normalised negative LoG of ``x`` over its last two axes (a bright spot of SD
    ``scale`` and amplitude A gives a peak of about A / 2)."""
    from scipy import ndimage

    sigma = (0.0,) * (x.ndim - 2) + (scale, scale)
    rows = (0,) * (x.ndim - 2) + (2, 0)
    cols = (0,) * (x.ndim - 2) + (0, 2)
    out = ndimage.gaussian_filter(x, sigma, order=rows)
    out += ndimage.gaussian_filter(x, sigma, order=cols)
    out *= -(scale * scale)
    return out


@dataclass(frozen=True)
class SpotContrast:
    """What measuring track contrast on one image needs: its local noise and, per scale of
    :data:`CONTRAST_SCALES`, the robust SD of the LoG response of its background; and the
    background's texture: dark dips of contrast :data:`TEXTURE_LEVEL` or more per megapixel,
    counted on ``texture_px`` pixels (the windows' insides; fewer on a small image). With
    ``rarity``, :meth:`of` counts each scale's ratio by how rarely noise reaches it there
    (:func:`rarity_contrast`)."""

    levels: BackgroundLevels
    scale_noise: tuple[float, ...]
    texture: float = 0.0
    texture_px: int = 0
    rarity: bool = False
    #: Per scale, the SD of the response that the image's own noise alone would give, from how its
    #: neighbouring pixels correlate (:func:`~cerber_model.runtime.images.noise_model`); None where
    #: the image has no pixel noise to go by.
    noise_only: tuple[float, ...] | None = None
    #: Whether :meth:`measured` judges each scale by the noise model alone (:func:`noise_among_crowds`).
    by_noise_model: bool = False

    def measured(self) -> tuple[bool, ...]:
        """Per scale of :data:`CONTRAST_SCALES`, whether the image's noise is what the background's
        response there is made of: it varies at least as much as at the next larger scale, and the
        largest scale no more than the one below it (see above), more than not at all
        (:data:`_NOISE_FLOOR`), and at most :data:`CROWD_FACTOR` times what the noise alone would
        give; with :attr:`by_noise_model`, by that last test alone. Where that leaves none: the
        scales within that factor (an image crowded with spots, whose response they set at every
        scale but the smallest); else (an image of so few grey levels that its response varies more
        at every larger scale) the largest, which they touch least."""
        noise, last = self.scale_noise, len(self.scale_noise) - 1
        used = tuple(noise[i] > _NOISE_FLOOR and (noise[i] >= noise[i + 1] if i < last else noise[i] <= noise[i - 1])
                     for i in range(last + 1))
        if self.noise_only is not None:
            noise_like = tuple(_NOISE_FLOOR < n <= CROWD_FACTOR * m
                               for n, m in zip(noise, self.noise_only, strict=True))
            used = tuple(u and k for u, k in zip(used, noise_like, strict=True))
            if self.by_noise_model or not any(used):
                used = noise_like
        return used if any(used) else (False,) * last + (True,)

    def of(self, data: np.ndarray, centres: np.ndarray, cancel: CancelToken | None = None) -> np.ndarray:
        """The contrast (float64, one per row of ``centres``, (N, 2) row, col) of spots at
        ``centres`` of the 2-D image ``data`` (the image these levels were measured on); ``cancel``
        is checked between chunks of centres."""
        centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
        h, w = data.shape
        out = np.zeros(len(centres))
        for start in range(0, len(centres), _CHUNK):
            if cancel is not None:
                cancel.check()
            part = centres[start:start + _CHUNK]
            r = np.clip(np.rint(part[:, 0]).astype(np.intp), 0, h - 1)
            c = np.clip(np.rint(part[:, 1]).astype(np.intp), 0, w - 1)
            noise = self.levels.noise_at(r, c)[:, None, None]
            best = out[start:start + _CHUNK]
            for scale, scale_noise, used in zip(CONTRAST_SCALES, self.scale_noise, self.measured(), strict=True):
                if not used:
                    continue
                m = filter_reach(scale) + 1
                crops = crops_at(data, r, c, m)
                # Near 0 before filtering: a truncated LoG kernel does not sum to exactly 0.
                crops -= np.median(crops, axis=(1, 2), keepdims=True)
                crops /= noise
                response = log_filter(crops, scale)
                centre = response[:, m - 1:m + 2, m - 1:m + 2].max(axis=(1, 2))
                near = response[:, m - 2:m + 3, m - 2:m + 3].max(axis=(1, 2))
                k = max(3, math.ceil(scale) + 1)
                around = response[:, m - k:m + k + 1, m - k:m + k + 1].max(axis=(1, 2))
                ratio = np.where(near >= around, centre / scale_noise, 0.0)
                np.maximum(best, rarity_contrast(ratio, scale) if self.rarity else ratio, out=best)
        return out

    def spot_peaks(self, data: np.ndarray, box: tuple[slice, slice], region: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray] | None:
        """Where one track, ``region`` (bool, the shape of ``data[box]``), holds several spots: their
        peaks as markers (int labels 1..k, region's shape) and the response to split it along (the
        scale-normalised LoG, in noise units, at the largest scale of :data:`SPLIT_SCALES` where two
        or more peaks of contrast :data:`SPLIT_CONTRAST` each rise above the way to a higher one by
        :data:`SPLIT_DIP` of their own height, :func:`_prominent`; where no scale shows two, a faint
        spot on a bright one's flank, :func:`_shoulder_peaks`); None where it holds one. ``box``
        should reach :data:`SPLIT_MARGIN` beyond the track."""
        from scipy import ndimage
        from skimage.measure import regionprops

        area = int(region.sum())
        if area < SPLIT_MIN_AREA or regionprops(region.astype(np.uint8))[0].eccentricity > SPLIT_MAX_ECCENTRICITY:
            return None
        x = self.levels.apply(np.asarray(data[box], dtype=np.float32), np.arange(box[0].start, box[0].stop),
                              np.arange(box[1].start, box[1].stop))
        x -= np.median(x)
        smallest = math.sqrt(area / math.pi) / SPLIT_SCALE_RATIO
        measured = self.measured()
        for scale in SPLIT_SCALES:
            if scale < smallest:
                break
            i = CONTRAST_SCALES.index(scale)
            if not measured[i]:
                continue
            response = log_filter(x, scale) / self.scale_noise[i]
            within = np.where(region, response, response[region].min())
            # Every peak that _prominent keeps is a candidate: where there are fewer than two, it need
            # not run (most tracks).
            candidates = region & (response >= SPLIT_CONTRAST) & (within == ndimage.maximum_filter(within, 3))
            if ndimage.label(candidates, structure=_EIGHT)[1] < 2:
                continue
            markers, count = ndimage.label(_prominent(within.astype(np.float64), candidates), structure=_EIGHT)
            if count >= 2 and not _rim_peaks(x, region, markers):
                return markers, response
        return _shoulder_peaks(x, region)


def _rim_peaks(x: np.ndarray, region: np.ndarray, markers: np.ndarray) -> bool:
    """Whether the peaks ``markers`` (labels 1..k) that a scale finds in one track, ``region`` of
    ``x`` (the image in noise units), lie on one flat top and not on several spots: every two are at
    most :data:`RIM_SPAN` px apart, and the track's light (the image smoothed over
    :data:`SHOULDER_SMOOTHING` px, above 0) spreads along the line through them by less than
    :data:`RIM_SPREAD` times (half their distance)^2 more than across it (in variance). A flat top (a
    saturated spot, a square or disc of even brightness) curves most at its rim and corners, so a
    LoG about its size finds peaks there and on its noise, while its light spreads alike in every
    direction; two spots d px apart spread it along their line by up to (d / 2)^2 more (two equal
    ones by that much, a tenth as bright a third of it)."""
    from scipy import ndimage

    weights = np.where(region, np.maximum(ndimage.gaussian_filter(x, SHOULDER_SMOOTHING), 0.0), 0.0)
    total = float(weights.sum())
    if not total > 0:
        return False
    rows, cols = np.indices(x.shape, dtype=np.float64)
    mean_r, mean_c = float((weights * rows).sum()) / total, float((weights * cols).sum()) / total
    dr, dc = rows - mean_r, cols - mean_c
    cov = np.array([[(weights * dr * dr).sum(), (weights * dr * dc).sum()],
                    [(weights * dr * dc).sum(), (weights * dc * dc).sum()]]) / total
    peaks = ndimage.center_of_mass(markers > 0, markers, range(1, int(markers.max()) + 1))
    for a in range(len(peaks)):
        for b in range(a + 1, len(peaks)):
            step = np.subtract(peaks[b], peaks[a])
            distance = float(np.hypot(*step))
            if distance > RIM_SPAN:
                return False
            along = step / distance
            across = np.array([-along[1], along[0]])
            if along @ cov @ along - across @ cov @ across >= RIM_SPREAD * (distance / 2) ** 2:
                return False
    return True


def _shoulder_peaks(x: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A fainter spot on the flank of a bright one in one track, ``region`` of ``x`` (the image in
    noise units, its median 0): markers 1 (the bright peak) and 2 (the fainter spot) and the image
    smoothed over :data:`SHOULDER_SMOOTHING` px to split along, or None.

    A bead 4-5 px from one 2-8 times as bright is a shoulder of the image, and at the scales a track
    of its size is looked at (:meth:`SpotContrast.spot_peaks`) its LoG peak rises too little above
    the way to the bright one's. But a lone spot of any point-symmetric shape (round, elliptic, an
    Airy disc) is its own reflection through its centre, so the image less that reflection leaves
    the fainter one and nothing of the bright. The centre is the centroid of the bright peak's upper
    half (a flat, saturated or coarsely quantised top has no single highest pixel); the track's
    highest point must be a peak of the image, and exactly one maximum of the residual must stand
    out (see the constants)."""
    from scipy import ndimage

    # The difference of two pixels of white noise of SD 1 smoothed over s px: SD sqrt(2) / (2 sqrt(pi) s),
    # the least the residual's noise is taken to be; smoothing lowers no peak above the box's highest pixel.
    least_noise = math.sqrt(2) / (2 * math.sqrt(math.pi) * SHOULDER_SMOOTHING)
    if float(x.max()) < SHOULDER_PEAK * least_noise:
        return None
    smooth = ndimage.gaussian_filter(x, SHOULDER_SMOOTHING)
    peak = np.unravel_index(int(np.argmax(np.where(region, smooth, -np.inf))), smooth.shape)
    top = float(smooth[peak])
    # A peak of the image, not the track's edge on the slope of a brighter spot outside it.
    if not top > 0 or top < float(ndimage.maximum_filter(smooth, 3)[peak]):
        return None
    upper, _ = ndimage.label(smooth >= top / 2, structure=_EIGHT)
    weights = np.where(upper == upper[peak], smooth - top / 2, 0.0)
    rows, cols = np.indices(smooth.shape, dtype=np.float64)
    centre_row = float((weights * rows).sum() / weights.sum())
    centre_col = float((weights * cols).sum() / weights.sum())
    mirrored = ndimage.map_coordinates(smooth, [2 * centre_row - rows, 2 * centre_col - cols], order=1, mode="nearest")
    residual = smooth - mirrored
    background = ~ndimage.binary_dilation(region, iterations=2)
    if np.count_nonzero(background) < _SHOULDER_BACKGROUND:
        return None
    noise = max(robust_sd(residual[background]), least_noise)
    if top < SHOULDER_PEAK * noise:
        return None
    far = np.hypot(rows - centre_row, cols - centre_col) >= SHOULDER_DISTANCE
    found = (region & far & (residual == ndimage.maximum_filter(residual, 3))
             & (residual >= max(SHOULDER_CONTRAST * noise, SHOULDER_FRACTION * top)))
    spots, count = ndimage.label(found, structure=_EIGHT)
    if count != 1:
        return None
    markers = (spots > 0).astype(np.int32) * 2
    markers[peak] = 1
    return markers, smooth


def _prominent(response: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The ``candidates`` (bool, local maxima of ``response``) that rise above the way to any higher
    point of ``response`` by :data:`SPLIT_DIP` of their own height (:data:`SPLIT_MIN_DIP` at least):
    those whose part of ``response`` at or above their height less that dip holds nothing higher."""
    from scipy import ndimage

    found = np.argwhere(candidates)
    heights = response[candidates]
    keep = np.zeros(len(found), dtype=bool)
    top = float(heights.max())
    for i, height in enumerate(heights):
        if height >= top:
            keep[i] = True
            continue
        part, _ = ndimage.label(response >= height - max(SPLIT_MIN_DIP, SPLIT_DIP * height), structure=_EIGHT)
        keep[i] = response[part == part[tuple(found[i])]].max() <= height
    peaks = np.zeros(response.shape, dtype=bool)
    peaks[tuple(found[keep].T)] = True
    return peaks


def noise_among_crowds(contrast: SpotContrast) -> SpotContrast:
    """``contrast`` for an image with a clean background (no texture's dark dips): each scale judged
    by the noise model alone (:attr:`SpotContrast.by_noise_model`), and the background's response
    taken to be what the image's noise alone makes at each scale where it varies more than
    :data:`CROWD_FACTOR` times that, if it does so at :data:`CROWD_SCALE` px or less: there that is
    small spots crowded everywhere (spots of SD 2 px every 12 px: 3-6 times the noise's
    at 1.5-5 px, so only 0.75 px counted, which keeps too little of such a spot). Clutter broader
    than spots (blobs, out-of-focus light) varies more only at the larger scales, and keeps its
    measure there."""
    noise, only = contrast.scale_noise, contrast.noise_only
    if only is None:
        return contrast
    if not any(n > CROWD_FACTOR * m for scale, n, m in zip(CONTRAST_SCALES, noise, only, strict=True)
               if scale <= CROWD_SCALE):
        return replace(contrast, by_noise_model=True)
    crowded = tuple(m if n > CROWD_FACTOR * m else n for n, m in zip(noise, only, strict=True))
    return replace(contrast, scale_noise=crowded, by_noise_model=True)


def rarity_contrast(ratio: np.ndarray, scale: float) -> np.ndarray:
    """The contrast at :data:`RARITY_SCALE` that noise reaches about as rarely as ``ratio`` (noise SDs,
    above 0) at ``scale`` px: sqrt(ratio^2 + k ln(scale / RARITY_SCALE)), k being :data:`RARITY_GAIN`;
    at least 0, and 0 and below stay."""
    bonus = RARITY_GAIN * math.log(scale / RARITY_SCALE)
    return np.where(ratio > 0, np.sqrt(np.maximum(ratio * ratio + bonus, 0.0)), ratio)


def measure_contrast(data: np.ndarray, block: int = 16, levels: BackgroundLevels | None = None) -> SpotContrast:
    """Measure what :meth:`SpotContrast.of` needs on the 2-D image ``data``: its background levels in
    ``block`` px blocks, unless the network's input ``levels`` of the same image are given. Any
    noise scale in them divides the responses at a track and over the background alike, so the
    contrast is the same with or without it."""
    if levels is None:
        levels = background_levels(data, block)
    margin = filter_reach(max(CONTRAST_SCALES)) + 1
    windows = sample_windows(data.shape, margin, _WINDOWS)
    if not windows:  # an image too small for a window: the whole of it
        windows = [(slice(0, data.shape[0]), slice(0, data.shape[1]))]
        margin = 0
    normalised = [levels.apply(np.asarray(data[box], dtype=np.float32),
                               np.arange(box[0].start, box[0].stop), np.arange(box[1].start, box[1].stop))
                  for box in windows]
    inner = (slice(margin, -margin),) * 2 if margin else (slice(None),) * 2
    responses = [[log_filter(x, scale)[inner] for x in normalised] for scale in CONTRAST_SCALES]
    noise = [_response_sd(per_window) for per_window in responses]
    noise = _away_from_objects(responses, noise)
    dips = sum(_dark_dips([per_window[i] / n for per_window, n in zip(responses, noise, strict=True)])
               for i in range(len(normalised)))
    area = sum(r.size for r in responses[0])
    noisy = [x for x, box in zip(normalised, windows, strict=True) if not grey_levels_rule(data[box])]
    return SpotContrast(levels, tuple(noise), dips / area * 1e6, area, noise_only=_noise_only(noisy))


def _noise_only(normalised: list[np.ndarray]) -> tuple[float, ...] | None:
    """Per scale of :data:`CONTRAST_SCALES`, the SD of the LoG response that the noise of the
    windows ``normalised`` (the image in noise units; none whose grey levels set its pixel noise)
    alone gives (their :func:`~cerber_model.runtime.images.noise_model`); None where there are none."""
    model = noise_model(normalised)
    if model is None:
        return None
    return tuple(model.sd(functools.partial(log_filter, scale=scale), ("log", scale)) for scale in CONTRAST_SCALES)


def _response_sd(per_window: list[np.ndarray], keep: list[np.ndarray] | None = None) -> float:
    """The robust SD of one scale's response over the windows (only where ``keep``, if given)."""
    parts = per_window if keep is None else [r[k] for r, k in zip(per_window, keep, strict=True)]
    values = np.concatenate([r.ravel() for r in parts])
    if values.size > _SAMPLES:  # a fixed random share: the median of 200,000 is as good, and cheaper
        values = values[np.random.default_rng(0).choice(values.size, _SAMPLES, replace=False)]
    return max(robust_sd(values), _NOISE_FLOOR)


def _away_from_objects(responses: list[list[np.ndarray]], noise: list[float]) -> list[float]:
    """Each scale's robust SD measured again away from bright objects. A bright spot's response
    reaches about 3 SD of the scale beyond it, so where bright spots crowd (beads, saturated spots),
    at the larger scales most pixels lie in one's reach, their robust SD counts the spots and not
    the background (20 times the noise's at 5 px, measured on 225 spots in 640 x 640 px), and
    :meth:`SpotContrast.measured` would leave the scales out at which a flat-topped spot peaks.
    Objects: pixels that stand out by :data:`OBJECT_LEVEL` at any scale. Each scale's SD is taken
    again on the pixels farther than 3 SD of that scale from them, or, where fewer than
    :data:`OBJECT_FREE` of the pixels are, on that share of the pixels farthest from them."""
    from scipy import ndimage

    distances = []
    for w in range(len(responses[0])):
        objects = np.zeros(responses[0][w].shape, dtype=bool)
        for per_window, n in zip(responses, noise, strict=True):
            objects |= per_window[w] >= OBJECT_LEVEL * n
        distances.append(ndimage.distance_transform_edt(~objects) if objects.any() else np.full(objects.shape, np.inf))
    if all(np.isinf(d).all() for d in distances):
        return noise
    farthest = float(np.quantile(np.concatenate([d.ravel() for d in distances]), 1 - OBJECT_FREE))
    return [_response_sd(per_window, [d > min(3 * scale, farthest) for d in distances])
            for scale, per_window in zip(CONTRAST_SCALES, responses, strict=True)]


def _dark_dips(ratios: list[np.ndarray]) -> int:
    """How many dark dips stand out by :data:`TEXTURE_LEVEL` in one window's contrast ``ratios`` (one
    array per scale): local minima of the response below minus that level, leaving out those deepest at
    the largest scale (broader than any spot: a strongly curved background's undulations) and the dark
    rings that bright spots leave at every scale larger than their own: dips whose bright peaks
    within 3 SD + 2 px (SD: the scale at which the dip is deepest), counting those at least
    :data:`RING_PEAK` times as high as the dip is deep, reach :data:`RING_RATIO` times its depth
    together. Together, because neighbouring spots' rings add up: a crowd of broad spots leaves
    dips deeper than a third of any one of them (on the prototype's look at SNR 4, comparing each
    peak with the dip alone counted 4-46 dips per megapixel; together, 4-19)."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    stack = np.stack(ratios)
    bright, dark = stack.max(axis=0), -stack.min(axis=0)
    dips = np.argwhere((dark == ndimage.maximum_filter(dark, 3)) & (dark >= TEXTURE_LEVEL))
    # A dip deepest at the largest scale is broader than any spot: the undulation that the background
    # estimate leaves on a strongly curved background where the noise is low, not texture.
    dips = dips[stack.argmin(axis=0)[dips[:, 0], dips[:, 1]] < len(ratios) - 1]
    peaks = np.argwhere((bright == ndimage.maximum_filter(bright, 3)) & (bright >= TEXTURE_LEVEL))
    if len(dips) == 0 or len(peaks) == 0:
        return len(dips)
    depth = dark[dips[:, 0], dips[:, 1]]
    reach = 3 * np.asarray(CONTRAST_SCALES)[stack.argmin(axis=0)[dips[:, 0], dips[:, 1]]] + 2
    heights = bright[peaks[:, 0], peaks[:, 1]]
    near = cKDTree(peaks).query_ball_point(dips, reach)
    rings = (heights[found] for found in near)
    return int(sum(np.sum(h[h >= RING_PEAK * d]) < RING_RATIO * d for h, d in zip(rings, depth, strict=True)))
