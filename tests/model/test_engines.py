"""Inference engines: the channel-gather fold, OpenVINO against the reference, choosing an engine."""

import warnings

import numpy as np
import pytest

from cerber_model.runtime import engine as engine_module
from cerber_model.runtime.architecture import NetworkConfig
from cerber_model.runtime.bundle import default_bundle_path, load_bundle
from cerber_model.runtime.engine import EngineFallbackWarning, OnnxEngine, engine_kind, fold_gather, make_engine
from tests.model.helpers import jittered_weights, tiny_bundle

onnx = pytest.importorskip("onnx")


def _consumers(model, name):
    return [node for node in model.graph.node if name in node.input]


def _gather_conv_graph(index, source_channels=3, transpose=False, also_relu=False):
    """image (1, C, H, W) -> Gather(index, axis 1) -> Conv or ConvTranspose (group 1) [-> out],
    and, with ``also_relu``, the gather's output through a Relu as a second output."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(len(index))
    n = len(index)
    kernel = rng.normal(size=(n, 2, 3, 3) if transpose else (2, n, 3, 3)).astype(np.float32)
    conv = helper.make_node("ConvTranspose" if transpose else "Conv", ["g", "w", "b"], ["out"],
                            kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Gather", ["image", "idx"], ["g"], axis=1), conv]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)]
    if also_relu:
        nodes.append(helper.make_node("Relu", ["g"], ["relu"]))
        outputs.append(helper.make_tensor_value_info("relu", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "gather_conv",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, source_channels, "h", "w"])], outputs,
        [numpy_helper.from_array(np.asarray(index, np.int64), "idx"), numpy_helper.from_array(kernel, "w"),
         numpy_helper.from_array(rng.normal(size=2).astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": x})


@pytest.mark.parametrize("transpose", [False, True])
def test_fold_keeps_the_function_with_repeated_and_unread_channels(transpose):
    """Channel 2 read twice (the kernel rows sum), channel 3 never read (zero rows), a negative index."""
    from cerber_model.nn.fused import fold_channel_gathers

    model = _gather_conv_graph([2, 0, -2, 1, 2], source_channels=4, transpose=transpose)
    x = np.random.default_rng(0).normal(size=(1, 4, 10, 12)).astype(np.float32)
    before = _run(model, x)[0]
    assert fold_channel_gathers(model) == 1
    assert [node.op_type for node in model.graph.node] == ["ConvTranspose" if transpose else "Conv"]
    assert np.abs(_run(model, x)[0] - before).max() <= 1e-5 * np.abs(before).max()


def test_a_gather_that_feeds_something_else_stays_for_it():
    from cerber_model.nn.fused import fold_channel_gathers

    model = _gather_conv_graph([1, 1, 0], also_relu=True)
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    before = _run(model, x)
    assert fold_channel_gathers(model) == 1
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    assert conv.input[0] == "image"
    assert [node.op_type for node in _consumers(model, "g")] == ["Relu"]
    after = _run(model, x)
    assert np.abs(after[0] - before[0]).max() <= 1e-5 * np.abs(before[0]).max()
    assert np.array_equal(after[1], before[1])


def test_fold_gather_is_the_sum_over_repeated_indices():
    kernel = np.arange(2 * 4 * 1 * 1, dtype=np.float32).reshape(2, 4, 1, 1)
    folded = fold_gather(kernel, np.array([1, 0, 1, 3]), 5, axis=1)
    assert folded.shape == (2, 5, 1, 1)
    np.testing.assert_array_equal(folded[:, :, 0, 0], [[1, 0 + 2, 0, 3, 0], [5, 4 + 6, 0, 7, 0]])


@pytest.mark.parametrize("width", [1, 2, 4])
def test_exported_graph_has_no_gather_in_front_of_a_convolution(width):
    from cerber_model.nn.fused import export_onnx

    model = onnx.load_from_string(export_onnx(NetworkConfig(width=width), jittered_weights(NetworkConfig(width=width))))
    for node in model.graph.node:
        if node.op_type == "Gather":
            assert not {c.op_type for c in _consumers(model, node.output[0])} & {"Conv", "ConvTranspose"}, node.name


@pytest.fixture
def ov():
    return pytest.importorskip("openvino")


@pytest.mark.parametrize("width", [1, 2])
def test_openvino_equals_the_reference(ov, width):
    """OpenVINO (f32) running the fused graph computes the Keras graph's function (max abs diff <= 1e-4)."""
    pytest.importorskip("keras")
    from cerber_model.nn.fused import export_onnx
    from cerber_model.nn.keras_graph import KerasEngine

    config = NetworkConfig(width=width)
    weights = jittered_weights(config, seed=width)
    x = np.random.default_rng(1).random((48, 64), dtype=np.float32)
    reference = KerasEngine(config, weights).predict(x)
    engine = engine_module.OpenVinoEngine(export_onnx(config, weights))
    assert engine.precision == "f32"
    assert reference.std() > 0.05, "weights too tame for a meaningful comparison"
    assert np.abs(engine.predict(x) - reference).max() <= 1e-4


def test_openvino_runs_graphs_exported_before_the_fold(ov, monkeypatch):
    """A graph with the gather in front of d1_conv1 (every bundle saved before the exporter folded
    it): OpenVINO alone gets it wrong, the engine folds it on loading and gets it right."""
    from cerber_model.nn import fused

    config = NetworkConfig(width=2)
    weights = jittered_weights(config, seed=4)
    monkeypatch.setattr(fused, "fold_channel_gathers", lambda model: 0)
    unfolded = fused.export_onnx(config, weights)
    assert any(node.op_type == "Gather" and _consumers(onnx.load_from_string(unfolded), node.output[0])[0].op_type
               == "Conv" for node in onnx.load_from_string(unfolded).graph.node)
    x = np.random.default_rng(3).random((64, 96), dtype=np.float32)
    expected = OnnxEngine(unfolded).predict(x)
    core = ov.Core()
    plain = core.compile_model(core.read_model(model=unfolded), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert np.abs(plain({0: x[None, None]})[0][0, 0] - expected).max() > 1e-3, "OpenVINO got it right: drop the fold?"
    assert np.abs(engine_module.OpenVinoEngine(unfolded).predict(x) - expected).max() <= 1e-5


def test_the_default_model_runs_on_openvino_as_on_onnx_runtime(ov):
    bundle = load_bundle(default_bundle_path())
    x = np.random.default_rng(5).random((128, 160), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EngineFallbackWarning)
        engine = bundle.engine("openvino")
    assert engine.name == "openvino"
    assert np.abs(engine.predict(x) - bundle.engine("onnxruntime").predict(x)).max() <= 1e-5


def test_the_engine_is_chosen_by_name_or_by_the_environment(ov, monkeypatch):
    monkeypatch.delenv("CERBER_ENGINE", raising=False)
    assert engine_kind() == "auto"
    assert tiny_bundle(width=1, seed=2).engine().name == "openvino"  # auto, where OpenVINO is installed
    monkeypatch.setenv("CERBER_ENGINE", "OpenVINO")
    assert engine_kind() == "openvino" and engine_kind("onnxruntime") == "onnxruntime"
    bundle = tiny_bundle(width=1, seed=2)
    assert bundle.engine().name == "openvino"
    assert bundle.engine("onnxruntime").name == "onnxruntime"
    assert bundle.engine() is bundle.engine("openvino")  # made once
    monkeypatch.setenv("CERBER_ENGINE", "tensorrt")
    with pytest.raises(ValueError, match=r"unknown engine 'tensorrt' \(from CERBER_ENGINE\); choose one of "
                                         r"auto, onnxruntime, openvino"):
        bundle.engine()


def test_an_unknown_engine_setting_is_not_called_a_damaged_model(monkeypatch):
    monkeypatch.setenv("CERBER_ENGINE", "gpu")
    with pytest.raises(ValueError, match="CERBER_ENGINE"):
        load_bundle(default_bundle_path())


def test_without_openvino_onnx_runtime_runs_and_says_so(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    bundle = tiny_bundle(width=1, seed=2)
    with pytest.warns(EngineFallbackWarning, match=r"needs the openvino package.*running ONNX Runtime instead"):
        engine = make_engine(bundle.onnx, "openvino")
    assert engine.name == "onnxruntime"


def test_without_openvino_auto_runs_onnx_runtime_without_a_note(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.delenv("CERBER_ENGINE", raising=False)
    bundle = tiny_bundle(width=1, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bundle.engine().name == "onnxruntime"
        assert make_engine(bundle.onnx, "auto").name == "onnxruntime"


def test_an_engine_that_disagrees_with_onnx_runtime_is_not_used(monkeypatch):
    class Wrong:
        name = "openvino"

        def predict(self, x):
            return np.zeros_like(x)

    monkeypatch.setattr(engine_module, "make_engine",
                        lambda model, kind: Wrong() if kind == "openvino" else OnnxEngine(model))
    bundle = tiny_bundle(width=1, seed=2)
    with pytest.warns(EngineFallbackWarning, match="running ONNX Runtime instead"):
        engine = bundle.engine("openvino")
    assert engine.name == "onnxruntime"
