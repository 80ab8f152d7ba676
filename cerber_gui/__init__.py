"""Cerber's desktop application (PySide6 + pyqtgraph); it only calls cerber_model's API."""
