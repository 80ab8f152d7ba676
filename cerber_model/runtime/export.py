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

from .files import atomic_write
from .tracks import TRACK_COLUMNS, Tracks

SUMMARY_COLUMNS = ("file", "height_px", "width_px", "track_count", "density_per_mm2",
                   "pixel_size_um", "threshold", "model")
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


def summary_row(file: str, tracks: Tracks, model: str) -> dict:
    """The summary of one analyzed image (columns :data:`SUMMARY_COLUMNS`)."""
    return {
        "file": file,
        "height_px": tracks.image_shape[0],
        "width_px": tracks.image_shape[1],
        "track_count": tracks.count,
        "density_per_mm2": tracks.density_per_mm2,
        "pixel_size_um": tracks.pixel_size_um,
        "threshold": tracks.threshold,
        "model": model,
    }


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
