"""Inference engines: something that turns a normalised image into a probability map.

Three engines sit behind one interface (:class:`Engine`):

* :class:`OnnxEngine` runs the bundle's fused ONNX graph with ONNX Runtime. It is
  the reference that other engines are checked against, and what runs where
  OpenVINO is not installed (the standalone analyzer): a fraction of the Keras
  graph's memory, and it needs neither TensorFlow nor the ``onnx`` package.
* :class:`OpenVinoEngine` runs the same graph with OpenVINO's CPU plugin, which
  fuses the activations into the convolutions that ONNX Runtime runs apart
  (the optional ``openvino`` package; 1.4-1.6x ONNX Runtime, see the README).
  ``auto``, the default, takes it where it is installed.
* :class:`cerber_model.nn.keras_graph.KerasEngine` runs the straightforward Keras
  graph (the reference implementation) with TensorFlow; used to check the fused
  graph and to compare speed. It lives in the training tier.

:func:`make_engine` picks one by name (``CERBER_ENGINE`` when none is given);
:meth:`cerber_model.runtime.bundle.Bundle.engine` uses it.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from typing import Any, Protocol

import numpy as np

from .architecture import SIZE_MULTIPLE

#: Engine names, as ``CERBER_ENGINE``, :func:`make_engine` and ``cerber analyze --engine`` take them.
#: ``auto``: OpenVINO where the package is installed, else ONNX Runtime, without a note.
ENGINES = ("auto", "onnxruntime", "openvino")
DEFAULT_ENGINE = "auto"
#: The engine every other one must agree with (:meth:`cerber_model.runtime.bundle.Bundle.engine`).
REFERENCE_ENGINE = "onnxruntime"
ENGINE_VARIABLE = "CERBER_ENGINE"


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


class EngineFallbackWarning(RuntimeWarning):
    """The engine asked for cannot run here; ONNX Runtime runs instead (the message says why)."""


class OpenVinoEngine:
    """OpenVINO on the CPU, running the fused graph (bytes of an .onnx file).

    ``precision`` is OpenVINO's ``INFERENCE_PRECISION_HINT``: ``"f32"`` (the
    default) computes as ONNX Runtime does; ``None`` leaves OpenVINO's choice,
    which is bf16 or f16 on CPUs that have them and changes the probabilities
    (by up to about 0.02). Channel gathers in front of convolutions are folded
    into the kernels on loading (:func:`fold_channel_gathers`), so graphs
    exported before the exporter did it run correctly too.
    """

    name = "openvino"

    def __init__(self, model: bytes, threads: int | None = None, precision: str | None = "f32"):
        import openvino as ov

        core = ov.Core()
        graph = core.read_model(model=model)
        fold_channel_gathers(graph)
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads or default_threads(),
                                  "PERFORMANCE_HINT": "LATENCY"}
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        self._compiled = core.compile_model(graph, "CPU", config)
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self._request = self._compiled.create_infer_request()
        # One infer request, reused: it is not safe to share between threads.
        self._lock = threading.Lock()

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = check_engine_input(x)
        with self._lock:
            self._request.infer({0: x[None, None]})
            return np.array(self._request.get_output_tensor(0).data[0, 0], dtype=np.float32)


def fold_gather(kernel: np.ndarray, index: np.ndarray, source_channels: int, axis: int) -> np.ndarray:
    """A convolution kernel that reads a gather's source instead of its output.

    The convolution read ``gathered[:, i] = source[:, index[i]]`` through input
    channel ``i`` of ``kernel`` (``axis``: 1 for Conv's ``(out, in, kh, kw)``, 0 for
    ConvTranspose's ``(in, out, kh, kw)``). The returned kernel has
    ``source_channels`` input channels, ``K'[j] = sum over i with index[i] == j of
    K[i]`` (repeated indices sum; negative indices count from the end; channels
    never read get zeros), and computes the same output from ``source``.
    """
    index = np.asarray(index, np.int64).reshape(-1)
    moved = np.moveaxis(kernel, axis, 0)
    if moved.shape[0] != index.size:
        raise ValueError(f"kernel reads {moved.shape[0]} channels, the gather makes {index.size}")
    folded = np.zeros((source_channels, *moved.shape[1:]), kernel.dtype)
    np.add.at(folded, np.where(index < 0, index + source_channels, index), moved)
    return np.ascontiguousarray(np.moveaxis(folded, 0, axis))


def fold_channel_gathers(model) -> int:
    """Fold the channel gathers in front of convolutions of an OpenVINO model into the kernels, in place.

    A ``Gather`` on axis 1 with constant 1-D indices feeding the data input of a
    ``Convolution`` or ``ConvolutionBackpropData`` with a constant kernel: the
    convolution reads the gather's source with :func:`fold_gather`'s kernel. The
    gather stays for its other consumers, if any. Returns the number of
    convolutions changed.
    """
    import openvino as ov

    folded = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Gather" or op.get_attributes().get("batch_dims", 0) != 0:
            continue
        index_node, axis_node = op.input_value(1).get_node(), op.input_value(2).get_node()
        source = op.input_value(0)
        shape = source.get_partial_shape()
        if (index_node.get_type_name() != "Constant" or axis_node.get_type_name() != "Constant"
                or shape.rank.is_dynamic or shape.rank.get_length() < 2 or shape[1].is_dynamic):
            continue
        axis = int(np.asarray(axis_node.data).reshape(-1)[0])
        index = np.asarray(index_node.data)
        if axis % shape.rank.get_length() != 1 or index.ndim != 1:
            continue
        for target in list(op.output(0).get_target_inputs()):
            conv = target.get_node()
            kind = conv.get_type_name()
            if kind not in ("Convolution", "ConvolutionBackpropData") or target.get_index() != 0:
                continue
            kernel_node = conv.input_value(1).get_node()
            if kernel_node.get_type_name() != "Constant":
                continue
            kernel = fold_gather(np.asarray(kernel_node.data), index, shape[1].get_length(),
                                 1 if kind == "Convolution" else 0)
            conv.input(1).replace_source_output(ov.op.Constant(kernel).output(0))
            target.replace_source_output(source)
            folded += 1
    if folded:
        model.validate_nodes_and_infer_types()
    return folded


def engine_kind(kind: str | None = None) -> str:
    """The engine name to use: ``kind``, else ``$CERBER_ENGINE``, else :data:`DEFAULT_ENGINE`."""
    chosen = kind or os.environ.get(ENGINE_VARIABLE) or DEFAULT_ENGINE
    chosen = chosen.strip().lower()
    if chosen not in ENGINES:
        where = "" if kind else f" (from {ENGINE_VARIABLE})"
        raise ValueError(f"unknown engine {chosen!r}{where}; choose one of {', '.join(ENGINES)}")
    return chosen


def openvino_installed() -> bool:
    """Whether the ``openvino`` package can be found (without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def resolve_engine(kind: str | None = None) -> str:
    """The engine that ``kind`` (as :func:`engine_kind` reads it) runs: ``auto`` is
    ``openvino`` where the package is installed, else ``onnxruntime``."""
    kind = engine_kind(kind)
    if kind == "auto":
        return "openvino" if openvino_installed() else REFERENCE_ENGINE
    return kind


def make_engine(model: bytes, kind: str | None = None, threads: int | None = None) -> Engine:
    """An engine running the fused graph ``model`` (bytes of an .onnx file).

    ``kind`` is one of :data:`ENGINES`; None reads ``CERBER_ENGINE``, else ``auto``
    (:func:`resolve_engine`). OpenVINO that cannot be imported gives ONNX Runtime,
    with an :class:`EngineFallbackWarning` saying so.
    """
    if resolve_engine(kind) == "openvino":
        try:
            return OpenVinoEngine(model, threads)
        except ImportError:
            warnings.warn("the OpenVINO engine needs the openvino package, which is not installed "
                          "(pip install openvino); running ONNX Runtime instead",
                          EngineFallbackWarning, stacklevel=2)
    return OnnxEngine(model, threads)
