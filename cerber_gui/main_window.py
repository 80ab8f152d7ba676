"""Cerber's main window: open images, Analyze, look at the result, export."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, Signal
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

from cerber_model.runtime.bundle import Bundle, BundleError, load_bundle, load_default_bundle
from cerber_model.runtime.export import (
    render_overlay,
    summary_row,
    write_overlay_png,
    write_probability_tiff,
    write_summary_csv,
    write_tracks_csv,
)
from cerber_model.runtime.images import IMAGE_SUFFIXES

from . import logfile, workers
from .jobs import JobRunner
from .session import AnalysisJob, Session
from .settings import Key, Settings
from .track_panel import TrackPanel
from .viewer import MODES, SideBySideViewer

log = logging.getLogger("cerber")
IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ");;All files (*)"


class MainWindow(QMainWindow):
    #: emitted after the results of an image are shown (for tests and scripting)
    analysis_shown = Signal(str)
    tracks_updated = Signal(int)

    def __init__(self, bundle: Bundle | None = None, settings: Settings | QSettings | None = None):
        super().__init__()
        self.setWindowTitle("Cerber — track analyzer")
        self.setAcceptDrops(True)
        self.settings = settings if isinstance(settings, Settings) else Settings(settings)
        self.session = Session(bundle, self.settings.pixel_size())
        self.jobs = JobRunner(self.session, self)
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
        self._observe_session()
        self._observe_jobs()
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
        self._model_changed(self.session.bundle)

    def _observe_session(self) -> None:
        events = self.session.events
        events.images_added.connect(self._images_added)
        events.selected.connect(self._selected)
        events.model_changed.connect(self._model_changed)
        events.threshold_changed.connect(self._threshold_changed)
        events.pixel_size_changed.connect(self._pixel_size_changed)
        events.busy_changed.connect(self._update_controls)
        events.result_added.connect(self._result_added)
        events.tracks_changed.connect(self._tracks_changed)

    def _observe_jobs(self) -> None:
        self.jobs.job_started.connect(self._job_started)
        self.jobs.progress.connect(self._progress)
        self.jobs.message.connect(self.statusBar().showMessage)
        self.jobs.failed.connect(self.show_error)

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
        self.analyze_action = self._action("&Analyze", self.jobs.analyze_selected, "Ctrl+R", analysis)
        self.analyze_all_action = self._action("Analyze &all", self.jobs.analyze_all, "Ctrl+Shift+R", analysis)
        self.cancel_action = self._action("&Cancel", self.jobs.cancel, "Esc", analysis)
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
        self.analyze_button.clicked.connect(self.jobs.analyze_selected)
        bar.addWidget(self.analyze_button)
        self.analyze_all_button = QPushButton("Analyze all")
        self.analyze_all_button.clicked.connect(self.jobs.analyze_all)
        bar.addWidget(self.analyze_all_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.jobs.cancel)
        bar.addWidget(self.cancel_button)
        bar.addSeparator()
        bar.addWidget(QLabel(" Threshold "))
        self.threshold_slider = QSlider(Qt.Horizontal)
        self.threshold_slider.setRange(1, 99)
        self.threshold_slider.setFixedWidth(160)
        self.threshold_slider.valueChanged.connect(lambda v: self.session.set_threshold(v / 100))
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
        self.pixel_size.valueChanged.connect(self.session.set_pixel_size)
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
        self._update_controls()

    # -- showing the session -----------------------------------------------------
    def _update_controls(self, _busy: bool = False) -> None:
        busy = self.session.busy
        self.cancel_button.setEnabled(busy)
        self.cancel_action.setEnabled(busy)
        for w in (self.analyze_button, self.analyze_all_button, self.analyze_action, self.analyze_all_action):
            w.setEnabled(self.session.can_analyze)
        self.progress.setVisible(busy)

    def _model_changed(self, bundle: Bundle | None) -> None:
        if bundle is None:
            self.model_label.setText("no model loaded")
        else:
            self.model_label.setText(f"model: {bundle.name}")
            self._show_threshold(self.session.threshold)
        if self.session.selected is not None:  # the previous model's result goes
            self.viewer.set_image(self.session.images[self.session.selected].data)
        self._show_result()
        self._update_controls()

    def _show_threshold(self, threshold: float) -> None:
        self.threshold_slider.blockSignals(True)
        self.threshold_slider.setValue(round(threshold * 100))
        self.threshold_slider.blockSignals(False)
        self.threshold_label.setText(f"{threshold:.2f}")

    def _threshold_changed(self, threshold: float) -> None:
        self._show_threshold(threshold)
        self.jobs.retrack_soon()

    def _pixel_size_changed(self, pixel_size_um: float | None) -> None:
        self.settings.set_value(Key.PIXEL_SIZE, pixel_size_um or 0.0)
        self.jobs.retrack_soon()

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
        report = self.session.open(paths)
        for folder in report.empty_folders:
            self.show_error(f"{folder} holds no BMP, PNG or TIFF images.", "Choose a folder with images.")
        if report.unreadable:
            self.show_error(f"{len(report.unreadable)} file(s) could not be opened.", "\n".join(report.unreadable))
        if report.folder is not None:
            self.settings.set_value(Key.LAST_FOLDER, str(report.folder))
        if report.opened:
            self._remember(report.opened)
        self._update_controls()

    def _images_added(self, paths: list[Path]) -> None:
        for path in paths:
            image = self.session.images[path]
            item = QListWidgetItem(path.name)
            item.setData(Qt.UserRole, str(path))
            item.setToolTip(f"{path}\n{image.shape[1]} x {image.shape[0]} px, {image.bit_depth}"
                            + "".join(f"\n{n}" for n in image.notes))
            self.image_list.addItem(item)

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
        if item is not None:
            self.session.select(Path(item.data(Qt.UserRole)))

    def _selected(self, path: Path) -> None:
        item = self.image_list.currentItem()
        if item is None or item.data(Qt.UserRole) != str(path):
            self.image_list.blockSignals(True)
            self.image_list.setCurrentItem(next(self.image_list.item(i) for i in range(self.image_list.count())
                                                if self.image_list.item(i).data(Qt.UserRole) == str(path)))
            self.image_list.blockSignals(False)
        self.viewer.set_image(self.session.images[path].data)
        self._show_result()

    def _show_result(self) -> None:
        """The selected image's result in the viewer and the table (or an empty table)."""
        result = self.session.selected_result()
        if result is None:
            self.track_panel.set_tracks(None)
            return
        path, tracks = self.session.selected, result.tracks
        self.viewer.set_result(result.probability, tracks.labels, np.c_[tracks.columns["row"], tracks.columns["col"]])
        self.track_panel.set_tracks(tracks, path.name, result.model_name)
        self.analysis_shown.emit(str(path))

    def _result_added(self, path: Path) -> None:
        if path == self.session.selected:
            self._show_result()

    def _tracks_changed(self, path: Path) -> None:
        result = self.session.results[path]
        tracks = result.tracks
        if path == self.session.selected:
            self.viewer.set_tracks(tracks.labels, np.c_[tracks.columns["row"], tracks.columns["col"]])
            self.track_panel.set_tracks(tracks, path.name, result.model_name)
        self.tracks_updated.emit(tracks.count)

    def _hovered(self, row: int, col: int, value: float, prob: float) -> None:
        text = f"row {row}, col {col}: value {value:g}"
        if not np.isnan(prob):
            text += f", probability {prob:.3f}"
        self.cursor_label.setText(text)

    # -- analysis -------------------------------------------------------------
    def _job_started(self, job: AnalysisJob) -> None:
        self.progress.setFormat(f"{job.path.name}: %v/%m tiles" + (f" ({job.waiting} more)" if job.waiting else ""))
        self.progress.setRange(0, 0)

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

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
        self.session.set_bundle(bundle)
        return True

    def use_default_model(self) -> None:
        try:
            bundle = load_default_bundle()
        except BundleError as exc:
            self.show_error("The default model cannot be loaded.", str(exc))
            return
        self.session.set_bundle(bundle)

    def open_training_wizard(self):
        from cerber_model.training import training_unavailable

        problem = training_unavailable()
        if problem:
            self.show_error("This installation cannot train models.", problem)
            return None
        from .training_wizard import TrainingWizard

        wizard = TrainingWizard(self, start_model=self.session.bundle)
        wizard.use_model.connect(lambda path: self.load_model(Path(path)))
        wizard.open()
        self.wizard = wizard
        return wizard

    def show_model_card(self) -> None:
        from .model_card import ModelCardDialog

        if self.session.bundle is None:
            self.show_error("No model is loaded.", "Load a model folder from the Model menu.")
            return
        ModelCardDialog(self.session.bundle, self).open()

    # -- export -------------------------------------------------------------------
    def _save_path(self, title: str, suffix: str, filter_: str) -> Path | None:
        current = self.session.selected
        if self.session.selected_result() is None:
            self.show_error("Analyze the image first.", "There is nothing to export yet.")
            return None
        start = str(current.with_name(f"{current.stem}{suffix}"))
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
        self._export(lambda p: write_tracks_csv(self.session.selected_result().tracks, p), path)

    def export_probability(self) -> None:
        path = self._save_path("Export probability map", "_probability.tif", "TIFF (*.tif)")
        self._export(lambda p: write_probability_tiff(self.session.selected_result().probability, p), path)

    def export_overlay(self) -> None:
        path = self._save_path("Export overlay", "_overlay.png", "PNG (*.png)")
        r = self.session.selected_result()
        self._export(lambda p: write_overlay_png(
            render_overlay(r.image.data, r.probability, r.tracks.labels, self.opacity_slider.value() / 100), p), path)

    def export_summary(self) -> None:
        results = self.session.results
        if not results:
            self.show_error("Analyze some images first.", "There is nothing to export yet.")
            return
        start = str(self.settings.last_folder() / "summary.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export summary", start, "CSV (*.csv)")
        rows = [summary_row(str(p), r.tracks, r.model_name) for p, r in results.items()]
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
        if self.session.busy:
            answer = QMessageBox.question(self, "Cerber", "An analysis is running. Stop it and quit?")
            if answer != QMessageBox.Yes:
                event.ignore()
                return
            self.jobs.cancel()
            workers.wait_all()
        if self.wizard is not None and self.wizard.isVisible() and not self.wizard.close():
            event.ignore()  # training runs on; the wizard asked and the user said no
            return
        self.settings.set_value(Key.GEOMETRY, self.saveGeometry())
        self.settings.set_value(Key.WINDOW_STATE, self.saveState())
        event.accept()
