"""The default model is package data: a wheel carries it, and `cerber` installed from the wheel finds it."""

import csv
import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cerber_model.runtime.bundle import load_bundle
from tests.model.helpers import gaussian_spots

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cerber_model"
MODEL = PACKAGE / "models" / "default"
#: Where the test image's five spots are (row, col), well apart.
SPOTS = np.array([[20, 18], [24, 60], [50, 40], [75, 15], [78, 64]], float)


def test_package_data_takes_every_file_of_the_default_model():
    """setuptools globs package-data patterns from the package folder; a file of the model that no
    pattern takes would be missing from wheels (a missing weights file or graph fails to load)."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    taken = {path for pattern in patterns["cerber_model"] for path in PACKAGE.glob(pattern) if path.is_file()}
    files = {path for path in MODEL.rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    assert {MODEL / "config.json", MODEL / "weights.npz", MODEL / "model.onnx"} <= files
    assert sorted(files - taken) == []


def _run(command, **kwargs):
    run = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=300, **kwargs)
    assert run.returncode == 0, f"{command} failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return run


@pytest.mark.slow
def test_cerber_installed_from_a_wheel_analyzes_with_its_default_model(tmp_path):
    """Build a wheel from the tracked files, install it into a new environment and run `cerber analyze`
    without --model from a folder outside the checkout: the five spots are found where they are."""
    pytest.importorskip("setuptools", reason="the wheel is built without build isolation (no network)")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to copy the tracked files from")
    # What a wheel is built from, as a clean checkout has it: tracked files only.
    source = tmp_path / "checkout"
    tracked = subprocess.run(["git", "ls-files", "-z", "--", "pyproject.toml", "README.md", "cerber_model",
                              "cerber_gui"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for name in filter(None, tracked.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    assert (source / "cerber_model" / "models" / "default" / "weights.npz").is_file(), "the model is not tracked"
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--disable-pip-version-check", "--quiet", source, "-w", wheels])
    (wheel,) = wheels.glob("cerber-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    model_files = [f"cerber_model/models/default/{p.name}" for p in (source / "cerber_model/models/default").iterdir()]
    assert sorted(set(model_files) - names) == []

    # A new environment with the wheel installed. Its dependencies come from this environment's
    # site-packages, added by a .pth file as plain paths: the .pth files in there (the editable
    # install of this checkout among them) are not run, so `cerber_model` can only be the wheel's.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    scripts = venv / ("Scripts" if os.name == "nt" else "bin")
    python = scripts / ("python.exe" if os.name == "nt" else "python")
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    (purelib / "test_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "--quiet", wheel])

    work = tmp_path / "elsewhere"
    work.mkdir()
    rng = np.random.default_rng(3)
    spots = gaussian_spots((96, 80), SPOTS, sigma=2.0)
    tifffile.imwrite(work / "spots.tif", (spots * 3000 + rng.normal(500, 60, spots.shape)).astype(np.uint16))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "CERBER_DEFAULT_MODEL")}
    where = _run([python, "-c", "from cerber_model.runtime.bundle import default_bundle_path as p; print(p())"],
                 cwd=work, env=env).stdout.strip()
    assert Path(where) == (purelib / "cerber_model" / "models" / "default").resolve()
    _run([scripts / "cerber", "analyze", "spots.tif", "--out", "results", "--quiet"], cwd=work, env=env)
    with open(work / "results" / "spots_tracks.csv", newline="") as fh:
        found = np.array([[float(r["row"]), float(r["col"])] for r in csv.DictReader(fh)])
    assert len(found) == len(SPOTS), found
    assert np.linalg.norm(found[:, None] - SPOTS[None], axis=2).min(axis=0).max() < 1.0
    with open(work / "results" / "summary.csv", newline="") as fh:
        assert next(csv.DictReader(fh))["model"] == load_bundle(MODEL).config.name
    # The first default ships too, and is reached by its name from anywhere.
    info = _run([scripts / "cerber", "info", "v1"], cwd=work, env=env).stdout
    assert f"({(purelib / 'cerber_model' / 'models' / 'v1').resolve()})" in info
