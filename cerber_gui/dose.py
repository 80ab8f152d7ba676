"""What an image's count means: the tracks inside its regions, the usable area, the fluence with
its 95% interval and the overlap-corrected value, and the same pooled over the analyzed images
with the test of whether their counts agree.

Plain Python (an import-linter contract keeps Qt out): the session makes these from its results
(:meth:`~cerber_gui.session.Session.dose`, :meth:`~cerber_gui.session.Session.pooled_dose`), the
window shows the text the functions here write, and the exports write the same numbers. The
figures are those of :mod:`cerber_model.runtime.dosimetry` over the usable area of
:mod:`cerber_model.runtime.regions`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cerber_model.runtime.dosimetry import Dispersion, Fluence, poisson_interval
from cerber_model.runtime.spectra import POOLED
from cerber_model.runtime.tracks import Tracks

#: What the pixel size's source is called when the user set it (the file's are "file: <where>").
USER_SETTING = "your setting"


@dataclass(frozen=True)
class ImageDose:
    """One analyzed image's count over its usable area.

    tracks: those inside the usable area (all of them without regions), with the pixel size now
    in use; found: how many were found on the whole image; area_px: usable pixels; image_px:
    pixels of the whole image; pixel_size_source: :data:`USER_SETTING`, ``"file: <where>"`` or ""
    (unknown); file_pixel_size_um: what the file says (None: nothing); regions_file: where the
    regions were read or saved (None: not from a file); has_regions: whether any polygon limits
    the area; current: whether the tracks are at the current threshold and pixel size.
    """

    path: Path
    name: str
    tracks: Tracks
    found: int
    area_px: float
    image_px: int
    pixel_size_um: float | None
    pixel_size_source: str
    file_pixel_size_um: float | None
    regions_file: Path | None
    has_regions: bool
    fluence: Fluence
    current: bool = True

    @property
    def count(self) -> int:
        return self.tracks.count


@dataclass(frozen=True)
class PooledDose:
    """The analyzed images as one area: their pooled fluence, the dispersion test of their counts
    (None for one image), the name of the image furthest from its share, and how many images' tracks
    are still being brought to the current settings."""

    fluence: Fluence
    dispersion: Dispersion | None
    worst: str
    updating: int


def unique_names(names: Sequence[str], folders: Sequence[str]) -> list[str]:
    """Names for spectra and tables: the images' own names, with the folder added where two share a
    name, and never the pooled spectrum's name (:data:`~cerber_model.runtime.spectra.POOLED`)."""
    out = []
    for name, folder in zip(names, folders, strict=True):
        if names.count(name) > 1:
            name = f"{folder}/{name}"
        if name == POOLED:
            name = f"{name} (image)"
        out.append(name)
    return out


# -- text ---------------------------------------------------------------------------------
def number(value: float) -> str:
    """A figure to 3 significant digits, in plain or scientific notation as it reads best."""
    return f"{value:.3g}"


def _interval(low: float, high: float) -> str:
    return f"95% CI {number(low)}–{number(high)}"


def pixel_size_text(dose: ImageDose) -> str:
    if dose.pixel_size_um is None:
        return "pixel size unknown (set it in the toolbar for figures per cm²)"
    source = dose.pixel_size_source
    if (source == USER_SETTING and dose.file_pixel_size_um is not None
            and abs(dose.file_pixel_size_um - dose.pixel_size_um) > 1e-6 * dose.pixel_size_um):
        source += f"; the file says {dose.file_pixel_size_um:.4g} µm"
    return f"pixel size {dose.pixel_size_um:.4g} µm ({source})"


def fluence_text(fluence: Fluence) -> str:
    """``fluence 1.23e+05 per cm² (95% CI 1.1e+05–1.4e+05), overlap-corrected 1.3e+05 per cm²``;
    per px without a pixel size."""
    if fluence.fluence_per_cm2 is not None:
        assert fluence.fluence_ci95_low is not None and fluence.fluence_ci95_high is not None
        text = (f"fluence <b>{number(fluence.fluence_per_cm2)}</b> per cm² "
                f"({_interval(fluence.fluence_ci95_low, fluence.fluence_ci95_high)})")
        corrected = fluence.corrected_fluence_per_cm2
        unit = " per cm²"
    else:
        low, high = poisson_interval(fluence.track_count)
        area = fluence.area_px
        per_px = fluence.track_count / area if area > 0 else float("nan")
        text = f"{number(per_px)} per px ({_interval(low / area, high / area)})" if area > 0 else "no usable area"
        corrected = fluence.corrected_count / area if area > 0 else None
        unit = " per px"
    if fluence.saturated:
        return text + ", too dense to correct for overlaps"
    if corrected is not None:
        text += f", overlap-corrected {number(corrected)}{unit}"
    return text


def area_text(area_px: float, area_cm2: float | None, image_px: int | None = None) -> str:
    """``1.1e-04 cm² (44,000 px, 100% of the image)``; in px alone without a pixel size."""
    head, parts = f"{area_px:,.0f} px", []
    if area_cm2 is not None:
        head, parts = f"{number(area_cm2)} cm²", [f"{area_px:,.0f} px"]
    if image_px:
        parts.append(f"{area_px / image_px:.0%} of the image")
    return head + (f" ({', '.join(parts)})" if parts else "")


def describe_image(dose: ImageDose, threshold: float, model: str, min_contrast: float = 0.0,
                   clean_background: bool = False, network: str = "", coarse: int = 0) -> str:
    """The track panel's summary of one image (HTML; the image's name escaped); ``min_contrast``:
    the smallest track contrast kept (0: every track); ``clean_background``: whether those were the
    model's setting for a clean background; ``network``: the model whose network made the
    probability map, where not ``model``'s own; ``coarse``: how many tracks the coarse look at the
    binned image added."""
    e = html.escape
    where = "in the usable area" if dose.has_regions else "on the whole image"
    lines = [f"<b>{e(dose.name)}</b>: <b>{dose.count}</b> tracks {where}"
             + (f" (of {dose.found} found)" if dose.has_regions else "")]
    area = area_text(dose.area_px, dose.fluence.area_cm2, dose.image_px)
    regions = f", regions from {e(dose.regions_file.name)}" if dose.has_regions and dose.regions_file else (
        ", regions not saved" if dose.has_regions else "")
    lines.append(f"usable area {area}{regions}")
    lines.append(e(pixel_size_text(dose)))
    line = fluence_text(dose.fluence)
    if not dose.fluence.saturated and round(dose.fluence.corrected_count) != dose.count:
        line += f" ({dose.fluence.corrected_count:.1f} tracks)"
    lines.append(line)
    contrast = f", smallest contrast {min_contrast:g}" if min_contrast else ""
    clean = " (the model's setting for a clean background)" if clean_background else ""
    lines.append(f"threshold {threshold:.2f}{contrast}{clean}, model {e(model)}"
                 + (f" (on this clean background, the network of {e(network)})" if network else "")
                 + (f"; {coarse} of the tracks found on the image binned 2 x 2 (broad faint spots)" if coarse else ""))
    return "<br>".join(lines)


def describe_pooled(pooled: PooledDose) -> str:
    """The summary line of all analyzed images (HTML)."""
    f = pooled.fluence
    text = (f"<b>All analyzed</b> ({f.images} image{'s' if f.images != 1 else ''}): <b>{f.track_count}</b> tracks on "
            f"{area_text(f.area_px, f.area_cm2)}, {fluence_text(f)}")
    if pooled.dispersion is not None:
        d = pooled.dispersion
        verdict = ("<b>not Poisson</b>: uneven irradiation or a bad image" if d.uneven
                   else "consistent with Poisson")
        text += f"<br>dispersion χ² {d.chi2:.3g} on {d.dof} dof, p = {d.p_value:.3g}: {verdict}"
        if d.uneven:
            text += f" (furthest from the rest: {html.escape(pooled.worst)}, {d.worst_z:+.1f} SD)"
    if pooled.updating:
        text += f"<br><i>updating {pooled.updating} image{'s' if pooled.updating != 1 else ''} to the settings…</i>"
    return text

