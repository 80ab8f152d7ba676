"""Shared test helpers: tiny bundles and synthetic images with known tracks."""

from __future__ import annotations

import numpy as np

from cerber_model.nn.bundling import make_bundle
from cerber_model.runtime.architecture import NetworkConfig, init_weights
from cerber_model.runtime.bundle import BundleConfig


def jittered_weights(config: NetworkConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights with non-trivial batch-norm statistics, so that every
    parameter (scales, shifts, statistics) influences the output."""
    rng = np.random.default_rng(seed)
    w = init_weights(config, seed)
    for name, value in w.items():
        var = name.rsplit("/", 1)[1]
        if var == "moving_variance":
            w[name] = rng.uniform(0.5, 2.0, value.shape).astype(np.float32)
        elif var in ("moving_mean", "beta", "bias"):
            w[name] = rng.normal(0.0, 0.3, value.shape).astype(np.float32)
        elif var == "gamma":
            w[name] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
    return _spread_output(config, w, rng)


def _spread_output(config, w, rng):
    """Rescale the last (linear, 1x1) layer so that on random input the logits
    have mean 0 and SD 2: the probability map then spans 0..1 instead of being
    saturated, and comparisons of outputs are meaningful."""
    import onnxruntime as ort

    from cerber_model.nn.fused import export_onnx

    x = rng.random((1, 1, 64, 64), dtype=np.float32)
    p = ort.InferenceSession(export_onnx(config, w), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    logit = np.log(p / (1 - p))
    b = float(w["head_out/bias"][0])
    a = 2.0 / max(logit.std(), 1e-3)
    w["head_out/kernel"] = (w["head_out/kernel"] * a).astype(np.float32)
    w["head_out/bias"] = np.array([-a * (logit.mean() - b)], np.float32)
    return w


def tiny_bundle(width: int = 1, seed: int = 0, threshold: float = 0.5):
    config = BundleConfig(network=NetworkConfig(width=width), threshold=threshold, name=f"tiny-n{width}")
    return make_bundle(config, jittered_weights(config.network, seed))


def gaussian_spots(shape, centres, sigma=2.0, amplitude=1.0, sigmas=None, angles=None):
    """Sum of (optionally elliptical, rotated) Gaussian spots at (row, col) centres."""
    rr, cc = np.indices(shape, dtype=np.float64)
    out = np.zeros(shape)
    for i, (r, c) in enumerate(centres):
        s1, s2 = sigmas[i] if sigmas is not None else (sigma, sigma)
        a = angles[i] if angles is not None else 0.0
        dy, dx = rr - r, cc - c
        # Rotate coordinates: angle counter-clockwise from the column axis as displayed.
        u = dx * np.cos(a) - dy * np.sin(a)
        v = dx * np.sin(a) + dy * np.cos(a)
        out += amplitude * np.exp(-0.5 * ((u / s1) ** 2 + (v / s2) ** 2))
    return out


def load_script(relative: str):
    """The module of a script of the repository (``scripts/...`` or ``benchmarks/...``), loaded
    from its file: scripts are not packages."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
