"""The main window's toolbar: open, analyze and cancel, the page of a TIFF stack, the threshold and
smallest track contrast, how the result is shown, the pixel size, annotation and regions. It says
what the user set through its signals and does none of it."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QLabel, QPushButton, QSlider, QSpinBox, QToolBar, QWidget

from .session import AnnotationState, RegionsState
from .viewer import MODES

#: The highest smallest contrast the toolbar offers (noise SDs): far above any model's own (5-8).
MAX_CONTRAST = 50.0


class ToolBar(QToolBar):
    open_requested = Signal()
    analyze_requested = Signal()
    analyze_all_requested = Signal()
    cancel_requested = Signal()
    page_changed = Signal(int)  # the page of the stack shown, 0-based
    threshold_changed = Signal(float)  # 0.01..0.99
    min_contrast_changed = Signal(float)  # noise SDs, 0..MAX_CONTRAST
    mode_changed = Signal(str)  # one of viewer.MODES
    opacity_changed = Signal(float)  # 0..1
    pixel_size_changed = Signal(float)  # µm per pixel; 0 for unknown
    annotate_toggled = Signal(bool)  # annotation mode on or off
    accept_detections_requested = Signal()
    save_points_requested = Signal()
    regions_toggled = Signal(bool)  # regions mode on or off
    exclude_toggled = Signal(bool)  # new polygons are exclusions

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Main", parent)
        self.setObjectName("main-toolbar")  # the window's saved state names it
        open_action = QAction("&Open…", self)
        open_action.setToolTip("Open images or folders of images (Ctrl+O)")
        open_action.triggered.connect(lambda _=False: self.open_requested.emit())
        self.addAction(open_action)
        self.analyze_button = self._button("Analyze", self.analyze_requested)
        self.analyze_button.setToolTip("Analyze the current image (Ctrl+R)")
        self.analyze_all_button = self._button("Analyze all", self.analyze_all_requested)
        self.cancel_button = self._button("Cancel", self.cancel_requested)
        self.addSeparator()
        # Shown for a TIFF stack only: which of its images is open.
        self.page_box = QSpinBox()
        self.page_box.setPrefix("Page ")
        self.page_box.setToolTip("Which image of the stack to show and analyze (cerber analyze --page counts "
                                 "from 0: page 1 here is --page 0)")
        self.page_box.valueChanged.connect(lambda value: self.page_changed.emit(value - 1))
        self.page_actions = [self.addWidget(self.page_box), self.addSeparator()]
        self.set_page(None)
        self.addWidget(QLabel(" Threshold "))
        self.threshold_slider = QSlider(Qt.Horizontal)
        self.threshold_slider.setRange(1, 99)
        self.threshold_slider.setFixedWidth(90)
        self.threshold_slider.valueChanged.connect(self._threshold_moved)
        self.addWidget(self.threshold_slider)
        self.threshold_label = QLabel("0.50")
        self.addWidget(self.threshold_label)
        self.addWidget(QLabel(" Contrast "))
        self.contrast_box = QDoubleSpinBox()
        self.contrast_box.setRange(0.0, MAX_CONTRAST)
        self.contrast_box.setDecimals(1)
        self.contrast_box.setSingleStep(0.5)
        self.contrast_box.setPrefix("≥ ")
        self.contrast_box.setSuffix(" SD")
        self.contrast_box.setFixedWidth(80)
        self.contrast_box.setKeyboardTracking(False)  # typing "12" asks once, not for 1 and then 12
        self.contrast_box.setToolTip(
            "Smallest track contrast: how many noise SDs of the image's own background a track must stand out "
            "by, at its own size. Lower finds fainter spots, and more bumps of a textured background; 0 keeps "
            "every track. Moving it or the threshold away from the model's own turns the model's setting for "
            "clean backgrounds off (cerber analyze --min-contrast).")
        self.contrast_box.valueChanged.connect(self.min_contrast_changed)
        self.addWidget(self.contrast_box)
        self.addSeparator()
        self.addWidget(QLabel(" View "))
        self.mode_box = QComboBox()
        self.mode_box.addItems(MODES)
        self.mode_box.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.mode_box.currentTextChanged.connect(self.mode_changed)
        self.addWidget(self.mode_box)
        self.addWidget(QLabel(" Opacity "))
        self.opacity_slider = QSlider(Qt.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        self.opacity_slider.setFixedWidth(70)
        self.opacity_slider.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100))
        self.addWidget(self.opacity_slider)
        self.addSeparator()
        self.addWidget(QLabel(" Pixel size "))
        self.pixel_size = QDoubleSpinBox()
        self.pixel_size.setRange(0, 1000)
        self.pixel_size.setDecimals(4)
        self.pixel_size.setSuffix(" µm/px")
        self.pixel_size.setSpecialValueText("from file")
        self.pixel_size.setFixedWidth(110)
        self.pixel_size.setToolTip("Micrometres per pixel, for every image. At 0 (\"from file\") each image "
                                   "uses the pixel size its file gives (OME-XML, ImageJ or TIFF resolution), "
                                   "where it gives one.")
        self.pixel_size.valueChanged.connect(self.pixel_size_changed)
        self.addWidget(self.pixel_size)
        self.addSeparator()
        self.annotate_button = QPushButton("Annotate")
        self.annotate_button.setCheckable(True)
        self.annotate_button.setToolTip("Mark spots by hand (Ctrl+Shift+A): click to add a point, click a point to "
                                        "remove it. Points are saved beside the image as <name>_points.csv.")
        self.annotate_button.clicked.connect(self.annotate_toggled)  # clicked: the user, not setChecked
        self.addWidget(self.annotate_button)
        self.accept_button = self._button("Accept detections", self.accept_detections_requested)
        self.accept_button.setToolTip("Add the tracks found at the threshold as points (Undo takes them back)")
        self.save_points_button = self._button("Save points", self.save_points_requested)
        self.save_points_button.setToolTip("Save the points beside the image (Ctrl+S)")
        self.addSeparator()
        self.regions_button = QPushButton("Regions")
        self.regions_button.setCheckable(True)
        self.regions_button.setToolTip("Draw the usable area (Ctrl+Shift+G): click the corners of a polygon, "
                                       "double-click or Enter to close it; Shift+click starts an exclusion. Click "
                                       "an outline to select it, Delete removes it. Saved beside the image as "
                                       "<name>_regions.json; counts and fluence are over the usable area.")
        self.regions_button.clicked.connect(self.regions_toggled)
        self.addWidget(self.regions_button)
        self.exclude_button = QPushButton("Exclude")
        self.exclude_button.setCheckable(True)
        self.exclude_button.setToolTip("New polygons take an area out (scratches, dust, edges) instead of "
                                       "adding one")
        self.exclude_button.clicked.connect(self.exclude_toggled)
        self.addWidget(self.exclude_button)
        self.update_annotation(AnnotationState(False, False, False, False, False, False))
        self.update_regions(RegionsState(False, False, False, False, False, False, False))

    def _button(self, text: str, signal) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(lambda _=False: signal.emit())
        self.addWidget(button)
        return button

    def _threshold_moved(self, value: int) -> None:
        self.threshold_label.setText(f"{value / 100:.2f}")
        self.threshold_changed.emit(value / 100)

    def set_threshold(self, threshold: float) -> None:
        """Show ``threshold`` without emitting threshold_changed."""
        self.threshold_slider.blockSignals(True)
        self.threshold_slider.setValue(round(threshold * 100))
        self.threshold_slider.blockSignals(False)
        self.threshold_label.setText(f"{threshold:.2f}")

    def set_min_contrast(self, min_contrast: float, measured: bool = True) -> None:
        """Show ``min_contrast`` without emitting min_contrast_changed; ``measured``: whether the model
        measures contrast at all (else the box is off)."""
        self.contrast_box.blockSignals(True)
        self.contrast_box.setValue(min_contrast)
        self.contrast_box.blockSignals(False)
        self.contrast_box.setEnabled(measured)

    def set_page(self, page: int | None, pages: int = 1) -> None:
        """Show page ``page`` (0-based) of ``pages``, without emitting page_changed; None: not a stack."""
        for action in self.page_actions:
            action.setVisible(page is not None)
        self.page_box.blockSignals(True)
        self.page_box.setRange(1, max(pages, 1))
        self.page_box.setSuffix(f" of {pages}")
        self.page_box.setValue((page or 0) + 1)
        self.page_box.blockSignals(False)

    def set_pixel_size(self, pixel_size_um: float | None) -> None:
        """Show ``pixel_size_um`` (None: unknown) without emitting pixel_size_changed."""
        self.pixel_size.blockSignals(True)
        self.pixel_size.setValue(pixel_size_um or 0.0)
        self.pixel_size.blockSignals(False)

    def opacity(self) -> float:
        return self.opacity_slider.value() / 100

    def update_controls(self, can_analyze: bool, busy: bool) -> None:
        self.analyze_button.setEnabled(can_analyze)
        self.analyze_all_button.setEnabled(can_analyze)
        self.cancel_button.setEnabled(busy)

    def update_annotation(self, state: AnnotationState) -> None:
        self.annotate_button.setEnabled(state.can_annotate or state.annotating)
        self.annotate_button.setChecked(state.annotating)
        self.accept_button.setEnabled(state.can_accept)
        self.save_points_button.setEnabled(state.unsaved)

    def update_regions(self, state: RegionsState) -> None:
        self.regions_button.setEnabled(state.can_draw or state.drawing)
        self.regions_button.setChecked(state.drawing)
        self.exclude_button.setEnabled(state.drawing)
        self.exclude_button.setChecked(state.exclude)
