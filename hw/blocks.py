"""How a weight block's output pixels become COMPUTE_BLOCK instructions (`hw.isa`).

One definition, used by the compiler (`sim.compiler`, which emits the instructions) and
by the analytical model (`cost.kernel`, which prices them; compiled there with numba).

A spad-level tile has tn x tp x tq output pixels; pixel (n, p, q) reads A row
``(n*in_h + p*stride)*in_w + q*stride`` of a weight block's input rows and writes C row
``(n*tp + p)*tq + q``. A COMPUTE_BLOCK streams ``reps`` runs of ``run`` A rows, row i of
run j at ``laddr + j*a_stride1 + i*a_stride``, into ``run*reps`` consecutive C rows, so
the C side always matches and the question is how few two-level patterns cover A:

* Within one n the pixels are a tp x tq grid with A strides (stride*in_w, stride). It is
  one arithmetic run of L = tp*tq rows when tp == 1 (stride ``stride``), tq == 1
  (stride*in_w) or its rows join up (in_w == tq: stride 1 and a one-wide kernel tile).
  Then the n loop is the second level (reps tn, a_stride1 in_h*in_w), or extends the run
  when the n slices join up too (in_h*in_w == L*a_stride); a single pixel per n is one
  run of tn rows in_h*in_w apart.
* A true 2-D grid is run tq, reps tp, a_stride1 stride*in_w; it takes the n loop into
  its reps when in_h == tp*stride (a kernel tile as tall as the stride), else it is one
  COMPUTE_BLOCK per n.

`compute_blocks` returns the pattern in closed form, ``(count, run, reps, a_stride,
a_stride1, a_step)``: ``count`` COMPUTE_BLOCKs, block k at A row ``k*a_step`` and C row
``k*run*reps`` (relative to the weight block's input rows and the tile's output rows).
The strides are the same for every block of a layer, so one CONFIG EX sets them.
"""

from __future__ import annotations

__all__ = ["compute_blocks", "block_items"]


def compute_blocks(tn: int, tp: int, tq: int, stride: int, in_h: int, in_w: int):
    """(count, run, reps, a_stride, a_stride1, a_step): see the module docstring."""
    nsz = in_h * in_w
    if tp == 1 or tq == 1 or in_w == tq:
        length = tp * tq
        a = stride
        if tp > 1 and tq == 1:
            a = stride * in_w
        if length == 1:
            if tn > 1:
                return 1, tn, 1, nsz, 0, 0
            return 1, 1, 1, 1, 0, 0
        if tn == 1 or nsz == length * a:
            return 1, tn * length, 1, a, 0, 0
        return 1, length, tn, a, nsz, 0
    if tn == 1 or in_h == tp * stride:
        return 1, tq, tn * tp, stride, stride * in_w, 0
    return tn, tq, tp, stride, stride * in_w, nsz


def block_items(tn: int, tp: int, tq: int, stride: int, in_h: int, in_w: int):
    """``(items, a_stride, a_stride1)`` with items a list of (A row, C row, run, reps),
    one per COMPUTE_BLOCK of a weight block (`compute_blocks` expanded)."""
    count, run, reps, a, a1, step = compute_blocks(tn, tp, tq, stride, in_h, in_w)
    return [(k * step, k * run * reps, run, reps) for k in range(count)], a, a1
