"""The session: what the user has open and what the app is doing with it.

Open images, their analysis results, the images queued for analysis and the job running,
the model with its threshold, the pixel size, which image is selected, and its point
annotations while the user annotates (:class:`~cerber_gui.annotations.Annotations`). Like napari's
``ViewerModel`` it is plain Python (an import-linter contract keeps Qt out): it changes only
through its methods and tells observers through the callbacks in :attr:`Session.events`.
The main window draws it and runs its jobs; tests drive it without a window.

Each image has its regions (:class:`~cerber_model.runtime.regions.Regions`: the usable area of the
detector), read from ``<stem>_regions.json`` beside it when it is opened and drawn by the user in
regions mode (:class:`~cerber_gui.region_editor.RegionEditor`), which saves every finished change
there. Counts, areas and fluences are over the usable area (:meth:`Session.dose`), and pooled over
the analyzed images (:meth:`Session.pooled_dose`). The pixel size of an image is the user's setting,
else what its file says (:meth:`Session.pixel_size_for`).

Paths are resolved; images keep the order they were opened in. A TIFF stack is open at one page
at a time (the first when opened; :meth:`Session.set_page` reads another). Opening is a job like the others:
:meth:`Session.start_open` says which files to read, :func:`read_images` reads them (on a worker
thread in the app), and each image joins the session as it arrives (:meth:`Session.add_read`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cerber_model.runtime.analysis import AnalysisResult, clean_background
from cerber_model.runtime.bundle import Bundle, CleanBackground
from cerber_model.runtime.dosimetry import (
    DEFAULT_RESOLVING_DISTANCE_PX,
    Fluence,
    dispersion_test,
    image_fluence,
    pooled_fluence,
)
from cerber_model.runtime.images import Image, count_pages, list_images, read_image
from cerber_model.runtime.points import PointsError, points_beside, read_points
from cerber_model.runtime.progress import CancelToken, ProgressFn
from cerber_model.runtime.regions import Regions, RegionsError, filter_tracks, find_regions_beside, load_regions
from cerber_model.runtime.spectra import (
    Acquisition,
    AcquisitionError,
    Spectrum,
    acquisition_for,
    quantity_label,
    track_spectra,
)
from cerber_model.runtime.tracks import Tracks

from .annotations import AnnotationError, Annotations
from .dose import USER_SETTING, ImageDose, PooledDose, unique_names
from .region_editor import HIT_RADIUS_PX, KINDS, RegionEditor, RegionsRefused


class Event:
    """Callbacks, called in the order they were connected with the arguments of :meth:`emit`."""

    def __init__(self) -> None:
        self._callbacks: list[Callable] = []

    def connect(self, callback: Callable) -> Callable:
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args) -> None:
        for callback in list(self._callbacks):
            callback(*args)


@dataclass
class SessionEvents:
    #: list[Path]: images opened, in order (before the first of an Open is selected)
    images_added: Event = field(default_factory=Event)
    #: Path | None: the image now selected (None: no image is open any more)
    selected: Event = field(default_factory=Event)
    #: list[Path]: images closed, with their results (before another is selected)
    images_closed: Event = field(default_factory=Event)
    #: Path: another page of an open stack replaced its image (and its result went)
    image_replaced: Event = field(default_factory=Event)
    #: Bundle: a new model, with its threshold; every result was dropped
    model_changed: Event = field(default_factory=Event)
    #: float: the threshold the user set
    threshold_changed: Event = field(default_factory=Event)
    #: float: the smallest track contrast the user set (noise SDs)
    min_contrast_changed: Event = field(default_factory=Event)
    #: float | None: the pixel size the user set (µm per pixel; None for unknown)
    pixel_size_changed: Event = field(default_factory=Event)
    #: bool: an analysis job started (True, once per job) or none is left to start (False)
    busy_changed: Event = field(default_factory=Event)
    #: Path: an image's analysis finished and its result is stored
    result_added: Event = field(default_factory=Event)
    #: Path: an analyzed image has new tracks (re-extracted at new settings)
    tracks_changed: Event = field(default_factory=Event)
    #: bool: annotation started (True) or ended (False); while on, :attr:`Session.annotations`
    #: holds the selected image's points
    annotating_changed: Event = field(default_factory=Event)
    #: Path: the points being annotated changed (an edit, undo or redo, or a save)
    points_changed: Event = field(default_factory=Event)
    #: str, str: an image cannot be annotated: what and what to do, details (annotation is off)
    annotation_refused: Event = field(default_factory=Event)
    #: Path: an image's regions changed (drawn, deleted, undone): its usable area and counts too
    regions_changed: Event = field(default_factory=Event)
    #: Path: the polygon being drawn, or the region selected, changed (the regions did not)
    region_draft_changed: Event = field(default_factory=Event)
    #: bool: regions mode started (True) or ended (False); while on, :attr:`Session.region_editor`
    #: edits the selected image's regions
    drawing_regions_changed: Event = field(default_factory=Event)
    #: Path: the regions of the image were saved to this file
    regions_saved: Event = field(default_factory=Event)
    #: str, str: regions cannot be drawn or saved: what and what to do, details
    regions_refused: Event = field(default_factory=Event)


@dataclass(frozen=True)
class AnalysisJob:
    """One image to analyze with everything it was started with: later changes do not reach it."""

    path: Path
    image: Image
    bundle: Bundle
    threshold: float | None  # None: the model's own (and its setting for clean backgrounds)
    pixel_size_um: float | None
    waiting: int  # images queued behind this one
    model_load: int  # which of the session's models it runs (see Session.model_loads)
    min_contrast: float | None = None  # None: the model's own, as the threshold


@dataclass(frozen=True)
class RetrackJob:
    """New tracks of an analyzed image from its probability map, and the settings they are for."""

    path: Path
    result: AnalysisResult
    threshold: float
    min_area_px: int
    pixel_size_um: float | None
    min_contrast: float = 0.0
    clean: CleanBackground | None = None  # the model's setting for clean backgrounds, at its own threshold
    grow_to: float | None = None  # elsewhere, how far tracks grow below the threshold (the model's)


@dataclass(frozen=True)
class FitJob:
    """Fitting the threshold and smallest contrast to points
    (:func:`~cerber_model.runtime.evaluation.fit_setting`): the analyzed images with points (the selected
    one's being annotated first, then those with a points file beside them), their results, points
    ((N, 2) row, col) and regions (outside which neither counts), and the setting in use, at which the
    tracks they show now are found."""

    paths: list[Path]
    results: list[AnalysisResult]
    points: list[np.ndarray]
    regions: list[Regions]
    retrack: RetrackJob  # the setting in use (its path and result: the selected image's)
    measures_contrast: bool
    skip: tuple[float, float] | None = None  # the model's own setting, where an image's background is clean
    unreadable: list[str] = field(default_factory=list)  # images whose points file was left out, and why


@dataclass(frozen=True)
class AnnotationState:
    """What the annotation controls offer now."""

    can_annotate: bool  # an image is selected
    annotating: bool
    can_accept: bool  # annotating an analyzed image: its detections can become points
    unsaved: bool
    can_undo: bool
    can_redo: bool


@dataclass(frozen=True)
class RegionsState:
    """What the regions controls offer now."""

    can_draw: bool  # an image is selected
    drawing: bool  # regions mode is on
    exclude: bool  # new polygons are exclusions
    can_close: bool  # a polygon of 3 or more vertices is being drawn
    can_delete: bool  # a region is selected
    can_undo: bool
    can_redo: bool


@dataclass
class OpenReport:
    """What an Open did with the paths it was given (filled as its files are read)."""

    added: list[Path] = field(default_factory=list)  # images newly open
    unreadable: list[str] = field(default_factory=list)  # per file: what was wrong and the fix
    empty_folders: list[Path] = field(default_factory=list)  # folders holding no images
    problems: list[str] = field(default_factory=list)  # regions or acquisition files beside images that were not read
    opened: list[Path] = field(default_factory=list)  # folders with images and files now open (the recent list)
    folder: Path | None = None  # the folder of the first file found (where the next file dialog starts)


@dataclass
class OpenJob:
    """One Open: the paths asked for, the image files to read for it, in order (resolved; none
    open or being read already), and its report, which fills as they are read."""

    paths: list[Path]
    files: list[Path]
    report: OpenReport = field(default_factory=OpenReport)
    pages: dict[Path, int] = field(default_factory=dict)  # the page to read of a stack (else the first)


@dataclass(frozen=True)
class ImageRead:
    """What reading one file gave: the image, or what was wrong with the file and the fix."""

    path: Path
    image: Image | None = None
    error: str = ""
    page: int = 0  # of a stack (0-based)
    pages: int = 1  # how many images the file holds
    regions: Regions | None = None  # read from regions_file beside the image (None: none, or not read)
    regions_file: Path | None = None
    acquisition: Acquisition | None = None  # read from its sidecar (None: none, or not read)
    problems: tuple[str, ...] = ()  # regions or acquisition files that could not be read: what and the fix


def read_beside(path: Path) -> tuple[Regions | None, Path | None, Acquisition | None, tuple[str, ...]]:
    """What lies beside an image: its regions (and their file) and its acquisition, and what was
    wrong with those that could not be read (the image then counts whole, or unnormalised)."""
    regions, problems = None, []
    regions_file = find_regions_beside(path)
    if regions_file is not None:
        try:
            regions = load_regions(regions_file)
        except RegionsError as exc:
            problems.append(f"{exc} The whole image is counted until it is fixed.")
    try:
        acquisition = acquisition_for(path)
    except AcquisitionError as exc:
        acquisition = None
        problems.append(f"{exc} Intensities are not normalised until it is fixed.")
    return regions, regions_file, acquisition, tuple(problems)


def read_images(files: Iterable[Path], pages: dict[Path, int] | None = None, *, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None) -> Iterator[ImageRead]:
    """Read ``files`` one by one, yielding each as it is read (a file that cannot be read is reported,
    not raised); of a TIFF stack the page ``pages`` gives (0-based), else the first.
    ``progress(files done, files)``; ``cancel`` is checked before each file."""
    files = list(files)
    for done, path in enumerate(files, 1):
        if cancel is not None:
            cancel.check()
        count = count_pages(path)
        page = (pages or {}).get(path, 0)
        try:
            image = read_image(path, page=page if count > 1 else None)
        except Exception as exc:  # ImageReadError names the file and the fix
            yield ImageRead(path, error=str(exc))
        else:
            regions, regions_file, acquisition, problems = read_beside(path)
            yield ImageRead(path, image, page=page, pages=count, regions=regions, regions_file=regions_file,
                            acquisition=acquisition, problems=problems)
        if progress is not None:
            progress(done, len(files))


def _step(threshold: float) -> float:
    # Thresholds move in steps of 0.01, as the slider offers them and as the table shows them.
    return round(float(threshold), 2)


def _contrast_step(min_contrast: float) -> float:
    # The smallest contrast moves in steps of 0.1 noise SDs, as the toolbar offers it.
    return round(float(min_contrast), 1)


class Session:
    def __init__(self, bundle: Bundle | None = None, pixel_size_um: float | None = None):
        self.events = SessionEvents()
        self.images: dict[Path, Image] = {}
        self.results: dict[Path, AnalysisResult] = {}
        self.selected: Path | None = None
        self.bundle = bundle
        self.threshold = _step(bundle.config.threshold) if bundle is not None else 0.5
        self.min_contrast = _contrast_step(bundle.config.min_contrast) if bundle is not None else 0.0
        self.pixel_size_um = pixel_size_um or None
        self.reading: dict[Path, OpenJob] = {}  # files being read, and the Open they are read for
        self.pages: dict[Path, tuple[int, int]] = {}  # of images from stacks: the page (0-based), the pages
        self.queue: list[Path] = []  # images waiting for analysis, next first
        self.job: AnalysisJob | None = None  # the analysis running
        # Models set so far: a job started under an earlier one is stale even if the same
        # bundle was loaded again (its threshold went back to the model's).
        self.model_loads = 0
        self.annotations: Annotations | None = None  # the selected image's points, while annotating
        # Regions of each open image (empty: the whole image is usable) and the file they were
        # read from or saved to; refused: why an image's regions cannot be drawn (its file is not ours).
        self.regions: dict[Path, Regions] = {}
        self.regions_files: dict[Path, Path | None] = {}
        self.region_editors: dict[Path, RegionEditor] = {}  # images whose regions were drawn on, with their history
        self.region_editor: RegionEditor | None = None  # the selected image's, in regions mode
        self.region_kind = "include"  # what a new polygon is
        self.acquisitions: dict[Path, Acquisition] = {}
        # The last dose made of each image, and what it was made from: its tracks and regions (the
        # objects themselves, which are replaced, never changed) and the settings.
        self._doses: dict[Path, tuple[Tracks, Regions, tuple, ImageDose]] = {}

    # -- reading the state --------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None

    @property
    def can_analyze(self) -> bool:
        return not self.busy and bool(self.images) and self.bundle is not None

    def name(self, path: Path) -> str:
        """What the user calls an open image: its file name, and of a stack the page (1-based)."""
        if path in self.pages:
            page, pages = self.pages[path]
            return f"{path.name} [page {page + 1}/{pages}]"
        return path.name

    def selected_result(self) -> AnalysisResult | None:
        return self.results.get(self.selected) if self.selected is not None else None

    @property
    def annotating(self) -> bool:
        return self.annotations is not None

    @property
    def unsaved_points(self) -> bool:
        """Whether the points being annotated differ from their file: save or revert them before
        selecting another image or ending annotation."""
        return self.annotations is not None and self.annotations.dirty

    def annotation_state(self) -> AnnotationState:
        a = self.annotations
        return AnnotationState(can_annotate=self.selected is not None, annotating=a is not None,
                               can_accept=a is not None and self.selected_result() is not None,
                               unsaved=self.unsaved_points, can_undo=a is not None and a.can_undo,
                               can_redo=a is not None and a.can_redo)

    # -- images ---------------------------------------------------------------------
    def open(self, paths: Iterable[Path | str]) -> OpenReport:
        """Open image files, and the images directly inside folders, reading them here and now
        (scripts and tests; the app reads on a worker thread, see :meth:`start_open`)."""
        job = self.start_open(paths)
        for read in read_images(job.files, job.pages):
            self.add_read(job, read)
        return self.end_open(job)

    def start_open(self, paths: Iterable[Path | str]) -> OpenJob:
        """Begin opening image files, and the images directly inside folders: the job says which
        files to read (:func:`read_images`); give what is read to :meth:`add_read`, then end with
        :meth:`end_open`. Images open, or being read, already are not read again."""
        job = OpenJob([Path(p) for p in paths], [])
        for path in job.paths:
            if path.is_dir():
                found = list_images(path)
                (job.report.opened if found else job.report.empty_folders).append(path)
            else:
                found = [path]
            if found and job.report.folder is None:
                job.report.folder = found[0].parent
            for file in found:
                file = file.resolve()
                if file not in self.images and file not in self.reading and file not in job.files:
                    job.files.append(file)
                    self.reading[file] = job
        return job

    def add_read(self, job: OpenJob, read: ImageRead) -> bool:
        """Add an image read for ``job`` (the first of the job is selected, unless unsaved points
        would go; another page of an open stack replaces it); False, and nothing added, if it is not
        wanted any more (it was closed, or another page asked for, meanwhile)."""
        if self.reading.get(read.path) is not job:
            return False
        del self.reading[read.path]
        if read.image is None:
            job.report.unreadable.append(read.error)
            return True
        if read.pages > 1:
            self.pages[read.path] = (read.page, read.pages)
        job.report.problems += [p for p in read.problems if p not in job.report.problems]
        if read.acquisition is not None:
            self.acquisitions[read.path] = read.acquisition
        if read.path not in self.regions:  # another page of a stack keeps the regions drawn
            self.regions[read.path] = read.regions if read.regions is not None else Regions()
            self.regions_files[read.path] = read.regions_file if read.regions is not None else None
        if read.path in self.images:  # another page
            self.images[read.path] = read.image
            self.results.pop(read.path, None)
            self._doses.pop(read.path, None)
            self.queue = [p for p in self.queue if p != read.path]
            self.events.image_replaced.emit(read.path)
            return True
        self.images[read.path] = read.image
        job.report.added.append(read.path)
        self.events.images_added.emit([read.path])
        if len(job.report.added) == 1 and not self.unsaved_points:
            self.select(read.path)
        return True

    def set_page(self, path: Path, page: int) -> OpenJob | None:
        """Begin reading another page (0-based) of an open stack, to replace its image (and drop its
        result) when read, as an Open would (:meth:`add_read`); None if it is that page already or
        not a stack."""
        if path not in self.pages or not 0 <= page < self.pages[path][1]:
            return None
        pending = self.reading.get(path)
        if page == self.pages[path][0] and pending is None:
            return None
        job = OpenJob([path], [path], pages={path: page})
        self.reading[path] = job  # a page asked for before is not wanted any more
        return job

    def end_open(self, job: OpenJob) -> OpenReport:
        """The job's reading has ended (or was cancelled: its files not read yet are not wanted)."""
        for path in job.files:
            if self.reading.get(path) is job:
                del self.reading[path]
        job.report.opened += [p for p in job.paths if not p.is_dir() and p.resolve() in self.images]
        return job.report

    def close(self, paths: Iterable[Path]) -> list[Path]:
        """Close open images: each goes with its result, its place in the analysis queue and, if it
        is being annotated, annotation (unsaved points raise RuntimeError: save or revert them
        first). An analysis of one that is running no longer applies (:meth:`add_result` drops it;
        the app cancels it). If the selected image closed, the next one open is selected (or the one
        before; None, with :attr:`SessionEvents.selected`, when none is left). Returns what closed."""
        closing = [p for p in paths if p in self.images]
        if not closing:
            return []
        if self.selected in closing and self.annotations is not None:
            self._check_saved()
            self.annotations = None
            self.events.annotating_changed.emit(False)
        if self.selected in closing and self.region_editor is not None:
            self.region_editor = None
            self.events.drawing_regions_changed.emit(False)
        order = list(self.images)
        for path in closing:
            del self.images[path]
            self.results.pop(path, None)
            self.pages.pop(path, None)
            self.reading.pop(path, None)
            for kept in (self.regions, self.regions_files, self.region_editors, self.acquisitions, self._doses):
                kept.pop(path, None)
        self.queue = [p for p in self.queue if p in self.images]
        self.events.images_closed.emit(closing)
        if self.selected in closing:
            at = order.index(self.selected)
            after = [p for p in order[at + 1:] if p in self.images]
            before = [p for p in order[:at] if p in self.images]
            self.selected = None
            if after or before:
                self.select((after or before[::-1])[0])
            else:
                self.events.selected.emit(None)
        return closing

    def close_all(self) -> list[Path]:
        """Close every open image, and drop the files still being read (see :meth:`close`)."""
        self.reading.clear()
        return self.close(list(self.images))

    def select(self, path: Path) -> None:
        """Select an open image; while annotating, its points are annotated from now on (if they
        cannot be, annotation ends with :attr:`SessionEvents.annotation_refused`)."""
        if path not in self.images:
            raise KeyError(f"{path} is not open")
        self._check_saved()
        self.selected = path
        if self.annotations is not None:
            self.annotations = None
            self.events.selected.emit(path)
            self.annotate(True)
            return
        if self.region_editor is not None:
            self.region_editor = None
            self.events.selected.emit(path)
            self.draw_regions(True)
            return
        self.events.selected.emit(path)

    # -- annotation -----------------------------------------------------------------
    def _check_saved(self) -> None:
        if self.unsaved_points:  # the window asks the user first; this is the last guard
            raise RuntimeError(f"the points of {self.annotations.image} are not saved: save or revert them first")

    def annotate(self, on: bool) -> bool:
        """Start or end annotating the selected image's points; whether annotation is now on.

        Starting reads the points saved beside the image; where they cannot be read or saved
        again, :attr:`SessionEvents.annotation_refused` says why and annotation stays off.
        Ending with unsaved points raises RuntimeError (save or revert them first).
        """
        if not on:
            self._check_saved()
            if self.annotations is not None:
                self.annotations = None
                self.events.annotating_changed.emit(False)
            return False
        if self.annotations is not None:
            return True
        if self.selected is None:
            return False
        path = self.selected
        if path in self.pages:  # training reads points files beside single images
            self.events.annotating_changed.emit(False)
            self.events.annotation_refused.emit(
                f"{path.name} is a stack of {self.pages[path][1]} images; points are saved per file.",
                "Save the page as an image of its own (for example with Fiji) and annotate that.")
            return False
        try:
            self.annotations = Annotations.load(path, self.images[path].shape,
                                                on_change=lambda: self.events.points_changed.emit(path))
        except AnnotationError as exc:
            self.events.annotating_changed.emit(False)
            self.events.annotation_refused.emit(exc.message, exc.details)
            return False
        self.events.annotating_changed.emit(True)
        return True

    def accept_detections(self) -> int:
        """Add the selected image's detections at the current threshold as points (one edit, which
        Undo takes back; detections on a point already there are skipped); how many were added."""
        result = self.selected_result()
        if self.annotations is None or result is None or self.bundle is None:
            return 0
        tracks = result.tracks
        if not self.tracks_current(self.selected):  # re-tracking at the slider's value has not ended yet
            tracks = result.tracks_at(self.threshold, self.bundle.config.min_area_px,
                                      self.pixel_size_for(self.selected)[0], self.min_contrast,
                                      self._clean_setting(), grow_to=self.bundle.config.grow_to)
        return self.annotations.add_many(np.c_[tracks.columns["row"], tracks.columns["col"]])

    def fit_job(self) -> FitJob:
        """What fitting the threshold and smallest contrast to points needs: the selected image's points
        being annotated, and those saved beside the other analyzed images (a file that cannot be read is
        left out, and named), inside each image's regions. ValueError, with what to do, where there is
        nothing to fit: no image annotated, not analyzed, or no points at all."""
        result = self.selected_result()
        if self.annotations is None or self.bundle is None:
            raise ValueError("Turn on Points > Annotate and mark every spot of the image first.")
        if result is None:
            raise ValueError(f"Analyze {self.name(self.selected)} first: the setting is fitted to its probability map.")
        paths, results, points, unreadable = [self.selected], [result], [self.annotations.centres], []
        for path, other in self.results.items():
            if path == self.selected or path in self.pages or not points_beside(path).is_file():
                continue
            try:
                points.append(read_points(points_beside(path), other.image.shape[:2]).centres)
            except (PointsError, OSError) as exc:
                unreadable.append(f"{path.name} ({exc})")
                continue
            paths.append(path)
            results.append(other)
        if sum(len(p) for p in points) == 0:
            raise ValueError(f"{self.name(self.selected)} has no points: mark every spot of the image first "
                             "(or Accept detections and correct them).")
        config = self.bundle.config
        # At the model's own setting a clean background gets the setting for those, not what the fit measures.
        clean = any(clean_background(r.contrast, config.clean_background) for r in results)
        skip = (_step(config.threshold), _contrast_step(config.min_contrast)) if clean else None
        retrack = RetrackJob(self.selected, result, self.threshold, config.min_area_px, None, self.min_contrast,
                             self._clean_setting(), config.grow_to)
        regions = [self.regions.get(path, Regions()) for path in paths]
        return FitJob(paths, results, points, regions, retrack, self.measures_contrast, skip, unreadable)

    def apply_fit(self, job: FitJob, fit) -> bool:
        """Use the threshold and smallest contrast that ``fit`` (a SettingFit for ``job``) found, for every
        image; False, and nothing changed, where it keeps the setting in use or an image's result is
        no longer the one it was fitted on."""
        if not fit.changed or any(self.results.get(p) is not r for p, r in zip(job.paths, job.results, strict=True)):
            return False
        self.set_threshold(fit.threshold)
        if job.measures_contrast:
            self.set_min_contrast(fit.min_contrast)
        return True

    # -- regions --------------------------------------------------------------------
    @property
    def drawing_regions(self) -> bool:
        return self.region_editor is not None

    def regions_state(self) -> RegionsState:
        e = self.region_editor
        return RegionsState(can_draw=self.selected is not None, drawing=e is not None,
                            exclude=self.region_kind == "exclude", can_close=e is not None and e.can_close,
                            can_delete=e is not None and e.selected is not None and not e.drawing,
                            can_undo=e is not None and e.can_undo, can_redo=e is not None and e.can_redo)

    def draw_regions(self, on: bool) -> bool:
        """Start or end regions mode for the selected image; whether it is now on. Annotation must be
        off (the window ends it first). Starting is refused, with
        :attr:`SessionEvents.regions_refused`, when a file that is not Cerber's has the name the
        regions are saved under."""
        if not on:
            if self.region_editor is not None:
                self.region_editor.discard_polygon()
                self.region_editor = None
                self.events.drawing_regions_changed.emit(False)
            return False
        if self.region_editor is not None:
            return True
        if self.selected is None or self.annotations is not None:
            return False
        path = self.selected
        try:
            RegionEditor.check_file(path)
        except RegionsRefused as exc:
            self.events.drawing_regions_changed.emit(False)
            self.events.regions_refused.emit(exc.message, exc.details)
            return False
        editor = self.region_editors.get(path)
        if editor is None:
            editor = RegionEditor(path, self.images[path].shape, self.regions.get(path), self.regions_files.get(path),
                                  on_change=lambda what: self._regions_edited(path, what))
            self.region_editors[path] = editor
        self.region_editor = editor
        self.events.drawing_regions_changed.emit(True)
        return True

    def set_region_kind(self, kind: str) -> None:
        """What the next polygon drawn is: "include" or "exclude"."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.region_kind = kind
        if self.selected is not None:
            self.events.region_draft_changed.emit(self.selected)

    def region_click(self, row: float, col: float, radius: float = HIT_RADIUS_PX, *, other_kind: bool = False) -> str:
        """A click in regions mode (see :meth:`RegionEditor.click`); ``other_kind`` starts a polygon of the
        kind not set (a modifier key held). "" when not in regions mode."""
        if self.region_editor is None:
            return ""
        kind = self.region_kind
        if other_kind:
            kind = KINDS[1 - KINDS.index(kind)]
        return self.region_editor.click(row, col, kind, radius)

    def _regions_edited(self, path: Path, what: str) -> None:
        editor = self.region_editors.get(path)
        if editor is None:  # closed meanwhile
            return
        if what == "saved":
            self.regions_files[path] = editor.file
            self.events.regions_saved.emit(editor.file)
            return
        if what == "draft":
            self.events.region_draft_changed.emit(path)
            return
        self.regions[path] = editor.regions
        if editor.needs_saving:
            try:
                editor.save()
            except RegionsRefused as exc:
                self.events.regions_refused.emit(exc.message + " The regions are used here but not saved.",
                                                 exc.details)
            except OSError as exc:
                self.events.regions_refused.emit(
                    f"{editor.file} could not be written ({exc.strerror or exc}); the regions are used here but "
                    "not saved.", "Check that the folder is writable and has free space; the next change saves "
                    "them again.")
        self.events.regions_changed.emit(path)

    # -- model and settings ---------------------------------------------------------
    def set_bundle(self, bundle: Bundle) -> None:
        """Use ``bundle`` from now on, at its own threshold and smallest contrast; results of the previous
        model are dropped."""
        self.bundle = bundle
        self.model_loads += 1
        self.threshold = _step(bundle.config.threshold)
        self.min_contrast = _contrast_step(bundle.config.min_contrast)
        self.results.clear()
        self._doses.clear()
        self.events.model_changed.emit(bundle)

    def set_threshold(self, threshold: float) -> None:
        self.threshold = _step(threshold)
        self.events.threshold_changed.emit(self.threshold)

    def set_min_contrast(self, min_contrast: float) -> None:
        """The smallest track contrast (noise SDs, 0 or more; 0 keeps every track) for every image."""
        self.min_contrast = _contrast_step(max(float(min_contrast), 0.0))
        self.events.min_contrast_changed.emit(self.min_contrast)

    @property
    def measures_contrast(self) -> bool:
        """Whether the model drops tracks of low contrast, so that the smallest contrast means something."""
        return self.bundle is not None and self.bundle.config.min_contrast > 0

    def set_pixel_size(self, pixel_size_um: float | None) -> None:
        """µm per pixel for every image; 0 or None for unknown (then each image's file says, where it
        does; see :meth:`pixel_size_for`)."""
        self.pixel_size_um = pixel_size_um or None
        self.events.pixel_size_changed.emit(self.pixel_size_um)

    def file_pixel_size(self, path: Path) -> tuple[float | None, str]:
        """The pixel size (µm) an open image's file gives, and where in the file; (None, "") if it says nothing."""
        image = self.images[path]
        return (image.pixel_size_um, image.pixel_size_source) if image.pixel_size_um else (None, "")

    def pixel_size_for(self, path: Path) -> tuple[float | None, str]:
        """The pixel size (µm) of an open image and where it comes from: the user's setting
        (:data:`~cerber_gui.dose.USER_SETTING`) wins, as ``cerber analyze --pixel-size`` does; else the
        file's (``"file: <where>"``); else (None, "")."""
        if self.pixel_size_um:
            return self.pixel_size_um, USER_SETTING
        size, where = self.file_pixel_size(path)
        return (size, f"file: {where}") if size else (None, "")

    @property
    def resolving_distance_px(self) -> float:
        """The overlap correction's resolving distance: the model's own, else the default model's."""
        own = self.bundle.config.resolving_distance_px if self.bundle is not None else None
        return DEFAULT_RESOLVING_DISTANCE_PX if own is None else float(own)

    # -- the analysis queue ---------------------------------------------------------
    def queue_selected(self) -> bool:
        """Queue the selected image; False (nothing queued) while busy or with nothing selected."""
        if self.selected is None or self.busy:
            return False
        self.queue = [self.selected]
        return True

    def queue_unanalyzed(self) -> list[Path]:
        """Queue every open image that has no result yet (nothing while busy); returns the queue."""
        if self.busy:
            return []
        self.queue = [p for p in self.images if p not in self.results]
        return list(self.queue)

    def clear_queue(self) -> None:
        self.queue.clear()

    def next_job(self) -> AnalysisJob | None:
        """The next queued image as a job, now :attr:`job`; None when the queue is done (or no model).

        Call it to start the queue and again whenever the running job has ended.
        """
        if not self.queue or self.bundle is None:
            self.job = None
            self.events.busy_changed.emit(False)
            return None
        path = self.queue.pop(0)
        own = self.at_own_setting
        self.job = AnalysisJob(path, self.images[path], self.bundle, None if own else self.threshold,
                               self.pixel_size_for(path)[0], waiting=len(self.queue), model_load=self.model_loads,
                               min_contrast=None if own else self.min_contrast)
        self.events.busy_changed.emit(True)
        return self.job

    def add_result(self, job: AnalysisJob, result: AnalysisResult) -> bool:
        """Store what ``job`` found; False, and nothing stored, if another model was set since it started
        or its image was closed."""
        if job.model_load != self.model_loads or self.images.get(job.path) is not job.image:
            return False
        self.results[job.path] = result
        self.events.result_added.emit(job.path)
        return True

    # -- re-tracking ------------------------------------------------------------------
    @property
    def at_own_setting(self) -> bool:
        """Whether the threshold and smallest contrast are the model's own: then an image with a clean
        background gets the model's setting for those (``BundleConfig.clean_background``), as in
        ``cerber analyze`` without --threshold and --min-contrast."""
        return (self.bundle is not None and self.threshold == _step(self.bundle.config.threshold)
                and self.min_contrast == _contrast_step(self.bundle.config.min_contrast))

    def tracks_current(self, path: Path) -> bool:
        """Whether the image's tracks are those of the current threshold and pixel size (an analysis
        keeps the settings it started with, and only the selected image is re-tracked at once)."""
        result = self.results.get(path)
        if result is None or result.tracks.pixel_size_um != self.pixel_size_for(path)[0]:
            return False
        tracks = result.tracks
        if tracks.clean_background:
            return self.at_own_setting
        return (tracks.threshold == self.threshold and tracks.min_contrast == self.min_contrast
                and not clean_background(result.contrast, self._clean_setting()))

    def _clean_setting(self) -> CleanBackground | None:
        return self.bundle.config.clean_background if self.bundle is not None and self.at_own_setting else None

    def retrack_job(self) -> RetrackJob | None:
        """Tracks at the current settings, from a cached probability map, of the selected image first,
        then of the other analyzed images (the pooled figures cover them all); None when every
        result's tracks are at these settings already."""
        if self.bundle is None:
            return None
        order = ([self.selected] if self.selected in self.results else []) + [
            p for p in self.results if p != self.selected]
        for path in order:
            if not self.tracks_current(path):
                return RetrackJob(path, self.results[path], self.threshold, self.bundle.config.min_area_px,
                                  self.pixel_size_for(path)[0], self.min_contrast, self._clean_setting(),
                                  self.bundle.config.grow_to)
        return None

    def set_tracks(self, job: RetrackJob, tracks: Tracks) -> bool:
        """Store tracks that ``job`` found; False, and nothing stored, if the result they came from is
        no longer the image's (a new model dropped it, or the image was analyzed again)."""
        result = self.results.get(job.path)
        if result is None or job.result is not result:
            return False
        result.tracks = tracks
        self.events.tracks_changed.emit(job.path)
        return True

    # -- counts, fluence and spectra ------------------------------------------------------
    def dose(self, path: Path) -> ImageDose | None:
        """An analyzed image's tracks inside its regions, its usable area and fluence at the pixel size
        now in use (None: not analyzed). Kept until its tracks, regions or pixel size change."""
        result = self.results.get(path)
        if result is None:
            return None
        regions = self.regions.get(path, Regions())
        pixel_size, source = self.pixel_size_for(path)
        resolving = self.resolving_distance_px
        settings = (pixel_size, source, resolving, self.name(path), self.regions_files.get(path),
                    self.tracks_current(path))
        kept = self._doses.get(path)
        if kept is not None and kept[0] is result.tracks and kept[1] is regions and kept[2] == settings:
            return kept[3]
        tracks = result.tracks
        shape = tracks.image_shape
        inside = replace(filter_tracks(tracks, regions), pixel_size_um=pixel_size)
        area = regions.area_px(shape)
        if area > 0:
            fluence = image_fluence(inside.count, area, pixel_size, resolving)
        else:  # no usable pixel: nothing to count on
            fluence = Fluence(0, 0.0, 0.0 if pixel_size else None, None, None, None, 0.0, None)
        dose = ImageDose(path, self.name(path), inside, tracks.count, area, shape[0] * shape[1], pixel_size, source,
                         self.file_pixel_size(path)[0], self.regions_files.get(path), not regions.is_empty, fluence,
                         self.tracks_current(path))
        self._doses[path] = (result.tracks, regions, settings, dose)
        return dose

    def doses(self) -> list[ImageDose]:
        """The dose of every analyzed image, in the order they were opened."""
        return [d for d in (self.dose(p) for p in self.images if p in self.results) if d is not None]

    def pooled_dose(self) -> PooledDose | None:
        """The analyzed images with a usable area as one: pooled fluence, and the dispersion test of
        their counts (areas in cm² where every pixel size is known, else in px); None when none is."""
        doses = [d for d in self.doses() if d.area_px > 0]
        if not doses:
            return None
        parts = [d.fluence for d in doses]
        cm2 = [p.area_cm2 for p in parts if p.area_cm2 is not None]
        areas = cm2 if len(cm2) == len(parts) else [p.area_px for p in parts]
        dispersion = dispersion_test([p.track_count for p in parts], areas)
        worst = doses[dispersion.worst].name if dispersion is not None else ""
        return PooledDose(pooled_fluence(parts), dispersion, worst, sum(not d.current for d in doses))

    def spectrum_names(self) -> dict[Path, str]:
        """What the analyzed images are called in spectra and tables (unique, never "all")."""
        paths = [p for p in self.images if p in self.results]
        names = unique_names([self.name(p) for p in paths], [p.parent.name for p in paths])
        return dict(zip(paths, names, strict=True))

    def spectra(self, quantity: str, pooled: bool = False) -> dict[str, Spectrum]:
        """Spectra of ``quantity`` (a key of :data:`~cerber_model.runtime.spectra.QUANTITIES`) of the
        tracks inside the regions: of the selected image (``pooled`` False) or of every analyzed image
        on common edges, the pooled one last under "all" (see
        :func:`~cerber_model.runtime.spectra.track_spectra`). Intensities are divided by each image's
        acquisition (laser power x dwell) where its sidecar gives one. Raises ValueError when they
        cannot be made (diameters in µm without a pixel size, images normalised differently)."""
        names = self.spectrum_names()
        paths = list(names) if pooled else [p for p in names if p == self.selected]
        doses = {names[p]: self.dose(p) for p in paths}
        tracks = {name: d.tracks for name, d in doses.items() if d is not None}
        if not tracks:
            return {}
        acquisitions = {names[p]: self.acquisitions[p] for p in paths if p in self.acquisitions}
        return track_spectra(tracks, quantity, acquisitions=acquisitions)

    def spectrum_label(self, quantity: str) -> str:
        """The axis label of ``quantity``, with the intensity unit of the analyzed images' acquisitions."""
        units = {a.intensity_unit: a for p, a in self.acquisitions.items() if p in self.results}
        return quantity_label(quantity, next(iter(units.values())) if len(units) == 1 else None)
