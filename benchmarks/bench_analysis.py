"""Analysis speed and memory: every inference engine side by side, at width 2 (the default) and 4.

For each width, one set of weights (the default model's where its width matches, else a fresh
He-normal initialisation) runs on each engine, each in a process of its own (so TensorFlow,
loaded for the Keras graph, does not slow the others, and peak RSS is that engine's alone):

  keras         the straightforward Keras graph (KerasEngine: built once, then predict_on_batch)
  ort-unfolded  ONNX Runtime on the fused graph as exported before the channel-gather fold
  onnxruntime   ONNX Runtime on the fused graph (the default engine)
  openvino-f32  OpenVINO, INFERENCE_PRECISION_HINT f32 (OpenVinoEngine's default)
  openvino      OpenVINO at its own precision (bf16 or f16 where the CPU has them, else f32)

Each is timed on one 1024 x 1024 window (engine.predict) and on a 1608 x 1608 image (the
probability map: normalise, tile into four 884 px windows, stitch), first call and best of the
repeated calls; with --rounds N every engine runs N times, in turn, and the best counts, so that
a load coming and going on a shared machine falls on all of them. The useful FLOP rate counts
the network's convolution work for the pixels asked for (not the tiles' overlap), as a fraction
of numpy's float32 matmul rate, measured in the same run before and after the engines.
"max diff" is the largest difference of the engine's window output from ONNX Runtime's.

Then, unless --skip-analyze, the whole analyze() (with the track table) and its peak RSS at the
first width, a 8000 x 8000 image (unless --skip-8000) and the default model on the same sizes;
and one 1608 x 1608 image as a whole process: ``cerber analyze`` on each engine against a script
running the straightforward Keras graph of the same weights (start-up and loading included).

Timings on shared machines are noisy: compare the ratios printed in one run.

    python benchmarks/bench_analysis.py [--widths 2,4] [--repeats 2] [--rounds 1]
                                        [--engines keras,onnxruntime] [--skip-analyze] [--skip-8000]
                                        [--whole-process-only]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENGINES = ("onnxruntime", "ort-unfolded", "openvino-f32", "openvino", "keras")
REFERENCE = "onnxruntime"
WINDOW = 1024
IMAGE = 1608


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


def _engine(args):
    """The engine ``args.engine`` names, built once."""
    from cerber_model.runtime.engine import OnnxEngine, OpenVinoEngine

    if args.engine == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from cerber_model.nn.keras_graph import KerasEngine
        from cerber_model.runtime.architecture import NetworkConfig

        return KerasEngine(NetworkConfig(width=args.width), dict(np.load(args.weights)))
    model = Path(args.onnx).read_bytes()
    if args.engine in ("onnxruntime", "ort-unfolded"):
        return OnnxEngine(model)
    return OpenVinoEngine(model, precision="f32" if args.engine == "openvino-f32" else None)


def child_engine(args) -> dict:
    """One engine: a 1024 x 1024 window and a 1608 x 1608 probability map, first and repeated calls."""
    from cerber_model.runtime.analysis import predict_probability
    from cerber_model.runtime.images import Normalization, normalize

    norm = Normalization()
    image = synthetic_image(IMAGE)
    window = np.ascontiguousarray(normalize(image, norm)[:WINDOW, :WINDOW])
    t = time.perf_counter()
    engine = _engine(args)
    setup = time.perf_counter() - t

    def timed(fn):
        t = time.perf_counter()
        out = fn()
        return time.perf_counter() - t, out

    window_times, image_times = [], []
    for _ in range(1 + args.repeats):
        dt, out = timed(lambda: engine.predict(window))
        window_times.append(dt)
        image_times.append(timed(lambda: predict_probability(image, engine, norm))[0])
    np.save(args.out, out)
    return {"setup": setup, "window": window_times, "image": image_times, "peak_rss_gib": peak_rss_gib(),
            "precision": getattr(engine, "precision", "f32"),
            "tensorflow": "tensorflow" in sys.modules}


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
            "peak_rss_gib": peak_rss_gib(), "tracks": counts, "engine": bundle.engine().name,
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


def graphs(width: int, folder: Path) -> tuple[str, dict[str, Path]]:
    """The weights (and where they come from) and the fused graph, folded and not, as files."""
    from unittest import mock

    from cerber_model.nn import fused
    from cerber_model.runtime.architecture import NetworkConfig, init_weights
    from cerber_model.runtime.bundle import default_bundle_path, load_bundle

    config = NetworkConfig(width=width)
    default = default_bundle_path()
    if (default / "config.json").is_file() and (bundle := load_bundle(default)).config.network.width == width:
        weights, source = bundle.weights, f"the default model's ({default.name})"
        config = bundle.config.network
    else:
        weights, source = init_weights(config), "He-normal initialisation"
    files = {"weights": folder / f"weights-n{width}.npz", "folded": folder / f"n{width}.onnx",
             "unfolded": folder / f"n{width}-unfolded.onnx"}
    np.savez(files["weights"], **weights)
    files["folded"].write_bytes(fused.export_onnx(config, weights))
    with mock.patch.object(fused, "fold_channel_gathers", lambda model: 0):
        files["unfolded"].write_bytes(fused.export_onnx(config, weights))
    return source, files


def compare_engines(args, tmp: Path) -> list[tuple]:
    """Each engine at each width, in processes of their own: (width, weights source, FLOP per pixel, results)."""
    from cerber_model.runtime.architecture import NetworkConfig, flops_per_pixel

    rows = []
    for width in args.widths:
        source, files = graphs(width, tmp)
        results: dict[str, dict] = {}
        for round_ in range(args.rounds):
            # Round after round, so that a load coming and going on a shared machine falls on all engines.
            for name in args.engines:
                onnx = files["unfolded"] if name == "ort-unfolded" else files["folded"]
                r = run_child("engine", engine=name, width=width, repeats=args.repeats, onnx=onnx,
                              weights=files["weights"], out=tmp / f"out-n{width}-{name}.npy")
                if name in results:  # first calls from the first round; repeated calls from every round
                    r = {**results[name], "window": results[name]["window"] + r["window"][1:],
                         "image": results[name]["image"] + r["image"][1:],
                         "peak_rss_gib": max(results[name]["peak_rss_gib"], r["peak_rss_gib"])}
                results[name] = r
                print(f"  n={width} {name} round {round_ + 1}/{args.rounds}: done", file=sys.stderr, flush=True)
        rows.append((width, source, flops_per_pixel(NetworkConfig(width=width)), results))
    return rows


def print_engines(rows: list[tuple], tmp: Path, matmul: float) -> None:
    for width, source, per_px, results in rows:
        print(f"\nwidth n={width} (weights: {source}); {per_px * WINDOW**2 / 1e9:.1f} GFLOP per {WINDOW} px "
              f"window, {per_px * IMAGE**2 / 1e9:.1f} GFLOP per {IMAGE} px image")
        reference = np.load(tmp / f"out-n{width}-{REFERENCE}.npy") if REFERENCE in results else None
        base = results.get(REFERENCE)
        print(f"  {'engine':13s} {'precision':9s} {'window s':>9s} {'(first)':>8s} {'image s':>8s} {'(first)':>8s}"
              f" {'GFLOP/s':>8s} {'of matmul':>9s} {'vs ORT':>7s} {'peak RSS':>9s} {'max diff':>9s}")
        for name, r in results.items():
            window, image = min(r["window"][1:]), min(r["image"][1:])
            rate = per_px * IMAGE**2 / image / 1e9
            ratio = f"{min(base['image'][1:]) / image:6.2f}x" if base else "-"
            diff = (f"{np.abs(np.load(tmp / f'out-n{width}-{name}.npy') - reference).max():9.1e}"
                    if reference is not None else "-")
            print(f"  {name:13s} {r['precision']:9s} {window:9.2f} {r['window'][0]:8.2f} {image:8.2f} "
                  f"{r['image'][0]:8.2f} {rate:8.1f} {rate / matmul:9.2f} {ratio:>7s} {r['peak_rss_gib']:7.2f} G"
                  f" {diff}")


def analyze_figures(args, tmp: Path) -> None:
    from cerber_model.nn.bundling import make_bundle
    from cerber_model.runtime.architecture import NetworkConfig, init_weights
    from cerber_model.runtime.bundle import BundleConfig, default_bundle_path, save_bundle

    width = args.widths[0]
    config = NetworkConfig(width=width)
    bundle_path = save_bundle(make_bundle(BundleConfig(network=config), init_weights(config)), tmp / "bundle")
    ours = run_child("cerber", size=IMAGE, repeats=args.repeats, bundle=bundle_path)
    print(f"\nanalyze (engine {ours['engine']}, width n={width}, untrained weights), {IMAGE} x {IMAGE}: "
          f"probability map {min(ours['prob_times']):.2f} s, peak RSS {ours['prob_peak_rss_gib']:.2f} GiB; with "
          f"{ours['tracks'][-1]} tracks measured {min(ours['times']):.2f} s, peak RSS {ours['peak_rss_gib']:.2f} GiB; "
          f"TensorFlow loaded: {bool(ours['heavy_modules'])}")
    if not args.skip_8000:
        big = run_child("cerber", size=8000, repeats=1, bundle=bundle_path)
        print(f"  8000 x 8000 probability map: {big['prob_times'][0]:.1f} s, "
              f"peak RSS {big['prob_peak_rss_gib']:.2f} GiB")
        print(f"  8000 x 8000 analyze: {big['times'][0]:.1f} s, {big['tracks'][0]} tracks, "
              f"peak RSS {big['peak_rss_gib']:.2f} GiB")
    default = default_bundle_path()
    if (default / "config.json").is_file():
        # A trained model gives realistic track counts, so the track stage is measured as users see it.
        for side in (IMAGE, 8000) if not args.skip_8000 else (IMAGE,):
            res = run_child("cerber", size=side, repeats=2, bundle=default)
            print(f"  default model ({default.name}), {side} x {side}: probability map "
                  f"{min(res['prob_times']):.1f} s, analyze {min(res['times']):.1f} s, {res['tracks'][-1]} tracks, "
                  f"peak RSS {res['peak_rss_gib']:.2f} GiB")


KERAS_PROCESS = """
import sys
import numpy as np
from cerber_model.nn.keras_graph import KerasEngine
from cerber_model.runtime.bundle import load_model
from cerber_model.runtime.images import normalize, read_image
bundle = load_model("default")
x = normalize(read_image(sys.argv[1]).data, bundle.config.normalization)
h, w = (-(-s // 4) * 4 for s in x.shape)
KerasEngine(bundle.config.network, bundle.weights).predict(np.pad(x, ((0, h - x.shape[0]), (0, w - x.shape[1]))))
"""


def whole_process(tmp: Path, rounds: int) -> None:
    """One 1608 x 1608 image, whole process (start-up, loading, reading, network, and for Cerber the
    tracks and their files): ``cerber analyze`` on each engine against a script that runs the
    straightforward Keras graph of the same weights on it. Best of ``rounds``, in turn."""
    import tifffile

    folder = tmp / "whole-process"
    folder.mkdir()
    image = folder / "image.tif"
    tifffile.imwrite(image, synthetic_image(IMAGE, seed=3))
    cerber = str(Path(sys.executable).with_name("cerber"))
    commands = {"keras graph (predict only)": [sys.executable, "-c", KERAS_PROCESS, str(image)]}
    for engine in ("onnxruntime", "openvino"):
        commands[f"cerber analyze --engine {engine}"] = [cerber, "analyze", str(image), "--out",
                                                         str(folder / engine), "--quiet", "--engine", engine]
    best = dict.fromkeys(commands, np.inf)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    for _ in range(rounds):
        for label, cmd in commands.items():
            for out in folder.iterdir():
                if out.is_dir():
                    shutil.rmtree(out)
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"{label} failed:\n{proc.stderr[-3000:]}")
            best[label] = min(best[label], time.perf_counter() - t)
    keras = best["keras graph (predict only)"]
    print(f"\nwhole process, one {IMAGE} x {IMAGE} image, best of {rounds} (default model):")
    for label, seconds in best.items():
        print(f"  {label:34s} {seconds:6.2f} s  {keras / seconds:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="2,4", help="network widths, comma-separated (default 2,4)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls after the first (default 2)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every engine this many times, in turn, keeping the best (default 1)")
    parser.add_argument("--skip-analyze", action="store_true", help="only the engines")
    parser.add_argument("--skip-8000", action="store_true")
    parser.add_argument("--whole-process-only", action="store_true", help="only the whole-process comparison")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=IMAGE, help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = {"engine": child_engine, "cerber": child_cerber}[args.child](args)
        print(json.dumps(result))
        return
    args.widths = [int(w) for w in args.widths.split(",")]
    args.engines = [e.strip() for e in args.engines.split(",")]
    unknown = set(args.engines) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engines {', '.join(sorted(unknown))}; choose from {', '.join(ENGINES)}")
    args.repeats, args.rounds = max(1, args.repeats), max(1, args.rounds)

    tmp = Path(tempfile.mkdtemp(prefix="cerber-bench-"))
    if args.whole_process_only:
        whole_process(tmp, args.rounds)
        return
    before = matmul_gflops()
    rows = compare_engines(args, tmp)
    after = matmul_gflops()
    print(f"Cerber analysis benchmark: {os.cpu_count()} cores; best of {args.repeats} calls after a first one, "
          f"in each of {args.rounds} round(s); "
          f"numpy float32 matmul (2048^3) {before:.1f} GFLOP/s before the engines, {after:.1f} after "
          f"(the 'of matmul' fractions are of their mean)")
    print_engines(rows, tmp, (before + after) / 2)
    if not args.skip_analyze:
        analyze_figures(args, tmp)
        whole_process(tmp, args.rounds)


if __name__ == "__main__":
    main()
