"""Spots crowded everywhere: regular grids of round spots, counted by a model.

Where spots fill every part of an image (a track detector at high fluence, a dense bead slide), the
noise measured at a spot's scale and the background's response at the larger scales count the spots
themselves. On 640 x 640 px of 16-bit noise (SD 20 grey levels over 1000), round Gaussian spots of
one SD and amplitude (in noise SDs) sit on a square grid, each shifted by up to 2 px, and each image
is analyzed as a user would (``analyze()`` with the model's own setting); the tracks are matched to
the spots' centres (F1 at 3 px). Sparser grids of the same spots show what the model does where
they do not crowd. About a minute on a 2-core machine.

    python benchmarks/crowded_spots.py [--model default]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cerber_model.runtime.analysis import analyze  # noqa: E402
from cerber_model.runtime.bundle import load_model  # noqa: E402
from cerber_model.runtime.evaluation import match_points  # noqa: E402

NOISE, LEVEL, SIZE = 20.0, 1000.0, 640

#: (spot SD px, grid spacing px, amplitude in noise SDs): each crowded grid beside a sparser one.
GRIDS = ((1.0, 8, 10.0), (1.0, 10, 10.0), (2.0, 12, 10.0), (2.0, 15, 10.0), (3.0, 20, 20.0), (3.0, 30, 20.0),
         (5.0, 40, 20.0), (5.0, 60, 20.0))


def grid_image(sd: float, spacing: int, amplitude: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One test image (uint16) and its spots' centres."""
    rng = np.random.default_rng(seed)
    axis = np.arange(spacing, SIZE - spacing // 2, spacing)
    centres = np.array([(r, c) for r in axis for c in axis], float) + rng.uniform(-2, 2, (len(axis) ** 2, 2))
    image = rng.normal(LEVEL, NOISE, (SIZE, SIZE))
    rr, cc = np.indices(image.shape)
    reach = int(5 * sd) + 1
    for r, c in centres:
        near = (slice(max(int(r) - reach, 0), int(r) + reach + 1), slice(max(int(c) - reach, 0), int(c) + reach + 1))
        image[near] += amplitude * NOISE * np.exp(-((rr[near] - r) ** 2 + (cc[near] - c) ** 2) / (2 * sd**2))
    return np.clip(np.rint(image), 0, 65535).astype(np.uint16), centres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    bundle = load_model(args.model)
    print(f"{'spots':34s} {'true':>5s} {'tracks':>6s} {'found':>5s} {'false':>5s}   F1")
    for seed, (sd, spacing, amplitude) in enumerate(GRIDS):
        image, centres = grid_image(sd, spacing, amplitude, seed)
        start = time.perf_counter()
        tracks = analyze(image, bundle).tracks
        match = match_points(np.c_[tracks.columns["row"], tracks.columns["col"]], centres)
        label = f"SD {sd:g} px every {spacing} px, {amplitude:g} SDs"
        print(f"{label:34s} {len(centres):5d} {tracks.count:6d} {match.tp:5d} {match.fp:5d}   {match.f1:.3f}"
              f"  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
