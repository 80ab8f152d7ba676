"""Training memory and throughput on a folder of full-size (1608 x 1608) images.

Generates a small set of 1608 x 1608 synthetic images (once), then for each
width runs the real trainer (streaming patches, lazy image cache, validation)
for a few steps in a fresh process, four times: the straightforward Keras graph
(one layer per branch and step) as Keras runs it on a CPU (no XLA), the same with
its training step compiled by XLA, and the fused graph (the branches stacked into
wide operations) without and with XLA; the last is how Cerber trains by default.
Prints peak RSS and training throughput in
pixels per second (patch pixels per second of training steps, the first two
steps excluded, which include compiling) and the ratio of the two. The
prototype needed over 21 GiB for one 1608 x 1608 image per step.

    python benchmarks/bench_training.py [--widths 1 2 4] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


MODES = ((0, 0, "straightforward graph"), (0, 1, "straightforward graph + XLA"),
         (1, 0, "fused graph"), (1, 1, "fused graph + XLA (Cerber's default)"))


def child(args) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from cerber_model.runtime.datasets import DatasetSpec
    from cerber_model.training import TrainingConfig, train
    from cerber_model.training.events import BatchDone

    stamps = []

    def on_event(event):
        if isinstance(event, BatchDone):
            stamps.append(time.perf_counter())

    config = TrainingConfig(width=args.width, epochs=1, steps_per_epoch=args.steps, patch_size=args.patch,
                            batch_size=args.batch, val_patches=args.batch, val_images=1, patience=0,
                            xla=bool(args.xla), fused=bool(args.fused))
    out = Path(tempfile.mkdtemp()) / "model"
    train(config, DatasetSpec.from_folder(args.data), out, callback=on_event)
    stamps = stamps[1:]  # from the end of step 2: steps 1-2 include tracing and compiling
    steps = len(stamps) - 1
    rate = steps * args.batch * args.patch**2 / (stamps[-1] - stamps[0]) if steps > 0 else float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"px_per_s": rate, "s_per_step": (stamps[-1] - stamps[0]) / max(steps, 1),
                      "peak_rss_gib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--data", default=str(ROOT / "build" / "bench-train-1608"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--xla", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--fused", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from cerber_model.runtime.synthesis import Recipe, generate_dataset

    data = Path(args.data)
    if not (data / "recipe.json").is_file():
        generate_dataset(data, args.images, seed=5, recipe=Recipe(tracks=(10, 20), snr=(1, 5)), val_fraction=0.2)
    print(f"training on {args.images} images of 1608 x 1608 px, patches {args.patch} px, batch {args.batch}")
    for width in args.widths:
        rates = {}
        for fused, xla, label in MODES:
            cmd = [sys.executable, __file__, "--child", "--width", str(width), "--steps", str(args.steps),
                   "--patch", str(args.patch), "--batch", str(args.batch), "--data", str(data), "--xla", str(xla),
                   "--fused", str(fused)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rates[label] = r["px_per_s"]
            base = rates[MODES[0][2]]
            print(f"  width {width}, {label}: {r['px_per_s'] / 1e3:.0f} k px/s ({r['s_per_step']:.2f} s per step, "
                  f"{r['px_per_s'] / base:.2f}x), peak RSS {r['peak_rss_gib']:.2f} GiB "
                  "(whole process, validation included)", flush=True)


if __name__ == "__main__":
    main()
