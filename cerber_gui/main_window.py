"""Cerber's main window: open images, Analyze, look at the result and its fluence, draw regions,
look at spectra, export, annotate points.

The window is wiring. The state is the :class:`~cerber_gui.session.Session` (plain Python), which
the window observes and draws; :class:`~cerber_gui.jobs.JobRunner` runs the session's analyses
and re-tracking off the GUI thread; the menu bar and the toolbar only say what the user asked
for; the settings go through :class:`~cerber_gui.settings.Settings`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QWidget,
)

from cerber_model.runtime.bundle import Bundle, BundleError, bundled_models, load_bundle
from cerber_model.runtime.images import IMAGE_SUFFIXES

from . import dialogs, exports, workers
from .dose import describe_image, describe_pooled
from .exports import ExportKind
from .jobs import JobRunner
from .menu_bar import MenuBar
from .session import AnalysisJob, Session
from .settings import Key, Settings
from .spectra_panel import SpectraPanel
from .toolbar import ToolBar
from .track_panel import TrackPanel
from .viewer import SideBySideViewer

IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ");;All files (*)"


class MainWindow(QMainWindow):
    #: emitted after the results of an image are shown (for tests and scripting)
    analysis_shown = Signal(str)
    tracks_updated = Signal(int)
    #: an Open has read its files (the images are in the list, errors shown): its OpenReport
    images_opened = Signal(object)
    #: an export was written: its path (the folder report is written on a worker)
    exported = Signal(str)

    def __init__(self, bundle: Bundle | None = None, settings: Settings | QSettings | None = None):
        super().__init__()
        self.setWindowTitle("Cerber — track analyzer")
        self.setAcceptDrops(True)
        self.settings = settings if isinstance(settings, Settings) else Settings(settings)
        self.session = Session(bundle, self.settings.pixel_size())
        self.jobs = JobRunner(self.session, self)
        self.wizard = None
        self.last_error: tuple[str, str] | None = None

        self.viewer = SideBySideViewer()
        self.setCentralWidget(self.viewer)
        self.image_list = QListWidget()
        images_dock = self._dock("Images", self.image_list, Qt.LeftDockWidgetArea)
        self.track_panel = TrackPanel()
        tracks_dock = self._dock("Tracks", self.track_panel, Qt.RightDockWidgetArea)
        self.spectra_panel = SpectraPanel()
        self.spectra_dock = self._dock("Spectra", self.spectra_panel, Qt.RightDockWidgetArea)
        self.tabifyDockWidget(tracks_dock, self.spectra_dock)
        tracks_dock.raise_()
        self.levels_dock = self._dock("Levels", self.viewer.levels_widget(), Qt.LeftDockWidgetArea)
        self.menu_bar = MenuBar(other_models=[name for name in bundled_models() if name != "default"])
        self.setMenuBar(self.menu_bar)
        self.menu_bar.add_panel_toggles([d.toggleViewAction() for d in (images_dock, tracks_dock, self.spectra_dock,
                                                                         self.levels_dock)])
        self.toolbar = ToolBar()
        self.addToolBar(self.toolbar)
        self.toolbar.set_pixel_size(self.session.pixel_size_um)
        self._build_status()
        self._connect_widgets()
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
        self.menu_bar.set_recent(self.settings.recent())
        self._model_changed(self.session.bundle)

    # -- construction and wiring ----------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_status(self) -> None:
        self.cursor_label = QLabel("")
        self.statusBar().addWidget(self.cursor_label, 1)
        self.points_label = QLabel("")  # while annotating: how many points, and whether they are saved
        self.points_label.setVisible(False)
        self.statusBar().addPermanentWidget(self.points_label)
        self.regions_label = QLabel("")  # in regions mode: how to draw, and the file they are saved in
        self.regions_label.setVisible(False)
        self.statusBar().addPermanentWidget(self.regions_label)
        self.progress = QProgressBar()  # the running analysis: its tiles, then "finding tracks"
        self._analyzing: AnalysisJob | None = None
        self.progress.setFixedWidth(260)
        self.progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.progress)
        self.model_label = QLabel("")
        self.statusBar().addPermanentWidget(self.model_label)

    def _connect_widgets(self) -> None:
        menu, bar = self.menu_bar, self.toolbar
        for widget in (menu, bar):
            widget.open_requested.connect(self.open_dialog)
            widget.analyze_requested.connect(self.jobs.analyze_selected)
            widget.analyze_all_requested.connect(self.jobs.analyze_all)
            widget.cancel_requested.connect(self.jobs.cancel)
        menu.open_folder_requested.connect(self.open_folder_dialog)
        menu.open_recent_requested.connect(self._open_recent)
        menu.clear_recent_requested.connect(self._clear_recent)
        menu.close_requested.connect(self.close_image)
        menu.close_all_requested.connect(self.close_all_images)
        menu.export_requested.connect(self.export)
        menu.quit_requested.connect(self.close)
        menu.load_model_requested.connect(self.load_model_dialog)
        menu.default_model_requested.connect(self.use_default_model)
        menu.bundled_model_requested.connect(self.use_bundled_model)
        menu.model_card_requested.connect(self.show_model_card)
        menu.train_requested.connect(self.open_training_wizard)
        menu.fit_setting_requested.connect(self.jobs.fit_setting)
        self.jobs.fitting.connect(self._fitting)
        menu.auto_levels_requested.connect(self.viewer.reset_levels)
        for widget in (menu, bar):
            widget.annotate_toggled.connect(self.annotate)
            widget.accept_detections_requested.connect(self.accept_detections)
            widget.save_points_requested.connect(self.save_points)
        menu.undo_requested.connect(self.undo)
        menu.redo_requested.connect(self.redo)
        self.viewer.point_clicked.connect(self._point_clicked)
        for widget in (menu, bar):
            widget.regions_toggled.connect(self.draw_regions)
            widget.exclude_toggled.connect(
                lambda on: self.session.set_region_kind("exclude" if on else "include"))
        menu.finish_polygon_requested.connect(self.finish_polygon)
        menu.delete_region_requested.connect(self.delete_region)
        self.viewer.region_clicked.connect(self._region_clicked)
        self.viewer.region_double_clicked.connect(self.finish_polygon)
        self.viewer.region_discard_requested.connect(self._discard_polygon)
        self.spectra_panel.quantity_changed.connect(lambda _q: self._show_spectra())
        self.spectra_panel.pooled_changed.connect(lambda _p: self._show_spectra())
        bar.page_changed.connect(self._page_chosen)
        bar.threshold_changed.connect(self.session.set_threshold)
        bar.min_contrast_changed.connect(self.session.set_min_contrast)
        bar.pixel_size_changed.connect(self.session.set_pixel_size)
        bar.mode_changed.connect(self.viewer.set_mode)
        bar.opacity_changed.connect(self.viewer.set_opacity)
        self.image_list.currentItemChanged.connect(self._image_chosen)
        self.track_panel.track_selected.connect(self.viewer.centre_on)
        self.viewer.hovered.connect(self._hovered)

    def _observe_session(self) -> None:
        events = self.session.events
        events.images_added.connect(self._images_added)
        events.selected.connect(self._selected)
        events.images_closed.connect(self._images_closed)
        events.image_replaced.connect(self._image_replaced)
        events.model_changed.connect(self._model_changed)
        events.threshold_changed.connect(self._threshold_changed)
        events.min_contrast_changed.connect(self._min_contrast_changed)
        events.pixel_size_changed.connect(self._pixel_size_changed)
        events.busy_changed.connect(self._update_controls)
        events.result_added.connect(self._result_added)
        events.tracks_changed.connect(self._tracks_changed)
        events.annotating_changed.connect(self._annotating_changed)
        events.points_changed.connect(self._points_changed)
        events.annotation_refused.connect(self.show_error)
        events.regions_changed.connect(self._regions_changed)
        events.region_draft_changed.connect(lambda _path: self._show_regions())
        events.drawing_regions_changed.connect(self._drawing_regions_changed)
        events.regions_saved.connect(lambda path: self.statusBar().showMessage(f"Regions saved to {path}", 5000))
        events.regions_refused.connect(self.show_error)

    def _observe_jobs(self) -> None:
        self.jobs.job_started.connect(self._job_started)
        self.jobs.progress.connect(self._progress)
        self.jobs.message.connect(self.statusBar().showMessage)
        self.jobs.failed.connect(self.show_error)
        self.jobs.opened.connect(self._opened)
        self.jobs.exported.connect(self._exported)

    # -- showing the session ------------------------------------------------------------
    def _update_controls(self, _busy: bool = False) -> None:
        busy, can_analyze = self.session.busy, self.session.can_analyze
        self.menu_bar.update_controls(can_analyze, busy)
        self.toolbar.update_controls(can_analyze, busy)
        self.progress.setVisible(busy)
        self.menu_bar.set_can_close(bool(self.session.images))

    def _images_added(self, paths: list[Path]) -> None:
        for path in paths:
            item = QListWidgetItem()
            item.setData(Qt.UserRole, str(path))
            self._describe(item, path)
            self.image_list.addItem(item)
        self._update_controls()

    def _describe(self, item: QListWidgetItem, path: Path) -> None:
        image = self.session.images[path]
        item.setText(self.session.name(path))
        item.setToolTip(f"{path}\n{image.shape[1]} x {image.shape[0]} px, {image.bit_depth}"
                        + "".join(f"\n{n}" for n in image.notes))

    def _page_chosen(self, page: int) -> None:
        if self.session.selected is not None:
            self.jobs.read_page(self.session.selected, page)

    def _image_replaced(self, path: Path) -> None:
        items = (self.image_list.item(i) for i in range(self.image_list.count()))
        self._describe(next(i for i in items if i.data(Qt.UserRole) == str(path)), path)
        if path == self.session.selected:
            self._selected(path)
        self._update_controls()

    def _image_chosen(self, item, _previous=None) -> None:
        if item is None or Path(item.data(Qt.UserRole)) == self.session.selected:
            return
        if not self._points_settled():  # the user went back to the points: the list does too
            self._show_selected_in_list(self.session.selected)
            return
        self.session.select(Path(item.data(Qt.UserRole)))

    def _show_selected_in_list(self, path: Path) -> None:
        items = (self.image_list.item(i) for i in range(self.image_list.count()))
        self.image_list.blockSignals(True)
        self.image_list.setCurrentItem(next(i for i in items if i.data(Qt.UserRole) == str(path)))
        self.image_list.blockSignals(False)

    def _images_closed(self, paths: list[Path]) -> None:
        closed = {str(p) for p in paths}
        self.image_list.blockSignals(True)  # the session selects what comes next
        for i in reversed(range(self.image_list.count())):
            if self.image_list.item(i).data(Qt.UserRole) in closed:
                self.image_list.takeItem(i)
        self.image_list.blockSignals(False)
        self._update_controls()

    def _selected(self, path: Path | None) -> None:
        self.toolbar.set_page(*self.session.pages.get(path, (None, 1)))
        if path is None:  # none is open any more
            self.image_list.setCurrentItem(None)
            self.viewer.clear()
            self._show_result()
            self._show_annotation()
            self._show_regions()
            return
        item = self.image_list.currentItem()
        if item is None or item.data(Qt.UserRole) != str(path):
            self._show_selected_in_list(path)
        self.viewer.set_image(self.session.images[path].data)
        self._show_result()
        self._show_annotation()
        self._show_regions()

    def _centres(self):
        """Centres (row, col) of the selected image's tracks inside its regions and of those outside."""
        result, dose = self.session.selected_result(), self.session.dose(self.session.selected)
        inside = np.c_[dose.tracks.columns["row"], dose.tracks.columns["col"]]
        every = result.tracks.columns
        outside = np.ones(len(every["track_id"]), dtype=bool)
        outside[np.isin(every["track_id"], dose.tracks.columns["track_id"])] = False
        return inside, np.c_[every["row"][outside], every["col"][outside]]

    def _show_result(self) -> None:
        """The selected image's result in the viewer and the table (or an empty table)."""
        result = self.session.selected_result()
        if result is None:
            self.track_panel.set_tracks(None)
            self._show_dose()
            return
        inside, outside = self._centres()
        self.viewer.set_result(result.probability, result.tracks.labels, inside, outside)
        self._show_dose()
        self.analysis_shown.emit(str(self.session.selected))

    def _show_dose(self) -> None:
        """The table and summary of the selected image's tracks inside its regions, the line pooled over
        the analyzed images, and the spectrum."""
        path = self.session.selected
        dose = self.session.dose(path) if path is not None else None
        if dose is not None:
            result = self.session.results[path]
            tracks = result.tracks
            self.track_panel.set_tracks(dose.tracks, describe_image(dose, tracks.threshold, result.model_name,
                                                                    tracks.min_contrast, tracks.clean_background,
                                                                    result.network, tracks.coarse_count))
        pooled = self.session.pooled_dose() if len(self.session.results) > 1 else None
        self.track_panel.set_pooled(describe_pooled(pooled) if pooled is not None else "")
        self._show_spectra()

    def _show_spectra(self) -> None:
        panel = self.spectra_panel
        quantity = panel.quantity()
        label = self.session.spectrum_label(quantity)
        try:
            spectra = self.session.spectra(quantity, pooled=panel.pooled())
        except ValueError as exc:  # diameters in µm without a pixel size, intensities normalised differently
            panel.set_spectrum(None, label, str(exc).capitalize() + ".")
            return
        if not spectra:
            panel.set_spectrum(None, label, "Analyze some images first." if panel.pooled() else
                               "Analyze the image first.")
            return
        images = len(spectra) - 1
        panel.set_spectrum(spectra["all"], label)
        if panel.pooled():
            panel.caption.setText(panel.caption.text() + f" in {images} image{'s' if images != 1 else ''}")

    def _result_added(self, path: Path) -> None:
        if path == self.session.selected:
            self._show_result()
            self._show_annotation()  # its detections can be accepted now
        else:
            self._show_dose()

    def _tracks_changed(self, path: Path) -> None:
        if path == self.session.selected:
            result = self.session.results[path]
            inside, outside = self._centres()
            self.viewer.set_tracks(result.tracks.labels, inside, outside)
            self._show_dose()
            self.tracks_updated.emit(len(inside))
        else:  # another image re-tracked at the settings: the pooled figures change
            self._show_dose()

    def _regions_changed(self, path: Path) -> None:
        if path != self.session.selected:
            self._show_dose()
            return
        self._show_regions()
        if self.session.selected_result() is not None:
            inside, outside = self._centres()
            self.viewer.set_tracks(self.session.selected_result().tracks.labels, inside, outside)
        self._show_dose()

    def _model_changed(self, bundle: Bundle | None) -> None:
        if bundle is None:
            self.model_label.setText("no model loaded")
            self.toolbar.set_min_contrast(0.0, measured=False)
        else:
            self.model_label.setText(f"model: {bundle.name}")
            self.toolbar.set_threshold(self.session.threshold)
            self.toolbar.set_min_contrast(self.session.min_contrast, self.session.measures_contrast)
        if self.session.selected is not None:  # the previous model's result goes
            self.viewer.set_image(self.session.images[self.session.selected].data)
        self._show_result()
        self._show_annotation()
        self._update_controls()

    def _threshold_changed(self, threshold: float) -> None:
        self.toolbar.set_threshold(threshold)  # the jobs re-track

    def _min_contrast_changed(self, min_contrast: float) -> None:
        self.toolbar.set_min_contrast(min_contrast, self.session.measures_contrast)  # the jobs re-track

    def _pixel_size_changed(self, pixel_size_um: float | None) -> None:
        self.settings.set_value(Key.PIXEL_SIZE, pixel_size_um or 0.0)
        self._show_dose()  # areas and fluences at once; the tracks follow when re-tracked

    def _annotating_changed(self, on: bool) -> None:
        self.viewer.set_annotating(on)
        self._show_annotation()

    def _points_changed(self, _path: Path) -> None:
        self._show_annotation()

    def _show_annotation(self) -> None:
        """The points being annotated in the viewer, their count, and what the controls offer."""
        a = self.session.annotations
        self.viewer.set_points(a.centres if a is not None else np.zeros((0, 2)))
        self.points_label.setVisible(a is not None)
        if a is not None:
            n = len(a)
            self.points_label.setText(f"{n} point{'s' if n != 1 else ''} in {a.file.name}"
                                      + (" (not saved)" if a.dirty else ""))
        state = self.session.annotation_state()
        self.menu_bar.update_annotation(state)
        self.toolbar.update_annotation(state)
        self._update_regions_controls()

    def _drawing_regions_changed(self, on: bool) -> None:
        self.viewer.set_drawing_regions(on)
        self._show_regions()

    def _show_regions(self) -> None:
        """The selected image's regions as outlines (and the polygon being drawn), and what the controls offer."""
        path = self.session.selected
        editor = self.session.region_editor
        if path is None:
            self.viewer.set_regions([], [])
        elif editor is not None:
            selected = getattr(editor.regions, editor.selected[0])[editor.selected[1]] if editor.selected else None
            self.viewer.set_regions(editor.regions.include, editor.regions.exclude, selected, editor.draft,
                                    editor.draft_kind if editor.drawing else self.session.region_kind)
        else:
            regions = self.session.regions.get(path)
            self.viewer.set_regions(regions.include if regions else [], regions.exclude if regions else [])
        self.regions_label.setVisible(editor is not None)
        if editor is not None:
            kind = "exclusion" if self.session.region_kind == "exclude" else "inclusion"
            self.regions_label.setText(
                f"Regions ({kind}s; Shift+click for the other): click corners, double-click or Enter to close, "
                f"click an outline to select, Delete removes. Saved in {editor.file.name}")
        self._update_regions_controls()

    def _update_regions_controls(self) -> None:
        state = self.session.regions_state()
        self.menu_bar.update_regions(state)
        self.toolbar.update_regions(state)
        if not state.drawing:  # Undo and Redo are the points' again
            points = self.session.annotation_state()
            self.menu_bar.set_undo(points.can_undo, points.can_redo)

    def _job_started(self, job: AnalysisJob) -> None:
        self._analyzing = job
        self.progress.setFormat(self._progress_text("%v/%m tiles"))
        self.progress.setRange(0, 0)

    def _progress_text(self, what: str) -> str:
        job = self._analyzing
        if job is None:
            return what
        return f"{job.path.name}: {what}" + (f" ({job.waiting} more)" if job.waiting else "")

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        if done >= total:  # the network is done; the tracks are found next (seconds on a large image)
            self.progress.setFormat(self._progress_text("finding tracks"))

    def _hovered(self, row: int, col: int, value: float, prob: float) -> None:
        text = f"row {row}, col {col}: value {value:g}"
        if not np.isnan(prob):
            text += f", probability {prob:.3f}"
        self.cursor_label.setText(text)

    # -- opening ----------------------------------------------------------------------
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
        """Add images (files or folders of images) to the list as they are read, and show the first
        new one; :attr:`images_opened` says when all are read."""
        if not self._points_settled():
            return
        self.jobs.open(paths)

    def _opened(self, report) -> None:
        for folder in report.empty_folders:
            self.show_error(f"{folder} holds no BMP, PNG or TIFF images.", "Choose a folder with images.")
        if report.unreadable:
            self.show_error(f"{len(report.unreadable)} file(s) could not be opened.", "\n".join(report.unreadable))
        elif report.problems:
            self.show_error(f"{len(report.problems)} regions or acquisition file(s) beside the images could not be "
                            "read; those images are counted whole or unnormalised until the files are fixed.",
                            "\n".join(report.problems))
        if report.folder is not None:
            self.settings.set_value(Key.LAST_FOLDER, str(report.folder))
        if report.opened:
            self.settings.remember_recent(report.opened)
            self.menu_bar.set_recent(self.settings.recent())
        self.images_opened.emit(report)

    def close_image(self) -> None:
        """File > Close image: the selected image goes, with its result (unsaved points asked about)."""
        if self.session.selected is not None and self._points_settled():
            self.session.close([self.session.selected])

    def close_all_images(self) -> None:
        """File > Close all images (unsaved points asked about first)."""
        if self._points_settled():
            self.session.close_all()

    def _open_recent(self, path: str) -> None:
        if not Path(path).exists():
            self.show_error(f"{path} is no longer there.", "It was moved, renamed or is on a drive that is not "
                            "connected. It has been removed from the recent list.")
            self.settings.forget_recent(path)
            self.menu_bar.set_recent(self.settings.recent())
            return
        self.open_paths([Path(path)])

    def _clear_recent(self) -> None:
        self.settings.clear_recent()
        self.menu_bar.set_recent([])

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        self.open_paths([Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()])

    # -- models -----------------------------------------------------------------------
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
        self.use_bundled_model("default")

    def use_bundled_model(self, name: str) -> None:
        """One of the models shipped with Cerber, by name (``bundled_models``); unlike ``--model``, a
        folder of that name in the working folder does not count."""
        try:
            bundle = load_bundle(bundled_models()[name])
        except BundleError as exc:
            self.show_error(f"The bundled model '{name}' cannot be loaded.", str(exc))
            return
        self.session.set_bundle(bundle)

    def open_training_wizard(self):
        from cerber_model.training import training_unavailable

        if not self._points_settled():  # training reads the points files
            return None

        problem = training_unavailable()
        if problem:
            self.show_error("This installation cannot train models.", problem)
            return None
        from .training_wizard import TrainingWizard

        selected = self.session.selected
        wizard = TrainingWizard(self, start_model=self.session.bundle,
                                annotated_folder=selected.parent if selected is not None else None)
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

    # -- annotation ----------------------------------------------------------------------
    def annotate(self, on: bool) -> None:
        """Start or end annotating the selected image (ending asks about unsaved points first)."""
        if on and self.session.drawing_regions:
            self.session.draw_regions(False)
        if on or self._points_settled():
            self.session.annotate(on)
        self._show_annotation()  # also when refused or cancelled: the buttons show what is so

    def _point_clicked(self, row: float, col: float) -> None:
        if self.session.annotations is not None:
            self.session.annotations.click(row, col)

    def undo(self) -> None:
        if self.session.region_editor is not None:
            self.session.region_editor.undo()
        elif self.session.annotations is not None:
            self.session.annotations.undo()

    def redo(self) -> None:
        if self.session.region_editor is not None:
            self.session.region_editor.redo()
        elif self.session.annotations is not None:
            self.session.annotations.redo()

    # -- regions --------------------------------------------------------------------------
    def draw_regions(self, on: bool) -> None:
        """Start or end regions mode for the selected image (annotation ends first, unsaved points asked about)."""
        if on and self.session.annotating:
            if not self._points_settled():
                self._update_regions_controls()
                return
            self.session.annotate(False)
            self._show_annotation()
        self.session.draw_regions(on)
        self._update_regions_controls()  # also when refused: the buttons show what is so

    def _region_clicked(self, row: float, col: float, reach: float, other_kind: bool) -> None:
        self.session.region_click(row, col, reach, other_kind=other_kind)

    def finish_polygon(self) -> None:
        editor = self.session.region_editor
        if editor is not None and editor.drawing and not editor.close_polygon():
            self.statusBar().showMessage("A region needs at least 3 corners.", 4000)

    def delete_region(self) -> None:
        if self.session.region_editor is not None:
            self.session.region_editor.delete_selected()

    def _discard_polygon(self) -> None:
        if self.session.region_editor is not None:
            self.session.region_editor.discard_polygon()

    def _fitting(self, on: bool) -> None:
        self.menu_bar.set_fitting(on)
        self.menu_bar.update_annotation(self.session.annotation_state())

    def accept_detections(self) -> None:
        added = self.session.accept_detections()
        contrast = f" and contrast {self.session.min_contrast:.1f}" if self.session.measures_contrast else ""
        self.statusBar().showMessage(f"{added} detection{'s' if added != 1 else ''} at threshold "
                                     f"{self.session.threshold:.2f}{contrast} added as points.", 5000)

    def save_points(self) -> bool:
        """Save the points being annotated beside their image; False, with a message, if they could not be."""
        a = self.session.annotations
        if a is None:
            return True
        try:
            path = a.save()
        except OSError as exc:
            self.show_error(f"{a.file} could not be written ({exc.strerror or exc}); the points are kept here, "
                            "not saved.", "Check that the folder is writable and has free space, then save again.")
            return False
        self.statusBar().showMessage(f"Saved {len(a)} points to {path}", 5000)
        return True

    def _points_settled(self) -> bool:
        """Whether no unsaved points stand in the way: there are none, or the user saved or
        discarded them (False: the user chose to go back to them, or saving failed)."""
        if not self.session.unsaved_points:
            return True
        answer = dialogs.save_points_first(self, self.session.annotations.file.name)
        if answer == "save":
            return self.save_points()
        if answer == "discard":
            self.session.annotations.revert()
            return True
        return False

    # -- export -------------------------------------------------------------------------
    def export(self, kind: ExportKind) -> None:
        """Ask where to save ``kind`` and write it (Qt's save dialog asks before replacing a file)."""
        missing = exports.nothing_to_export(kind, self.session)
        if missing:
            self.show_error(missing, "There is nothing to export yet.")
            return
        quantity = self.spectra_panel.quantity()
        start = exports.suggested_path(kind, self.session, self.settings.last_folder(), quantity)
        path, _ = QFileDialog.getSaveFileName(self, kind.title, str(start), kind.file_filter)
        if not path:
            return
        try:
            if kind is ExportKind.REPORT:  # overlays of every image: drawn on a worker
                self.jobs.write_report(exports.prepare_report(self.session, self.toolbar.opacity()), Path(path))
                self.statusBar().showMessage(f"Writing {path}…")
                return
            exports.write_export(kind, self.session, Path(path), self.toolbar.opacity(), quantity)
        except OSError as exc:
            self.show_error(f"{path} could not be written ({exc.strerror or exc}).",
                            "Check that the folder exists, is writable and has free space.")
            return
        except ValueError as exc:
            self.show_error(f"{Path(path).name} was not written: {exc}.", "")
            return
        self._exported(path)

    def _exported(self, path: str) -> None:
        self.statusBar().showMessage(f"Saved {path}", 5000)
        self.exported.emit(path)

    # -- errors and closing ---------------------------------------------------------------
    def show_error(self, message: str, details: str = "") -> None:
        """A dialog with the message (what and the fix) and expandable details; also logged."""
        dialogs.show_error(self, message, details)
        self.last_error = (message, details)

    def closeEvent(self, event) -> None:
        if not self._points_settled():
            event.ignore()
            return
        if self.session.busy:
            if not dialogs.stop_analysis_and_quit(self):
                event.ignore()
                return
            self.jobs.cancel()
            # The analysis stops between two tiles; training is the wizard's to stop (below).
            workers.wait_all(kinds=(workers.Pool.ANALYSIS, workers.Pool.QUICK))
        if self.wizard is not None:
            if self.wizard.isVisible() and not self.wizard.close():
                event.ignore()  # training runs on; the wizard asked and the user said no
                return
            self.wizard.clean_up()
        self.jobs.stop_reading()
        workers.wait_all(kinds=(workers.Pool.EXPORT,))  # a folder report being written is finished
        self.settings.set_value(Key.GEOMETRY, self.saveGeometry())
        self.settings.set_value(Key.WINDOW_STATE, self.saveState())
        event.accept()
