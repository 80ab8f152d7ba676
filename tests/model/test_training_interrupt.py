"""Interrupting ``cerber train`` (Ctrl+C, a scheduler's SIGTERM) saves the best model so far, as the
app's Stop does, and keeps the checkpoints for --resume (slow: real training in a subprocess)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from cerber_model.cli import main
from cerber_model.runtime.bundle import load_bundle
from cerber_model.training.loop import check_output

pytestmark = pytest.mark.slow

TINY = ["--width", "1", "--patch-size", "32", "--batch-size", "2", "--steps", "2", "--no-xla", "--quiet"]


def cerber_train(*args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "cerber_model.cli", "train", *map(str, args), *TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def interrupt_after_the_first_epoch(process, signum, timeout=90):
    """Send ``signum`` once the first epoch is reported; the process's exit code and its output."""
    deadline = time.monotonic() + timeout
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("epoch 1:"):
            process.send_signal(signum)
            break
        assert time.monotonic() < deadline, "".join(lines)
    else:
        pytest.fail("cerber train ended before its first epoch:\n" + "".join(lines) + process.stderr.read())
    out, err = process.communicate(timeout=timeout)
    return process.returncode, "".join(lines) + out, err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interrupt") / "data"
    assert main(["generate", str(folder), "--size", "64", "64", "--count", "4", "--seed", "1", "--workers", "1",
                 "--quiet"]) == 0
    return folder


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_the_best_model_so_far_and_keeps_the_checkpoints(data, tmp_path, signum, code):
    model = tmp_path / "model"
    returncode, out, err = interrupt_after_the_first_epoch(cerber_train(data, "--out", model, "--epochs", "50"),
                                                           signum)
    assert returncode == code, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("cerber: interrupted; the best model so far (epoch 1 of ") and str(model) in last, err
    assert "Traceback" not in err
    bundle = load_bundle(model)
    assert bundle.config.provenance["stopped"] == "interrupted"
    # The checkpoints stay, and --resume may continue the run into the model it saved (no --overwrite).
    checkpoint = check_output(model, resume=True)
    assert checkpoint is not None and len(checkpoint.history) == bundle.config.provenance["epochs_run"] >= 1
