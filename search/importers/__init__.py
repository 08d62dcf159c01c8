"""Bring your own model: import an ONNX file or a PyTorch module as a workload.

`import_onnx` (``onnx`` package, ``onnx.shape_inference``) and `import_torch`
(``torch.fx`` symbolic tracing, ``ShapeProp`` on fake tensors) return an
`ImportedModel`: the MAC layers of the graph, one per node in graph order
(``node_layers``), the workload with equal shapes merged and counted (``layers``, as
`search.workloads.unique_layers` does for the built-in networks) and every other node
counted by op type (``skipped``). `search.workloads.get_workload` reads ``.onnx``
files with `import_onnx`, and ``python -m search.workloads import MODEL.onnx`` prints
the table and writes a workload file (`search.workload_file`).

Ops -> layers (shapes outermost first; ``[...]`` are leading batch dims)

=====================================  ===============================================
ONNX (torch)                           layer
=====================================  ===============================================
Conv, ConvInteger, QLinearConv,        ``Layer(n=N, k=K, c=C, p=P, q=Q, r=R, s=S,
com.microsoft.FusedConv                stride, padding, groups)`` from X (N, C, H, W) and
(nn.Conv2d, F.conv2d)                  W (K, C/groups, R, S); depthwise is groups = C.
                                       Refused: dilation > 1, strides that differ
                                       between height and width, padding that is not
                                       equal on all four sides (auto_pad SAME is
                                       accepted when it is), 1-D and 3-D convolutions.
ConvTranspose                          only stride == kernel, no padding / output
(nn.ConvTranspose2d)                   padding / dilation: the 1x1 conv at the input
                                       size with K*R*S outputs (U-Net's ``up``); others
                                       refused.
Gemm, com.microsoft.FusedGemm          ``Layer.gemm(m=M, k=K, n=N)`` after transA /
                                       transB.
MatMul, MatMulInteger, QLinearMatMul,  A [..., M, K] @ B [..., K, N], numpy broadcast:
com.microsoft.FusedMatMul              a batch dim that only A has folds into M (shared
(nn.Linear, F.linear, matmul, mm,      weights: a Linear on (batch, tokens, d) is one
bmm, addmm, baddbmm, @)                GEMM of m = batch * tokens), one only B has into
                                       N, and one both have multiplies ``count``: the
                                       attention products Q K^T and P V of (batch,
                                       heads, tokens, d) are one GEMM per sample and
                                       head, ``count = batch * heads``.
Attention (opset 23)                   scores (L, d, S) and context (L, S, d) GEMMs,
(F.scaled_dot_product_attention)       ``count = batch * query heads``.
(nn.MultiheadAttention)                query, key, value projections, the per-head
                                       scores and context GEMMs, output projection.
Einsum, LSTM, GRU, RNN, DeformConv,    refused (they multiply-accumulate, and leaving
onnxruntime's attention and quantized  them out would understate the network).
MatMul variants (nn.RNN/LSTM/GRU,
nn.Bilinear, torch.einsum)
If / Loop / Scan                       refused when a subgraph holds a MAC op,
                                       skipped otherwise.
anything else                          skipped and listed with its count: pooling,
                                       activations, normalisation, elementwise ops,
                                       reshapes, softmax, embeddings, custom ops.
=====================================  ===============================================

Bias additions fused into Conv / Gemm are not MACs of the array and are left out, as
in the built-in networks. Batch normalisation is skipped (the ONNX exporter in eval
mode folds it into the conv's weights).

Errors. Every problem raises `search.workload_file.WorkloadError` (a ValueError)
with one line naming the model, the node (ONNX node name, or fx node target) and
what is unsupported, e.g. ``model.onnx: node '/conv1/Conv' (Conv): dilations (2, 2)
are not supported: layers have no dilation``; a partial table is never returned.
Input shapes are bounded: every dim from 1 to `MAX_INPUT_DIM`, at most
`MAX_INPUT_ELEMS` elements per input.
"""

from __future__ import annotations

from search.importers.imported import (
    MAX_INPUT_DIM,
    MAX_INPUT_ELEMS,
    DynamicShapeError,
    ImportedModel,
    check_input_shape,
    parse_input_shape,
)
from search.importers.onnx_graph import import_onnx
from search.workload_file import WorkloadError

__all__ = [
    "MAX_INPUT_DIM",
    "MAX_INPUT_ELEMS",
    "DynamicShapeError",
    "ImportedModel",
    "check_input_shape",
    "import_onnx",
    "import_torch",
    "parse_input_shape",
]

def import_torch(module, example_inputs, *, source: str | None = None) -> ImportedModel:
    """The MAC layers of a ``torch.nn.Module`` on ``example_inputs`` (tensors or shapes);
    see `search.importers.torch_graph.import_torch`."""
    try:
        from search.importers.torch_graph import import_torch as run
    except ImportError as e:
        raise WorkloadError(f"importing PyTorch modules needs torch ({e})") from None
    return run(module, example_inputs, source=source)
