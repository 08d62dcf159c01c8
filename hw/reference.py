"""Numpy reference model of the accelerator's arithmetic (see `hw.isa` for the semantics).

* The accumulator holds int32 and wraps around on overflow (two's complement).
* An accumulator MVOUT either writes raw int32 (`acc_full`) or, per element,
  ``saturate_int8(round_shift(relu?(x), shift))`` where
  ``round_shift(x, s) = (x + 2**(s-1)) >> s`` for s > 0 (arithmetic shift, ties to +inf).
  ReLU and shift are ignored when `acc_full` is set.
"""

from __future__ import annotations

import numpy as np

__all__ = ["wrap_int32", "round_shift", "store_transform", "gemm_reference"]

_INT32_SPAN = 1 << 32


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Reduce integers modulo 2**32 into the int32 range (two's complement wraparound)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) % _INT32_SPAN - (1 << 31)).astype(np.int32)


def round_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """``(x + 2**(shift-1)) >> shift`` computed in int64 (no overflow); identity for shift 0."""
    if not 0 <= shift <= 31:
        raise ValueError(f"shift={shift} out of range 0..31")
    x = np.asarray(x, dtype=np.int64)
    if shift == 0:
        return x
    return (x + (1 << (shift - 1))) >> shift


def store_transform(x_int32: np.ndarray, relu: bool = False, shift: int = 0,
                    acc_full: bool = False) -> np.ndarray:
    """What an accumulator MVOUT writes for the int32 values `x_int32`.

    Returns int32 values unchanged if `acc_full`, else int8 after ReLU, rounding shift
    and saturation to [-128, 127].
    """
    x = np.asarray(x_int32)
    if acc_full:
        return x.astype(np.int32)
    y = np.asarray(x, dtype=np.int64)
    if relu:
        y = np.maximum(y, 0)
    y = round_shift(y, shift)
    return np.clip(y, -128, 127).astype(np.int8)


def gemm_reference(A: np.ndarray, B: np.ndarray, D: np.ndarray | None = None, *,
                   out: str = "int32", relu: bool = False, shift: int = 0) -> np.ndarray:
    """C = A x B (+ D) with the accelerator's arithmetic.

    A is M x K int8, B is K x N int8, D (optional) an int32 bias broadcastable to M x N
    (a full M x N matrix or a 1 x N row). The int32 result wraps around like the
    accumulator. `out="int32"` returns it (relu/shift ignored, as with acc_full);
    `out="int8"` applies `store_transform`.
    """
    if out not in ("int32", "int8"):
        raise ValueError(f"out={out!r} must be 'int32' or 'int8'")
    A = np.asarray(A)
    B = np.asarray(B)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        raise ValueError(f"shapes A{A.shape} and B{B.shape} do not form a matrix product")
    acc = A.astype(np.int64) @ B.astype(np.int64)
    if D is not None:
        acc = acc + np.broadcast_to(np.asarray(D, dtype=np.int64), acc.shape)
    c = wrap_int32(acc)
    return store_transform(c, relu=relu, shift=shift, acc_full=(out == "int32"))
