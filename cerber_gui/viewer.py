"""The side-by-side viewer: the input on the left, the segmentation on the right.

Both panes are pyqtgraph ViewBoxes linked in x and y, so zoom and pan follow each
other. The right pane shows the input in gray with the probability map as a
colour layer (opacity adjustable) and track markers; it can instead show the
probability map alone or the binary mask. Annotated points are crosses over both panes;
in annotation mode a click on either pane says where, in image coordinates. Regions are outlines
over both panes (include green, exclude red; the selected one thicker, the polygon being drawn
dashed, following the pointer); in regions mode clicks say where, double clicks close the polygon.
Tracks outside the regions are grey rings.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QWidget

from cerber_model.runtime.export import OUTLINE_COLOUR, PROBABILITY_COLOUR, display_range

from .annotations import HIT_RADIUS_PX

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

MODES = ("overlay", "probability", "mask")
POINT_COLOUR = (0, 230, 255)  # cyan: apart from the yellow track rings and the magenta probability
REGION_COLOURS = {"include": (60, 220, 90), "exclude": (255, 70, 70)}
OUTSIDE_COLOUR = (150, 150, 150)  # rings of tracks outside the regions
#: How near (screen px) a click must be to an outline or a first vertex to hit it.
REACH_SCREEN_PX = 6


def _outlines(polygons, closed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """x, y of polygons (row, col vertices) as one curve, NaN between them (drawn with connect="finite")."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for polygon in polygons:
        p = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if closed and len(p):
            p = np.vstack([p, p[:1]])
        xs += [p[:, 1], [np.nan]]
        ys += [p[:, 0], [np.nan]]
    if not xs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(xs), np.concatenate(ys)


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
    #: in regions mode, a left click: row, col, the reach of a click there (image px), Shift held
    region_clicked = Signal(float, float, float, bool)
    #: in regions mode, a double click (it closes the polygon being drawn)
    region_double_clicked = Signal()
    #: in regions mode, Esc (it discards the polygon being drawn)
    region_discard_requested = Signal()

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
        self.outside_markers = pg.ScatterPlotItem(size=9, symbol="o", pen=pg.mkPen(OUTSIDE_COLOUR, width=1),
                                                  brush=None, pxMode=False)
        self.right_box.addItem(self.outside_markers)
        # Regions, over both panes: outlines per kind, the selected one, the polygon being drawn.
        self.region_items: dict[str, list[pg.PlotCurveItem]] = {}
        for kind, colour in REGION_COLOURS.items():
            self.region_items[kind] = [pg.PlotCurveItem(pen=pg.mkPen(colour, width=2, cosmetic=True),
                                                        connect="finite") for _ in range(2)]
        self.selected_region_items = [pg.PlotCurveItem(pen=pg.mkPen((255, 255, 255), width=4, cosmetic=True),
                                                       connect="finite") for _ in range(2)]
        self.draft_items = [pg.PlotDataItem(pen=pg.mkPen(REGION_COLOURS["include"], width=2, style=Qt.DashLine,
                                                         cosmetic=True), symbol="o", symbolSize=6, connect="finite")
                            for _ in range(2)]
        for i, box in enumerate((self.left_box, self.right_box)):
            box.addItem(self.selected_region_items[i])
            for kind in REGION_COLOURS:
                box.addItem(self.region_items[kind][i])
            box.addItem(self.draft_items[i])
        self.draft = np.zeros((0, 2))
        self.draft_kind = "include"
        self.drawing_regions = False
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
        for view in (self.left, self.right):  # Esc while drawing a polygon, whichever has the keyboard
            view.installEventFilter(self)
            view.viewport().installEventFilter(self)

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
        self.outside_markers.clear()
        self.set_points(np.zeros((0, 2)))
        self.left_box.autoRange(padding=0.02)

    def clear(self) -> None:
        """Show nothing (no image is open); what was shown is let go."""
        self.data = self.probability = self.labels = None
        for item in (self.input_item, self.background_item, self.overlay_item):
            item.clear()
        self.markers.clear()
        self.outside_markers.clear()
        self.set_points(np.zeros((0, 2)))
        self.set_regions([], [])

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

    def set_result(self, probability: np.ndarray, labels: np.ndarray, centres: np.ndarray,
                   outside: np.ndarray | None = None) -> None:
        """The probability map, the label image and the track centres (N, 2) row, col; ``outside``:
        centres of tracks outside the regions, drawn grey."""
        self.probability, self.labels = probability, labels
        self._set_markers(centres, outside)
        self._refresh()

    def set_tracks(self, labels: np.ndarray, centres: np.ndarray, outside: np.ndarray | None = None) -> None:
        self.labels = labels
        self._set_markers(centres, outside)
        if self.mode == "mask":
            self._refresh()

    def _set_markers(self, centres: np.ndarray, outside: np.ndarray | None) -> None:
        for item, pos in ((self.markers, centres), (self.outside_markers, outside)):
            pos = np.zeros((0, 2)) if pos is None or not len(pos) else np.asarray(pos)
            item.setData(pos=pos[:, ::-1] if len(pos) else np.zeros((0, 2)))

    def set_regions(self, include: list, exclude: list, selected=None, draft=None, draft_kind: str = "include") -> None:
        """Regions as outlines over both panes: ``include`` and ``exclude`` polygons ((N, 2) row, col),
        the ``selected`` polygon (or None) thicker, and the polygon being drawn (``draft``, of
        ``draft_kind``) dashed."""
        for kind, polygons in (("include", include), ("exclude", exclude)):
            x, y = _outlines(polygons)
            for item in self.region_items[kind]:
                item.setData(x=x, y=y)
        x, y = _outlines([selected] if selected is not None else [])
        for item in self.selected_region_items:
            item.setData(x=x, y=y)
        self.draft = np.zeros((0, 2)) if draft is None or not len(draft) else np.asarray(draft, dtype=np.float64)
        self.draft_kind = draft_kind
        for item in self.draft_items:
            item.setPen(pg.mkPen(REGION_COLOURS[draft_kind], width=2, style=Qt.DashLine, cosmetic=True))
            item.setSymbolBrush(pg.mkBrush(REGION_COLOURS[draft_kind]))
        self._show_draft()

    def _show_draft(self, pointer: tuple[float, float] | None = None) -> None:
        """The polygon being drawn, with a line to the pointer while it is over the image."""
        vertices = self.draft
        if len(vertices) and pointer is not None:
            vertices = np.vstack([vertices, [pointer]])
        x, y = _outlines([vertices] if len(vertices) else [], closed=False)
        for item in self.draft_items:
            item.setData(x=x, y=y)

    def set_drawing_regions(self, on: bool) -> None:
        """In regions mode left clicks emit :attr:`region_clicked` (dragging still pans)."""
        self.drawing_regions = on
        for view in (self.left, self.right):
            view.setCursor(Qt.CrossCursor if on or self.annotating else Qt.ArrowCursor)

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

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (self.drawing_regions and len(self.draft) and event.type() in (QEvent.ShortcutOverride, QEvent.KeyPress)
                and event.key() == Qt.Key_Escape):
            # Esc discards the polygon being drawn first (overriding Cancel's shortcut), then cancels.
            event.accept()
            if event.type() == QEvent.KeyPress:
                self.region_discard_requested.emit()
            return True
        return super().eventFilter(watched, event)

    def _mouse_clicked(self, event, box: pg.ViewBox) -> None:
        if self.drawing_regions and self.data is not None and event.button() == Qt.LeftButton:
            if event.double():
                self.region_double_clicked.emit()
                return
            point = box.mapSceneToView(event.scenePos())
            reach = REACH_SCREEN_PX * float(max(box.viewPixelSize()))
            self.region_clicked.emit(float(point.y()), float(point.x()), reach,
                                     bool(event.modifiers() & Qt.ShiftModifier))
            return
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
        if self.drawing_regions and len(self.draft):
            self._show_draft((float(point.y()), float(point.x())))
        row, col = int(np.floor(point.y() + 0.5)), int(np.floor(point.x() + 0.5))
        if 0 <= row < self.data.shape[0] and 0 <= col < self.data.shape[1]:
            prob = float(self.probability[row, col]) if self.probability is not None else float("nan")
            self.hovered.emit(row, col, float(self.data[row, col]), prob)
