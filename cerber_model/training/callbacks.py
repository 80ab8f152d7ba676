"""What happens around Keras' ``fit`` in a training run, one small class per job.

:func:`prepare_callbacks` lists a run's callbacks in the order they must run (as StarDist's
``prepare_for_training`` assembles its callbacks, and Spotiflow keeps its own as module-level
classes); :func:`~cerber_model.training.train` hands them to ``model.fit`` through
:func:`keras_callback` and asks :func:`stop_reason` why it ended.
They are plain classes with Keras' hook names, so that each can be tested with a stand-in
model and without TensorFlow: all a model needs is ``stop_training``, plus ``weights`` for
:class:`BestCheckpoint` and ``save(path)`` for :class:`LastCheckpoint`.

The hooks run in list order, as Keras runs its callbacks, and at the end of an epoch they
share one ``logs`` dict, as Keras' callbacks do: Keras puts ``loss`` and ``val_loss`` (on
validation patches) in it, :class:`ObjectValidation` adds the object-level scores,
:class:`History` the epoch's ``seconds`` and :class:`BestCheckpoint` the ``best_f1`` so far
(and the ``best_file`` that holds it); the callbacks after them read those. An epoch that was
cut short (cancelled during its batches) is not validated, and the callbacks after validation
leave it out: the checkpoints keep the last whole epoch. Epochs count from 0 in the hooks (as
in Keras), from 1 in the history and in events.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..nn.keras_graph import get_weights
from ..runtime.progress import CancelToken
from .config import TrainingConfig
from .events import BatchDone, EpochDone, EventFn

#: The columns of ``history.csv`` (and of the run's state), one row per validated epoch.
HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "val_f1", "val_precision", "val_recall", "val_threshold",
                   "val_min_contrast", "val_pixel_iou", "seconds")

#: The run's state in its work folder (``<out>.work/``), which names the checkpoints it belongs to
#: (see :class:`LastCheckpoint`); and the checkpoints of runs started before it named them.
STATE_FILE, LAST_FILE, BEST_FILE = "state.json", "last.keras", "best.npz"
#: The names of everything Cerber writes into a work folder: the checkpoints and, should a write
#: have been cut off, their temporary files. A work folder holding anything else is not cleared.
CHECKPOINT_NAME = re.compile(r"(state\.json|best(-\d+)?\.npz|last(-\d+)?\.keras)"
                             r"|\.(state\.json|best(-\d+)?\.npz|last(-\d+)?\.keras)\.\w+\.tmp"
                             r"|\.(best|last)(-\d+)?\.tmp\.(npz|keras)")


Logs = dict[str, Any]
Clock = Callable[[], float]


class Callback:
    """A job around the training loop; the hooks do nothing unless overridden."""

    model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_epoch_begin(self, epoch: int) -> None:
        pass

    def on_train_batch_end(self, batch: int, logs: Logs) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        pass


def validated(logs: Logs) -> bool:
    """Whether :class:`ObjectValidation` scored this epoch (it was not cut short)."""
    return "val_f1" in logs


def _value(logs: Logs, key: str) -> float:
    return float(logs.get(key, math.nan))


class EpochPatches(Callback):
    """Tells the patch stream which epoch it serves: batch i of epoch e is drawn from
    rng(seed, e, i), so a resumed run draws the patches an uninterrupted one would have."""

    def __init__(self, patches: Any):
        self.patches = patches

    def on_epoch_begin(self, epoch: int) -> None:
        self.patches.epoch = epoch


class ObjectValidation(Callback):
    """Scores the model on whole validation images after every epoch.

    ``validate(model)`` returns :func:`~cerber_model.training.loop.validate_objects`' dict; its
    scores go into the logs as ``val_f1``, ``val_precision``, ``val_recall``, ``val_threshold``,
    ``val_min_contrast`` and ``val_pixel_iou``.
    """

    def __init__(self, validate: Callable[[Any], dict[str, Any]]):
        self.validate = validate

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        # Training stopped during this epoch's batches (cancelled): the epoch was cut short.
        if self.model.stop_training:
            return
        metrics = self.validate(self.model)
        logs.update(val_f1=metrics["f1"], val_precision=metrics["precision"], val_recall=metrics["recall"],
                    val_threshold=metrics["threshold"], val_min_contrast=metrics["min_contrast"],
                    val_pixel_iou=metrics["pixel_iou"])


class History(Callback):
    """One row per validated epoch (:data:`HISTORY_COLUMNS`), appended to ``rows`` (those of the
    epochs before, when resuming). ``seconds`` is the epoch's training and validation time."""

    def __init__(self, rows: list[dict[str, float]], clock: Clock = time.monotonic):
        self.rows = rows
        self.clock = clock
        self.t0 = clock()

    def on_epoch_begin(self, epoch: int) -> None:
        self.t0 = self.clock()

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if not validated(logs):
            return
        logs["seconds"] = self.clock() - self.t0
        self.rows.append({"epoch": epoch + 1} | {key: _value(logs, key) for key in HISTORY_COLUMNS[1:]})


class BestCheckpoint(Callback):
    """Keeps the weights, the chosen threshold and smallest contrast of the epoch with the best validation F1 so far
    in ``folder``, as ``best-<epoch>.npz`` (written atomically and flushed to disk); the name goes
    into the logs as ``best_file`` for :class:`LastCheckpoint` to record. ``history``: the rows of
    the epochs before, when resuming, and ``name`` the file that holds the best of them."""

    def __init__(self, folder: Path, history: Sequence[dict[str, float]] = (), name: str | None = None):
        self.folder = folder
        self.name = name
        self.best_f1 = max((row["val_f1"] for row in history), default=-1.0)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        from ..runtime.files import atomic_write

        if not validated(logs):
            return
        if logs["val_f1"] > self.best_f1:
            self.best_f1 = logs["val_f1"]
            weights = get_weights(self.model)
            # A new name each time: the file of the best epoch so far stays as it is until the
            # run's state names this one (a crash in between must not let resume trust it).
            self.name = f"best-{epoch + 1:04d}.npz"
            atomic_write(self.folder / self.name,
                         lambda fh: np.savez(fh, threshold=np.float32(logs["val_threshold"]),
                                             min_contrast=np.float32(logs["val_min_contrast"]), **weights))
        logs["best_f1"], logs["best_file"] = self.best_f1, self.name


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries: renames into it) to disk."""
    if not path.is_dir():
        with open(path, "rb+") as fh:  # writable: Windows flushes only handles open for writing
            os.fsync(fh.fileno())
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows opens no folders; its renames are journaled by NTFS
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LastCheckpoint(Callback):
    """After every validated epoch, what ``resume`` continues from, in ``folder``: the whole model
    with its optimiser state (``model.save``) as ``last-<epoch>.keras``, then the run's state
    (JSON: its settings, its history so far, and the names of that model and of the best epoch's
    file) as ``state.json``. Each file is flushed to disk before the state that names it is
    written, atomically and last, so the state always describes one epoch's files; resume trusts
    only those. The files it no longer names are deleted after."""

    def __init__(self, folder: Path, config: TrainingConfig, history: list[dict[str, float]]):
        self.folder = folder
        self.config = config
        self.history = history

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        from ..runtime.files import atomic_write

        if not validated(logs):
            return
        name = f"last-{epoch + 1:04d}.keras"
        tmp = self.folder / f".last-{epoch + 1:04d}.tmp.keras"
        self.model.save(tmp)
        _fsync(tmp)
        os.replace(tmp, self.folder / name)
        state = {"config": self.config.to_dict(), "history": self.history, "last": name,
                 "best": logs.get("best_file")}
        atomic_write(self.folder / STATE_FILE, lambda fh: fh.write((json.dumps(state, indent=2) + "\n").encode()))
        _fsync(self.folder)
        for entry in self.folder.iterdir():
            if entry.name not in (STATE_FILE, name, state["best"]) and CHECKPOINT_NAME.fullmatch(entry.name):
                entry.unlink(missing_ok=True)


class ProgressReport(Callback):
    """Reports every batch (its loss and the time left at this pace) and every validated epoch
    (its history row and the best F1 so far) as events."""

    def __init__(self, emit: EventFn, epochs: int, batches: int, clock: Clock = time.monotonic):
        self.emit = emit
        self.epochs, self.batches = epochs, batches
        self.clock = clock
        self.epoch, self.t0 = 0, clock()

    def on_epoch_begin(self, epoch: int) -> None:
        self.epoch, self.t0 = epoch, self.clock()

    def on_train_batch_end(self, batch: int, logs: Logs) -> None:
        done = batch + 1
        per_batch = (self.clock() - self.t0) / done
        left = (self.batches - done) + (self.epochs - self.epoch - 1) * self.batches
        self.emit(BatchDone(epoch=self.epoch + 1, epochs=self.epochs, batch=done, batches=self.batches,
                            loss=_value(logs, "loss"), eta_s=per_batch * left))

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if not validated(logs):
            return
        row = {key: _value(logs, key) for key in HISTORY_COLUMNS[1:]}
        self.emit(EpochDone(epoch=epoch + 1, **row, best_f1=logs["best_f1"]))


class CancelOnRequest(Callback):
    """Stops training after the batch during which ``token`` was cancelled; ``cancelled`` says
    afterwards whether it did, and ``reason`` why (the token's: "cancelled", "interrupted")."""

    def __init__(self, token: CancelToken | None):
        self.token = token
        self.cancelled = False
        self.reason = ""

    def on_train_batch_end(self, batch: int, logs: Logs) -> None:
        if self.token is not None and self.token.cancelled:
            self.cancelled, self.reason = True, self.token.reason or "cancelled"
            self.model.stop_training = True


class EarlyStopping(Callback):
    """Stops training after ``patience`` validated epochs in a row without a better validation F1
    (0: never); ``reason`` then says so. ``history``: the rows of the epochs before, when
    resuming (the count goes on from them)."""

    def __init__(self, patience: int, history: Sequence[dict[str, float]] = ()):
        self.patience = patience
        self.best_f1 = max((row["val_f1"] for row in history), default=-1.0)
        best_epoch = max(range(len(history)), key=lambda i: history[i]["val_f1"], default=-1)
        self.since_best = len(history) - 1 - best_epoch if history else 0
        self.reason: str | None = None

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if not validated(logs):
            return
        if logs["val_f1"] > self.best_f1:
            self.best_f1, self.since_best = logs["val_f1"], 0
        else:
            self.since_best += 1
        if self.patience and self.since_best >= self.patience:
            self.reason = f"no better validation F1 for {self.patience} epochs"
            self.model.stop_training = True


def prepare_callbacks(config: TrainingConfig, work: Path, history: list[dict[str, float]], *,
                      validate: Callable[[Any], dict[str, Any]], patches: Any, emit: EventFn,
                      cancel: CancelToken | None, best_file: str | None = None) -> list[Callback]:
    """A run's callbacks, in the order they must run.

    At the end of an epoch it is validated, recorded, checkpointed, reported, then judged
    (early stopping); at the end of a batch it is reported, then the cancel token is checked, so
    that a cancel from the report's handler stops after that batch. ``history``: the rows of the
    epochs before (resuming) or [], extended in place; ``work``: the run's work folder;
    ``best_file``: the file in it that holds the best of those epochs (resuming).
    """
    return [
        EpochPatches(patches),
        ObjectValidation(validate),
        History(history),
        BestCheckpoint(work, history, best_file),
        LastCheckpoint(work, config, history),
        ProgressReport(emit, config.epochs, config.steps_per_epoch),
        CancelOnRequest(cancel),
        EarlyStopping(config.patience, history),
    ]


def stop_reason(callbacks: Sequence[Callback]) -> str:
    """Why a run with these callbacks ended: "cancelled" (or the cancel token's reason, such as
    "interrupted"), why it stopped early, or "finished"."""
    for callback in callbacks:
        if isinstance(callback, CancelOnRequest) and callback.cancelled:
            return callback.reason
    for callback in callbacks:
        if isinstance(callback, EarlyStopping) and callback.reason:
            return callback.reason
    return "finished"


def keras_callback(callbacks: Sequence[Callback]) -> Any:
    """One ``keras.callbacks.Callback`` that runs ``callbacks``' hooks in order (imports Keras)."""
    import keras

    class Hooks(keras.callbacks.Callback):
        def set_model(self, model):
            super().set_model(model)
            for callback in callbacks:
                callback.set_model(model)

        def on_epoch_begin(self, epoch, logs=None):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)

        def on_train_batch_end(self, batch, logs=None):
            logs = dict(logs or {})
            for callback in callbacks:
                callback.on_train_batch_end(batch, logs)

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)

    return Hooks()
