"""How many spots of the synthetic sweeps an ideal detector could find, keeping to one false
track per megapixel on plain noise (the blank-image goal of the real-images issue).

A spot of peak amplitude A and SDs sd_u, sd_v in white noise of SD sigma stands out of the noise,
under a filter matched to it, by

    m = A / sigma * sqrt(pi * sd_u * sd_v)        (noise SDs)

(the ``min_detectability`` of the realistic recipe). An ideal observer that knew every spot's
position and shape and called it a spot where its matched filter reached a threshold T would
find it with probability Phi(m - T). T is not free: a detector has to search every position and
size, and noise alone passes T there. This script measures T on white noise: the height that
one local maximum per megapixel reaches, over the largest of a bank of round matched filters at
the set's spot sizes. Averaged over a set's spots, Phi(m - T) is the recall such an observer
would expect with no false tracks at all beyond that one per megapixel; its F1 is 2R / (1 + R).
It is a ceiling, not a detector: it is told where the spots are and how they are shaped. Pairs of
spots closer than they can be told apart lower it further (counted beside it).

The sets are those of ``compare_real_images.py`` for which the noise is what its SNR says: the
prototype's look with the noise not clipped, the issue's strong background and the camera-like
sweeps on a flat and a strong background (the same recipes and seeds; the images are drawn
again here, not read). Not the clipped sweep: there the clipped pixels show the spots without
noise, so the SNR understates them.

    python benchmarks/ideal_observer.py [--count 12]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from compare_real_images import camera_specs, strong_specs, unclipped_specs  # noqa: E402

from cerber_model.runtime.synthesis import Sample, make_sample  # noqa: E402

#: False local maxima per megapixel allowed on noise: the blank-image goal.
FALSE_PER_MEGAPIXEL = 1.0


def matched_snr(sample: Sample) -> np.ndarray:
    """Each spot's height above white noise under its own matched filter, in noise SDs."""
    assert sample.sds is not None
    return sample.snr * np.sqrt(math.pi * sample.sds[:, 0] * sample.sds[:, 1])


def noise_threshold(sds: tuple[float, float], megapixels: int = 16, per_megapixel: float = FALSE_PER_MEGAPIXEL,
                    seed: int = 0) -> float:
    """The height reached by ``per_megapixel`` local maxima per megapixel of white noise, over the
    largest response of round matched filters (unit noise SD) at SDs spaced by 1.25 from
    ``sds[0]`` to ``sds[1]``; local maxima over 5 x 5 px, ``megapixels`` of 1024 x 1024 px."""
    from scipy import ndimage

    scales = np.geomspace(sds[0], sds[1], max(2, 1 + math.ceil(math.log(sds[1] / sds[0]) / math.log(1.25))))
    margin = int(4 * sds[1]) + 1
    rng = np.random.default_rng(seed)
    peaks = []
    for _ in range(megapixels):
        noise = rng.standard_normal((1024 + 2 * margin,) * 2).astype(np.float32)
        # A Gaussian of SD s smooths white noise of SD 1 to SD 1 / (2 sqrt(pi) s).
        best = np.max([ndimage.gaussian_filter(noise, s) * np.float32(2 * math.sqrt(math.pi) * s) for s in scales],
                      axis=0)[margin:-margin, margin:-margin]
        peaks.append(best[best == ndimage.maximum_filter(best, 5)])
    values = np.sort(np.concatenate(peaks))[::-1]
    return float(values[max(0, round(per_megapixel * megapixels * 1024 * 1024 / 1e6) - 1)])


def ceiling(samples: list[Sample], threshold: float) -> tuple[float, float]:
    """The ideal observer's expected recall at ``threshold``, and the share of spots with a neighbour
    closer than the larger of the two spots' largest SDs times 1.5 (too close to part)."""
    from scipy.spatial import cKDTree
    from scipy.special import ndtr

    found, close, total = 0.0, 0, 0
    for s in samples:
        found += float(ndtr(matched_snr(s) - threshold).sum())
        total += len(s.centres)
        if len(s.centres) > 1:
            assert s.sds is not None
            distance, nearest = cKDTree(s.centres).query(s.centres, 2)
            widest = np.maximum(s.sds.max(axis=1), s.sds[nearest[:, 1]].max(axis=1))
            close += int((distance[:, 1] < 1.5 * widest).sum())
    return found / max(total, 1), close / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=12, help="images per set (compare_real_images' default)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    specs = [*unclipped_specs(), *strong_specs(), *camera_specs(backgrounds=("flat", "strong bg"))]
    sets = [(label, [make_sample(recipe, seed, i) for i in range(args.count)]) for label, recipe, seed in specs]
    thresholds = {(2.0, 6.0): noise_threshold((2.0, 6.0)), (1.0, 3.0): noise_threshold((1.0, 3.0))}
    print(f"Threshold T (noise SDs) with {FALSE_PER_MEGAPIXEL:g} false peak per megapixel of white noise: "
          + ", ".join(f"spots of SD {a:g}-{b:g} px {t:.2f}" for (a, b), t in thresholds.items()))
    print(f"\n{'set':28s} {'recall':>7s} {'F1':>7s} {'too close':>10s}")
    for label, samples in sets:
        recall, close = ceiling(samples, thresholds[(1.0, 3.0) if label.startswith("camera") else (2.0, 6.0)])
        print(f"{label:28s} {recall:7.3f} {2 * recall / (1 + recall):7.3f} {close:10.3f}", flush=True)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
