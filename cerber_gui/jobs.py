"""Running the session's work off the GUI thread: reading the images an Open asks for, its
analysis queue, one image at a time, and re-tracking at new settings. Results go back into the
session; the window only observes it.

The tracks on screen follow the settings: the selected image is re-tracked from its probability
map whenever its tracks are not those of the current threshold and pixel size: when they change,
when its analysis (started with the settings of that moment) ends, and when it is selected. The
other analyzed images follow, one after the other, so that the figures pooled over them are at
the same settings. The folder report, which draws an overlay per image, is written here too.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from cerber_model.runtime.analysis import AnalysisResult, analyze
from cerber_model.runtime.evaluation import MarkedImage, SettingFit, fit_setting
from cerber_model.runtime.tracks import Tracks

from . import workers
from .exports import ReportJob, write_prepared_report
from .session import FitJob, ImageRead, OpenJob, OpenReport, RetrackJob, Session, read_images


def _extract_tracks(job: RetrackJob, *, progress, cancel) -> Tracks:
    """Worker job: tracks from the cached probability map (no progress: under half a minute on a
    textured image of 8000 x 8000 px, where tracks grow; ``cancel`` is checked between tracks)."""
    r = job.result
    return r.tracks_at(job.threshold, job.min_area_px, job.pixel_size_um, job.min_contrast, job.clean, cancel,
                       job.grow_to)


def _fit_setting(job: FitJob, *, progress, cancel) -> SettingFit:
    """Worker job: the threshold and smallest contrast that best match the images' points (the tracks
    of each image found at the setting in use, then once per threshold tried: 15 s for an image of
    1024 x 1024 px; ``progress`` after each threshold, ``cancel`` checked between them and between
    tracks)."""
    s = job.retrack
    marked = []
    for r, points, regions in zip(job.results, job.points, job.regions, strict=True):
        now = _extract_tracks(replace(s, result=r), progress=progress, cancel=cancel)
        marked.append(MarkedImage(r.probability, r.image.data, r.contrast if job.measures_contrast else None, points,
                                  np.c_[now.columns["row"], now.columns["col"]], regions))
    return fit_setting(marked, s.threshold, s.min_contrast, min_area_px=s.min_area_px, grow_to=s.grow_to,
                       skip=job.skip, progress=progress, cancel=cancel)


def fit_message(names: list[str], job: FitJob, fit: SettingFit) -> str:
    """What a fit found, for the status bar."""
    def setting(threshold: float, min_contrast: float) -> str:
        return f"threshold {threshold:.2f}" + (f", contrast {min_contrast:.1f}" if job.measures_contrast else "")

    # The points that counted: those inside the images' regions.
    n, m, now = fit.before.tp + fit.before.fn, fit.match, setting(job.retrack.threshold, job.retrack.min_contrast)
    where = names[0] if len(names) == 1 else f"{len(names)} images ({', '.join(names)})"
    left_out = f" Left out: {'; '.join(job.unreadable)}." if job.unreadable else ""
    if not fit.changed:
        return f"{now.capitalize()} already matches the {n} points of {where} best (F1 {fit.before.f1:.3f}).{left_out}"
    return (f"Fitted to the {n} points of {where}: {setting(fit.threshold, fit.min_contrast)}, F1 {m.f1:.3f} "
            f"({m.tp} found, {m.fp} false, {m.fn} missed); at {now} it was {fit.before.f1:.3f}.{left_out}")


class JobRunner(QObject):
    #: the analysis started: its AnalysisJob
    job_started = Signal(object)
    #: tiles done, tiles in all, of the running analysis
    progress = Signal(int, int)
    #: for the status bar: text, how long to show it (ms)
    message = Signal(str, int)
    #: what went wrong (with the file), details
    failed = Signal(str, str)
    #: an Open's files are read (or it was cancelled): its OpenReport
    opened = Signal(object)
    #: an export written on a worker (the folder report): its path
    exported = Signal(str)
    #: fitting the setting to points started (True) or ended (False)
    fitting = Signal(bool)

    def __init__(self, session: Session, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.worker: workers.Worker | None = None  # the running analysis; its tag is its AnalysisJob
        self.retrack_worker: workers.Worker | None = None  # tag: its RetrackJob
        self.readers: list[workers.Worker] = []  # reading images for an Open each; tag: its OpenJob
        self.fit_worker: workers.Worker | None = None  # fitting the setting to points; tag: its FitJob
        self.report_workers: list[workers.Worker] = []  # folder reports being written; tag: the path
        self.retrack_failed = False  # the last re-tracking failed: the others wait for new settings
        # Moving the threshold slider asks many times a second; the newest setting wins.
        self.retrack_timer = QTimer(self, singleShot=True, interval=150)
        self.retrack_timer.timeout.connect(self._retrack)
        events = session.events
        events.threshold_changed.connect(lambda _threshold: self.retrack_soon(new_settings=True))
        events.min_contrast_changed.connect(lambda _contrast: self.retrack_soon(new_settings=True))
        events.pixel_size_changed.connect(lambda _pixel_size: self.retrack_soon(new_settings=True))
        events.result_added.connect(lambda _path: self._retrack())
        events.selected.connect(lambda _path: self._retrack())
        events.images_closed.connect(self._closed)
        events.image_replaced.connect(lambda path: self._closed([path]))  # another page: its analysis goes

    # -- opening ----------------------------------------------------------------
    def open(self, paths) -> None:
        """Open image files and folders of images: they join the session as they are read."""
        job = self.session.start_open(paths)
        if not job.files:  # all open already, or none found
            self.opened.emit(self.session.end_open(job))
            return
        self._start_reading(job)

    def read_page(self, path: Path, page: int) -> None:
        """Show another page (0-based) of an open stack, once it is read."""
        job = self.session.set_page(path, page)
        if job is not None:
            self._start_reading(job)

    def _start_reading(self, job: OpenJob) -> None:
        worker = workers.Worker(read_images, job.files, job.pages)
        worker.tag = job
        worker.signals.item.connect(lambda read: self._read(job, read))
        worker.signals.error.connect(self._read_failed)
        worker.signals.finished.connect(lambda: self._read_ended(worker))
        self.readers.append(worker)
        workers.start(worker, workers.Pool.READING)

    def stop_reading(self) -> None:
        """Stop reading after the file being read (quitting): the files not read yet are not wanted."""
        for worker in self.readers:
            worker.cancel()
        workers.wait_all(kinds=(workers.Pool.READING,))

    def _closed(self, paths: list[Path]) -> None:
        """Work for images that were closed is not wanted: it is cancelled (the queue goes on)."""
        if self.worker is not None and self.worker.tag.path in paths:
            self.worker.cancel()
        if self.retrack_worker is not None and self.retrack_worker.tag.path in paths:
            self.retrack_worker.cancel()
        for worker in self.readers:
            if not any(self.session.reading.get(p) is worker.tag for p in worker.tag.files):
                worker.cancel()

    def _read(self, job: OpenJob, read: ImageRead) -> None:
        if self.session.add_read(job, read) and read.image is None:
            self.message.emit(f"{read.path.name} could not be opened.", 5000)

    def _read_failed(self, message: str, details: str) -> None:
        self.failed.emit(f"Images could not be opened: {message}", details)

    def _read_ended(self, worker: workers.Worker) -> None:
        self.readers.remove(worker)
        report: OpenReport = self.session.end_open(worker.tag)
        self.opened.emit(report)

    # -- analysis ---------------------------------------------------------------
    def analyze_selected(self) -> None:
        if self.session.queue_selected():
            self._start_next()

    def analyze_all(self) -> None:
        if self.session.busy or not self.session.images:
            return
        if not self.session.queue_unanalyzed():
            self.message.emit("All images are analyzed already.", 4000)
        self._start_next()

    def cancel(self) -> None:
        """Empty the queue and stop the running analysis between two tiles (results already in stay)."""
        self.session.clear_queue()
        if self.worker is not None:
            self.worker.cancel()

    def _start_next(self) -> None:
        job = self.session.next_job()
        if job is None:
            self.worker = None
            return
        worker = workers.Worker(analyze, job.image, job.bundle, threshold=job.threshold,
                                min_contrast=job.min_contrast, pixel_size_um=job.pixel_size_um)
        worker.tag = job
        # Bound methods of this QObject: Qt delivers them on the GUI thread (queued).
        worker.signals.progress.connect(self._progress)
        worker.signals.result.connect(self._analyzed)
        worker.signals.error.connect(self._failed)
        worker.signals.cancelled.connect(self._cancelled)
        worker.signals.finished.connect(self._finished)
        self.worker = worker
        self.job_started.emit(job)
        workers.start(worker, workers.Pool.ANALYSIS)

    def _progress(self, done: int, total: int) -> None:
        self.progress.emit(done, total)

    def _analyzed(self, result: AnalysisResult) -> None:
        job = self.worker.tag
        if self.session.add_result(job, result):
            self.message.emit(f"{job.path.name}: {result.tracks.count} tracks", 5000)

    def _failed(self, message: str, details: str) -> None:
        self.session.clear_queue()
        self.failed.emit(f"{self.worker.tag.path.name} could not be analyzed: {message}", details)

    def _cancelled(self) -> None:
        job = self.worker.tag
        if self.session.images.get(job.path) is not job.image:  # its image was closed: the queue goes on
            return
        self.session.clear_queue()
        self.message.emit("Analysis cancelled; results already finished are kept.", 5000)

    def _finished(self) -> None:
        self.worker = None
        self._start_next()

    # -- re-tracking ------------------------------------------------------------
    def retrack_soon(self, new_settings: bool = False) -> None:
        """Re-extract the tracks at the session's settings (the selected image's first), once they rest for
        a moment. New settings stop a re-tracking at the old ones: on a large image it takes seconds."""
        if new_settings:
            self.retrack_failed = False
            if self.retrack_worker is not None:
                self.retrack_worker.cancel()
        self.retrack_timer.start()

    def _retrack(self) -> None:
        job = self.session.retrack_job()
        if job is None:  # nothing analyzed, or its tracks are current
            return
        if self.retrack_worker is not None:  # one at a time; the newest setting wins
            self.retrack_timer.start()
            return
        worker = workers.Worker(_extract_tracks, job)
        worker.tag = job
        worker.signals.result.connect(self._retracked)
        worker.signals.error.connect(self._retrack_failed)
        worker.signals.finished.connect(self._retrack_finished)
        self.retrack_worker = worker
        workers.start(worker, workers.Pool.QUICK)

    def _retracked(self, tracks: Tracks) -> None:
        self.session.set_tracks(self.retrack_worker.tag, tracks)

    def _retrack_failed(self, message: str, details: str) -> None:
        self.retrack_failed = True
        self.failed.emit(f"Tracks could not be updated: {message}", details)

    def _retrack_finished(self) -> None:
        self.retrack_worker = None
        if not self.retrack_failed:  # the next image whose tracks are not at the settings yet
            self._retrack()

    # -- fitting the setting to points -----------------------------------------------
    def fit_setting(self) -> None:
        """Fit the threshold and smallest contrast to the selected image's points on a worker, or stop
        the fitting under way; the session takes the setting found, :attr:`message` says what it
        was (and how far the fitting is), :attr:`failed` why there was none."""
        if self.fit_worker is not None:
            self.fit_worker.cancel()
            return
        try:
            job = self.session.fit_job()
        except ValueError as exc:
            self.failed.emit("The setting cannot be fitted to points yet.", str(exc))
            return
        worker = workers.Worker(_fit_setting, job)
        worker.tag = job
        n = sum(len(p) for p in job.points)
        worker.signals.progress.connect(lambda done, total: self.message.emit(
            f"Fitting the threshold and contrast to {n} points: {done} of {total} thresholds "
            "(Points > Stop fitting)…", 0))
        worker.signals.result.connect(self._fitted)
        worker.signals.error.connect(lambda message, details: self.failed.emit(
            f"The setting could not be fitted to the points: {message}", details))
        worker.signals.cancelled.connect(lambda: self.message.emit("Fitting stopped; the setting is unchanged.", 6000))
        worker.signals.finished.connect(self._fit_finished)
        self.fit_worker = worker
        self.message.emit(f"Fitting the threshold and contrast to {n} points…", 0)
        self.fitting.emit(True)
        workers.start(worker, workers.Pool.QUICK)

    def _fitted(self, fit: SettingFit) -> None:
        job = self.fit_worker.tag
        names = [self.session.name(p) for p in job.paths]
        if fit.changed and not self.session.apply_fit(job, fit):
            self.message.emit(f"An image of {', '.join(names)} was analyzed again or closed while the setting "
                              "was fitted; nothing changed.", 6000)
            return
        self.message.emit(fit_message(names, job, fit), 15000)

    def _fit_finished(self) -> None:
        self.fit_worker = None
        self.fitting.emit(False)

    # -- exports ----------------------------------------------------------------
    def write_report(self, job: ReportJob, path: Path) -> None:
        """Write the folder report on a worker; :attr:`exported` when written, :attr:`failed` if not."""
        worker = workers.Worker(write_prepared_report, job, path)
        worker.tag = path
        worker.signals.result.connect(lambda written: self.exported.emit(str(written)))
        worker.signals.error.connect(lambda message, details: self.failed.emit(
            f"{path} could not be written: {message}", details))
        worker.signals.finished.connect(lambda: self.report_workers.remove(worker))
        self.report_workers.append(worker)
        workers.start(worker, workers.Pool.EXPORT)
