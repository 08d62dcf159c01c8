"""The op -> `Layer` rules that both importers share, on plain integer shapes.

Each rule takes the operand shapes (tuples of ints, outermost first) and attributes of
one graph node, already read by a front end (`search.importers.onnx_graph`,
`search.importers.torch_graph`), and returns its `Layer`s, or raises `WorkloadError`
naming the node (``where``) and what is unsupported. Keeping the rules here is what
makes an ONNX file and the PyTorch module it came from import to the same table.

- `conv`: a 2-D convolution (NCHW input, KCRS weights) -> one `Layer`.
- `conv_transpose`: a 2-D transposed convolution whose stride equals its kernel (no
  padding, no overlap) -> the equivalent 1x1 conv with ``K * R * S`` outputs.
- `matmul`: ``A[..., M, K] @ B[..., K, N]`` with numpy broadcasting -> one GEMM layer
  whose ``count`` is the number of independent products.
- `attention`: ``softmax(Q K^T) V`` -> the scores and context GEMMs of every head.
"""

from __future__ import annotations

from collections.abc import Sequence
from hw.layer import Layer, LayerError
from search.workload_file import WorkloadError

__all__ = ["Shape", "attention", "conv", "conv_transpose", "matmul", "same_pads"]

Shape = tuple[int, ...]


def _fail(where: str, problem: str) -> WorkloadError:
    return WorkloadError(f"{where}: {problem}")


def _layer(where: str, **fields) -> Layer:
    try:
        return Layer(**fields)
    except LayerError as e:
        msg = str(e).splitlines()[0].removeprefix(f"Layer {fields['name']!r}: ")
        raise _fail(where, f"not representable as a layer: {msg}") from None


def _ints(values: Sequence[int]) -> str:
    return "(" + ", ".join(str(v) for v in values) + ")"


def same_pads(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
              upper: bool = True) -> tuple[int, ...]:
    """ONNX ``auto_pad`` SAME_UPPER (the odd pixel at the end) / SAME_LOWER (at the
    beginning): pads as (begins..., ends...) so the output size is ``ceil(size / stride)``."""
    begins, ends = [], []
    for x, k, s in zip(size, kernel, stride):
        total = max((-(-x // s) - 1) * s + k - x, 0)
        small = total // 2
        begin, end = (small, total - small) if upper else (total - small, small)
        begins.append(begin)
        ends.append(end)
    return tuple(begins + ends)


def _one_padding(where: str, pads: Sequence[int]) -> int:
    """The single padding of a Layer from (top, left, bottom, right); refuse others."""
    top, left, bottom, right = pads
    if (top, left) != (bottom, right):
        raise _fail(where, f"asymmetric padding {_ints(pads)} (top, left, bottom, right) is not "
                           "supported: layers pad all four sides equally")
    if top != left:
        raise _fail(where, f"padding {top} (height) != {left} (width) is not supported: "
                           "layers pad all four sides equally")
    return top


def _spatial(where: str, what: str, x: Shape, w: Shape) -> None:
    if len(x) != 4 or len(w) != 4:
        dims = max(len(x), len(w)) - 2
        raise _fail(where, f"{what} with {dims} spatial dimension(s) is not supported (only 2-D, NCHW)")


def _lengths(where: str, **attrs) -> None:
    for attr, (values, length) in attrs.items():
        if len(values) != length or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise _fail(where, f"{attr} {tuple(values)} must be {length} integers for a 2-D convolution")


def conv(where: str, name: str, *, x: Shape, w: Shape, y: Shape | None, strides: Sequence[int],
         pads: Sequence[int], dilations: Sequence[int], groups: int) -> Layer:
    """Conv: ``x`` (N, C, H, W), ``w`` (K, C / groups, R, S), ``y`` (N, K, P, Q) or None;
    ``pads`` (top, left, bottom, right). One `Layer`; strides must agree, dilation be 1
    and padding be equal on all sides."""
    _spatial(where, "a convolution", x, w)
    _lengths(where, strides=(strides, 2), pads=(pads, 4), dilations=(dilations, 2))
    n, c, h, wd = x
    k, c_group, r, s = w
    if any(d != 1 for d in dilations):
        raise _fail(where, f"dilations {_ints(dilations)} are not supported: layers have no dilation")
    if len(set(strides)) != 1:
        raise _fail(where, f"strides {_ints(strides)} differ between height and width: "
                           "layers have one stride")
    if groups < 1 or c_group * groups != c:
        raise _fail(where, f"input channels {c} != weight channels {c_group} x groups {groups}")
    padding = _one_padding(where, pads)
    stride = strides[0]
    p = (h + 2 * padding - r) // stride + 1
    q = (wd + 2 * padding - s) // stride + 1
    if y is not None and tuple(y) != (n, k, p, q):
        raise _fail(where, f"output shape {_ints(y)} != {_ints((n, k, p, q))} from the conv formula")
    return _layer(where, name=name, n=n, k=k, c=c, p=p, q=q, r=r, s=s, stride=stride,
                  padding=padding, groups=groups)


def conv_transpose(where: str, name: str, *, x: Shape, w: Shape, strides: Sequence[int],
                   pads: Sequence[int], output_padding: Sequence[int], dilations: Sequence[int],
                   groups: int) -> Layer:
    """ConvTranspose: ``x`` (N, C, H, W), ``w`` (C, K / groups, R, S). Only stride ==
    kernel with no padding, output padding or dilation: every input pixel then writes
    its own R x S output patch, which is exactly a 1x1 conv at the input resolution
    with K * R * S outputs (same MACs, weights and inputs; the outputs are a pixel
    shuffle of its result), the U-Net ``up`` convention of `search.workloads`."""
    _spatial(where, "a transposed convolution", x, w)
    _lengths(where, strides=(strides, 2), pads=(pads, 4), output_padding=(output_padding, 2),
             dilations=(dilations, 2))
    n, c, h, wd = x
    c_w, k_group, r, s = w
    if c_w != c or groups < 1 or c % groups:
        raise _fail(where, f"input channels {c} do not match the weights {_ints(w)} with groups {groups}")
    if any(d != 1 for d in dilations):
        raise _fail(where, f"dilations {_ints(dilations)} are not supported: layers have no dilation")
    if tuple(strides) != (r, s) or any(pads) or any(output_padding):
        raise _fail(where, f"a transposed convolution with strides {_ints(strides)}, kernel {_ints((r, s))}, "
                           f"pads {_ints(pads)} and output padding {_ints(output_padding)} is not supported "
                           "(only stride == kernel, no padding: a 1x1 conv to K*R*S channels)")
    k = k_group * groups
    return _layer(where, name=name, n=n, k=k * r * s, c=c, p=h, q=wd, r=1, s=1, groups=groups)


def _matrix(shape: Shape, is_a: bool) -> Shape:
    """numpy matmul promotes a 1-D operand: A (K,) -> (1, K), B (K,) -> (K, 1)."""
    if len(shape) == 1:
        return (1, *shape) if is_a else (*shape, 1)
    return tuple(shape)


def matmul(where: str, name: str, a: Shape, b: Shape) -> Layer:
    """``A[..., M, K] @ B[..., K, N]`` (numpy broadcasting of the leading dims) as one GEMM.

    A leading dim present in A only (B broadcast, i.e. shared weights) folds into M,
    one present in B only folds into N (one longer GEMM over the shared operand);
    where both have it, each index is its own product and multiplies ``count``
    (attention's per-sample, per-head GEMMs)."""
    if not a or not b:
        raise _fail(where, "a matrix product of a scalar is not supported")
    a, b = _matrix(a, True), _matrix(b, False)
    *a_batch, m, k = a
    *b_batch, k_b, n = b
    if k != k_b:
        raise _fail(where, f"inner dimensions differ: {_ints(a)} @ {_ints(b)}")
    rank = max(len(a_batch), len(b_batch))
    a_batch = [1] * (rank - len(a_batch)) + a_batch
    b_batch = [1] * (rank - len(b_batch)) + b_batch
    count = 1
    for da, db in zip(a_batch, b_batch):
        if da == db:
            count *= da
        elif db == 1:
            m *= da
        elif da == 1:
            n *= db
        else:
            raise _fail(where, f"batch dimensions do not broadcast: {_ints(a)} @ {_ints(b)}")
    if count == 0 or m == 0 or n == 0 or k == 0:
        raise _fail(where, f"an empty matrix product {_ints(a)} @ {_ints(b)} is not supported")
    return _layer(where, name=name, n=1, k=n, c=k, p=m, q=1, r=1, s=1, count=count)


def attention(where: str, name: str, q: Shape, k: Shape, v: Shape) -> list[Layer]:
    """``softmax(Q K^T) V`` for Q (..., L, E), K (..., S, E), V (..., S, Ev): the scores
    GEMM (L, E, S) and the context GEMM (L, S, Ev), each counted once per head and
    sample (named ``{name}.scores`` and ``{name}.context``). With fewer key/value heads
    than query heads (grouped-query attention, dim -3) each query head has its own GEMMs."""
    if len(q) < 2 or len(k) < 2 or len(v) < 2:
        raise _fail(where, f"attention inputs need at least 2 dimensions; got {_ints(q)}, {_ints(k)}, {_ints(v)}")
    q, k, v = tuple(q), tuple(k), tuple(v)
    if len(q) >= 3 and len(k) >= 3 and len(v) >= 3 and k[-3] not in (1, q[-3]):
        # Grouped-query attention: each query head reads its group's keys and values.
        if q[-3] % k[-3] or v[-3] != k[-3]:
            raise _fail(where, f"{q[-3]} query heads do not share {k[-3]} key/value heads evenly")
        k, v = (*k[:-3], q[-3], *k[-2:]), (*v[:-3], q[-3], *v[-2:])
    scores = matmul(where, f"{name}.scores", q, (*k[:-2], k[-1], k[-2]))
    probs = (*q[:-1], k[-2])
    context = matmul(where, f"{name}.context", probs, v)
    return [scores, context]
