"""The steps around Keras' fit, each with a stand-in model: fast, no TensorFlow."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image as PILImage

from cerber_model.runtime.datasets import DatasetSpec, inspect_dataset
from cerber_model.runtime.progress import CancelToken
from cerber_model.training import BatchDone, EpochDone, TrainingConfig, loop
from cerber_model.training.callbacks import (
    BEST_FILE,
    HISTORY_COLUMNS,
    LAST_FILE,
    STATE_FILE,
    BestCheckpoint,
    CancelOnRequest,
    EarlyStopping,
    EpochPatches,
    History,
    LastCheckpoint,
    ObjectValidation,
    ProgressReport,
    prepare_callbacks,
    stop_reason,
    validated,
)


def _blobs(shape, centres, sd=1.5):
    rr, cc = np.indices(shape)
    return sum(np.exp(-0.5 * ((rr - r) ** 2 + (cc - c) ** 2) / sd**2) for r, c in centres)


def _write_pair(root, name, shown, true):
    """An image showing spots at ``shown`` and a mask marking the tracks at ``true``."""
    for kind, data in (("images", np.clip(_blobs((64, 64), shown), 0, 1) * 255),
                       ("masks", (_blobs((64, 64), true) > 0.5) * 255)):
        (root / kind).mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(data.astype(np.uint8)).save(root / kind / f"{name}.png")


class ImageAsProbability:
    """An engine whose probability map is the (normalised) image itself."""

    name = "identity"

    def predict(self, x):
        return np.clip(x, 0, 1).astype(np.float32)


def test_validation_sums_matches_over_images(tmp_path, monkeypatch):
    """F1, precision and recall count matches over all validation images together (not a mean of
    per-image scores): 3 found + 1 false in one image, 1 of 2 found in the other is P = R = F1 = 4/5."""
    a = [(16, 16), (16, 44), (44, 30)]
    _write_pair(tmp_path / "val", "a", shown=[*a, (50, 50)], true=a)
    _write_pair(tmp_path / "val", "b", shown=[(20, 20)], true=[(20, 20), (44, 44)])
    _write_pair(tmp_path / "train", "a", shown=a, true=a)
    report = inspect_dataset(DatasetSpec.from_folder(tmp_path))
    assert report.ok, report.summary()
    monkeypatch.setattr(loop, "_shipping_engine", lambda model, config: ImageAsProbability())
    metrics = loop.validate_objects(None, report, TrainingConfig(min_area_px=1))
    assert metrics["val_images"] == 2
    assert (metrics["precision"], metrics["recall"]) == (0.8, 0.8)
    assert abs(metrics["f1"] - 0.8) < 1e-12
    assert metrics["threshold"] == 0.5  # F1 is the same over a range of thresholds: the one nearest 0.5
    assert 0 < metrics["pixel_iou"] < 1


# --- the callbacks, each with a stand-in model ---------------------------------------------------

class FakeVariable:
    def __init__(self, path, value):
        self.path, self.value = path, value

    def numpy(self):
        return self.value


class FakeModel:
    """What the callbacks use of a Keras model: stop_training, weights, save."""

    def __init__(self, value=0.0):
        self.stop_training = False
        self.value = value  # stands for the weights: "trained" models differ in it
        self.saves = []

    @property
    def weights(self):
        return [FakeVariable("head_out/bias", np.array([self.value], np.float32))]

    def save(self, path):
        self.saves.append(Path(path).name)
        Path(path).write_text(str(self.value))


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def attach(callback, model=None):
    callback.set_model(model or FakeModel())
    return callback


def scores(f1, threshold=0.5, contrast=0.0):
    return {"loss": 0.2, "val_loss": 0.3, "val_f1": f1, "val_precision": 0.9, "val_recall": 0.8,
            "val_threshold": threshold, "val_min_contrast": contrast, "val_pixel_iou": 0.6}


def test_epoch_patches_tells_the_patch_stream_its_epoch():
    patches = SimpleNamespace(epoch=0)
    attach(EpochPatches(patches)).on_epoch_begin(4)
    assert patches.epoch == 4


def test_object_validation_adds_the_scores_to_the_logs():
    calls = []

    def validate(model):
        calls.append(model)
        return {"f1": 0.7, "precision": 0.8, "recall": 0.6, "threshold": 0.45, "min_contrast": 4.0, "pixel_iou": 0.5,
                "val_images": 2}

    model = FakeModel()
    callback = attach(ObjectValidation(validate), model)
    logs = {"loss": 0.1}
    callback.on_epoch_end(0, logs)
    assert calls == [model]
    assert logs == {"loss": 0.1, "val_f1": 0.7, "val_precision": 0.8, "val_recall": 0.6, "val_threshold": 0.45,
                    "val_min_contrast": 4.0, "val_pixel_iou": 0.5}


def test_an_epoch_cut_short_is_not_validated():
    model = FakeModel()
    model.stop_training = True  # cancelled during the epoch's batches
    callback = attach(ObjectValidation(lambda m: pytest.fail("validated a cut-short epoch")), model)
    logs = {"loss": 0.1}
    callback.on_epoch_end(0, logs)
    assert not validated(logs)


def test_history_records_validated_epochs_with_their_time():
    clock = Clock()
    rows = [{"epoch": 1, "val_f1": 0.5}]  # resumed after one epoch
    history = attach(History(rows, clock))
    history.on_epoch_begin(1)
    clock.now = 12.5
    logs = scores(0.6)
    history.on_epoch_end(1, logs)
    assert rows[-1] == {"epoch": 2, **scores(0.6), "seconds": 12.5}
    assert list(rows[-1]) == list(HISTORY_COLUMNS)
    history.on_epoch_end(2, {"loss": 0.1})  # cut short: not validated, not recorded
    assert len(rows) == 2


def test_best_checkpoint_keeps_the_best_epoch_and_its_threshold(tmp_path):
    model = FakeModel(1.0)
    best = attach(BestCheckpoint(tmp_path), model)
    for epoch, (f1, value) in enumerate(((0.5, 1.0), (0.7, 2.0), (0.6, 3.0))):
        model.value = value
        logs = scores(f1, threshold=0.3 + epoch / 10, contrast=epoch + 3.0)
        best.on_epoch_end(epoch, logs)
        assert logs["best_f1"] == max(0.5, f1 if epoch < 2 else 0.7)
        assert logs["best_file"] == ("best-0001.npz" if epoch == 0 else "best-0002.npz")
    with np.load(tmp_path / "best-0002.npz") as saved:
        assert float(saved["head_out/bias"][0]) == 2.0 and np.isclose(saved["threshold"], 0.4)
        assert saved["min_contrast"] == 4.0
    # The earlier best stays until the run's state no longer names it (LastCheckpoint deletes it).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-0001.npz", "best-0002.npz"]


def test_best_checkpoint_resumes_from_the_best_so_far(tmp_path):
    best = attach(BestCheckpoint(tmp_path, history=[{"val_f1": 0.8}, {"val_f1": 0.6}], name="best-0001.npz"))
    logs = scores(0.7)
    best.on_epoch_end(2, logs)
    assert (logs["best_f1"], logs["best_file"]) == (0.8, "best-0001.npz") and not any(tmp_path.iterdir())


def test_last_checkpoint_saves_model_and_state_that_resume_reads(tmp_path):
    config = TrainingConfig(width=1, epochs=3)
    history = [{"epoch": 1, "val_f1": 0.5}]
    model = FakeModel(7.0)
    (tmp_path / "best-0001.npz").write_bytes(b"")
    last = attach(LastCheckpoint(tmp_path, config, history), model)
    last.on_epoch_end(0, scores(0.5) | {"best_file": "best-0001.npz"})
    assert model.saves == [".last-0001.tmp.keras"] and (tmp_path / "last-0001.keras").read_text() == "7.0"
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["history"] == history
    assert (state["last"], state["best"]) == ("last-0001.keras", "best-0001.npz")
    assert TrainingConfig(width=1, epochs=10).continues(TrainingConfig.from_dict(state["config"]))
    last.on_epoch_end(1, {"loss": 0.1})  # cut short: the checkpoint keeps the epoch before
    assert model.saves == [".last-0001.tmp.keras"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-0001.npz", "last-0001.keras", "state.json"]


def test_progress_reports_batches_with_the_time_left_and_validated_epochs():
    events, clock = [], Clock()
    progress = attach(ProgressReport(events.append, epochs=2, batches=4, clock=clock))
    progress.on_epoch_begin(0)
    clock.now = 3.0
    progress.on_train_batch_end(0, {"loss": 0.25})
    # 3 s per batch; 3 batches left in this epoch and 4 in the next
    assert events == [BatchDone(epoch=1, epochs=2, batch=1, batches=4, loss=0.25, eta_s=21.0)]
    progress.on_epoch_end(0, {**scores(0.6), "seconds": 14.0, "best_f1": 0.6})
    assert events[-1] == EpochDone(epoch=1, **scores(0.6), seconds=14.0, best_f1=0.6)
    progress.on_epoch_end(1, {"loss": 0.1})  # cut short: nothing to report
    assert len(events) == 2


def test_cancel_stops_after_the_batch_in_which_it_came():
    token = CancelToken()
    model = FakeModel()
    cancel = attach(CancelOnRequest(token), model)
    cancel.on_train_batch_end(0, {})
    assert not model.stop_training and not cancel.cancelled
    token.cancel()
    cancel.on_train_batch_end(1, {})
    assert model.stop_training and cancel.cancelled
    attach(CancelOnRequest(None)).on_train_batch_end(0, {})  # no token: nothing to check


def test_early_stopping_after_patience_epochs_without_a_better_f1():
    model = FakeModel()
    stopping = attach(EarlyStopping(patience=2), model)
    for epoch, f1 in enumerate((0.5, 0.7, 0.7, 0.65)):
        assert not model.stop_training
        stopping.on_epoch_end(epoch, scores(f1))
    assert model.stop_training and stopping.reason == "no better validation F1 for 2 epochs"


def test_early_stopping_off_and_resumed():
    model = FakeModel()
    never = attach(EarlyStopping(patience=0), model)
    for epoch in range(20):
        never.on_epoch_end(epoch, scores(0.5))
    assert not model.stop_training and never.reason is None
    # Resumed one epoch after the best: one more without a better F1 reaches a patience of 2.
    resumed = attach(EarlyStopping(patience=2, history=[{"val_f1": 0.5}, {"val_f1": 0.9}, {"val_f1": 0.8}]))
    resumed.on_epoch_end(3, scores(0.85))
    assert resumed.model.stop_training
    cut_short = attach(EarlyStopping(patience=1, history=[{"val_f1": 0.9}, {"val_f1": 0.8}]))
    cut_short.on_epoch_end(2, {"loss": 0.1})  # not validated: not counted
    assert not cut_short.model.stop_training


# --- the callbacks together, as train() wires them, in a loop that calls them as Keras' fit does ---

def fit(model, callbacks, epochs, batches, initial_epoch=0):
    """Keras' fit loop (keras/src/backend/tensorflow/trainer.py) without the training."""
    for callback in callbacks:
        callback.set_model(model)
    for epoch in range(initial_epoch, epochs):
        for callback in callbacks:
            callback.on_epoch_begin(epoch)
        for batch in range(batches):
            model.value += 1  # a training step
            logs = {"loss": 1.0 / model.value}
            for callback in callbacks:
                callback.on_train_batch_end(batch, logs)
            if model.stop_training:
                break
        logs = {"loss": 1.0 / model.value, "val_loss": 2.0 / model.value}
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            break


def run(tmp_path, config, f1s, on_event=None, cancel=None, history=None, initial_epoch=0):
    events = []

    def emit(event):
        events.append(event)
        if on_event:
            on_event(event)

    scores_by_epoch = iter(f1s)

    def validate(model):
        return {"f1": next(scores_by_epoch), "precision": 1.0, "recall": 1.0, "threshold": 0.5, "min_contrast": 0.0,
                "pixel_iou": 0.5}

    history = [] if history is None else history
    callbacks = prepare_callbacks(config, tmp_path, history, validate=validate, patches=SimpleNamespace(epoch=0),
                                  emit=emit, cancel=cancel)
    fit(FakeModel(), callbacks, config.epochs, config.steps_per_epoch, initial_epoch)
    return events, history, stop_reason(callbacks)


def test_a_run_stops_early_and_keeps_the_best_epoch(tmp_path):
    config = TrainingConfig(epochs=10, steps_per_epoch=3, patience=2)
    events, history, reason = run(tmp_path, config, [0.5, 0.8, 0.7, 0.75, 0.9])
    assert reason == "no better validation F1 for 2 epochs"
    assert [e.epoch for e in events if isinstance(e, EpochDone)] == [1, 2, 3, 4]
    assert [e.best_f1 for e in events if isinstance(e, EpochDone)] == [0.5, 0.8, 0.8, 0.8]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["history"] == history and (state["best"], state["last"]) == ("best-0002.npz", "last-0004.keras")
    with np.load(tmp_path / state["best"]) as best:
        assert float(best["head_out/bias"][0]) == 6  # after epoch 2's three steps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-0002.npz", "last-0004.keras", "state.json"]


def test_a_cancelled_run_stops_within_the_batch_and_keeps_the_last_whole_epoch(tmp_path):
    token = CancelToken()

    def on_event(event):
        if isinstance(event, BatchDone) and (event.epoch, event.batch) == (2, 1):
            token.cancel()

    config = TrainingConfig(epochs=5, steps_per_epoch=3, patience=0)
    events, history, reason = run(tmp_path, config, [0.5, 0.9], on_event=on_event, cancel=token)
    assert reason == "cancelled"
    assert sum(isinstance(e, BatchDone) for e in events) == 4  # 3 in epoch 1, then the one that saw the cancel
    assert [e.epoch for e in events if isinstance(e, EpochDone)] == [1] and len(history) == 1
    assert json.loads((tmp_path / STATE_FILE).read_text())["history"] == history
    assert (tmp_path / "last-0001.keras").read_text() == "3.0"  # the model after epoch 1


def test_a_resumed_run_goes_on_from_its_history(tmp_path):
    config = TrainingConfig(epochs=4, steps_per_epoch=2, patience=3)
    _, history, _ = run(tmp_path, TrainingConfig(**{**config.__dict__, "epochs": 2}), [0.6, 0.5])
    events, history, reason = run(tmp_path, config, [0.55, 0.7], history=history, initial_epoch=2)
    assert reason == "finished"
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert [e.best_f1 for e in events if isinstance(e, EpochDone)] == [0.6, 0.7]


# --- checkpoints a crash cannot make inconsistent ----------------------------------------------

class CrashingModel(FakeModel):
    """Dies (as the process would in a power cut) while saving the model after ``epochs`` epochs."""

    def __init__(self, epochs, steps):
        super().__init__()
        self.crash_at = epochs * steps

    def save(self, path):
        if self.value >= self.crash_at:
            raise SystemExit("power cut")
        super().save(path)


def validator(f1s):
    f1s = iter(f1s)
    return lambda model: {"f1": next(f1s), "precision": 1.0, "recall": 1.0, "threshold": 0.5, "min_contrast": 0.0,
                "pixel_iou": 0.5}


def test_a_crash_between_the_checkpoints_leaves_those_of_the_epoch_before(tmp_path):
    """Epoch 3 is the best so far; its weights are written, then the run dies before its model and
    state are. Resume must keep epoch 2 as the best (the state's history says so), not the weights
    of the epoch it knows nothing of, and a worse epoch 3 run again must not replace them."""
    from cerber_model.training.loop import read_checkpoint

    config = TrainingConfig(epochs=5, steps_per_epoch=3, patience=0)
    callbacks = prepare_callbacks(config, tmp_path, [], validate=validator([0.5, 0.8, 0.9]),
                                  patches=SimpleNamespace(epoch=0), emit=lambda e: None, cancel=None)
    with pytest.raises(SystemExit):
        fit(CrashingModel(epochs=3, steps=3), callbacks, config.epochs, config.steps_per_epoch)
    checkpoint = read_checkpoint(tmp_path)
    assert [row["epoch"] for row in checkpoint.history] == [1, 2]
    assert (checkpoint.best.name, checkpoint.last.name) == ("best-0002.npz", "last-0002.keras")
    with np.load(checkpoint.best) as best:
        assert float(best["head_out/bias"][0]) == 6  # epoch 2's weights, not the crashed epoch 3's (9)

    callbacks = prepare_callbacks(config, tmp_path, checkpoint.history, validate=validator([0.6, 0.7, 0.75]),
                                  patches=SimpleNamespace(epoch=0), emit=lambda e: None, cancel=None,
                                  best_file=checkpoint.best.name)
    model = FakeModel(float(checkpoint.last.read_text()))
    fit(model, callbacks, config.epochs, config.steps_per_epoch, initial_epoch=2)
    checkpoint = read_checkpoint(tmp_path)
    assert [row["epoch"] for row in checkpoint.history] == [1, 2, 3, 4, 5]
    with np.load(checkpoint.best) as best:
        assert float(best["head_out/bias"][0]) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-0002.npz", "last-0005.keras", "state.json"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names open files through /proc (Linux)")
def test_each_checkpoint_is_on_disk_before_the_state_that_names_it(tmp_path, monkeypatch):
    """The state is renamed into place last, after the files it names were flushed to disk, and the
    folder is flushed after it (so the renames survive a power cut)."""
    import os

    log = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: log.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda src, dst: log.append(("replace", Path(dst).name))
                        or real_replace(src, dst))
    config = TrainingConfig(epochs=1, steps_per_epoch=2, patience=0)
    callbacks = prepare_callbacks(config, tmp_path, [], validate=validator([0.5]), patches=SimpleNamespace(epoch=0),
                                  emit=lambda e: None, cancel=None)
    fit(FakeModel(), callbacks, 1, 2)
    state = log.index(("replace", "state.json"))
    for name in ("best-0001.npz", "last-0001.keras"):
        written = log.index(("replace", name))
        assert log[written - 1][0] == "fsync" and written < state, log
    assert log[state - 1][0] == "fsync" and log[state + 1] == ("fsync", tmp_path.name), log


def test_a_run_checkpointed_by_the_previous_version_resumes_onto_the_new_names(tmp_path):
    """Runs started before the state named its files kept them as best.npz and last.keras."""
    from cerber_model.training.loop import read_checkpoint

    config = TrainingConfig(epochs=3, steps_per_epoch=2, patience=0)
    history = [{"epoch": 1, "val_f1": 0.7}]
    (tmp_path / STATE_FILE).write_text(json.dumps({"config": config.to_dict(), "history": history}))
    (tmp_path / LAST_FILE).write_text("2.0")
    np.savez(tmp_path / BEST_FILE, threshold=np.float32(0.5), **{"head_out/bias": np.array([2.0], np.float32)})
    (tmp_path / ".best.tmp.npz").write_bytes(b"cut off")
    checkpoint = read_checkpoint(tmp_path)
    assert (checkpoint.last.name, checkpoint.best.name) == (LAST_FILE, BEST_FILE)
    callbacks = prepare_callbacks(config, tmp_path, checkpoint.history, validate=validator([0.6, 0.8]),
                                  patches=SimpleNamespace(epoch=0), emit=lambda e: None, cancel=None,
                                  best_file=checkpoint.best.name)
    fit(FakeModel(2.0), callbacks, 2, 2, initial_epoch=1)  # epoch 2: worse; the old best stays named
    assert read_checkpoint(tmp_path).best.name == BEST_FILE
    fit(FakeModel(4.0), callbacks, 3, 2, initial_epoch=2)  # epoch 3: better
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-0003.npz", "last-0003.keras", "state.json"]


@pytest.mark.parametrize("names, problem", [({"last": "../elsewhere.keras"}, "names '../elsewhere.keras'"),
                                            ({"last": "last-0009.keras"}, "last-0009.keras, a checkpoint that")])
def test_resume_trusts_only_the_files_the_state_names(tmp_path, names, problem):
    from cerber_model.training import TrainingError
    from cerber_model.training.loop import read_checkpoint

    state = {"config": TrainingConfig().to_dict(), "history": [{"epoch": 1, "val_f1": 0.5}], "best": "best-0001.npz"}
    (tmp_path / STATE_FILE).write_text(json.dumps(state | names))
    (tmp_path / "best-0001.npz").write_bytes(b"")
    (tmp_path / "last-0001.keras").write_bytes(b"")
    with pytest.raises(TrainingError, match=re.escape(problem) + ".*start afresh without --resume"):
        read_checkpoint(tmp_path)


def test_a_run_stopped_by_a_signal_says_it_was_interrupted(tmp_path):
    token = CancelToken()

    def on_event(event):
        if isinstance(event, BatchDone) and (event.epoch, event.batch) == (2, 1):
            token.cancel("interrupted")  # what cerber train does on Ctrl+C or SIGTERM
            token.cancel()  # the first reason stays

    config = TrainingConfig(epochs=5, steps_per_epoch=3, patience=0)
    _, history, reason = run(tmp_path, config, [0.5], on_event=on_event, cancel=token)
    assert reason == "interrupted" and len(history) == 1
