"""Analytical latency and access-count model of the RTL, vectorised over a batch.

``evaluate_arrays(layer, hw, factors, order)`` evaluates B (hardware, mapping) pairs for
one layer with numpy, no Python loop over samples. Inputs (a contract shared with
`search.space`):

    hw        dict HardwareConfig field -> int array (B,) or scalar (missing = default)
    factors   int array (B, 3, 7): [level in ("dram", "spad", "array"), loop in LOOPS]
    order     int array (B, 7): order[b, i] = index in LOOPS of the i-th DRAM-level loop,
              outermost first

It returns a dict of arrays (B,): ``feasible`` (bool), ``reason`` (int code, see
`REASONS`), ``cycles`` (float), the counters of `hw.result.COUNT_KEYS`, ``busy_load``,
``busy_exec``, ``busy_store``, ``instructions``, ``energy_pj``, ``area_mm2``, ``edp``
and ``utilisation`` (NaN / 0 where infeasible).

What the model follows (the compiler `sim.compiler` and the units of `hw/`)
---------------------------------------------------------------------------
Counts are exact, derived from the mapping the way the compiler lowers it. The DRAM
loops (the group loop outermost, then ``order``) step through spad-level tiles; a tile
is (re)loaded when its index changes between consecutive steps, so with ``L_X`` the
innermost DRAM loop with a factor > 1 that indexes tile X, X is loaded
``G * prod(F[loops at or outside L_X])`` times. An output tile that leaves the
accumulator before its whole reduction is done spills int32 partial sums and reloads
them on its next visit.

Latency is not a roofline: it sums per-step times, where a *step* is one DRAM-level
iteration and the compiled program overlaps the execution of step t with the loads of
step t+1 and the stores of step t-1. Which loads and stores happen around a step is set
by the two loop transitions around it (an odometer carry at loop position i changes
every tile that is indexed by a loop at or inside i); the model counts steps per pair of
transitions exactly (a carry at any position other than the innermost is always followed
by one at the innermost) and prices each pair once. A step takes the longest of

* execute: per weight block (one PRELOAD of dim x dim weights for every (kb, r, s, cb)
  of the tile) the A rows streamed, where a COMPUTE of n rows costs max(n, 2) cycles (its
  PRELOAD(b_none) pops in between), and at least ``dim + preload_gap`` cycles because the
  weight loader writes one row per cycle into the shadow buffer; COMPUTEs also hold an
  execute scoreboard slot from dispatch to write-back (2 dim + a few cycles), 16 slots;
* loads: DMA requests (one per cycle, split at ``dma_max_req_bytes`` boundaries), bus
  beats at ``min(1, dram_bytes_per_cycle / dma_bus_bytes)`` per cycle, and Little's law
  on requests in flight (``dma_max_inflight``, each held ``dram_latency`` plus its beats)
  and rows in flight (``max(2, dma_max_inflight)``);
* stores: one accumulator row per cycle, write beats, and requests in flight until their
  acknowledgement ``dram_latency`` cycles after the last beat;
* the shared DRAM channel (read and write beats together);
* the frontend, which dispatches one instruction per cycle, in order.

Beats and requests per row are exact expectations over the byte offsets the rows start
at (a row of b bytes at offset o of a w-byte word spans ceil((o + b) / w) words; the
offsets are the multiples of the gcd of the address strides). Around the steps: the
first step's loads are not overlapped (prologue), the last tile's stores and the DMA
write acknowledgements are not either (epilogue), and a step whose first store or load
waits for the previous step's last COMPUTE to drain from the array loses that wait when
the step's own execute work before that instruction is shorter (a hazard bubble).

Calibration: the constants in `TimingParams` were set against RTL runs (see
scripts/validate_cost.py and BENCHMARKS.md); they are small per-event cycle counts,
not fitted scale factors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hw.config import HardwareConfig
from hw.layer import LOOPS, Layer

from .energy import DEFAULT_TABLE, EnergyTable, area_mm2, energy_pj

__all__ = ["HW_FIELDS", "REASONS", "TimingParams", "evaluate_arrays", "hw_arrays", "pixel_runs"]

HW_FIELDS = tuple(f.name for f in dataclasses.fields(HardwareConfig))
REASONS = {
    0: None,
    1: "factors do not multiply to the layer's loop bounds",
    2: "a loop other than C or K is unrolled on the array",
    3: "an array factor exceeds the array dimension",
    4: "input + weight tiles exceed the scratchpad (double-buffered)",
    5: "output tile exceeds the accumulator (double-buffered)",
    6: "the loop order is not a permutation of N, K, C, P, Q, R, S",
    7: "a factor is < 1",
}
_N, _K, _C, _P, _Q, _R, _S = range(7)
_IN_LOOPS = (_N, _C, _P, _Q, _R, _S)
_W_LOOPS = (_K, _C, _R, _S)
_O_LOOPS = (_N, _K, _P, _Q)
_RED_LOOPS = (_C, _R, _S)
EX_SLOTS = 16       # execute scoreboard slots (hw.controllers.SLOTS)


@dataclass(frozen=True)
class TimingParams:
    """Small per-event cycle counts of the RTL (see the module docstring)."""

    preload_gap: float = 2.0      # weight block period beyond dim cycles
    row_overhead: float = 3.0     # DMA row: cycles beyond latency and beats while in flight
    req_overhead: float = 1.0     # DMA request: cycles beyond latency and beats in the queue
    ack_overhead: float = 2.0     # write request: cycles beyond latency and beats until ack
    drain_extra: float = 2.0      # COMPUTE completion: 2*dim + drain_extra after its last row
    step_overhead: float = 0.0    # fixed cycles per step
    fence_extra: float = 0.0      # cycles a FENCE costs beyond a drain and a DRAM latency
    prologue_extra: float = 11.0  # cycles of configuration, host start and load pipeline
    epilogue_extra: float = 11.0  # cycles of store pipeline and HALT beyond drain and acks
    need_extra: float = 4.0       # cycles from the needed row's arrival to the COMPUTE


DEFAULT_PARAMS = TimingParams()


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def hw_arrays(hw, size: int | None = None) -> dict:
    """HardwareConfig, dict of fields, or list of HardwareConfig -> dict of int64 arrays."""
    if isinstance(hw, HardwareConfig):
        d = hw.to_dict()
    elif isinstance(hw, (list, tuple)) and hw and isinstance(hw[0], HardwareConfig):
        d = {f: np.array([getattr(h, f) for h in hw], dtype=np.int64) for f in HW_FIELDS}
    elif isinstance(hw, dict):
        unknown = sorted(set(hw) - set(HW_FIELDS))
        if unknown:
            raise ValueError(f"unknown hardware field(s) {unknown}; allowed: {list(HW_FIELDS)}")
        base = HardwareConfig().to_dict()
        d = {**base, **hw}
    else:
        raise TypeError(f"hw must be a HardwareConfig, a list of them or a dict of arrays; "
                        f"got {type(hw).__name__}")
    out = {k: np.asarray(v, dtype=np.int64) for k, v in d.items()}
    if size is not None:
        out = {k: np.broadcast_to(v, (size,)) for k, v in out.items()}
    return out


def _cdiv(a, b):
    return -(-a // b)


def _mean_words(nbytes, g, base, word):
    """Mean number of `word`-byte words touched by a row of `nbytes` bytes that starts at
    an offset base + k*g (k = 0, 1, ...) modulo word; g divides word (arrays ok)."""
    g = np.gcd(g, word)
    b0 = base % g
    kk = word // g
    nb = nbytes + b0 - 1
    q, r = nb // word, nb % word
    extra = kk - _cdiv(word - r, g)
    return np.where(nbytes > 0, q + 1 + extra / kk, 0.0)


@lru_cache(maxsize=65536)
def pixel_runs(tn: int, tp: int, tq: int, stride: int, in_h: int, in_w: int, dim: int) -> tuple:
    """(runs, config_ex, slot_cycles) of one weight block: the compiler's COMPUTE runs
    (greedy arithmetic runs of <= dim pixels over the tile's A rows, `sim.compiler`),
    the CONFIG EX instructions a block needs in steady state (a_stride changes between
    consecutive multi-row runs, cyclically), and the list of run lengths (as a tuple)."""
    n_idx = np.arange(tn).repeat(tp * tq)
    p_idx = np.tile(np.arange(tp).repeat(tq), tn)
    q_idx = np.tile(np.arange(tq), tn * tp)
    a = (n_idx * in_h + p_idx * stride) * in_w + q_idx * stride
    m = len(a)
    lengths, strides = [], []
    start = 0
    diffs = np.diff(a)
    while start < m:
        end = start + 1
        st = 0
        if end < m:
            st = int(diffs[start])
            lim = min(m, start + dim)
            # extend while the difference stays st
            seg = diffs[start:lim - 1]
            bad = np.nonzero(seg != st)[0]
            end = start + 1 + (int(bad[0]) if len(bad) else len(seg))
        lengths.append(end - start)
        strides.append(st if end - start > 1 else None)
        start = end
    multi = [s for s in strides if s is not None]
    cfg = 0
    if multi:
        cfg = sum(1 for i in range(len(multi)) if multi[i] != multi[i - 1]) if len(set(multi)) > 1 else 0
    return len(lengths), cfg, tuple(lengths)


@lru_cache(maxsize=4096)
def fences_per_sweep(v: int, sweeps: int = 12) -> float:
    """FENCEs per sweep over `v` output tiles that spill and reload partial sums in a
    cycle (the compiler fences a reload whose tile's spill was emitted after the last
    FENCE; a spill is emitted in the step after the visit, a reload in the step before),
    in steady state."""
    unfenced: set[int] = set()
    fences = 0
    for s in range(sweeps):
        for j in range(v):
            k = s * v + j
            if k >= 1:
                unfenced.add((k - 1) % v)
            if k + 1 >= v and (k + 1) % v in unfenced:
                fences += s >= 2
                unfenced.clear()
    return fences / (sweeps - 2)


def _run_stats(tn, tp, tq, stride, in_h, in_w, dim, drain):
    """Vectorised over unique tiles: runs U, config EX per block, and execute cycles of
    one block's COMPUTEs (sum over runs of max(n, 2, slot bound))."""
    key = np.stack([tn, tp, tq, np.broadcast_to(stride, tn.shape), in_h, in_w, dim, drain], axis=1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    U = np.empty(len(uniq))
    X = np.empty(len(uniq))
    E = np.empty(len(uniq))
    for i, (a, b, c, s, h, w, d, dr) in enumerate(uniq.tolist()):
        u, x, lengths = pixel_runs(a, b, c, s, h, w, d)
        ln = np.asarray(lengths, dtype=float)
        U[i], X[i] = u, x
        E[i] = np.maximum(np.maximum(ln, 2.0), (dr + ln) / EX_SLOTS).sum() + x
    return U[inv], X[inv], E[inv]


def _segments(total, seg, dim):
    """Instructions to move `total` rows made of contiguous runs of `seg` rows, each
    cut into pieces of at most dim rows (the compiler's `_dma_runs`)."""
    return (total // seg) * _cdiv(seg, dim)


# ---------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------

def evaluate_arrays(layer: Layer, hw, factors, order, *, out: str = "int32",
                    table: EnergyTable = DEFAULT_TABLE,
                    params: TimingParams = DEFAULT_PARAMS) -> dict:
    """Evaluate B (hardware, mapping) pairs for `layer`; see the module docstring."""
    if out not in ("int32", "int8"):
        raise ValueError(f"out={out!r} must be 'int32' or 'int8'")
    factors = np.asarray(factors, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    if factors.ndim == 2:
        factors = factors[None]
    if order.ndim == 1:
        order = order[None]
    if factors.shape[1:] != (3, 7) or order.shape[1:] != (7,) or len(order) != len(factors):
        raise ValueError(f"factors must be (B, 3, 7) and order (B, 7); got {factors.shape} and {order.shape}")
    B = len(factors)
    H = hw_arrays(hw, B)
    P = params
    d = H["dim"]
    bus = H["dma_bus_bytes"]
    R = H["dma_max_req_bytes"]
    lat = H["dram_latency"].astype(float)
    infl = H["dma_max_inflight"].astype(float)
    rate = np.minimum(1.0, H["dram_bytes_per_cycle"] / bus)          # beats per cycle
    sp_rows = H["sp_kb"] * 1024 // d
    acc_rows = H["acc_kb"] * 1024 // (4 * d)

    L = layer
    dims = np.array([L.dims[lp] for lp in LOOPS], dtype=np.int64)
    G, st = L.groups, L.stride
    Cg, Kg = L.c_per_group, L.k_per_group
    Hp, Wp = L.h + 2 * L.padding, L.w + 2 * L.padding
    e_out = 4 if out == "int32" else 1

    # ---- validity (the rules of Mapping.check) ---------------------------------------
    F = factors[:, 0, :]
    Tt = factors[:, 1, :] * factors[:, 2, :]
    A = factors[:, 2, :]
    reason = np.zeros(B, dtype=np.int64)

    def flag(mask, code):
        reason[(reason == 0) & mask] = code

    flag((factors < 1).any(axis=(1, 2)), 7)
    flag((np.sort(order, axis=1) != np.arange(7)).any(axis=1), 6)
    flag((F * Tt != dims).any(axis=1), 1)
    flag((np.delete(A, [_C, _K], axis=1) != 1).any(axis=1), 2)
    flag((A[:, _C] > d) | (A[:, _K] > d), 3)
    F = np.maximum(F, 1)
    Tt = np.maximum(Tt, 1)
    TN, TK, TC, TP, TQ, TR, TS = (Tt[:, i] for i in range(7))
    cbn, kbn = _cdiv(TC, d), _cdiv(TK, d)
    in_h, in_w = (TP - 1) * st + TR, (TQ - 1) * st + TS
    pix_in = TN * in_h * in_w
    M = TN * TP * TQ
    in_rows = pix_in * cbn
    w_rows = TR * TS * kbn * TC
    o_rows = M * kbn
    flag(2 * (in_rows + w_rows) > sp_rows, 4)
    flag(2 * o_rows > acc_rows, 5)
    ok = reason == 0

    # ---- tile loads, stores and steps (exact) -----------------------------------------
    # Positions 0..7: 0 is the group loop, 1..7 the DRAM loops in `order`.
    Fpos = np.concatenate([np.full((B, 1), G, dtype=np.int64), np.take_along_axis(F, order, axis=1)], axis=1)
    loop_at = np.concatenate([np.full((B, 1), -1, dtype=np.int64), order], axis=1)
    cum = np.cumprod(Fpos, axis=1)                    # product of F at positions <= i
    steps = cum[:, -1]
    nontriv = Fpos > 1

    def innermost(loops):
        member = np.isin(loop_at, loops) | (loop_at == -1)
        mask = member & nontriv
        idx = np.where(mask, np.arange(8), -1).max(axis=1)
        return idx

    LI, LW, LO = innermost(_IN_LOOPS), innermost(_W_LOOPS), innermost(_O_LOOPS)

    def loads_at(Lx):
        return np.where(Lx >= 0, np.take_along_axis(cum, np.maximum(Lx, 0)[:, None], axis=1)[:, 0], 1)

    n_in, n_w, visits = loads_at(LI), loads_at(LW), loads_at(LO)
    distinct = G * F[:, _N] * F[:, _K] * F[:, _P] * F[:, _Q]
    spills = visits - distinct
    # FENCEs: the output tiles inside the innermost DRAM reduction loop that encloses an
    # output loop are revisited in a cycle of V tiles
    is_red_pos = np.isin(loop_at, _RED_LOOPS) & nontriv & (np.arange(8)[None, :] < LO[:, None])
    rstar = np.where(is_red_pos, np.arange(8), -1).max(axis=1)
    inner_out = np.isin(loop_at, _O_LOOPS) & (np.arange(8)[None, :] > rstar[:, None])
    V = np.where(inner_out, Fpos, 1).prod(axis=1)
    uv, inv_v = np.unique(V, return_inverse=True)
    phi = np.array([fences_per_sweep(int(v)) if v > 1 else 0.0 for v in uv])[inv_v.reshape(-1)]
    fences = np.where(spills > 0, np.round(spills * phi / np.maximum(V, 1)), 0)

    in_bytes = pix_in * TC
    w_bytes = TR * TS * TC * TK
    o_elems = M * TK
    nblk = kbn * TR * TS * cbn
    a_rows_step = nblk * M

    counts = {
        "macs": np.full(B, L.macs, dtype=np.int64),
        "dram_bytes_read": n_in * in_bytes + n_w * w_bytes + spills * o_elems * 4,
        "dram_bytes_written": distinct * o_elems * e_out + spills * o_elems * 4,
        "sp_writes": n_in * in_rows + n_w * w_rows,
        "sp_reads": steps * (a_rows_step + w_rows),
        "acc_writes": steps * a_rows_step + spills * o_rows,
        "acc_reads": steps * a_rows_step - distinct * kbn * M + visits * o_rows,
        "weight_loads": steps * w_rows,
    }

    # ---- DMA geometry per tile: rows, beats, requests, instructions --------------------
    in_addr = 0
    in_size = L.n * Hp * Wp * L.c
    w_addr = _cdiv(in_addr + in_size, bus) * bus
    w_size = G * L.r * L.s * Cg * Kg
    o_addr = _cdiv(w_addr + w_size, bus) * bus
    ps_addr = _cdiv(o_addr + L.n * L.p * L.q * L.k * e_out, bus) * bus

    def z(cond, v):
        return np.where(cond, v, 0)

    def blocks(total, dd):
        """(full blocks, their cols, remainder cols) of `total` channels in blocks of dd."""
        return total // dd, total % dd

    def dma(rows_per_blk, tot, dd, g_terms, base, elem):
        """Rows, beats and requests of a tile whose rows hold channel blocks of a
        `tot`-channel extent (cols dd, last one the remainder), elem bytes each."""
        nf, rem = blocks(tot, dd)
        g = g_terms
        beats = nf * rows_per_blk * _mean_words(dd * elem, g, base, bus) \
            + z(rem > 0, rows_per_blk * _mean_words(rem * elem, g, base, bus))
        reqs = nf * rows_per_blk * _mean_words(dd * elem, g, base, R) \
            + z(rem > 0, rows_per_blk * _mean_words(rem * elem, g, base, R))
        rows = rows_per_blk * _cdiv(tot, dd)
        return rows.astype(float), beats, reqs

    gi = np.gcd.reduce([np.full(B, L.c), z(G > 1, np.full(B, Cg)), z(F[:, _C] > 1, TC), z(cbn > 1, d)])
    in_r, in_b, in_q = dma(pix_in, TC, d, gi, in_addr, 1)
    gw = np.gcd.reduce([np.full(B, Kg), z(G > 1, np.full(B, L.r * L.s * Cg * Kg)), z(F[:, _K] > 1, TK),
                        z(kbn > 1, d)])
    w_r, w_b, w_q = dma(TR * TS * TC, TK, d, gw, w_addr, 1)

    def out_geom(elem, base):
        go = np.gcd.reduce([np.full(B, L.k * elem), z(G > 1, np.full(B, Kg * elem)), z(F[:, _K] > 1, TK * elem),
                            z(kbn > 1, d * elem)])
        return dma(M, TK, d, go, base, elem)

    o_r, o_b, o_q = out_geom(e_out, o_addr)
    p_r, p_b, p_q = out_geom(4, ps_addr)

    # Instructions per tile (MVIN / MVOUT of <= dim consecutive rows).
    seg_in = np.where(in_w < Wp, in_w, np.where(in_h < Hp, in_h * in_w, pix_in))
    mv_in = cbn * _segments(pix_in, seg_in, d)
    seg_w = np.where(kbn > 1, TC, np.where(TC < Cg, TC, np.where(TS < L.s, TS * TC, TR * TS * TC)))
    mv_w = kbn * _segments(TR * TS * TC, seg_w, d)
    seg_o = np.where(TQ < L.q, TQ, np.where(TP < L.p, TP * TQ, M))
    mv_o = kbn * _segments(M, seg_o, d)

    def first_item(rows, beats, reqs, seg):
        k = np.minimum(seg, d) / np.maximum(rows, 1)
        return rows * k, beats * k, reqs * k

    w_r1, w_b1, w_q1 = first_item(w_r, w_b, w_q, seg_w)
    in_r1, in_b1, in_q1 = first_item(in_r, in_b, in_q, seg_in)
    p_r1, p_b1, p_q1 = first_item(p_r, p_b, p_q, seg_o)

    # ---- execute time per step -------------------------------------------------------
    drain = 2 * d + P.drain_extra
    U, X, run_cycles = _run_stats(TN, TP, TQ, st, in_h, in_w, d, drain.astype(np.int64))
    blk_time = np.maximum(run_cycles, d + P.preload_gap)
    E = nblk * blk_time
    E_rows = nblk * run_cycles                       # streaming part (no loader floor)
    ex_insns = nblk * (2 * U + X)

    # ---- per-step DMA times by transition ------------------------------------------
    def _shape(x, v):
        return v if np.ndim(x) == 1 else v[:, None]

    def t_load(rows, beats, reqs):
        """Cycles the load unit needs for rows / beats / requests ((B,) or (B, k))."""
        rt, lt, fl = _shape(rows, rate), _shape(rows, lat), _shape(rows, infl)
        t = np.maximum.reduce([
            reqs,
            beats / rt,
            rows * (lt + P.row_overhead + beats / np.maximum(rows, 1e-9) / rt) / np.maximum(2, fl),
            reqs * (lt + P.req_overhead + beats / np.maximum(reqs, 1e-9) / rt) / fl,
        ])
        return np.where(rows > 0, t, 0.0)

    def t_load_done(rows, beats, reqs):
        """Cycles until the last of a batch of rows has arrived: its issue / bandwidth
        time plus one latency, or the in-flight limit (which already holds latencies)."""
        rt, lt, fl = _shape(rows, rate), _shape(rows, lat), _shape(rows, infl)
        t = np.maximum.reduce([
            np.maximum(reqs, beats / rt) + lt,
            rows * (lt + P.row_overhead + beats / np.maximum(rows, 1e-9) / rt) / np.maximum(2, fl),
            reqs * (lt + P.req_overhead + beats / np.maximum(reqs, 1e-9) / rt) / fl,
        ])
        return np.where(rows > 0, t, 0.0)

    def t_store_done(rows, beats, reqs):
        """Cycles until the last of a batch of stores is acknowledged."""
        rt, lt, fl = _shape(rows, rate), _shape(rows, lat), _shape(rows, infl)
        t = np.maximum.reduce([
            np.maximum(rows, beats / rt) + lt,
            reqs * (lt + P.ack_overhead + beats / np.maximum(reqs, 1e-9) / rt) / fl,
        ])
        return np.where(rows > 0, t, 0.0)

    def t_store(rows, beats, reqs):
        """Cycles the store unit needs ((B,) or (B, k))."""
        rt, lt, fl = _shape(rows, rate), _shape(rows, lat), _shape(rows, infl)
        t = np.maximum.reduce([
            rows,
            beats / rt,
            reqs * (lt + P.ack_overhead + beats / np.maximum(reqs, 1e-9) / rt) / fl,
        ])
        return np.where(rows > 0, t, 0.0)

    # Transition at position i changes tile X iff i <= L_X.
    pos = np.arange(8)[None, :]
    ld_in = (pos <= LI[:, None]).astype(float)
    ld_w = (pos <= LW[:, None]).astype(float)
    ch_o = (pos <= LO[:, None]).astype(float)
    # expected share of output changes that reload partial sums / store final outputs
    is_red = np.isin(loop_at, _RED_LOOPS)
    red_f = np.where(is_red & nontriv, Fpos, 1)
    red_before = np.cumprod(np.concatenate([np.ones((B, 1), dtype=np.int64), red_f[:, :-1]], axis=1), axis=1)
    revisit = np.where(is_red, 1.0, 1.0 - 1.0 / red_before) * ch_o
    complete = np.where(is_red, 0.0, 1.0 / red_before) * ch_o
    c_ = lambda x: x[:, None]  # noqa: E731

    # loads of a transition, in program order: partial sums, input tile, weight tile
    p_items, i_items, w_items = revisit * c_(mv_o), ld_in * c_(mv_in), ld_w * c_(mv_w)
    need_i = ld_in * (1 - ld_w)                # the needed item is the first input MVIN
    need_p = revisit * (1 - ld_in) * (1 - ld_w)  # ... or the first partial-sum MVIN
    before = revisit * np.maximum(ld_w, ld_in)   # partial sums loaded before the needed item
    ld = {
        "t": t_load(revisit * c_(p_r) + ld_in * c_(in_r) + ld_w * c_(w_r),
                    revisit * c_(p_b) + ld_in * c_(in_b) + ld_w * c_(w_b),
                    revisit * c_(p_q) + ld_in * c_(in_q) + ld_w * c_(w_q)),
        "beats": revisit * c_(p_b) + ld_in * c_(in_b) + ld_w * c_(w_b),
        "items": p_items + i_items + w_items,
        # the first COMPUTE of the next step needs the first weight block (or the first
        # input rows, or the first partial sums): the load item it waits for, and the
        # load work up to it
        "need_k": np.where(ld_w > 0, p_items + i_items, np.where(ld_in > 0, p_items, 0.0)),
        "t_need": t_load(*(before * c_(x) + ld_w * ld_in * c_(y) + ld_w * c_(w1) + need_i * c_(i1) + need_p * c_(p1)
                           for x, y, w1, i1, p1 in ((p_r, in_r, w_r1, in_r1, p_r1), (p_b, in_b, w_b1, in_b1, p_b1),
                                                    (p_q, in_q, w_q1, in_q1, p_q1)))),
        # a partial-sum reload goes into the accumulator buffer the previous tile's
        # stores read: the loads start after those stores, after the COMPUTE drained
        "psum": revisit,
    }
    st = {
        "t": t_store(complete * c_(o_r) + (ch_o - complete) * c_(p_r),
                     complete * c_(o_b) + (ch_o - complete) * c_(p_b),
                     complete * c_(o_q) + (ch_o - complete) * c_(p_q)),
        "beats": complete * c_(o_b) + (ch_o - complete) * c_(p_b),
        "items": ch_o * c_(mv_o),
    }

    # Transition counts and pairs.
    n_tr = np.where(nontriv, (Fpos - 1) * np.concatenate([np.ones((B, 1), dtype=np.int64), cum[:, :-1]], axis=1), 0)
    zpos = np.where(nontriv, np.arange(8), -1).max(axis=1)            # innermost nontrivial
    has = zpos >= 0
    zi = np.maximum(zpos, 0)[:, None]
    n_z = np.take_along_axis(n_tr, zi, axis=1)[:, 0]
    n_nz = n_tr.sum(axis=1) - n_z
    drain_f = drain.astype(float)

    def at_z(dct):
        return {k: np.where(has, np.take_along_axis(v, zi, axis=1)[:, 0], 0.0)[:, None] for k, v in dct.items()}

    def nothing(dct):
        return {k: np.zeros((B, 1)) for k in dct}

    def step_time(ldx, stx):
        """Time of a step from its loads and stores (dicts of (B, 1) or (B, 8) arrays)."""
        E_, lat_, D_ = c_(E), c_(lat), c_(drain_f)
        chan = (ldx["beats"] + stx["beats"]) / c_(rate)
        disp = c_(ex_insns) + ldx["items"] + stx["items"]
        core = np.maximum(np.maximum(np.maximum(E_, ldx["t"]), np.maximum(stx["t"], chan)), disp)
        n_items = ldx["items"] + stx["items"]
        # the step's first store / load waits for the previous step's last COMPUTE to
        # drain; the execute work behind it in program order runs after that
        f_first = 1.0 / (2.0 * np.maximum(n_items, 1.0))
        hazard = np.where(n_items > 0, D_ + c_(E_rows) * (1.0 - f_first), 0.0)
        # the next step's first COMPUTE waits for the load item it needs, dispatched at
        # its due position in this step's execute stream, plus the DMA latency
        f_load = 0.5 / np.maximum(ldx["items"], 1.0)
        fetch = ldx["t_need"] + lat_ + P.need_extra
        need = np.where(ldx["items"] > 0, f_load * c_(E_rows) + fetch, 0.0)
        # a partial-sum reload for step t+1 goes into the accumulator buffer of step t-1,
        # after that tile's stores, after its last COMPUTE drained: a chain over two steps
        chain2 = np.where((ldx["psum"] > 0) & (stx["items"] > 0), 0.5 * (D_ + c_(o_rows) + fetch), 0.0)
        need = np.maximum(need, chain2)
        return np.maximum(np.maximum(core, hazard), need) + P.step_overhead

    # (z -> b) for every nontrivial b != z, (a -> z) for a != z, (z -> z), first, last.
    notz = nontriv & (np.arange(8)[None, :] != zpos[:, None])
    ld_z, st_z = at_z(ld), at_z(st)
    t_zb = step_time(ld, st_z)
    t_az = step_time(ld_z, st)
    c_zz = np.maximum(n_z - 1 - n_nz, 0)
    t_zz = step_time(ld_z, st_z)[:, 0]
    mid = (np.where(notz, n_tr * (t_zb + t_az), 0.0).sum(axis=1) + c_zz * t_zz)
    t_first = step_time(ld_z, nothing(st))[:, 0]
    t_last = np.where(has, step_time(nothing(ld), st_z)[:, 0], 0.0)
    # prologue: the first step's loads (input, weights), not overlapped
    t_pro = t_load_done(in_r + w_r, in_b + w_b, in_q + w_q) + P.prologue_extra
    # epilogue: drain the last COMPUTE, store the last tile, wait for the acks
    t_epi = drain_f + t_store_done(o_r, o_b, o_q) + P.epilogue_extra
    # a FENCE waits for every unit to go idle and every write to be acknowledged: the
    # pipeline drains and refills around it
    t_fence = fences * (lat + drain_f + P.fence_extra)
    cycles = t_pro + t_first + mid + t_last + t_epi + t_fence

    instructions = (steps * ex_insns + n_in * mv_in + n_w * mv_w + spills * mv_o + visits * mv_o
                    + 5 + (spills > 0) + fences)

    # busy estimates: the work of each unit, bounded by the run
    busy_exec = np.minimum(cycles, steps * E + drain_f)
    busy_load = np.minimum(cycles, n_in * t_load(in_r, in_b, in_q) + n_w * t_load(w_r, w_b, w_q)
                           + spills * t_load(p_r, p_b, p_q) + lat)
    busy_store = np.minimum(cycles, distinct * t_store(o_r, o_b, o_q) + spills * t_store(p_r, p_b, p_q) + lat)

    # ---- energy and area ---------------------------------------------------------------
    energy = energy_pj(counts, d, H["sp_kb"], H["acc_kb"], table)
    area = area_mm2(d, H["sp_kb"], H["acc_kb"], table)
    res = {"feasible": ok, "reason": reason,
           "t_prologue": t_pro, "t_steps": t_first + mid + t_last, "t_epilogue": t_epi, "t_fences": t_fence,
           "fences": fences, "steps": steps,
           "cycles": np.where(ok, cycles, np.nan),
           "busy_load": np.where(ok, busy_load, 0.0), "busy_exec": np.where(ok, busy_exec, 0.0),
           "busy_store": np.where(ok, busy_store, 0.0),
           "instructions": np.where(ok, instructions, 0)}
    for k, v in counts.items():
        res[k] = np.where(ok, v, 0).astype(np.int64)
    res["energy_pj"] = np.where(ok, energy, np.nan)
    res["area_mm2"] = np.asarray(np.broadcast_to(area, (B,)), dtype=float)
    res["edp"] = res["energy_pj"] * res["cycles"]
    res["utilisation"] = np.where(ok, L.macs / (d * d * np.where(ok, cycles, 1.0)), np.nan)
    return res
