"""The track table, the per-image summary (count, usable area, fluence), the line pooled over the
analyzed images, and histograms of track area and intensity."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QHBoxLayout, QLabel, QTableView, QVBoxLayout, QWidget

from cerber_model.runtime.tracks import TRACK_COLUMNS, Tracks

_ROOT = QModelIndex()
_DECIMALS = {"row": 2, "col": 2, "max_probability": 3, "eccentricity": 3, "orientation_deg": 1, "contrast": 1}


class TrackTableModel(QAbstractTableModel):
    def __init__(self):
        super().__init__()
        self.tracks: Tracks | None = None

    def set_tracks(self, tracks: Tracks | None) -> None:
        self.beginResetModel()
        self.tracks = tracks
        self.endResetModel()

    def rowCount(self, parent=_ROOT):
        return 0 if parent.isValid() or self.tracks is None else len(self.tracks)

    def columnCount(self, parent=_ROOT):
        return 0 if parent.isValid() else len(TRACK_COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return TRACK_COLUMNS[section]
        return None

    def data(self, index, role=Qt.DisplayRole):
        if self.tracks is None or not index.isValid():
            return None
        value = self.tracks.columns[TRACK_COLUMNS[index.column()]][index.row()]
        if role == Qt.UserRole:  # for sorting: the number itself
            return float(value)
        if role == Qt.DisplayRole:
            name = TRACK_COLUMNS[index.column()]
            if np.issubdtype(type(value), np.integer):
                return str(int(value))
            return f"{float(value):.{_DECIMALS.get(name, 1)}f}"
        if role == Qt.TextAlignmentRole:
            return int(Qt.AlignRight | Qt.AlignVCenter)
        return None


class TrackPanel(QWidget):
    #: row, col of the track the user clicked
    track_selected = Signal(float, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.summary = QLabel("No image analyzed yet.")
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.pooled = QLabel("")  # all analyzed images as one: fluence and the dispersion test
        self.pooled.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.pooled.setWordWrap(True)
        self.pooled.setVisible(False)
        layout.addWidget(self.pooled)
        self.model = TrackTableModel()
        self.proxy = QSortFilterProxyModel()
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.UserRole)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.clicked.connect(self._clicked)
        layout.addWidget(self.table, stretch=3)
        plots = QHBoxLayout()
        self.area_plot = pg.PlotWidget(title="Track area (px)")
        self.intensity_plot = pg.PlotWidget(title="Integrated intensity")
        for plot in (self.area_plot, self.intensity_plot):
            plot.setMinimumHeight(110)
            plot.setMaximumHeight(200)
            plot.setLabel("left", "tracks")
            plots.addWidget(plot)
        self.area_hist = pg.BarGraphItem(x=[], height=[], width=1, brush=(90, 140, 220))
        self.intensity_hist = pg.BarGraphItem(x=[], height=[], width=1, brush=(220, 120, 60))
        self.area_plot.addItem(self.area_hist)
        self.intensity_plot.addItem(self.intensity_hist)
        layout.addLayout(plots, stretch=2)

    def set_tracks(self, tracks: Tracks | None, summary: str = "") -> None:
        """The tracks in the table and histograms (None: none analyzed), and the summary above them (HTML)."""
        self.model.set_tracks(tracks)
        if tracks is None:
            self.summary.setText("No image analyzed yet.")
            for hist in (self.area_hist, self.intensity_hist):
                hist.setOpts(x=[], height=[], width=1)
            return
        self.summary.setText(summary)
        self._histogram(self.area_hist, tracks.columns["area_px"])
        self._histogram(self.intensity_hist, tracks.columns["integrated_intensity"])

    def set_pooled(self, text: str) -> None:
        """The line about all analyzed images (HTML); hidden when empty."""
        self.pooled.setText(text)
        self.pooled.setVisible(bool(text))

    @staticmethod
    def _histogram(item: pg.BarGraphItem, values: np.ndarray) -> None:
        if len(values) == 0:
            item.setOpts(x=[], height=[], width=1)
            return
        counts, edges = np.histogram(values, bins=min(30, max(5, len(values) // 3)))
        item.setOpts(x=(edges[:-1] + edges[1:]) / 2, height=counts, width=(edges[1] - edges[0]) * 0.9)

    def _clicked(self, index) -> None:
        source = self.proxy.mapToSource(index)
        tracks = self.model.tracks
        if tracks is not None:
            self.track_selected.emit(float(tracks.columns["row"][source.row()]),
                                     float(tracks.columns["col"][source.row()]))
