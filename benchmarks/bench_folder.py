"""Seconds per image over a folder of 1608 x 1608 images: Cerber's pipeline against the Keras graph.

Three ways over the same folder, measured in one run:

* ``keras predict``: the straightforward Keras graph of the same weights, built once, predicting
  each image whole (already read and normalised; the network alone). The baseline.
* ``cerber, one at a time``: :func:`runtime.batch.analyze_file` image after image: reading,
  normalising, the network (tiles, fused graph), tracks, and writing the track table.
* ``cerber analyze``: the same work as the command does it (:func:`runtime.batch.analyze_files`),
  the next image read and the last one's tracks written while the network runs.

Everything included for Cerber; only ``predict`` for Keras. Each runs in its own process (so
TensorFlow's memory and threads do not weigh on the others), with the model loaded once
before timing starts.

    python benchmarks/bench_folder.py [--count 8] [--size 1608] [--model default] [--engine openvino]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_folder(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` realistic-recipe images of ``size`` px (generated once, kept in ``folder``)."""
    from dataclasses import replace

    from cerber_model.runtime.realistic import RealisticRecipe
    from cerber_model.runtime.synthesis import generate_dataset

    if not (folder / "recipe.json").is_file():
        recipe = replace(RealisticRecipe(), height=size, width=size, tracks=(100, 400))
        generate_dataset(folder, count, seed=4242, recipe=recipe, val_fraction=0.0)
    return sorted((folder / "train" / "images").glob("*.png"))[:count]


def child(kind: str, paths: list[str], model: str, engine: str | None) -> dict:
    from cerber_model.runtime.bundle import load_model

    bundle = load_model(model)
    if kind == "keras":
        import numpy as np

        from cerber_model.nn.keras_graph import KerasEngine
        from cerber_model.runtime.images import normalize, read_image

        keras = KerasEngine(bundle.config.network, bundle.weights)
        inputs = []
        for p in paths:
            x = normalize(read_image(p).data, bundle.config.normalization)
            h, w = (-(-s // 4) * 4 for s in x.shape)
            inputs.append(np.pad(x, ((0, h - x.shape[0]), (0, w - x.shape[1])), mode="reflect"))
        keras.predict(inputs[0])  # built and traced before timing, as "model loaded once"
        start = time.perf_counter()
        for x in inputs:
            keras.predict(x)
        return {"seconds": time.perf_counter() - start}
    from cerber_model.runtime.batch import BatchSettings, analyze_file, analyze_files

    out = Path(tempfile.mkdtemp(prefix="cerber-bench-"))
    settings = BatchSettings(out, engine=engine)
    items = [(Path(p), Path(p).stem) for p in paths]
    engine_ = bundle.engine(engine)
    analyze_file(*items[0], settings, bundle, engine_)  # warm: first-call allocations, engine made
    start = time.perf_counter()
    if kind == "sequential":
        for path, stem in items:
            analyze_file(path, stem, settings, bundle, engine_)
    else:
        outcomes = list(analyze_files(items, settings, bundle, engine=engine_))
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    return {"seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--size", type=int, default=1608)
    parser.add_argument("--model", default="default")
    parser.add_argument("--engine", choices=("onnxruntime", "openvino"), help="Cerber's engine (default: its own)")
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "bench-folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        paths = json.loads(sys.stdin.read())
        print(json.dumps(child(args.child, paths, args.model, args.engine)))
        return

    paths = [str(p) for p in make_folder(args.data / f"{args.size}px-{args.count}", args.count, args.size)]
    rows = {}
    for kind in ("keras", "sequential", "pipeline"):
        command = [sys.executable, __file__, "--child", kind, "--model", args.model]
        if args.engine:
            command += ["--engine", args.engine]
        done = subprocess.run(command, input=json.dumps(paths), capture_output=True, text=True, check=True)
        rows[kind] = json.loads(done.stdout.strip().splitlines()[-1])["seconds"] / len(paths)
        print(f"{kind:12s} {rows[kind]:6.2f} s per image", flush=True)
    keras = rows["keras"]
    print(f"\n{len(paths)} images of {args.size} x {args.size} px, model {args.model}, engine "
          f"{args.engine or 'default'}")
    print(f"{'':38s} s/image   vs Keras predict")
    print(f"{'keras predict (network only)':38s} {keras:7.2f}   1.00x")
    print(f"{'cerber, one at a time (everything)':38s} {rows['sequential']:7.2f}   {keras / rows['sequential']:.2f}x")
    print(f"{'cerber analyze, pipelined (everything)':38s} {rows['pipeline']:7.2f}   {keras / rows['pipeline']:.2f}x")


if __name__ == "__main__":
    main()
