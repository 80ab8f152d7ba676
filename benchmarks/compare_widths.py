"""Choose a width by measurement: detection quality and analysis time of models of different widths.

For each model folder: its width and parameters, its best validation F1 from training, F1 at
3 px on the SNR sweep of eval_snr.py (same sets, same seeds), and the time to analyze one
1608 x 1608 image (probability map and tracks, best of 3 after a warm-up, same process).

    python benchmarks/compare_widths.py MODEL [MODEL ...] [--count 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from eval_snr import SWEEP, sets  # noqa: E402

from cerber_model.runtime.analysis import analyze  # noqa: E402
from cerber_model.runtime.architecture import count_parameters  # noqa: E402
from cerber_model.runtime.bundle import load_bundle  # noqa: E402
from cerber_model.runtime.datasets import find_pairs  # noqa: E402
from cerber_model.runtime.evaluation import evaluate  # noqa: E402
from cerber_model.runtime.synthesis import Recipe, make_sample  # noqa: E402


def analysis_seconds(bundle, repeats: int = 3) -> float:
    image = make_sample(Recipe(tracks=(10, 20), snr=(2, 4)), 99, 0).image
    analyze(image, bundle)  # warm-up: sessions, memory pools
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        analyze(image, bundle)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--count", type=int, default=8, help="images per SNR set (as eval_snr.py)")
    parser.add_argument("--data", default=str(ROOT / "build" / "eval-snr"))
    args = parser.parse_args()
    folders = sets(Path(args.data), args.count, 512)
    header = ["model", "width", "parameters", "val F1"] + [label for label, _ in SWEEP] + ["s per 1608^2"]
    print(" | ".join(header))
    for path in args.models:
        bundle = load_bundle(path)
        f1s = []
        for _label, folder in folders:
            pairs, problems, _ = find_pairs(folder / "images", folder / "masks")
            assert not problems, problems
            ev = evaluate(bundle, pairs, radius=3.0)
            f1s.append(ev.overall(ev.network).f1)
        width = bundle.config.network.width
        row = [path, str(width), f"{count_parameters(bundle.config.network)['trainable']:,}",
               f"{bundle.config.metrics.get('val_f1', np.nan):.3f}"] + [f"{f:.3f}" for f in f1s]
        row.append(f"{analysis_seconds(bundle):.2f}")
        print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
