"""The straightforward Keras Cerber graph: one layer per branch and step.

It interprets :func:`cerber_model.runtime.architecture.describe` layer by layer,
exactly as the prototype was laid out; it is the reference that the fused graphs
(:mod:`cerber_model.nn.fused`, :mod:`cerber_model.nn.fused_keras`) are checked
against. Weights travel as ``{"layer/var": array}`` dictionaries
(:func:`get_weights`, :func:`set_weights`) in both graphs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..runtime.architecture import BN_EPSILON, ConfigError, NetworkConfig, describe, layer_name
from ..runtime.engine import check_engine_input


class _KerasOps:
    """Interprets :func:`describe` as the straightforward per-branch Keras graph."""

    def __init__(self, config: NetworkConfig):
        import keras

        self.keras = keras
        self.layers = keras.layers
        self.config = config
        self._seed = config.seed
        self.inputs = None

    def _next_seed(self) -> int:
        self._seed += 1
        return self._seed

    def input(self):
        self.inputs = self.keras.Input((None, None, self.config.input_channels), name="image")
        return [self.inputs]

    def fan(self, s):
        return [s[0]] * 3

    def conv(self, name, s, filters, kernel, act, transpose=False):
        layer_type = self.layers.Conv2DTranspose if transpose else self.layers.Conv2D
        extra = {"strides": 2} if transpose else {}
        out = []
        for i, tensor in enumerate(s):
            layer = layer_type(
                filters,
                kernel,
                padding="same",
                activation=act,
                kernel_initializer=self.keras.initializers.HeNormal(seed=self._next_seed()),
                name=layer_name(name, i, len(s)),
                **extra,
            )
            out.append(layer(tensor))
        return out

    def bn(self, name, s):
        return [
            self.layers.BatchNormalization(epsilon=BN_EPSILON, name=layer_name(name, i, len(s)))(t)
            for i, t in enumerate(s)
        ]

    def act(self, s, kind):
        return [self.layers.Activation(kind)(t) for t in s]

    def pool(self, s):
        return [self.layers.MaxPooling2D(2)(t) for t in s]

    def _concat(self, tensors):
        return tensors[0] if len(tensors) == 1 else self.layers.Concatenate()(list(tensors))

    def cross(self, s):
        return [self._concat([s[i], s[(i + 1) % 3], s[(i + 2) % 3]]) for i in range(3)]

    def cat(self, *streams):
        return [self._concat(parts) for parts in zip(*streams, strict=True)]

    def merge(self, s):
        return [self._concat(s)]


def build_cerber(config: NetworkConfig):
    """Build the straightforward Keras Cerber graph for ``config``.

    Input: ``(batch, height, width, 1)`` float32, any height and width divisible by
    4. Output: ``(batch, height, width, 1)`` track probability in [0, 1].
    Fully convolutional; the three branches get different initialiser seeds.
    """
    ops = _KerasOps(config)
    out = describe(ops, config.width)
    return ops.keras.Model(ops.inputs, out[0], name=f"cerber_n{config.width}")


def weight_name(variable) -> str:
    """The ``layer/var`` name of a model variable, in the straightforward graph
    (``stem_conv_x/kernel``) and in the fused one (``cerber/stem_conv_x.kernel``)."""
    last = variable.path.rsplit("/", 1)[-1]
    return last.replace(".", "/") if "." in last else variable.path


def get_weights(model) -> dict[str, Any]:
    """The model's weights (trainable and BN statistics) as ``{"layer/var": array}``."""
    return {weight_name(w): w.numpy() for w in model.weights}


def set_weights(model, weights: dict[str, Any]) -> None:
    """Load ``{"layer/var": array}`` into ``model``; every variable must be present."""
    missing = [weight_name(w) for w in model.weights if weight_name(w) not in weights]
    if missing:
        raise ConfigError(f"weights lack {len(missing)} variables, e.g. {missing[0]}")
    for w in model.weights:
        name = weight_name(w)
        if tuple(w.shape) != weights[name].shape:
            raise ConfigError(f"weight {name} has shape {weights[name].shape}, expected {tuple(w.shape)}")
        w.assign(weights[name])


class KerasEngine:
    """The straightforward Keras graph as an inference engine (needs TensorFlow)."""

    name = "keras"

    def __init__(self, config: NetworkConfig, weights: dict[str, np.ndarray]):
        self.model = build_cerber(config)
        set_weights(self.model, weights)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = check_engine_input(x)
        out = self.model.predict_on_batch(x[None, :, :, None])
        return np.asarray(out)[0, :, :, 0]
