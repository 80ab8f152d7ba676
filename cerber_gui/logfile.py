"""The app's log file: every error shown to the user is also written here.

The file lives in the per-user application data folder (``cerber.log``, rotated at
1 MB, three old copies kept), so a user can send it with a problem report.
Uncaught exceptions in slots are logged and shown as a dialog instead of ending
the app.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("cerber")
_current: Path | None = None


def current() -> Path | None:
    """The log file in use, or None when logging goes to the console only."""
    return _current


def setup(folder: Path) -> Path | None:
    """Log INFO and above to ``folder/cerber.log`` and the console; None if the folder is not writable."""
    global _current
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(folder / "cerber.log", maxBytes=1_000_000, backupCount=3,
                                                       encoding="utf-8")
    except OSError as exc:
        log.warning("no log file in %s: %s", folder, exc)
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    _current = folder / "cerber.log"
    return _current


def catch_uncaught(show: Callable[[str, str], None]) -> None:
    """Route exceptions that escape a slot to the log and to ``show(message, details)``."""

    def hook(kind, value, tb):
        details = "".join(traceback.format_exception(kind, value, tb))
        log.error("uncaught exception\n%s", details)
        try:
            show(f"Something went wrong ({kind.__name__}: {value}). Work already done is kept.", details)
        except Exception:  # the dialog itself failed: the log has it
            sys.__excepthook__(kind, value, tb)

    sys.excepthook = hook
