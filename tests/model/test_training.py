"""Training end to end on a tiny synthetic set (slow: real Keras training)."""

import json

import numpy as np
import pytest

from cerber_model.runtime.bundle import load_bundle
from cerber_model.runtime.datasets import DatasetSpec
from cerber_model.runtime.evaluation import CONTRASTS
from cerber_model.runtime.progress import CancelToken
from cerber_model.runtime.synthesis import Recipe, generate_dataset
from cerber_model.training import TrainingConfig, TrainingError, train
from cerber_model.training.events import BatchDone, EpochDone, Inspected, Saved

pytestmark = pytest.mark.slow

TINY = TrainingConfig(width=1, epochs=2, steps_per_epoch=3, patch_size=32, batch_size=2, val_patches=4,
                      val_images=2, patience=0, min_area_px=1)
# XLA compiles the training step once per run (tens of seconds); the tests of the run's
# mechanics train without it. The first test and the resumed run below use it.
PLAIN = TrainingConfig(**{**TINY.__dict__, "xla": False})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    recipe = Recipe(height=64, width=64, tracks=(2, 4), snr=(3, 5), track_sd=(1.5, 2.5),
                    inhomogeneity_sd=(10, 30), vignette_sd=(40, 60))
    return generate_dataset(tmp_path_factory.mktemp("d") / "data", 8, seed=1, recipe=recipe,
                            val_fraction=0.25, workers=1)


def test_train_emits_events_and_saves_a_bundle(data, tmp_path):
    events = []
    bundle = train(TINY, DatasetSpec.from_folder(data), tmp_path / "model", callback=events.append)
    kinds = [type(e) for e in events]
    assert kinds[0] is Inspected and kinds[-1] is Saved
    assert kinds.count(EpochDone) == 2 and kinds.count(BatchDone) == 6
    epoch = next(e for e in events if isinstance(e, EpochDone))
    for key in ("loss", "val_loss", "val_f1", "val_precision", "val_recall", "val_threshold", "val_min_contrast",
                "val_pixel_iou"):
        assert np.isfinite(getattr(epoch, key)), key
    loaded = load_bundle(tmp_path / "model")
    assert loaded.config.threshold == bundle.config.threshold
    # The smallest contrast is the best epoch's, chosen with its threshold.
    best = max((e for e in events if isinstance(e, EpochDone)), key=lambda e: e.val_f1)
    assert loaded.config.min_contrast == best.val_min_contrast in CONTRASTS
    assert loaded.config.provenance["training"]["width"] == 1
    assert "val_f1" in loaded.config.metrics
    history = (tmp_path / "model" / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,loss,val_loss") and len(history) == 3
    assert (tmp_path / "model" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_continues_from_the_last_epoch(data, tmp_path):
    spec = DatasetSpec.from_folder(data)
    out = tmp_path / "model"
    train(PLAIN, spec, out)
    wider = TrainingConfig(**{**PLAIN.__dict__, "width": 2})
    with pytest.raises(TrainingError, match="other settings"):
        train(wider, spec, out, resume=True, overwrite=True)
    events = []
    train(PLAIN, spec, out, resume=True, overwrite=True, callback=events.append)
    assert not any(isinstance(e, BatchDone) for e in events)  # nothing left to do
    longer = TrainingConfig(**{**TINY.__dict__, "epochs": 3})  # and with XLA: only the speed changes
    events = []
    train(longer, spec, out, resume=True, overwrite=True, callback=events.append)
    assert [e.epoch for e in events if isinstance(e, EpochDone)] == [3]  # only the new epoch ran
    state = json.loads((out.with_name("model.work") / "state.json").read_text())
    assert [r["epoch"] for r in state["history"]] == [1, 2, 3]


def test_cancel_stops_within_a_batch_and_keeps_the_best(data, tmp_path):
    token = CancelToken()
    batches = []

    def on_event(event):
        if isinstance(event, BatchDone):
            batches.append(event)
            if event.epoch == 2 and event.batch == 1:
                token.cancel()

    train(PLAIN, DatasetSpec.from_folder(data), tmp_path / "model", callback=on_event, cancel=token)
    assert len(batches) == 4  # 3 in epoch 1, then one batch of epoch 2
    assert load_bundle(tmp_path / "model").config.provenance["stopped"] == "cancelled"


def test_bad_data_refuses_to_start(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "masks").mkdir(parents=True)
    with pytest.raises(TrainingError, match="holds no BMP, PNG or TIFF"):
        train(TINY, DatasetSpec.from_folder(tmp_path), tmp_path / "model")


def test_same_seed_same_data_same_model(data, tmp_path):
    # With XLA (the default) the compiled step is bit-for-bit repeatable; TensorFlow's own CPU
    # kernels (--no-xla) differ in the last bits from run to run (measured: 1e-5 relative).
    spec = DatasetSpec.from_folder(data)
    first = train(TINY, spec, tmp_path / "a")
    second = train(TINY, spec, tmp_path / "b")
    assert first.weights.keys() == second.weights.keys()
    for name in first.weights:
        np.testing.assert_array_equal(first.weights[name], second.weights[name], err_msg=name)
    assert first.config.threshold == second.config.threshold


def test_start_from_a_model_fine_tunes_its_weights(data, tmp_path):
    """Training can start from a saved model's weights (same width); another width is refused."""
    spec = DatasetSpec.from_folder(data)
    first = train(PLAIN, spec, tmp_path / "first")
    # A learning rate of ~0: the weights stay where they started, so they must be the first model's.
    config = TrainingConfig(**{**PLAIN.__dict__, "epochs": 1, "learning_rate": 1e-9, "weight_decay": 0.0,
                               "seed": 123, "start_from": str(tmp_path / "first")})
    tuned = train(config, spec, tmp_path / "tuned")
    kernels = [k for k in first.weights if k.endswith("/kernel")]
    assert all(np.allclose(tuned.weights[k], first.weights[k], atol=1e-6) for k in kernels)
    # Fresh weights (seed 123) would be far from the first model's.
    from cerber_model.runtime.architecture import NetworkConfig, init_weights

    fresh = init_weights(NetworkConfig(width=1, seed=123))
    assert not np.allclose(fresh["c1_conv1_x/kernel"], first.weights["c1_conv1_x/kernel"], atol=1e-3)
    assert load_bundle(tmp_path / "tuned").config.provenance["training"]["start_from"] == str(tmp_path / "first")
    with pytest.raises(TrainingError, match="width-1 model; set the width to 1"):
        train(TrainingConfig(**{**config.__dict__, "width": 2}), spec, tmp_path / "wide")
