"""Analyzing many images into one results folder: the work of ``cerber analyze`` per image.

One image goes through three stages, each a function here, so that a folder can run them
overlapped (:func:`analyze_files`, through :mod:`.pipeline`) and a cluster worker can run them
in one go (:func:`analyze_file`), with the same code and so the same bytes in every file:

1. :func:`read_input`: the image, its notes, its usable area (regions) and acquisition settings;
   refuses an image too big for free memory before anything large is allocated;
2. :func:`predict`: the network, tile by tile (the engine uses every core);
3. :func:`finish`: the tracks, those outside the usable area dropped, the fluence, and the
   files: ``<stem>_tracks.csv`` and whichever of the probability map, overlay, ImageJ ROI set
   and napari points :class:`BatchSettings` asks for, each written atomically.

What comes back (:class:`ImageResult`) is small and picklable: the summary row, the fluence,
notes to show, and only what the folder's spectra and report need.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .analysis import (
    CoarseLook,
    bundle_contrast,
    check_memory,
    image_pixel_size,
    network_name,
    predict_maps,
    tracks_from_probability,
)
from .bundle import Bundle
from .contrast import SpotContrast
from .dosimetry import DEFAULT_RESOLVING_DISTANCE_PX, Fluence, image_fluence
from .engine import Engine
from .export import (
    render_overlay,
    summary_row,
    write_overlay_png,
    write_probability_tiff,
    write_tracks_csv,
)
from .images import Image, Levels, image_levels, read_image
from .interop import NAPARI_SUFFIX, ROIS_SUFFIX, write_imagej_rois, write_napari_points
from .pipeline import Outcome, pipelined
from .progress import CancelToken, ProgressFn
from .regions import Regions, RegionsError, filter_tracks, find_regions_beside, load_regions
from .report import shrink
from .spectra import Acquisition, acquisition_for
from .tracks import Tracks


@dataclass(frozen=True)
class BatchSettings:
    """How every image of a run is analyzed and what is written for it into ``out``.

    ``regions_file``: regions for every image (else each image's own ``<stem>_regions.json``
    beside it, where there is one); ``keep_tracks``: return the tracks (for spectra);
    ``thumbnail``: return a small overlay (for a report).
    """

    out: Path
    threshold: float | None = None
    pixel_size_um: float | None = None
    page: int | None = None
    regions_file: str = ""
    save_probability: bool = False
    save_overlay: bool = False
    save_rois: bool = False
    save_napari: bool = False
    keep_tracks: bool = False
    thumbnail: bool = False
    resolving_distance_px: float = DEFAULT_RESOLVING_DISTANCE_PX
    engine: str | None = None  # "auto", "onnxruntime" or "openvino"; None: $CERBER_ENGINE, else auto
    min_contrast: float | None = None  # the smallest track contrast; None: the model's

    def outputs(self, stem: str) -> list[Path]:
        """The files written for the image called ``stem``."""
        files = [self.out / f"{stem}_tracks.csv"]
        if self.save_probability:
            files.append(self.out / f"{stem}_probability.tif")
        if self.save_overlay:
            files.append(self.out / f"{stem}_overlay.png")
        if self.save_rois:
            files.append(self.out / f"{stem}{ROIS_SUFFIX}")
        if self.save_napari:
            files.append(self.out / f"{stem}{NAPARI_SUFFIX}")
        return files


@dataclass
class Prepared:
    """An image read and ready for the network, with what its finishing needs."""

    path: Path
    stem: str
    image: Image
    regions: Regions | None
    regions_file: str
    acquisition: Acquisition | None
    notes: list[str] = field(default_factory=list)
    contrast: SpotContrast | None = None
    levels: Levels | None = None  # the network's input levels, estimated in stage 1


@dataclass
class ImageResult:
    """What became of one image: its summary row and fluence, notes for the user, the line to
    print, and (when asked) its tracks without their label image and a small overlay."""

    path: Path
    stem: str
    summary: dict
    fluence: Fluence
    line: str
    notes: list[str] = field(default_factory=list)
    tracks: Tracks | None = None
    acquisition: Acquisition | None = None
    thumbnail: np.ndarray | None = None


def read_input(path: Path, stem: str, settings: BatchSettings, regions: Regions | None = None,
               bundle: Bundle | None = None) -> Prepared:
    """Stage 1: read ``path`` (page ``settings.page``), find its usable area (``regions``, else a
    regions file beside the image) and acquisition settings, and estimate the network's input
    levels and what the track contrast of ``bundle`` needs (beside the network's work on the
    image before); raise before a too-big image is analyzed. Errors name the
    file (ImageReadError, RegionsError, AcquisitionError, NotEnoughMemory)."""
    image = read_image(path, page=settings.page)
    notes = list(image.notes)
    given = settings.pixel_size_um
    if given is not None and image.pixel_size_um is not None and not np.isclose(image.pixel_size_um, given,
                                                                                  rtol=1e-6):
        notes.append(f"the file says {image.pixel_size_um:.6g} um per pixel ({image.pixel_size_source}); "
                     f"--pixel-size {given:g} was used")
    regions_file = settings.regions_file
    if regions is None and regions_file:
        regions = load_regions(regions_file)
    if regions is None and (beside := find_regions_beside(path)) is not None:
        regions, regions_file = load_regions(beside), str(beside)
    acquisition = acquisition_for(path) if settings.keep_tracks else None
    check_memory(image.data.shape)
    if bundle is None:
        return Prepared(path, stem, image, regions, regions_file, acquisition, notes)
    levels = image_levels(image.data, bundle.config.normalization)
    return Prepared(path, stem, image, regions, regions_file, acquisition, notes,
                    bundle_contrast(image, bundle, levels, settings.min_contrast), levels)


def predict(prepared: Prepared, bundle: Bundle, engine: Engine | None = None, progress: ProgressFn | None = None,
            cancel: CancelToken | None = None) -> tuple[np.ndarray, CoarseLook | None]:
    """Stage 2: the probability map of the prepared image (float32, image shape), and the coarse look
    at it where its background is clean and ``bundle``'s setting for those asks for one; ``engine``:
    ``bundle``'s (on a clean background the network of its setting for those may run,
    :func:`.analysis.network_engine`)."""
    return predict_maps(prepared.image.data, bundle, prepared.contrast, prepared.levels, engine, progress=progress,
                        cancel=cancel)


def finish(prepared: Prepared, predicted: tuple[np.ndarray, CoarseLook | None], bundle: Bundle,
           settings: BatchSettings) -> ImageResult:
    """Stage 3: tracks in the usable area, fluence, and the image's files in ``settings.out``;
    ``predicted``: what :func:`predict` gave."""
    image, out, stem = prepared.image, settings.out, prepared.stem
    probability, coarse = predicted
    pixel_size_um, source = image_pixel_size(image, settings.pixel_size_um)
    tracks = tracks_from_probability(image, probability, bundle, settings.threshold, pixel_size_um,
                                     prepared.contrast, coarse, min_contrast=settings.min_contrast)
    shape = tracks.image_shape
    area_px = float(shape[0] * shape[1])
    regions = prepared.regions
    if regions is not None and not regions.is_empty:
        area_px = regions.area_px(shape)
        if area_px == 0:
            raise RegionsError(prepared.regions_file, f"leaves no usable pixel in {prepared.path.name} "
                                                      f"({shape[1]} x {shape[0]} px).",
                               "Check that its include polygons lie inside the image (row, col).")
        tracks = filter_tracks(tracks, regions)
    write_tracks_csv(tracks, out / f"{stem}_tracks.csv")
    if settings.save_probability:
        write_probability_tiff(probability, out / f"{stem}_probability.tif")
    thumbnail = None
    if settings.save_overlay or settings.thumbnail:
        rgb = render_overlay(image.data, probability, tracks.labels)
        if settings.save_overlay:
            write_overlay_png(rgb, out / f"{stem}_overlay.png")
        if settings.thumbnail:
            thumbnail = shrink(rgb)
    if settings.save_rois:
        write_imagej_rois(tracks, out / f"{stem}{ROIS_SUFFIX}")
    if settings.save_napari:
        write_napari_points(tracks, out / f"{stem}{NAPARI_SUFFIX}")

    resolving = settings.resolving_distance_px
    fluence = image_fluence(tracks.count, area_px, tracks.pixel_size_um, resolving)
    source = "--pixel-size" if source == "given" else source
    summary = summary_row(str(prepared.path), tracks, bundle.name, fluence=fluence, pixel_size_source=source,
                          regions=prepared.regions_file, resolving_distance_px=resolving,
                          network=network_name(bundle, prepared.contrast))
    notes = list(prepared.notes)
    if fluence.saturated:
        notes.append(f"{tracks.count} tracks on {area_px:.0f} px is too dense for the overlap correction "
                     f"(resolving distance {resolving:g} px); corrected_count is left empty")
    where = (f" in the usable area ({area_px / (shape[0] * shape[1]):.0%} of the image)"
             if prepared.regions_file else "")
    extra = f", {fluence.describe()}" if fluence.fluence_per_cm2 is not None else ""
    if tracks.coarse_count:
        where += f" ({tracks.coarse_count} found on the image binned 2 x 2)"
    kept = replace(tracks, labels=np.zeros((0, 0), np.int32)) if settings.keep_tracks else None
    return ImageResult(prepared.path, stem, summary, fluence, f"{tracks.count} tracks{where}{extra}", notes, kept,
                       prepared.acquisition, thumbnail)


def analyze_file(path: Path, stem: str, settings: BatchSettings, bundle: Bundle, engine: Engine | None = None,
                 regions: Regions | None = None) -> ImageResult:
    """The three stages one after another: what a cluster worker runs for one image."""
    prepared = read_input(path, stem, settings, regions, bundle)
    return finish(prepared, predict(prepared, bundle, engine or bundle.engine(settings.engine)), bundle, settings)


def analyze_files(
    items: Sequence[tuple[Path, str]],
    settings: BatchSettings,
    bundle: Bundle,
    *,
    engine: Engine | None = None,
    regions: Regions | None = None,
    tile_progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[Outcome[tuple[Path, str], ImageResult]]:
    """:func:`analyze_file` for every ``(path, stem)``, the stages overlapped (see
    :mod:`.pipeline`; one image read ahead, one in the network, one being finished, so memory
    stays within about twice one image's analysis): one :class:`~.pipeline.Outcome` per image, in order, holding its
    :class:`ImageResult` or the error that stopped it. ``tile_progress(done, total)`` follows
    the network's tiles of the image being predicted."""
    engine = engine or bundle.engine(settings.engine)
    return pipelined(
        items,
        lambda item: read_input(item[0], item[1], settings, regions, bundle),
        lambda item, prepared: (prepared, predict(prepared, bundle, engine, tile_progress, cancel)),
        lambda item, done: finish(done[0], done[1], bundle, settings),
        depth=0,  # one image read ahead: raw data are small beside the network's and the tracks' arrays
        cancel=cancel,
    )
