"""Running cerber_model's long work off the GUI thread.

A :class:`Worker` wraps one call of a plain function that accepts ``progress``
and ``cancel`` keyword arguments (the cerber_model convention; a generator's items
are sent one by one as it yields them) and runs it on
one of the app's thread pools (:class:`Pool`). It reports through the typed signals
of :attr:`Worker.signals`, a QObject that lives on the GUI thread, so connected slots
run there. The function gets a snapshot of its inputs; it never touches widgets.

Long work has pools of its own, so that quick work never queues behind it: Qt's global
pool has one thread per core, and on two cores a training plus one analysis filled it,
so re-tracking at a new threshold waited for one of them to end.
"""

from __future__ import annotations

import enum
import logging
import time
import traceback
from collections.abc import Callable, Generator

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from cerber_model.runtime.progress import Cancelled, CancelToken

log = logging.getLogger("cerber")


class WorkerSignals(QObject):
    # No "started": whoever starts a worker knows when it did.
    progress = Signal(int, int)
    item = Signal(object)  # each item a generator yields, as it yields it
    result = Signal(object)  # what the function returned (None for a generator)
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
            if isinstance(value, Generator):
                for item in value:
                    s.item.emit(item)
                value = None
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


class Pool(enum.Enum):
    """Where a worker runs, by how long its work takes; ``threads``: how many of its workers run at once."""

    QUICK = ("quick", 2)  # re-tracking: well under a second, and the user is waiting for it
    ANALYSIS = ("analysis", 1)  # the analysis queue, one image at a time
    READING = ("reading", 1)  # opening images, one file at a time, in the order they were asked for
    TRAINING = ("training", 1)  # the training wizard's work: generating and checking data, training
    EXPORT = ("export", 1)  # exports that draw every image (the folder report), one at a time

    def __init__(self, _name: str, threads: int):
        self.threads = threads


_pools: dict[Pool, QThreadPool] = {}


def pool(kind: Pool) -> QThreadPool:
    """The thread pool of ``kind`` (made on first use; never Qt's global pool)."""
    if kind not in _pools:
        _pools[kind] = QThreadPool()
        _pools[kind].setMaxThreadCount(kind.threads)
    return _pools[kind]


def start(worker: Worker, kind: Pool) -> Worker:
    pool(kind).start(worker)
    return worker


def wait_all(msecs: int = 10000, kinds: tuple[Pool, ...] = tuple(Pool)) -> bool:
    """Wait for running work of ``kinds`` to end (e.g. after cancelling, before quitting), up to
    ``msecs`` in all; whether it did."""
    end = time.monotonic() + msecs / 1000
    return all(pool(kind).waitForDone(max(0, round((end - time.monotonic()) * 1000))) for kind in kinds)
