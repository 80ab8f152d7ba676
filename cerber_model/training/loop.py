"""Training a Cerber model: patches in, a validated bundle out.

:func:`train` streams random patches (see :mod:`cerber_model.datasets`), fits the
network with a focal loss and AdamW, and after every epoch analyzes the whole
validation images (tiled, exactly as users will) to measure object-level
precision, recall and F1 at 3 px, choosing the threshold that maximises F1.
It reports typed events (:mod:`.events`) through ``callback``; the CLI prints
them, the GUI plots them. Checkpoints (best by validation F1, and last with the optimiser
state) are written atomically to ``<out>.work/``; ``resume=True`` continues from
the last. Cancelling stops within one batch and keeps the best model so far.
What happens around Keras' ``fit`` (validation, checkpoints, progress, cancelling, early
stopping) is in :mod:`.callbacks`, one class per job; :func:`train` wires them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..nn.bundling import make_bundle
from ..nn.keras_graph import get_weights
from ..runtime.architecture import NetworkConfig
from ..runtime.bundle import (
    CONFIG_FILE,
    HISTORY_FILE,
    LOSS_PLOT_FILE,
    Bundle,
    BundleConfig,
    replace_problem,
    save_bundle,
)
from ..runtime.datasets import DatasetReport, DatasetSpec, PatchSampler, inspect_dataset
from ..runtime.progress import CancelToken
from .callbacks import (
    BEST_FILE,
    CHECKPOINT_NAME,
    HISTORY_COLUMNS,
    LAST_FILE,
    STATE_FILE,
    keras_callback,
    prepare_callbacks,
    stop_reason,
)
from .config import TrainingConfig, TrainingError
from .events import EventFn, Inspected, Saved, Stopped


def _start_weights(config: TrainingConfig) -> dict[str, np.ndarray]:
    """The weights of the bundle ``config.start_from`` (same width required)."""
    from ..runtime.bundle import BundleError, load_bundle

    try:
        start = load_bundle(Path(config.start_from))
    except BundleError as exc:
        raise TrainingError(f"cannot start from {config.start_from}: {exc}") from exc
    width = start.config.network.width
    if width != config.width:
        raise TrainingError(f"{config.start_from} is a width-{width} model; set the width to {width} "
                            "to start from it, or start from fresh weights.")
    return start.weights


def work_folder(out: Path) -> Path:
    """Where a run into the model folder ``out`` keeps its checkpoints: ``<out>.work`` beside it."""
    return out.with_name(out.name + ".work")


def work_problem(work: Path) -> str | None:
    """Why training must not clear the checkpoint folder ``work`` (None: it may, being missing or
    holding only the files Cerber's checkpoints consist of)."""
    if not work.exists() and not work.is_symlink():
        return None
    if work.is_symlink() or not work.is_dir():
        return (f"{work} is not a checkpoint folder of Cerber's, so training will not replace it; "
                "move it away or choose another output folder.")
    foreign = sorted(entry.name for entry in work.iterdir()
                     if entry.is_symlink() or not entry.is_file() or not CHECKPOINT_NAME.fullmatch(entry.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        return (f"{work} holds files that are not Cerber's checkpoints ({shown}), so training will not clear "
                "it; move them away or choose another output folder.")
    return None


def _clear_work(work: Path) -> None:
    """Delete the checkpoints in ``work`` (only files :func:`work_problem` accepted) and make sure it exists."""
    if work.is_dir():
        for entry in work.iterdir():
            if CHECKPOINT_NAME.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
                entry.unlink()
    work.mkdir(parents=True, exist_ok=True)


#: The ``stopped`` provenance of a model saved when its run was stopped before its end (the app's
#: Stop, a signal to ``cerber train``): ``resume`` continues such a run and may replace that model.
STOPPED_BEFORE_THE_END = ("cancelled", "interrupted")


def _stopped_before_the_end(out: Path) -> bool:
    try:
        stopped = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))["provenance"]["stopped"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return False
    return stopped in STOPPED_BEFORE_THE_END


@dataclass(frozen=True)
class Checkpoint:
    """A run's state after its last checkpointed epoch, as ``resume`` continues it."""

    config: TrainingConfig
    history: list[dict[str, float]]  # one row per epoch so far
    last: Path  # the model with its optimiser state (Keras)
    best: Path  # the weights and threshold of the best epoch so far (.npz)


def read_checkpoint(work: Path) -> Checkpoint | None:
    """The run checkpointed in ``work``, or None when there is none. Raises :class:`TrainingError`
    for a state file that cannot be read or that names a missing checkpoint."""
    state_path = work / STATE_FILE
    if not state_path.is_file():
        return None
    fix = "start afresh without --resume (the checkpoints there are then replaced)."
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        config = TrainingConfig.from_dict(state["config"])
        history = state["history"]
        if not isinstance(history, list) or not all(isinstance(row, dict) and isinstance(row.get("val_f1"), float)
                                                    for row in history):
            raise ValueError("its history is not a list of epochs")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, TrainingError) as exc:
        raise TrainingError(f"{state_path} cannot be read as a run's state ({exc}); {fix}") from exc
    # The files the state belongs to; a state written before it named them used fixed names.
    names = (state.get("last", LAST_FILE), state.get("best", BEST_FILE))
    for name in names:
        if not (isinstance(name, str) and CHECKPOINT_NAME.fullmatch(name)):
            raise TrainingError(f"{state_path} names {name!r} as a checkpoint, which Cerber does not write; {fix}")
        if not (work / name).is_file():
            raise TrainingError(f"{work / name}, a checkpoint that {state_path} belongs to, is missing; {fix}")
    return Checkpoint(config, history, work / names[0], work / names[1])


def check_output(out: Path | str, *, overwrite: bool = False, resume: bool = False) -> Checkpoint | None:
    """Refuse, before anything is read or built, an output that training must not write: ``out``
    not a model folder, its ``<out>.work`` not Cerber's checkpoints, a model at ``out`` without
    ``overwrite`` (``resume`` may replace one saved when its run was stopped before the end).
    Returns the checkpoint to resume from (None: there is none, or ``resume`` is off)."""
    out = Path(out)
    work = work_folder(out)
    for problem in (replace_problem(out), work_problem(work)):
        if problem:
            raise TrainingError(problem)
    checkpoint = read_checkpoint(work) if resume else None
    if out.exists() and not overwrite and not (checkpoint is not None and _stopped_before_the_end(out)):
        if checkpoint is not None:
            raise TrainingError(f"{out} holds a model whose run ended; continuing it would replace that model: "
                                "allow overwriting (--overwrite) to do so, or choose another output folder.")
        raise TrainingError(f"{out} already exists; choose another output folder or allow overwriting.")
    return checkpoint


def _patch_batches(sampler: PatchSampler, batch_size: int, steps: int, seed: int, augment_epochs: bool):
    """A Keras PyDataset of ``steps`` batches; batch i of epoch e is drawn from rng(seed, e, i)."""
    import keras

    class Patches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0

        def __len__(self):
            return steps

        def __getitem__(self, i):
            rng = np.random.default_rng([seed, self.epoch if augment_epochs else 0, i])
            xs, ys = zip(*(sampler.sample(rng) for _ in range(batch_size)), strict=True)
            return np.stack(xs)[..., None], np.stack(ys)[..., None]

    return Patches()


def _shipping_engine(model, config: TrainingConfig):
    """The engine a saved bundle of this model would run: the fused ONNX graph of its current
    weights in ONNX Runtime. Validation scores exactly what users will get, about 2-3x faster
    than the Keras graph, and without compiling the training graph again for whole images."""
    from ..nn.fused import export_onnx
    from ..runtime.engine import OnnxEngine

    return OnnxEngine(export_onnx(NetworkConfig(width=config.width, seed=config.seed), get_weights(model)))


def validate_objects(model, report: DatasetReport, config: TrainingConfig) -> dict[str, Any]:
    """Analyze whole validation images; F1 at every threshold and smallest track contrast, the
    best of them, pixel IoU."""
    from ..runtime.evaluation import CONTRASTS, sweep_thresholds

    pairs = report.val if not config.val_images else report.val[: config.val_images]
    sweep = sweep_thresholds(_shipping_engine(model, config), pairs, config.normalization,
                             min_area_px=config.min_area_px, radius=config.match_radius,
                             point_radius=report.point_radius, contrasts=CONTRASTS)
    threshold, contrast = sweep.best_setting
    best = sweep.by_contrast[contrast][threshold]
    return {
        "f1": best.f1,
        "precision": best.precision,
        "recall": best.recall,
        "threshold": float(threshold),
        "min_contrast": float(contrast),
        "pixel_iou": sweep.intersection / sweep.union if sweep.union else 0.0,
        "val_images": len(pairs),
    }


def _history_csv(history: list[dict]) -> bytes:
    if not history:
        return b""
    buf = io.StringIO()
    # Rows of a run resumed from before a column existed leave it empty.
    writer = csv.DictWriter(buf, fieldnames=list(HISTORY_COLUMNS), restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue().encode()


def loss_plot_png(history: list[dict]) -> bytes:
    """A PNG of training and validation loss and validation F1 per epoch (Pillow only)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    w, h, pad = 640, 360, 40
    img = PILImage.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([pad, pad, w - pad, h - pad], outline="black")
    if history:
        epochs = [r["epoch"] for r in history]
        losses = [v for r in history for v in (r["loss"], r["val_loss"]) if v is not None and math.isfinite(v)]
        lo, hi = (min(losses), max(losses)) if losses else (0, 1)
        hi = hi if hi > lo else lo + 1

        def xy(e, v, vmin, vmax):
            x = pad + (w - 2 * pad) * ((e - epochs[0]) / max(epochs[-1] - epochs[0], 1))
            return x, h - pad - (h - 2 * pad) * (v - vmin) / (vmax - vmin)

        for key, colour, vmin, vmax in (("loss", "blue", lo, hi), ("val_loss", "orange", lo, hi),
                                        ("val_f1", "green", 0.0, 1.0)):
            pts = [xy(r["epoch"], r[key], vmin, vmax) for r in history if r.get(key) is not None]
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=2)
            elif pts:
                draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=colour)
        draw.text((pad, 10), f"loss (blue), validation loss (orange): {lo:.4g}..{hi:.4g};  "
                             "validation F1 (green): 0..1", fill="black")
        draw.text((pad, h - pad + 8), f"epoch {epochs[0]} .. {epochs[-1]}", fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def train(
    config: TrainingConfig,
    dataset: DatasetSpec,
    out: Path | str,
    *,
    callback: EventFn | None = None,
    cancel: CancelToken | None = None,
    resume: bool = False,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
) -> Bundle:
    """Train a model on ``dataset`` and save the best epoch as a bundle at ``out``.

    ``callback`` gets the run's events (:mod:`cerber_model.training.events`): Inspected,
    BatchDone after every batch, EpochDone after every validated epoch, Stopped, Saved.
    Raises :class:`TrainingError` for unusable data, and before reading any for an output it must not
    write (see :func:`check_output`): nothing of the user's is replaced or deleted. ``resume``
    continues the run checkpointed in ``<out>.work`` (or starts afresh when there is none).
    """
    out = Path(out)
    work = work_folder(out)
    emit = callback or (lambda event: None)
    checkpoint = check_output(out, overwrite=overwrite, resume=resume)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    report = inspect_dataset(dataset, cancel=cancel)
    emit(Inspected(report.summary(), report.ok))
    if not report.ok:
        raise TrainingError("the data set has problems, so training did not start:\n" + report.summary())
    config = replace(config, steps_per_epoch=config.steps_for(report.train_pixels))

    history: list[dict] = []
    start_epoch = 0
    keras.utils.set_random_seed(config.seed)
    if checkpoint is not None:
        if not config.continues(checkpoint.config):
            raise TrainingError(f"{work} holds a run with other settings; start a new run (without resume) "
                                "or use the same settings.")
        from ..nn import fused_keras  # noqa: F401  (registers the fused layer for loading)

        model = keras.models.load_model(checkpoint.last, compile=True)
        model.jit_compile = config.xla
        history = checkpoint.history
        start_epoch = len(history)
    else:
        # A start model that cannot be used is refused before the old checkpoints are cleared.
        start = _start_weights(config) if config.start_from else None
        _clear_work(work)
        if config.fused:
            from ..nn.fused_keras import build_fused as build
        else:
            from ..nn.keras_graph import build_cerber as build
        model = build(NetworkConfig(width=config.width, seed=config.seed))
        if start is not None:
            from ..nn.keras_graph import set_weights

            set_weights(model, start)
        loss = keras.losses.BinaryFocalCrossentropy(
            gamma=config.focal_gamma, apply_class_balancing=config.class_balancing, alpha=config.focal_alpha)
        model.compile(optimizer=keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay),
                      loss=loss, jit_compile=config.xla)

    train_sampler = PatchSampler(report.train, config.normalization, config.patch_size, config.track_bias,
                                 config.augmentation, point_radius=report.point_radius)
    val_sampler = PatchSampler(report.val, config.normalization, config.patch_size, config.track_bias, None,
                               point_radius=report.point_radius)
    train_data = _patch_batches(train_sampler, config.batch_size, config.steps_per_epoch, config.seed, True)
    train_data.epoch = start_epoch
    val_data = _patch_batches(val_sampler, config.batch_size, max(1, config.val_patches // config.batch_size),
                              config.seed + 1, False)
    callbacks = prepare_callbacks(config, work, history, validate=lambda m: validate_objects(m, report, config),
                                  patches=train_data, emit=emit, cancel=cancel,
                                  best_file=checkpoint.best.name if checkpoint else None)
    if start_epoch < config.epochs:
        model.fit(train_data, validation_data=val_data, epochs=config.epochs, initial_epoch=start_epoch,
                  callbacks=[keras_callback(callbacks)], verbose=0)
    stopped = stop_reason(callbacks)
    emit(Stopped(stopped))
    saved = read_checkpoint(work)  # the best epoch is the one the run's state names
    if saved is None:
        raise TrainingError("training stopped before the first epoch finished; no model was saved.")
    with np.load(saved.best) as npz:
        threshold = float(npz["threshold"])
        # Checkpoints from before the smallest contrast was chosen keep every track.
        min_contrast = float(npz["min_contrast"]) if "min_contrast" in npz.files else 0.0
        weights = {k: npz[k] for k in npz.files if k not in ("threshold", "min_contrast")}
    best = max(history, key=lambda r: r["val_f1"])
    bundle_config = BundleConfig(
        network=NetworkConfig(width=config.width, seed=config.seed),
        normalization=config.normalization,
        threshold=threshold,
        min_area_px=config.min_area_px,
        min_contrast=min_contrast,
        name=out.name,
        provenance={"training": config.to_dict(), "epochs_run": len(history), "best_epoch": best["epoch"],
                    "train_pairs": len(report.train), "val_pairs": len(report.val),
                    "data": str(dataset.train_images), "stopped": stopped, **(provenance or {})},
        metrics={k: round(float(best[k]), 4) for k in ("val_f1", "val_precision", "val_recall", "val_pixel_iou")}
        | {"match_radius_px": config.match_radius},
    )
    bundle = make_bundle(bundle_config, weights)
    save_bundle(bundle, out, overwrite=True, extra_files={HISTORY_FILE: _history_csv(history),
                                                          LOSS_PLOT_FILE: loss_plot_png(history)})
    emit(Saved(str(out)))
    return bundle
