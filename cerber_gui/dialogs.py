"""The app's message boxes: errors (what went wrong and the fix, details expandable), the
question before quitting during an analysis, and the one before unsaved points would go."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QMessageBox, QWidget

from . import logfile

log = logging.getLogger("cerber")


def show_error(parent: QWidget, message: str, details: str = "") -> QMessageBox:
    """A non-blocking dialog with the message (what and the fix) and expandable details; also logged."""
    log.error("%s %s", message, details)
    box = QMessageBox(QMessageBox.Warning, "Cerber", message, QMessageBox.Ok, parent)
    log_file = logfile.current()
    if details or log_file:
        box.setDetailedText(details + (f"\n\nLogged in {log_file}" if log_file else ""))
    box.open()
    return box


def stop_analysis_and_quit(parent: QWidget) -> bool:
    """Ask whether to stop the running analysis and quit; True for yes."""
    return QMessageBox.question(parent, "Cerber", "An analysis is running. Stop it and quit?") == QMessageBox.Yes


def save_points_first(parent: QWidget, file_name: str) -> str:
    """Ask what to do with unsaved points: "save", "discard" or "cancel" (go back to them)."""
    answer = QMessageBox.question(parent, "Cerber", f"The points for {file_name} are not saved. Save them?",
                                  QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)
    return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(answer, "cancel")
