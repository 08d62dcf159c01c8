"""Spotlight's feature space for this toolkit: closed-form features of hardware and mappings.

Spotlight (thesis chapter 4, section 4.1.3, Table 4.2) runs Bayesian optimisation not on
the raw design parameters but on *features*: closed-form quantities computed from the
hardware and mapping parameters, chosen to have roughly linear trends with the
objective (log EDP). This module is that transform for this toolkit's space: a
weight-stationary ``dim x dim`` array that unrolls C on its rows and K on its columns
(`hw.mapping`), spad-level tiles of input and weight in the scratchpad and of the
output in the accumulator, each single- or double-buffered, and the searched hardware
axes ``search.space.HW_AXES = (dim, acc_kb, sp_kb)``.

Everything is numpy arithmetic vectorised over the batch (no Python loop over samples)
on the array form of `hw.mapping` / `search.space` (``factors`` (B, 3, 7) with levels
dram, spad, array x loops N K C P Q R S; ``order`` (B, 7) the DRAM loop order,
outermost first; ``buffers`` (B, 3)). Nothing here calls the cost model (cost/) or
the simulator: every feature is a formula of the parameters, and the footprint comes
from the one fit rule, `hw.mapping.footprint_rows` / `hw.mapping.rows_needed`.

Speed: `software_features` on 100,000 mappings of a 3x3 conv takes about 0.06 s, input
validation included (measured: best of 5 runs 0.055 s on one CPU core of the development
machine, 0.10-0.15 s while the machine was busy with other jobs); `hardware_features` on
100,000 configurations about 6 ms. tests/search/test_features.py::test_speed_100k
guards it (< 2 s; a Python loop over the samples would be about 100 times slower).

Notation
--------
For each loop ``lp``: ``D[lp]``, ``S[lp]``, ``A[lp]`` the dram, spad and array factors,
``T[lp] = S[lp] * A[lp]`` the tile extent; ``G = layer.groups`` (the group loop is an
implicit outermost DRAM loop), ``d = hw.dim``, ``st = layer.stride``;
``cb = ceil(T_C / d)``, ``kb = ceil(T_K / d)`` (channel blocks of the compiler);
``M = T_N * T_P * T_Q`` (A rows streamed per weight block);
``in_h = (T_P - 1) * st + T_R``, ``in_w = (T_Q - 1) * st + T_S``.

Reuse (DRAM loads). The DRAM-level loops (the group loop outermost, then ``order``)
step through tiles; an operand's tile is reloaded whenever its index changes. With
``Rel_X`` the loops that index operand X (input: N C P Q R S, weight: K C R S, output:
N K P Q) and ``L_X`` the innermost position of ``order`` whose loop is in ``Rel_X``
with ``D > 1``, the number of loads (for the output, visits) of X is

    loads_X = G * prod(D[order[j]] for j <= L_X)        (loads_X = G when there is no L_X)

i.e. every loop at or outside ``L_X`` - relevant or not - changes the tile when it
steps, and the loops inside ``L_X`` (irrelevant, or of factor 1) reuse it. An output
tile visited more often than the ``distinct = G * D_N * D_K * D_P * D_Q`` output tiles
spills int32 partial sums and reloads them: ``spills = visits_O - distinct``.

Software features (`software_features`, columns in `SOFTWARE_FEATURE_NAMES` order)
---------------------------------------------------------------------------------
==========================  ==================================================================
name                        formula
==========================  ==================================================================
log2_kernel_parallelism     log2(T_R * T_S)
log2_spatial_unroll         log2(A_C * A_K)
log2_pe_utilisation         log2((T_C / (cb * d)) * (T_K / (kb * d)))
log2_dram_steps             log2(G * prod(D))                       (DRAM-level iterations)
log2_weight_blocks          log2(G * prod(D) * kb * cb * T_R * T_S)  (weight preloads)
log2_iterations             log2(G * prod(D) * kb * cb * T_R * T_S * M)  (array row passes)
log2_rows_per_block         log2(M) = log2(T_N * T_P * T_Q)
log2_input_loads            log2(loads_I)
log2_weight_loads           log2(loads_W)
log2_output_visits          log2(visits_O)
log2_input_bytes            log2(loads_I * T_N * in_h * in_w * T_C)         (int8)
log2_weight_bytes           log2(loads_W * T_R * T_S * T_C * T_K)           (int8)
log2_psum_bytes             log2(1 + 2 * 4 * spills * T_N * T_P * T_Q * T_K) (int32 out + in)
log2_dram_bytes             log2(input bytes + weight bytes + psum bytes + layer.output_elems)
unrolled_dims_primes        2 log2 T_P + 3 log2 T_Q + 5 log2 A_K + 7 log2 S_K
                            + 11 log2 A_C + 13 log2 S_C
sp_utilisation              sp_rows_needed / hw.sp_rows      (`rows_needed`, as buffered)
acc_utilisation             acc_rows_needed / hw.acc_rows
buffers_input               b_input   (1 or 2)
buffers_weight              b_weight  (1 or 2)
buffers_output              b_output  (1 or 2)
==========================  ==================================================================

All counts are for one occurrence of the layer over all its groups (``layer.count`` is
a constant multiplier of a layer and is left out). ``layer.output_elems`` (the final
int8 output, one byte per element; four with an int32 output) is the same for every
mapping of a layer; it is in ``log2_dram_bytes`` so that the total is the traffic.

Hardware features (`hardware_features`, columns in `HARDWARE_FEATURE_NAMES` order)
---------------------------------------------------------------------------------
=====================  ==========================================================
name                   formula
=====================  ==========================================================
log2_dim               log2(dim)                          (width of the PE array)
log2_pes               log2(dim * dim)                    (total PEs)
log2_sp_kb             log2(sp_kb)
log2_acc_kb            log2(acc_kb)
log2_sram_kb           log2(sp_kb + acc_kb)               (total on-chip SRAM)
log2_sram_kb_per_pe    log2((sp_kb + acc_kb) / dim**2)
log2_sp_rows           log2(sp_kb * 1024 / dim)           (`HardwareConfig.sp_rows`)
log2_acc_rows          log2(acc_kb * 1024 / (4 * dim))    (`HardwareConfig.acc_rows`)
=====================  ==========================================================

What was adapted from Table 4.2, and why
----------------------------------------
* Raw cardinal parameters (SIMD lanes, on-chip bandwidth, total PEs, PE-array width):
  this array has no SIMD lanes and its on-chip bandwidth is one dim-wide row per cycle,
  so they reduce to ``log2_dim`` and ``log2_pes``. Spotlight's RF + scratchpad total
  becomes scratchpad + accumulator (``log2_sram_kb``), with SRAM per PE, and the
  capacities in the rows the tiles are measured in (the rows features; these are
  linear in the log KB and log dim features, kept because the fit rule is in rows).
* Parallelism in the kernel, ``R0 x S0``: the tile's ``T_R x T_S``.
* Degree of spatial unrolling (outer x inner unrolled tile size): the array unrolls
  exactly C (rows) and K (columns), so ``A_C x A_K``.
* PE utilisation (unrolled tile / array height x the same for the width): the compiler
  re-blocks a tile's C and K into ``cb``, ``kb`` blocks of ``dim`` (`hw.mapping`), so
  the fraction of the array busy is ``T_C / (cb * d) x T_K / (kb * d)``.
* Number of loop iterations (``ceil(outer / height) x ceil(inner / width)``): here the
  DRAM steps, the weight blocks (one PRELOAD each: ``kb * cb * T_R * T_S`` per step) and
  the A rows streamed (``M`` per block) all matter, so three features; with
  ``log2_rows_per_block`` (short blocks are preload-bound).
* Approximate transfers from DRAM, ``(X0/X2)(Y0/Y2)(W + H)`` (tiles x perimeter): this
  toolkit's loads are exact in closed form from the loop order (the reuse rule above),
  so the features are the load counts and the bytes they move per operand, the
  partial-sum traffic (which the paper's output-stationary-free formula has no term
  for) and the total.
* Size of commonly unrolled dimensions, ``2 X0 + 3 Y0 + 5 K0 + 7 K1 + 11 K2`` (primes as
  "basis vectors" to spread few-valued parameters apart): the commonly unrolled
  dimensions here are the output pixels streamed through the array (P, Q tile) and the
  two unrolled loops K and C at their array and spad levels; the dram level is left out
  because ``log2 D = log2 dims - log2 S - log2 A`` is linearly dependent on them (it
  would make different mappings collide), and log2 factors are used (linear trends).
* Added (not in Table 4.2, but named in the paper's initial set as buffer utilisation):
  scratchpad and accumulator utilisation by the fit rule, and the three buffer counts
  (the buffering is a categorical choice; as numbers 1/2 they are ordinal).

Bad input raises ValueError with a one-line message naming the bad value and the
expected shape or range.
"""

from __future__ import annotations

import numpy as np

from hw.config import HardwareConfig, param_spec
from hw.layer import LOOPS, Layer
from hw.mapping import LEVELS, OPERANDS, check_arrays, footprint_rows, reason_text, rows_needed

__all__ = ["HARDWARE_FEATURE_NAMES", "SOFTWARE_FEATURE_NAMES", "hardware_features", "software_features"]

SOFTWARE_FEATURE_NAMES: tuple[str, ...] = (
    "log2_kernel_parallelism",
    "log2_spatial_unroll",
    "log2_pe_utilisation",
    "log2_dram_steps",
    "log2_weight_blocks",
    "log2_iterations",
    "log2_rows_per_block",
    "log2_input_loads",
    "log2_weight_loads",
    "log2_output_visits",
    "log2_input_bytes",
    "log2_weight_bytes",
    "log2_psum_bytes",
    "log2_dram_bytes",
    "unrolled_dims_primes",
    "sp_utilisation",
    "acc_utilisation",
    "buffers_input",
    "buffers_weight",
    "buffers_output",
)

HARDWARE_FEATURE_NAMES: tuple[str, ...] = (
    "log2_dim",
    "log2_pes",
    "log2_sp_kb",
    "log2_acc_kb",
    "log2_sram_kb",
    "log2_sram_kb_per_pe",
    "log2_sp_rows",
    "log2_acc_rows",
)

_NL = len(LOOPS)
_N, _K, _C, _P, _Q, _R, _S = (LOOPS.index(lp) for lp in LOOPS)
#: Loops that index each operand's tile (`OPERANDS` order: input, weight, output).
_RELEVANT = {
    "input": ("N", "C", "P", "Q", "R", "S"),
    "weight": ("K", "C", "R", "S"),
    "output": ("N", "K", "P", "Q"),
}
_REL_MASK = np.array([[lp in _RELEVANT[op] for lp in LOOPS] for op in OPERANDS], dtype=bool)  # (3, 7)


def _int_array(x, name: str, shape_text: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == object or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array of shape {shape_text}; got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _loads(D: list, pos: list, rel: tuple, G: int) -> np.ndarray:
    """G * prod(D at positions <= L) with L the innermost position of a loop in ``rel``
    whose D > 1 (G where there is none): D and pos are per-loop (B,) arrays, pos[lp] the
    DRAM position of loop lp. (B,) int64."""
    L = np.full(D[0].shape, -1, dtype=np.int64)
    for lp in rel:
        L = np.maximum(L, np.where(D[lp] > 1, pos[lp], -1))
    out = np.full(D[0].shape, G, dtype=np.int64)
    for lp in range(_NL):
        out *= np.where(pos[lp] <= L, D[lp], 1)
    return out


def software_features(hw: HardwareConfig, layer: Layer, factors, order, buffers) -> np.ndarray:
    """Features (B, len(SOFTWARE_FEATURE_NAMES)) float64 of B mappings of ``layer`` on
    ``hw`` in array form: ``factors`` (B, 3, 7), ``order`` (B, 7) permutations of 0..6,
    ``buffers`` (B, 3) or (3,) in {1, 2} (None: all double). Formulas: module docstring.

    The mappings must be structurally valid (factors >= 1 multiplying to the layer's
    per-group bounds, only C and K unrolled, array factors <= hw.dim); they need not fit
    (``sp_utilisation`` or ``acc_utilisation`` > 1 then). ValueError otherwise."""
    if not isinstance(hw, HardwareConfig):
        raise ValueError(f"hw must be a HardwareConfig; got {type(hw).__name__}")
    if not isinstance(layer, Layer):
        raise ValueError(f"layer must be a Layer; got {type(layer).__name__}")
    f = _int_array(factors, "factors", "(B, 3, 7)")
    if f.ndim != 3 or f.shape[1:] != (len(LEVELS), _NL):
        raise ValueError(f"factors must be an integer array of shape (B, 3, 7); got shape {f.shape}")
    B = f.shape[0]
    o = _int_array(order, "order", f"(B, 7) = ({B}, 7)")
    if o.shape != (B, _NL):
        raise ValueError(f"order must be an integer array of shape (B, 7) = ({B}, 7); got shape {o.shape}")
    if buffers is None:
        buffers = np.full(len(OPERANDS), 2, dtype=np.int64)
    b = _int_array(buffers, "buffers", f"(B, 3) = ({B}, 3) or (3,)")
    if b.shape not in ((len(OPERANDS),), (B, len(OPERANDS))):
        raise ValueError(f"buffers must be an integer array of shape (B, 3) = ({B}, 3) or (3,); "
                         f"got shape {b.shape}")
    b = np.broadcast_to(b, (B, len(OPERANDS)))
    bad = (b != 1) & (b != 2)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ValueError(f"buffers must each be 1 or 2 (single or double); got {int(b[i, j])} "
                         f"({OPERANDS[j]}) in row {i}")
    ot = np.ascontiguousarray(o.T)                     # (7, B): loop at each DRAM position
    pos = np.full((_NL, B), _NL, dtype=np.int64)       # (7, B): DRAM position of each loop
    inside = (ot >= 0) & (ot < _NL)
    np.put_along_axis(pos, np.where(inside, ot, 0), np.arange(_NL)[:, None], axis=0)
    perm = inside.all(axis=0) & (pos < _NL).all(axis=0)   # a repeated loop leaves one unplaced
    if not perm.all():
        i = int(np.flatnonzero(~perm)[0])
        raise ValueError(f"order rows must be permutations of 0..6 (indices into LOOPS); "
                         f"got {o[i].tolist()} in row {i}")
    dims = np.array([layer.dims[lp] for lp in LOOPS], dtype=np.int64)
    d, st, G = hw.dim, layer.stride, layer.groups
    ft = np.ascontiguousarray(f.transpose(1, 2, 0))   # (3, 7, B): per level and loop, contiguous
    D, S, A = ([ft[lv, lp] for lp in range(_NL)] for lv in range(len(LEVELS)))
    structural = (ft >= 1).all(axis=(0, 1))
    for lp in range(_NL):
        structural &= D[lp] * S[lp] * A[lp] == dims[lp]
        structural &= (A[lp] <= d) if lp in (_C, _K) else (A[lp] == 1)
    if not structural.all():
        i = int(np.flatnonzero(~structural)[0])
        code = int(check_arrays(dims, st, f[i:i + 1], o[i:i + 1], d, hw.sp_rows, hw.acc_rows, b[i:i + 1])[0])
        raise ValueError(f"row {i} is not a mapping of layer {layer.name!r} on dim {d}: "
                         + reason_text(code, dims, st, f[i], o[i], d, hw.sp_rows, hw.acc_rows, b[i]))

    T = [S[lp] * A[lp] for lp in range(_NL)]
    tn, tk, tc, tp, tq, tr, ts = T
    cb, kb = -(-tc // d), -(-tk // d)
    M = tn * tp * tq
    steps = np.full(B, G, dtype=np.int64)
    for lp in range(_NL):
        steps *= D[lp]
    blocks = steps * kb * cb * tr * ts

    # reuse: loads of each operand from the loop order (module docstring)
    n_in, n_w, visits = (_loads(D, pos, tuple(LOOPS.index(lp) for lp in _RELEVANT[op]), G)
                         for op in OPERANDS)
    distinct = G * D[_N] * D[_K] * D[_P] * D[_Q]
    spills = visits - distinct

    in_h, in_w = (tp - 1) * st + tr, (tq - 1) * st + ts
    fl = np.float64
    in_bytes = n_in.astype(fl) * (tn * in_h * in_w * tc).astype(fl)
    w_bytes = n_w.astype(fl) * (tr * ts * tc * tk).astype(fl)
    ps_bytes = 8.0 * spills.astype(fl) * (M * tk).astype(fl)
    total = in_bytes + w_bytes + ps_bytes + float(layer.output_elems)

    bt = np.ascontiguousarray(b.T)
    sp_need, acc_need = rows_needed(*footprint_rows(d, st, *T), *bt)

    lg = np.log2
    cols = [
        lg((tr * ts).astype(fl)),
        lg((A[_C] * A[_K]).astype(fl)),
        lg((tc / (cb * d)) * (tk / (kb * d))),
        lg(steps.astype(fl)),
        lg(blocks.astype(fl)),
        lg((blocks * M).astype(fl)),
        lg(M.astype(fl)),
        lg(n_in.astype(fl)),
        lg(n_w.astype(fl)),
        lg(visits.astype(fl)),
        lg(in_bytes),
        lg(w_bytes),
        lg(1.0 + ps_bytes),
        lg(total),
        (2 * lg(tp.astype(fl)) + 3 * lg(tq.astype(fl)) + 5 * lg(A[_K].astype(fl))
         + 7 * lg(S[_K].astype(fl)) + 11 * lg(A[_C].astype(fl)) + 13 * lg(S[_C].astype(fl))),
        sp_need / hw.sp_rows,
        acc_need / hw.acc_rows,
        *bt,
    ]
    out = np.empty((len(SOFTWARE_FEATURE_NAMES), B), dtype=fl)
    for k, c in enumerate(cols):
        out[k] = c
    return np.ascontiguousarray(out.T)


def _hw_axis(x, name: str) -> np.ndarray:
    a = _int_array(x, name, "(B,) or a scalar")
    if a.ndim > 1:
        raise ValueError(f"{name} must be an integer array of shape (B,) or a scalar; got shape {a.shape}")
    spec = param_spec(name)
    ok = np.isin(a, np.asarray(spec.values, dtype=np.int64))
    if not ok.all():
        bad = a.reshape(-1)[np.flatnonzero(~ok.reshape(-1))[0]]
        raise ValueError(f"{name} must be {spec.allowed}; got {int(bad)}")
    return a


def hardware_features(dim, sp_kb, acc_kb) -> np.ndarray:
    """Features (B, len(HARDWARE_FEATURE_NAMES)) float64 of B hardware configurations
    given as the searched axes: integer arrays (B,) (or scalars, broadcast; all scalars
    give B = 1) of allowed values (`hw.config.param_spec`). Formulas: module docstring."""
    arrs = [_hw_axis(x, n) for x, n in ((dim, "dim"), (sp_kb, "sp_kb"), (acc_kb, "acc_kb"))]
    try:
        d, sp, acc = np.broadcast_arrays(*arrs)
    except ValueError:
        raise ValueError(f"dim, sp_kb and acc_kb must have one length B (or be scalars); got shapes "
                         f"{[a.shape for a in arrs]}") from None
    d, sp, acc = (np.atleast_1d(a).astype(np.float64) for a in (d, sp, acc))
    ld, ls, la = np.log2(d), np.log2(sp), np.log2(acc)
    lsram = np.log2(sp + acc)
    return np.stack([ld, 2 * ld, ls, la, lsram, lsram - 2 * ld, ls + 10 - ld, la + 8 - ld], axis=1)
