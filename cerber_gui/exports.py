"""The app's four exports: what each writes, from which results, and the file name it suggests.

Plain Python over the session and :mod:`cerber_model.runtime.export`; the window asks for the
file name and reports errors.
"""

from __future__ import annotations

import enum
from pathlib import Path

from cerber_model.runtime.export import (
    render_overlay,
    summary_row,
    write_overlay_png,
    write_probability_tiff,
    write_summary_csv,
    write_tracks_csv,
)

from .session import Session


class ExportKind(enum.Enum):
    #: title of the save dialog, suffix of the suggested name (after the image's stem), file filter
    TRACKS = ("Export tracks", "_tracks.csv", "CSV (*.csv)")
    SUMMARY = ("Export summary", "summary.csv", "CSV (*.csv)")  # of every analyzed image
    OVERLAY = ("Export overlay", "_overlay.png", "PNG (*.png)")
    PROBABILITY = ("Export probability map", "_probability.tif", "TIFF (*.tif)")

    def __init__(self, title: str, suffix: str, file_filter: str):
        self.title, self.suffix, self.file_filter = title, suffix, file_filter


def nothing_to_export(kind: ExportKind, session: Session) -> str | None:
    """What the user must do first, or None when there is something to export."""
    if kind is ExportKind.SUMMARY:
        return None if session.results else "Analyze some images first."
    return None if session.selected_result() is not None else "Analyze the image first."


def suggested_path(kind: ExportKind, session: Session, last_folder: Path) -> Path:
    """Beside the selected image, named after it; the summary in the last folder used."""
    if kind is ExportKind.SUMMARY:
        return last_folder / kind.suffix
    image = session.selected
    return image.with_name(f"{image.stem}{kind.suffix}")


def write_export(kind: ExportKind, session: Session, path: Path, opacity: float) -> Path:
    """Write ``kind`` of the selected image (all analyzed images for the summary) to ``path``.

    ``opacity`` (0..1) is the probability tint of the overlay, as on screen. Raises OSError.
    """
    if kind is ExportKind.SUMMARY:
        rows = [summary_row(str(p), r.tracks, r.model_name) for p, r in session.results.items()]
        return write_summary_csv(rows, path)
    result = session.selected_result()
    if result is None:
        raise ValueError(nothing_to_export(kind, session))
    if kind is ExportKind.TRACKS:
        return write_tracks_csv(result.tracks, path)
    if kind is ExportKind.PROBABILITY:
        return write_probability_tiff(result.probability, path)
    rgb = render_overlay(result.image.data, result.probability, result.tracks.labels, opacity)
    return write_overlay_png(rgb, path)
