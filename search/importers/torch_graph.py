"""PyTorch modules -> `ImportedModel` through torch.fx (the op table is in `search.importers`).

`import_torch` traces the module with ``torch.fx`` (symbolic tracing; the leaves are
the mapped modules, the refused ones and the ``torch.nn`` modules without children:
containers such as ``nn.TransformerEncoderLayer`` are traced through), then
propagates shapes with ``torch.fx.passes.shape_prop.ShapeProp`` on fake tensors (no
arithmetic is done and no activation memory is allocated, whatever the input size),
and turns each node into layers with the rules of `search.importers.ops`. Layers are
named by the node's target (``layer1.0.conv1``) for modules and by the node's name
(``matmul_1``) for functions and methods; skipped nodes are counted by module class,
function or method name. A module that symbolic tracing cannot follow (control flow
on tensor values) is refused with a pointer to the ONNX route.
"""

from __future__ import annotations

import contextlib
import io
import operator

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from hw.cli import first_line
from search.importers import ops
from search.importers.imported import Collector, ImportedModel, check_input_shape
from search.workload_file import WorkloadError

__all__ = ["import_torch"]

_MAPPED_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                   nn.ConvTranspose3d, nn.MultiheadAttention)
_REFUSED_MODULES = {nn.RNNBase: "recurrent layers (RNN, LSTM, GRU) are not supported",
                    nn.RNNCellBase: "recurrent cells are not supported",
                    nn.Bilinear: "bilinear layers are not supported"}
_MATMUL_FUNCTIONS = {torch.matmul, operator.matmul, torch.mm, torch.bmm, torch.Tensor.matmul,
                     torch.Tensor.mm, torch.Tensor.bmm}
# bias + A @ B: the names of A and B
_ADD_MATMUL_FUNCTIONS = {torch.addmm: ("mat1", "mat2"), torch.baddbmm: ("batch1", "batch2"),
                         torch.addbmm: ("batch1", "batch2")}
_CONV_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d}
_CONV_TRANSPOSE_FUNCTIONS = {F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d}
_REFUSED_FUNCTIONS = {torch.einsum: "einsum is not supported (write the product with matmul)",
                      F.bilinear: "bilinear products are not supported"}
_MATMUL_METHODS = {"matmul", "__matmul__", "mm", "bmm"}
_ADD_MATMUL_METHODS = {"addmm": ("mat1", "mat2"), "baddbmm": ("batch1", "batch2"),
                       "addbmm": ("batch1", "batch2")}


class _Tracer(torch.fx.Tracer):
    """Leaves: the mapped and refused modules, and torch.nn modules without children."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, _MAPPED_MODULES + tuple(_REFUSED_MODULES)):
            return True
        return super().is_leaf_module(m, qualname) and next(m.children(), None) is None


class _ShapeProp(ShapeProp):
    """ShapeProp that remembers the node it is running (for the error message)."""

    def __init__(self, gm: torch.fx.GraphModule, fake_mode):
        super().__init__(gm, fake_mode=fake_mode)
        self.current: torch.fx.Node | None = None

    def run_node(self, n):
        self.current = n
        return super().run_node(n)


def _inputs(example_inputs, fake_mode, where: str) -> tuple:
    """Tensors and shapes (tuples of ints: float32 fake tensors) as a tuple of inputs."""
    def is_shape(x):
        return isinstance(x, (tuple, list)) and all(isinstance(d, int) and not isinstance(d, bool) for d in x)

    if isinstance(example_inputs, torch.Tensor) or is_shape(example_inputs):
        items = [example_inputs]
    elif isinstance(example_inputs, (tuple, list)):
        items = list(example_inputs)
    else:
        raise WorkloadError(f"{where}: example inputs must be a tensor, a shape or a tuple of them; "
                            f"got {type(example_inputs).__name__}")
    out = []
    for i, x in enumerate(items):
        what = f"{where}: example input {i}"
        if isinstance(x, torch.Tensor):
            check_input_shape(tuple(x.shape), what)
            out.append(x)
        elif is_shape(x):
            shape = check_input_shape(tuple(x), what)
            with fake_mode:
                out.append(torch.empty(shape))
        else:
            raise WorkloadError(f"{what}: expected a tensor or a shape (a tuple of ints); got {type(x).__name__}")
    return tuple(out)


def _trace(module: nn.Module, inputs: int, where: str) -> torch.fx.GraphModule:
    """The module's fx graph. A module that is itself a leaf (an nn.Conv2d, nn.ReLU, ...)
    becomes one call_module node, named after its class, on ``inputs`` placeholders."""
    if not isinstance(module, nn.Module):
        raise WorkloadError(f"{where}: expected a torch.nn.Module; got {type(module).__name__}")
    tracer = _Tracer()
    if tracer.is_leaf_module(module, ""):
        root, name, graph = nn.Module(), type(module).__name__, torch.fx.Graph()
        root.add_module(name, module)
        args = tuple(graph.placeholder(f"input_{i}") for i in range(inputs))
        graph.output(graph.call_module(name, args))
        return torch.fx.GraphModule(root, graph)
    try:
        graph = tracer.trace(module)
    except Exception as e:
        raise WorkloadError(f"{where}: torch.fx cannot trace the module ({first_line(e)}); export it with "
                            "torch.onnx.export and import the ONNX file instead") from None
    return torch.fx.GraphModule(tracer.root, graph)


def _propagate(gm: torch.fx.GraphModule, inputs: tuple, fake_mode, where: str) -> None:
    prop = _ShapeProp(gm, fake_mode=fake_mode)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints the traceback
            prop.propagate(*inputs)
    except Exception as e:
        cause = e.__cause__ or e
        node = prop.current.name if prop.current is not None else "?"
        raise WorkloadError(f"{where}: shape propagation failed at node {node!r}: {first_line(cause)}") from None


# ---- one node -------------------------------------------------------------------------------
class _Node:
    """One fx node's view for the rules: its arguments and the shapes of its tensors."""

    def __init__(self, where: str, node: torch.fx.Node):
        self.where, self.node = where, node

    def arg(self, index: int, name: str, default=None):
        if index < len(self.node.args):
            return self.node.args[index]
        return self.node.kwargs.get(name, default)

    def shape(self, value, what: str) -> tuple[int, ...]:
        if isinstance(value, torch.fx.Node):
            meta = value.meta.get("tensor_meta")
            if meta is not None and hasattr(meta, "shape"):
                return tuple(int(d) for d in meta.shape)
        elif isinstance(value, torch.Tensor):
            return tuple(value.shape)
        raise WorkloadError(f"{self.where}: {what} is not a tensor with a known shape")


def _pair(value, spatial: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * spatial


def _conv_pads(n: _Node, padding, x, w, dilation) -> tuple[int, ...]:
    """torch padding (ints, 'valid' or 'same') as (begins..., ends...)."""
    spatial = max(len(x) - 2, 0)
    if padding == "valid":
        return (0,) * (2 * spatial)
    if padding == "same":  # torch puts the odd pixel at the end
        totals = [d * (k - 1) for d, k in zip(_pair(dilation, spatial), w[2:])]
        return tuple(t // 2 for t in totals) + tuple(t - t // 2 for t in totals)
    if isinstance(padding, str):
        raise WorkloadError(f"{n.where}: padding {padding!r} is not supported")
    pads = _pair(padding, spatial)
    return pads + pads


def _conv(n: _Node, name: str, x, w, stride, padding, dilation, groups):
    spatial = max(len(x) - 2, 0)
    return [ops.conv(n.where, name, x=x, w=w, y=None, strides=_pair(stride, spatial),
                     pads=_conv_pads(n, padding, x, w, dilation), dilations=_pair(dilation, spatial),
                     groups=int(groups))]


def _conv_transpose(n: _Node, name: str, x, w, stride, padding, output_padding, dilation, groups):
    spatial = max(len(x) - 2, 0)
    if isinstance(padding, str):
        raise WorkloadError(f"{n.where}: padding {padding!r} is not supported for a transposed convolution")
    pads = _pair(padding, spatial)
    return [ops.conv_transpose(n.where, name, x=x, w=w, strides=_pair(stride, spatial), pads=pads + pads,
                               output_padding=_pair(output_padding, spatial),
                               dilations=_pair(dilation, spatial), groups=int(groups))]


def _weight(n: _Node, p) -> tuple[int, ...]:
    if isinstance(p, nn.parameter.UninitializedParameter):
        raise WorkloadError(f"{n.where}: the lazy module's weights are not initialised yet "
                            "(run the module once before importing it)")
    return tuple(p.shape)


def _multihead_attention(n: _Node, name: str, mod: nn.MultiheadAttention):
    """nn.MultiheadAttention: the Q, K, V projections, per-head scores and context, output."""
    q = n.shape(n.arg(0, "query"), "query")
    k = n.shape(n.arg(1, "key"), "key")
    v = n.shape(n.arg(2, "value"), "value")
    if len(q) == 2:  # unbatched (L, E)
        q, k, v = (q[0], 1, q[1]), (k[0], 1, k[1]), (v[0], 1, v[1])
    elif mod.batch_first:
        q, k, v = (q[1], q[0], q[2]), (k[1], k[0], k[2]), (v[1], v[0], v[2])
    (length, batch, e), (src, _, kdim), (_, _, vdim) = q, k, v
    heads = mod.num_heads
    head = mod.embed_dim // heads
    layers = [
        ops.matmul(n.where, f"{name}.query", (length * batch, e), (e, mod.embed_dim)),
        ops.matmul(n.where, f"{name}.key", (src * batch, kdim), (kdim, mod.embed_dim)),
        ops.matmul(n.where, f"{name}.value", (src * batch, vdim), (vdim, mod.embed_dim)),
    ]
    layers += ops.attention(n.where, name, (batch, heads, length, head), (batch, heads, src, head),
                            (batch, heads, src, head))
    layers.append(ops.matmul(n.where, f"{name}.out", (length * batch, mod.embed_dim),
                             (mod.embed_dim, mod.embed_dim)))
    return layers


def _module_layers(n: _Node, name: str, mod: nn.Module):
    for kind, problem in _REFUSED_MODULES.items():
        if isinstance(mod, kind):
            raise WorkloadError(f"{n.where}: {problem}")
    if isinstance(mod, nn.MultiheadAttention):
        return _multihead_attention(n, name, mod)
    x = n.shape(n.arg(0, "input"), "the input")
    if isinstance(mod, nn.Linear):
        w = _weight(n, mod.weight)
        return [ops.matmul(n.where, name, x, (w[1], w[0]))]
    w = _weight(n, mod.weight)
    if mod.transposed:
        return _conv_transpose(n, name, x, w, mod.stride, mod.padding, mod.output_padding, mod.dilation,
                               mod.groups)
    return _conv(n, name, x, w, mod.stride, mod.padding, mod.dilation, mod.groups)


def _function_layers(n: _Node, name: str, fn, method: str | None):
    """Layers of a call_function (``fn``) or call_method (``method``) node; None: skipped."""
    if fn in _REFUSED_FUNCTIONS:
        raise WorkloadError(f"{n.where}: {_REFUSED_FUNCTIONS[fn]}")
    if fn in _MATMUL_FUNCTIONS or method in _MATMUL_METHODS:
        a = n.shape(n.arg(0, "input"), "the first operand")
        b = n.shape(n.arg(1, "other" if fn in (torch.matmul, torch.Tensor.matmul) else "mat2"), "the second operand")
        return [ops.matmul(n.where, name, a, b)]
    names = _ADD_MATMUL_FUNCTIONS.get(fn) or _ADD_MATMUL_METHODS.get(method)
    if names is not None:
        a = n.shape(n.arg(1, names[0]), names[0])
        b = n.shape(n.arg(2, names[1]), names[1])
        return [ops.matmul(n.where, name, a, b)]
    if fn is F.linear:
        x = n.shape(n.arg(0, "input"), "the input")
        w = n.shape(n.arg(1, "weight"), "the weight")
        return [ops.matmul(n.where, name, x, (w[1], w[0]) if len(w) == 2 else w)]
    if fn in _CONV_FUNCTIONS:
        x = n.shape(n.arg(0, "input"), "the input")
        w = n.shape(n.arg(1, "weight"), "the weight")
        return _conv(n, name, x, w, n.arg(3, "stride", 1), n.arg(4, "padding", 0), n.arg(5, "dilation", 1),
                     n.arg(6, "groups", 1))
    if fn in _CONV_TRANSPOSE_FUNCTIONS:
        x = n.shape(n.arg(0, "input"), "the input")
        w = n.shape(n.arg(1, "weight"), "the weight")
        return _conv_transpose(n, name, x, w, n.arg(3, "stride", 1), n.arg(4, "padding", 0),
                               n.arg(5, "output_padding", 0), n.arg(7, "dilation", 1), n.arg(6, "groups", 1))
    if fn is F.scaled_dot_product_attention:
        q = n.shape(n.arg(0, "query"), "the query")
        k = n.shape(n.arg(1, "key"), "the key")
        v = n.shape(n.arg(2, "value"), "the value")
        return ops.attention(n.where, name, q, k, v)
    return None


def import_torch(module: nn.Module, example_inputs, *, source: str | None = None) -> ImportedModel:
    """The MAC layers of ``module`` called on ``example_inputs`` (a tensor, a shape, or a
    tuple of them; a shape stands for a float32 tensor; see the module docstring).
    ``source`` names the model in messages (default: the module's class name).
    Raises `WorkloadError` (one line) for any problem."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    where = source or type(module).__name__
    fake_mode = FakeTensorMode()
    inputs = _inputs(example_inputs, fake_mode, where)
    gm = _trace(module, len(inputs), where)
    _propagate(gm, inputs, fake_mode, where)
    out = Collector(where)
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr", "output"):
            continue
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            label, wanted = type(mod).__name__, str(node.target)
        elif node.op == "call_method":
            mod, label, wanted = None, str(node.target), node.name
        else:
            mod, label, wanted = None, getattr(node.target, "__name__", str(node.target)), node.name
        n = _Node(f"{where}: node {wanted!r} ({label})", node)
        name = out.name(wanted, node.name)
        try:
            if node.op == "call_module":
                mapped = isinstance(mod, _MAPPED_MODULES + tuple(_REFUSED_MODULES))
                layers = _module_layers(n, name, mod) if mapped else None
            elif node.op == "call_method":
                layers = _function_layers(n, name, None, node.target)
            else:
                layers = _function_layers(n, name, node.target, None)
        except WorkloadError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, AttributeError) as e:  # e.g. a traced stride
            raise WorkloadError(f"{n.where}: cannot read the node's arguments ({first_line(e)})") from None
        if layers is None:
            out.skip(label)
        else:
            out.add(layers)
    return out.result()
