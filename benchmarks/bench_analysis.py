"""Analysis speed and memory: Cerber's tiled fused engine against the straightforward Keras graph.

Prints, for one set of weights (width n, Keras' own initialisation):
  * the machine's float32 matmul rate (numpy, all cores), the reference for FLOP rates;
  * Keras: the straightforward per-branch graph predicting a whole 1608 x 1608 image
    (model.predict, as the prototype did), first call and repeated calls;
  * Cerber: analyze() (normalise, tile, ONNX Runtime fused graph, track table)
    on the same image, first call and repeated calls, and the speed-up;
  * peak RSS of a fresh process analyzing one 1608 x 1608 and one 8000 x 8000 image.

Each measurement runs in its own process so that peak RSS is that job's alone.
Timings on shared machines are noisy: compare the ratios printed in one run.

    python benchmarks/bench_analysis.py [--width 4] [--repeats 3] [--skip-8000]
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """A 16-bit image with spots on an uneven, noisy background, made in row blocks so
    that making it does not dominate the peak memory being measured."""
    rng = np.random.default_rng(seed)
    image = np.empty((size, size), np.uint16)
    cols = np.linspace(-1, 1, size, dtype=np.float32)[None, :]
    for r0 in range(0, size, 512):
        rows = np.linspace(-1, 1, size, dtype=np.float32)[r0:r0 + 512, None]
        block = 300 + 200 * np.exp(-(rows**2 + cols**2)) + rng.normal(0, 20, (len(rows), size)).astype(np.float32)
        image[r0:r0 + 512] = np.clip(block, 0, 65535)
    n = size * size // 20000
    rr = rng.integers(5, size - 5, n)
    cc = rng.integers(5, size - 5, n)
    for dr in range(-4, 5):
        for dc in range(-4, 5):
            spot = image[rr + dr, cc + dc] + 400 * np.exp(-(dr * dr + dc * dc) / 8.0)
            image[rr + dr, cc + dc] = np.clip(spot, 0, 65535)
    return image


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def child_keras(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from cerber_model.nn.keras_graph import build_cerber, set_weights
    from cerber_model.runtime.architecture import NetworkConfig
    from cerber_model.runtime.images import Normalization, normalize

    weights = dict(np.load(args.weights))
    model = build_cerber(NetworkConfig(width=args.width))
    set_weights(model, weights)
    x = normalize(synthetic_image(args.size), Normalization())[None, :, :, None]
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        model.predict(x, batch_size=1, verbose=0)
        times.append(time.perf_counter() - t)
    return {"times": times, "peak_rss_gib": peak_rss_gib()}


def child_cerber(args) -> dict:
    from cerber_model.runtime.analysis import analyze, predict_probability
    from cerber_model.runtime.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    image = synthetic_image(args.size)
    times, prob_times, counts = [], [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        predict_probability(image, bundle.engine(), bundle.config.normalization)
        prob_times.append(time.perf_counter() - t)
    prob_rss = peak_rss_gib()
    for _ in range(max(1, args.repeats - 1)):
        t = time.perf_counter()
        result = analyze(image, bundle)
        times.append(time.perf_counter() - t)
        counts.append(result.tracks.count)
    heavy = [m for m in ("tensorflow", "keras") if m in sys.modules]
    return {"times": times, "prob_times": prob_times, "prob_peak_rss_gib": prob_rss,
            "peak_rss_gib": peak_rss_gib(), "tracks": counts,
            "heavy_modules": heavy}


def run_child(kind: str, **kwargs) -> dict:
    cmd = [sys.executable, __file__, "--child", kind]
    for k, v in kwargs.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-8000", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=1608, help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = {"keras": child_keras, "cerber": child_cerber}[args.child](args)
        print(json.dumps(result))
        return

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from cerber_model.nn.bundling import make_bundle
    from cerber_model.nn.keras_graph import build_cerber, get_weights
    from cerber_model.runtime.architecture import NetworkConfig, flops_per_pixel
    from cerber_model.runtime.bundle import BundleConfig, default_bundle_path, save_bundle
    from cerber_model.runtime.tiling import DEFAULT_BORDER, DEFAULT_MARGIN, DEFAULT_WINDOW, pad_image, plan_tiles

    config = NetworkConfig(width=args.width)
    weights = get_weights(build_cerber(config))  # Keras' own initialisation
    tmp = Path(tempfile.mkdtemp(prefix="cerber-bench-"))
    np.savez(tmp / "weights.npz", **weights)
    bundle_path = save_bundle(make_bundle(BundleConfig(network=config), weights), tmp / "bundle")

    size = 1608
    gflop_image = flops_per_pixel(config) * size * size / 1e9
    padded_shape = pad_image(np.zeros((size, size), np.float32), DEFAULT_BORDER)[0].shape
    tiles = plan_tiles(padded_shape, DEFAULT_WINDOW, DEFAULT_MARGIN)
    computed_px = sum((t.window[1] - t.window[0]) * (t.window[3] - t.window[2]) for t in tiles)
    gflop_computed = flops_per_pixel(config) * computed_px / 1e9

    peak = matmul_gflops()
    print(f"Cerber analysis benchmark, width n={args.width}, {size} x {size} image, {os.cpu_count()} cores")
    print(f"  network: {gflop_image:.0f} GFLOP per image; tiled: {len(tiles)} windows of "
          f"{tiles[0].window[1] - tiles[0].window[0]} px computing {gflop_computed:.0f} GFLOP (overlap included)")
    print(f"  numpy float32 matmul (2048^3): {peak:.1f} GFLOP/s")

    keras = run_child("keras", width=args.width, size=size, repeats=args.repeats, weights=tmp / "weights.npz")
    ours = run_child("cerber", size=size, repeats=args.repeats, bundle=bundle_path)
    k_first, k_best = keras["times"][0], min(keras["times"][1:] or keras["times"])
    o_first, o_best = ours["prob_times"][0], min(ours["prob_times"][1:] or ours["prob_times"])
    a_best = min(ours["times"])
    print(f"  Keras straightforward graph, whole image: first {k_first:.2f} s, then {k_best:.2f} s; "
          f"peak RSS {keras['peak_rss_gib']:.2f} GiB")
    print(f"  Cerber probability map (tiles + fused ONNX): first {o_first:.2f} s, then {o_best:.2f} s; "
          f"peak RSS {ours['prob_peak_rss_gib']:.2f} GiB; TensorFlow loaded: {bool(ours['heavy_modules'])}")
    print(f"  Cerber analyze (the same + {ours['tracks'][-1]} tracks measured): {a_best:.2f} s; "
          f"peak RSS {ours['peak_rss_gib']:.2f} GiB")
    print(f"  speed-up of the probability map: {k_best / o_best:.2f}x (repeated calls), "
          f"{k_first / o_first:.2f}x (first calls)")
    useful = gflop_image / o_best
    print(f"  FLOP rate: {useful:.1f} GFLOP/s useful ({useful / peak:.2f} of matmul), "
          f"{gflop_computed / o_best:.1f} GFLOP/s computed ({gflop_computed / o_best / peak:.2f} of matmul)")
    if not args.skip_8000:
        big = run_child("cerber", size=8000, repeats=1, bundle=bundle_path)
        print(f"  8000 x 8000 probability map: {big['prob_times'][0]:.1f} s, "
              f"peak RSS {big['prob_peak_rss_gib']:.2f} GiB")
        print(f"  8000 x 8000 analyze: {big['times'][0]:.1f} s, {big['tracks'][0]} tracks, "
              f"peak RSS {big['peak_rss_gib']:.2f} GiB")
    default = default_bundle_path()
    if (default / "config.json").is_file():
        # A trained model gives realistic track counts, so the track stage is measured as users see it.
        for side in (size, 8000) if not args.skip_8000 else (size,):
            res = run_child("cerber", size=side, repeats=2, bundle=default)
            print(f"  default model ({default.name}), {side} x {side}: probability map "
                  f"{min(res['prob_times']):.1f} s, analyze {min(res['times']):.1f} s, {res['tracks'][-1]} tracks, "
                  f"peak RSS {res['peak_rss_gib']:.2f} GiB")


if __name__ == "__main__":
    main()
