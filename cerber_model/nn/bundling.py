"""Making a bundle from weights: the fused ONNX graph is built here (needs ``onnx``).

Loading and saving bundles is runtime work (:mod:`cerber_model.runtime.bundle`);
only making one needs the training tier.
"""

from __future__ import annotations

import numpy as np

from ..runtime.bundle import Bundle, BundleConfig, BundleError, weights_problem
from .fused import export_onnx


def make_bundle(config: BundleConfig, weights: dict[str, np.ndarray]) -> Bundle:
    """A bundle in memory: checks the weights against the config and builds the
    fused ONNX graph (needs the ``onnx`` package, not TensorFlow)."""
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    problem = weights_problem(config.network, weights)
    if problem:
        raise BundleError(f"the weights do not fit the network configuration: {problem}")
    return Bundle(None, config, weights, export_onnx(config.network, weights))
