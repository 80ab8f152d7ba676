"""The main window's menu bar: it says what the user asked for through its signals and does none of it."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar, QWidget

from .exports import ExportKind
from .session import AnnotationState, RegionsState

ANNOTATE_SHORTCUT = "Ctrl+Shift+A"
FIT_TEXT, STOP_FIT_TEXT = "&Fit threshold and contrast to points", "Stop &fitting"
REGIONS_SHORTCUT = "Ctrl+Shift+G"


class MenuBar(QMenuBar):
    open_requested = Signal()
    open_folder_requested = Signal()
    open_recent_requested = Signal(str)  # the path as listed
    clear_recent_requested = Signal()
    close_requested = Signal()  # the selected image
    close_all_requested = Signal()
    export_requested = Signal(object)  # ExportKind
    quit_requested = Signal()
    analyze_requested = Signal()
    analyze_all_requested = Signal()
    cancel_requested = Signal()
    load_model_requested = Signal()
    default_model_requested = Signal()
    bundled_model_requested = Signal(str)  # the name of a model shipped with Cerber, other than the default
    model_card_requested = Signal()
    train_requested = Signal()
    auto_levels_requested = Signal()
    annotate_toggled = Signal(bool)
    accept_detections_requested = Signal()
    fit_setting_requested = Signal()  # fit the threshold and contrast to the image's points
    save_points_requested = Signal()
    undo_requested = Signal()
    redo_requested = Signal()
    regions_toggled = Signal(bool)  # regions mode on or off
    exclude_toggled = Signal(bool)  # new polygons are exclusions (True) or inclusions
    finish_polygon_requested = Signal()
    delete_region_requested = Signal()

    def __init__(self, parent: QWidget | None = None, other_models: Sequence[str] = ()):
        """``other_models``: the names of the models shipped with Cerber besides the default, one
        menu entry each."""
        super().__init__(parent)
        files = self.addMenu("&File")
        self._action(files, "&Open images…", self.open_requested, QKeySequence.Open)
        self._action(files, "Open &folder…", self.open_folder_requested, "Ctrl+Shift+O")
        self.recent_menu = files.addMenu("Open &recent")
        self.close_action = self._action(files, "&Close image", self.close_requested, QKeySequence.Close)
        self.close_all_action = self._action(files, "Close a&ll images", self.close_all_requested, "Ctrl+Shift+W")
        files.addSeparator()
        for text, kind, shortcut in [("Export &tracks CSV…", ExportKind.TRACKS, "Ctrl+E"),
                                     ("Export &summary CSV (all analyzed)…", ExportKind.SUMMARY, None),
                                     ("Export &overlay PNG…", ExportKind.OVERLAY, None),
                                     ("Export &probability TIFF…", ExportKind.PROBABILITY, None),
                                     ("Export ImageJ &ROI set…", ExportKind.ROIS, None),
                                     ("Export &napari points CSV…", ExportKind.NAPARI, None),
                                     ("Export sp&ectra CSV (all analyzed)…", ExportKind.SPECTRA, None),
                                     ("Export folder report &HTML (all analyzed)…", ExportKind.REPORT, None)]:
            action = self._action(files, text, None, shortcut)
            action.triggered.connect(lambda _=False, k=kind: self.export_requested.emit(k))
        files.addSeparator()
        self._action(files, "&Quit", self.quit_requested, QKeySequence.Quit)
        edit = self.addMenu("&Edit")  # what can be undone is the editing of points
        self.undo_action = self._action(edit, "&Undo", self.undo_requested, QKeySequence.Undo)
        self.redo_action = self._action(edit, "&Redo", self.redo_requested, QKeySequence.Redo)
        analysis = self.addMenu("&Analysis")
        self.analyze_action = self._action(analysis, "&Analyze", self.analyze_requested, "Ctrl+R")
        self.analyze_all_action = self._action(analysis, "Analyze &all", self.analyze_all_requested, "Ctrl+Shift+R")
        self.cancel_action = self._action(analysis, "&Cancel", self.cancel_requested, "Esc")
        models = self.addMenu("&Model")
        self._action(models, "&Load model folder…", self.load_model_requested)
        self._action(models, "Use the &default model", self.default_model_requested)
        for name in other_models:
            action = self._action(models, f"Use the bundled model '{name}'", None)
            action.triggered.connect(lambda _=False, n=name: self.bundled_model_requested.emit(n))
        models.addSeparator()
        self._action(models, "About this &model…", self.model_card_requested)
        self._action(models, "&Train a model…", self.train_requested)
        points = self.addMenu("&Points")
        self.annotate_action = self._action(points, "&Annotate", None, ANNOTATE_SHORTCUT)
        self.annotate_action.setCheckable(True)
        self.annotate_action.triggered.connect(self.annotate_toggled)  # triggered: the user, not setChecked
        self.accept_action = self._action(points, "Accept &detections", self.accept_detections_requested)
        self.fitting = False  # while fitting, the entry stops it
        self.fit_action = self._action(points, FIT_TEXT, self.fit_setting_requested)
        self.fit_action.setToolTip("Choose the threshold and smallest contrast whose tracks best match the "
                                   "points of this image and of the other analyzed images with points beside "
                                   "them (mark every spot first); applies to every image")
        self.save_points_action = self._action(points, "&Save points", self.save_points_requested, QKeySequence.Save)
        regions = self.addMenu("&Regions")
        self.regions_action = self._action(regions, "&Draw regions", None, REGIONS_SHORTCUT)
        self.regions_action.setCheckable(True)
        self.regions_action.triggered.connect(self.regions_toggled)
        self.exclude_action = self._action(regions, "E&xclude (new polygons)", None)
        self.exclude_action.setCheckable(True)
        self.exclude_action.triggered.connect(self.exclude_toggled)
        self.finish_polygon_action = self._action(regions, "&Finish polygon", self.finish_polygon_requested, "Return")
        self.delete_region_action = self._action(regions, "D&elete region", self.delete_region_requested,
                                                 QKeySequence.Delete)
        self.view_menu = self.addMenu("&View")
        self._action(self.view_menu, "&Auto levels", self.auto_levels_requested, "Ctrl+L")
        self.view_menu.addSeparator()
        self.set_recent([])
        self.set_can_close(False)
        self.update_annotation(AnnotationState(False, False, False, False, False, False))
        self.update_regions(RegionsState(False, False, False, False, False, False, False))

    def _action(self, menu: QMenu, text: str, signal, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        if signal is not None:
            action.triggered.connect(lambda _=False: signal.emit())
        menu.addAction(action)
        return action

    def add_panel_toggles(self, actions: list[QAction]) -> None:
        """Show/hide actions of the window's panels, in the View menu."""
        self.view_menu.addActions(actions)

    def set_recent(self, paths: list[str]) -> None:
        self.recent_menu.clear()
        for path in paths:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_recent_requested.emit(p))
        self.recent_menu.addSeparator()
        clear = self.recent_menu.addAction("Clear the list")
        clear.triggered.connect(lambda _=False: self.clear_recent_requested.emit())
        clear.setEnabled(bool(paths))

    def set_can_close(self, images_open: bool) -> None:
        self.close_action.setEnabled(images_open)
        self.close_all_action.setEnabled(images_open)

    def update_controls(self, can_analyze: bool, busy: bool) -> None:
        self.analyze_action.setEnabled(can_analyze)
        self.analyze_all_action.setEnabled(can_analyze)
        self.cancel_action.setEnabled(busy)

    def update_annotation(self, state: AnnotationState) -> None:
        self.annotate_action.setEnabled(state.can_annotate or state.annotating)
        self.annotate_action.setChecked(state.annotating)
        self.accept_action.setEnabled(state.can_accept)
        self.fit_action.setEnabled(state.can_accept or self.fitting)
        self.save_points_action.setEnabled(state.unsaved)
        self.set_undo(state.can_undo, state.can_redo)

    def set_fitting(self, on: bool) -> None:
        """While the setting is fitted to points, its menu entry stops it."""
        self.fitting = on
        self.fit_action.setText(STOP_FIT_TEXT if on else FIT_TEXT)
        if on:
            self.fit_action.setEnabled(True)

    def update_regions(self, state: RegionsState) -> None:
        """The Regions menu as ``state`` says; while drawing, Undo and Redo are the regions'."""
        self.regions_action.setEnabled(state.can_draw or state.drawing)
        self.regions_action.setChecked(state.drawing)
        self.exclude_action.setChecked(state.exclude)
        # Return and Delete are shortcuts only while they have something to do, so that they reach
        # the other widgets otherwise.
        self.finish_polygon_action.setEnabled(state.can_close)
        self.delete_region_action.setEnabled(state.can_delete)
        if state.drawing:
            self.set_undo(state.can_undo, state.can_redo)

    def set_undo(self, can_undo: bool, can_redo: bool) -> None:
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)
