"""The fused Cerber graph as a trainable Keras model.

:class:`~cerber_model.nn.fused.FusedPlanner` lays the three branches side by side and
turns every step into one wide operation; here its backend gathers each wide
kernel and batch-norm table from the per-branch Keras variables inside the graph.
The variables are exactly the straightforward graph's (same names, shapes and
initial values), so gradients flow to them, checkpoints and bundles are the same,
and the trained weights need no conversion. Batch normalisation in training uses
batch statistics per channel of the stacked tensor, which all branches reading
that channel share, and updates each branch's moving statistics as Keras does.

Only ``keras.ops`` is used, so the model runs on any Keras 3 backend.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ..runtime.architecture import BN_EPSILON, NetworkConfig, describe, parameter_shapes
from .fused import FusedPlanner

#: Moving-statistics momentum of batch normalisation (the Keras default).
BN_MOMENTUM = 0.99
_STATISTICS = ("moving_mean", "moving_variance")


class _KerasBackend:
    """Executes the fused plan with ``keras.ops`` on the variables of one :class:`FusedCerber`."""

    def __init__(self, variables: dict, x, training: bool):
        self.v = variables
        self.x = x
        self.training = training

    def _flat(self, layers, var):
        parts = [self.v[f"{layer}/{var}"] for layer in layers]
        return parts[0] if len(parts) == 1 else ops.concatenate(parts)

    def input(self):
        return self.x

    def concat(self, refs, base):
        return ops.concatenate(refs, axis=-1)

    def gather(self, ref, index, base):
        return ops.take(ref, index, axis=-1)

    def act(self, ref, kind):
        return {"elu": ops.elu, "relu": ops.relu, "sigmoid": ops.sigmoid}[kind](ref)

    def pool(self, ref):
        return ops.max_pool(ref, 2, 2, padding="valid")

    def softmax(self, ref, k, filters, name):
        if k == 1:
            return ops.softmax(ref, axis=-1)
        return ops.concatenate([ops.softmax(ref[..., i * filters:(i + 1) * filters], axis=-1) for i in range(k)],
                               axis=-1)

    def conv(self, name, ref, layers, index, group, transpose):
        flat = ops.concatenate([ops.reshape(self.v[f"{layer}/kernel"], (-1,)) for layer in layers]
                               + [ops.zeros((1,), dtype=ref.dtype)])
        size = int(flat.shape[0]) - 1
        if transpose:  # Keras' transposed kernels are (kh, kw, out, in)
            index = index.transpose(0, 1, 3, 2)
        kernel = ops.take(flat, np.where(index < 0, size, index))
        if transpose:
            y = ops.conv_transpose(ref, kernel, strides=2, padding="same")
        elif group == 1:
            y = ops.conv(ref, kernel, padding="same")
        else:
            n_in, n_out = int(kernel.shape[2]), int(kernel.shape[3]) // group
            y = ops.concatenate([ops.conv(ref[..., g * n_in:(g + 1) * n_in], kernel[..., g * n_out:(g + 1) * n_out],
                                          padding="same") for g in range(group)], axis=-1)
        return y + self._flat(layers, "bias")

    def bn(self, name, ref, channels, src, params):
        layers = list(dict.fromkeys(layer for layer, _ in params))
        offsets, total = {}, 0
        for layer in layers:
            offsets[layer], total = total, total + int(self.v[f"{layer}/gamma"].shape[0])
        which = np.asarray([offsets[layer] + j for layer, j in params], np.int64)

        def table(var):
            return ops.take(self._flat(layers, var), which)

        if self.training:
            mean, variance = ops.moments(ref, axes=[0, 1, 2])
            for layer in layers:
                # This layer's channel j reads input channel src[p] for the p with params[p] == (layer, j).
                local = np.asarray([p for p, (lay, _) in sorted(enumerate(params), key=lambda e: e[1][1])
                                    if lay == layer], np.int64)
                for var, stat in zip(_STATISTICS, (mean, variance), strict=True):
                    moving = self.v[f"{layer}/{var}"]
                    moving.assign(moving * BN_MOMENTUM + ops.take(stat, src[local]) * (1.0 - BN_MOMENTUM))
            mean, variance = ops.take(mean, src), ops.take(variance, src)
        else:
            mean, variance = table("moving_mean"), table("moving_variance")
        if list(src) != list(range(channels)):
            ref = ops.take(ref, src, axis=-1)
        y = ops.batch_normalization(ref, mean, variance, axis=-1, offset=table("beta"), scale=table("gamma"),
                                    epsilon=BN_EPSILON)
        return y, range(len(src))


@keras.saving.register_keras_serializable(package="cerber")
class FusedCerber(keras.layers.Layer):
    """The whole Cerber network as one layer computing the fused graph.

    Its variables are named ``<layer>.<var>`` after the straightforward graph's
    ``<layer>/<var>`` (:func:`cerber_model.nn.keras_graph.get_weights` maps them back) and
    start from the same He-normal seeds, in the same order.
    """

    def __init__(self, width: int = 4, seed: int = 777, **kwargs):
        super().__init__(**kwargs)
        self.network = NetworkConfig(width=width, seed=seed)

    def build(self, input_shape):
        seed = self.network.seed
        self.params = {}
        for path, shape in parameter_shapes(self.network).items():
            layer, var = path.rsplit("/", 1)
            if var == "kernel":
                seed += 1  # as network.build_cerber: one seed per layer and branch, in order
                init = keras.initializers.HeNormal(seed=seed)
            else:
                init = "ones" if var in ("gamma", "moving_variance") else "zeros"
            self.params[path] = self.add_weight(shape=shape, name=f"{layer}.{var}", initializer=init,
                                                trainable=var not in _STATISTICS)

    def call(self, x, training=False):
        planner = FusedPlanner(_KerasBackend(self.params, x, bool(training)), parameter_shapes(self.network))
        return planner.output(describe(planner, self.network.width))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)

    def get_config(self):
        return {**super().get_config(), "width": self.network.width, "seed": self.network.seed}


def build_fused(config: NetworkConfig):
    """The fused Cerber graph for ``config`` as a Keras model (same input and output as
    :func:`cerber_model.nn.keras_graph.build_cerber`, same weights)."""
    inputs = keras.Input((None, None, config.input_channels), name="image")
    out = FusedCerber(config.width, config.seed, name="cerber")(inputs)
    return keras.Model(inputs, out, name=f"cerber_n{config.width}_fused")
