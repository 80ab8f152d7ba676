"""Writing results: track tables, summaries, probability maps and overlays.

Every file is written atomically: into a temporary file in the same folder,
then renamed over the target, so an interrupted run or a full disk never leaves
a half-written file. Callers decide whether an existing file may be replaced.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .dosimetry import DEFAULT_RESOLVING_DISTANCE_PX, Dispersion, Fluence, image_fluence, pooled_fluence
from .files import atomic_write
from .tracks import TRACK_COLUMNS, Tracks

#: Columns of summary.csv: one row per image, then one pooled row per folder of images (``file``
#: "ALL", or "ALL <folder>" when the images come from several folders; ``images`` says how many).
#: Areas and fluences are over the usable area (``regions``: the regions file used, else the whole
#: image); the fluence interval is the exact 95% Poisson interval of the count; the dispersion
#: columns (pooled rows only) test the folder's counts against Poisson (see
#: :mod:`cerber_model.runtime.dosimetry`). ``min_contrast`` is the smallest track contrast kept (0:
#: every track); ``network`` names the other model whose network made the map (on a clean
#: background, where the model's setting for those names one), empty for the model's own.
SUMMARY_COLUMNS = ("file", "height_px", "width_px", "track_count", "density_per_mm2",
                   "pixel_size_um", "threshold", "min_contrast", "model", "network",
                   "pixel_size_source", "regions", "images", "area_px", "area_cm2", "fluence_per_cm2",
                   "fluence_ci95_low", "fluence_ci95_high", "resolving_distance_px", "corrected_count",
                   "corrected_fluence_per_cm2", "dispersion_chi2", "dispersion_dof", "dispersion_p")
#: Overlay colours (RGB): probability tint and track outlines (the app's viewer uses them too).
PROBABILITY_COLOUR = np.array([255, 0, 200], dtype=np.float32)
OUTLINE_COLOUR = np.array([255, 220, 0], dtype=np.uint8)
#: Display range of a gray image: these percentiles of its values, for 8- and 16-bit alike.
DISPLAY_PERCENTILES = (0.5, 99.8)


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}" if np.isfinite(value) else ""
    return str(value)


def _write_csv(path: Path | str, header: Iterable[str], rows: Iterable[Iterable]) -> Path:
    def write(fh):
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_format(v) for v in row])
        text.flush()
        text.detach()

    return atomic_write(path, write)


def write_tracks_csv(tracks: Tracks, path: Path | str) -> Path:
    """One row per track, columns :data:`cerber_model.tracks.TRACK_COLUMNS`."""
    cols = [tracks.columns[c] for c in TRACK_COLUMNS]
    rows = ([c[i].item() for c in cols] for i in range(len(tracks)))
    return _write_csv(path, TRACK_COLUMNS, rows)


def _fluence_columns(fluence: Fluence) -> dict:
    return {
        "track_count": fluence.track_count,
        "density_per_mm2": None if fluence.fluence_per_cm2 is None else fluence.fluence_per_cm2 / 100,
        "images": fluence.images,
        "area_px": fluence.area_px,
        "area_cm2": fluence.area_cm2,
        "fluence_per_cm2": fluence.fluence_per_cm2,
        "fluence_ci95_low": fluence.fluence_ci95_low,
        "fluence_ci95_high": fluence.fluence_ci95_high,
        "corrected_count": fluence.corrected_count,
        "corrected_fluence_per_cm2": fluence.corrected_fluence_per_cm2,
    }


def summary_row(file: str, tracks: Tracks, model: str, *, fluence: Fluence | None = None,
                pixel_size_source: str = "", regions: str = "",
                resolving_distance_px: float = DEFAULT_RESOLVING_DISTANCE_PX, network: str = "") -> dict:
    """The summary of one analyzed image (columns :data:`SUMMARY_COLUMNS`).

    ``fluence``: the image's counts over its usable area (default: ``tracks`` over the whole
    image, corrected with ``resolving_distance_px``); ``regions``: the regions file that set
    that area; ``pixel_size_source``: where ``tracks.pixel_size_um`` came from; ``network``: the
    other model whose network made the map ("" for ``model``'s own).
    """
    if fluence is None:
        fluence = image_fluence(tracks.count, tracks.image_shape[0] * tracks.image_shape[1], tracks.pixel_size_um,
                                resolving_distance_px)
    return {
        "file": file,
        "height_px": tracks.image_shape[0],
        "width_px": tracks.image_shape[1],
        "pixel_size_um": tracks.pixel_size_um,
        "threshold": tracks.threshold,
        "min_contrast": tracks.min_contrast,
        "model": model,
        "network": network,
        "pixel_size_source": pixel_size_source if tracks.pixel_size_um else "",
        "regions": regions,
        "resolving_distance_px": resolving_distance_px,
        **_fluence_columns(fluence),
    }


def _common(rows: list[dict], column: str):
    """The value all ``rows`` share in ``column``, else None."""
    values = {r.get(column) for r in rows}
    return values.pop() if len(values) == 1 else None


def pooled_row(file: str, rows: list[dict], fluences: list[Fluence], dispersion: Dispersion | None) -> dict:
    """The summary of several images as one area (``rows`` their :func:`summary_row`, ``fluences``
    their fluences, ``dispersion`` the test of their counts): counts and areas summed, settings
    that all share kept, the others left empty."""
    pooled = pooled_fluence(fluences)
    row = {column: _common(rows, column) for column in ("pixel_size_um", "threshold", "min_contrast", "model",
                                                          "network", "pixel_size_source", "resolving_distance_px")}
    row.update(file=file, **_fluence_columns(pooled))
    if dispersion is not None:
        row.update(dispersion_chi2=dispersion.chi2, dispersion_dof=dispersion.dof, dispersion_p=dispersion.p_value)
    return row


def write_summary_csv(rows: list[dict], path: Path | str) -> Path:
    return _write_csv(path, SUMMARY_COLUMNS, ([r.get(c) for c in SUMMARY_COLUMNS] for r in rows))


def write_probability_tiff(probability: np.ndarray, path: Path | str) -> Path:
    """The probability map as a float32 TIFF (values 0..1)."""
    import tifffile

    return atomic_write(path, lambda fh: tifffile.imwrite(fh, probability.astype(np.float32, copy=False),
                                                          compression="zlib"))


def display_range(data: np.ndarray, low: float = DISPLAY_PERCENTILES[0],
                  high: float = DISPLAY_PERCENTILES[1]):
    """The ``low`` and ``high`` percentiles (0..100) of a 2-D image's values, as numpy scalars of
    its precision; above a megapixel every k-th row and column stand for the whole image."""
    step = max(1, int(np.sqrt(data.size / 1_000_000)))
    lo, hi = np.percentile(data[::step, ::step], [low, high])
    return lo, hi


def display_gray(data: np.ndarray, low: float = DISPLAY_PERCENTILES[0],
                 high: float = DISPLAY_PERCENTILES[1]) -> np.ndarray:
    """An 8-bit rendering of an image, stretched between two percentiles."""
    x = np.asarray(data, dtype=np.float32)
    lo, hi = display_range(x, low, high)
    scaled = (x - lo) * (255.0 / max(float(hi - lo), 1e-6))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def render_overlay(data: np.ndarray, probability: np.ndarray, labels: np.ndarray | None = None,
                   opacity: float = 0.5) -> np.ndarray:
    """An RGB uint8 image: the input in gray, tinted by the probability, track outlines on top."""
    from skimage.segmentation import find_boundaries

    gray = display_gray(data).astype(np.float32)[..., None]
    alpha = (opacity * np.clip(probability, 0, 1)).astype(np.float32)[..., None]
    rgb = gray * (1 - alpha) + PROBABILITY_COLOUR * alpha
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    if labels is not None and labels.any():
        rgb[find_boundaries(labels, mode="outer")] = OUTLINE_COLOUR
    return rgb


def write_overlay_png(rgb: np.ndarray, path: Path | str) -> Path:
    from PIL import Image as PILImage

    return atomic_write(path, lambda fh: PILImage.fromarray(rgb).save(fh, format="PNG"))
