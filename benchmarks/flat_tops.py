"""Flat-topped spots: saturated spots, discs and squares of even brightness, counted by a model.

A saturated spot's top is flat, and so is a disc or square of even brightness (the real-images
issue's test: 5 x 5 px squares on noise). On images of 16-bit noise (SD 20 grey levels over 1000)
with such objects every 40 px, shifted together by up to 5 px (225 per 640 x 640 px image), each
kind is analyzed as a user would (``analyze()`` with the model's own setting) and the tracks are
matched to the objects' centres (F1 at 3 px): found, false, missed. ``--large`` adds the issue's
8000 x 8000 px image of noise with 3000 squares of 5 x 5 px at 10 noise SDs (about 2.5 minutes).

    python benchmarks/flat_tops.py [--model default] [--large]
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

NOISE, LEVEL = 20.0, 1000.0


def _grid(size: int, rng: np.random.Generator) -> np.ndarray:
    centres = np.array([(r, c) for r in range(30, size - 20, 40) for c in range(30, size - 20, 40)], float)
    return centres + rng.uniform(-5, 5, (1, 2))


def _image(kind: tuple[str, float, float], size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One test image of ``kind`` (shape, size, height; see :data:`KINDS`) as uint16, and its
    objects' centres."""
    shape, extent, height = kind
    rng = np.random.default_rng(seed)
    centres = _grid(size, rng)
    image = rng.normal(LEVEL, NOISE, (size, size))
    rr, cc = np.indices(image.shape)
    if shape == "square":  # its centre is its middle pixel
        centres = np.rint(centres)
        for r, c in centres.astype(int):
            image[r - 2:r + 3, c - 2:c + 3] += height * NOISE
    elif shape == "disc":
        for r, c in centres:
            image[(rr - r) ** 2 + (cc - c) ** 2 <= extent**2] += height * NOISE
    else:  # a saturated spot: SD ``extent``, 200 noise SDs, cut at ``height`` of its peak
        spots = np.zeros(image.shape)
        for r, c in centres:
            near = (slice(max(int(r) - 20, 0), int(r) + 21), slice(max(int(c) - 20, 0), int(c) + 21))
            spots[near] += np.exp(-((rr[near] - r) ** 2 + (cc[near] - c) ** 2) / (2 * extent**2))
        image = np.minimum(image + 200 * NOISE * spots, LEVEL + height * 200 * NOISE)
    return np.clip(np.rint(image), 0, 65535).astype(np.uint16), centres


#: Label: (shape, size, height). Squares of 5 x 5 px at that many noise SDs; discs of that radius
#: (px) at 20 noise SDs; saturated spots of that SD (px), 200 noise SDs, cut at that fraction of
#: their peak.
KINDS = {
    "square 5 SD": ("square", 5.0, 5.0), "square 10 SD": ("square", 5.0, 10.0),
    "square 30 SD": ("square", 5.0, 30.0), "disc 3 px": ("disc", 3.0, 20.0), "disc 5 px": ("disc", 5.0, 20.0),
    "saturated 1.5 px at 0.3": ("saturated", 1.5, 0.3), "saturated 2.5 px at 0.3": ("saturated", 2.5, 0.3),
    "saturated 2.5 px at 0.6": ("saturated", 2.5, 0.6),
}


def _large(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """8000 x 8000 px of noise with 3000 squares of 5 x 5 px at 10 noise SDs, at least 12 px apart."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    candidates = rng.integers(10, 7990, (4000, 2))
    crowded = np.zeros(len(candidates), dtype=bool)
    crowded[cKDTree(candidates).query_pairs(12, output_type="ndarray").max(axis=1)] = True  # the later of a pair
    centres = candidates[~crowded][:3000]
    image = rng.normal(LEVEL, NOISE, (8000, 8000)).astype(np.float32)
    for r, c in centres:
        image[r - 2:r + 3, c - 2:c + 3] += 10 * NOISE
    return np.clip(np.rint(image), 0, 65535).astype(np.uint16), centres.astype(float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--large", action="store_true", help="also the 8000 x 8000 px image of 3000 squares")
    args = parser.parse_args()
    bundle = load_model(args.model)
    cases = [(label, *_image(kind, 640, seed)) for seed, (label, kind) in enumerate(KINDS.items())]
    print(f"{'objects':28s} {'true':>5s} {'tracks':>6s} {'found':>5s} {'false':>5s} {'missed':>6s}   F1")
    for kind, image, centres in cases + ([("3000 squares, 8000 x 8000 px", *_large())] if args.large else []):
        start = time.perf_counter()
        tracks = analyze(image, bundle).tracks
        match = match_points(np.c_[tracks.columns["row"], tracks.columns["col"]], centres)
        print(f"{kind:28s} {len(centres):5d} {tracks.count:6d} {match.tp:5d} {match.fp:5d} {match.fn:6d}   "
              f"{match.f1:.3f}  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
