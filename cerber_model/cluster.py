"""Analyses on a Dask cluster: ``cerber analyze INPUTS --out DIR --scheduler ADDRESS``.

One task per image. Each task runs :func:`cerber_model.runtime.batch.analyze_file`, the same
function a local run uses, on a worker, so every file it writes is byte for byte what a local
run writes.

Where the data are: **workers read the inputs and write the results on shared storage** (a
network file system every worker mounts at the same path). Inputs, the output folder and a
model given as a folder are passed as absolute paths; only the small per-image results (the
summary row, fluence, notes, and for ``--spectra`` or ``--report`` the track table and a
thumbnail) travel back to the client, which writes ``summary.csv``, the spectra and the
report. Without ``--model``, each worker uses the default model installed with its package.

If a worker dies mid-image, the scheduler gives the task to another worker (Dask retries a
task whose worker died, up to ``distributed.scheduler.allowed-failures`` times, 3 by
default); every file is written atomically (a temporary file renamed into place), so a worker
that dies never leaves a half-written one.

dask and distributed are an optional extra (``pip install 'cerber[cluster]'``), not part of
the standalone analyzer.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .runtime.batch import BatchSettings, ImageResult, analyze_file
from .runtime.bundle import Bundle, load_model
from .runtime.pipeline import Outcome
from .runtime.progress import ProgressFn


class ClusterUnavailable(RuntimeError):
    """Dask is not installed, or the scheduler cannot be reached; the message says which and the fix."""


@functools.lru_cache(maxsize=2)
def _worker_bundle(model: str | None) -> Bundle:
    """The bundle on this worker, loaded once per worker process."""
    return load_model(model)


def analyze_on_worker(path: str, stem: str, settings: BatchSettings, model: str | None) -> ImageResult:
    """One image, on a worker: ``model`` is a bundle folder on shared storage, the name of a model
    bundled with the worker's installation (``v1``), or None for its default model."""
    return analyze_file(Path(path), stem, settings, _worker_bundle(model))


def analyze_on_cluster(
    items: Sequence[tuple[Path, str]],
    settings: BatchSettings,
    model: str | None,
    address: str,
    *,
    progress: ProgressFn | None = None,
    task: Callable[..., ImageResult] = analyze_on_worker,
    timeout: str = "30s",
) -> Iterator[Outcome[tuple[Path, str], ImageResult]]:
    """Every ``(path, stem)`` analyzed on the Dask cluster whose scheduler is at ``address``
    (``tcp://host:8786``, or a ``distributed.Client`` / ``LocalCluster`` address).

    Yields one :class:`Outcome` per image, in input order; ``progress(done, total)`` counts
    finished images in any order. Paths are made absolute here; they must mean the same on
    the workers (shared storage). Raises :class:`ClusterUnavailable` when dask is missing or
    the scheduler does not answer within ``timeout``.
    """
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise ClusterUnavailable("--scheduler needs dask and distributed: pip install 'cerber[cluster]' "
                                 f"(or dask[distributed]) into this environment and the workers' ({exc}).") from exc
    given_regions = settings.regions_file
    settings = _absolute(settings)
    if model is not None and Path(model).is_dir():  # a folder here; a bundled model's name ("v1") is
        model = str(Path(model).resolve())         # the worker's own installation's
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnavailable(f"no Dask scheduler answered at {address} ({exc}). Start one with "
                                 "`dask scheduler` and workers with `dask worker ADDRESS`, then pass its address.") \
            from exc
    run = uuid.uuid4().hex[:8]
    try:
        futures = [client.submit(task, str(Path(path).resolve()), stem, settings, model,
                                 key=f"cerber-analyze-{run}-{index}", pure=False)
                   for index, (path, stem) in enumerate(items)]
        if progress:
            for done, _ in enumerate(as_completed(futures, loop=client.loop), start=1):
                progress(done, len(futures))
        for item, future in zip(items, futures, strict=True):
            try:
                yield Outcome(item, value=_as_given(future.result(), Path(item[0]), given_regions))
            except Exception as exc:
                yield Outcome(item, error=exc)
    finally:
        client.close()


def _absolute(settings: BatchSettings) -> BatchSettings:
    from dataclasses import replace

    regions = str(Path(settings.regions_file).resolve()) if settings.regions_file else ""
    return replace(settings, out=settings.out.resolve(), regions_file=regions)


def _as_given(result: ImageResult, path: Path, regions_file: str) -> ImageResult:
    """The result as a local run reports it: the image and a ``--roi`` file named as given on the
    command line, not by the absolute paths the workers were sent."""
    result.path = path
    result.summary["file"] = str(path)
    if regions_file:
        result.summary["regions"] = regions_file
    elif result.summary.get("regions"):  # a regions file beside the image
        result.summary["regions"] = str(path.parent / Path(result.summary["regions"]).name)
    return result
