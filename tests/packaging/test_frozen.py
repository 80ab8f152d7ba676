"""The standalone analyzer, built from the tracked files of this checkout as a user would build it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_frozen_analyzer_passes_its_selftest_and_matches_the_source_run(tmp_path):
    pytest.importorskip("PyInstaller")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to copy the tracked files from")
    # A clean checkout: only tracked files (no build folders, caches or local models).
    source = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    run = subprocess.run([sys.executable, str(source / "packaging" / "build.py"), "--check",
                          "--dist", str(tmp_path / "dist"), "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=1500)
    print(run.stdout, run.stderr[-3000:])
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "selftest ok" in run.stdout and "window ok" in run.stdout
    assert "identical to the source run" in run.stdout
    assert "generate with 2 worker processes: ok" in run.stdout
    assert "ok, maps identical to the source run" in run.stdout
    app = tmp_path / "dist" / "Cerber"
    assert (app / "_internal" / "cerber_model" / "models" / "default" / "model.onnx").is_file()
    assert not list(app.rglob("tensorflow*")), "the analyzer must not carry TensorFlow"
