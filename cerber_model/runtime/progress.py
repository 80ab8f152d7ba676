"""Progress and cancellation for long work (analysis, generation, training).

Long work reports progress through a plain callable and checks a
:class:`CancelToken` between units of work (tiles, images, batches); it never
touches a user interface. Cancelling is cooperative: the work stops at the next
check and raises :class:`Cancelled`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: ``progress(done, total)``: units finished so far, out of ``total``.
ProgressFn = Callable[[int, int], None]


class Cancelled(Exception):
    """The work was cancelled by the user; nothing half-done was kept."""


class CancelToken:
    """A flag one thread sets and the worker checks (thread-safe)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the work to stop; ``reason`` says why (a person's Stop: "cancelled", a signal:
        "interrupted"); the first one given stays."""
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("cancelled")
