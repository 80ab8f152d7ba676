"""The fused Cerber graph: the same function as the Keras graph, in few wide operations.

Interpreting :func:`cerber_model.runtime.architecture.describe` branch by branch gives
hundreds of narrow convolutions and concatenations. Here the three branches are
kept side by side in one tensor and every step becomes one wide operation:

* a cross-concatenation costs nothing: each branch's view is a list of
  (tensor, channel) references, and the next convolution's kernel is laid out
  to read the stacked channels in the permuted order;
* the three per-branch convolutions become one convolution, dense when every
  branch reads the same channels (cross-concatenated inputs) and grouped
  (``group=3``) when each branch reads its own;
* per-branch batch-normalisation, softmax and pooling act on each third of the
  stacked channels.

The plan (:class:`FusedPlanner`) is the same for two backends. Every wide kernel
and batch-norm table is an *index layout* into the per-branch weights, so the
per-branch weights stay the only parameters:

* :class:`_OnnxBackend` (here) fills the layouts from trained weights and writes
  an ONNX graph (NCHW, any height and width divisible by 4) that ONNX Runtime
  and OpenVINO execute; only numpy and the ``onnx`` package are needed to build
  it. A channel gather in front of a convolution is folded into that
  convolution's kernel (:func:`fold_channel_gathers`);
* :mod:`cerber_model.fused_keras` gathers the layouts from Keras variables inside
  the graph, so the fused graph can be trained and its gradients reach the
  per-branch weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..runtime.architecture import BN_EPSILON, NetworkConfig, describe, layer_name
from ..runtime.engine import fold_gather

INPUT_NAME = "image"
OUTPUT_NAME = "probability"
OPSET = 17


@dataclass(frozen=True)
class _Tensor:
    name: str
    channels: int
    handle: Any = field(default=None, compare=False, hash=False)

    @property
    def ref(self):
        return self.name if self.handle is None else self.handle


# A branch is a list of (tensor, channel index) references; a stream is a list of branches.
Branch = list[tuple[_Tensor, int]]


def kernel_layout(shapes: list[tuple[int, ...]], rows: list[list[int]], offsets: list[int],
                  n_in: int, n_out: int, transpose: bool) -> np.ndarray:
    """Where each element of a wide kernel comes from.

    ``shapes`` are the per-branch Keras kernel shapes (``(kh, kw, in, out)``, or
    ``(kh, kw, out, in)`` for transposed kernels); branch ``b`` reads input rows
    ``rows[b]`` and writes output columns from ``offsets[b]``. Returns an int64
    array ``(kh, kw, n_in, n_out)`` indexing the concatenation of the flattened
    per-branch kernels; -1 marks a zero.
    """
    kh, kw = shapes[0][:2]
    index = np.full((kh, kw, n_in, n_out), -1, np.int64)
    base = 0
    for shape, branch_rows, offset in zip(shapes, rows, offsets, strict=True):
        flat = np.arange(base, base + int(np.prod(shape)), dtype=np.int64).reshape(shape)
        if transpose:
            flat = flat.transpose(0, 1, 3, 2)
        filters = flat.shape[3]
        for j, r in enumerate(branch_rows):
            target = index[:, :, r, offset:offset + filters]
            assert (target == -1).all(), "two weights for one kernel element"
            index[:, :, r, offset:offset + filters] = flat[:, :, j, :]
        base += flat.size
    return index


def take_layout(flat: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``index`` (see :func:`kernel_layout`) filled from ``flat``; -1 gives 0."""
    return np.concatenate([flat, np.zeros(1, flat.dtype)])[index]


class FusedPlanner:
    """Interprets :func:`describe` as wide operations on a backend.

    The backend makes the tensors: ``input()``, ``concat(refs)``,
    ``gather(ref, index)``, ``act(ref, kind)``, ``pool(ref)``,
    ``softmax(ref, groups, filters, name)``, ``conv(name, ref, layers, index,
    group, transpose)`` (kernel from :func:`kernel_layout` over the kernels of
    ``layers``, bias the concatenation of theirs) and ``bn(name, ref, channels,
    src, params)`` (output channel ``j`` is layer ``params[j][0]``'s batch norm,
    channel ``params[j][1]``, of input channel ``src[j]``; returns the tensor and
    where each output channel landed in it). Every weight shape comes from
    ``shapes`` ({"layer/var": shape}).
    """

    def __init__(self, backend, shapes: dict[str, tuple[int, ...]]):
        self.backend = backend
        self.shapes = shapes
        self._count = 0
        self._memo: dict[tuple, _Tensor] = {}

    def _tensor(self, handle, channels: int) -> _Tensor:
        if isinstance(handle, str):
            return _Tensor(handle, channels)
        self._count += 1
        return _Tensor(f"t{self._count}", channels, handle)

    def _materialise(self, refs: Branch, base: str) -> _Tensor:
        """A tensor whose channels are exactly ``refs``, in order (copying only if needed)."""
        tensors = list(dict.fromkeys(t for t, _ in refs))
        # Already a whole tensor, in order?
        if len(tensors) == 1 and [c for _, c in refs] == list(range(tensors[0].channels)):
            return tensors[0]
        key = ("mat", tuple((t.name, c) for t, c in refs))
        if key in self._memo:
            return self._memo[key]
        offsets, total = {}, 0
        for t in tensors:
            offsets[t.name], total = total, total + t.channels
        if len(tensors) == 1:
            joined = tensors[0].ref
        else:
            joined = self.backend.concat([t.ref for t in tensors], f"{base}_cat")
        index = [offsets[t.name] + c for t, c in refs]
        if index == list(range(total)):
            result = self._tensor(joined, total)
        else:
            result = self._tensor(self.backend.gather(joined, np.asarray(index, np.int64), base), len(index))
        self._memo[key] = result
        return result

    def _materialise_grouped(self, s, base: str) -> tuple[_Tensor, list[Branch]]:
        """A tensor whose i-th third holds exactly branch i's channels (in any order)."""
        tensors = {t for branch in s for t, _ in branch}
        if len(tensors) == 1:
            (t,) = tensors
            block = t.channels // 3
            if t.channels == 3 * len(s[0]) and all(
                sorted(c for _, c in branch) == list(range(i * block, (i + 1) * block)) for i, branch in enumerate(s)
            ):
                return t, s
        t = self._materialise(sum(s, []), base)
        return t, self._whole(t, 3)

    @staticmethod
    def _whole(t: _Tensor, parts: int) -> list[Branch]:
        per = t.channels // parts
        return [[(t, c) for c in range(i * per, (i + 1) * per)] for i in range(parts)]

    def _elementwise(self, s, op_key, make):
        """Apply a per-channel, parameter-free op to every tensor the stream refers to."""
        out = []
        for branch in s:
            new = []
            for t, c in branch:
                key = (op_key, t.name)
                if key not in self._memo:
                    self._memo[key] = self._tensor(make(t.ref), t.channels)
                new.append((self._memo[key], c))
            out.append(new)
        return out

    # -- the operations of the architecture ----------------------------------
    def input(self):
        return [[(self._tensor(self.backend.input(), 1), 0)]]

    def fan(self, s):
        return [s[0]] * 3

    def cross(self, s):
        return [s[i] + s[(i + 1) % 3] + s[(i + 2) % 3] for i in range(3)]

    def cat(self, *streams):
        return [sum(parts, []) for parts in zip(*streams, strict=True)]

    def merge(self, s):
        return [sum(s, [])]

    def act(self, s, kind):
        return self._elementwise(s, kind, lambda ref: self.backend.act(ref, kind))

    def pool(self, s):
        return self._elementwise(s, "pool", self.backend.pool)

    def bn(self, name, s):
        k = len(s)
        refs = sum(s, [])
        params = [(layer_name(name, i, k), j) for i, branch in enumerate(s) for j in range(len(branch))]
        tensors = list(dict.fromkeys(t for t, _ in refs))
        if len(tensors) == 1:
            x, src = tensors[0], [c for _, c in refs]
        else:
            x = self._materialise(refs, name)
            src = list(range(len(refs)))
        handle, positions = self.backend.bn(name, x.ref, x.channels, np.asarray(src, np.int64), params)
        out = self._tensor(handle, len(refs))
        flat = [(out, int(p)) for p in positions]
        sizes = np.cumsum([0] + [len(b) for b in s])
        return [flat[sizes[i]:sizes[i + 1]] for i in range(k)]

    def conv(self, name, s, filters, kernel, act, transpose=False):
        k = len(s)
        layers = [layer_name(name, i, k) for i in range(k)]
        shapes = [self.shapes[f"{layer}/kernel"] for layer in layers]
        union = list(dict.fromkeys(ref for branch in s for ref in branch))
        if k == 3 and len(union) > len(s[0]):
            # Each branch reads its own channels: one grouped convolution, branch i
            # reading (in any order) the i-th third of one tensor.
            x, s = self._materialise_grouped(s, name)
            block = x.channels // 3
            group = 3
            if transpose:  # global input rows, local outputs
                rows = [[c for _, c in branch] for branch in s]
                n_in, n_out, offsets = x.channels, filters, [0, 0, 0]
            else:  # local input rows, global outputs
                rows = [[c - i * block for _, c in branch] for i, branch in enumerate(s)]
                n_in, n_out, offsets = block, 3 * filters, [0, filters, 2 * filters]
        else:
            # Every branch reads (a permutation of) the same channels: one dense
            # convolution whose kernel scatters each branch's weights into place.
            x = self._materialise(union, name)
            pos = {ref: j for j, ref in enumerate(union)}
            group = 1
            rows = [[pos[ref] for ref in branch] for branch in s]
            n_in, n_out, offsets = len(union), k * filters, [i * filters for i in range(k)]
        index = kernel_layout(shapes, rows, offsets, n_in, n_out, transpose)
        out = self._tensor(self.backend.conv(name, x.ref, layers, index, group, transpose), k * filters)
        if act == "softmax":
            out = self._tensor(self.backend.softmax(out.ref, k, filters, name), out.channels)
        elif act is not None:
            return self.act(self._whole(out, k), act)
        return self._whole(out, k)

    def output(self, s):
        """The handle of the (single-channel) output stream."""
        return self._materialise(s[0], "output").ref


class _OnnxBackend:
    """Writes the plan as ONNX nodes, with the layouts filled from trained weights."""

    def __init__(self, weights: dict[str, np.ndarray]):
        from onnx import helper

        self.helper = helper
        self.weights = weights
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, base: str) -> str:
        self._count += 1
        return f"{base}__{self._count}"

    def _const(self, base: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self._name(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def _node(self, op: str, inputs: list[str], base: str, **attrs) -> str:
        out = self._name(base)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def _flat(self, layers: list[str], var: str) -> np.ndarray:
        return np.concatenate([self.weights[f"{layer}/{var}"].ravel() for layer in layers]).astype(np.float32)

    def input(self):
        return INPUT_NAME

    def concat(self, refs, base):
        return self._node("Concat", refs, base, axis=1)

    def gather(self, ref, index, base):
        return self._node("Gather", [ref, self._const(f"{base}_idx", index)], f"{base}_gather", axis=1)

    def act(self, ref, kind):
        op = {"elu": "Elu", "relu": "Relu", "sigmoid": "Sigmoid"}[kind]
        return self._node(op, [ref], kind)

    def pool(self, ref):
        return self._node("MaxPool", [ref], "pool", kernel_shape=[2, 2], strides=[2, 2])

    def bn(self, name, ref, channels, src, params):
        by_layer = {}
        for layer, _ in params:
            if layer not in by_layer:
                w = {v: self.weights[f"{layer}/{v}"] for v in ("gamma", "beta", "moving_mean", "moving_variance")}
                scale = w["gamma"] / np.sqrt(w["moving_variance"] + BN_EPSILON)
                by_layer[layer] = (scale, w["beta"] - w["moving_mean"] * scale)
        scale = np.asarray([by_layer[layer][0][j] for layer, j in params])
        shift = np.asarray([by_layer[layer][1][j] for layer, j in params])
        blocks = len(src) // channels if len(src) % channels == 0 else 0
        if blocks == 3 and all(sorted(src[i * channels:(i + 1) * channels]) == list(range(channels))
                               for i in range(3)):
            return self._bn_replicated(name, ref, channels, src, scale, shift)
        if list(src) != list(range(channels)):
            ref = self.gather(ref, src, name)
        shape = (1, -1, 1, 1)
        mul = self._const(f"{name}_scale", scale.astype(np.float32).reshape(shape))
        add = self._const(f"{name}_shift", shift.astype(np.float32).reshape(shape))
        return self._node("Add", [self._node("Mul", [ref, mul], name), add], name), range(len(src))

    def _bn_replicated(self, name, ref, c, src, scale, shift):
        """Per-branch BN of a cross-concatenation: all three branches read the same
        tensor in a different order. Instead of gathering three permuted copies and
        scaling them, broadcast one tensor against a (3, C) table of scales: each
        branch's copy keeps the tensor's own channel order, and the next
        convolution's kernel is permuted to match."""
        table_scale, table_shift = np.zeros((3, c), np.float32), np.zeros((3, c), np.float32)
        for j, ch in enumerate(src):
            table_scale[j // c, ch] = scale[j]
            table_shift[j // c, ch] = shift[j]
        x = self._node("Unsqueeze", [ref, self._const("axis1", np.asarray([1], np.int64))], f"{name}_unsq")
        y = self._node("Mul", [x, self._const(f"{name}_scale", table_scale.reshape(1, 3, c, 1, 1))], name)
        y = self._node("Add", [y, self._const(f"{name}_shift", table_shift.reshape(1, 3, c, 1, 1))], name)
        hw = self._node("Slice", [self._node("Shape", [ref], f"{name}_shape"),
                                  self._const("two", np.asarray([2], np.int64)),
                                  self._const("four", np.asarray([4], np.int64))], f"{name}_hw")
        target = self._node("Concat", [self._const(f"{name}_nc", np.asarray([1, 3 * c], np.int64)), hw],
                            f"{name}_target", axis=0)
        out = self._node("Reshape", [y, target], f"{name}_flat")
        return out, [(j // c) * c + ch for j, ch in enumerate(src)]

    def conv(self, name, ref, layers, index, group, transpose):
        w = take_layout(self._flat(layers, "kernel"), index)
        # ONNX: Conv wants (out, in, kh, kw), ConvTranspose (in, out, kh, kw).
        w = w.transpose(2, 3, 0, 1) if transpose else w.transpose(3, 2, 0, 1)
        kh, kw = index.shape[:2]
        inputs = [ref, self._const(f"{name}_w", w.astype(np.float32)),
                  self._const(f"{name}_b", self._flat(layers, "bias"))]
        if transpose:
            # Keras "same" with stride 2: output exactly twice the input; the
            # extra row/column of the full transposed output is cut at the end.
            return self._node("ConvTranspose", inputs, name, group=group, kernel_shape=[kh, kw],
                              strides=[2, 2], pads=[0, 0, 1, 1])
        return self._node("Conv", inputs, name, group=group, kernel_shape=[kh, kw], pads=[kh // 2] * 4)

    def softmax(self, ref, k, filters, name):
        if k == 1:
            return self._node("Softmax", [ref], f"{name}_softmax", axis=1)
        shape = self._node("Shape", [ref], f"{name}_shape")
        split = self._const(f"{name}_split", np.asarray([0, k, filters, -1], np.int64))
        y = self._node("Reshape", [ref, split], f"{name}_split")
        y = self._node("Softmax", [y], f"{name}_softmax", axis=2)
        return self._node("Reshape", [y, shape], f"{name}_unsplit")


def fold_channel_gathers(model) -> int:
    """Fold every channel ``Gather`` in front of a convolution into its kernel, in place.

    A ``Gather`` on axis 1 with constant indices ``idx`` that feeds a ``Conv`` or
    ``ConvTranspose`` (one group, constant kernel) is removed from that
    convolution's path: the convolution reads the gather's source directly with
    the kernel ``W'[:, j] = sum over i with idx[i] == j of W[:, i]`` (input channels:
    axis 1 of a Conv kernel, axis 0 of a ConvTranspose kernel; repeated indices
    sum, source channels never read get zero weights; see
    :func:`cerber_model.runtime.engine.fold_gather`). The two compute the same
    function with one tensor copy fewer, and OpenVINO 2026.4 computes a channel
    gather behind the batch-norm reshape wrongly. A gather that also feeds
    something else stays for those consumers; one left without consumers is removed.
    Returns the number of convolutions changed.
    """
    from onnx import numpy_helper, shape_inference

    graph = model.graph
    arrays = {init.name: init for init in graph.initializer}
    inferred = shape_inference.infer_shapes(model, data_prop=True).graph
    channels = {}
    for info in list(inferred.value_info) + list(inferred.input):
        dims = info.type.tensor_type.shape.dim
        if len(dims) >= 2 and dims[1].HasField("dim_value"):
            channels[info.name] = dims[1].dim_value
    gathers = {}
    for node in graph.node:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if (node.op_type == "Gather" and axis == 1 and node.input[1] in arrays
                and node.input[0] in channels):
            index = numpy_helper.to_array(arrays[node.input[1]])
            if index.ndim == 1:
                gathers[node.output[0]] = (node.input[0], index.astype(np.int64), channels[node.input[0]])
    folded = 0
    for node in graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if (node.op_type not in ("Conv", "ConvTranspose") or group != 1 or node.input[0] not in gathers
                or node.input[1] not in arrays):
            continue
        source, index, n_source = gathers[node.input[0]]
        kernel = fold_gather(numpy_helper.to_array(arrays[node.input[1]]), index, n_source,
                             1 if node.op_type == "Conv" else 0)
        name = f"{node.input[1]}_folded"
        graph.initializer.append(numpy_helper.from_array(kernel, name))
        node.input[0], node.input[1] = source, name
        folded += 1
    _remove_unused(graph)
    return folded


def _remove_unused(graph) -> None:
    """Drop nodes whose outputs nothing reads, then initializers nothing reads."""
    while True:
        read = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
        dead = [node for node in graph.node if not any(out in read for out in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input}
    for init in [init for init in graph.initializer if init.name not in read]:
        graph.initializer.remove(init)


def export_onnx(config: NetworkConfig, weights: dict[str, np.ndarray]) -> bytes:
    """The fused graph for ``config`` with ``weights`` ({"layer/var": array}) as ONNX bytes.

    Input ``image``: float32 (1, 1, H, W), H and W divisible by 4.
    Output ``probability``: float32 (1, 1, H, W) in [0, 1].
    """
    import onnx
    from onnx import TensorProto, helper

    from ..runtime.architecture import parameter_shapes

    backend = _OnnxBackend(weights)
    planner = FusedPlanner(backend, parameter_shapes(config))
    result = planner.output(describe(planner, config.width))
    backend.nodes.append(helper.make_node("Identity", [result], [OUTPUT_NAME], name="output"))
    graph = helper.make_graph(
        backend.nodes,
        f"cerber_n{config.width}_fused",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 1, "height", "width"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 1, "height", "width"])],
        backend.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cerber")
    model.ir_version = 8
    fold_channel_gathers(model)
    onnx.checker.check_model(model)
    return model.SerializeToString()
