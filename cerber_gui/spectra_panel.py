"""The spectra panel: the histogram of a track quantity (integrated intensity, the LET proxy, or a
size) for the selected image or pooled over the analyzed images, as a step plot.

It says which quantity and which images the user chose through its signals; the window gives it
the spectrum to show (:meth:`SpectraPanel.set_spectrum`), which updates the plot's data in place.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from cerber_model.runtime.spectra import QUANTITIES, Spectrum

SCOPES = ("selected image", "all analyzed")
FILL = (220, 120, 60, 110)


class SpectraPanel(QWidget):
    #: a key of :data:`cerber_model.runtime.spectra.QUANTITIES`
    quantity_changed = Signal(str)
    #: True: pooled over the analyzed images; False: the selected image
    pooled_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        choices = QHBoxLayout()
        self.quantity_box = QComboBox()
        for key, label in QUANTITIES.items():
            self.quantity_box.addItem(label, key)
        self.quantity_box.setToolTip("What the histogram counts tracks by. Integrated intensity grows with the "
                                     "particle's LET; it is divided by laser power x dwell time where "
                                     "<image>_acquisition.json or the folder's acquisition.json gives them.")
        self.quantity_box.currentIndexChanged.connect(lambda _i: self.quantity_changed.emit(self.quantity()))
        self.scope_box = QComboBox()
        self.scope_box.addItems(SCOPES)
        self.scope_box.currentIndexChanged.connect(lambda i: self.pooled_changed.emit(i == 1))
        choices.addWidget(self.quantity_box, 1)
        choices.addWidget(self.scope_box)
        layout.addLayout(choices)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("left", "tracks")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.curve = self.plot.plot([0, 1], [0], stepMode="center", fillLevel=0, brush=FILL,
                                    pen=pg.mkPen((220, 120, 60), width=1.5))
        layout.addWidget(self.plot, 1)
        self.caption = QLabel("")
        self.caption.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.caption.setWordWrap(True)
        layout.addWidget(self.caption)
        self.spectrum: Spectrum | None = None
        self.set_spectrum(None, "", "No image analyzed yet.")

    def quantity(self) -> str:
        return str(self.quantity_box.currentData())

    def pooled(self) -> bool:
        return self.scope_box.currentIndex() == 1

    def set_spectrum(self, spectrum: Spectrum | None, label: str, caption: str = "") -> None:
        """Show ``spectrum`` (None: an empty plot) with ``label`` on the x axis; ``caption`` under it
        (default: how many tracks it counts, and those outside its edges)."""
        self.spectrum = spectrum
        if spectrum is None:
            self.curve.setData([0, 1], [0])
            self.plot.setLogMode(x=False, y=False)
        else:
            log = spectrum.is_log
            self.plot.setLogMode(x=log, y=False)
            self.curve.setData(spectrum.edges, spectrum.counts.astype(np.float64))
            if not caption:
                caption = f"{spectrum.total} track{'s' if spectrum.total != 1 else ''}"
                outside = spectrum.underflow + spectrum.overflow
                if outside:
                    caption += f" ({outside} outside the bins)"
                if log:
                    caption += "; log-spaced bins"
        self.plot.setLabel("bottom", label)
        self.caption.setText(caption)
