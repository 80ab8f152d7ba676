"""The network: faithful architecture, any input size, and the fused graph equal to the reference."""

import numpy as np
import pytest

from cerber_model.runtime.architecture import ConfigError, NetworkConfig, count_parameters, parameter_shapes
from tests.model.helpers import jittered_weights

keras = pytest.importorskip("keras")


def test_parameter_counts_match_keras_and_readme():
    from cerber_model.nn.keras_graph import build_cerber

    expected = {1: 18_813, 2: 72_588, 3: 162_145}  # documented in the README
    for n, trainable in expected.items():
        model = build_cerber(NetworkConfig(width=n))
        keras_trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert keras_trainable == trainable
        assert count_parameters(NetworkConfig(width=n))["trainable"] == trainable
        assert {w.path: tuple(w.shape) for w in model.weights} == parameter_shapes(NetworkConfig(width=n))


def test_branches_start_different():
    from cerber_model.nn.keras_graph import build_cerber, get_weights

    w = get_weights(build_cerber(NetworkConfig(width=2, seed=5)))
    for step in ("stem_conv", "c1_conv1", "c2_conv2", "br_conv3"):
        x, y, z = (w[f"{step}_{b}/kernel"] for b in "xyz")
        assert not np.allclose(x, y) and not np.allclose(y, z) and not np.allclose(x, z), step


@pytest.mark.parametrize("shape", [(4, 4), (36, 52), (64, 40)])
def test_any_size_divisible_by_four(shape):
    from cerber_model.nn.keras_graph import build_cerber

    model = build_cerber(NetworkConfig(width=1))
    out = model.predict(np.random.default_rng(0).random((1, *shape, 1), dtype=np.float32), verbose=0)
    assert out.shape == (1, *shape, 1)
    assert np.all((out >= 0) & (out <= 1))


def test_config_validation():
    with pytest.raises(ConfigError, match="width"):
        NetworkConfig(width=0)
    with pytest.raises(ConfigError, match="unknown network settings"):
        NetworkConfig.from_dict({"width": 2, "depth": 3})


@pytest.mark.parametrize("width", [1, 2, 4])
def test_fused_graph_equals_reference(width):
    """The ONNX fused graph, its channel gathers folded into the convolutions, computes the Keras
    graph's function (max abs diff <= 1e-4)."""
    import onnx
    import onnxruntime as ort

    from cerber_model.nn.fused import export_onnx
    from cerber_model.nn.keras_graph import build_cerber, set_weights

    config = NetworkConfig(width=width)
    weights = jittered_weights(config, seed=width)
    model = build_cerber(config)
    set_weights(model, weights)
    x = np.random.default_rng(1).random((1, 48, 64, 1), dtype=np.float32)
    reference = model.predict(x, verbose=0)[0, :, :, 0]
    graph = export_onnx(config, weights)
    nodes = onnx.load_from_string(graph).graph.node
    gathered = {node.output[0] for node in nodes if node.op_type == "Gather"}
    assert not [node.name for node in nodes if node.op_type in ("Conv", "ConvTranspose") and node.input[0] in gathered]
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    fused = session.run(None, {"image": x.transpose(0, 3, 1, 2)})[0][0, 0]
    assert reference.std() > 0.05, "weights too tame for a meaningful comparison"
    assert np.abs(fused - reference).max() <= 1e-4


def test_fused_graph_detects_a_wrong_weight():
    """The comparison above is sensitive: one branch's weights swapped changes the output."""
    import onnxruntime as ort

    from cerber_model.nn.fused import export_onnx
    from cerber_model.nn.keras_graph import build_cerber, set_weights

    config = NetworkConfig(width=1)
    weights = jittered_weights(config, seed=3)
    model = build_cerber(config)
    set_weights(model, weights)
    x = np.random.default_rng(2).random((1, 32, 32, 1), dtype=np.float32)
    reference = model.predict(x, verbose=0)[0, :, :, 0]
    swapped = dict(weights)
    x_kernel, y_kernel = "c1_conv2_x/kernel", "c1_conv2_y/kernel"
    swapped[x_kernel], swapped[y_kernel] = weights[y_kernel], weights[x_kernel]
    session = ort.InferenceSession(export_onnx(config, swapped), providers=["CPUExecutionProvider"])
    fused = session.run(None, {"image": x.transpose(0, 3, 1, 2)})[0][0, 0]
    assert np.abs(fused - reference).max() > 1e-3


@pytest.mark.parametrize("width", [1, 2])
def test_fused_keras_graph_trains_like_the_reference(width):
    """The trainable fused graph has the reference's variables (same names and initial values) and
    computes the same outputs, batch-norm statistics and gradients, in training and inference."""
    import tensorflow as tf

    from cerber_model.nn.fused_keras import build_fused
    from cerber_model.nn.keras_graph import build_cerber, get_weights, set_weights, weight_name

    config = NetworkConfig(width=width)
    reference, fused = build_cerber(config), build_fused(config)
    start_r, start_f = get_weights(reference), get_weights(fused)
    assert start_r.keys() == start_f.keys()
    assert all(np.array_equal(start_r[k], start_f[k]) for k in start_r)
    weights = jittered_weights(config, seed=width)
    set_weights(reference, weights)
    set_weights(fused, weights)
    x = np.random.default_rng(1).random((2, 48, 64, 1), dtype=np.float32)
    a, b = reference(x, training=False).numpy(), fused(x, training=False).numpy()
    assert a.std() > 0.05 and np.abs(a - b).max() <= 1e-4

    def step(model):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = tf.reduce_mean(out**2)
        grads = tape.gradient(loss, model.trainable_variables)
        return out.numpy(), {weight_name(v): g.numpy() for v, g in zip(model.trainable_variables, grads, strict=True)}

    (out_r, grad_r), (out_f, grad_f) = step(reference), step(fused)
    assert np.abs(out_r - out_f).max() <= 1e-4
    after_r, after_f = get_weights(reference), get_weights(fused)
    moved = [k for k in after_r if k.endswith("moving_mean") and not np.allclose(after_r[k], weights[k])]
    assert moved, "training mode must update the moving statistics"
    assert max(np.abs(after_r[k] - after_f[k]).max() for k in after_r) <= 1e-5
    scale = max(np.abs(g).max() for g in grad_r.values())
    assert max(np.abs(grad_r[k] - grad_f[k]).max() for k in grad_r) <= 1e-4 * scale
