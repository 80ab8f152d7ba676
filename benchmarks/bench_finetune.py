"""Fine-tuning from points: time on this machine, and F1 on the part of the image it never saw.

For each annotated image (``<stem>_points.csv`` beside it; by default the two samples), the
image is cut in two halves. The first half is the fine-tuning data (its first three quarters
train, its last quarter validates: it picks the epoch and threshold); the second half is never
seen. Then, as a user would (but from ``synthetic``, the model trained on synthetic images alone:
the default model learnt from the samples, so it would be scored on what it saw):

    cerber train DATA --out MODEL --start-from synthetic --epochs 3

is run and timed, and the second halves are scored (F1 at 3 px) with the starting model
(zero-shot; ``--start-from`` another model fine-tunes that one), the fine-tuned model,
and a Laplacian-of-Gaussian detector whose sigma and threshold are tuned on those very halves
(the classical baseline, tuned on the answer).

    python benchmarks/bench_finetune.py [IMAGES...] [--start-from MODEL] [--epochs 3] [--keep DIR]
                                        [--split rows|cols]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cerber_model.runtime.bundle import load_bundle, load_model  # noqa: E402
from cerber_model.runtime.datasets import Pair  # noqa: E402
from cerber_model.runtime.evaluation import evaluate  # noqa: E402
from cerber_model.runtime.images import read_image  # noqa: E402
from cerber_model.runtime.points import points_beside, read_points, write_points  # noqa: E402

SAMPLES = [ROOT / "assets" / "samples" / "img_hybiss_2d.tif", ROOT / "assets" / "samples" / "img_terra_2d.tif"]


def split(path: Path, data: Path, held_out: Path, along: str) -> None:
    image = read_image(path).data
    points = read_points(points_beside(path), image.shape)
    h, w = image.shape
    if along == "rows":
        half = h // 2
        parts = {"train": (slice(0, half * 3 // 4), slice(0, w)), "val": (slice(half * 3 // 4, half), slice(0, w)),
                 "test": (slice(half, h), slice(0, w))}
    else:
        half = w // 2
        parts = {"train": (slice(0, h), slice(0, half * 3 // 4)), "val": (slice(0, h), slice(half * 3 // 4, half)),
                 "test": (slice(0, h), slice(half, w))}
    for part, (rows, cols) in parts.items():
        pixels, inside = image[rows, cols], points.crop(rows, cols)
        folder = held_out if part == "test" else data / part
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "points").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / "images" / f"{path.stem}.tif", pixels)
        write_points(inside, folder / "points" / f"{path.stem}.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path, default=SAMPLES)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--start-from", default="synthetic",
                        help="model to fine-tune, a folder or a bundled model's name (default 'synthetic': the "
                             "default model has learnt from the two samples, so it would be scored on what it saw)")
    parser.add_argument("--split", choices=("rows", "cols"), default="rows")
    parser.add_argument("--keep", type=Path, help="keep the data and the fine-tuned model in this folder")
    parser.add_argument("--train-args", default="", help="extra arguments for cerber train")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        data, held_out, model = base / "data", base / "held_out", base / "model"
        for path in args.images:
            split(path, data, held_out, args.split)
        command = [sys.executable, "-m", "cerber_model.cli", "train", str(data), "--out", str(model),
                   "--start-from", args.start_from, "--epochs", str(args.epochs), *args.train_args.split()]
        print("$", " ".join(command[2:]))
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        pairs = [Pair(p, None, held_out / "points" / f"{p.stem}.csv")
                 for p in sorted((held_out / "images").iterdir())]
        start = load_model(args.start_from)
        finetuned = load_bundle(model)
        print(f"\nfine-tuning took {seconds:.0f} s ({seconds / 60:.1f} min) on this machine")
        print(f"{'held-out half':24s} {'true':>5s} {'start F1':>10s} {'fine-tuned F1':>13s} "
              f"{'LoG tuned on it':>15s}  LoG sigma, threshold")
        totals = {}
        for pair in pairs:
            zero, tuned = evaluate(start, [pair]), evaluate(finetuned, [pair])  # the LoG tuned on this image
            row = {"start": zero.network[0], "fine-tuned": tuned.network[0], "LoG": zero.log[0]}
            for key, score in row.items():
                totals[key] = totals[key] + score.match if key in totals else score.match
            print(f"{pair.name:24s} {row['start'].true_count:5d} {row['start'].match.f1:10.3f} "
                  f"{row['fine-tuned'].match.f1:13.3f} {row['LoG'].match.f1:15.3f}  "
                  f"{zero.log_settings['sigma_px']}, {zero.log_settings['threshold']}")
        print(f"{'OVERALL':24s} {'':5s} {totals['start'].f1:10.3f} {totals['fine-tuned'].f1:13.3f} "
              f"{totals['LoG'].f1:15.3f}")


if __name__ == "__main__":
    main()
