"""The app's exports: what each writes, from which results, and the file name it suggests.

Plain Python over the session and :mod:`cerber_model.runtime` (export, interop, spectra, report);
the window asks for the file name (the save dialog asks before replacing a file) and reports
errors. Every file is written atomically. Tracks, counts and spectra are those inside each image's
regions, as the window shows them. The folder report renders an overlay per image, so the window
prepares it here (:func:`prepare_report`, quick, from the session) and writes it on a worker
(:func:`write_prepared_report`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cerber_model.runtime.dosimetry import linearity_note
from cerber_model.runtime.export import (
    pooled_row,
    render_overlay,
    summary_row,
    write_overlay_png,
    write_probability_tiff,
    write_summary_csv,
    write_tracks_csv,
)
from cerber_model.runtime.interop import NAPARI_SUFFIX, ROIS_SUFFIX, write_imagej_rois, write_napari_points
from cerber_model.runtime.progress import CancelToken, ProgressFn
from cerber_model.runtime.report import REPORT_NAME, shrink, write_report
from cerber_model.runtime.spectra import Spectrum, spectra_csv_name, write_spectra_csv

from .dose import USER_SETTING
from .session import Session

#: The spectra the folder report shows (diameters in µm only where every pixel size is known).
REPORT_QUANTITIES = ("integrated_intensity", "area_px", "diameter_um")


class ExportKind(enum.Enum):
    #: title of the save dialog, suffix of the suggested name (after the image's stem, or the whole
    #: name for the exports of every analyzed image), file filter
    TRACKS = ("Export tracks", "_tracks.csv", "CSV (*.csv)")
    SUMMARY = ("Export summary", "summary.csv", "CSV (*.csv)")  # of every analyzed image
    OVERLAY = ("Export overlay", "_overlay.png", "PNG (*.png)")
    PROBABILITY = ("Export probability map", "_probability.tif", "TIFF (*.tif)")
    ROIS = ("Export ImageJ ROI set", ROIS_SUFFIX, "ImageJ ROI set (*.zip)")
    NAPARI = ("Export napari points", NAPARI_SUFFIX, "CSV (*.csv)")
    SPECTRA = ("Export spectra", "spectrum_<quantity>.csv", "CSV (*.csv)")  # of every analyzed image
    REPORT = ("Export folder report", REPORT_NAME, "HTML (*.html)")  # of every analyzed image

    def __init__(self, title: str, suffix: str, file_filter: str):
        self.title, self.suffix, self.file_filter = title, suffix, file_filter

    @property
    def of_all_images(self) -> bool:
        return self in (ExportKind.SUMMARY, ExportKind.SPECTRA, ExportKind.REPORT)


def nothing_to_export(kind: ExportKind, session: Session) -> str | None:
    """What the user must do first, or None when there is something to export."""
    if kind.of_all_images:
        return None if session.results else "Analyze some images first."
    return None if session.selected_result() is not None else "Analyze the image first."


def suggested_path(kind: ExportKind, session: Session, last_folder: Path,
                   quantity: str = "integrated_intensity") -> Path:
    """Beside the selected image, named after it; what covers every analyzed image in the last
    folder used (spectra named after their ``quantity``)."""
    if kind is ExportKind.SPECTRA:
        return last_folder / spectra_csv_name(quantity)
    if kind.of_all_images:
        return last_folder / kind.suffix
    image = session.selected
    assert image is not None
    return image.with_name(f"{image.stem}{kind.suffix}")


def summary_rows(session: Session) -> list[dict]:
    """One summary row per analyzed image (counts and fluence over its usable area), then, for two
    or more, the pooled row ``ALL`` with the dispersion test of their counts."""
    doses = session.doses()
    results = session.results
    resolving = session.resolving_distance_px
    rows = [summary_row(str(d.path), d.tracks, results[d.path].model_name, fluence=d.fluence,
                        pixel_size_source=d.pixel_size_source,
                        regions=str(d.regions_file or "") if d.has_regions else "",
                        resolving_distance_px=resolving, network=results[d.path].network)
            for d in doses]
    pooled = session.pooled_dose()
    if len(doses) > 1 and pooled is not None:
        counted = [d for d in doses if d.area_px > 0]
        rows.append(pooled_row("ALL", [rows[doses.index(d)] for d in counted], [d.fluence for d in counted],
                               pooled.dispersion))
    return rows


def write_export(kind: ExportKind, session: Session, path: Path, opacity: float,
                 quantity: str = "integrated_intensity") -> Path:
    """Write ``kind`` of the selected image (all analyzed images for the summary, the spectra and the
    report) to ``path``.

    ``opacity`` (0..1) is the probability tint of the overlay, as on screen; ``quantity`` that of
    the spectra. Raises OSError, or ValueError (with what to do) when it cannot be made.
    """
    if kind is ExportKind.SUMMARY:
        return write_summary_csv(summary_rows(session), path)
    if kind is ExportKind.SPECTRA:
        return write_spectra_csv(path, session.spectra(quantity, pooled=True), quantity)
    if kind is ExportKind.REPORT:
        return write_prepared_report(prepare_report(session, opacity), path)
    result = session.selected_result()
    dose = session.dose(session.selected) if session.selected is not None else None
    if result is None or dose is None:
        raise ValueError(nothing_to_export(kind, session))
    if kind is ExportKind.TRACKS:
        return write_tracks_csv(dose.tracks, path)
    if kind is ExportKind.PROBABILITY:
        return write_probability_tiff(result.probability, path)
    if kind is ExportKind.ROIS:
        return write_imagej_rois(dose.tracks, path)
    if kind is ExportKind.NAPARI:
        return write_napari_points(dose.tracks, path)
    rgb = render_overlay(result.image.data, result.probability, dose.tracks.labels, opacity)
    return write_overlay_png(rgb, path)


@dataclass(frozen=True)
class ReportJob:
    """What the folder report shows, taken from the session at one moment: the summary rows,
    settings, spectra by quantity, the linearity note and, per image, what its overlay is drawn
    from (name, input, probability map, label image of the tracks inside its regions)."""

    rows: list[dict]
    settings: dict[str, Any]
    model_name: str
    spectra: dict[str, dict[str, Spectrum]]
    note: str
    overlays: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]
    opacity: float


def prepare_report(session: Session, opacity: float = 0.6) -> ReportJob:
    """The folder report's content from the session (quick: the overlays are drawn when written)."""
    if not session.results:
        raise ValueError("Analyze some images first.")
    doses = session.doses()
    names = session.spectrum_names()
    spectra: dict[str, dict[str, Spectrum]] = {}
    for quantity in REPORT_QUANTITIES:
        if quantity == "diameter_um" and not all(d.pixel_size_um for d in doses):
            continue
        try:
            spectra[quantity] = session.spectra(quantity, pooled=True)
        except ValueError:  # intensities normalised differently: the table still reports the counts
            continue
    resolving = session.resolving_distance_px
    bundle = session.bundle
    settings = {
        "images": len(doses),
        "model": (f"{bundle.name} ({bundle.path})" if bundle.path else bundle.name) if bundle is not None else "",
        "threshold": session.threshold,
        "smallest contrast (noise SDs)": session.min_contrast if session.measures_contrast else "not measured",
        "pixel size (um)": (f"{session.pixel_size_um:g} ({USER_SETTING})" if session.pixel_size_um
                            else "from each file, where it says"),
        "regions": "drawn in Cerber or read from <stem>_regions.json beside each image, where there are any",
        "resolving distance (px)": resolving,
    }
    overlays = []
    for d in doses:
        result = session.results[d.path]
        overlays.append((names[d.path], result.image.data, result.probability, d.tracks.labels))
    model_name = bundle.name if bundle is not None else ""
    return ReportJob(summary_rows(session), settings, model_name, spectra, linearity_note(resolving), overlays,
                     opacity)


def write_prepared_report(job: ReportJob, path: Path, *, progress: ProgressFn | None = None,
                          cancel: CancelToken | None = None) -> Path:
    """Draw each image's overlay (shrunk to a thumbnail) and write the report to ``path`` atomically.
    ``progress(images drawn, images)``; ``cancel`` is checked between images."""
    thumbnails = []
    for done, (name, data, probability, labels) in enumerate(job.overlays, 1):
        if cancel is not None:
            cancel.check()
        thumbnails.append((name, shrink(render_overlay(data, probability, labels, job.opacity))))
        if progress is not None:
            progress(done, len(job.overlays))
    return write_report(path, job.rows, settings=job.settings, model_name=job.model_name, thumbnails=thumbnails,
                        spectra=job.spectra, linearity_note=job.note)
