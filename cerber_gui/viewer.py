"""The side-by-side viewer: the input on the left, the segmentation on the right.

Both panes are pyqtgraph ViewBoxes linked in x and y, so zoom and pan follow each
other. The right pane shows the input in gray with the probability map as a
colour layer (opacity adjustable) and track markers; it can instead show the
probability map alone or the binary mask. Annotated points are crosses over both panes;
in annotation mode a click on either pane says where, in image coordinates.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QWidget

from cerber_model.runtime.export import OUTLINE_COLOUR, PROBABILITY_COLOUR, display_range

from .annotations import HIT_RADIUS_PX

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

MODES = ("overlay", "probability", "mask")
POINT_COLOUR = (0, 230, 255)  # cyan: apart from the yellow track rings and the magenta probability


def _lut(colour: np.ndarray) -> np.ndarray:
    """A 256-entry RGBA lookup table from transparent to ``colour``."""
    lut = np.zeros((256, 4), np.uint8)
    lut[:, :3] = colour
    lut[:, 3] = np.arange(256)
    return lut


class SideBySideViewer(QWidget):
    #: row, col, input value, probability (nan before analysis) under the cursor
    hovered = Signal(int, int, float, float)
    #: row, col (image px, pixel centres at integers, sub-pixel) of a left click, in annotation mode
    point_clicked = Signal(float, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.left = pg.GraphicsLayoutWidget()
        self.right = pg.GraphicsLayoutWidget()
        layout.addWidget(self.left)
        layout.addWidget(self.right)
        self.left_box = self.left.addViewBox(lockAspect=True, invertY=True)
        self.right_box = self.right.addViewBox(lockAspect=True, invertY=True)
        self.right_box.setXLink(self.left_box)
        self.right_box.setYLink(self.left_box)
        self.input_item = pg.ImageItem()
        self.background_item = pg.ImageItem()
        self.overlay_item = pg.ImageItem()
        self.overlay_item.setLookupTable(_lut(PROBABILITY_COLOUR))
        # Markers are rings of 9 px in image coordinates, so they scale with zoom
        # instead of covering a zoomed-out image.
        self.markers = pg.ScatterPlotItem(size=9, symbol="o", pen=pg.mkPen(tuple(OUTLINE_COLOUR.tolist()), width=1.2),
                                          brush=None, pxMode=False)
        # Pixel centres sit at integer coordinates, as in the track tables.
        for item in (self.input_item, self.background_item, self.overlay_item):
            item.setPos(-0.5, -0.5)
        self.left_box.addItem(self.input_item)
        self.right_box.addItem(self.background_item)
        self.right_box.addItem(self.overlay_item)
        self.right_box.addItem(self.markers)
        # Annotated points: crosses as wide as the reach of a click that removes them, in both panes.
        self.point_items = []
        for box in (self.left_box, self.right_box):
            item = pg.ScatterPlotItem(size=2 * HIT_RADIUS_PX, symbol="+", pen=pg.mkPen(POINT_COLOUR, width=1),
                                      brush=pg.mkBrush(POINT_COLOUR), pxMode=False)
            box.addItem(item)
            self.point_items.append(item)
        self.annotating = False
        self.histogram: pg.HistogramLUTWidget | None = None
        self.data: np.ndarray | None = None
        self.probability: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.mode = "overlay"
        self.opacity = 0.6
        for scene in (self.left.scene(), self.right.scene()):
            scene.sigMouseMoved.connect(self._mouse_moved)
        self.left.scene().sigMouseClicked.connect(lambda ev: self._mouse_clicked(ev, self.left_box))
        self.right.scene().sigMouseClicked.connect(lambda ev: self._mouse_clicked(ev, self.right_box))

    # -- content -------------------------------------------------------------
    def set_image(self, data: np.ndarray, levels: tuple[float, float] | None = None) -> None:
        """Show a new input image (clears any result) and fit it in view."""
        self.data = data
        self.probability = self.labels = None
        levels = levels or self.auto_levels(data)
        for item in (self.input_item, self.background_item):
            item.setImage(data, autoLevels=False, levels=levels)
        self.overlay_item.clear()
        self.markers.clear()
        self.set_points(np.zeros((0, 2)))
        self.left_box.autoRange(padding=0.02)

    def clear(self) -> None:
        """Show nothing (no image is open); what was shown is let go."""
        self.data = self.probability = self.labels = None
        for item in (self.input_item, self.background_item, self.overlay_item):
            item.clear()
        self.markers.clear()
        self.set_points(np.zeros((0, 2)))

    @staticmethod
    def auto_levels(data: np.ndarray) -> tuple[float, float]:
        """Display range, as in exported overlays: :data:`cerber_model.runtime.export.DISPLAY_PERCENTILES`."""
        lo, hi = display_range(data)
        return float(lo), float(max(hi, lo + 1e-6))

    def set_levels(self, low: float, high: float) -> None:
        """Display range of the input (both panes); pixel values themselves are never changed."""
        for item in (self.input_item, self.background_item):
            item.setLevels((low, high))
        if self.histogram is not None:
            self.histogram.item.setLevels(low, high)

    def levels(self) -> tuple[float, float]:
        low, high = self.input_item.getLevels()
        return float(low), float(high)

    def reset_levels(self) -> None:
        if self.data is not None:
            self.set_levels(*self.auto_levels(self.data))

    def levels_widget(self) -> pg.HistogramLUTWidget:
        """A histogram of the input with a draggable display range (brightness and contrast).

        Dragging the range sets the levels of both panes, for 8- and 16-bit images alike.
        """
        if self.histogram is None:
            self.histogram = pg.HistogramLUTWidget(image=self.input_item, orientation="horizontal")
            self.histogram.item.sigLevelsChanged.connect(
                lambda item: self.background_item.setLevels(item.getLevels()))
        return self.histogram

    def set_result(self, probability: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> None:
        self.probability, self.labels = probability, labels
        self.markers.setData(pos=centres[:, ::-1] if len(centres) else np.zeros((0, 2)))
        self._refresh()

    def set_tracks(self, labels: np.ndarray, centres: np.ndarray) -> None:
        self.labels = labels
        self.markers.setData(pos=centres[:, ::-1] if len(centres) else np.zeros((0, 2)))
        if self.mode == "mask":
            self._refresh()

    def set_points(self, centres: np.ndarray) -> None:
        """Annotated points, (N, 2) row, col, as crosses over both panes."""
        pos = centres[:, ::-1] if len(centres) else np.zeros((0, 2))
        for item in self.point_items:
            item.setData(pos=pos)

    def set_annotating(self, on: bool) -> None:
        """In annotation mode left clicks emit :attr:`point_clicked` (dragging still pans)."""
        self.annotating = on
        for view in (self.left, self.right):
            view.setCursor(Qt.CrossCursor if on else Qt.ArrowCursor)

    def set_opacity(self, opacity: float) -> None:
        self.opacity = opacity
        self.overlay_item.setOpacity(opacity if self.mode == "overlay" else 1.0)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.mode = mode
        self._refresh()

    def _refresh(self) -> None:
        if self.probability is None:
            return
        if self.mode == "overlay":
            self.background_item.setVisible(True)
            self.overlay_item.setLookupTable(_lut(PROBABILITY_COLOUR))
            self.overlay_item.setImage(self.probability, autoLevels=False, levels=(0, 1))
            self.overlay_item.setOpacity(self.opacity)
        elif self.mode == "probability":
            self.background_item.setVisible(False)
            self.overlay_item.setLookupTable(pg.colormap.get("viridis").getLookupTable(nPts=256))
            self.overlay_item.setImage(self.probability, autoLevels=False, levels=(0, 1))
            self.overlay_item.setOpacity(1.0)
        else:
            self.background_item.setVisible(False)
            mask = (self.labels > 0).astype(np.uint8) if self.labels is not None else np.zeros_like(self.probability)
            self.overlay_item.setLookupTable(None)
            self.overlay_item.setImage(mask * 255, autoLevels=False, levels=(0, 255))
            self.overlay_item.setOpacity(1.0)

    # -- navigation ------------------------------------------------------------
    def centre_on(self, row: float, col: float, size: float = 64) -> None:
        """Show a ``size`` px square around (row, col) in both panes."""
        self.left_box.setRange(xRange=(col - size / 2, col + size / 2), yRange=(row - size / 2, row + size / 2),
                               padding=0)

    def _mouse_clicked(self, event, box: pg.ViewBox) -> None:
        # A double click comes after its first click, which already added or removed a point.
        if not self.annotating or self.data is None or event.button() != Qt.LeftButton or event.double():
            return
        point = box.mapSceneToView(event.scenePos())
        self.point_clicked.emit(float(point.y()), float(point.x()))

    def _mouse_moved(self, pos) -> None:
        if self.data is None:
            return
        box = self.left_box if self.left.sceneBoundingRect().contains(pos) else self.right_box
        point = box.mapSceneToView(pos)
        row, col = int(np.floor(point.y() + 0.5)), int(np.floor(point.x() + 0.5))
        if 0 <= row < self.data.shape[0] and 0 <= col < self.data.shape[1]:
            prob = float(self.probability[row, col]) if self.probability is not None else float("nan")
            self.hovered.emit(row, col, float(self.data[row, col]), prob)
