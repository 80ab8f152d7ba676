"""Model bundles: atomic save, validated load, identical predictions after a round trip."""

import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cerber_model.nn.bundling import make_bundle
from cerber_model.runtime import bundle as bundle_module
from cerber_model.runtime.analysis import analyze
from cerber_model.runtime.architecture import NetworkConfig
from cerber_model.runtime.bundle import (
    BundleConfig,
    BundleError,
    default_bundle_path,
    describe_bundle,
    load_bundle,
    save_bundle,
)
from cerber_model.runtime.images import Normalization
from tests.model.helpers import gaussian_spots, jittered_weights, tiny_bundle


@pytest.fixture(scope="module")
def original():
    return tiny_bundle(width=2, seed=11, threshold=0.42)


@pytest.fixture
def saved(tmp_path, original):
    return save_bundle(original, tmp_path / "model")


def test_round_trip_gives_identical_predictions(saved, original):
    loaded = load_bundle(saved)
    assert loaded.config == original.config
    rng = np.random.default_rng(0)
    image = (gaussian_spots((120, 100), rng.uniform(10, 90, (6, 2))) * 500 + rng.normal(50, 5, (120, 100)))
    a = analyze(image.astype(np.float32), original)
    b = analyze(image.astype(np.float32), loaded)
    assert np.array_equal(a.probability, b.probability)  # bit for bit
    assert a.tracks.count == b.tracks.count
    assert loaded.config.threshold == 0.42 and b.tracks.threshold == 0.42


def test_round_trip_keeps_every_weight(saved, original):
    """The weights file, not only the ONNX graph, comes back exactly: the graph rebuilt from the
    loaded weights predicts what the saved graph predicts."""
    loaded = load_bundle(saved)
    assert set(loaded.weights) == set(original.weights)
    for name, value in original.weights.items():
        assert loaded.weights[name].dtype == np.float32
        assert np.array_equal(loaded.weights[name], value), name
    rebuilt = make_bundle(loaded.config, loaded.weights)
    x = np.random.default_rng(1).random((64, 64), dtype=np.float32)
    assert np.array_equal(rebuilt.engine().predict(x), loaded.engine().predict(x))


def test_config_records_everything(saved):
    data = json.loads((saved / "config.json").read_text())
    assert data["format_version"] == bundle_module.FORMAT_VERSION == 7
    assert data["min_contrast"] == 0.0
    assert data["network"]["width"] == 2 and data["normalization"]["method"] == "percentile"
    assert set(data["files"]) == {"weights.npz", "model.onnx"}
    assert all(len(v) == 64 for v in data["files"].values())


def test_missing_file(saved):
    (saved / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model\.onnx is missing"):
        load_bundle(saved)


def test_damaged_weights_fail_the_checksum(saved):
    data = bytearray((saved / "weights.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (saved / "weights.npz").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"weights\.npz does not match the checksum"):
        load_bundle(saved)


def test_wrong_version_and_bad_json(saved):
    config = json.loads((saved / "config.json").read_text())
    config["format_version"] = 99
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="newer than this Cerber"):
        load_bundle(saved)
    (saved / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"config\.json is not valid JSON"):
        load_bundle(saved)


def test_config_that_does_not_fit_the_weights(saved):
    config = json.loads((saved / "config.json").read_text())
    config["network"]["width"] = 3
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match=r"weights\.npz does not fit config\.json"):
        load_bundle(saved)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a model folder"):
        load_bundle(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"config\.json is missing"):
        load_bundle(tmp_path / "empty")


def test_make_bundle_rejects_mismatched_weights():
    config = BundleConfig(network=NetworkConfig(width=2))
    with pytest.raises(BundleError, match="do not fit"):
        make_bundle(config, jittered_weights(NetworkConfig(width=1)))


def test_existing_folder_is_not_overwritten_without_asking(saved, original):
    before = (saved / "config.json").read_bytes()
    with pytest.raises(BundleError, match="already exists"):
        save_bundle(original, saved)
    assert (saved / "config.json").read_bytes() == before
    save_bundle(original, saved, overwrite=True)
    load_bundle(saved)


def test_full_disk_leaves_nothing_behind(tmp_path, original, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bundle_module, "_fsync_write", no_space)
    with pytest.raises(BundleError, match="No space left.*nothing was changed"):
        save_bundle(original, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_the_default_model_is_found_in_the_package_from_any_working_folder(tmp_path, monkeypatch):
    """From the source tree the default model is cerber_model/models/default, where a wheel and the
    frozen app also have it; not a path relative to the working folder. CERBER_DEFAULT_MODEL overrides it."""
    import cerber_model

    monkeypatch.delenv("CERBER_DEFAULT_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)
    package_model = Path(cerber_model.__file__).resolve().parent / "models" / "default"
    assert default_bundle_path() == package_model
    assert bundle_module.load_default_bundle().path == package_model
    monkeypatch.setenv("CERBER_DEFAULT_MODEL", str(tmp_path / "elsewhere"))
    assert default_bundle_path() == tmp_path / "elsewhere"
    with pytest.raises(BundleError, match="no default model at .*elsewhere"):
        bundle_module.load_default_bundle()


def test_bundled_models_are_reached_by_name_and_a_folder_of_that_name_comes_first(tmp_path, monkeypatch):
    """``--model v1`` works wherever the package is installed (not only as a source-tree path); a
    folder in the working directory with the same name is what the user meant."""
    monkeypatch.delenv("CERBER_DEFAULT_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)
    names = bundle_module.bundled_models()
    assert list(names) == ["default", "clean", "synthetic", "v1"] and names["default"] == default_bundle_path()
    assert bundle_module.load_model("synthetic").config.name == "synthetic"
    assert bundle_module.load_model("clean").config.name == "clean"
    assert bundle_module.load_model("v1").config.name == load_bundle(names["v1"]).config.name
    assert bundle_module.load_model(None).path == bundle_module.load_model("default").path == default_bundle_path()
    save_bundle(tiny_bundle(), tmp_path / "v1")
    assert bundle_module.model_path("v1") == Path("v1") and bundle_module.load_model("v1").config.name == "tiny-n1"
    with pytest.raises(BundleError, match="nope"):
        bundle_module.load_model("nope")


def test_version_1_bundles_load_and_predict_as_before():
    """The committed v1 model (format version 1, the first default) loads through the upgrade path
    and gives the probabilities it gave before version 2 existed (recorded with the version-1 code)."""
    path = default_bundle_path().parent / "v1"
    assert json.loads((path / "config.json").read_text())["format_version"] == 1
    bundle = load_bundle(path)
    assert bundle.config.normalization == Normalization("percentile", 1.0, 99.8)
    rng = np.random.default_rng(2024)
    image = gaussian_spots((200, 240), rng.uniform(20, 180, (8, 2)), sigma=2.5) * 120 + rng.normal(40, 6, (200, 240))
    result = analyze(np.clip(image, 0, 255).astype(np.uint8), bundle)
    p = result.probability.astype(np.float64)
    assert result.tracks.count == 8
    assert p.sum() == pytest.approx(4644.375744134188, rel=1e-6)
    assert p[100, 120] == pytest.approx(0.0693742036819458, abs=1e-6)
    assert p.max() == pytest.approx(0.9071235060691833, abs=1e-6)


def test_background_normalisation_round_trip(tmp_path):
    """A version-2 bundle with the background normalisation keeps it, and predicts bit for bit."""
    from dataclasses import replace

    base = tiny_bundle(width=1, seed=3)
    config = replace(base.config, normalization=Normalization("background", block=24))
    original = make_bundle(config, base.weights)
    loaded = load_bundle(save_bundle(original, tmp_path / "model"))
    assert loaded.config.normalization == Normalization("background", block=24)
    assert json.loads((tmp_path / "model" / "config.json").read_text())["normalization"] == \
        {"method": "background", "block": 24}
    image = np.random.default_rng(5).normal(300, 20, (90, 110)).astype(np.uint16)
    assert np.array_equal(analyze(image, original).probability, analyze(image, loaded).probability)


def test_version_2_bundles_load_with_the_pixel_noise(tmp_path):
    """Version 2 had no noise scale: such a config loads with the pixel noise (noise scale 0) and
    predicts as a current bundle that says so; a noise scale is saved and read back."""
    from dataclasses import replace

    base = tiny_bundle(width=1, seed=3)
    scaled = make_bundle(replace(base.config, normalization=Normalization("background", block=16, noise_scale=1.5)),
                         base.weights)
    folder = save_bundle(scaled, tmp_path / "scaled")
    assert load_bundle(folder).config.normalization.noise_scale == 1.5
    config = json.loads((folder / "config.json").read_text())
    config["format_version"] = 2
    del config["normalization"]["noise_scale"]
    (folder / "config.json").write_text(json.dumps(config))
    old = load_bundle(folder)
    assert old.config.normalization == Normalization("background", block=16)
    image = ndimage.gaussian_filter(np.random.default_rng(5).normal(300, 20, (90, 110)), 1).astype(np.uint16)
    plain = make_bundle(replace(base.config, normalization=Normalization("background", block=16)), base.weights)
    assert np.array_equal(analyze(image, old).probability, analyze(image, plain).probability)
    assert not np.array_equal(analyze(image, old).probability, analyze(image, scaled).probability)


def test_format_3_keeps_every_track(tmp_path):
    """Version 3 had no smallest contrast: such a config loads with 0 and gives every track the
    network finds; a smallest contrast is saved and read back, and drops the faint tracks."""
    from dataclasses import replace

    base = tiny_bundle(width=1, seed=3)
    strict = make_bundle(replace(base.config, min_contrast=6.0, threshold=0.3), base.weights)
    folder = save_bundle(strict, tmp_path / "strict")
    assert load_bundle(folder).config.min_contrast == 6.0
    assert "minimum contrast: 6 noise SDs" in describe_bundle(load_bundle(folder))
    config = json.loads((folder / "config.json").read_text())
    config["format_version"] = 3
    del config["min_contrast"]
    (folder / "config.json").write_text(json.dumps(config))
    old = load_bundle(folder)
    assert old.config.min_contrast == 0.0
    image = np.random.default_rng(5).normal(300, 20, (96, 96)).astype(np.float32)
    kept, filtered = analyze(image, old).tracks, analyze(image, strict).tracks
    assert np.isnan(kept.columns["contrast"]).all()
    assert filtered.count < kept.count  # an untrained network marks noise, of low contrast
    assert (filtered.columns["contrast"] >= 6.0).all()
    config["min_contrast"] = "high"  # a hand-edited config is named with the key and the value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="min_contrast must be from 0 to 100 noise SDs, got 'high'"):
        load_bundle(folder)


def test_unknown_normalisation_is_named(saved):
    config = json.loads((saved / "config.json").read_text())
    config["normalization"] = {"method": "zscore"}
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="normalisation method must be one of percentile, scale, background"):
        load_bundle(saved)


def test_only_model_folders_are_replaced(tmp_path, original):
    """overwrite=True replaces a Cerber model, never a folder of the user's or a file."""
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "data.csv").write_text("precious")
    with pytest.raises(BundleError, match="does not hold a Cerber model; Cerber will not replace it"):
        save_bundle(original, mine, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["data.csv"] and (mine / "data.csv").read_text() == "precious"
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(BundleError, match="is not a folder"):
        save_bundle(original, tmp_path / "a_file", overwrite=True)
    assert (tmp_path / "a_file").read_text() == "x"
    (tmp_path / "empty").mkdir()
    save_bundle(original, tmp_path / "empty", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "empty", "results"]


def test_replacing_a_model_keeps_the_users_files(saved, original):
    (saved / "MODEL_CARD.md").write_text("# my notes")
    (saved / "figures").mkdir()
    (saved / "figures" / "f.png").write_bytes(b"png")
    save_bundle(original, saved, overwrite=True, extra_files={"history.csv": b"epoch\n1\n"})
    assert (saved / "MODEL_CARD.md").read_text() == "# my notes"
    assert (saved / "figures" / "f.png").read_bytes() == b"png"
    assert (saved / "history.csv").read_bytes() == b"epoch\n1\n"
    load_bundle(saved)
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_models_and_results_follow_the_umask(tmp_path, original, umask):
    from cerber_model.runtime.export import write_tracks_csv

    old = os.umask(umask)
    try:
        path = save_bundle(original, tmp_path / "model")
        table = write_tracks_csv(analyze(np.zeros((16, 16), np.float32), original).tracks, tmp_path / "t.csv")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask
    for name in ("config.json", "weights.npz", "model.onnx"):
        assert stat.S_IMODE((path / name).stat().st_mode) == 0o666 & ~umask, name
    assert stat.S_IMODE(table.stat().st_mode) == 0o666 & ~umask


def _recheck(folder):
    """Make config.json's checksums fit the (changed) files again, as a careless copy would."""
    config = json.loads((folder / "config.json").read_text())
    config["files"] = {n: bundle_module._sha256(folder / n) for n in ("weights.npz", "model.onnx")}
    (folder / "config.json").write_text(json.dumps(config))


def test_a_damaged_graph_is_refused_at_load(saved):
    (saved / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)
    _recheck(saved)
    with pytest.raises(BundleError, match=r"model\.onnx cannot be run .* copy it again"):
        load_bundle(saved)


def test_a_graph_of_other_weights_is_refused_at_load(saved, tmp_path):
    other = save_bundle(tiny_bundle(width=2, seed=12), tmp_path / "other")
    (saved / "model.onnx").write_bytes((other / "model.onnx").read_bytes())
    _recheck(saved)
    with pytest.raises(BundleError, match="does not give the output recorded"):
        load_bundle(saved)


def test_the_setting_for_clean_backgrounds_is_saved_described_and_checked(tmp_path):
    """An optional key like the resolving distance: saved and read back, shown in the model's
    description, left out when unset (older bundles load without it), and named when wrong."""
    from dataclasses import replace

    from cerber_model.runtime.architecture import ConfigError
    from cerber_model.runtime.bundle import CleanBackground

    base = tiny_bundle(width=1, seed=3)
    clean = CleanBackground(threshold=0.05, min_contrast=6.5, max_texture=20.0)
    folder = save_bundle(make_bundle(replace(base.config, min_contrast=7.0, clean_background=clean), base.weights),
                         tmp_path / "model")
    assert load_bundle(folder).config.clean_background == clean
    assert "Clean images:  threshold 0.050   minimum contrast: 6.5" in describe_bundle(load_bundle(folder))
    config = json.loads((folder / "config.json").read_text())
    config["format_version"] = 5  # before the coarse look and contrast by rarity: neither
    (folder / "config.json").write_text(json.dumps(config))
    assert load_bundle(folder).config.clean_background == clean
    del config["clean_background"]
    (folder / "config.json").write_text(json.dumps(config))
    assert load_bundle(folder).config.clean_background is None
    config["clean_background"] = {"threshold": 0.05, "min_contrast": 6.5}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="clean_background must have threshold, min_contrast and max_texture"):
        load_bundle(folder)
    with pytest.raises(ConfigError, match="needs min_contrast above 0"):
        replace(base.config, clean_background=clean)
    with pytest.raises(ConfigError, match="clean_background threshold must be between 0 and 1"):
        CleanBackground(1.5, 6.0, 20.0)
    with pytest.raises(ConfigError, match="clean_background network must name a model shipped with Cerber"):
        CleanBackground(0.1, 6.0, 20.0, network="../elsewhere")
    named = CleanBackground(0.1, 6.0, 20.0, network="synthetic")
    assert CleanBackground.from_dict(named.to_dict()) == named and "network" not in clean.to_dict()
    coarse = CleanBackground(0.1, 6.0, 20.0, network="synthetic", coarse=True)
    assert CleanBackground.from_dict(coarse.to_dict()) == coarse and "coarse" not in named.to_dict()
    assert "a second look at the image binned 2 x 2" in describe_bundle(
        make_bundle(replace(base.config, min_contrast=7.0, clean_background=coarse), base.weights))
    with pytest.raises(ConfigError, match="clean_background coarse must be true or false, got 'yes'"):
        CleanBackground.from_dict({**coarse.to_dict(), "coarse": "yes"})
    rarity = replace(coarse, rarity=True)
    assert CleanBackground.from_dict(rarity.to_dict()) == rarity and "rarity" not in coarse.to_dict()
    assert "contrast counted by its rarity" in describe_bundle(
        make_bundle(replace(base.config, min_contrast=7.0, clean_background=rarity), base.weights))
    with pytest.raises(ConfigError, match="clean_background rarity must be true or false, got 1"):
        CleanBackground.from_dict({**coarse.to_dict(), "rarity": 1})


def test_how_far_tracks_grow_is_saved_described_and_checked(tmp_path):
    """``grow_to``, optional like the resolving distance: saved and read back, shown in the model's
    description, left out when unset (older bundles load without it), and named when wrong."""
    from dataclasses import replace

    from cerber_model.runtime.architecture import ConfigError

    base = tiny_bundle(width=1, seed=3)
    folder = save_bundle(make_bundle(replace(base.config, grow_to=0.667), base.weights), tmp_path / "model")
    assert load_bundle(folder).config.grow_to == 0.667
    assert "tracks grown down to 0.667 x the threshold" in describe_bundle(load_bundle(folder))
    config = json.loads((folder / "config.json").read_text())
    del config["grow_to"]
    (folder / "config.json").write_text(json.dumps(config))
    assert load_bundle(folder).config.grow_to is None
    assert "grow_to" not in base.config.to_dict()
    with pytest.raises(ConfigError, match="grow_to must be a fraction of the threshold between 0 and 1, got 1.2"):
        replace(base.config, grow_to=1.2)
