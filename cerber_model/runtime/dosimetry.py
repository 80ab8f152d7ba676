"""Dosimetry: track counts -> fluence (tracks per cm^2) with its uncertainty.

A count of tracks over an area is a Poisson count, so its interval is the exact
(Garwood) one: for ``n`` tracks the 95% interval of the expected count is
``[chi2(2.5%; 2n) / 2, chi2(97.5%; 2n + 2) / 2]`` (lower bound 0 for ``n = 0``),
divided by the area for the fluence. It covers counting statistics only, not the
uncertainty of the pixel size, of the area or of the detection itself.

At high track densities tracks overlap and are counted as one. The correction
models this as a dead area around each track: with tracks at random (Poisson)
positions, a track is counted when no other lies within the *resolving distance*
``d`` px, so ``n = N exp(-N pi d^2 / A)`` tracks are seen out of ``N`` on ``A`` px,
inverted with the Lambert W function. ``d`` is an effective parameter of a model
(a merged pair loses one track, not two), measured on synthetic images by
``benchmarks/bench_linearity.py``; a bundle carries its own (the default model's is
5.71 px), and :data:`DEFAULT_RESOLVING_DISTANCE_PX` (v1's) stands for bundles without
one. Beyond ``n pi d^2 / A = 1/e`` the observed count no longer grows with the true one
and cannot be corrected.

False detections (noise or clutter taken for tracks) add to the count; no
correction can remove them.

The gamma-function forms of scipy.special are used rather than scipy.stats: the
frozen analyzer leaves scipy.stats out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Resolving distance (px) of the overlap correction for bundles without their own: v1's (the first
#: default model, ``cerber_model/models/v1``), 9.57 px fitted
#: by ``python benchmarks/bench_linearity.py --repeats 3`` on 1024 x 1024 16-bit images of spots of
#: SD 1.2-2.5 px, 200 to 1600 per image (README, "Fluence"). A bundle's own
#: ``resolving_distance_px`` replaces it.
DEFAULT_RESOLVING_DISTANCE_PX = 9.6
#: Confidence of the reported intervals.
CONFIDENCE = 0.95
#: p-value below which a set of counts is flagged as not Poisson (uneven irradiation, a bad image).
DISPERSION_ALPHA = 0.01
#: um^2 in one cm^2.
_UM2_PER_CM2 = 1e8


def poisson_interval(count: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Garwood) two-sided interval of the mean of a Poisson variable observed as ``count``.

    ``chi2.ppf(a/2, 2n)/2`` and ``chi2.ppf(1-a/2, 2n+2)/2``, written as inverse regularised gamma
    functions; for ``count = 0`` the lower bound is 0 (``[0, 3.689]`` at 95%).
    """
    from scipy.special import gammaincinv

    if count < 0 or int(count) != count:
        raise ValueError(f"a count must be a whole number >= 0, got {count}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    alpha = 1 - confidence
    low = float(gammaincinv(count, alpha / 2)) if count > 0 else 0.0
    high = float(gammaincinv(count + 1, 1 - alpha / 2))
    return low, high


def area_cm2(area_px: float, pixel_size_um: float) -> float:
    """``area_px`` pixels of ``pixel_size_um`` x ``pixel_size_um`` micrometres, in cm^2."""
    return area_px * pixel_size_um**2 / _UM2_PER_CM2


def observed_count(true_count: float, area_px: float, resolving_distance_px: float) -> float:
    """How many of ``true_count`` tracks at random positions on ``area_px`` px are counted, by the
    dead-area model: ``N exp(-N pi d^2 / A)``."""
    return true_count * math.exp(-true_count * math.pi * resolving_distance_px**2 / area_px)


def overlap_corrected_count(count: float, area_px: float, resolving_distance_px: float) -> float:
    """The true count ``N`` whose :func:`observed_count` is ``count`` (the smaller root):
    ``N = -(A / a) W0(-count a / A)`` with ``a = pi d^2``. NaN where ``count a / A`` exceeds 1/e, the
    largest count the model can produce: too dense to correct."""
    from scipy.special import lambertw

    if area_px <= 0:
        raise ValueError(f"the area must be positive, got {area_px} px")
    if resolving_distance_px < 0:
        raise ValueError(f"the resolving distance must be >= 0, got {resolving_distance_px} px")
    dead = math.pi * resolving_distance_px**2 / area_px
    if count == 0 or dead == 0:
        return float(count)
    x = count * dead
    if x > 1 / math.e:
        return math.nan
    return float(-lambertw(-x, 0).real / dead)


@dataclass(frozen=True)
class Fluence:
    """Tracks per area, for one image or pooled over several.

    track_count: tracks counted; area_px: pixels of the area they were counted in.
    area_cm2, fluence_per_cm2, fluence_ci95_low, fluence_ci95_high: None without a pixel size;
    the interval is the exact Poisson one of the count, divided by the area.
    corrected_count, corrected_fluence_per_cm2: after the overlap correction; NaN where the
    image is too dense to correct.
    images: how many images the figures cover.
    """

    track_count: int
    area_px: float
    area_cm2: float | None
    fluence_per_cm2: float | None
    fluence_ci95_low: float | None
    fluence_ci95_high: float | None
    corrected_count: float
    corrected_fluence_per_cm2: float | None
    images: int = 1

    @property
    def saturated(self) -> bool:
        """True where the count is too dense for the overlap correction."""
        return math.isnan(self.corrected_count)

    def describe(self) -> str:
        """One line: ``1.23e+05 per cm^2 (95% CI 1.1e+05-1.4e+05), corrected 1.3e+05``."""
        if self.fluence_per_cm2 is None:
            return ""
        text = (f"{self.fluence_per_cm2:.4g} per cm^2 (95% CI {self.fluence_ci95_low:.4g}-"
                f"{self.fluence_ci95_high:.4g})")
        if self.saturated:
            return text + ", too dense to correct for overlaps"
        if round(self.corrected_count) != self.track_count:
            text += f", corrected for overlaps {self.corrected_fluence_per_cm2:.4g}"
        return text


def _per_cm2(value: float, area: float | None) -> float | None:
    return None if area is None else value / area


def image_fluence(track_count: int, area_px: float, pixel_size_um: float | None = None,
                  resolving_distance_px: float = DEFAULT_RESOLVING_DISTANCE_PX) -> Fluence:
    """The fluence of ``track_count`` tracks counted on ``area_px`` pixels of one image.

    ``pixel_size_um``: micrometres per pixel (None: unknown, so no per-cm^2 figures).
    """
    if pixel_size_um is not None and not pixel_size_um > 0:
        raise ValueError(f"the pixel size must be positive, got {pixel_size_um}")
    area = area_cm2(area_px, pixel_size_um) if pixel_size_um else None
    low, high = poisson_interval(track_count)
    corrected = overlap_corrected_count(track_count, area_px, resolving_distance_px)
    return Fluence(track_count, float(area_px), area, _per_cm2(track_count, area), _per_cm2(low, area),
                   _per_cm2(high, area), corrected, _per_cm2(corrected, area))


def pooled_fluence(parts: Sequence[Fluence]) -> Fluence:
    """All ``parts`` as one area: counts and areas summed, the interval that of the total count.

    The overlap correction is made per image (it depends on each image's density), so the pooled
    corrected count is the sum of theirs. Per-cm^2 figures need every part's pixel size.
    """
    if not parts:
        raise ValueError("nothing to pool")
    count = sum(p.track_count for p in parts)
    areas = [p.area_cm2 for p in parts]
    area = None if any(a is None for a in areas) else float(sum(a for a in areas if a is not None))
    low, high = poisson_interval(count)
    corrected = float(sum(p.corrected_count for p in parts))
    return Fluence(count, float(sum(p.area_px for p in parts)), area, _per_cm2(count, area), _per_cm2(low, area),
                   _per_cm2(high, area), corrected, _per_cm2(corrected, area), sum(p.images for p in parts))


@dataclass(frozen=True)
class Dispersion:
    """A chi-square test of whether counts on several areas are Poisson with one common fluence.

    chi2: ``sum((n_i - e_i)^2 / e_i)`` with ``e_i`` the total count shared out in proportion to
    the areas (the index of dispersion when the areas are equal); dof: images - 1; p_value: the
    chance of a chi2 at least this large from Poisson counts; uneven: p_value below
    :data:`DISPERSION_ALPHA`. worst: index of the count furthest from its expectation, in SDs
    (``(n_i - e_i) / sqrt(e_i)``, ``worst_z``).
    """

    chi2: float
    dof: int
    p_value: float
    worst: int
    worst_z: float

    @property
    def uneven(self) -> bool:
        return self.p_value < DISPERSION_ALPHA

    def describe(self) -> str:
        verdict = ("not Poisson: uneven irradiation or a bad image" if self.uneven
                   else "consistent with Poisson")
        return f"dispersion chi2 {self.chi2:.4g} on {self.dof} dof, p = {self.p_value:.3g}: {verdict}"


def dispersion_test(counts: Sequence[int], areas: Sequence[float] | None = None) -> Dispersion | None:
    """Test ``counts`` (tracks per image) against Poisson counts of one fluence over ``areas``
    (any one unit; default: all equal). None for fewer than two images. The test uses the counts
    as counted: corrected counts are not Poisson."""
    from scipy.special import chdtrc

    n = np.asarray(counts, dtype=np.float64)
    a = np.ones_like(n) if areas is None else np.asarray(areas, dtype=np.float64)
    if n.shape != a.shape:
        raise ValueError(f"{len(n)} counts but {len(a)} areas")
    if len(n) < 2:
        return None
    if (a <= 0).any() or (n < 0).any():
        raise ValueError("areas must be positive and counts >= 0")
    total = n.sum()
    if total == 0:
        return Dispersion(0.0, len(n) - 1, 1.0, 0, 0.0)
    expected = total * a / a.sum()
    z = (n - expected) / np.sqrt(expected)
    chi2 = float(np.sum(z**2))
    worst = int(np.argmax(np.abs(z)))
    return Dispersion(chi2, len(n) - 1, float(chdtrc(len(n) - 1, chi2)), worst, float(z[worst]))


def linearity_note(resolving_distance_px: float) -> str:
    """What a reader of the counts should know about their linearity (plain text, paragraphs
    separated by blank lines), for a correction with ``resolving_distance_px``."""
    return (f"Tracks that overlap are counted as one, so the count falls behind the true number as the density "
            f"grows. The corrected counts invert a dead-area model for tracks at random positions, "
            f"n = N exp(-N pi d^2 / A), with a resolving distance d = {resolving_distance_px:g} px measured for "
            "the model on synthetic images (benchmarks/bench_linearity.py). Where the count is too dense for "
            "the model, the corrected count is left empty."
            "\n\n"
            "The 95% intervals are the exact Poisson intervals of the counts; they do not include the "
            "uncertainty of the pixel size, the area or the detection. False detections (noise or clutter "
            "taken for tracks) are not corrected: check the overlays of sparse images, where they weigh most.")
