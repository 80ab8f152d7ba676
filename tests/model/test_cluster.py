"""cerber analyze --scheduler: one task per image on a Dask cluster, the same bytes as a local run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cerber_model.cli import main
from cerber_model.runtime.bundle import save_bundle
from tests.model.helpers import gaussian_spots, tiny_bundle

distributed = pytest.importorskip("distributed")

SPOTS = np.array([[20, 18], [24, 60], [50, 40], [75, 15], [78, 64]], float)
OPTIONS = ["--save-probability", "--save-overlay", "--save-rois", "--save-napari", "--spectra", "--quiet"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_bundle(tiny_bundle(width=1, seed=2), tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(9)
    for i in range(5):
        spots = gaussian_spots((96, 80), SPOTS + i, sigma=2.0)
        tifffile.imwrite(folder / f"img{i}.tif", (spots * 3000 + rng.normal(500, 60, spots.shape)).astype(np.uint16))
    (folder / "img5.tif").write_bytes(b"II*\x00 damaged")
    return folder


@pytest.fixture(scope="module")
def local_run(inputs, model, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    assert main(["analyze", str(inputs), "--out", str(out), "--model", str(model), *OPTIONS]) == 1  # img5 fails
    return out


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "cerber.log"}


def test_a_cluster_run_writes_the_same_bytes_as_a_local_run(inputs, model, local_run, cluster, tmp_path, capsys):
    out = tmp_path / "cluster"
    code = main(["analyze", str(inputs), "--out", str(out), "--model", str(model), "--scheduler",
                 cluster.scheduler_address, *OPTIONS])
    err = capsys.readouterr().err
    assert code == 1 and "img5.tif" in err  # the damaged file fails, named, on the cluster too
    local = _files(local_run)
    # summary; per image tracks, map, overlay, ROIs, points; spectra (no diameters in um: no pixel size)
    assert len(local) == 1 + 5 * 5 + 3 and "spectrum_integrated_intensity.csv" in local
    assert _files(out) == local


_DIED = "cerber-test-worker-died"


def dies_once_on_img2(path, stem, settings, model):
    """A task that kills its worker process the first time it meets img2, as a crash would."""
    from cerber_model.cluster import analyze_on_worker

    marker = Path(settings.out).parent / _DIED
    if stem == "img2" and not marker.exists():
        marker.write_text("died")
        os._exit(1)
    return analyze_on_worker(path, stem, settings, model)


def test_an_image_whose_worker_dies_is_analyzed_again(inputs, model, local_run, cluster, tmp_path):
    import cloudpickle

    from cerber_model.cluster import analyze_on_cluster
    from cerber_model.runtime.batch import BatchSettings

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    out = tmp_path / "out"
    out.mkdir()
    items = [(p, p.stem) for p in sorted(inputs.glob("img[0-4].tif"))]
    settings = BatchSettings(out, save_probability=True, save_overlay=True, save_rois=True, save_napari=True)
    outcomes = list(analyze_on_cluster(items, settings, str(model), cluster.scheduler_address,
                                       task=dies_once_on_img2))
    assert (tmp_path / _DIED).exists()  # a worker did die on img2
    assert [o.error for o in outcomes] == [None] * 5
    names = [f.name for p, stem in items for f in settings.outputs(stem)]
    local = _files(local_run)
    assert {n: (out / n).read_bytes() for n in names} == {n: local[n] for n in names}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_no_scheduler_at_the_address_is_one_clear_line(inputs, model, tmp_path, capsys):
    code = main(["analyze", str(inputs / "img0.tif"), "--out", str(tmp_path / "o"), "--model", str(model),
                 "--scheduler", "tcp://127.0.0.1:9", "--quiet"])
    assert code == 2
    assert "no Dask scheduler answered at tcp://127.0.0.1:9" in capsys.readouterr().err


@pytest.mark.slow
def test_real_dask_scheduler_and_worker_processes(inputs, model, local_run, tmp_path):
    """What the README tells a lab to run: `dask scheduler`, `dask worker`, then cerber analyze --scheduler."""
    dask = shutil.which("dask", path=str(Path(sys.executable).parent))
    assert dask, "the dask command comes with the cluster extra"
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        import json

        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            processes.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard"],
                                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        out = tmp_path / "out"
        result = subprocess.run([sys.executable, "-m", "cerber_model.cli", "analyze", str(inputs), "--out", str(out),
                                 "--model", str(model), "--scheduler", address, *OPTIONS],
                                capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 1, result.stderr
        assert _files(out) == _files(local_run)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
