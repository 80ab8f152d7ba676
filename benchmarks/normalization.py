"""How the input normalisations treat the same spot on different backgrounds, and plain noise.

    python benchmarks/normalization.py

Spots (SD 1.5 px, peak = SNR 3 x the local noise SD) on 512 x 512 16-bit images with
shot noise and read noise 3 e- (offset 100): a flat background of 100 photons, and a
vignetted one (2000 photons at the centre, 100 at the corners, plus a gradient along
the columns). Ten spots near the centre and ten near each corner, three seeds.
For each normalisation it prints the mean normalised spot height (3 x 3 maximum minus
the local median) per place, the local noise SD in normalised units, and for a
pure-noise image (the flat background without spots) the share of pixels that reach
the lowest SNR-3 spot height, i.e. what a network that finds those spots would have
to take for spots in plain noise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cerber_model.runtime.images import Normalization, normalize, robust_sd  # noqa: E402

SIZE, SNR, SD, READ = 512, 3.0, 1.5, 3.0
PLACES = {"centre": (256, 256), "corner": (60, 60), "far corner": (452, 452)}
SPOTS = [(r + dr, c + dc) for r, c in PLACES.values() for dr in (-30, 0, 30) for dc in (-30, 0, 30)]


def scene(kind: str, rng: np.random.Generator) -> np.ndarray:
    rr, cc = np.indices((SIZE, SIZE), dtype=np.float64)
    if kind == "vignetted":
        r2 = (rr - SIZE / 2) ** 2 + (cc - SIZE / 2) ** 2
        bg = 100 + 1900 * np.exp(-r2 / (2 * 150.0**2)) + 0.5 * cc
    else:
        bg = np.full((SIZE, SIZE), 100.0)
    signal = bg.copy()
    if kind != "noise":
        for r, c in SPOTS:
            signal += SNR * np.sqrt(bg[r, c] + READ**2) * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * SD**2))
    image = rng.poisson(signal) + rng.normal(0, READ, signal.shape) + 100
    return np.clip(np.rint(image), 0, 65535).astype(np.uint16)


def heights(x: np.ndarray) -> dict[str, float]:
    """Mean spot height per place."""
    h = [float(x[r - 1:r + 2, c - 1:c + 2].max() - np.median(x[r - 12:r + 13, c - 12:c + 13])) for r, c in SPOTS]
    return {name: float(np.mean(h[9 * i:9 * i + 9])) for i, name in enumerate(PLACES)}


def local_noise(x: np.ndarray, r: int, c: int) -> float:
    window = x[r - 40:r + 41, c - 40:c + 41].astype(np.float64)
    d = window[1:, :] - window[:-1, :]
    return robust_sd(d) / float(np.sqrt(2))


def main() -> None:
    for norm in (Normalization("percentile"), Normalization("background")):
        results: dict[str, list[float]] = {}
        noise_sds: dict[str, list[float]] = {}
        shares, seconds = [], []
        for seed in range(3):
            rng = np.random.default_rng(seed)
            lowest = np.inf
            for kind in ("flat", "vignetted"):
                image = scene(kind, rng)
                t0 = time.perf_counter()
                x = normalize(image, norm)
                seconds.append(time.perf_counter() - t0)
                for place, h in heights(x).items():
                    results.setdefault(f"{kind} {place}", []).append(h)
                    noise_sds.setdefault(f"{kind} {place}", []).append(local_noise(x, *PLACES[place]))
                    lowest = min(lowest, h)
            noise = normalize(scene("noise", rng), norm)
            shares.append(np.count_nonzero(noise - np.median(noise) >= lowest) / noise.size)
        print(f"{norm.to_dict()}: {np.median(seconds) * 1000:.0f} ms per {SIZE}^2 image")
        for key, values in results.items():
            print(f"  SNR-3 spot height {key:>20}: {np.mean(values):7.3f}   noise SD {np.mean(noise_sds[key]):.3f}")
        all_heights = [np.mean(v) for v in results.values()]
        print(f"  highest / lowest spot height: {max(all_heights) / min(all_heights):.1f}")
        print(f"  pure noise: {np.mean(shares) * 100:.2f} % of pixels reach the lowest SNR-3 spot height")


if __name__ == "__main__":
    main()
