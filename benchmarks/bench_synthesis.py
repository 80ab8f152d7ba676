"""Synthetic image generation: the vectorised generator against a per-pixel loop.

The prototype computed every pixel of a 1608 x 1608 image in Python, summing
every Gaussian at every pixel. This script renders a crop of the same scene
(same random draws) that way, checks that both give the same values there, and
extrapolates the per-pixel time to the whole image.

    python benchmarks/bench_synthesis.py [--crop 48]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cerber_model.runtime.synthesis import Recipe, draw_scene, make_sample, render  # noqa: E402


def per_pixel(scene, recipe: Recipe, rows: range, cols: range) -> np.ndarray:
    """The prototype's way: every pixel, every Gaussian, in Python."""
    out = np.zeros((len(rows), len(cols)))
    h, w = recipe.height, recipe.width
    vsd, vamp = scene.vignette
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            v = min(max(scene.offset + scene.noise[r, c], 0.0), 255.0)
            for r0, c0, su, sv, a, amp in list(scene.tracks) + list(scene.blobs):
                dy, dx = r - r0, c - c0
                u = dx * math.cos(a) - dy * math.sin(a)
                q = dx * math.sin(a) + dy * math.cos(a)
                v += amp * math.exp(-0.5 * ((u / su) ** 2 + (q / sv) ** 2))
            v += vamp * math.exp(-0.5 * (((r - (h - 1) / 2) / vsd) ** 2 + ((c - (w - 1) / 2) / vsd) ** 2))
            out[i, j] = v
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=48)
    args = parser.parse_args()
    recipe = Recipe()  # the prototype's: 1608 x 1608
    times = []
    for i in range(3):
        t = time.perf_counter()
        make_sample(recipe, seed=1, index=i)
        times.append(time.perf_counter() - t)
    vec = min(times)
    scene = draw_scene(recipe, np.random.default_rng([1, 0]))
    # A crop around the first track (or the centre), so spots are inside it.
    r0, c0 = (scene.tracks[0, :2].astype(int) if len(scene.tracks) else (804, 804))
    rows = range(max(r0 - args.crop // 2, 0), max(r0 - args.crop // 2, 0) + args.crop)
    cols = range(max(c0 - args.crop // 2, 0), max(c0 - args.crop // 2, 0) + args.crop)
    per_px = float("inf")
    for _ in range(3):  # best of 3, like the vectorised time
        t = time.perf_counter()
        slow = per_pixel(scene, recipe, rows, cols)
        per_px = min(per_px, (time.perf_counter() - t) / slow.size)
    full = render(scene, recipe)[rows.start:rows.stop, cols.start:cols.stop]  # the generator's own code
    diff = np.abs(full - slow).max()
    whole = per_px * recipe.height * recipe.width
    print(f"1608 x 1608 image with {len(scene.tracks)} tracks and {len(scene.blobs)} inhomogeneities")
    print(f"  vectorised (local windows): {vec:.3f} s per image (best of 3)")
    print(f"  per pixel in Python: {per_px * 1e6:.1f} us per pixel on a {args.crop} x {args.crop} crop (best of 3) "
          f"-> {whole / 60:.1f} min per image (extrapolated)")
    print(f"  speed-up: {whole / vec:.0f}x; max difference on the crop: {diff:.2e} "
          f"(Gaussians beyond 4 SD are left out, wide ones interpolated from a coarser grid)")


if __name__ == "__main__":
    main()
