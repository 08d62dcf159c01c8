"""ONNX files -> `ImportedModel` (the op table is in `search.importers`).

`import_onnx` reads the file with the ``onnx`` package (weights stored as external
data are not read: only shapes are needed), fixes the shapes of the graph inputs
(``input_shapes``, one per non-initializer input, in order), runs
``onnx.shape_inference.infer_shapes`` (with data propagation, so shapes computed by
Shape / Gather / Concat chains resolve) and turns each node into layers with the
rules of `search.importers.ops`. Every problem is a `WorkloadError` naming the file,
the node (its ONNX name, or ``#index`` in the graph when it has none) and what is
unsupported; nothing is returned then. Layers are named after their nodes (torch.onnx's
scope names become module paths: ``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hw.cli import first_line
from search.importers import ops
from search.importers.imported import Collector, DynamicShapeError, ImportedModel, check_input_shape
from search.workload_file import WorkloadError

__all__ = ["import_onnx"]

_STANDARD = ("", "ai.onnx")
_MS = "com.microsoft"

# op type -> (index of the data input, index of the weights) for convolutions and
# matrix products; quantized forms read the same shapes.
_CONVS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
_MATMULS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}
_MS_ALIASES = {"FusedConv": "Conv", "FusedGemm": "Gemm", "FusedMatMul": "MatMul"}
# Ops that multiply-accumulate but have no layer form here: refused, never skipped.
_REFUSED = {
    "Einsum": "Einsum is not supported (write the product as MatMul)",
    "LSTM": "recurrent layers (LSTM) are not supported",
    "GRU": "recurrent layers (GRU) are not supported",
    "RNN": "recurrent layers (RNN) are not supported",
    "DeformConv": "deformable convolutions are not supported",
}
_MS_REFUSED = {"Attention", "MultiHeadAttention", "QAttention", "GroupQueryAttention", "PackedAttention",
               "PackedMultiHeadAttention", "MatMulNBits", "MatMulInteger16", "QGemm", "QOrderedMatMul",
               "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "NhwcConv", "QLinearConv",
               "ConvTransposeWithDynamicPads"}
_MAC_OPS = set(_CONVS) | set(_MATMULS) | set(_REFUSED) | {"Gemm", "ConvTranspose", "Attention"}


def _need_onnx(where: str):
    try:
        import onnx
        import onnx.shape_inference
    except ImportError:
        raise WorkloadError(f"{where}: importing ONNX models needs the onnx package "
                            "(python -m pip install -e \".[onnx]\")") from None
    return onnx


def _load(onnx, where: str):
    path = Path(where)
    if path.is_dir():
        raise WorkloadError(f"{where}: is a directory, not an ONNX file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WorkloadError(f"{where}: cannot read the model: {e.strerror or e}") from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf's DecodeError and friends
        raise WorkloadError(f"{where}: not an ONNX model (cannot parse it: {first_line(e)})") from None
    if model.ir_version < 1 or not model.opset_import or not model.graph.node:
        raise WorkloadError(f"{where}: not an ONNX model (no IR version, opset or graph nodes)")
    return model


# ---- inputs ---------------------------------------------------------------------------------
def _dims(value_info) -> list | None:
    """The dims of a tensor's type: ints, dim_param strings or None; None for no shape."""
    t = value_info.type
    if t.WhichOneof("value") != "tensor_type":
        return []
    tt = t.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]


def _fix_inputs(where: str, graph, input_shapes: Sequence[Sequence[int]] | None) -> bool:
    """Check the graph inputs are static, or set them from ``input_shapes``; True if set."""
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    for i in inputs:
        if i.type.WhichOneof("value") != "tensor_type":
            raise WorkloadError(f"{where}: input {i.name!r} is not a tensor (sequences and maps are not supported)")
    if input_shapes is None:
        for i in inputs:
            dims = _dims(i)
            if dims is None:
                raise DynamicShapeError(where, f"input {i.name!r} has no shape in the model", "1,3,224,224")
            for j, d in enumerate(dims):
                if not isinstance(d, int) or d < 1:
                    example = ",".join(str(x) if isinstance(x, int) and x > 0 else "1" for x in dims)
                    param = f" ({d!r})" if isinstance(d, str) else ""
                    raise DynamicShapeError(where, f"input {i.name!r} has dynamic dimension {j}{param}", example)
        return False
    shapes = [check_input_shape(s, f"--input-shape for input {i.name!r}") for s, i in zip(input_shapes, inputs)]
    if len(input_shapes) != len(inputs):
        names = ", ".join(repr(i.name) for i in inputs)
        raise WorkloadError(f"{where}: the model has {len(inputs)} input(s) ({names}); "
                            f"--input-shape gives {len(input_shapes)} shape(s)")
    for i, shape in zip(inputs, shapes):
        dims = _dims(i)
        if dims is not None:
            if len(dims) != len(shape):
                raise WorkloadError(f"{where}: input {i.name!r} has {len(dims)} dimensions; "
                                    f"--input-shape gives {len(shape)} ({','.join(map(str, shape))})")
            for j, (d, s) in enumerate(zip(dims, shape)):
                if isinstance(d, int) and d > 0 and d != s:
                    raise WorkloadError(f"{where}: input {i.name!r} has dimension {j} = {d} in the model; "
                                        f"--input-shape gives {s}")
        tt = i.type.tensor_type
        tt.ClearField("shape")
        for s in shape:
            tt.shape.dim.add().dim_value = s
    return True


# ---- shapes ---------------------------------------------------------------------------------
def _infer(onnx, where: str, model, reset: bool):
    if model.functions:
        import onnx.inliner
        model = onnx.inliner.inline_local_functions(model)
    if reset:  # shapes recorded for the old input shapes would contradict the new ones
        del model.graph.value_info[:]
        for out in model.graph.output:
            if out.type.WhichOneof("value") == "tensor_type":
                out.type.tensor_type.ClearField("shape")
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:
        raise WorkloadError(f"{where}: ONNX shape inference failed: {first_line(e)}") from None


def _shape_table(graph) -> dict[str, list | None]:
    table: dict[str, list | None] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        dims = _dims(vi)
        if dims is not None or vi.name not in table:
            table[vi.name] = dims
    for t in graph.initializer:
        table[t.name] = list(t.dims)
    return table


class _Node:
    """One node's view for the rules: its attributes and the shapes of its tensors."""

    def __init__(self, onnx, where: str, node, shapes: dict):
        self.where, self.node, self._shapes = where, node, shapes
        self.attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def attr(self, name: str, default=None):
        value = self.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    def has_input(self, index: int) -> bool:
        return index < len(self.node.input) and bool(self.node.input[index])

    def shape(self, index: int, output: bool = False) -> tuple[int, ...]:
        names = self.node.output if output else self.node.input
        kind = "output" if output else "input"
        if index >= len(names) or not names[index]:
            raise WorkloadError(f"{self.where}: {kind} {index} is missing")
        name = names[index]
        dims = self._shapes.get(name)
        if dims is None:
            raise WorkloadError(f"{self.where}: the shape of {kind} {name!r} is unknown after ONNX shape "
                                "inference (it depends on data or on an op that inference does not know)")
        for j, d in enumerate(dims):
            if not isinstance(d, int) or d < 1:
                raise WorkloadError(f"{self.where}: dimension {j} of {kind} {name!r} is not static"
                                    + (f" ({d!r})" if isinstance(d, str) else "")
                                    + " after ONNX shape inference")
        return tuple(dims)

    def out_shape(self) -> tuple[int, ...] | None:
        try:
            return self.shape(0, output=True)
        except WorkloadError:
            return None


# ---- the rules ------------------------------------------------------------------------------
def _conv(n: _Node, name: str, op: str):
    xi, wi = _CONVS[op]
    x, w = n.shape(xi), n.shape(wi)
    spatial = max(len(x) - 2, 0)
    kernel = n.attr("kernel_shape")
    if kernel is not None and tuple(kernel) != tuple(w[2:]):
        raise WorkloadError(f"{n.where}: kernel_shape {tuple(kernel)} differs from the weights' {tuple(w[2:])}")
    strides = tuple(n.attr("strides") or (1,) * spatial)
    dilations = tuple(n.attr("dilations") or (1,) * spatial)
    auto_pad = n.attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = ops.same_pads(x[2:], w[2:], strides, upper=auto_pad == "SAME_UPPER")
    elif auto_pad in ("NOTSET", "VALID"):
        pads = tuple(n.attr("pads") or (0,) * (2 * spatial)) if auto_pad == "NOTSET" else (0,) * (2 * spatial)
    else:
        raise WorkloadError(f"{n.where}: auto_pad {auto_pad!r} is not supported")
    return [ops.conv(n.where, name, x=x, w=w, y=n.out_shape(), strides=strides, pads=pads,
                     dilations=dilations, groups=n.attr("group", 1))]


def _conv_transpose(n: _Node, name: str):
    x, w = n.shape(0), n.shape(1)
    spatial = max(len(x) - 2, 0)
    auto_pad = n.attr("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        raise WorkloadError(f"{n.where}: auto_pad {auto_pad!r} is not supported for a transposed convolution")
    y = n.out_shape()
    layer = ops.conv_transpose(n.where, name, x=x, w=w, strides=tuple(n.attr("strides") or (1,) * spatial),
                               pads=tuple(n.attr("pads") or (0,) * (2 * spatial)),
                               output_padding=tuple(n.attr("output_padding") or (0,) * spatial),
                               dilations=tuple(n.attr("dilations") or (1,) * spatial),
                               groups=n.attr("group", 1))
    if y is not None and tuple(y[2:]) != (x[2] * w[2], x[3] * w[3]):
        raise WorkloadError(f"{n.where}: output size {tuple(y[2:])} is not the input size times the kernel "
                            "(output_shape or padding is not supported)")
    return [layer]


def _gemm(n: _Node, name: str):
    a, b = n.shape(0), n.shape(1)
    if len(a) != 2 or len(b) != 2:
        raise WorkloadError(f"{n.where}: Gemm needs 2-D inputs; got {a} and {b}")
    if n.attr("transA", 0):
        a = a[::-1]
    if n.attr("transB", 0):
        b = b[::-1]
    return [ops.matmul(n.where, name, a, b)]


def _matmul(n: _Node, name: str, op: str):
    ai, bi = _MATMULS.get(op, (0, 1))
    a, b = n.shape(ai), n.shape(bi)
    if n.attr("transBatchA", 0) or n.attr("transBatchB", 0):
        raise WorkloadError(f"{n.where}: transBatchA / transBatchB are not supported")
    if n.attr("transA", 0) and len(a) >= 2:
        a = (*a[:-2], a[-1], a[-2])
    if n.attr("transB", 0) and len(b) >= 2:
        b = (*b[:-2], b[-1], b[-2])
    return [ops.matmul(n.where, name, a, b)]


def _attention(n: _Node, name: str):
    """ONNX Attention (opset 23): Q, K, V of (B, heads, L, head) or (B, L, heads * head)."""
    if n.has_input(4) or n.has_input(5):
        raise WorkloadError(f"{n.where}: Attention with past key / value inputs is not supported")
    q, k, v = n.shape(0), n.shape(1), n.shape(2)
    if len(q) == 3:
        hq, hkv = n.attr("q_num_heads"), n.attr("kv_num_heads")
        if not hq or not hkv or q[2] % hq or k[2] % hkv or v[2] % hkv:
            raise WorkloadError(f"{n.where}: 3-D Attention needs q_num_heads and kv_num_heads "
                                "that divide the hidden sizes")
        q = (q[0], hq, q[1], q[2] // hq)
        k = (k[0], hkv, k[1], k[2] // hkv)
        v = (v[0], hkv, v[1], v[2] // hkv)
    if len(q) != 4 or len(k) != 4 or len(v) != 4:
        raise WorkloadError(f"{n.where}: Attention needs 3-D or 4-D Q, K, V; got {q}, {k}, {v}")
    return ops.attention(n.where, name, q, k, v)


def _has_mac_ops(graph) -> bool:
    for node in graph.node:
        if node.domain in _STANDARD and node.op_type in _MAC_OPS:
            return True
        if node.domain == _MS and (node.op_type in _MS_ALIASES or node.op_type in _MS_REFUSED):
            return True
        for a in node.attribute:
            if any(_has_mac_ops(g) for g in ([a.g] if a.HasField("g") else []) + list(a.graphs)):
                return True
    return False


def _layers(n: _Node, name: str, domain: str, op: str):
    """The layers of one node; None when it is skipped."""
    if domain == _MS:
        if op in _MS_REFUSED:
            raise WorkloadError(f"{n.where}: the onnxruntime op {_MS}.{op} is not supported "
                                "(export the model without onnxruntime's graph optimisations)")
        if op not in _MS_ALIASES:
            return None
        op = _MS_ALIASES[op]
    elif domain not in _STANDARD:
        return None
    if op in _REFUSED:
        raise WorkloadError(f"{n.where}: {_REFUSED[op]}")
    if op in _CONVS:
        return _conv(n, name, op)
    if op == "ConvTranspose":
        return _conv_transpose(n, name)
    if op == "Gemm":
        return _gemm(n, name)
    if op in _MATMULS:
        return _matmul(n, name, op)
    if op == "Attention":
        return _attention(n, name)
    for a in n.node.attribute:
        graphs = ([a.g] if a.HasField("g") else []) + list(a.graphs)
        if any(_has_mac_ops(g) for g in graphs):
            raise WorkloadError(f"{n.where}: convolutions or matrix products inside control flow ({op}) "
                                "are not supported")
    return None


def _layer_name(node_name: str, op_type: str) -> str:
    """A layer name from a node name. torch.onnx names nodes by module scope,
    ``/layer1/layer1.0/conv1/Conv``: that becomes the module path ``layer1.0.conv1``
    (with ``.MatMul_1`` kept when the op is not its module's own, or the scope is empty)."""
    parts = node_name.split("/")
    if len(parts) < 2 or parts[0] or not all(parts[1:]):
        return node_name
    path: list[str] = []
    for part in parts[1:-1]:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part      # '/layer1/layer1.0': the scope repeats its parent's name
        else:
            path.append(part)
    op = parts[-1]
    return ".".join(path) if op == op_type and path else ".".join(path + [op])


def import_onnx(path: str | os.PathLike, input_shapes: Sequence[Sequence[int]] | None = None) -> ImportedModel:
    """The MAC layers of the ONNX model at ``path`` (see the module docstring).

    ``input_shapes``: one shape per graph input that is not an initializer, in order,
    needed when an input has dynamic dimensions; a static dimension must be given
    as it is. Raises `WorkloadError` (one line) for any problem."""
    where = os.fspath(path)
    onnx = _need_onnx(where)
    model = _load(onnx, where)
    reset = _fix_inputs(where, model.graph, input_shapes)
    graph = _infer(onnx, where, model, reset).graph
    shapes = _shape_table(graph)
    out = Collector(where)
    for index, node in enumerate(graph.node):
        domain = "" if node.domain in _STANDARD else node.domain
        label = f"{domain}.{node.op_type}" if domain else node.op_type
        node_where = f"{where}: node {node.name or f'#{index}'!r} ({label})"
        n = _Node(onnx, node_where, node, shapes)
        name = out.name(_layer_name(node.name, node.op_type), f"{node.op_type}_{index}")
        try:
            layers = _layers(n, name, domain, node.op_type)
        except WorkloadError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, AttributeError) as e:  # a malformed node
            raise WorkloadError(f"{node_where}: cannot read the node ({first_line(e)})") from None
        if layers is None:
            out.skip(label)
        else:
            out.add(layers)
    return out.result()
