"""A dialog describing the loaded model: architecture, size, threshold, provenance, metrics, curves."""

from __future__ import annotations

from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QVBoxLayout

from cerber_model.runtime.bundle import Bundle, describe_bundle


class ModelCardDialog(QDialog):
    def __init__(self, bundle: Bundle, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Model: {bundle.name}")
        layout = QVBoxLayout(self)
        text = QPlainTextEdit(describe_bundle(bundle))
        text.setReadOnly(True)
        text.setMinimumSize(640, 280)
        layout.addWidget(text)
        plot = bundle.path / "loss.png" if bundle.path else None
        if plot is not None and plot.is_file():
            picture = QLabel()
            picture.setPixmap(QPixmap(str(plot)))
            layout.addWidget(picture)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
