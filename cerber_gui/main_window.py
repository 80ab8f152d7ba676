"""Cerber's main window: open images, Analyze, look at the result, export."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QToolBar,
    QWidget,
)

from cerber_model.runtime.analysis import AnalysisResult, analyze
from cerber_model.runtime.bundle import Bundle, BundleError, load_bundle, load_default_bundle
from cerber_model.runtime.export import (
    render_overlay,
    summary_row,
    write_overlay_png,
    write_probability_tiff,
    write_summary_csv,
    write_tracks_csv,
)
from cerber_model.runtime.images import IMAGE_SUFFIXES, Image, is_image_file, read_image
from cerber_model.runtime.tracks import extract_tracks

from . import logfile, workers
from .settings import Key, Settings
from .track_panel import TrackPanel
from .viewer import MODES, SideBySideViewer

log = logging.getLogger("cerber")
IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ");;All files (*)"


def _analyze_image(image: Image, bundle: Bundle, threshold: float, pixel_size: float | None, *, progress, cancel):
    """Worker job: analyze one image already read on opening (snapshot of the settings, no widgets)."""
    return analyze(image, bundle, threshold=threshold, pixel_size_um=pixel_size, progress=progress, cancel=cancel)


def _retrack(result: AnalysisResult, threshold: float, min_area: int, pixel_size: float | None, *, progress,
             cancel):
    """Worker job: tracks from the cached probability map at a new threshold."""
    return extract_tracks(result.probability, result.image.data, threshold, min_area, pixel_size)


class MainWindow(QMainWindow):
    #: emitted after the results of an image are shown (for tests and scripting)
    analysis_shown = Signal(str)
    tracks_updated = Signal(int)

    def __init__(self, bundle: Bundle | None = None, settings: Settings | QSettings | None = None):
        super().__init__()
        self.setWindowTitle("Cerber — track analyzer")
        self.setAcceptDrops(True)
        self.settings = settings if isinstance(settings, Settings) else Settings(settings)
        self.bundle = bundle
        self.results: dict[Path, AnalysisResult] = {}
        self.images: dict[Path, Image] = {}
        self.current: Path | None = None
        self.queue: list[Path] = []
        self.job: workers.Worker | None = None
        self.retrack_job: workers.Worker | None = None
        self.wizard = None

        self.viewer = SideBySideViewer()
        self.setCentralWidget(self.viewer)
        self.image_list = QListWidget()
        self.image_list.currentItemChanged.connect(self._image_chosen)
        images_dock = self._dock("Images", self.image_list, Qt.LeftDockWidgetArea)
        self.track_panel = TrackPanel()
        self.track_panel.track_selected.connect(lambda r, c: self.viewer.centre_on(r, c))
        tracks_dock = self._dock("Tracks", self.track_panel, Qt.RightDockWidgetArea)
        self.levels_dock = self._dock("Levels", self.viewer.levels_widget(), Qt.LeftDockWidgetArea)
        self._build_actions()
        self._build_status()
        self.viewer.hovered.connect(self._hovered)
        self.retrack_timer = QTimer(self, singleShot=True, interval=150)
        self.retrack_timer.timeout.connect(self._retrack)
        geometry = self.settings.value(Key.GEOMETRY)
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 900)
        # The images get most of the room; the lists and the table what they need.
        self.resizeDocks([images_dock, tracks_dock], [190, 470], Qt.Horizontal)
        self.resizeDocks([images_dock, self.levels_dock], [500, 260], Qt.Vertical)
        state = self.settings.value(Key.WINDOW_STATE)
        if state is not None:
            self.restoreState(state)
        self._update_recent_menu()
        self._model_changed()

    # -- construction ---------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcut=None, menu=None) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        if menu is not None:
            menu.addAction(action)
        return action

    def _build_actions(self) -> None:
        files = self.menuBar().addMenu("&File")
        self.open_action = self._action("&Open images…", self.open_dialog, QKeySequence.Open, files)
        self._action("Open &folder…", self.open_folder_dialog, "Ctrl+Shift+O", files)
        self.recent_menu = files.addMenu("Open &recent")
        files.addSeparator()
        self.export_tracks_action = self._action("Export &tracks CSV…", self.export_tracks, "Ctrl+E", files)
        self._action("Export &summary CSV (all analyzed)…", self.export_summary, None, files)
        self._action("Export &overlay PNG…", self.export_overlay, None, files)
        self._action("Export &probability TIFF…", self.export_probability, None, files)
        files.addSeparator()
        self._action("&Quit", self.close, QKeySequence.Quit, files)
        analysis = self.menuBar().addMenu("&Analysis")
        self.analyze_action = self._action("&Analyze", self.analyze_current, "Ctrl+R", analysis)
        self.analyze_all_action = self._action("Analyze &all", self.analyze_all, "Ctrl+Shift+R", analysis)
        self.cancel_action = self._action("&Cancel", self.cancel, "Esc", analysis)
        models = self.menuBar().addMenu("&Model")
        self._action("&Load model folder…", self.load_model_dialog, None, models)
        self._action("Use the &default model", self.use_default_model, None, models)
        models.addSeparator()
        self._action("About this &model…", self.show_model_card, None, models)
        self._action("&Train a model…", self.open_training_wizard, None, models)
        view = self.menuBar().addMenu("&View")
        self._action("&Auto levels", self.viewer.reset_levels, "Ctrl+L", view)
        view.addSeparator()
        for dock in self.findChildren(QDockWidget):
            view.addAction(dock.toggleViewAction())

        bar = QToolBar("Main")
        bar.setObjectName("main-toolbar")
        self.addToolBar(bar)
        bar.addAction(self.open_action)
        self.analyze_button = QPushButton("Analyze")
        self.analyze_button.setToolTip("Analyze the current image (Ctrl+R)")
        self.analyze_button.clicked.connect(self.analyze_current)
        bar.addWidget(self.analyze_button)
        self.analyze_all_button = QPushButton("Analyze all")
        self.analyze_all_button.clicked.connect(self.analyze_all)
        bar.addWidget(self.analyze_all_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        bar.addWidget(self.cancel_button)
        bar.addSeparator()
        bar.addWidget(QLabel(" Threshold "))
        self.threshold_slider = QSlider(Qt.Horizontal)
        self.threshold_slider.setRange(1, 99)
        self.threshold_slider.setFixedWidth(160)
        self.threshold_slider.valueChanged.connect(self._threshold_moved)
        bar.addWidget(self.threshold_slider)
        self.threshold_label = QLabel("0.50")
        bar.addWidget(self.threshold_label)
        bar.addSeparator()
        bar.addWidget(QLabel(" View "))
        self.mode_box = QComboBox()
        self.mode_box.addItems(MODES)
        self.mode_box.currentTextChanged.connect(self.viewer.set_mode)
        bar.addWidget(self.mode_box)
        bar.addWidget(QLabel(" Opacity "))
        self.opacity_slider = QSlider(Qt.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        self.opacity_slider.setFixedWidth(100)
        self.opacity_slider.valueChanged.connect(lambda v: self.viewer.set_opacity(v / 100))
        bar.addWidget(self.opacity_slider)
        bar.addSeparator()
        bar.addWidget(QLabel(" Pixel size "))
        self.pixel_size = QDoubleSpinBox()
        self.pixel_size.setRange(0, 1000)
        self.pixel_size.setDecimals(4)
        self.pixel_size.setSuffix(" µm/px")
        self.pixel_size.setSpecialValueText("unknown")
        self.pixel_size.setValue(self.settings.pixel_size())
        self.pixel_size.valueChanged.connect(lambda _: self.retrack_timer.start())
        bar.addWidget(self.pixel_size)

    def _build_status(self) -> None:
        self.cursor_label = QLabel("")
        self.statusBar().addWidget(self.cursor_label, 1)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(260)
        self.progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.progress)
        self.model_label = QLabel("")
        self.statusBar().addPermanentWidget(self.model_label)
        self._set_busy(False)

    # -- state -----------------------------------------------------------------
    def _set_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        self.cancel_action.setEnabled(busy)
        for w in (self.analyze_button, self.analyze_all_button):
            w.setEnabled(not busy and bool(self.images) and self.bundle is not None)
        self.analyze_action.setEnabled(self.analyze_button.isEnabled())
        self.analyze_all_action.setEnabled(self.analyze_all_button.isEnabled())
        self.progress.setVisible(busy)

    @property
    def busy(self) -> bool:
        return self.job is not None

    def threshold(self) -> float:
        return self.threshold_slider.value() / 100

    def pixel_size_um(self) -> float | None:
        return self.pixel_size.value() or None

    def _model_changed(self) -> None:
        if self.bundle is None:
            self.model_label.setText("no model loaded")
        else:
            self.model_label.setText(f"model: {self.bundle.name}")
            self.threshold_slider.blockSignals(True)
            self.threshold_slider.setValue(round(self.bundle.config.threshold * 100))
            self.threshold_slider.blockSignals(False)
            self.threshold_label.setText(f"{self.threshold():.2f}")
        self.results.clear()
        self._show_current()
        self._set_busy(self.busy)

    # -- opening ------------------------------------------------------------
    def open_dialog(self) -> None:
        start = str(self.settings.last_folder())
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", start, IMAGE_FILTER)
        if paths:
            self.open_paths([Path(p) for p in paths])

    def open_folder_dialog(self) -> None:
        start = str(self.settings.last_folder())
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", start)
        if folder:
            self.open_paths([Path(folder)])

    def open_paths(self, paths: list[Path]) -> None:
        """Add images (files or folders of images) to the list and show the first new one."""
        files: list[Path] = []
        folders: list[Path] = []  # folders that held images, for the recent list
        for path in paths:
            if path.is_dir():
                found = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
                if not found:
                    self.show_error(f"{path} holds no BMP, PNG or TIFF images.", "Choose a folder with images.")
                else:
                    folders.append(path)
                files += found
            else:
                files.append(path)
        first_new = None
        failed = []
        for path in files:
            path = path.resolve()
            if path in self.images:
                continue
            try:
                image = read_image(path)
            except Exception as exc:  # ImageReadError names the file and the fix
                failed.append(str(exc))
                continue
            self.images[path] = image
            item = QListWidgetItem(path.name)
            item.setData(Qt.UserRole, str(path))
            item.setToolTip(f"{path}\n{image.shape[1]} x {image.shape[0]} px, {image.bit_depth}"
                            + "".join(f"\n{n}" for n in image.notes))
            self.image_list.addItem(item)
            first_new = first_new or item
        if failed:
            self.show_error(f"{len(failed)} file(s) could not be opened.", "\n".join(failed))
        if files:
            self.settings.set_value(Key.LAST_FOLDER, str(files[0].parent))
        opened = folders + [p for p in paths if not p.is_dir() and p.resolve() in self.images]
        if opened:
            self._remember(opened)
        if first_new is not None:
            self.image_list.setCurrentItem(first_new)
        self._set_busy(self.busy)

    def _remember(self, paths: list[Path]) -> None:
        self.settings.remember_recent(paths)
        self._update_recent_menu()

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent()
        for path in recent:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self._open_recent(p))
        self.recent_menu.addSeparator()
        clear = self.recent_menu.addAction("Clear the list")
        clear.triggered.connect(self._clear_recent)
        clear.setEnabled(bool(recent))

    def _open_recent(self, path: str) -> None:
        if not Path(path).exists():
            self.show_error(f"{path} is no longer there.", "It was moved, renamed or is on a drive that is not "
                            "connected. It has been removed from the recent list.")
            self.settings.forget_recent(path)
            self._update_recent_menu()
            return
        self.open_paths([Path(path)])

    def _clear_recent(self) -> None:
        self.settings.clear_recent()
        self._update_recent_menu()

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        self.open_paths([Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()])

    def _image_chosen(self, item, _previous=None) -> None:
        if item is None:
            return
        self.current = Path(item.data(Qt.UserRole))
        self.viewer.set_image(self.images[self.current].data)
        self._show_current()

    def _show_current(self) -> None:
        result = self.results.get(self.current) if self.current else None
        if result is None:
            self.track_panel.set_tracks(None)
            if self.current is not None:
                self.viewer.set_image(self.images[self.current].data)
            return
        tracks = result.tracks
        self.viewer.set_result(result.probability, tracks.labels, np.c_[tracks.columns["row"], tracks.columns["col"]])
        self.track_panel.set_tracks(tracks, self.current.name, result.model_name)
        self.analysis_shown.emit(str(self.current))

    def _hovered(self, row: int, col: int, value: float, prob: float) -> None:
        text = f"row {row}, col {col}: value {value:g}"
        if not np.isnan(prob):
            text += f", probability {prob:.3f}"
        self.cursor_label.setText(text)

    # -- analysis -------------------------------------------------------------
    def analyze_current(self) -> None:
        if self.current is not None and not self.busy:
            self.queue = [self.current]
            self._next_in_queue()

    def analyze_all(self) -> None:
        if not self.busy and self.images:
            self.queue = [p for p in self.images if p not in self.results]
            if not self.queue:
                self.statusBar().showMessage("All images are analyzed already.", 4000)
            self._next_in_queue()

    def _next_in_queue(self) -> None:
        if not self.queue or self.bundle is None:
            self.job = None
            self._set_busy(False)
            return
        path = self.queue.pop(0)
        total = len(self.queue) + 1
        self.progress.setFormat(f"{path.name}: %v/%m tiles" + (f" ({total - 1} more)" if total > 1 else ""))
        job = workers.Worker(_analyze_image, self.images[path], self.bundle, self.threshold(), self.pixel_size_um())
        job.tag = path
        # Bound methods of this window: Qt delivers them on the GUI thread (queued).
        job.signals.progress.connect(self._progress)
        job.signals.result.connect(self._analyzed)
        job.signals.error.connect(self._job_failed)
        job.signals.cancelled.connect(self._cancelled)
        job.signals.finished.connect(self._job_finished)
        self.job = job
        self._set_busy(True)
        self.progress.setRange(0, 0)
        workers.start(job)

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _analyzed(self, result: AnalysisResult) -> None:
        path = self.job.tag
        self.results[path] = result
        if path == self.current:
            self._show_current()
        self.statusBar().showMessage(f"{path.name}: {result.tracks.count} tracks", 5000)

    def _job_failed(self, message: str, details: str) -> None:
        self.queue.clear()
        self.show_error(f"{self.job.tag.name} could not be analyzed: {message}", details)

    def _cancelled(self) -> None:
        self.queue.clear()
        self.statusBar().showMessage("Analysis cancelled; results already finished are kept.", 5000)

    def _job_finished(self) -> None:
        self.job = None
        self._next_in_queue()

    def cancel(self) -> None:
        self.queue.clear()
        if self.job is not None:
            self.job.cancel()

    def _threshold_moved(self, value: int) -> None:
        self.threshold_label.setText(f"{value / 100:.2f}")
        self.retrack_timer.start()

    def _retrack(self) -> None:
        """Re-extract tracks of the current image from its cached probability map."""
        self.settings.set_value(Key.PIXEL_SIZE, self.pixel_size.value())
        result = self.results.get(self.current) if self.current else None
        if result is None or self.bundle is None:
            return
        if self.retrack_job is not None:  # one at a time; the newest setting wins
            self.retrack_timer.start()
            return
        job = workers.Worker(_retrack, result, self.threshold(), self.bundle.config.min_area_px,
                             self.pixel_size_um())
        job.tag = self.current
        job.signals.result.connect(self._retracked)
        job.signals.error.connect(self._retrack_failed)
        job.signals.finished.connect(self._retrack_finished)
        self.retrack_job = job
        workers.start(job)

    def _retrack_failed(self, message: str, details: str) -> None:
        self.show_error(f"Tracks could not be updated: {message}", details)

    def _retrack_finished(self) -> None:
        self.retrack_job = None

    def _retracked(self, tracks) -> None:
        path = self.retrack_job.tag
        result = self.results.get(path)
        if result is None:
            return
        result.tracks = tracks
        if path == self.current:
            self.viewer.set_tracks(tracks.labels, np.c_[tracks.columns["row"], tracks.columns["col"]])
            self.track_panel.set_tracks(tracks, path.name, result.model_name)
        self.tracks_updated.emit(tracks.count)

    # -- models -----------------------------------------------------------------
    def load_model_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Load a model folder")
        if folder:
            self.load_model(Path(folder))

    def load_model(self, path: Path) -> bool:
        """Load a bundle; a damaged one gets a dialog and the current model stays."""
        try:
            bundle = load_bundle(path)
        except BundleError as exc:
            self.show_error("This model cannot be used; the current model stays loaded.", str(exc))
            return False
        self.bundle = bundle
        self._model_changed()
        return True

    def use_default_model(self) -> None:
        try:
            self.bundle = load_default_bundle()
        except BundleError as exc:
            self.show_error("The default model cannot be loaded.", str(exc))
            return
        self._model_changed()

    def open_training_wizard(self):
        from cerber_model.training import training_unavailable

        problem = training_unavailable()
        if problem:
            self.show_error("This installation cannot train models.", problem)
            return None
        from .training_wizard import TrainingWizard

        wizard = TrainingWizard(self, start_model=self.bundle)
        wizard.use_model.connect(lambda path: self.load_model(Path(path)))
        wizard.open()
        self.wizard = wizard
        return wizard

    def show_model_card(self) -> None:
        from .model_card import ModelCardDialog

        if self.bundle is None:
            self.show_error("No model is loaded.", "Load a model folder from the Model menu.")
            return
        ModelCardDialog(self.bundle, self).open()

    # -- export -------------------------------------------------------------------
    def _save_path(self, title: str, suffix: str, filter_: str) -> Path | None:
        if self.current is None or self.current not in self.results:
            self.show_error("Analyze the image first.", "There is nothing to export yet.")
            return None
        start = str(self.current.with_name(f"{self.current.stem}{suffix}"))
        # Qt's save dialog asks before replacing an existing file.
        path, _ = QFileDialog.getSaveFileName(self, title, start, filter_)
        return Path(path) if path else None

    def _export(self, write, path: Path | None) -> None:
        if path is None:
            return
        try:
            write(path)
        except OSError as exc:
            self.show_error(f"{path} could not be written ({exc.strerror or exc}).",
                            "Check that the folder exists, is writable and has free space.")
            return
        self.statusBar().showMessage(f"Saved {path}", 5000)

    def export_tracks(self) -> None:
        path = self._save_path("Export tracks", "_tracks.csv", "CSV (*.csv)")
        self._export(lambda p: write_tracks_csv(self.results[self.current].tracks, p), path)

    def export_probability(self) -> None:
        path = self._save_path("Export probability map", "_probability.tif", "TIFF (*.tif)")
        self._export(lambda p: write_probability_tiff(self.results[self.current].probability, p), path)

    def export_overlay(self) -> None:
        path = self._save_path("Export overlay", "_overlay.png", "PNG (*.png)")
        r = self.results.get(self.current)
        self._export(lambda p: write_overlay_png(
            render_overlay(r.image.data, r.probability, r.tracks.labels, self.opacity_slider.value() / 100), p), path)

    def export_summary(self) -> None:
        if not self.results:
            self.show_error("Analyze some images first.", "There is nothing to export yet.")
            return
        start = str(self.settings.last_folder() / "summary.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export summary", start, "CSV (*.csv)")
        rows = [summary_row(str(p), r.tracks, r.model_name) for p, r in self.results.items()]
        self._export(lambda p: write_summary_csv(rows, p), Path(path) if path else None)

    # -- errors and closing --------------------------------------------------------
    def show_error(self, message: str, details: str = "") -> None:
        """A dialog with the message (what and the fix) and expandable details; also logged."""
        log.error("%s %s", message, details)
        box = QMessageBox(QMessageBox.Warning, "Cerber", message, QMessageBox.Ok, self)
        log_file = logfile.current()
        if details or log_file:
            box.setDetailedText(details + (f"\n\nLogged in {log_file}" if log_file else ""))
        box.open()
        self.last_error = (message, details)

    def closeEvent(self, event) -> None:
        if self.busy:
            answer = QMessageBox.question(self, "Cerber", "An analysis is running. Stop it and quit?")
            if answer != QMessageBox.Yes:
                event.ignore()
                return
            self.cancel()
            workers.wait_all()
        if self.wizard is not None and self.wizard.isVisible() and not self.wizard.close():
            event.ignore()  # training runs on; the wizard asked and the user said no
            return
        self.settings.set_value(Key.GEOMETRY, self.saveGeometry())
        self.settings.set_value(Key.WINDOW_STATE, self.saveState())
        event.accept()
