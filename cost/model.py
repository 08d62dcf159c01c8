"""Analytical latency and access-count model of the RTL, vectorised over a batch.

``evaluate_arrays(layer, hw, factors, order)`` evaluates B (hardware, mapping) pairs for
one layer: the per-sample arithmetic is `cost.kernel`, compiled with Numba, so a batch
runs at over a million evaluations per second per core (scripts/bench_cost.py) and one
evaluation (`cost.evaluate`) runs the same code. Inputs (a contract shared with
`search.space`):

    hw        dict HardwareConfig field -> int array (B,) or scalar (missing = default)
    factors   int array (B, 3, 7): [level in ("dram", "spad", "array"), loop in LOOPS]
    order     int array (B, 7): order[b, i] = index in LOOPS of the i-th DRAM-level loop,
              outermost first
    buffers   int array (B, 3) or (3,): the input, weight and output tiles' buffer
              counts (1 or 2, `hw.mapping.Mapping.buffers`); None: all double-buffered

It returns a dict of arrays (B,): ``feasible`` (bool), ``reason`` (int code, see
`hw.mapping.REASONS`), ``cycles`` (float), the counters of `hw.result.COUNT_KEYS`, ``busy_load``,
``busy_exec``, ``busy_store``, ``instructions``, ``energy_pj``, ``area_mm2``, ``edp``
and ``utilisation`` (NaN / 0 where infeasible), and the latency's parts:
``t_prologue``, ``t_steps``, ``t_epilogue``, ``t_fences``, ``fences``, ``steps``.

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
  of the tile) the A rows streamed by its COMPUTE_BLOCKs (`hw.blocks`: one per block, or
  one per image when the pixel pattern needs it), where a COMPUTE_BLOCK of n rows costs
  max(n, 2) cycles (a PRELOAD(b_none) pops in between), and at least ``dim +
  preload_gap`` cycles because the weight loader writes one row per cycle into the
  shadow buffer; COMPUTE_BLOCKs also hold an execute scoreboard slot from dispatch to
  write-back (2 dim + a few cycles), 16 slots;
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

Single-buffered operands (`Mapping.buffers`) lose that overlap. The compiler puts a
single-buffered tile's next loads (and a single-buffered output's stores and partial-sum
reload) after the execute stream of the step that uses its one buffer, and the frontend
holds each of them at dispatch until the instructions whose rows it overlaps are done.
These serial chains overlap each other and the overlapped work, so a step after a
transition with serial work takes the longest of its overlapped time and these lower
bounds (times from the previous step's first COMPUTE, not sums of serial parts):

* output stored: its MVOUTs wait for the last COMPUTE to drain (and, beyond EX_SLOTS of
  them, for store slots), then the serial loads follow in order (partial sums, input,
  weights): the step's first COMPUTE waits for the rows it reads, and the COMPUTE that
  first reads the last-loaded rows waits for those;
* input loaded (output not stored): each MVIN waits for the last COMPUTE that read its
  rows (the first rows: the last output-channel block's first weight blocks), the next
  step's COMPUTEs dispatch after the last of them (one drain after the step), and its
  first COMPUTE_BLOCK waits for every row of its read range (the scoreboard keeps one
  range per instruction, from its lowest to its highest A row);
* weights loaded: each MVIN waits for the PRELOAD that read its rows, so the last block's
  rows come back one weight-loader period plus a load after the previous ones;
* in order: the next step's serial loads dispatch after this step's execute stream, which
  holds the consumers of this step's serial loads, so a step is at least the serial loads'
  time to arrival; with more serial MVINs than load slots, the execute stream dispatches
  only once all but EX_SLOTS have completed; the double-buffered operands' loads, spread
  over the execute stream, dispatch after the serial data has arrived, and the load unit
  runs both.

A FENCE (the compiler puts one before reloading partial sums whose spill may still be
in flight) drains the whole machine: each costs a drain plus a DRAM latency. The
number of FENCEs follows from the cycle of output tiles between spills and reloads.

Calibration: the constants in `TimingParams` were set against RTL runs of a calibration
corpus separate from the validation triples (see scripts/validate_cost.py and
BENCHMARKS.md); they are small per-event cycle counts, not fitted scale factors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from hw.config import HW_FIELDS, HardwareConfig
from hw.layer import LOOPS, Layer
from hw.mapping import DEFAULT_BUFFERS, REASONS

from . import kernel
from .energy import DEFAULT_TABLE, EnergyTable, area_mm2, energy_pj

__all__ = ["HW_FIELDS", "REASONS", "TimingParams", "evaluate_arrays", "hw_arrays", "layer_constants", "warm_up"]

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
# inputs
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


def layer_constants(layer: Layer, out: str = "int32") -> np.ndarray:
    """The layer as the kernel's int64 vector (`cost.kernel` L_* indices)."""
    L = layer
    lay = np.zeros(kernel.N_LAY, dtype=np.int64)
    lay[0:7] = [L.dims[lp] for lp in LOOPS]
    lay[kernel.L_G], lay[kernel.L_STRIDE] = L.groups, L.stride
    lay[kernel.L_CG], lay[kernel.L_KG] = L.c_per_group, L.k_per_group
    lay[kernel.L_HP], lay[kernel.L_WP] = L.h + 2 * L.padding, L.w + 2 * L.padding
    lay[kernel.L_BATCH], lay[kernel.L_CTOT], lay[kernel.L_KTOT] = L.n, L.c, L.k
    lay[kernel.L_PTOT], lay[kernel.L_QTOT], lay[kernel.L_RTOT], lay[kernel.L_STOT] = L.p, L.q, L.r, L.s
    lay[kernel.L_EOUT] = 4 if out == "int32" else 1
    lay[kernel.L_MACS] = L.macs
    return lay


_COUNT_COLUMNS = ("macs", "dram_bytes_read", "dram_bytes_written", "sp_writes", "sp_reads",
                  "acc_writes", "acc_reads", "weight_loads")


# ---------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------

def evaluate_arrays(layer: Layer, hw, factors, order, buffers=None, *, out: str = "int32",
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
    hwm = np.ascontiguousarray(np.stack([H[f] for f in HW_FIELDS], axis=1))
    par = np.array([getattr(params, f.name) for f in dataclasses.fields(TimingParams)], dtype=np.float64)
    res_m = np.empty((B, len(kernel.OUT_COLUMNS)))
    bufs = np.ascontiguousarray(np.broadcast_to(
        np.asarray(DEFAULT_BUFFERS if buffers is None else buffers, dtype=np.int64), (B, 3)))
    kernel.evaluate_batch(layer_constants(layer, out), hwm, np.ascontiguousarray(factors),
                          np.ascontiguousarray(order), bufs, par, res_m)
    col = {name: res_m[:, i] for i, name in enumerate(kernel.OUT_COLUMNS)}
    reason = col["reason"].astype(np.int64)
    ok = reason == 0
    res = {"feasible": ok, "reason": reason}
    cycles = np.where(ok, col["cycles"], np.nan)
    res["cycles"] = cycles
    for k in ("busy_load", "busy_exec", "busy_store", "t_prologue", "t_steps", "t_epilogue", "t_fences",
              "fences", "steps"):
        res[k] = col[k]
    res["instructions"] = col["instructions"].astype(np.int64)
    counts = {k: col[k].astype(np.int64) for k in _COUNT_COLUMNS}
    res.update(counts)
    d, sp_kb, acc_kb = H["dim"], H["sp_kb"], H["acc_kb"]
    res["energy_pj"] = np.where(ok, energy_pj(counts, d, sp_kb, acc_kb, table), np.nan)
    res["area_mm2"] = np.asarray(np.broadcast_to(area_mm2(d, sp_kb, acc_kb, table), (B,)), dtype=float)
    res["edp"] = res["energy_pj"] * cycles
    res["utilisation"] = layer.macs / (d * d * cycles)
    return res


def warm_up() -> None:
    """Load (or compile) the Numba kernel now, e.g. before a progress bar starts: the first
    evaluation of a process otherwise pays for it (about 0.5 s from the on-disk cache)."""
    layer = Layer.gemm("warm_up", m=4, k=4, n=4)
    factors = np.array([[[1] * 7, [1, 1, 1, 4, 1, 1, 1], [1, 4, 4, 1, 1, 1, 1]]])
    evaluate_arrays(layer, HardwareConfig(dim=4), factors, np.arange(7)[None])
