"""House rules: cerber_model stays GUI-free, and analysis runs without TensorFlow."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_import_contract_holds():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(lint).exists():
        pytest.skip("import-linter is not installed")
    proc = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_analysis_path_needs_neither_tensorflow_nor_qt(tmp_path):
    """Load a bundle and analyze an image, then check what got imported."""
    from cerber_model.runtime.bundle import save_bundle
    from tests.model.helpers import tiny_bundle

    model = save_bundle(tiny_bundle(width=1), tmp_path / "m")
    code = f"""
import sys, numpy as np
from cerber_model.runtime.bundle import load_bundle
from cerber_model.runtime.analysis import analyze
from cerber_model import cli
from cerber_model.runtime import export
r = analyze(np.random.default_rng(0).random((50, 70)).astype(np.float32), load_bundle({str(model)!r}))
heavy = sorted(m for m in ("tensorflow", "keras", "onnx", "PySide6", "pyqtgraph") if m in sys.modules)
print("heavy:", heavy, r.probability.shape)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "heavy: [] (50, 70)" in proc.stdout
