"""Numpy reference of one convolution layer with the accelerator's arithmetic.

`conv_reference(x_nchw, w_kcrs, layer, out=..., relu=..., shift=...)` is the direct
grouped convolution (stride, zero padding) the compiled programs (`sim.compiler`) must
reproduce exactly:

* x is N x C x H x W int8 (H, W = ``layer.h``, ``layer.w``: the input size the layer
  derives, see `hw.layer`), w is K x C/G x R x S int8 (PyTorch's layout);
* products are summed exactly (int64 semantics) and the sum wraps around to int32
  like the accumulator does;
* ``out="int32"`` returns that (N, K, P, Q) int32 tensor (relu and shift are ignored, as
  with an ``acc_full`` MVOUT); ``out="int8"`` applies `hw.reference.store_transform`
  (ReLU, rounding right shift, saturation to int8).

Speed: one matrix product per kernel tap (r, s) over strided slices of the padded input,
batched over the groups. Products of int8 values and their sums over C/G x R x S terms
are far below 2**53, so the products run in float64 (BLAS) and are exact; a layer with
so many terms that this could round (C/G * R * S >= 2**38) falls back to int64.
"""

from __future__ import annotations

import numpy as np

from hw.layer import Layer
from hw.reference import store_transform, wrap_int32

__all__ = ["conv_reference", "pad_input", "check_int8"]

_FLOAT_EXACT_TERMS = 1 << 38  # terms * 2**14 (largest |int8 * int8|) < 2**53 below this


def check_int8(name: str, a, shape: tuple[int, ...]) -> np.ndarray:
    """`a` as an int8 array of `shape`, or a one-line ValueError naming the problem."""
    a = np.asarray(a)
    if a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape}, expected {tuple(shape)}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array (int8 values); got dtype {a.dtype}")
    if a.size and (a.min() < -128 or a.max() > 127):
        raise ValueError(f"{name} has values outside the int8 range -128..127")
    return a.astype(np.int8, copy=False)


def pad_input(x_nchw: np.ndarray, layer: Layer) -> np.ndarray:
    """x (N, C, H, W) zero-padded by ``layer.padding`` on all four sides (same dtype)."""
    p = layer.padding
    x = np.asarray(x_nchw)
    if p == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))


def conv_reference(x_nchw: np.ndarray, w_kcrs: np.ndarray, layer: Layer, *,
                   out: str = "int32", relu: bool = False, shift: int = 0) -> np.ndarray:
    """Grouped 2-D convolution of `layer` with the accelerator's arithmetic: (N, K, P, Q).

    int32 (wrapped) for ``out="int32"``, int8 after ReLU / rounding shift / saturation for
    ``out="int8"`` (see the module docstring).
    """
    if out not in ("int32", "int8"):
        raise ValueError(f"out={out!r} must be 'int32' or 'int8'")
    L = layer
    G, Cg, Kg = L.groups, L.c_per_group, L.k_per_group
    x = check_int8("x", x_nchw, (L.n, L.c, L.h, L.w))
    w = check_int8("w", w_kcrs, (L.k, Cg, L.r, L.s))
    exact_float = Cg * L.r * L.s < _FLOAT_EXACT_TERMS
    dt = np.float64 if exact_float else np.int64

    xp = pad_input(x, L).astype(dt)                       # (N, C, Hp, Wp)
    xp = xp.reshape(L.n, G, Cg, xp.shape[2], xp.shape[3])  # (N, G, Cg, Hp, Wp)
    wg = w.astype(dt).reshape(G, Kg, Cg, L.r, L.s)         # (G, Kg, Cg, R, S)
    st, P, Q = L.stride, L.p, L.q
    acc = np.zeros((L.n, G, Kg, P * Q), dt)
    for r in range(L.r):
        for s in range(L.s):
            xs = xp[:, :, :, r: r + (P - 1) * st + 1: st, s: s + (Q - 1) * st + 1: st]
            xs = xs.reshape(L.n, G, Cg, P * Q)
            acc += np.matmul(wg[:, :, :, r, s], xs)         # (G,Kg,Cg) @ (N,G,Cg,PQ)
    acc = acc.reshape(L.n, L.k, P, Q)
    if exact_float:
        acc = np.rint(acc).astype(np.int64)
    c = wrap_int32(acc)
    return store_transform(c, relu=relu, shift=shift, acc_full=(out == "int32"))
