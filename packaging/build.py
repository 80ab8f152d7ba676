"""Build the standalone app with PyInstaller and check it.

    python packaging/build.py [--full] [--dist DIR] [--work DIR] [--check]

Builds ``packaging/cerber.spec`` (the analyzer, or with ``--full`` the app with
TensorFlow and training) into ``DIR/Cerber`` (``DIR/Cerber-full``) and prints its
size. ``--check`` then runs the frozen program's ``--selftest`` (timed, from launch
to exit) and ``analyze`` on a sample image, and compares its track table byte for
byte with the same command run from the source install; ``generate`` with two
worker processes; and ``analyze`` on TIFFs in the compressions microscopes write. Exit status 1 if a check
fails.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "samples" / "img_hybiss_2d.tif"
ODD = ROOT / "tests" / "data" / "odd_images"


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def build(full: bool, dist: Path, work: Path) -> Path:
    command = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
               "--distpath", str(dist), "--workpath", str(work), str(ROOT / "packaging" / "cerber.spec")]
    if full:
        command += ["--", "--full"]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    app = dist / ("Cerber-full" if full else "Cerber")
    print(f"built {app} in {time.perf_counter() - start:.0f} s: {folder_size(app) / 1e6:.0f} MB "
          f"({folder_size(app) / 2**20:.0f} MiB)")
    return app


def executable(app: Path) -> Path:
    return app / (app.name + (".exe" if sys.platform == "win32" else ""))


def check(app: Path) -> bool:
    exe = executable(app)
    ok = True
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run = subprocess.run([str(exe), "--selftest"], capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if run.returncode != 0:
            print(f"--selftest FAILED (exit {run.returncode}):\n{run.stdout}\n{run.stderr}")
            return False
    print(run.stdout.strip())
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(f"--selftest from launch to exit: {min(times):.2f} s (best of 3; runs {runs})")
    with tempfile.TemporaryDirectory() as tmp:
        frozen, source = Path(tmp) / "frozen", Path(tmp) / "source"
        subprocess.run([str(exe), "analyze", str(SAMPLE), "--out", str(frozen), "--quiet"], check=True)
        # The analyzer has ONNX Runtime alone; the source run may have OpenVINO (auto), which agrees only to ~1e-6.
        subprocess.run([sys.executable, "-m", "cerber_model.cli", "analyze", str(SAMPLE), "--out", str(source),
                        "--quiet", "--engine", "onnxruntime"], check=True, cwd=ROOT)
        table = f"{SAMPLE.stem}_tracks.csv"
        same = filecmp.cmp(frozen / table, source / table, shallow=False)
        rows = len((frozen / table).read_text().splitlines()) - 1
        print(f"analyze {SAMPLE.name}: {rows} tracks; track table "
              + ("identical to the source run" if same else "DIFFERS from the source run"))
        ok &= same
        # Worker processes of the frozen program must run as workers (multiprocessing.freeze_support).
        data = Path(tmp) / "generated"
        try:
            run = subprocess.run([str(exe), "generate", str(data), "--count", "2", "--seed", "1", "--size", "64", "64",
                                  "--workers", "2", "--quiet"], capture_output=True, text=True, timeout=120)
            generated = run.returncode == 0 and len(list(data.glob("*/images/*.png"))) == 2
        except subprocess.TimeoutExpired:
            generated = False
        print("generate with 2 worker processes: " + ("ok" if generated else "FAILED"))
        ok &= generated
        # The codecs kept in the analyzer read what microscopes write (the spec leaves the others out):
        # every readable file of the odd-image corpus gives the source run's probability map.
        expected = json.loads((ODD / "corpus.json").read_text())
        odd = [str(ODD / name) for name in sorted(expected) if "refused" not in expected[name]]
        runs = {}
        for label, command in (("frozen", [str(exe)]), ("source", [sys.executable, "-m", "cerber_model.cli"])):
            runs[label] = subprocess.run(command + ["analyze", *odd, "--out", str(Path(tmp) / label / "odd"),
                                                    "--save-probability", "--quiet", "--engine", "onnxruntime"],
                                         capture_output=True, text=True, cwd=ROOT)
        maps = [f"{Path(name).stem}_probability.tif" for name in odd]
        same = all((Path(tmp) / "frozen" / "odd" / m).is_file() and np.array_equal(
            tifffile.imread(Path(tmp) / "frozen" / "odd" / m), tifffile.imread(Path(tmp) / "source" / "odd" / m))
            for m in maps)  # the pixels: the files' compressed bytes may differ (zlib of imagecodecs or Python)
        print(f"analyze {len(odd)} odd images (LZW, zstd, JPEG, CCITT G4, packed 2-12 bit, planar, ...): "
              + ("ok, maps identical to the source run" if same and runs["frozen"].returncode == 0
                 else f"FAILED\n{runs['frozen'].stderr[-2000:]}"))
        ok &= same and runs["frozen"].returncode == 0
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="include TensorFlow and training")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller's work folder")
    parser.add_argument("--check", action="store_true", help="run --selftest and compare analyze with the source")
    args = parser.parse_args(argv)
    app = build(args.full, args.dist.resolve(), args.work.resolve())
    return 0 if not args.check or check(app) else 1


if __name__ == "__main__":
    sys.exit(main())
