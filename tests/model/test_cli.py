"""The cerber command line, run as a user would."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from scipy import stats

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


def _image_rows(summary):
    """The rows of summary.csv for images, without the pooled rows (``ALL``, ``ALL <folder>``)."""
    return [r for r in summary if r["file"] != "ALL" and not r["file"].startswith("ALL ")]


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
    assert [os.path.basename(r["file"]) for r in summary] == ["a.tif", "b.png", "ALL"]  # then the pooled row
    assert [r["track_count"] for r in summary] == ["5", "5", "10"]
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


def test_a_smallest_contrast_is_measured_for_a_model_that_keeps_every_track(inputs, model, tmp_path):
    """A model without a smallest contrast of its own (0) measures none; one given is measured and applied."""
    counts = []
    for extra in ([], ["--min-contrast", "1e6"]):
        out = tmp_path / f"out{len(extra)}"
        assert main(["analyze", str(inputs / "a.tif"), "--out", str(out), "--model", str(model), "--threshold", "0.2",
                     "--quiet", *extra]) == 0
        counts.append(int(_read_csv(out / "summary.csv")[0]["track_count"]))
    assert counts[0] > 0 and counts[1] == 0


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


def test_a_bundled_model_is_named_on_the_command_line(capsys):
    assert main(["info", "v1"]) == 0
    assert "Model:         v1" in capsys.readouterr().out


def test_info_names_the_engine_that_runs_here(capsys, monkeypatch):
    import sys as system

    monkeypatch.delenv("CERBER_ENGINE", raising=False)
    monkeypatch.setitem(system.modules, "openvino", None)  # as in the standalone analyzer
    assert main(["info", "v1"]) == 0
    assert "Engine here:   onnxruntime (auto: OpenVINO where it is installed)" in capsys.readouterr().out
    monkeypatch.setenv("CERBER_ENGINE", "onnxruntime")
    assert main(["info", "v1"]) == 0
    assert "Engine here:   onnxruntime (asked for: onnxruntime)" in capsys.readouterr().out
    monkeypatch.setenv("CERBER_ENGINE", "openvino")
    assert main(["info", "v1"]) == 0
    assert "Engine here:   onnxruntime (openvino asked for, but not installed)" in capsys.readouterr().out
    monkeypatch.setenv("CERBER_ENGINE", "gpu")
    assert main(["info", "v1"]) == 2
    assert "unknown engine 'gpu'" in capsys.readouterr().err


def test_same_names_in_different_folders_are_both_kept(tmp_path):
    rng = np.random.default_rng(4)
    for folder, spots in (("in1", SPOTS[:2]), ("in2", SPOTS)):
        (tmp_path / folder).mkdir()
        image = gaussian_spots((96, 80), spots, sigma=2.0) * 200 + rng.normal(20, 4, (96, 80))
        PILImage.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(tmp_path / folder / "a.bmp")
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "in1"), str(tmp_path / "in2"), "--out", str(out), "--quiet"]) == 0
    summary = _read_csv(out / "summary.csv")
    counts = {os.path.basename(os.path.dirname(r["file"])): int(r["track_count"]) for r in _image_rows(summary)}
    assert counts == {"in1": 2, "in2": 5}
    pooled = {r["file"]: int(r["track_count"]) for r in summary if r["file"].startswith("ALL")}
    assert pooled == {f"ALL {tmp_path / 'in1'}": 2, f"ALL {tmp_path / 'in2'}": 5}  # one per folder
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
    assert [os.path.basename(r["file"]) for r in _image_rows(_read_csv(inputs / "summary.csv"))] == ["a.tif", "b.png"]


def test_a_linked_input_is_named_as_given(inputs, model, tmp_path):
    (tmp_path / "link.tif").symlink_to(inputs / "a.tif")
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "link.tif"), "--out", str(out), "--model", str(model), "--quiet"]) == 0
    assert (out / "link_tracks.csv").is_file() and not (out / "a_tracks.csv").exists()
    assert _read_csv(out / "summary.csv")[0]["file"].endswith("link.tif")


def test_a_run_where_every_input_fails_leaves_no_stale_summary(inputs, model, tmp_path):
    out = tmp_path / "out"
    assert main(["analyze", str(inputs / "a.tif"), "--out", str(out), "--model", str(model), "--quiet"]) == 0
    assert len(_image_rows(_read_csv(out / "summary.csv"))) == 1
    assert main(["analyze", str(inputs / "broken.png"), "--out", str(out), "--model", str(model), "--quiet",
                 "--overwrite"]) == 1
    assert _read_csv(out / "summary.csv") == []


def test_an_unexpected_failure_is_one_line_and_a_log(inputs, model, tmp_path, capsys, monkeypatch):
    import cerber_model.runtime.batch as batch

    def broken(*args, **kwargs):
        raise RuntimeError("something unforeseen")

    monkeypatch.setattr(batch, "tracks_from_probability", broken)
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
    assert [line for line in err.splitlines() if "a.tif" in line and ": note: " not in line] == []
    assert [os.path.basename(r["file"]) for r in _image_rows(_read_csv(out / "summary.csv"))] == ["a.tif"]


# -- fluence, regions and exports --------------------------------------------------------------------


def _ome(folder, name="a.tif", pixel_size_um=0.5):
    """The inputs' 16-bit image of the five spots, saved with its pixel size in OME-XML."""
    rng = np.random.default_rng(3)
    spots = gaussian_spots((96, 80), SPOTS, sigma=2.0)
    folder.mkdir(exist_ok=True)
    tifffile.imwrite(folder / name, (spots * 3000 + rng.normal(500, 60, spots.shape)).astype(np.uint16), ome=True,
                     metadata={"PhysicalSizeX": pixel_size_um, "PhysicalSizeY": pixel_size_um})
    return folder / name


def test_summary_gives_fluences_with_the_pixel_size_of_the_file(tmp_path, capsys):
    from cerber_model.runtime.dosimetry import overlap_corrected_count

    d = load_default_bundle().config.resolving_distance_px  # the default model's own

    folder = tmp_path / "in"
    _ome(folder, "a.tif"), _ome(folder, "c.tif")
    PILImage.fromarray(np.zeros((96, 80), np.uint8)).save(folder / "blank.png")  # no pixel size, no tracks
    assert main(["analyze", str(folder), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    a, blank, c, pooled = _read_csv(tmp_path / "out" / "summary.csv")
    area = 96 * 80 * 0.5**2 * 1e-8  # cm^2
    assert (a["pixel_size_um"], a["pixel_size_source"], a["track_count"], a["area_px"]) == (
        "0.5", "file: OME-XML", "5", "7680")
    assert float(a["area_cm2"]) == pytest.approx(area, rel=1e-5)
    assert float(a["fluence_per_cm2"]) == pytest.approx(5 / area, rel=1e-5)
    assert float(a["density_per_mm2"]) == pytest.approx(5 / area / 100, rel=1e-5)
    # The exact Poisson interval of 5 counts (Garwood): 1.624 to 11.668.
    assert float(a["fluence_ci95_low"]) == pytest.approx(1.6235 / area, rel=1e-4)
    assert float(a["fluence_ci95_high"]) == pytest.approx(11.6683 / area, rel=1e-4)
    assert d is not None and float(a["resolving_distance_px"]) == d
    corrected = overlap_corrected_count(5, 7680, d)
    assert float(a["corrected_count"]) == pytest.approx(corrected, rel=1e-5) and corrected > 5
    assert float(a["corrected_fluence_per_cm2"]) == pytest.approx(corrected / area, rel=1e-5)
    assert (blank["track_count"], blank["pixel_size_um"], blank["pixel_size_source"], blank["fluence_per_cm2"]) == (
        "0", "", "", "")
    assert a["dispersion_p"] == "" and a["images"] == "1"
    # The folder pooled: counts summed; no fluence, as one image's pixel size is unknown; the
    # dispersion test sees 5, 0, 5 tracks on equal areas.
    assert (pooled["file"], pooled["images"], pooled["track_count"], pooled["area_px"]) == ("ALL", "3", "10", "23040")
    assert pooled["fluence_per_cm2"] == "" and pooled["pixel_size_um"] == ""
    assert (float(pooled["dispersion_chi2"]), pooled["dispersion_dof"]) == (pytest.approx(5.0), "2")
    assert float(pooled["dispersion_p"]) == pytest.approx(stats.chi2.sf(5.0, 2), rel=1e-5)
    assert f"a.tif: 5 tracks, {5 / area:.4g} per cm^2 (95% CI {1.6235 / area:.4g}-{11.6683 / area:.4g})" in printed
    assert "ALL: dispersion chi2 5 on 2 dof" in printed

    # --pixel-size wins over the file, and the summary says so; without the blank image the folder
    # has a fluence with its interval, and 5 and 5 tracks are as even as can be.
    (folder / "blank.png").unlink()
    assert main(["analyze", str(folder), "--out", str(tmp_path / "o2"), "--pixel-size", "0.25", "--quiet"]) == 0
    assert "the file says 0.5 um per pixel (OME-XML); --pixel-size 0.25 was used" in capsys.readouterr().err
    a, c, pooled = _read_csv(tmp_path / "o2" / "summary.csv")
    assert (a["pixel_size_um"], a["pixel_size_source"], pooled["pixel_size_source"]) == (
        "0.25", "--pixel-size", "--pixel-size")
    assert float(pooled["fluence_per_cm2"]) == pytest.approx(10 / (2 * 96 * 80 * 0.25**2 * 1e-8), rel=1e-5)
    assert float(pooled["fluence_ci95_high"]) == pytest.approx(18.390 / (2 * 96 * 80 * 0.25**2 * 1e-8), rel=1e-4)
    assert (float(pooled["dispersion_chi2"]), float(pooled["dispersion_p"])) == (0, 1)


def _regions(path, include=(), exclude=()):
    import json

    path.write_text(json.dumps({"format": "cerber-regions", "version": 1, "include": list(include),
                                "exclude": list(exclude)}))
    return path


#: The left part of the 96 x 80 px image, columns 0 to 35: holds the spots at columns 18 and 15.
LEFT = [[-0.5, -0.5], [-0.5, 35.5], [95.5, 35.5], [95.5, -0.5]]


def test_regions_beside_an_image_or_given_set_the_usable_area(tmp_path, capsys):
    folder = tmp_path / "in"
    _ome(folder, "a.tif"), _ome(folder, "c.tif")
    _regions(folder / "a_regions.json", include=[LEFT])
    out = tmp_path / "out"
    assert main(["analyze", str(folder), "--out", str(out), "--save-overlay"]) == 0
    assert "a.tif: 2 tracks in the usable area (45% of the image)" in capsys.readouterr().out
    a, c, pooled = _read_csv(out / "summary.csv")
    assert (a["track_count"], a["area_px"], a["regions"]) == ("2", str(96 * 36), str(folder / "a_regions.json"))
    assert float(a["fluence_per_cm2"]) == pytest.approx(2 / (96 * 36 * 0.25e-8), rel=1e-5)
    assert (c["track_count"], c["area_px"], c["regions"]) == ("5", "7680", "")
    assert sorted(float(r["col"]) for r in _read_csv(out / "a_tracks.csv")) == pytest.approx([15, 18], abs=1)
    assert (pooled["track_count"], pooled["area_px"]) == ("7", str(96 * 36 + 7680))
    # The dispersion test expects the counts in proportion to the areas: 2 on 3456 px, 5 on 7680 px.
    assert float(pooled["dispersion_chi2"]) < 0.1

    # --roi applies to every image, instead of the files beside them: here the spot at (50, 40) is cut out.
    roi = _regions(tmp_path / "cut.json", exclude=[[[44, 34], [44, 46], [56, 46], [56, 34]]])
    assert main(["analyze", str(folder), "--out", str(tmp_path / "o2"), "--roi", str(roi), "--quiet"]) == 0
    rows = _read_csv(tmp_path / "o2" / "summary.csv")
    cut = ("4", str(7680 - 13 * 13), str(roi))
    assert [(r["track_count"], r["area_px"], r["regions"]) for r in rows[:2]] == [cut, cut]


def test_a_bad_regions_file_fails_its_image_only(tmp_path, capsys):
    folder = tmp_path / "in"
    _ome(folder, "a.tif"), _ome(folder, "c.tif")
    (folder / "a_regions.json").write_text('{"format": "cerber-regions", "version": 1, "include": [[[0, 0]]]}')
    assert main(["analyze", str(folder), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    assert "a_regions.json" in capsys.readouterr().err
    assert [os.path.basename(r["file"]) for r in _image_rows(_read_csv(tmp_path / "out" / "summary.csv"))] == ["c.tif"]
    # A region that leaves nothing of the image is an error, not a fluence of 0 / 0.
    _regions(folder / "a_regions.json", include=[[[500, 500], [500, 600], [600, 600]]])
    assert main(["analyze", str(folder / "a.tif"), "--out", str(tmp_path / "o2"), "--quiet"]) == 1
    assert "leaves no usable pixel in a.tif" in capsys.readouterr().err
    assert main(["analyze", str(folder), "--out", str(tmp_path / "o3"), "--roi", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_exports_for_other_tools_and_the_report(tmp_path, capsys):
    folder = tmp_path / "in"
    _ome(folder, "a.tif"), _ome(folder, "c.tif")
    out = tmp_path / "out"
    args = ["analyze", str(folder), "--out", str(out), "--quiet", "--save-rois", "--save-napari", "--spectra",
            "--report"]
    assert main(args) == 0
    made = sorted(p.name for p in out.iterdir())
    assert made == ["a_napari.csv", "a_rois.zip", "a_tracks.csv", "c_napari.csv", "c_rois.zip", "c_tracks.csv",
                    "report.html", "spectrum_area_px.csv", "spectrum_diameter_px.csv", "spectrum_diameter_um.csv",
                    "spectrum_integrated_intensity.csv", "summary.csv"]
    assert len(_read_csv(out / "a_napari.csv")) == 5
    import zipfile

    assert len(zipfile.ZipFile(out / "a_rois.zip").namelist()) == 5
    spectrum = _read_csv(out / "spectrum_area_px.csv")
    assert list(spectrum[0]) == ["bin_low", "bin_high", "a", "c", "all"]
    assert sum(int(r["all"]) for r in spectrum) == 10
    report = (out / "report.html").read_text()
    assert "a.tif" in report and "Linearity" in report and "<svg" in report and "data:image/png" in report
    # Every one of them is an output that is never replaced without --overwrite.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "summary.csv").unlink()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {k: v for k, v in before.items() if k != "summary.csv"}


def test_a_model_with_its_own_resolving_distance_corrects_with_it(inputs, tmp_path):
    from dataclasses import replace

    from cerber_model.runtime.dosimetry import overlap_corrected_count

    bundle = tiny_bundle(width=1, seed=2)
    bundle.config = replace(bundle.config, resolving_distance_px=1.5)
    model = save_bundle(bundle, tmp_path / "own")
    out = tmp_path / "out"
    assert main(["analyze", str(inputs / "a.tif"), "--out", str(out), "--model", str(model), "--quiet"]) == 0
    row = _read_csv(out / "summary.csv")[0]
    assert row["resolving_distance_px"] == "1.5"
    assert float(row["corrected_count"]) == pytest.approx(
        overlap_corrected_count(int(row["track_count"]), 96 * 80, 1.5), rel=1e-5)


def test_engine_is_chosen_on_the_command_line(inputs, model, tmp_path):
    pytest.importorskip("openvino")
    rows = {}
    for engine in ("onnxruntime", "openvino"):
        out = tmp_path / engine
        assert main(["analyze", str(inputs / "a.tif"), "--out", str(out), "--model", str(model), "--engine", engine,
                     "--quiet"]) == 0
        rows[engine] = _read_csv(out / "a_tracks.csv")
    assert len(rows["openvino"]) == len(rows["onnxruntime"]) > 0
    for a, b in zip(rows["openvino"], rows["onnxruntime"], strict=True):
        assert abs(float(a["max_probability"]) - float(b["max_probability"])) < 1e-4
        # A pixel whose probability sits within 1e-4 of the threshold may fall either side.
        assert abs(float(a["row"]) - float(b["row"])) < 0.1 and abs(float(a["col"]) - float(b["col"])) < 0.1
        assert abs(int(a["area_px"]) - int(b["area_px"])) <= 1


def test_an_engine_that_cannot_run_is_replaced_with_a_one_line_note(inputs, model, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    out = tmp_path / "out"
    assert main(["analyze", str(inputs / "a.tif"), "--out", str(out), "--model", str(model), "--engine", "openvino",
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "cerber: note: the OpenVINO engine needs the openvino package" in err and "Warning" not in err
    assert (out / "a_tracks.csv").is_file()


def _textured_and_clean(tmp_path):
    """A folder of two images: the textured hybiss sample (a.tif) and three spots on camera noise (b.tif)."""
    import shutil
    from pathlib import Path

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "assets" / "samples" / "img_hybiss_2d.tif", folder / "a.tif")
    rng = np.random.default_rng(8)
    spots = gaussian_spots((256, 256), np.array([[60, 60], [128, 190], [200, 90]], float), sigma=1.5)
    tifffile.imwrite(folder / "b.tif", (spots * 400 + rng.normal(200, 10, spots.shape)).astype(np.uint16))
    return folder


def test_each_image_gets_the_setting_its_background_calls_for(tmp_path):
    """The default model on a textured real sample and on spots over camera noise: the sample keeps
    the model's own threshold, the clean image gets its setting for clean backgrounds, and the
    summary gives each image's; with --threshold both get the one given."""
    config = load_default_bundle().config
    clean = config.clean_background
    assert clean is not None
    folder = _textured_and_clean(tmp_path)
    assert main(["analyze", str(folder), "--out", str(tmp_path / "own")]) == 0
    sample, camera, _ = _read_csv(tmp_path / "own" / "summary.csv")
    assert float(sample["threshold"]) == pytest.approx(config.threshold)
    assert float(camera["threshold"]) == pytest.approx(clean.threshold) and camera["track_count"] == "3"
    assert main(["analyze", str(folder), "--out", str(tmp_path / "given"), "--threshold", "0.5"]) == 0
    assert [r["threshold"] for r in _read_csv(tmp_path / "given" / "summary.csv")] == ["0.5"] * 3


def test_a_smallest_contrast_given_applies_to_every_image(tmp_path, capsys):
    """--min-contrast replaces the model's own on every image (the clean one's setting too, whose
    threshold is then the model's own): a lower one keeps more of a textured sample's tracks."""
    config = load_default_bundle().config
    folder = _textured_and_clean(tmp_path)
    assert main(["analyze", str(folder), "--out", str(tmp_path / "own"), "--quiet"]) == 0
    own = _read_csv(tmp_path / "own" / "summary.csv")
    assert main(["analyze", str(folder), "--out", str(tmp_path / "low"), "--min-contrast", "4", "--quiet",
                 "--report"]) == 0
    low = _read_csv(tmp_path / "low" / "summary.csv")
    assert [float(r["min_contrast"]) for r in low[:2]] == [4.0, 4.0]
    assert [float(r["threshold"]) for r in low[:2]] == pytest.approx([config.threshold] * 2)
    assert int(low[0]["track_count"]) > int(own[0]["track_count"])  # fainter bumps of the sample pass
    assert low[1]["track_count"] == "3"
    assert f"{config.threshold:g} (smallest contrast 4)" in (tmp_path / "low" / "report.html").read_text()
    capsys.readouterr()
    assert main(["analyze", str(folder), "--out", str(tmp_path / "bad"), "--min-contrast", "-1"]) == 2
    assert "--min-contrast must be 0 or more" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
