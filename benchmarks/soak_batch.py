"""Batch soak: does `cerber analyze` hold its memory over hundreds of images?

Generates N synthetic images (the "training" recipe, 512 x 512 by default) unless they exist,
runs `cerber analyze` over all of them as a user would (one process), samples the process's
resident memory every 0.1 s, and compares the peak after the first 50 images with the peak over
the whole run. The target: the whole run's peak within 10% of the peak after 50 images.

    python benchmarks/soak_batch.py [--count 500] [--size 512] [--data build/soak]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "soak")
    parser.add_argument("--early", type=int, default=50, help="images after which the first peak is taken")
    args = parser.parse_args()

    images = args.data / "train" / "images"
    if not images.is_dir() or len(list(images.iterdir())) < args.count:
        subprocess.run([sys.executable, "-m", "cerber_model.cli", "generate", str(args.data), "--count",
                        str(args.count), "--seed", "5", "--recipe", "training", "--size", str(args.size),
                        str(args.size), "--val-fraction", "0", "--quiet"], check=True, cwd=ROOT)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "cerber_model.cli", "analyze", str(images), "--out", out,
                                 "--quiet"], cwd=ROOT)
        watched = psutil.Process(proc.pid)
        peak = early_peak = 0
        early_done = False
        while proc.poll() is None:
            try:
                rss = watched.memory_info().rss
            except psutil.NoSuchProcess:
                break
            peak = max(peak, rss)
            if not early_done:
                early_peak = max(early_peak, rss)
                early_done = len(list(Path(out).glob("*_tracks.csv"))) >= args.early
            time.sleep(0.1)
        seconds = time.perf_counter() - start
        done = len(list(Path(out).glob("*_tracks.csv")))
    print(f"{done} images of {args.size} x {args.size} px analyzed in {seconds:.0f} s ({seconds / done:.2f} s each), "
          f"exit {proc.returncode}")
    print(f"peak RSS after {args.early} images: {early_peak / 2**20:.0f} MiB; over the whole run: "
          f"{peak / 2**20:.0f} MiB ({peak / early_peak:.3f}x; target <= 1.10x)")


if __name__ == "__main__":
    main()
