"""The fused Cerber graph: the same function as the Keras graph, in few wide operations.

Interpreting :func:`cerber_model.network.describe` branch by branch gives
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

The result is written as an ONNX graph (NCHW, any height and width divisible by 4)
that ONNX Runtime executes. Only numpy and the ``onnx`` package are needed to
build it; running it needs only ``onnxruntime``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network import BN_EPSILON, NetworkConfig, describe, layer_name

INPUT_NAME = "image"
OUTPUT_NAME = "probability"
OPSET = 17


@dataclass(frozen=True)
class _Tensor:
    name: str
    channels: int


# A branch is a list of (tensor, channel index) references; a stream is a list of branches.
Branch = list[tuple[_Tensor, int]]


class _FusedOps:
    """Interprets :func:`describe` as a fused ONNX graph, given the trained weights."""

    def __init__(self, weights: dict[str, np.ndarray]):
        from onnx import helper

        self.helper = helper
        self.weights = weights
        self.nodes = []
        self.initializers = []
        self._count = 0
        self._memo: dict[tuple, _Tensor] = {}

    # -- graph plumbing -------------------------------------------------------
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
            joined = tensors[0].name
        else:
            joined = self._node("Concat", [t.name for t in tensors], f"{base}_cat", axis=1)
        index = [offsets[t.name] + c for t, c in refs]
        if index == list(range(total)):
            result = _Tensor(joined, total)
        else:
            idx = self._const(f"{base}_idx", np.asarray(index, dtype=np.int64))
            result = _Tensor(self._node("Gather", [joined, idx], f"{base}_gather", axis=1), len(index))
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
                    self._memo[key] = _Tensor(make(t.name), t.channels)
                new.append((self._memo[key], c))
            out.append(new)
        return out

    # -- the operations of the architecture ----------------------------------
    def input(self):
        return [[(_Tensor(INPUT_NAME, 1), 0)]]

    def fan(self, s):
        return [s[0]] * 3

    def cross(self, s):
        return [s[i] + s[(i + 1) % 3] + s[(i + 2) % 3] for i in range(3)]

    def cat(self, *streams):
        return [sum(parts, []) for parts in zip(*streams, strict=True)]

    def merge(self, s):
        return [sum(s, [])]

    def act(self, s, kind):
        op = {"elu": "Elu", "relu": "Relu", "sigmoid": "Sigmoid"}[kind]
        return self._elementwise(s, kind, lambda name: self._node(op, [name], kind))

    def pool(self, s):
        return self._elementwise(
            s, "pool", lambda name: self._node("MaxPool", [name], "pool", kernel_shape=[2, 2], strides=[2, 2])
        )

    def bn(self, name, s):
        k = len(s)
        refs = sum(s, [])
        scales, shifts = [], []
        for i in range(k):
            layer = layer_name(name, i, k)
            w = {v: self.weights[f"{layer}/{v}"] for v in ("gamma", "beta", "moving_mean", "moving_variance")}
            scale = w["gamma"] / np.sqrt(w["moving_variance"] + BN_EPSILON)
            scales.append(scale)
            shifts.append(w["beta"] - w["moving_mean"] * scale)
        scale, shift = np.concatenate(scales), np.concatenate(shifts)
        one_tensor = len({t for t, _ in refs}) == 1
        if k == 3 and one_tensor and all(sorted(c for _, c in b) == list(range(b[0][0].channels)) for b in s):
            return self._bn_replicated(name, s, scale, shift)
        t = self._materialise(refs, name)
        shape = (1, -1, 1, 1)
        mul = self._const(f"{name}_scale", scale.astype(np.float32).reshape(shape))
        add = self._const(f"{name}_shift", shift.astype(np.float32).reshape(shape))
        y = self._node("Add", [self._node("Mul", [t.name, mul], name), add], name)
        return self._whole(_Tensor(y, len(refs)), k)

    def _bn_replicated(self, name, s, scale, shift):
        """Per-branch BN of a cross-concatenation: all three branches read the same
        tensor in a different order. Instead of gathering three permuted copies and
        scaling them, broadcast one tensor against a (3, C) table of scales: each
        branch's copy keeps the tensor's own channel order, and the next
        convolution's kernel is permuted to match."""
        t = s[0][0][0]
        c = t.channels
        table_scale, table_shift = np.zeros((3, c), np.float32), np.zeros((3, c), np.float32)
        for i, branch in enumerate(s):
            for j, (_, ch) in enumerate(branch):
                table_scale[i, ch] = scale[i * c + j]
                table_shift[i, ch] = shift[i * c + j]
        x = self._node("Unsqueeze", [t.name, self._const("axis1", np.asarray([1], np.int64))], f"{name}_unsq")
        y = self._node("Mul", [x, self._const(f"{name}_scale", table_scale.reshape(1, 3, c, 1, 1))], name)
        y = self._node("Add", [y, self._const(f"{name}_shift", table_shift.reshape(1, 3, c, 1, 1))], name)
        hw = self._node("Slice", [self._node("Shape", [t.name], f"{name}_shape"),
                                  self._const("two", np.asarray([2], np.int64)),
                                  self._const("four", np.asarray([4], np.int64))], f"{name}_hw")
        target = self._node("Concat", [self._const(f"{name}_nc", np.asarray([1, 3 * c], np.int64)), hw],
                            f"{name}_target", axis=0)
        out = _Tensor(self._node("Reshape", [y, target], f"{name}_flat"), 3 * c)
        return [[(out, i * c + ch) for _, ch in branch] for i, branch in enumerate(s)]

    def conv(self, name, s, filters, kernel, act, transpose=False):
        k = len(s)
        kh = kw = kernel
        kernels = [self.weights[f"{layer_name(name, i, k)}/kernel"] for i in range(k)]
        biases = [self.weights[f"{layer_name(name, i, k)}/bias"] for i in range(k)]
        union = list(dict.fromkeys(ref for branch in s for ref in branch))
        if k == 3 and len(union) > len(s[0]):
            # Each branch reads its own channels: one grouped convolution, branch i
            # reading (in any order) the i-th third of one tensor.
            x, s = self._materialise_grouped(s, name)
            block = x.channels // 3
            group = 3
            if transpose:  # ONNX: (in, out/group): global input rows, local outputs
                rows = [[c for _, c in branch] for branch in s]
                n_in, n_out, offsets = x.channels, filters, [0, 0, 0]
            else:  # ONNX: (out, in/group): local input rows, global outputs
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
        # Assemble in Keras' (kh, kw, in, out) order, then lay out for ONNX:
        # Conv wants (out, in, kh, kw), ConvTranspose (in, out, kh, kw).
        w = np.zeros((kh, kw, n_in, n_out), np.float32)
        for kk, branch_rows, offset in zip(kernels, rows, offsets, strict=True):
            if transpose:  # Keras' transposed kernels are (kh, kw, out, in)
                kk = kk.transpose(0, 1, 3, 2)
            for j, r in enumerate(branch_rows):
                w[:, :, r, offset:offset + filters] += kk[:, :, j, :]
        w = w.transpose(2, 3, 0, 1) if transpose else w.transpose(3, 2, 0, 1)
        inputs = [x.name, self._const(f"{name}_w", w.astype(np.float32)),
                  self._const(f"{name}_b", np.concatenate(biases).astype(np.float32))]
        if transpose:
            # Keras "same" with stride 2: output exactly twice the input; the
            # extra row/column of the full transposed output is cut at the end.
            y = self._node("ConvTranspose", inputs, name, group=group, kernel_shape=[kh, kw],
                           strides=[2, 2], pads=[0, 0, 1, 1])
        else:
            y = self._node("Conv", inputs, name, group=group, kernel_shape=[kh, kw], pads=[kh // 2] * 4)
        out = _Tensor(y, k * filters)
        if act == "softmax":
            out = self._softmax(out, k, filters, name)
        elif act is not None:
            return self.act(self._whole(out, k), act)
        return self._whole(out, k)

    def _softmax(self, t: _Tensor, k: int, filters: int, name: str) -> _Tensor:
        if k == 1:
            return _Tensor(self._node("Softmax", [t.name], f"{name}_softmax", axis=1), t.channels)
        shape = self._node("Shape", [t.name], f"{name}_shape")
        split = self._const(f"{name}_split", np.asarray([0, k, filters, -1], np.int64))
        y = self._node("Reshape", [t.name, split], f"{name}_split")
        y = self._node("Softmax", [y], f"{name}_softmax", axis=2)
        return _Tensor(self._node("Reshape", [y, shape], f"{name}_unsplit"), t.channels)


def export_onnx(config: NetworkConfig, weights: dict[str, np.ndarray]) -> bytes:
    """The fused graph for ``config`` with ``weights`` ({"layer/var": array}) as ONNX bytes.

    Input ``image``: float32 (1, 1, H, W), H and W divisible by 4.
    Output ``probability``: float32 (1, 1, H, W) in [0, 1].
    """
    import onnx
    from onnx import TensorProto, helper

    ops = _FusedOps(weights)
    out = describe(ops, config.width)
    result = ops._materialise(out[0], "output")
    ops.nodes.append(helper.make_node("Identity", [result.name], [OUTPUT_NAME], name="output"))
    graph = helper.make_graph(
        ops.nodes,
        f"cerber_n{config.width}_fused",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 1, "height", "width"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 1, "height", "width"])],
        ops.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cerber")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
