"""Folders as a pipeline: read the next image while the network runs, write the last one's results.

Analyzing a folder has three stages per image: reading and normalising it (file decoding,
numpy), the network (ONNX Runtime or OpenVINO, which release the GIL and use every core), and
extracting, measuring and writing the tracks (scipy, scikit-image, file writing). Run one
after another, the machine idles in the first and the last. :func:`pipelined` overlaps them:
a reader thread works ahead by ``depth + 1`` images, the calling thread runs the network, a
writer thread finishes the previous image.

Memory stays bounded: at most ``depth + 1`` read images wait for the network, one image is in
the network, and one is being finished, whatever the number of images.

Results come back in input order, each as an :class:`Outcome` holding the value or the
exception of the stage that failed, so one bad file never stops the others.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from .progress import CancelToken

Item = TypeVar("Item")
Read = TypeVar("Read")
Computed = TypeVar("Computed")
Result = TypeVar("Result")


@dataclass
class Outcome(Generic[Item, Result]):
    """What became of one item: ``value`` when every stage succeeded, else ``error``."""

    item: Item
    value: Result | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _failed(error: BaseException) -> Future:
    future: Future = Future()
    future.set_exception(error)
    return future


def pipelined(
    items: Iterable[Item],
    read: Callable[[Item], Read],
    compute: Callable[[Item, Read], Computed],
    finish: Callable[[Item, Computed], Result],
    *,
    depth: int = 1,
    cancel: CancelToken | None = None,
) -> Iterator[Outcome[Item, Result]]:
    """``finish(item, compute(item, read(item)))`` for every item, the three stages overlapped.

    ``read`` runs in a reader thread (up to ``depth + 1`` items ahead), ``compute`` in the calling
    thread, ``finish`` in a writer thread. Yields one :class:`Outcome` per item, in input order,
    as soon as its ``finish`` is done. An exception in any stage ends up in that item's outcome
    (``Exception`` subclasses; anything else, such as KeyboardInterrupt, propagates).
    ``cancel`` is checked before each ``compute``; closing the generator early waits for the
    running stages and starts no new ones.
    """
    if depth < 0:
        raise ValueError(f"depth must be 0 or more, got {depth}")
    source = iter(items)
    reads: deque[tuple[Item, Future]] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="cerber-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="cerber-write") as writer:

        def read_ahead() -> None:
            while len(reads) < depth + 1:
                try:
                    item = next(source)
                except StopIteration:
                    return
                reads.append((item, reader.submit(read, item)))

        finishing: tuple[Item, Future] | None = None
        try:
            read_ahead()
            while reads:
                item, pending = reads.popleft()
                read_ahead()
                if cancel:
                    cancel.check()
                try:
                    computed = compute(item, pending.result())
                except Exception as exc:
                    done = _failed(exc)
                else:
                    done = writer.submit(finish, item, computed)
                if finishing is not None:
                    yield _outcome(*finishing)
                finishing = (item, done)
            if finishing is not None:
                yield _outcome(*finishing)
                finishing = None
        finally:
            for _, future in reads:
                future.cancel()


def _outcome(item, future: Future) -> Outcome:
    try:
        return Outcome(item, value=future.result())
    except Exception as exc:
        return Outcome(item, error=exc)
