"""Training settings without training (fast, no TensorFlow)."""

import json
import re
from dataclasses import replace

import pytest

from cerber_model.runtime.bundle import default_bundle_path, load_bundle
from cerber_model.runtime.images import Normalization
from cerber_model.runtime.synthesis import Recipe, named_recipe
from cerber_model.training import TrainingConfig, TrainingError, estimate_cost

# How a run's .work/state.json and a bundle's provenance stored the settings before the renames.
OLD_STATE_CONFIG = {
    "width": 1, "epochs": 4, "steps_per_epoch": 3, "patch": 32, "batch": 2, "learning_rate": 0.003,
    "weight_decay": 0.001, "focal_gamma": 3.5, "class_balancing": False, "focal_alpha": 0.25, "track_bias": 0.7,
    "val_patches": 4, "val_images": 2, "match_radius": 3.0, "min_area_px": 1, "early_stopping": 0, "seed": 777,
    "xla": True, "fused": True, "start_from": "",
    "augmentation": {"flips": True, "small_rotation_deg": 0.0, "scale": [1.0, 1.0], "brightness": 0.1,
                     "contrast": [0.8, 1.25], "gamma": [0.8, 1.25], "noise_sd": 0.03},
    "normalization": {"method": "percentile", "low": 1.0, "high": 99.8},
}


def test_settings_round_trip_through_json():
    config = TrainingConfig(width=3, patch_size=64, batch_size=4, patience=5, start_from="somewhere")
    assert TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_old_setting_names_load_under_the_new_ones():
    config = TrainingConfig.from_dict(OLD_STATE_CONFIG)
    assert (config.patch_size, config.batch_size, config.patience) == (32, 2, 0)
    assert "patch" not in config.to_dict() and "early_stopping" not in config.to_dict()


def test_a_run_started_under_the_old_names_can_be_resumed():
    new = TrainingConfig(width=1, epochs=6, steps_per_epoch=3, patch_size=32, batch_size=2, val_patches=4,
                         val_images=2, patience=0, min_area_px=1, xla=False)
    assert new.continues(TrainingConfig.from_dict(OLD_STATE_CONFIG))  # more epochs, without XLA: allowed
    assert not TrainingConfig(**{**new.__dict__, "batch_size": 4}).continues(TrainingConfig.from_dict(OLD_STATE_CONFIG))


def test_the_bundled_models_provenance_loads():
    """v1 was trained before the renames; its settings (and its first stage's, which predate the
    fused graph and fine-tuning) still read as a config. The default's are its last stage's (from
    the synthetic model, on the annotated samples), the synthetic model's its second stage's, the clean
    network's its one stage from the synthetic model."""
    provenance = load_bundle(default_bundle_path().parent / "v1").config.provenance
    stage2 = TrainingConfig.from_dict(provenance["training"])
    assert (stage2.patch_size, stage2.batch_size, stage2.patience, stage2.seed) == (128, 8, 10, 778)
    stage1 = TrainingConfig.from_dict(provenance["start_model"]["training"])
    assert stage1.epochs == 25 and stage1.fused and stage1.start_from == ""
    default = TrainingConfig.from_dict(load_bundle(default_bundle_path()).config.provenance["training"])
    assert (default.epochs, default.seed, default.focal_gamma, default.normalization.block) == (6, 777, 1.0, 16)
    assert default.start_from == "cerber_model/models/synthetic"
    synthetic_model = load_bundle(default_bundle_path().parent / "synthetic")
    synthetic = TrainingConfig.from_dict(synthetic_model.config.provenance["training"])
    assert (synthetic.epochs, synthetic.seed, synthetic.focal_gamma, synthetic.normalization.block) == (5, 782, 1.0, 16)
    clean = TrainingConfig.from_dict(load_bundle(default_bundle_path().parent / "clean").config.provenance["training"])
    assert (clean.epochs, clean.seed, clean.start_from) == (5, 790, "cerber_model/models/synthetic")


def test_cli_takes_the_new_flags_and_the_old_ones():
    from cerber_model.cli import build_parser

    parse = build_parser().parse_args
    new = parse(["train", "data", "--out", "m", "--patch-size", "64", "--batch-size", "4", "--patience", "3"])
    old = parse(["train", "data", "--out", "m", "--patch", "64", "--batch", "4", "--early-stopping", "3"])
    for args in (new, old):
        assert (args.patch_size, args.batch_size, args.patience) == (64, 4, 3)


def test_cerber_train_without_flags_trains_the_config_defaults():
    """Every flag's default is TrainingConfig's, except the inputs: a fresh model learns on the
    default model's (TrainingConfig keeps the percentile normalisation for what was written before)."""
    from cerber_model.cli import build_parser, training_config
    from cerber_model.training import FRESH_NORMALIZATION

    def config(*flags):
        return training_config(build_parser().parse_args(["train", "data", "--out", "m", *flags]))

    assert config() == TrainingConfig(normalization=FRESH_NORMALIZATION)
    assert config("--normalization", "percentile") == TrainingConfig()
    assert config("--normalization", "percentile", "--no-xla") == TrainingConfig(xla=False)
    focal = config("--normalization", "percentile", "--focal-gamma", "1", "--focal-alpha", "0.5")
    assert focal == TrainingConfig(focal_gamma=1.0, focal_alpha=0.5)


def test_fine_tuning_keeps_the_start_models_inputs_and_loss_with_fewer_epochs_and_a_lower_rate():
    """--start-from default: the default model's normalisation and focal loss (gamma 1, alpha 0.5,
    as its provenance says), 3 epochs at 1e-3; every one of them can still be set."""
    from cerber_model.cli import build_parser, training_config
    from cerber_model.training.config import FINE_TUNE_EPOCHS, FINE_TUNE_LEARNING_RATE

    def config(*flags):
        return training_config(build_parser().parse_args(["train", "data", "--out", "m", *flags]))

    start = load_bundle(default_bundle_path()).config
    tuned = config("--start-from", "default")
    assert (tuned.epochs, tuned.learning_rate) == (FINE_TUNE_EPOCHS, FINE_TUNE_LEARNING_RATE) == (3, 1e-3)
    assert (tuned.focal_gamma, tuned.focal_alpha, tuned.normalization) == (1.0, 0.5, start.normalization)
    assert tuned.focal_gamma != TrainingConfig().focal_gamma  # not the fresh defaults
    told = config("--start-from", "default", "--epochs", "7", "--lr", "3e-3", "--focal-gamma", "2",
                  "--focal-alpha", "0.3", "--normalization", "percentile")
    assert (told.epochs, told.learning_rate, told.focal_gamma, told.focal_alpha) == (7, 3e-3, 2.0, 0.3)
    assert told.normalization == Normalization("percentile")
    v1 = config("--start-from", "v1")  # its own loss, recorded in its provenance
    v1_training = load_bundle(default_bundle_path().parent / "v1").config.provenance["training"]
    assert (v1.focal_gamma, v1.focal_alpha) == (v1_training["focal_gamma"], v1_training["focal_alpha"])


def test_cost_estimate_follows_width_patch_size_and_xla():
    base = TrainingConfig(width=4, patch_size=128, batch_size=8, steps_per_epoch=100, epochs=30)
    cost = estimate_cost(base)
    assert cost.seconds_total == 30 * cost.seconds_per_epoch
    # The peaks bench_training.py measured at width 4, batch 8, 128 px patches: 2.75 GiB with XLA, 1.66 without.
    assert abs(cost.peak_ram_gib - 2.75) < 0.1
    no_xla = estimate_cost(replace(base, xla=False))
    assert abs(no_xla.peak_ram_gib - 1.66) < 0.1
    assert no_xla.seconds_per_epoch == 2 * cost.seconds_per_epoch
    bigger = estimate_cost(replace(base, patch_size=256))  # four times the patch pixels
    assert bigger.seconds_per_epoch == 4 * cost.seconds_per_epoch and bigger.peak_ram_gib > 2 * cost.peak_ram_gib
    narrower = estimate_cost(replace(base, width=2))
    assert narrower.seconds_per_epoch < cost.seconds_per_epoch and narrower.peak_ram_gib < cost.peak_ram_gib
    wider = estimate_cost(replace(base, width=8))  # beyond the measured widths: slower still
    assert wider.seconds_per_epoch > cost.seconds_per_epoch and wider.peak_ram_gib > cost.peak_ram_gib


def test_cost_estimate_reads_for_people():
    short = estimate_cost(TrainingConfig(width=1, steps_per_epoch=2, patch_size=32, batch_size=2, epochs=1))
    assert short.summary().startswith("Estimate on a 2-core CPU: under a minute per epoch of training (0 min in all")
    long = estimate_cost(TrainingConfig(epochs=200))
    assert " h in all, plus validation), about " in long.summary() and long.summary().endswith(" GiB of RAM.")


def test_generate_with_the_named_training_recipe(tmp_path):
    """--recipe training is what make model spelt out before (--size 512 512 --tracks 10 30 --snr 0.7 5),
    and --size still changes it (the wizard's size)."""
    from cerber_model.cli import main

    assert main(["generate", str(tmp_path / "named"), "--count", "1", "--seed", "1", "--recipe", "training",
                 "--size", "64", "64", "--quiet"]) == 0
    assert main(["generate", str(tmp_path / "spelt"), "--count", "1", "--seed", "1", "--size", "64", "64",
                 "--tracks", "10", "30", "--snr", "0.7", "5", "--quiet"]) == 0
    named, spelt = (json.loads((tmp_path / d / "recipe.json").read_text()) for d in ("named", "spelt"))
    assert named == spelt and named["recipe"]["height"] == 64
    image = "train/images/synth_00000.png"
    assert (tmp_path / "named" / image).read_bytes() == (tmp_path / "spelt" / image).read_bytes()
    assert Recipe.from_dict({**named["recipe"], "height": 512, "width": 512}) == named_recipe("training")


def test_batches_per_epoch_follow_the_data_unless_set():
    """Left to the data, an epoch is about eight passes over the training pixels within 30-100
    batches: a few annotated images fine-tune in minutes, a large set gets full epochs."""
    config = TrainingConfig(batch_size=8, patch_size=128)
    patch_px = 8 * 128 * 128
    assert config.steps_for(None) == 100  # unknown data: the upper bound
    assert config.steps_for(10_000) == 30  # a crop of one image
    assert config.steps_for(5 * patch_px) == 40
    assert config.steps_for(240 * 512 * 512) == 100  # the default model's synthetic set
    assert TrainingConfig(steps_per_epoch=7).steps_for(10**9) == 7

    bound, small = estimate_cost(config), estimate_cost(config, 10_000)
    assert bound.at_most and "at most" in bound.summary()
    assert not small.at_most and small.seconds_per_epoch == pytest.approx(bound.seconds_per_epoch * 30 / 100)
    assert not estimate_cost(TrainingConfig(steps_per_epoch=50)).at_most


def test_the_data_report_counts_training_pixels_apart(tmp_path):
    from cerber_model.runtime.datasets import DatasetSpec, inspect_dataset
    from tests.model.test_datasets import _good

    _good(tmp_path)
    report = inspect_dataset(DatasetSpec.from_folder(tmp_path, val_fraction=0.4))
    assert report.train_pixels == 3 * 40 * 48 and report.total_pixels == 5 * 40 * 48


def test_the_background_normalisation_trains_with_augmentation_in_noise_units():
    """Its inputs are in noise SDs, so the 0..1 defaults (gamma, offsets of 0.1) give way to its own,
    however the config is made, and a run so configured resumes."""
    from cerber_model.runtime.datasets import Augmentation
    from cerber_model.runtime.images import Normalization

    background = Normalization("background")
    config = TrainingConfig(normalization=background)
    assert config.augmentation == Augmentation.for_normalization(background) != Augmentation()
    assert replace(TrainingConfig(), normalization=background).augmentation == config.augmentation
    mine = Augmentation(flips=False, gamma=(1, 1))
    assert TrainingConfig(normalization=background, augmentation=mine).augmentation == mine  # asked for: kept
    assert TrainingConfig().augmentation == Augmentation()  # percentile: as before
    stored = TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert stored == config and replace(config, epochs=50).continues(stored)


def test_cli_chooses_the_normalisation_and_fine_tuning_keeps_the_starting_models(tmp_path):
    from cerber_model.cli import build_parser, training_config
    from cerber_model.nn.bundling import make_bundle
    from cerber_model.runtime.bundle import BundleConfig, save_bundle
    from cerber_model.runtime.images import Normalization
    from tests.model.helpers import jittered_weights

    def method(*flags):
        return training_config(build_parser().parse_args(["train", "data", "--out", "m", *flags])).normalization.method

    assert method() == "background"  # the default model's
    assert method("--normalization", "percentile") == "percentile"
    assert method("--normalization", "background") == "background"
    bundle = BundleConfig(normalization=Normalization("background"), name="noise-units")
    save_bundle(make_bundle(bundle, jittered_weights(bundle.network)), tmp_path / "noise-units")
    assert method("--start-from", str(tmp_path / "noise-units")) == "background"
    assert method("--start-from", "default") == "background"
    assert method("--start-from", str(default_bundle_path().parent / "v1")) == "percentile"
    assert method("--start-from", str(tmp_path / "noise-units"), "--normalization", "percentile") == "percentile"

    def normalization(*flags):
        return training_config(build_parser().parse_args(["train", "data", "--out", "m", *flags])).normalization

    assert normalization() == normalization("--normalization", "background") == \
        Normalization("background", block=16, noise_scale=1.5)
    coarse = normalization("--normalization", "background", "--background-block", "32", "--noise-scale", "0")
    assert coarse == Normalization("background", block=32)
    with pytest.raises(ValueError, match="--background-block goes with the background normalisation: leave"):
        normalization("--normalization", "percentile", "--background-block", "32")  # percentile chosen on purpose
    with pytest.raises(ValueError, match="--background-block goes with the background normalisation: add"):
        normalization("--start-from", "v1", "--background-block", "32")
    noise_units = str(tmp_path / "noise-units")
    assert normalization("--start-from", noise_units) == Normalization("background", block=16)  # its own
    assert normalization("--start-from", noise_units, "--background-block", "24") == Normalization("background",
                                                                                                    block=24)
    with pytest.raises(ValueError, match="at least 8 px"):
        normalization("--normalization", "background", "--background-block", "4")
    assert normalization("--start-from", noise_units, "--noise-scale", "1.5") == Normalization("background",
                                                                                                noise_scale=1.5)
    with pytest.raises(ValueError, match="--noise-scale goes with the background normalisation"):
        normalization("--normalization", "percentile", "--noise-scale", "1.5")
    with pytest.raises(ValueError, match="noise scale must be between 0 and 8 px"):
        normalization("--normalization", "background", "--noise-scale", "-1")


@pytest.mark.parametrize("change, problem", [
    ({"patch_size": 130}, "the patch size must be a positive multiple of 4 px (got 130)"),
    ({"patch_size": 0}, "the patch size must be a positive multiple of 4 px (got 0)"),
    ({"width": 9}, "the network width must be 1 to 8 (got 9)"),
    ({"width": 0}, "the network width must be 1 to 8 (got 0)"),
    ({"epochs": 0}, "the number of epochs must be at least 1"),
    ({"batch_size": 0}, "the batch size must be at least 1"),
    ({"steps_per_epoch": -1}, "the batches per epoch must be 0 (from the data) or more"),
    ({"learning_rate": 0.0}, "the learning rate must be positive"),
    ({"learning_rate": float("nan")}, "the learning rate must be positive"),
    ({"patience": -1}, "the patience must be 0"),
    ({"seed": -5}, "the seed must be 0 or more"),
    ({"focal_alpha": 1.5}, "the focal alpha must be from 0 to 1"),
])
def test_settings_no_run_could_use_are_refused_when_made(change, problem):
    with pytest.raises(TrainingError, match="^invalid training settings: .*" + re.escape(problem)):
        TrainingConfig(**change)
    with pytest.raises(TrainingError, match=re.escape(problem)):
        replace(TrainingConfig(), **change)


def test_cerber_train_refuses_bad_settings_in_one_line_before_anything(tmp_path, monkeypatch, capsys):
    """--patch-size 130 used to fail with a traceback after the network was built and .work cleared."""
    import cerber_model.training as training
    from cerber_model.cli import main

    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("training started"))
    work = tmp_path / "model.work"
    work.mkdir()
    (work / "state.json").write_text("{}")
    for flags, problem in ((["--patch-size", "130"], "the patch size must be a positive multiple of 4 px (got 130)"),
                           (["--lr", "-1"], "the learning rate must be positive (got -1.0)"),
                           (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1 (got 1.5)")):
        assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "model"), *flags]) == 2
        err = capsys.readouterr().err
        assert problem in err and err.count("\n") == 1 and "Traceback" not in err
    assert (work / "state.json").read_text() == "{}"


@pytest.mark.parametrize("state", ["{not json", '{"config": {}}', '{"config": {"width": "wide"}, "history": []}',
                                   '{"config": {"patch_size": 130}, "history": []}', "\udcff"])
def test_a_corrupt_run_state_is_named_with_the_way_out(tmp_path, monkeypatch, capsys, state):
    import cerber_model.training as training
    from cerber_model.cli import main

    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("training started"))
    work = tmp_path / "model.work"
    work.mkdir()
    (work / "state.json").write_bytes(state.encode("utf-8", "surrogateescape"))
    assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "model"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{work / 'state.json'} cannot be read as a run's state" in err and "without --resume" in err
    assert err.count("\n") == 1
