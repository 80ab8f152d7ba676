"""What a training run reports while it runs: one frozen dataclass per kind of event.

:func:`~cerber_model.training.train` passes them to its ``callback`` in this order:
:class:`Inspected`, then :class:`BatchDone` after every training step and :class:`EpochDone`
after every validated epoch, :class:`Stopped`, and :class:`Saved`. Callers tell them apart by
type (``isinstance`` or ``match``). Epochs and batches count from 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Inspected:
    """The data set was checked; training starts only if ``ok``."""

    report: str  # counts, sizes and every problem by file, as text
    ok: bool


@dataclass(frozen=True)
class BatchDone:
    """A training step (one batch of patches) ended."""

    epoch: int
    epochs: int
    batch: int
    batches: int  # per epoch
    loss: float  # of this batch
    eta_s: float  # seconds of training left in the run at this pace (validation not included)


@dataclass(frozen=True)
class EpochDone:
    """An epoch ended, was validated on whole images, and its checkpoints are saved.

    The fields but ``best_f1`` are the epoch's row of ``history.csv``.
    """

    epoch: int
    loss: float  # mean training loss of the epoch
    val_loss: float  # loss on validation patches
    val_f1: float  # object-level, at the threshold with the best F1 (matching radius: the config's)
    val_precision: float
    val_recall: float
    val_threshold: float
    val_min_contrast: float  # the smallest track contrast chosen with the threshold (0: every track)
    val_pixel_iou: float  # of the mask and the probability map at 0.5
    seconds: float  # training and validation
    best_f1: float  # the best val_f1 of the run so far, this epoch's included


@dataclass(frozen=True)
class Stopped:
    """Training ended: ``"finished"``, ``"cancelled"`` (the app's Stop), ``"interrupted"`` (a signal to
    ``cerber train``), or why it stopped early."""

    reason: str


@dataclass(frozen=True)
class Saved:
    """The model (the best epoch) was saved as a bundle at ``path``."""

    path: str


TrainingEvent = Inspected | BatchDone | EpochDone | Stopped | Saved
EventFn = Callable[[TrainingEvent], None]
