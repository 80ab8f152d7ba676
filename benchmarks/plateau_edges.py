"""Spots on and near the edge of a bright plateau (a nucleus): does a model still see them?

A 256 x 256 image of flat noise (SD 2) with a disc of radius 80 px and soft edges (3 px) raised
by 0, 5, 15 or 30 noise SDs, and eight spots of SD 1.5 px at 10, 30 or 80 noise SDs: one at the
disc's centre, four 8-12 px inside its edge, one 52 px inside, two far outside. Prints the model's probability at
each spot centre. A background estimate that lags at the edge leaves the spots near it on a
residual ramp; a model that has only seen such ramps as rims gives them low probabilities.

    python benchmarks/plateau_edges.py MODEL [--block 16]   # MODEL: a folder, or 'default'
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cerber_model.runtime.analysis import predict_probability  # noqa: E402
from cerber_model.runtime.bundle import load_model  # noqa: E402

#: Spot centres (row, col): the centre, five inside the edge (radius 80), two far outside.
SPOTS = np.array([[128, 128], [128, 60], [128, 196], [60, 128], [200, 128], [128, 100], [20, 20], [235, 235]], float)
WHERE = ["centre", "12 px in", "12 px in", "12 px in", "8 px in", "52 px in", "outside", "outside"]


def image(plateau_sd: float, spot_sd: float, rng: np.random.Generator, noise: float = 2.0) -> np.ndarray:
    yy, xx = np.mgrid[:256, :256].astype(np.float64)
    disc = 1 / (1 + np.exp((np.hypot(yy - 128, xx - 128) - 80) / 3))
    spots = np.zeros_like(yy)
    for r, c in SPOTS:
        spots += np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * 1.5**2))
    return (100 + noise * (plateau_sd * disc + spot_sd * spots) + rng.normal(0, noise, yy.shape)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model folder, or 'default'")
    parser.add_argument("--block", type=int, help="background normalisation: analyse with blocks of this size")
    args = parser.parse_args()
    bundle = load_model(args.model)
    norm = bundle.config.normalization
    if args.block:
        norm = replace(norm, block=args.block)
    engine = bundle.engine()
    rng = np.random.default_rng(0)
    print(f"{args.model}, normalisation {norm.to_dict()}; probability at each spot "
          f"({', '.join(WHERE)}; inside: distance inside the disc's edge)")
    for plateau in (0, 5, 15, 30):
        for spot in (10, 30, 80):
            p = predict_probability(image(plateau, spot, rng), engine, norm)
            values = " ".join(f"{p[int(r), int(c)]:.2f}" for r, c in SPOTS)
            print(f"plateau {plateau:2d} SD, spots {spot:2d} SD: {values}")


if __name__ == "__main__":
    main()
