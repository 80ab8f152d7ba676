"""The Cerber network: its configuration and its architecture, described once.

Cerber runs three branches ("necks") side by side. After almost every step each
branch is replaced by the concatenation of its own output with the outputs of the
other two (a *cross-concatenation*); a bridge at 1/4 resolution merges them into
one trunk that two decoders bring back to full resolution.

The architecture is written once, in :func:`describe`, against a small set of
operations (``conv``, ``bn``, ``act``, ``pool``, ``cross``, ``cat``, ``merge``).
Builders interpret it:

* :func:`cerber_model.nn.keras_graph.build_cerber` turns it into the straightforward
  Keras graph: one layer per branch and step, exactly as the prototype was laid
  out. It is the reference implementation.
* :mod:`cerber_model.nn.fused` turns the same description into a handful of wide
  operations (grouped and permuted convolutions): with trained weights as an
  ONNX graph for the light inference engine, and (:mod:`cerber_model.nn.fused_keras`)
  as the trainable Keras model the trainer uses, with the same variables.
* :class:`_ShapeOps` (here) counts parameter shapes and FLOPs without TensorFlow.

All compute the same function for the same weights; tests check it.

This module belongs to the runtime tier: it never imports TensorFlow, Keras or onnx.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BRANCHES = ("x", "y", "z")
#: Network input sizes must be divisible by this (two 2x2 poolings).
SIZE_MULTIPLE = 4
#: Batch-normalisation epsilon used everywhere (the Keras default).
BN_EPSILON = 1e-3


class ConfigError(ValueError):
    """A network or bundle configuration is invalid."""


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild the network (not its weights).

    width: the prototype's ``n``; channel counts scale with it (1..8).
    input_channels: 1 (grayscale); colour images are converted to gray on reading.
    seed: base seed of the He-normal initialisers; every layer and every branch
        gets its own seed derived from it, so the three branches start different.
    """

    architecture: str = "cerber"
    width: int = 4
    input_channels: int = 1
    seed: int = 777

    def __post_init__(self) -> None:
        if self.architecture != "cerber":
            raise ConfigError(f"unknown architecture {self.architecture!r}; only 'cerber' exists")
        if not isinstance(self.width, int) or not 1 <= self.width <= 8:
            raise ConfigError(f"width must be an integer from 1 to 8, got {self.width!r}")
        if self.input_channels != 1:
            raise ConfigError(f"input_channels must be 1 (grayscale), got {self.input_channels!r}")
        if not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        known = {"architecture", "width", "input_channels", "seed"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown network settings: {', '.join(sorted(unknown))}")
        return cls(**data)


def describe(ops, width: int):
    """The Cerber architecture, step by step, against the operations of ``ops``.

    A *stream* is a list of branches (three, or one after the bridge). ``ops``
    provides: ``input()`` -> 1-branch stream; ``fan(s)`` -> the same input in all
    three branches; ``conv(name, s, filters, kernel, act, transpose=False)`` per
    branch (``act`` in None/relu/elu/softmax/sigmoid; softmax is over each
    branch's own channels); ``bn(name, s)``; ``act(s, kind)``; ``pool(s)`` (2x2
    max); ``cross(s)`` (branch i becomes [i, i+1, i+2]); ``cat(*streams)``
    (per-branch concatenation); ``merge(s)`` (all branches as one).
    Returns the 1-branch, 1-channel probability stream.
    """
    n = width
    conv, bn, act, cross, cat, merge = ops.conv, ops.bn, ops.act, ops.cross, ops.cat, ops.merge

    x = ops.fan(ops.input())
    # 1. Stem.
    stem = act(bn("stem_bn", conv("stem_conv", x, 1, 1, "elu")), "elu")
    t = cross(stem)
    # 2. Dense block 0.
    d0a = conv("d0_conv1", t, 2, 1, "relu")
    d0b = conv("d0_conv2", cross(d0a), 2 * n, 1, "softmax")
    t = cross(d0b)
    # 3. Conv block 1, full resolution.
    c1a = conv("c1_conv1", t, 2 * n, 3, None)
    c1b = conv("c1_conv2", act(bn("c1_bn1", cross(c1a)), "elu"), 2 * n, 3, None)
    p1 = bn("c1_bn2", ops.pool(cross(c1b)))
    t = cross(p1)
    # 4. Dense block 1, 1/2 resolution.
    d1a = conv("d1_conv1", t, 2, 1, "relu")
    d1b = conv("d1_conv2", cross(d1a), 2 * n, 1, "softmax")
    # 5. Conv block 2.
    c2a = conv("c2_conv1", act(bn("c2_bn1", d1b), "elu"), 8 * n, 3, None)
    c2b = conv("c2_conv2", act(bn("c2_bn2", cross(c2a)), "elu"), 8 * n, 3, None)
    t = ops.pool(cross(c2b))
    # 6. Dense block 2, 1/4 resolution.
    d2b = conv("d2_conv2", conv("d2_conv1", t, 2, 1, "relu"), 8 * n, 1, "softmax")
    t = cross(d2b)
    # 7. Bridge: the necks join the body.
    t = conv("br_conv1", t, n, 1, "elu")
    t = conv("br_conv2", t, n * n, 1, "elu")
    for i, filters in enumerate((n * n, n * n, n), start=3):
        t = conv(f"br_conv{i}", cross(t), filters, 1, "elu")
    trunk = merge(t)
    # 8. Dense block 3.
    t = conv("d3_conv2", conv("d3_conv1", trunk, 2, 1, "relu"), 8 * n, 1, "softmax")
    t = cat(t, merge(d2b))
    # 9. Decoder 1, back to 1/2 resolution; the six conv-block-2 outputs as skips.
    skips2 = cat(merge(c2a), merge(c2b))
    t = conv("u1_up", act(bn("u1_bn0", t), "elu"), 8 * n, 3, None, transpose=True)
    t = cat(t, skips2)
    for i in (1, 2):
        t = cat(conv(f"u1_conv{i}", act(bn(f"u1_bn{i}", t), "elu"), 8 * n, 3, None), skips2)
    # 10. Dense block 4.
    t = cat(conv("d4_conv1", t, 2, 1, "relu"), merge(d1a))
    t = cat(conv("d4_conv2", bn("d4_bn", t), 2 * n, 1, "softmax"), merge(p1))
    # 11. Decoder 2, back to full resolution.
    t = conv("u2_up", act(bn("u2_bn0", t), "elu"), 2 * n, 3, None, transpose=True)
    t = cat(t, merge(c1a))
    t = cat(conv("u2_conv1", act(bn("u2_bn1", t), "elu"), 2 * n, 3, None), merge(c1a))
    t = cat(conv("u2_conv2", act(bn("u2_bn2", t), "elu"), 2 * n, 3, None), merge(d0b))
    # 12. Dense block 5 and the head.
    t = cat(conv("d5_conv1", t, 2, 1, "relu"), merge(d0a))
    t = conv("d5_conv2", bn("d5_bn", t), 4 * n, 1, "relu")
    t = cat(conv("head_conv1", t, 2 * n, 1, "relu"), merge(c1b))
    t = cat(conv("head_conv2", t, 1, 1, "relu"), merge(stem))
    return conv("head_out", bn("head_bn", t), 1, 1, "sigmoid")


def layer_name(name: str, branch: int, branches: int) -> str:
    """The Keras layer name of one branch's instance of a step."""
    return f"{name}_{BRANCHES[branch]}" if branches == 3 else name


class _ShapeOps:
    """Interprets :func:`describe` with channel counts and resolutions only:
    parameter shapes and operation counts without TensorFlow.

    A branch is ``(channels, factor)``: its resolution is 1/factor of the input.
    ``flops`` accumulates convolution FLOPs (2 per multiply-add) per input pixel.
    """

    def __init__(self, input_channels: int):
        self.input_channels = input_channels
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.flops = 0.0

    def input(self):
        return [(self.input_channels, 1)]

    def fan(self, s):
        return s * 3

    def conv(self, name, s, filters, kernel, act, transpose=False):
        out = []
        for i, (channels, factor) in enumerate(s):
            layer = layer_name(name, i, len(s))
            shape = (kernel, kernel, filters, channels) if transpose else (kernel, kernel, channels, filters)
            self.shapes[f"{layer}/kernel"] = shape
            self.shapes[f"{layer}/bias"] = (filters,)
            # A transposed convolution does its multiply-adds per input pixel.
            self.flops += 2 * kernel * kernel * channels * filters / factor**2
            out.append((filters, factor // 2 if transpose else factor))
        return out

    def bn(self, name, s):
        for i, (channels, _) in enumerate(s):
            for var in ("gamma", "beta", "moving_mean", "moving_variance"):
                self.shapes[f"{layer_name(name, i, len(s))}/{var}"] = (channels,)
        return s

    def act(self, s, kind):
        return s

    def pool(self, s):
        return [(c, f * 2) for c, f in s]

    @staticmethod
    def _join(parts):
        factors = {f for _, f in parts}
        assert len(factors) == 1, f"concatenating different resolutions: {parts}"
        return (sum(c for c, _ in parts), factors.pop())

    def cross(self, s):
        return [self._join(s)] * 3

    def cat(self, *streams):
        return [self._join(parts) for parts in zip(*streams, strict=True)]

    def merge(self, s):
        return [self._join(s)]


def _shape_ops(config: NetworkConfig) -> _ShapeOps:
    ops = _ShapeOps(config.input_channels)
    describe(ops, config.width)
    return ops


def parameter_shapes(config: NetworkConfig) -> dict[str, tuple[int, ...]]:
    """``{"layer/var": shape}`` of every weight of the network (BN statistics included)."""
    return _shape_ops(config).shapes


def flops_per_pixel(config: NetworkConfig) -> float:
    """Convolution FLOPs (2 per multiply-add) per input pixel; multiply by H x W for an image."""
    return _shape_ops(config).flops


def count_parameters(config: NetworkConfig) -> dict[str, int]:
    """Trainable and total parameter counts (BN moving statistics are not trainable)."""
    total = trainable = 0
    for name, shape in parameter_shapes(config).items():
        size = 1
        for d in shape:
            size *= d
        total += size
        if not name.endswith(("moving_mean", "moving_variance")):
            trainable += size
    return {"trainable": trainable, "total": total}


def init_weights(config: NetworkConfig, seed: int | None = None) -> dict[str, np.ndarray]:
    """Fresh weights without TensorFlow: He-normal kernels, zero biases, identity
    batch-norm. The same distribution as :func:`~cerber_model.nn.keras_graph.build_cerber`'s initialisers
    (not the same numbers); every layer and branch draws its own values."""
    rng = np.random.default_rng(config.seed if seed is None else seed)
    weights = {}
    for name, shape in parameter_shapes(config).items():
        var = name.rsplit("/", 1)[1]
        if var == "kernel":
            fan_in = shape[0] * shape[1] * shape[2]  # as Keras computes it, transposed kernels too
            weights[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        elif var in ("gamma", "moving_variance"):
            weights[name] = np.ones(shape, np.float32)
        else:
            weights[name] = np.zeros(shape, np.float32)
    return weights
