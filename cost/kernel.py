"""The per-sample arithmetic of the analytical model, compiled with Numba.

`cost.model` documents the model and owns its inputs and outputs; this module is its
inner loop: `evaluate_batch` walks B samples and writes one row of `OUT_COLUMNS` per
sample. Everything here is scalar arithmetic on one (hardware, mapping) pair, so one
evaluation and a batch of a million run the same code (compiled once per process and
cached on disk by Numba).

Inputs (int64 unless noted)
    lay      layer constants, indexed by the ``L_*`` names below
    hwm      (B, len(HW_FIELDS)) hardware fields in `hw.config.HW_FIELDS` order (the
             ``H_*`` indices below are derived from it; `compiled_hw_fields` returns
             them as compiled, so a test ties the cached code to `HardwareConfig`)
    factors  (B, 3, 7) tiling factors [dram, spad, array] x LOOPS
    order    (B, 7) DRAM loop order (indices into LOOPS), outermost first
    bufs     (B, 3) buffer counts of the input, weight and output tiles (1 or 2)
    par      float64 `TimingParams` values in field order (``P_*`` below)

The validity and fit rules are compiled here from their definition in `hw.mapping`
(`footprint_rows`, `rows_needed`, `reason_codes` and its `REASONS` codes, in the same
precedence) and `hw.config` (scratchpad and accumulator rows): Numba cannot see a change
to another file's function through its cache, so the kernel keeps its own copy, and
tests/cost/test_fit_agreement.py asserts on random (hardware, mapping, layer) triples
that every path gives the same feasibility and reason code.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.typed import Dict

from hw.config import EXEC_SLOTS, HW_FIELDS
from hw.mapping import (REASON_ACC, REASON_ARRAY, REASON_BUFFERS, REASON_FACTOR, REASON_ORDER, REASON_PRODUCT,
                        REASON_SPAD, REASON_UNROLL)

# layer constants (`lay`)
(L_N, L_K, L_C, L_P, L_Q, L_R, L_S, L_G, L_STRIDE, L_CG, L_KG, L_HP, L_WP,
 L_BATCH, L_CTOT, L_KTOT, L_PTOT, L_QTOT, L_RTOT, L_STOT, L_EOUT, L_MACS) = range(22)
N_LAY = 22
# hardware fields: their column in `hw.config.HW_FIELDS` (HardwareConfig field order)
H_DIM, H_SP_KB, H_ACC_KB = (HW_FIELDS.index(f) for f in ("dim", "sp_kb", "acc_kb"))
H_BUS, H_REQ, H_INFLIGHT = (HW_FIELDS.index(f) for f in ("dma_bus_bytes", "dma_max_req_bytes", "dma_max_inflight"))
H_LAT, H_BPC = (HW_FIELDS.index(f) for f in ("dram_latency", "dram_bytes_per_cycle"))
#: the HardwareConfig field behind each H_* index the kernel reads
KERNEL_HW_FIELDS = ("dim", "sp_kb", "acc_kb", "dma_bus_bytes", "dma_max_req_bytes", "dma_max_inflight",
                    "dram_latency", "dram_bytes_per_cycle")
# timing parameters (TimingParams field order)
(P_PRELOAD_GAP, P_ROW_OVH, P_REQ_OVH, P_ACK_OVH, P_DRAIN_EXTRA, P_STEP_OVH, P_FENCE_EXTRA,
 P_PRO_EXTRA, P_EPI_EXTRA, P_NEED_EXTRA) = range(10)
OUT_COLUMNS = ("reason", "cycles", "busy_load", "busy_exec", "busy_store", "instructions",
               "macs", "dram_bytes_read", "dram_bytes_written", "sp_writes", "sp_reads",
               "acc_writes", "acc_reads", "weight_loads",
               "t_prologue", "t_steps", "t_epilogue", "t_fences", "fences", "steps")
EX_SLOTS = float(EXEC_SLOTS)    # execute scoreboard slots (hw.config.EXEC_SLOTS)
_RUN_KEY = types.UniTuple(types.int64, 7)
_RUN_VAL = types.UniTuple(types.float64, 3)
_N, _K, _C, _P, _Q, _R, _S = range(7)


@njit(cache=True)
def compiled_hw_fields():
    """The H_* column indices (KERNEL_HW_FIELDS order) and EX_SLOTS as compiled."""
    return np.array([H_DIM, H_SP_KB, H_ACC_KB, H_BUS, H_REQ, H_INFLIGHT, H_LAT, H_BPC]), EX_SLOTS


@njit(cache=True)
def _cdiv(a, b):
    return -(-a // b)


@njit(cache=True)
def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


@njit(cache=True)
def _mean_words(nbytes, g, base, word):
    """Mean number of `word`-byte words touched by a row of `nbytes` bytes starting at
    offset base + k*g (k = 0, 1, ...) modulo word."""
    if nbytes <= 0:
        return 0.0
    g = _gcd(g, word)
    b0 = base % g
    kk = word // g
    nb = nbytes + b0 - 1
    q, r = nb // word, nb % word
    extra = kk - _cdiv(word - r, g)
    return q + 1 + extra / kk


@njit(cache=True)
def compute_blocks(tn, tp, tq, stride, in_h, in_w):
    """`hw.blocks.compute_blocks`, compiled (Numba cannot see a change to another file's
    function through its cache, so this is a copy; tests/cost/test_model.py asserts that
    both agree): (count, run, reps, a_stride, a_stride1, a_step) of a weight block's
    COMPUTE_BLOCKs."""
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


@njit(cache=True)
def block_runs(tn, tp, tq, stride, in_h, in_w, drain):
    """(COMPUTE_BLOCKs, CONFIG EX, execute cycles of one weight block's COMPUTE_BLOCKs):
    the compiler's blocks (`compute_blocks`); one of L = run*reps rows costs
    max(L, 2, (drain + L) / 16) (two instructions each, at most EX_SLOTS in flight until
    their drain). The strides are set once per layer, so no CONFIG EX per block."""
    count, run, reps, _a, _a1, _step = compute_blocks(tn, tp, tq, stride, in_h, in_w)
    n = float(run * reps)
    return count, 0, count * max(n, 2.0, (drain + n) / EX_SLOTS)


@njit(cache=True)
def fences_per_sweep(v, sweeps=12, lag=1):
    """FENCEs per sweep over `v` output tiles that spill and reload partial sums in a
    cycle: the compiler fences a reload whose tile's spill was emitted after the last
    FENCE; a spill is emitted `lag` steps after the visit (1: double-buffered output,
    stored during the next step; 0: single-buffered, stored right after its own step),
    a reload in the step before, after that step's spill."""
    if v <= 1:
        return 0.0
    unfenced = np.zeros(v, dtype=np.bool_)
    fences = 0
    for s in range(sweeps):
        for j in range(v):
            k = s * v + j
            if k >= lag:
                unfenced[(k - lag) % v] = True
            if k + 1 >= v and unfenced[(k + 1) % v]:
                if s >= 2:
                    fences += 1
                unfenced[:] = False
    return fences / (sweeps - 2)


@njit(cache=True)
def _t_load(rows, beats, reqs, rate, lat, infl, par, done=False):
    """Cycles the load unit needs for a batch of rows (issue, bandwidth, rows and requests
    in flight); with `done`, until the last row has arrived (one more latency after the
    issue / bandwidth time; the in-flight terms hold their latencies already)."""
    if rows <= 0:
        return 0.0
    t = max(reqs, beats / rate) + (lat if done else 0.0)
    t = max(t, rows * (lat + par[P_ROW_OVH] + beats / rows / rate) / max(2.0, infl))
    t = max(t, reqs * (lat + par[P_REQ_OVH] + beats / max(reqs, 1e-9) / rate) / infl)
    return t


@njit(cache=True)
def _t_store(rows, beats, reqs, rate, lat, infl, par, done=False):
    """Cycles the store unit needs (rows, beats, write requests until acknowledged); with
    `done`, until the last write is acknowledged."""
    if rows <= 0:
        return 0.0
    t = max(rows, beats / rate) + (lat if done else 0.0)
    return max(t, reqs * (lat + par[P_ACK_OVH] + beats / max(reqs, 1e-9) / rate) / infl)


@njit(cache=True)
def _dma(rows_per_blk, tot, dd, g, base, elem, bus, req):
    """(rows, beats, requests) of a tile whose rows hold channel blocks of a `tot`-channel
    extent in blocks of dd (the last one the remainder), elem bytes per channel."""
    nf, rem = tot // dd, tot % dd
    beats = nf * rows_per_blk * _mean_words(dd * elem, g, base, bus)
    reqs = nf * rows_per_blk * _mean_words(dd * elem, g, base, req)
    if rem > 0:
        beats += rows_per_blk * _mean_words(rem * elem, g, base, bus)
        reqs += rows_per_blk * _mean_words(rem * elem, g, base, req)
    return float(rows_per_blk * _cdiv(tot, dd)), beats, reqs


@njit(cache=True)
def _step_time(E, E_rows, ex_insns, drain, lat, rate, o_rows, par,
               l_t, l_beats, l_items, l_need, l_psum, s_t, s_beats, s_items):
    """Time of a step from the loads it overlaps (of the next step) and the stores (of
    the previous one): see `cost.model`."""
    chan = (l_beats + s_beats) / rate
    disp = ex_insns + l_items + s_items
    core = max(E, l_t, s_t, chan, disp)
    n_items = l_items + s_items
    hazard = 0.0
    if n_items > 0:
        hazard = drain + E_rows * (1.0 - 1.0 / (2.0 * n_items))
    need = 0.0
    if l_items > 0:
        fetch = l_need + lat + par[P_NEED_EXTRA]
        need = 0.5 / l_items * E_rows + fetch
        if l_psum > 0 and s_items > 0:
            need = max(need, 0.5 * (drain + o_rows + fetch))
    return max(core, hazard, need) + par[P_STEP_OVH]


@njit(cache=True)
def _serial(t, lb, iss, dn, l_t, l_items, chan):
    """A step's time with the serial work of the single-buffered operands of the
    transition before it: at least `lb`, the chain from the previous step's last
    COMPUTE through the single-buffered stores and loads to this step's computes (see
    `evaluate_batch`), and the load unit's time for those serial loads (`iss`) and this
    step's overlapped ones (`l_t`), which are spread over its execute stream and so
    dispatch, but for the first, after the serial loads have arrived (`dn`); and at
    least `chan`, the DRAM channel's time for every beat of the step, overlapped and
    serial, reads and writes (one channel, `dram_bytes_per_cycle`)."""
    if lb > 0:
        t = max(t, lb, l_t + iss, chan)
        if l_items > 0:
            t = max(t, dn + l_t * (1.0 - 1.0 / l_items))
    return t


@njit(cache=True)
def evaluate_batch(lay, hwm, factors, order, bufs, par, out):
    """Evaluate every sample; row b of `out` gets the `OUT_COLUMNS` of sample b."""
    runs_memo = Dict.empty(key_type=_RUN_KEY, value_type=_RUN_VAL)
    fence_memo = Dict.empty(key_type=types.int64, value_type=types.float64)   # key: 2 * V + lag
    is_in = np.array([True, False, True, True, True, True, True])    # N C P Q R S
    is_w = np.array([False, True, True, False, False, True, True])    # K C R S
    is_o = np.array([True, True, False, True, True, False, False])    # N K P Q
    is_red = np.array([False, False, True, False, False, True, True])  # C R S
    dims = lay[0:7]
    G, st = lay[L_G], lay[L_STRIDE]
    Cg, Kg, Hp, Wp = lay[L_CG], lay[L_KG], lay[L_HP], lay[L_WP]
    e_out = lay[L_EOUT]
    Fpos = np.empty(8, dtype=np.int64)
    loop_at = np.empty(8, dtype=np.int64)
    cum = np.empty(8, dtype=np.int64)
    # per transition position: load / store work
    lt = np.empty(8)
    lb = np.empty(8)
    li = np.empty(8)
    ln = np.empty(8)
    lp = np.empty(8)
    s_t = np.empty(8)
    s_b = np.empty(8)
    s_i = np.empty(8)
    # per transition position: the single-buffered operands' serial work (see `_serial`)
    sl_lb = np.empty(8)
    sl_iss = np.empty(8)
    sl_dn = np.empty(8)
    sl_b = np.empty(8)
    F = np.empty(7, dtype=np.int64)
    T = np.empty(7, dtype=np.int64)
    seen = np.empty(7, dtype=np.bool_)
    for b in range(factors.shape[0]):
        h = hwm[b]
        d = h[H_DIM]
        bus, req = h[H_BUS], h[H_REQ]
        lat = float(h[H_LAT])
        infl = float(h[H_INFLIGHT])
        rate = min(1.0, h[H_BPC] / bus)
        sp_rows = h[H_SP_KB] * 1024 // d
        acc_rows = h[H_ACC_KB] * 1024 // (4 * d)
        row = out[b]
        row[:] = 0.0

        # ---- validity (hw.mapping.reason_codes: its rules, codes and precedence) ------
        b_in, b_w, b_out = bufs[b, 0], bufs[b, 1], bufs[b, 2]
        if (b_in != 1 and b_in != 2) or (b_w != 1 and b_w != 2) or (b_out != 1 and b_out != 2):
            row[0] = REASON_BUFFERS
            continue
        reason = 0
        seen[:] = False
        for i in range(7):
            o = order[b, i]
            if o < 0 or o > 6 or seen[o]:
                reason = REASON_ORDER if reason == 0 else reason
            else:
                seen[o] = True
        for lv in range(3):
            for i in range(7):
                if factors[b, lv, i] < 1:
                    reason = REASON_FACTOR      # a factor < 1 comes before a bad order
        if reason == REASON_FACTOR or reason == REASON_ORDER:
            row[0] = reason
            continue
        for i in range(7):
            F[i] = factors[b, 0, i]
            T[i] = factors[b, 1, i] * factors[b, 2, i]
            if F[i] * T[i] != dims[i] and reason == 0:
                reason = REASON_PRODUCT
        for i in range(7):
            if i != _C and i != _K and factors[b, 2, i] != 1 and reason == 0:
                reason = REASON_UNROLL
        if (factors[b, 2, _C] > d or factors[b, 2, _K] > d) and reason == 0:
            reason = REASON_ARRAY
        TN, TK, TC, TP, TQ, TR, TS = T[0], T[1], T[2], T[3], T[4], T[5], T[6]
        cbn, kbn = _cdiv(TC, d), _cdiv(TK, d)
        in_h, in_w = (TP - 1) * st + TR, (TQ - 1) * st + TS
        pix_in = TN * in_h * in_w
        M = TN * TP * TQ
        in_rows = pix_in * cbn
        w_rows = TR * TS * kbn * TC
        o_rows = M * kbn
        if b_in * in_rows + b_w * w_rows > sp_rows and reason == 0:   # hw.mapping.rows_needed
            reason = REASON_SPAD
        if b_out * o_rows > acc_rows and reason == 0:
            reason = REASON_ACC
        if reason != 0:
            row[0] = reason
            continue

        # ---- tile loads, stores and steps (exact) -------------------------------------
        Fpos[0] = G
        loop_at[0] = -1
        for i in range(7):
            loop_at[i + 1] = order[b, i]
            Fpos[i + 1] = F[order[b, i]]
        c = 1
        for i in range(8):
            c *= Fpos[i]
            cum[i] = c
        steps = cum[7]
        LI = LW = LO = -1
        for i in range(8):
            if Fpos[i] > 1:
                lp_ = loop_at[i]
                if lp_ < 0 or is_in[lp_]:
                    LI = i
                if lp_ < 0 or is_w[lp_]:
                    LW = i
                if lp_ < 0 or is_o[lp_]:
                    LO = i
        n_in = cum[LI] if LI >= 0 else 1
        n_w = cum[LW] if LW >= 0 else 1
        visits = cum[LO] if LO >= 0 else 1
        distinct = G * F[_N] * F[_K] * F[_P] * F[_Q]
        spills = visits - distinct
        fences = 0.0
        if spills > 0:
            rstar = -1
            for i in range(8):
                if loop_at[i] >= 0 and is_red[loop_at[i]] and Fpos[i] > 1 and i < LO:
                    rstar = i
            V = 1
            for i in range(rstar + 1, 8):
                if loop_at[i] >= 0 and is_o[loop_at[i]]:
                    V *= Fpos[i]
            if V > 1:
                lag = 1 if b_out == 2 else 0
                phi = fence_memo.get(2 * V + lag, -1.0)
                if phi < 0:
                    phi = fences_per_sweep(V, 12, lag)
                    fence_memo[2 * V + lag] = phi
                fences = np.round(spills * phi / V)

        in_bytes = pix_in * TC
        w_bytes = TR * TS * TC * TK
        o_elems = M * TK
        nblk = kbn * TR * TS * cbn
        a_rows_step = nblk * M
        row[6] = lay[L_MACS]
        row[7] = n_in * in_bytes + n_w * w_bytes + spills * o_elems * 4
        row[8] = distinct * o_elems * e_out + spills * o_elems * 4
        row[9] = n_in * in_rows + n_w * w_rows
        row[10] = steps * (a_rows_step + w_rows)
        row[11] = steps * a_rows_step + spills * o_rows
        row[12] = steps * a_rows_step - distinct * kbn * M + visits * o_rows
        row[13] = steps * w_rows

        # ---- DMA geometry per tile ----------------------------------------------------
        in_size = lay[L_BATCH] * Hp * Wp * lay[L_CTOT]
        w_addr = _cdiv(in_size, bus) * bus
        w_size = G * lay[L_RTOT] * lay[L_STOT] * Cg * Kg
        o_addr = _cdiv(w_addr + w_size, bus) * bus
        ps_addr = _cdiv(o_addr + lay[L_BATCH] * lay[L_PTOT] * lay[L_QTOT] * lay[L_KTOT] * e_out, bus) * bus
        gi = lay[L_CTOT]
        if G > 1:
            gi = _gcd(gi, Cg)
        if F[_C] > 1:
            gi = _gcd(gi, TC)
        if cbn > 1:
            gi = _gcd(gi, d)
        in_r, in_b, in_q = _dma(pix_in, TC, d, gi, 0, 1, bus, req)
        gw = Kg
        if G > 1:
            gw = _gcd(gw, lay[L_RTOT] * lay[L_STOT] * Cg * Kg)
        if F[_K] > 1:
            gw = _gcd(gw, TK)
        if kbn > 1:
            gw = _gcd(gw, d)
        w_r, w_b, w_q = _dma(TR * TS * TC, TK, d, gw, w_addr, 1, bus, req)
        go4 = lay[L_KTOT] * 4
        goe = lay[L_KTOT] * e_out
        if G > 1:
            go4 = _gcd(go4, Kg * 4)
            goe = _gcd(goe, Kg * e_out)
        if F[_K] > 1:
            go4 = _gcd(go4, TK * 4)
            goe = _gcd(goe, TK * e_out)
        if kbn > 1:
            go4 = _gcd(go4, d * 4)
            goe = _gcd(goe, d * e_out)
        o_r, o_b, o_q = _dma(M, TK, d, goe, o_addr, e_out, bus, req)
        p_r, p_b, p_q = _dma(M, TK, d, go4, ps_addr, 4, bus, req)

        # instructions per tile (MVIN / MVOUT of <= dim consecutive rows)
        if in_w < Wp:
            seg_in = in_w
        elif in_h < Hp:
            seg_in = in_h * in_w
        else:
            seg_in = pix_in
        mv_in = cbn * (pix_in // seg_in) * _cdiv(seg_in, d)
        if kbn > 1 or TC < Cg:
            seg_w = TC
        elif TS < lay[L_STOT]:
            seg_w = TS * TC
        else:
            seg_w = TR * TS * TC
        mv_w = kbn * ((TR * TS * TC) // seg_w) * _cdiv(seg_w, d)
        if TQ < lay[L_QTOT]:
            seg_o = TQ
        elif TP < lay[L_PTOT]:
            seg_o = TP * TQ
        else:
            seg_o = M
        mv_o = kbn * (M // seg_o) * _cdiv(seg_o, d)
        k1 = min(seg_w, d) / max(w_r, 1.0)
        w_r1, w_b1, w_q1 = w_r * k1, w_b * k1, w_q * k1
        k1 = min(seg_in, d) / max(in_r, 1.0)
        in_r1, in_b1, in_q1 = in_r * k1, in_b * k1, in_q * k1
        k1 = min(seg_o, d) / max(p_r, 1.0)
        p_r1, p_b1, p_q1 = p_r * k1, p_b * k1, p_q * k1

        # ---- execute time per step ----------------------------------------------------
        drain = 2.0 * d + par[P_DRAIN_EXTRA]
        key = (TN, TP, TQ, in_h, in_w, d, int(drain))
        if key in runs_memo:
            U, X, run_cycles = runs_memo[key]
        else:
            u_, x_, rc_ = block_runs(TN, TP, TQ, st, in_h, in_w, drain)
            U, X, run_cycles = float(u_), float(x_), rc_
            runs_memo[key] = (U, X, run_cycles)
        blk_time = max(run_cycles, d + par[P_PRELOAD_GAP])
        E = nblk * blk_time
        E_rows = nblk * run_cycles
        ex_insns = nblk * (2 * U + X)
        # Serial (single-buffered) work, times from a step's first COMPUTE: e_x, when its
        # last COMPUTE has streamed (the first block's PRELOAD ran before); disp_t, when
        # its execute stream has been dispatched (EX_SLOTS instructions in flight, each
        # until its drain); u_in_first, when the first input rows are last read (the
        # last kb's first blocks); f_in_last / f_ps_last, when the next step first reads
        # the last input / partial-sum rows; -w_tail, when it PRELOADs the last weights.
        e_x = E - blk_time + run_cycles
        disp_t = max(0.0, e_x - max(0.0, EX_SLOTS * E / max(ex_insns, 1.0) - drain))
        r_avg = run_cycles / max(U, 1.0)
        bpk = TR * TS * cbn
        u_in_first = ((kbn - 1) * bpk + (min(TR, TP) - 1) * TS * cbn + (min(TS, TQ) - 1) * cbn) * blk_time + r_avg
        f_in_last = (bpk - 1) * blk_time + run_cycles - r_avg
        f_ps_last = (kbn - 1) * bpk * blk_time + run_cycles - r_avg
        w_tail = -(nblk - 1) * blk_time
        # input rows up to the last one in the first COMPUTE_BLOCK's read range (the
        # scoreboard holds it until all are loaded; in whole MVINs)
        _cnt, b_run, b_reps, b_a, b_a1, _stp = compute_blocks(TN, TP, TQ, st, in_h, in_w)
        a_end = (b_run - 1) * b_a + (b_reps - 1) * b_a1 + 1
        k1 = min(in_r, max(in_r1, _cdiv(a_end, max(int(in_r1), 1)) * in_r1)) / max(in_r, 1.0)
        in_n1, in_nb, in_nq = in_r * k1, in_b * k1, in_q * k1

        # ---- loads and stores of a transition at each position -----------------------
        # A double-buffered operand's loads (stores) at a transition overlap the step
        # before (after) it; a single-buffered one's are serial work of the next step.
        red_before = 1.0
        for i in range(8):
            lpi = loop_at[i]
            red = lpi >= 0 and is_red[lpi]
            ldi = 1.0 if i <= LI else 0.0
            ldw = 1.0 if i <= LW else 0.0
            cho = 1.0 if i <= LO else 0.0
            if red:
                rev, comp = cho, 0.0
            else:
                rev, comp = (1.0 - 1.0 / red_before) * cho, cho / red_before
            if red and Fpos[i] > 1:
                red_before *= Fpos[i]
            spl_ = cho - comp
            # serial: (single-buffered output) the previous tile's stores and the
            # partial-sum reload, then the loads of single-buffered inputs / weights
            sdi = ldi if b_in == 1 else 0.0
            sdw = ldw if b_w == 1 else 0.0
            sdo = cho if b_out == 1 else 0.0
            sl_lb[i] = 0.0
            sl_iss[i] = 0.0
            sl_dn[i] = 0.0
            # beats of the serial work: a single-buffered output's stores and reload,
            # single-buffered inputs' and weights' loads
            sl_b[i] = sdi * in_b + sdw * w_b
            if b_out == 1:
                sl_b[i] += comp * o_b + spl_ * p_b + rev * p_b
            if sdo + sdi + sdw > 0:
                rv = rev * sdo
                r0 = 0.0
                # times from the start of the previous step's first COMPUTE
                if sdo > 0:
                    # MVOUTs wait for the last COMPUTE; the last ones dispatch once all
                    # but EX_SLOTS have completed; the serial loads follow them, in order
                    n_st = mv_o
                    r0 = e_x + drain + p_r1 + _t_store(comp * o_r + spl_ * p_r, comp * o_b + spl_ * p_b,
                                                       comp * o_q + spl_ * p_q, rate, lat, infl, par) \
                        * max(0.0, 1.0 - EX_SLOTS / n_st)
                    tot_r = rv * p_r + sdi * in_r + sdw * w_r
                    tot_b = rv * p_b + sdi * in_b + sdw * w_b
                    tot_q = rv * p_q + sdi * in_q + sdw * w_q
                    if sdw > 0:
                        nr, nb, nq = rv * p_r + sdi * in_r + w_r1, rv * p_b + sdi * in_b + w_b1, \
                            rv * p_q + sdi * in_q + w_q1
                        f_last = -w_tail
                    elif sdi > 0:
                        nr, nb, nq = rv * p_r + in_n1, rv * p_b + in_nb, rv * p_q + in_nq
                        f_last = f_in_last
                    else:
                        nr, nb, nq = rv * p_r1, rv * p_b1, rv * p_q1
                        f_last = f_ps_last
                    lb_ = r0 + par[P_NEED_EXTRA]
                    if tot_r > 0:
                        lb_ = max(r0 + _t_load(nr, nb, nq, rate, lat, infl, par, True),
                                  r0 + _t_load(tot_r, tot_b, tot_q, rate, lat, infl, par, True) - f_last) \
                            + par[P_NEED_EXTRA]
                        sl_iss[i] = _t_load(tot_r, tot_b, tot_q, rate, lat, infl, par)
                    # the next step's first COMPUTEs overwrite the first K block's rows
                    # (K blocks outermost in a step): they wait until the MVOUTs of that
                    # block, 1/kbn of the tile, have completed
                    lb_ = max(lb_, e_x + drain + _t_store((comp * o_r + spl_ * p_r) / kbn,
                                                          (comp * o_b + spl_ * p_b) / kbn,
                                                          (comp * o_q + spl_ * p_q) / kbn,
                                                          rate, lat, infl, par, True) + par[P_NEED_EXTRA])
                    sl_lb[i] = lb_
                else:
                    lb_ = 0.0
                    w_rel = disp_t
                    if sdi > 0:
                        # each input MVIN waits for the last COMPUTE that read its rows
                        rel = max(disp_t, u_in_first + drain)
                        i_all = _t_load(in_r, in_b, in_q, rate, lat, infl, par)
                        i_one = _t_load(in_r1, in_b1, in_q1, rate, lat, infl, par)
                        lb_ = max(e_x + drain + 1.0,
                                  rel + _t_load(in_n1, in_nb, in_nq, rate, lat, infl, par, True) + par[P_NEED_EXTRA],
                                  max(rel + i_all, e_x + drain + i_one) + lat - f_in_last + par[P_NEED_EXTRA])
                        w_rel = max(e_x + drain, rel + i_all, e_x + drain + i_one)
                        sl_iss[i] = i_all
                    if sdw > 0:
                        lb_ = max(lb_, w_rel + _t_load(w_r1, w_b1, w_q1, rate, lat, infl, par, True) + par[P_NEED_EXTRA],
                                  w_rel + _t_load(w_r, w_b, w_q, rate, lat, infl, par, True) + w_tail
                                  + par[P_NEED_EXTRA])
                        sl_iss[i] += _t_load(w_r, w_b, w_q, rate, lat, infl, par)
                    sl_lb[i] = lb_
                # the next step's serial loads dispatch after this step's execute stream,
                # whose last consumer of this step's serial loads waits for them
                tot_r = rv * p_r + sdi * in_r + sdw * w_r
                if tot_r > 0:
                    sl_dn[i] = _t_load(tot_r, rv * p_b + sdi * in_b + sdw * w_b, rv * p_q + sdi * in_q + sdw * w_q,
                                       rate, lat, infl, par, True) + par[P_NEED_EXTRA]
                    # with more serial MVINs than load slots, the next step's execute
                    # stream dispatches once all but the last EX_SLOTS have completed
                    n_mv = rv * mv_o + sdi * mv_in + sdw * mv_w
                    st0 = r0 if sdo > 0 else disp_t
                    sl_lb[i] = max(sl_lb[i], sl_dn[i], st0 + sl_dn[i] * max(0.0, 1.0 - EX_SLOTS / n_mv))
                    if sdw > 0:
                        # the last block's weights are reloaded once its PRELOAD is done
                        sl_lb[i] = max(sl_lb[i], d + par[P_PRELOAD_GAP] + par[P_NEED_EXTRA]
                                       + _t_load(w_r / nblk, w_b / nblk, w_q / nblk, rate, lat, infl, par, True))
            if b_out == 1:
                rev, comp, cho = 0.0, 0.0, 0.0
            ldi -= sdi
            ldw -= sdw
            lt[i] = _t_load(rev * p_r + ldi * in_r + ldw * w_r, rev * p_b + ldi * in_b + ldw * w_b,
                            rev * p_q + ldi * in_q + ldw * w_q, rate, lat, infl, par)
            lb[i] = rev * p_b + ldi * in_b + ldw * w_b
            li[i] = rev * mv_o + ldi * mv_in + ldw * mv_w
            lp[i] = rev
            # rows up to the load item the next step's first COMPUTE waits for
            if ldw > 0:
                nr = rev * p_r + ldi * in_r + w_r1
                nb = rev * p_b + ldi * in_b + w_b1
                nq = rev * p_q + ldi * in_q + w_q1
            elif ldi > 0:
                nr, nb, nq = rev * p_r + in_r1, rev * p_b + in_b1, rev * p_q + in_q1
            else:
                nr, nb, nq = rev * p_r1, rev * p_b1, rev * p_q1
            ln[i] = _t_load(nr, nb, nq, rate, lat, infl, par)
            spl = cho - comp
            s_t[i] = _t_store(comp * o_r + spl * p_r, comp * o_b + spl * p_b, comp * o_q + spl * p_q,
                              rate, lat, infl, par)
            s_b[i] = comp * o_b + spl * p_b
            s_i[i] = cho * mv_o

        # ---- steps by pairs of transitions ---------------------------------------------
        zpos = -1
        for i in range(8):
            if Fpos[i] > 1:
                zpos = i
        mid = 0.0
        t_first = 0.0
        t_last = 0.0
        if zpos >= 0:
            n_z = 0
            n_nz = 0
            prev = 1
            for i in range(8):
                ntr = (Fpos[i] - 1) * prev if Fpos[i] > 1 else 0
                prev = cum[i]
                if i == zpos:
                    n_z = ntr
                    continue
                n_nz += ntr
                if ntr > 0:
                    # (z -> i): loads of transition i, stores of z; (i -> z): the reverse
                    t_zb = _serial(_step_time(E, E_rows, ex_insns, drain, lat, rate, o_rows, par, lt[i], lb[i],
                                              li[i], ln[i], lp[i], s_t[zpos], s_b[zpos], s_i[zpos]),
                                   sl_lb[zpos], sl_iss[zpos], sl_dn[zpos], lt[i], li[i],
                                   (lb[i] + s_b[zpos] + sl_b[zpos]) / rate)
                    t_az = _serial(_step_time(E, E_rows, ex_insns, drain, lat, rate, o_rows, par, lt[zpos],
                                              lb[zpos], li[zpos], ln[zpos], lp[zpos], s_t[i], s_b[i], s_i[i]),
                                   sl_lb[i], sl_iss[i], sl_dn[i], lt[zpos], li[zpos],
                                   (lb[zpos] + s_b[i] + sl_b[i]) / rate)
                    mid += ntr * (t_zb + t_az)
            c_zz = max(n_z - 1 - n_nz, 0)
            z = zpos
            mid += c_zz * _serial(_step_time(E, E_rows, ex_insns, drain, lat, rate, o_rows, par,
                                             lt[z], lb[z], li[z], ln[z], lp[z], s_t[z], s_b[z], s_i[z]),
                                  sl_lb[z], sl_iss[z], sl_dn[z], lt[z], li[z], (lb[z] + s_b[z] + sl_b[z]) / rate)
            t_first = _step_time(E, E_rows, ex_insns, drain, lat, rate, o_rows, par,
                                 lt[z], lb[z], li[z], ln[z], lp[z], 0.0, 0.0, 0.0)
            t_last = _serial(_step_time(E, E_rows, ex_insns, drain, lat, rate, o_rows, par,
                                        0.0, 0.0, 0.0, 0.0, 0.0, s_t[z], s_b[z], s_i[z]),
                             sl_lb[z], sl_iss[z], sl_dn[z], 0.0, 0.0, (s_b[z] + sl_b[z]) / rate)
        else:
            t_first = _step_time(E, E_rows, ex_insns, drain, lat, rate, o_rows, par,
                                 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        t_pro = _t_load(in_r + w_r, in_b + w_b, in_q + w_q, rate, lat, infl, par, True) + par[P_PRO_EXTRA]
        t_epi = drain + _t_store(o_r, o_b, o_q, rate, lat, infl, par, True) + par[P_EPI_EXTRA]
        t_fence = fences * (lat + drain + par[P_FENCE_EXTRA])
        cycles = t_pro + t_first + mid + t_last + t_epi + t_fence
        # never under the DRAM channel's time for every beat of the layer (one channel
        # for reads and writes): a bound the step sums keep, here for the edge cases
        cycles = max(cycles, (n_in * in_b + n_w * w_b + spills * p_b + distinct * o_b + spills * p_b) / rate)

        row[1] = cycles
        row[2] = min(cycles, n_in * _t_load(in_r, in_b, in_q, rate, lat, infl, par)
                     + n_w * _t_load(w_r, w_b, w_q, rate, lat, infl, par)
                     + spills * _t_load(p_r, p_b, p_q, rate, lat, infl, par) + lat)
        row[3] = min(cycles, steps * E + drain)
        row[4] = min(cycles, distinct * _t_store(o_r, o_b, o_q, rate, lat, infl, par)
                     + spills * _t_store(p_r, p_b, p_q, rate, lat, infl, par) + lat)
        row[5] = (steps * ex_insns + n_in * mv_in + n_w * mv_w + spills * mv_o + visits * mv_o
                  + 5 + (1 if spills > 0 else 0) + fences)
        row[14] = t_pro
        row[15] = t_first + mid + t_last
        row[16] = t_epi
        row[17] = t_fence
        row[18] = fences
        row[19] = steps
