"""Starting the desktop app: ``cerber-gui [IMAGES...] [--model BUNDLE]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from cerber_model.cli import MODEL_HELP

    parser = argparse.ArgumentParser(prog="cerber-gui", description="Cerber track analyzer")
    parser.add_argument("images", nargs="*", help="images or folders to open")
    parser.add_argument("--model", help=MODEL_HELP)
    args = parser.parse_args(argv)

    from PySide6.QtCore import QStandardPaths
    from PySide6.QtWidgets import QApplication

    from cerber_model.runtime.bundle import BundleError, load_model

    from . import logfile
    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Cerber")
    app.setOrganizationName("Cerber")
    logfile.setup(Path(QStandardPaths.writableLocation(QStandardPaths.AppLocalDataLocation)))
    logging.getLogger("cerber").info("Cerber starting")
    bundle, problem = None, None
    try:
        bundle = load_model(args.model)
    except BundleError as exc:
        problem = str(exc)
    window = MainWindow(bundle)
    logfile.catch_uncaught(window.show_error)
    window.show()
    if problem:
        window.show_error("No model is loaded; load one from the Model menu.", problem)
    if args.images:
        window.open_paths([Path(p) for p in args.images])
    return app.exec()


def check_window(bundle=None) -> str:
    """Open the main window offscreen and close it again: proves Qt, its plugins and the viewer load."""
    import os
    import tempfile

    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6 import __version__ as qt_version
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow
    from .settings import Settings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as folder:  # the user's own settings stay untouched
        window = MainWindow(bundle, Settings.in_file(Path(folder) / "selftest.ini"))
        window.show()
        app.processEvents()
        window.close()
    return f"window ok (PySide6 {qt_version}, platform {app.platformName()})"


if __name__ == "__main__":
    sys.exit(main())
