"""Inference engines: something that turns a normalised image into a probability map.

Two engines sit behind one interface (:class:`Engine`):

* :class:`OnnxEngine` runs the bundle's fused ONNX graph with ONNX Runtime. It is
  the default: several times faster than the Keras graph, a fraction of its
  memory, and it needs neither TensorFlow nor the ``onnx`` package.
* :class:`cerber_model.nn.keras_graph.KerasEngine` runs the straightforward Keras
  graph (the reference implementation) with TensorFlow; used to check the fused
  graph and to compare speed. It lives in the training tier.
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from .architecture import SIZE_MULTIPLE


class Engine(Protocol):
    name: str

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probability map (float32, same shape) for a normalised 2-D float32 image
        whose sides are multiples of 4."""


def check_engine_input(x: np.ndarray) -> np.ndarray:
    if x.ndim != 2 or x.shape[0] % SIZE_MULTIPLE or x.shape[1] % SIZE_MULTIPLE:
        raise ValueError(f"engine input must be 2-D with sides divisible by {SIZE_MULTIPLE}, got {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def default_threads() -> int:
    """Threads for inference: all cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class OnnxEngine:
    """ONNX Runtime on the CPU, running the fused graph (bytes of an .onnx file)."""

    name = "onnxruntime"

    def __init__(self, model: bytes, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Memory patterns are planned per input shape; tiles share one shape,
        # but the last image of a batch may not, and planning for every new
        # shape costs more than it saves here.
        options.enable_mem_pattern = False
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = check_engine_input(x)
        out = self._session.run(None, {self._input: x[None, None]})[0]
        return out[0, 0]
