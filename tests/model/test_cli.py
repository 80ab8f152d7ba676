"""The cerber command line, run as a user would."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from cerber_model.cli import main
from cerber_model.runtime.bundle import load_default_bundle, save_bundle
from cerber_model.runtime.tracks import TRACK_COLUMNS
from tests.model.helpers import gaussian_spots, tiny_bundle


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_bundle(tiny_bundle(width=1, seed=2), tmp_path_factory.mktemp("m") / "tiny")


#: Where the inputs' five spots are (row, col), well apart.
SPOTS = np.array([[20, 18], [24, 60], [50, 40], [75, 15], [78, 64]], float)


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(3)
    spots = gaussian_spots((96, 80), SPOTS, sigma=2.0)
    tifffile.imwrite(folder / "a.tif", (spots * 3000 + rng.normal(500, 60, spots.shape)).astype(np.uint16))
    PILImage.fromarray(np.clip(spots * 200 + rng.normal(20, 4, spots.shape), 0, 255).astype(np.uint8)).save(
        folder / "b.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "readme.txt").write_text("not an image; ignored when the folder is expanded")
    return folder


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_analyze_folder_with_one_bad_file(inputs, tmp_path, capsys):
    """The default model (no --model) finds the five spots of each good image, where they are."""
    out = tmp_path / "out"
    code = main(["analyze", str(inputs), "--out", str(out), "--pixel-size", "0.5",
                 "--save-probability", "--save-overlay"])
    err = capsys.readouterr().err
    assert code == 1  # one file failed
    assert "broken.png" in err and "not a readable image" in err
    for stem in ("a", "b"):
        rows = _read_csv(out / f"{stem}_tracks.csv")
        with open(out / f"{stem}_tracks.csv") as fh:
            assert fh.readline().strip().split(",") == list(TRACK_COLUMNS)
        prob = tifffile.imread(out / f"{stem}_probability.tif")
        assert prob.dtype == np.float32 and prob.shape == (96, 80)
        assert prob[tuple(SPOTS.astype(int).T)].min() > 0.5 and np.median(prob) < 0.1
        overlay = np.asarray(PILImage.open(out / f"{stem}_overlay.png"))
        assert overlay.shape == (96, 80, 3)
        at_spots = overlay[tuple(SPOTS.astype(int).T)].astype(int)
        assert (at_spots.max(axis=1) - at_spots.min(axis=1) > 30).all()  # coloured, not gray, at each track
        found = np.array([[float(r["row"]), float(r["col"])] for r in rows])
        assert len(found) == len(SPOTS), found
        assert np.linalg.norm(found[:, None] - SPOTS[None], axis=2).min(axis=0).max() < 1.0
    summary = _read_csv(out / "summary.csv")
    assert [os.path.basename(r["file"]) for r in summary] == ["a.tif", "b.png"]
    assert [r["track_count"] for r in summary] == ["5", "5"]
    assert summary[0]["height_px"] == "96" and summary[0]["model"] == load_default_bundle().config.name
    assert float(summary[0]["density_per_mm2"]) == pytest.approx(
        int(summary[0]["track_count"]) / (96 * 80 * 0.0005**2), rel=1e-5)  # CSV keeps 6 significant digits
    assert not any(p.name.endswith(".tmp") or p.name.startswith(".") for p in out.iterdir())


def test_existing_results_are_not_overwritten_without_asking(inputs, model, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["analyze", str(inputs / "a.tif"), "--out", str(out), "--model", str(model), "--quiet"]
    assert main(args) == 0
    before = (out / "a_tracks.csv").read_bytes()
    assert main(args + ["--threshold", "0.9"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "a_tracks.csv").read_bytes() == before
    assert main(args + ["--threshold", "0.9", "--overwrite"]) == 0
    assert _read_csv(out / "summary.csv")[0]["threshold"] == "0.9"


def test_threshold_changes_the_count(inputs, model, tmp_path):
    counts = []
    for t in ("0.2", "0.95"):
        out = tmp_path / t
        assert main(["analyze", str(inputs / "a.tif"), "--out", str(out), "--model", str(model),
                     "--threshold", t, "--quiet"]) == 0
        counts.append(int(_read_csv(out / "summary.csv")[0]["track_count"]))
    assert counts[0] != counts[1]


def test_globs_missing_inputs_and_bad_model(inputs, model, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", str(inputs / "*.tif"), str(inputs / "nope.tif"), "--out", str(out),
                 "--model", str(model), "--quiet"]) == 1
    assert "nope.tif: no such file" in capsys.readouterr().err
    assert (out / "a_tracks.csv").exists() and not (out / "b_tracks.csv").exists()
    assert main(["analyze", str(inputs), "--out", str(tmp_path / "o2"), "--model", str(tmp_path)]) == 2
    assert "config.json is missing" in capsys.readouterr().err


def test_info_and_console_script(model):
    proc = subprocess.run([sys.executable, "-m", "cerber_model.cli", "info", str(model)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "three cross-connected branches" in proc.stdout and "18,813 trainable" in proc.stdout
    env = dict(os.environ, CERBER_DEFAULT_MODEL=str(model))
    proc = subprocess.run([sys.executable, "-m", "cerber_model.cli", "info"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0 and "tiny-n1" in proc.stdout


def test_same_names_in_different_folders_are_both_kept(tmp_path):
    rng = np.random.default_rng(4)
    for folder, spots in (("in1", SPOTS[:2]), ("in2", SPOTS)):
        (tmp_path / folder).mkdir()
        image = gaussian_spots((96, 80), spots, sigma=2.0) * 200 + rng.normal(20, 4, (96, 80))
        PILImage.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(tmp_path / folder / "a.bmp")
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "in1"), str(tmp_path / "in2"), "--out", str(out), "--quiet"]) == 0
    counts = {os.path.basename(os.path.dirname(r["file"])): int(r["track_count"])
              for r in _read_csv(out / "summary.csv")}
    assert counts == {"in1": 2, "in2": 5}
    tables = sorted(p.name for p in out.glob("*_tracks.csv"))
    assert tables == ["in1_a_bmp_tracks.csv", "in2_a_bmp_tracks.csv"]
    assert len(_read_csv(out / "in1_a_bmp_tracks.csv")) == 2 and len(_read_csv(out / "in2_a_bmp_tracks.csv")) == 5


def test_results_in_the_input_folder_are_never_inputs(inputs, model, tmp_path, capsys):
    (inputs / "broken.png").unlink()
    args = ["analyze", str(inputs), "--out", str(inputs), "--model", str(model), "--save-probability",
            "--save-overlay", "--quiet", "--overwrite"]
    assert main(args) == 0
    assert main(args) == 0
    assert "are results, not inputs" in capsys.readouterr().err
    assert [os.path.basename(r["file"]) for r in _read_csv(inputs / "summary.csv")] == ["a.tif", "b.png"]


def test_a_linked_input_is_named_as_given(inputs, model, tmp_path):
    (tmp_path / "link.tif").symlink_to(inputs / "a.tif")
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "link.tif"), "--out", str(out), "--model", str(model), "--quiet"]) == 0
    assert (out / "link_tracks.csv").is_file() and not (out / "a_tracks.csv").exists()
    assert _read_csv(out / "summary.csv")[0]["file"].endswith("link.tif")


def test_a_run_where_every_input_fails_leaves_no_stale_summary(inputs, model, tmp_path):
    out = tmp_path / "out"
    assert main(["analyze", str(inputs / "a.tif"), "--out", str(out), "--model", str(model), "--quiet"]) == 0
    assert len(_read_csv(out / "summary.csv")) == 1
    assert main(["analyze", str(inputs / "broken.png"), "--out", str(out), "--model", str(model), "--quiet",
                 "--overwrite"]) == 1
    assert _read_csv(out / "summary.csv") == []


def test_an_unexpected_failure_is_one_line_and_a_log(inputs, model, tmp_path, capsys, monkeypatch):
    import cerber_model.runtime.analysis as analysis

    def broken(*args, **kwargs):
        raise RuntimeError("something unforeseen")

    monkeypatch.setattr(analysis, "analyze", broken)
    out = tmp_path / "out"
    assert main(["analyze", str(inputs / "a.tif"), "--out", str(out), "--model", str(model), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "a.tif: could not be analyzed (RuntimeError: something unforeseen)" in err and "Traceback" not in err
    assert "RuntimeError: something unforeseen" in (out / "cerber.log").read_text()


def test_selftest_size_is_checked(capsys):
    assert main(["selftest", "--size", "0"]) == 2
    assert "--size must be from 64" in capsys.readouterr().err


def test_an_image_too_large_for_free_memory_is_refused_before_analysis(inputs, model, tmp_path, capsys,
                                                                        monkeypatch):
    """A small compressed file can hold an image whose analysis needs more memory than is free: it
    is refused with what it needs, before anything is allocated, and the other images go on."""
    import cerber_model.runtime.analysis as analysis

    per_px = analysis.ANALYSIS_BYTES_PER_PIXEL
    monkeypatch.setattr(analysis, "available_memory", lambda: (96 * 80 + 100 * 100) // 2 * per_px)  # 96 x 80 fits
    (inputs / "broken.png").unlink()
    big = np.zeros((100, 100), np.uint8)
    PILImage.fromarray(big).save(inputs / "big.png")
    out = tmp_path / "out"
    assert main(["analyze", str(inputs / "big.png"), str(inputs / "a.tif"), "--out", str(out), "--model",
                 str(model), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "big.png: analyzing a 100 x 100 px image needs about" in err and "crop or bin" in err
    assert "a.tif" not in err
    assert [os.path.basename(r["file"]) for r in _read_csv(out / "summary.csv")] == ["a.tif"]
