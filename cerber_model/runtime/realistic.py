"""The realistic synthetic recipe (generator v2): spots among the clutter of real images.

The prototype's recipe (:mod:`.synthesis`) draws spots of SD 2-6 px on smooth
backgrounds; a model trained on it misses small spots and marks blobs, nuclear
rims and texture. This recipe draws, per image:

* spots: elliptic Gaussians of SD 0.6-5 px per axis (log-uniform, any orientation,
  sub-pixel centres, integrated over the pixel area), peak = SNR x the local noise
  SD with SNR log-uniform over a wide range, but never below what a matched
  filter could tell from noise (``min_detectability``: an invisible spot labelled
  a track teaches the network to mark noise); some in touching clusters, a few
  saturated;
* a background of photons: a level, vignetting, a gradient and broad
  inhomogeneities (together from 0 to tens of times a spot's amplitude);
* clutter, labelled as background (never in the mask, never in the centres):
  blobs of SD 6-40 px, nuclear rims and rings (optionally filled), optionally cells
  (bright flat-topped ellipses with sharp edges, half of them textured inside), ridges and
  filaments, textured autofluorescence (a grain coarser than most spots), dust
  shadows and scratches;
* spots where real ones are: a share of them (``in_structure_fraction``) lies on
  that clutter (in nuclei, on tissue and texture), drawn uniformly over its
  area, and a spot's SNR counts the clutter's own fine structure
  around it as noise (``snr_over_clutter``), so a spot in texture stands out from
  the texture as a spot on a flat background stands out from the noise (the
  texture is correlated at spot scale, so a matched filter gains nothing on it);
* a camera: shot noise, read noise, offset and gain, hot pixels, quantised to 8,
  12 or 16 bits (12 and 16 bit stored as 16-bit PNG); the noise SD is 0.4-4 grey
  levels (8 bit) or 16 times that, so faint 8-bit spots span only a few grey levels;
  half of the images are then smoothed over 0.4-1.2 px, as processing smooths the
  noise of most real images (``smoothed_fraction``).

With ``backgrounds`` (a folder of a lab's own images) the photon background,
clutter and camera are replaced by a random crop of one of those images, whose
own spots are first found with a sensitive Laplacian of Gaussian and painted
over (:func:`remove_spots`), so they never become negatives.

The mask marks each spot's ``mask_sigmas`` ellipse (at least ``mask_min_radius``
px); touching spots' masks are kept apart by a one-pixel gap, so mask components
and centres correspond one to one. Every image draws from its own generator
seeded by ``(seed, index)``. Coordinates (row, col), 0-based; angles
counter-clockwise from the column axis as displayed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .synthesis import Sample, _add_gaussian, add_smooth, recipe_settings

#: Largest value of each stored bit depth.
FULL_SCALE = {8: 255, 12: 4095, 16: 65535}
#: Spots' centres are at least this far apart (px), so each keeps its own mask component.
MIN_SEPARATION = 4.0


@dataclass(frozen=True)
class RealisticRecipe:
    """Parameters of the realistic recipe; ranges are (low, high), log-uniform where noted."""

    kind: ClassVar[str] = "realistic"

    height: int = 512
    width: int = 512
    tracks: tuple[int, int] = (0, 40)  # spots per image (inclusive)
    snr: tuple[float, float] = (0.7, 30.0)  # peak / local noise SD, log-uniform
    # Matched-filter SNR, snr x sqrt(pi sd_u sd_v), below which no detector can tell a spot from
    # noise: each spot's SNR is drawn from above the larger of snr[0] and what reaches it.
    min_detectability: float = 2.5
    track_sd: tuple[float, float] = (0.6, 5.0)  # per axis, px, log-uniform
    cluster_fraction: float = 0.25  # share of spots placed touching another
    saturated_fraction: float = 0.03  # share of spots driven past full scale
    background_photons: tuple[float, float] = (0.5, 5000.0)  # mean background level (e-), log-uniform
    read_noise: tuple[float, float] = (1.0, 8.0)  # e-
    vignetting: tuple[float, float] = (0.0, 0.8)  # fall-off towards the corners, share of the level
    gradient: tuple[float, float] = (0.0, 1.0)  # change across the image, share of the level
    inhomogeneities: tuple[int, int] = (0, 6)
    inhomogeneity_amplitude: tuple[float, float] = (0.1, 3.0)  # times the level
    clutter_snr: tuple[float, float] = (1.0, 40.0)  # clutter peaks / noise SD, log-uniform
    blobs: tuple[int, int] = (0, 10)
    blob_sd: tuple[float, float] = (6.0, 40.0)
    rings: tuple[int, int] = (0, 3)
    ring_radius: tuple[float, float] = (12.0, 90.0)
    filaments: tuple[int, int] = (0, 4)
    # Cells or nuclei: flat-topped ellipses with sharp edges, as bright as other clutter, textured
    # inside half the time; their edges defeat the background estimate, as real nuclei's do. Off by
    # default: a model trained with (0, 4) did worse on the annotated samples than one without.
    cells: tuple[int, int] = (0, 0)
    cell_radius: tuple[float, float] = (20.0, 120.0)
    texture_probability: float = 0.4
    # Grain (SD of the smoothing, px) of the autofluorescence texture: coarser than most spots, for
    # a grain of spot size is a field of faint spots labelled background.
    texture_grain: tuple[float, float] = (3.0, 8.0)
    # Share of spots placed on the clutter (cells, tissue, texture) rather than anywhere: real
    # spots sit mostly on such structures, and a network that never sees one there learns to
    # call everything on a bright textured region background.
    in_structure_fraction: float = 0.5
    # Count the clutter's fine structure (its variation at spot scales, times the square root of
    # the spot's area) as noise in the SNR, so spots on texture are as detectable as elsewhere.
    snr_over_clutter: bool = True
    dust: tuple[int, int] = (0, 2)
    scratch_probability: float = 0.15
    hot_pixels: tuple[float, float] = (0.0, 2e-4)  # share of pixels
    bit_depths: tuple[int, ...] = (8, 12, 16)
    noise_grey_levels: tuple[float, float] = (0.4, 4.0)  # noise SD in 8-bit grey levels, log-uniform
    # Processing after the camera (binning, interpolation, denoising, deconvolution) smooths the
    # noise: neighbouring pixels of real microscope images correlate by 0.5-0.8, and the noise
    # makes bumps of spot size. This share of images is smoothed (spots, clutter and noise alike,
    # before hot pixels) by a Gaussian of SD drawn from ``noise_smoothing`` px (0.4-1.2 px gives
    # neighbour correlations of 0.2-0.8).
    smoothed_fraction: float = 0.5
    noise_smoothing: tuple[float, float] = (0.4, 1.2)
    # The mask: each spot's 2-SD ellipse, semi-axes at least 2 px (1 SD and 1.5 px gave a model
    # less sure of clean spots: probability 0.82 against 0.91 for SD 2 px at SNR 5).
    mask_sigmas: float = 2.0
    mask_min_radius: float = 2.0
    backgrounds: str = ""  # a folder of the lab's own images to use as backgrounds

    def __post_init__(self) -> None:
        if self.height < 16 or self.width < 16:
            raise ValueError(f"images must be at least 16 x 16 px, got {self.height} x {self.width}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and len(value) == 2 and f.name != "bit_depths" and value[0] > value[1]:
                raise ValueError(f"recipe range {f.name} has low > high: {value}")
        if min(self.track_sd) <= 0 or min(self.snr) <= 0 or min(self.background_photons) <= 0:
            raise ValueError("track_sd, snr and background_photons must be positive")
        if min(self.texture_grain) <= 0 or self.min_detectability < 0:
            raise ValueError("texture_grain must be positive and min_detectability not negative")
        if min(self.cell_radius) <= 0:
            raise ValueError(f"cell_radius must be positive, got {self.cell_radius}")
        for name in ("in_structure_fraction", "smoothed_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if min(self.noise_smoothing) <= 0:
            raise ValueError(f"noise_smoothing must be positive, got {self.noise_smoothing}")
        if not self.bit_depths or set(self.bit_depths) - set(FULL_SCALE):
            raise ValueError(f"bit_depths must be drawn from 8, 12, 16, got {self.bit_depths}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    #: Settings added since the first recipe files were written, with the values those files
    #: were drawn with: a recipe JSON without them makes the same images as when it was written.
    _ADDED_LATER: ClassVar[dict[str, Any]] = {"min_detectability": 0.0, "texture_grain": (1.5, 6.0),
                                              "in_structure_fraction": 0.0, "snr_over_clutter": False,
                                              "cells": (0, 0), "smoothed_fraction": 0.0}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RealisticRecipe:
        settings = {**cls._ADDED_LATER, **{k: v for k, v in data.items() if k != "kind"}}
        return cls(**recipe_settings(cls, settings))

    def make_sample(self, seed: int, index: int) -> Sample:
        """Synthetic image number ``index`` of the data set with ``seed``."""
        return make_realistic_sample(self, np.random.default_rng([seed, index]))


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], size=None):
    return np.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]), size))


# -- drawing ---------------------------------------------------------------------


def _spot_snrs(recipe: RealisticRecipe, rng: np.random.Generator, sds: np.ndarray) -> np.ndarray:
    """Peak SNRs, log-uniform from each spot's lowest detectable SNR (``min_detectability`` over
    the square root of its area, pi sd_u sd_v) or ``snr[0]``, whichever is higher, to ``snr[1]``."""
    low = np.maximum(recipe.snr[0], recipe.min_detectability / np.sqrt(math.pi * sds[:, 0] * sds[:, 1]))
    low = np.minimum(low, recipe.snr[1])
    return np.exp(rng.uniform(np.log(low), math.log(recipe.snr[1])))


def _background(recipe: RealisticRecipe, rng: np.random.Generator, level: float) -> np.ndarray:
    """Photons per pixel: level x vignetting x gradient, plus broad inhomogeneities."""
    h, w = recipe.height, recipe.width
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    cr, cc = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    reach = np.float32(max(h, w) * rng.uniform(0.6, 1.0))
    r2 = ((rows - np.float32(cr)) / reach) ** 2 + ((cols - np.float32(cc)) / reach) ** 2
    field = np.float32(1) - np.float32(rng.uniform(*recipe.vignetting)) * np.minimum(r2, np.float32(1))
    theta = rng.uniform(0, 2 * math.pi)
    g = np.float32(rng.uniform(*recipe.gradient))
    ramp = (rows / np.float32(h) - np.float32(0.5)) * np.float32(math.sin(theta)) + \
        (cols / np.float32(w) - np.float32(0.5)) * np.float32(math.cos(theta))
    field *= np.float32(1) + g * ramp
    field *= np.float32(level)
    size = max(h, w)
    blobs = [(rng.uniform(0, h), rng.uniform(0, w), *rng.uniform(0.1 * size, 0.8 * size, 2), rng.uniform(0, math.pi),
              level * rng.uniform(*recipe.inhomogeneity_amplitude))
             for _ in range(int(rng.integers(recipe.inhomogeneities[0], recipe.inhomogeneities[1] + 1)))]
    add_smooth(field, blobs)
    return field


def _add_curve(canvas: np.ndarray, points: np.ndarray, sd: float, amplitude: float) -> None:
    """A line through ``points`` (K, 2, spaced <= 0.5 px) with a Gaussian cross-section of SD
    ``sd`` and peak ``amplitude``, added in place (splatted, then blurred in its bounding box)."""
    from scipy import ndimage

    h, w = canvas.shape
    pad = int(math.ceil(4 * sd)) + 2
    lo = np.floor(points.min(axis=0)).astype(int) - pad
    hi = np.ceil(points.max(axis=0)).astype(int) + pad
    r0, c0 = max(lo[0], 0), max(lo[1], 0)
    r1, c1 = min(hi[0], h), min(hi[1], w)
    if r0 >= r1 or c0 >= c1:
        return
    local = np.zeros((hi[0] - lo[0], hi[1] - lo[1]), np.float32)
    p = points - lo
    base = np.floor(p).astype(int)
    frac = (p - base).astype(np.float32)
    spacing = float(np.median(np.hypot(*np.diff(points, axis=0).T))) if len(points) > 1 else 1.0
    for dr, dc, wgt in ((0, 0, (1 - frac[:, 0]) * (1 - frac[:, 1])), (1, 0, frac[:, 0] * (1 - frac[:, 1])),
                        (0, 1, (1 - frac[:, 0]) * frac[:, 1]), (1, 1, frac[:, 0] * frac[:, 1])):
        np.add.at(local, (base[:, 0] + dr, base[:, 1] + dc), wgt * np.float32(spacing))
    local = ndimage.gaussian_filter(local, sd, truncate=4.0)
    local *= np.float32(amplitude * math.sqrt(2 * math.pi) * sd)
    canvas[r0:r1, c0:c1] += local[r0 - lo[0]:r1 - lo[0], c0 - lo[1]:c1 - lo[1]]


def _ring(rng: np.random.Generator, centre: tuple[float, float], radius: float) -> np.ndarray:
    """Points along a wobbly ellipse (a nuclear rim), possibly only an arc of it."""
    aspect = rng.uniform(0.6, 1.0)
    start = rng.uniform(0, 2 * math.pi)
    span = 2 * math.pi if rng.random() < 0.6 else rng.uniform(0.5 * math.pi, 1.7 * math.pi)
    t = start + np.arange(0.0, span, 0.4 / radius)
    wobble = 1 + sum(rng.uniform(-0.06, 0.06) * np.cos(k * t + rng.uniform(0, 2 * math.pi)) for k in (2, 3, 5))
    angle = rng.uniform(0, math.pi)
    u, v = radius * wobble * np.cos(t), aspect * radius * wobble * np.sin(t)
    return np.c_[centre[0] - (u * math.sin(angle) + v * math.cos(angle)),
                 centre[1] + u * math.cos(angle) - v * math.sin(angle)]


def _filament(rng: np.random.Generator, start: tuple[float, float], length: float, curl: float) -> np.ndarray:
    """Points along a smoothly curving line (a ridge or fibre)."""
    n = max(int(length / 0.4), 2)
    heading = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, curl, n)) * 0.4
    heading = np.convolve(heading, np.ones(15) / 15, mode="same") if n > 15 else heading
    return np.c_[start[0] + np.cumsum(0.4 * np.sin(heading)), start[1] + np.cumsum(0.4 * np.cos(heading))]


def _filled_ellipse(canvas: np.ndarray, centre, radius: float, aspect: float, angle: float, amplitude: float,
                    edge: float, ring_only: bool = False) -> None:
    """A flat-topped ellipse with soft edges (a nucleus' interior, or a dust shadow's disc or
    donut when ``ring_only``), added in place."""
    h, w = canvas.shape
    reach = radius + 4 * edge
    r0, r1 = max(int(centre[0] - reach), 0), min(int(centre[0] + reach) + 2, h)
    c0, c1 = max(int(centre[1] - reach), 0), min(int(centre[1] + reach) + 2, w)
    if r0 >= r1 or c0 >= c1:
        return
    dy = np.arange(r0, r1, dtype=np.float32)[:, None] - np.float32(centre[0])
    dx = np.arange(c0, c1, dtype=np.float32)[None, :] - np.float32(centre[1])
    cos, sin = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    u, v = dx * cos - dy * sin, (dx * sin + dy * cos) / np.float32(aspect)
    d = np.sqrt(u * u + v * v) - np.float32(radius)
    if ring_only:
        profile = np.exp(-(d * d) / np.float32(2 * edge * edge))
    else:
        profile = np.float32(1) / (np.float32(1) + np.exp(np.clip(d / np.float32(edge), -30, 30)))
    canvas[r0:r1, c0:c1] += np.float32(amplitude) * profile


def _clutter(recipe: RealisticRecipe, rng: np.random.Generator, unit: float) -> np.ndarray:
    """Everything bright that is not a spot, in photons; ``unit`` is the noise SD at the level."""
    from scipy import ndimage

    h, w = recipe.height, recipe.width
    clutter = np.zeros((h, w), np.float32)

    def amplitude() -> float:
        return float(_log_uniform(rng, recipe.clutter_snr)) * unit

    blobs = []
    for _ in range(int(rng.integers(recipe.blobs[0], recipe.blobs[1] + 1))):
        sd = rng.uniform(*recipe.blob_sd) * rng.uniform(0.6, 1.0, 2)
        blobs.append((rng.uniform(0, h), rng.uniform(0, w), max(sd[0], 6.0), max(sd[1], 6.0),
                      rng.uniform(0, math.pi), amplitude()))
    add_smooth(clutter, blobs)
    for _ in range(int(rng.integers(recipe.rings[0], recipe.rings[1] + 1))):
        radius = rng.uniform(*recipe.ring_radius)
        centre = (rng.uniform(0, h), rng.uniform(0, w))
        points = _ring(rng, centre, radius)
        _add_curve(clutter, points, rng.uniform(1.0, 4.0), amplitude())
        if rng.random() < 0.5:  # a nucleus: a dimmer interior inside the rim
            _filled_ellipse(clutter, centre, radius * 0.95, 1.0, 0.0, 0.3 * amplitude(), rng.uniform(2, 6))
    for _ in range(int(rng.integers(recipe.filaments[0], recipe.filaments[1] + 1))):
        points = _filament(rng, (rng.uniform(0, h), rng.uniform(0, w)), rng.uniform(40, 1.5 * max(h, w)),
                           rng.uniform(0.0, 0.15))
        _add_curve(clutter, points, rng.uniform(0.7, 3.0), amplitude())
    if rng.random() < recipe.scratch_probability:
        points = _filament(rng, (rng.uniform(0, h), rng.uniform(0, w)), 2.0 * max(h, w), 0.0)
        _add_curve(clutter, points, rng.uniform(0.5, 1.2), amplitude())
    if rng.random() < recipe.texture_probability:
        # Autofluorescence: smooth random texture, only in some regions (cells).
        grain = rng.uniform(*recipe.texture_grain)
        texture = ndimage.gaussian_filter(rng.standard_normal((h, w), dtype=np.float32), grain)
        texture *= np.float32(1.0 / max(float(texture.std()), 1e-6))
        region = ndimage.gaussian_filter(rng.standard_normal((h // 8 + 1, w // 8 + 1), dtype=np.float32), 3)
        region = np.repeat(np.repeat(region > np.float32(rng.uniform(-0.1, 0.1)), 8, 0), 8, 1)[:h, :w]
        strength = np.float32(rng.uniform(0.3, 1.5) * unit)
        clutter += np.maximum(texture + np.float32(1.5), 0) * strength * ndimage.gaussian_filter(
            region.astype(np.float32), 8)
    if recipe.cells[1] > 0:  # drawn last, so recipes without cells keep their random stream
        _cells(recipe, rng, clutter, amplitude)
    return clutter


def _cells(recipe: RealisticRecipe, rng: np.random.Generator, clutter: np.ndarray, amplitude) -> None:
    """Add flat-topped bright ellipses with sharp soft edges (cells, nuclei), half of them with
    a coarse texture inside, to ``clutter`` in place."""
    from scipy import ndimage

    h, w = clutter.shape
    for _ in range(int(rng.integers(recipe.cells[0], recipe.cells[1] + 1))):
        body = np.zeros((h, w), np.float32)
        _filled_ellipse(body, (rng.uniform(0, h), rng.uniform(0, w)), rng.uniform(*recipe.cell_radius),
                        rng.uniform(0.6, 1.0), rng.uniform(0, math.pi), 1.0, rng.uniform(1.0, 5.0))
        if rng.random() < 0.5:
            grain = rng.uniform(*recipe.texture_grain)
            texture = ndimage.gaussian_filter(rng.standard_normal((h, w), dtype=np.float32), grain)
            texture *= np.float32(rng.uniform(0.1, 0.4) / max(float(texture.std()), 1e-6))
            body *= np.maximum(np.float32(1) + texture, 0)
        clutter += np.float32(amplitude()) * body


def _dust(recipe: RealisticRecipe, rng: np.random.Generator) -> np.ndarray | None:
    """Transmission (0..1] of dust on the optics: soft dark discs and out-of-focus donuts."""
    n = int(rng.integers(recipe.dust[0], recipe.dust[1] + 1))
    if not n:
        return None
    shade = np.zeros((recipe.height, recipe.width), np.float32)
    for _ in range(n):
        radius = rng.uniform(5, 40)
        _filled_ellipse(shade, (rng.uniform(0, recipe.height), rng.uniform(0, recipe.width)), radius,
                        rng.uniform(0.7, 1.0), rng.uniform(0, math.pi), rng.uniform(0.05, 0.5),
                        rng.uniform(1.5, 0.3 * radius), ring_only=rng.random() < 0.5)
    return np.float32(1) - np.minimum(shade, np.float32(0.9))


def _spot_positions(recipe: RealisticRecipe, rng: np.random.Generator, sds: np.ndarray) -> np.ndarray:
    """Centres (N, 2), some touching an earlier spot, all at least MIN_SEPARATION apart."""
    h, w = recipe.height, recipe.width
    placed: list[tuple[float, float]] = []
    for i in range(len(sds)):
        for _ in range(20):
            if placed and rng.random() < recipe.cluster_fraction:
                j = int(rng.integers(len(placed)))
                d = max(MIN_SEPARATION, rng.uniform(1.0, 2.5) * (sds[i].max() + sds[j].max()))
                a = rng.uniform(0, 2 * math.pi)
                r, c = placed[j][0] + d * math.sin(a), placed[j][1] + d * math.cos(a)
            else:
                r, c = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
            if 0 <= r <= h - 1 and 0 <= c <= w - 1 and all(
                    (r - pr) ** 2 + (c - pc) ** 2 >= MIN_SEPARATION**2 for pr, pc in placed):
                placed.append((r, c))
                break
    return np.array(placed, np.float64).reshape(-1, 2)


def _onto_structures(recipe: RealisticRecipe, rng: np.random.Generator, centres: np.ndarray,
                     clutter: np.ndarray, unit: float) -> np.ndarray:
    """``centres`` with each spot, at chance ``in_structure_fraction``, moved onto the clutter:
    to a point drawn uniformly from where the clutter, smoothed over 4 px, exceeds one noise
    SD (so a nucleus or a patch of tissue draws by its area, a thin bright filament little),
    at least MIN_SEPARATION from every other spot (left where it was if 20 draws find no room)."""
    from scipy import ndimage

    move = rng.random(len(centres)) < recipe.in_structure_fraction
    weight = (ndimage.gaussian_filter(clutter, 4.0) > np.float32(unit)).ravel().astype(np.float64)
    total = weight.sum()
    if not move.any() or total <= 0:
        return centres
    tries = 20
    picks = rng.choice(weight.size, size=(int(move.sum()), tries), p=weight / total)
    candidates = np.stack([picks // recipe.width, picks % recipe.width], axis=-1).astype(np.float64)
    candidates += rng.uniform(-0.5, 0.5, (*picks.shape, 2))
    candidates = np.clip(candidates, 0, [recipe.height - 1, recipe.width - 1])
    out = centres.copy()
    for k, i in enumerate(np.flatnonzero(move)):
        others = np.delete(out, i, axis=0)
        for r, c in candidates[k]:
            if not len(others) or np.min((others[:, 0] - r) ** 2 + (others[:, 1] - c) ** 2) >= MIN_SEPARATION**2:
                out[i] = (r, c)
                break
    return out


def _clutter_variance(clutter: np.ndarray) -> np.ndarray:
    """The local variance of the clutter's fine structure: the clutter minus its 8 px
    Gaussian blur, squared, averaged over 8 px (what a spot there must stand out from)."""
    from scipy import ndimage

    fine = clutter - ndimage.gaussian_filter(clutter, 8.0)
    return ndimage.gaussian_filter(fine * fine, 8.0)


def mark_spots(shape: tuple[int, int], spots: np.ndarray, mask_sigmas: float, min_radius: float) -> np.ndarray:
    """The mask (bool) of spots (rows: row, col, sd along, sd across, angle, ...).

    Each spot marks its ``mask_sigmas`` ellipse (semi-axes at least ``min_radius``);
    a pixel in several ellipses goes to the nearest centre; pixels touching another
    spot's pixels are cleared, and fragments without their spot's centre pixel
    dropped, so each spot is exactly one 8-connected component holding its centre.
    """
    from scipy import ndimage

    h, w = shape
    labels = np.zeros(shape, np.int32)
    nearest = np.full(shape, np.inf, np.float32)
    for k, (r0, c0, sd_u, sd_v, angle) in enumerate(spots[:, :5], start=1):
        a_u, a_v = max(mask_sigmas * sd_u, min_radius), max(mask_sigmas * sd_v, min_radius)
        reach = max(a_u, a_v) + 1
        r_lo, r_hi = max(int(r0 - reach), 0), min(int(r0 + reach) + 2, h)
        c_lo, c_hi = max(int(c0 - reach), 0), min(int(c0 + reach) + 2, w)
        dy = np.arange(r_lo, r_hi, dtype=np.float32)[:, None] - np.float32(r0)
        dx = np.arange(c_lo, c_hi, dtype=np.float32)[None, :] - np.float32(c0)
        cos, sin = np.float32(math.cos(angle)), np.float32(math.sin(angle))
        u, v = dx * cos - dy * sin, dx * sin + dy * cos
        inside = (u / np.float32(a_u)) ** 2 + (v / np.float32(a_v)) ** 2 <= 1
        distance = dy * dy + dx * dx
        window = nearest[r_lo:r_hi, c_lo:c_hi]
        take = inside & (distance < window)
        window[take] = distance[take]
        labels[r_lo:r_hi, c_lo:c_hi][take] = k
    centres = np.clip(np.rint(spots[:, :2]).astype(int), 0, [h - 1, w - 1])
    labels[centres[:, 0], centres[:, 1]] = np.arange(1, len(spots) + 1)
    big = np.int32(len(spots) + 1)
    highest = ndimage.maximum_filter(labels, 3, mode="constant")
    lowest = ndimage.minimum_filter(np.where(labels > 0, labels, big), 3, mode="constant", cval=big)
    border = (labels > 0) & ((highest != labels) | (lowest != labels))
    border[centres[:, 0], centres[:, 1]] = False
    labels[border] = 0
    parts, _ = ndimage.label(labels > 0, structure=np.ones((3, 3)))
    keep = np.zeros(parts.max() + 1, bool)
    keep[parts[centres[:, 0], centres[:, 1]]] = True
    keep[0] = False
    return keep[parts]


def make_realistic_sample(recipe: RealisticRecipe, rng: np.random.Generator) -> Sample:
    """One image of the realistic recipe with its mask, centres and SNRs."""
    h, w = recipe.height, recipe.width
    n = int(rng.integers(recipe.tracks[0], recipe.tracks[1] + 1))
    sds = _log_uniform(rng, recipe.track_sd, (n, 2))
    angles = rng.uniform(0, math.pi, n)
    snrs = _spot_snrs(recipe, rng, sds)
    saturated = rng.random(n) < recipe.saturated_fraction
    centres = _spot_positions(recipe, rng, sds)
    n = len(centres)
    sds, angles, snrs, saturated = sds[:n], angles[:n], snrs[:n], saturated[:n]
    # Pixels integrate the spot over their area: a box of variance 1/12 per axis.
    effective = np.sqrt(sds**2 + 1 / 12)
    if recipe.backgrounds:
        return _on_lab_background(recipe, rng, centres, sds, effective, angles, snrs, saturated)

    level = float(_log_uniform(rng, recipe.background_photons))
    read = rng.uniform(*recipe.read_noise)
    unit = math.sqrt(level + read**2)
    signal = _background(recipe, rng, level)
    clutter = _clutter(recipe, rng, unit)
    if recipe.in_structure_fraction > 0 and n:
        centres = _onto_structures(recipe, rng, centres, clutter, unit)
    signal += clutter
    transmission = _dust(recipe, rng)
    if transmission is not None:
        signal *= transmission
    np.maximum(signal, 0, out=signal)
    # Spots: peak = SNR x the noise SD where they sit (with the clutter's fine structure, which a
    # matched filter cannot average away, weighted by the spot's area).
    at = (np.rint(centres[:, 0]).astype(int), np.rint(centres[:, 1]).astype(int))
    variance = signal[at] + read**2
    if recipe.snr_over_clutter and n:
        shade = clutter if transmission is None else clutter * transmission
        variance = variance + _clutter_variance(shade)[at] * (math.pi * effective[:, 0] * effective[:, 1])
    local = np.sqrt(variance)
    amplitudes = snrs * local
    # The camera: gain such that the noise at the level is a few grey levels (16 times that for 12
    # and 16 bits), lowered if the brightest unsaturated signal would clip.
    depth = int(rng.choice(recipe.bit_depths))
    full = FULL_SCALE[depth]
    offset = rng.uniform(0.0, 0.04) * full
    gain = float(_log_uniform(rng, recipe.noise_grey_levels)) * (1 if depth == 8 else 16) / unit
    brightest = float(signal.max()) + float(amplitudes[~saturated].max(initial=0.0)) + 4 * unit
    gain = min(gain, 0.95 * (full - offset) / brightest)
    amplitudes[saturated] = rng.uniform(1.3, 4.0, int(saturated.sum())) * (full - offset) / gain
    snrs = amplitudes / local
    for (r, c), (sd_u, sd_v), angle, a in zip(centres, effective, angles, amplitudes, strict=True):
        _add_gaussian(signal, r, c, sd_u, sd_v, angle, a)
    electrons = rng.poisson(signal).astype(np.float32)
    electrons += rng.normal(0.0, read, (h, w)).astype(np.float32)
    adu = electrons * np.float32(gain) + np.float32(offset)
    # Drawn only with smoothing on, so that a recipe without it makes the same images as before.
    if recipe.smoothed_fraction and rng.random() < recipe.smoothed_fraction:
        from scipy import ndimage

        adu = ndimage.gaussian_filter(adu, rng.uniform(*recipe.noise_smoothing))
    hot = int(rng.uniform(*recipe.hot_pixels) * h * w)
    adu[rng.integers(0, h, hot), rng.integers(0, w, hot)] += rng.uniform(0.1, 1.0, hot).astype(np.float32) * full
    image = np.clip(np.rint(adu), 0, full).astype(np.uint8 if depth == 8 else np.uint16)
    spots = np.c_[centres, sds, angles]
    mask = mark_spots((h, w), spots, recipe.mask_sigmas, recipe.mask_min_radius)
    return Sample(image, mask.astype(np.uint8) * 255, centres, snrs, sds)


# -- the lab's own backgrounds ------------------------------------------------------

#: Scales (SD, px) at which :func:`remove_spots` looks for spots, and its threshold in
#: noise SDs of each scale's response: sensitive, so faint spots go too.
REMOVAL_SCALES = (0.7, 1.0, 1.5, 2.2, 3.2, 4.5, 6.0)
REMOVAL_THRESHOLD = 3.5


def remove_spots(data: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A lab image with its spots painted over, and the mask of what was painted.

    Spots are the scale-space maxima (over position and :data:`REMOVAL_SCALES`) of
    the scale-normalised negative Laplacian of Gaussian above
    :data:`REMOVAL_THRESHOLD` robust SDs of each scale's response, whose Hessian
    is roughly round (ratio of its eigenvalues over 0.2: ridges, rims and
    filaments are clutter and stay). A disc of 2.5 SD + 1 px around each is
    replaced by the surrounding background (normalised convolution of the rest of
    the image) plus noise of the image's own SD, so it looks like background.
    Returns float32 arrays of the image's shape.
    """
    from scipy import ndimage

    from .images import noise_sd, robust_sd

    x = np.asarray(data, dtype=np.float32)
    h, w = x.shape
    stack = np.empty((len(REMOVAL_SCALES), h, w), np.float32)
    for i, sd in enumerate(REMOVAL_SCALES):
        response = -np.float32(sd * sd) * ndimage.gaussian_laplace(x, sd)
        centre = float(np.median(response))
        spread = robust_sd(response) + 1e-12
        stack[i] = (response - np.float32(centre)) / np.float32(spread)
    peaks = (stack > REMOVAL_THRESHOLD) & (stack == ndimage.maximum_filter(stack, 3, mode="nearest"))
    removed = np.zeros((h, w), bool)
    for i, sd in enumerate(REMOVAL_SCALES):
        rows, cols = np.nonzero(peaks[i])
        if not len(rows):
            continue
        hrr = ndimage.gaussian_filter(x, sd, order=(2, 0))[rows, cols]
        hcc = ndimage.gaussian_filter(x, sd, order=(0, 2))[rows, cols]
        hrc = ndimage.gaussian_filter(x, sd, order=(1, 1))[rows, cols]
        half = np.sqrt(((hrr - hcc) / 2) ** 2 + hrc**2)
        strong, weak = (hrr + hcc) / 2 - half, (hrr + hcc) / 2 + half  # both negative on a spot
        round_ = (weak < 0) & (weak / np.minimum(strong, -1e-12) > 0.2)
        seeds = np.zeros((h, w), bool)
        seeds[rows[round_], cols[round_]] = True
        radius = 2.5 * sd + 1
        disc = np.hypot(*np.mgrid[-int(radius):int(radius) + 1, -int(radius):int(radius) + 1]) <= radius
        removed |= ndimage.binary_dilation(seeds, disc)
    if not removed.any():
        return x.copy(), removed
    keep = (~removed).astype(np.float32)
    fill = np.full((h, w), np.median(x[~removed]) if (~removed).any() else np.median(x), np.float32)
    done = ~removed
    for scale in (4.0, 12.0, 36.0):  # fine first; the middle of wide holes takes a coarser estimate
        weight = ndimage.gaussian_filter(keep, scale)
        smooth = ndimage.gaussian_filter(x * keep, scale) / np.maximum(weight, np.float32(1e-6))
        todo = ~done & (weight > 0.05)
        fill[todo] = smooth[todo]
        done |= todo
    noise = noise_sd(x)
    out = np.where(removed, fill, x)
    out[removed] += np.random.default_rng(seed).normal(0.0, noise, int(removed.sum())).astype(np.float32)
    return out, removed


@functools.lru_cache(maxsize=8)
def _cleaned_background(path: str) -> tuple[np.ndarray, int]:
    """A lab image (float32, spots removed) and its bit depth; cached per process."""
    from .images import read_image

    data = read_image(path).data
    if data.dtype == np.uint8:
        depth = 8
    elif data.dtype == np.uint16:
        depth = 16
    else:  # float images are stored as 16 bit, their range stretched to 0..60000
        lo, hi = float(data.min()), float(data.max())
        data = (data - lo) * (60000.0 / max(hi - lo, 1e-12))
        depth = 16
    cleaned, _ = remove_spots(data)
    return cleaned, depth


def background_files(folder: str | Path) -> list[Path]:
    from .images import list_images

    files = list_images(folder)
    if not files:
        raise ValueError(f"{folder} holds no BMP, PNG or TIFF images to use as backgrounds")
    return files


def _on_lab_background(recipe, rng, centres, sds, effective, angles, snrs, saturated) -> Sample:
    from .images import background_levels

    h, w = recipe.height, recipe.width
    files = background_files(recipe.backgrounds)
    cleaned, depth = _cleaned_background(str(files[int(rng.integers(len(files)))]))
    k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
    source = np.rot90(cleaned, k)
    source = source[:, ::-1] if flip else source
    sh, sw = source.shape
    if sh < h or sw < w:
        source = np.pad(source, ((0, max(h - sh, 0)), (0, max(w - sw, 0))), mode="symmetric")
    r0, c0 = int(rng.integers(source.shape[0] - h + 1)), int(rng.integers(source.shape[1] - w + 1))
    signal = np.array(source[r0:r0 + h, c0:c0 + w], dtype=np.float32)
    full = FULL_SCALE[depth]
    levels = background_levels(signal, 32)
    local = np.array([levels.maps(np.array([r]), np.array([c]))[1][0, 0] for r, c in np.rint(centres).astype(int)])
    amplitudes = snrs * local
    amplitudes[saturated] = rng.uniform(1.3, 4.0, int(saturated.sum())) * full
    snrs = amplitudes / local
    for (r, c), (sd_u, sd_v), angle, a in zip(centres, effective, angles, amplitudes, strict=True):
        _add_gaussian(signal, r, c, sd_u, sd_v, angle, a)
    image = np.clip(np.rint(signal), 0, full).astype(np.uint8 if depth == 8 else np.uint16)
    mask = mark_spots((h, w), np.c_[centres, sds, angles], recipe.mask_sigmas, recipe.mask_min_radius)
    return Sample(image, mask.astype(np.uint8) * 255, centres, snrs, sds)
