"""Running cerber_model's long work off the GUI thread.

A :class:`Worker` wraps one call of a plain function that accepts ``progress``
and ``cancel`` keyword arguments (the cerber_model convention) and runs it on
Qt's thread pool. It reports through the typed signals of :attr:`Worker.signals`,
a QObject that lives on the GUI thread, so connected slots run there. The
function gets a snapshot of its inputs; it never touches widgets.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from cerber_model.runtime.progress import Cancelled, CancelToken

log = logging.getLogger("cerber")


class WorkerSignals(QObject):
    # No "started": whoever starts a worker knows when it did.
    progress = Signal(int, int)
    result = Signal(object)
    error = Signal(str, str)  # message for the user, details (traceback)
    cancelled = Signal()
    finished = Signal()


class Worker(QRunnable):
    def __init__(self, fn: Callable, *args, **kwargs):
        super().__init__()
        self.setAutoDelete(False)  # Python owns it; callers keep a reference while it runs
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self.signals = WorkerSignals()
        self.cancel_token = CancelToken()
        self.tag = None  # what the caller wants to remember about this job (e.g. the image path)

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def run(self) -> None:
        s = self.signals
        try:
            value = self._fn(*self._args, progress=s.progress.emit, cancel=self.cancel_token, **self._kwargs)
        except Cancelled:
            s.cancelled.emit()
        except Exception as exc:  # every failure reaches the user as a dialog, and the log
            log.exception("work failed")
            s.error.emit(user_message(exc), traceback.format_exc())
        else:
            s.result.emit(value)
        finally:
            s.finished.emit()


def user_message(exc: BaseException) -> str:
    """What to tell the user about a failure: out-of-memory errors get the fix with them."""
    if isinstance(exc, MemoryError) or type(exc).__name__ in ("ResourceExhaustedError", "OutOfMemoryError"):
        return ("out of memory. Close other programs, or lower the batch size or patch size (training) "
                "or open fewer images at once; nothing already saved was lost.")
    return str(exc) or type(exc).__name__


def start(worker: Worker) -> Worker:
    QThreadPool.globalInstance().start(worker)
    return worker


def wait_all(msecs: int = 10000) -> bool:
    """Wait for running work to end (e.g. after cancelling, before quitting)."""
    return QThreadPool.globalInstance().waitForDone(msecs)
