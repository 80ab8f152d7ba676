"""What training may replace at --out and in its checkpoint folder, and what it refuses before
reading any data (fast: the refusals come before TensorFlow is needed)."""

import json

import pytest

from cerber_model.runtime.datasets import DatasetSpec
from cerber_model.training import TrainingConfig, TrainingError, train
from cerber_model.training.loop import check_output, read_checkpoint, work_folder


def model_folder(path, stopped="finished"):
    """A folder as Cerber writes a model (what is_bundle_folder and the resume check read)."""
    path.mkdir(parents=True)
    config = {"format_version": 2, "network": {"width": 1}, "provenance": {"stopped": stopped}}
    (path / "config.json").write_text(json.dumps(config))
    return path


def checkpoints(work, epochs=1):
    """A run's checkpoint folder after ``epochs`` epochs, as the previous version wrote it."""
    work.mkdir(parents=True)
    history = [{"epoch": e + 1, "val_f1": 0.5} for e in range(epochs)]
    state = {"config": TrainingConfig(width=1).to_dict(), "history": history}
    (work / "state.json").write_text(json.dumps(state))
    (work / "last.keras").write_bytes(b"model")
    (work / "best.npz").write_bytes(b"weights")
    return work


class Events(list):
    def __call__(self, event):
        self.append(event)


@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}, {"overwrite": True, "resume": True}])
def test_a_folder_that_is_not_a_model_is_refused_before_the_data_are_read(tmp_path, flags):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    events = Events()
    with pytest.raises(TrainingError, match=f"{out} is a folder that does not hold a Cerber model"):
        train(TrainingConfig(), DatasetSpec.from_folder(tmp_path / "no data"), out, callback=events, **flags)
    assert events == []  # refused before the data were inspected
    assert (out / "chapter1.tex").read_text() == "years of work"


@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}])
def test_a_checkpoint_folder_with_files_of_the_users_is_not_cleared(tmp_path, flags):
    out = tmp_path / "model"
    work = checkpoints(work_folder(out))
    (work / "notes.txt").write_text("mine")
    (work / "figures").mkdir()
    events = Events()
    with pytest.raises(TrainingError, match=f"{work} holds files that are not Cerber's checkpoints "
                                            r"\(figures, notes.txt\)"):
        train(TrainingConfig(), DatasetSpec.from_folder(tmp_path / "no data"), out, callback=events, **flags)
    assert events == []
    assert sorted(p.name for p in work.iterdir()) == ["best.npz", "figures", "last.keras", "notes.txt", "state.json"]


def test_a_file_where_the_checkpoint_folder_would_be_is_refused(tmp_path):
    (tmp_path / "model.work").write_text("not a folder")
    with pytest.raises(TrainingError, match="model.work is not a checkpoint folder of Cerber's"):
        check_output(tmp_path / "model", overwrite=True)


def test_cerbers_own_checkpoints_and_their_temporary_files_may_be_replaced(tmp_path):
    work = checkpoints(work_folder(tmp_path / "model"))
    for name in (".best.tmp.npz", ".last.tmp.keras", ".state.json.k2j4_x9a.tmp", "best-0003.npz", "last-0004.keras",
                 ".best-0003.npz.abc123.tmp", ".last-0004.tmp.keras"):
        (work / name).write_bytes(b"")
    assert check_output(tmp_path / "model") is None


def test_resume_replaces_a_model_stopped_before_its_end_but_not_a_finished_one(tmp_path):
    out = model_folder(tmp_path / "model", stopped="finished")
    checkpoints(work_folder(out))
    with pytest.raises(TrainingError, match="holds a model whose run ended.*--overwrite"):
        check_output(out, resume=True)
    assert check_output(out, resume=True, overwrite=True) is not None  # train longer, replacing it
    for stopped in ("interrupted", "cancelled"):
        (out / "config.json").write_text(json.dumps({"format_version": 2, "network": {},
                                                     "provenance": {"stopped": stopped}}))
        checkpoint = check_output(out, resume=True)
        assert checkpoint is not None and [row["epoch"] for row in checkpoint.history] == [1]


def test_resume_with_nothing_to_resume_does_not_replace_a_model(tmp_path):
    out = model_folder(tmp_path / "model", stopped="interrupted")
    with pytest.raises(TrainingError, match="already exists"):
        check_output(out, resume=True)
    assert check_output(out, resume=True, overwrite=True) is None
    assert read_checkpoint(work_folder(out)) is None


def test_cerber_train_resume_says_when_there_is_nothing_to_resume(tmp_path, monkeypatch, capsys):
    """--resume alone no longer means --overwrite; with no checkpoint it says so and starts afresh."""
    import cerber_model.training as training
    from cerber_model.cli import main

    calls = []
    monkeypatch.setattr(training, "train", lambda *args, **kwargs: calls.append(kwargs))
    out = tmp_path / "model"
    assert main(["train", str(tmp_path / "data"), "--out", str(out), "--resume", "--quiet"]) == 0
    assert f"nothing to resume in {out}.work; starting afresh" in capsys.readouterr().err
    assert calls[0]["resume"] and not calls[0]["overwrite"]
    model_folder(out)
    assert main(["train", str(tmp_path / "data"), "--out", str(out), "--resume", "--quiet"]) == 2
    assert f"{out} already exists" in capsys.readouterr().err and len(calls) == 1


SIGNALS_CHECK = """
import os
import signal

from cerber_model.cli import _StopOnSignal
from cerber_model.runtime.progress import CancelToken

before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
token = CancelToken()
with _StopOnSignal(token) as signals:
    os.kill(os.getpid(), signal.SIGTERM)
    assert token.cancelled and token.reason == "interrupted" and signals.exit_code == 143
    try:
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("a second signal did not raise KeyboardInterrupt")
    except KeyboardInterrupt:
        pass
    assert signals.exit_code == 130
assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
print("signals ok")
"""


def test_signals_cancel_the_run_and_a_second_one_aborts():
    """cerber train turns SIGINT and SIGTERM into the app's Stop; its handlers are restored after.

    In a process of its own, as ``cerber train`` has: a test worker that has run other tests may
    hold threads and signal stacks of the libraries they loaded (seen: after a Dask cluster run with
    OpenVINO, the worker itself died of SIGSEGV when the signal arrived, in the kernel's delivery)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", SIGNALS_CHECK], capture_output=True, text=True, cwd=root,
                         timeout=120)
    assert run.returncode == 0 and "signals ok" in run.stdout, run.stdout + run.stderr
    assert "SIGTERM: stopping after this batch" in run.stderr
