"""The analytical oracle: an exhaustive co-design search with the analytical model, then the
best designs measured with the evaluator (issue 16; an upper-reference baseline: what a
free, large search with the cheap model buys at the RTL's sample budget).

Ranking (analytical, `rank_designs`)
------------------------------------
For layer l a fixed unit-cube draw U_l of ``sw_samples`` points (scrambled Sobol, 11
dimensions, seeded by (seed, 2, l); `unit_draw`). On a design with array size d the
layer's candidates are the distinct constrained mappings M_{l,d} =
`SoftwareSpace.from_unit_arrays`(U_l) (the constrained space depends on the design only
through d). For every allowed design z = (d, sp_kb, acc_kb) (the 4,096 of
`search.space.HardwareSpace` within ``area_budget_mm2``) and every layer:

    b_l(z) = argmin over m in M_{l,d} fitting z of  E(z, m) x C(z, m)      (first of equals)
    EDP(z) = (sum_l n_l E(z, b_l(z))) x (sum_l n_l C(z, b_l(z)))            (inf if a layer has none)

with E, C the analytical energy (pJ) and cycles of one occurrence of the layer
(`cost.evaluate_arrays`), n_l the layer's count. Designs are ranked by EDP(z) (ties: the
lower index of the space).

Exact shortcut: in the analytical model a mapping's counters and cycles do not depend
on the memory sizes once it fits (sp_kb and acc_kb enter only the fit test and the
per-access energies, `cost.energy.energy_breakdown`). So each (d, layer) draw is
evaluated ONCE, on the d-design with the largest memories, and for all memory sizes at
once: fit(z, m) = rows_needed(m) <= (sp_rows(z), acc_rows(z)) (`hw.mapping.rows_needed`)
and E(z, m) = `cost.energy.energy_pj`(counters(m), d, sp_kb, acc_kb) as a (mappings x
designs) array. The measured designs' candidates are re-evaluated directly on the
design itself, and a mismatch (the assumption broken by a model change) is a
RuntimeError. Measured (2026-12, one core, 2 other cores busy): ResNet-50's 24 unique
layers, all 4,096 designs, sw_samples 4,096 (327k distinct fitting candidates evaluated):
ranking 11 s, the 16 measured designs' direct re-evaluation 7 s, 18 s in all; no first
pass with fewer samples is needed.

Measurement (the evaluator, e.g. the RTL)
-----------------------------------------
The ``designs`` best-ranked designs, in rank order (iteration h = rank), each with
``per_design`` samples: sample j takes each layer's (j+1)-th best mapping of M_{l,d}
fitting the design by analytical EDP (a layer with fewer reuses its last one, which the
store does not evaluate again). designs x per_design <= ``sample_budget``.

Default 16 designs x 3 mappings = 48 samples: the analytical model prices energy
exactly but misses part of the RTL's cycles, so it is wrong in two ways, in the order of
mappings on a design and in the order of designs; 3 mappings per layer let the RTL pick
among the model's near-ties (the design's objective is the exact best combination of
them, as for every method), and 16 designs hedge the design ranking, whose neighbours
(memory sizes one step apart) mostly share their best mappings, so 48 designs x 1
mapping would spend samples on near-duplicates.

Each design's objective: `polaris.product_of_sums_check` "min_edp" over its measured
samples (`vanilla_bo.design_point`). Deterministic given the options.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, fields

import numpy as np

from hw.layer import Layer
from hw.mapping import footprint_rows, rows_needed

from ..options import check_area_budget, check_bool, check_int
from ..software import UNIT_DIMS, MappingBatch, SoftwareSpace
from ..space import HardwareSpace
from .vanilla_bo import (BaselineResult, allowed_designs, best_of, design_point,
                         evaluate_sample, make_sample, record_point)

__all__ = ["OracleOptions", "Ranking", "run_oracle", "rank_designs", "unit_draw", "layer_candidates"]


@dataclass(frozen=True)
class OracleOptions:
    """Defaults: 4,096 mappings per layer draw; 16 designs x 3 mappings = 48 samples."""

    sw_samples: int = 4096
    designs: int = 16
    per_design: int = 3
    sample_budget: int = 48
    area_budget_mm2: float | None = None
    buffering: bool = True
    seed: int = 0

    def __post_init__(self):
        check_int("sw_samples", self.sw_samples, 1, 1 << 18)
        check_int("designs", self.designs, 1, 4096)
        check_int("per_design", self.per_design, 1, 1024)
        check_int("sample_budget", self.sample_budget, 1, 1 << 20)
        check_int("seed", self.seed, 0, 2**32 - 1)
        if self.designs * self.per_design > self.sample_budget:
            raise ValueError(f"designs x per-design must be at most sample-budget {self.sample_budget}; "
                             f"got {self.designs} x {self.per_design} = {self.designs * self.per_design}")
        check_area_budget(self.area_budget_mm2)
        check_bool("buffering", self.buffering)

    def to_dict(self) -> dict:
        return {"method": "oracle", **{f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True)
class Ranking:
    """`rank_designs`' answer: per design (index into ``hws``) the network EDP and, per
    layer, the analytical energy and cycles of its best mapping and that mapping's row in
    `layer_candidates` (-1: none fits); ``order``: the design indices ranked."""

    hws: tuple
    network_edp: np.ndarray       # (H,)
    energy: np.ndarray            # (H, L)
    cycles: np.ndarray            # (H, L)
    choice: np.ndarray            # (H, L) int
    order: np.ndarray             # (H_allowed,) indices ranked by network_edp, then index
    seconds: float
    evaluated: int                # mapping evaluations by the analytical kernel


def unit_draw(n: int, seed: int, li: int) -> np.ndarray:
    """Layer li's fixed unit points (n, 11): scrambled Sobol seeded by (seed, 2, li)."""
    from scipy.stats import qmc

    from .vanilla_bo import sub_seed

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The balance properties", category=UserWarning)
        return qmc.Sobol(d=UNIT_DIMS, scramble=True, seed=sub_seed(seed, 2, li)).random(n)


def layer_candidates(hw, layer: Layer, units: np.ndarray, buffering: bool = True) -> MappingBatch:
    """The distinct constrained mappings the unit points pick on ``hw`` (first
    occurrences, in draw order; fitting or not)."""
    b = SoftwareSpace(hw, layer, buffering).from_unit_arrays(units)
    _, first = np.unique(b.keys(), axis=0, return_index=True)
    return b.take(np.sort(first))


def rank_designs(layers, hws, *, sw_samples: int = 4096, seed: int = 0, buffering: bool = True,
                 allowed=None) -> Ranking:
    """Rank the designs ``hws`` (a list of HardwareConfigs sharing every field but dim,
    sp_kb, acc_kb) by the analytical network EDP of each layer's best candidate (module
    docstring); ``allowed``: bool mask of those to rank (default all)."""
    import dataclasses

    import cost
    from cost.energy import energy_pj
    from hw.result import COUNT_KEYS

    t0 = time.perf_counter()
    layers, hws = list(layers), list(hws)
    H, L = len(hws), len(layers)
    allowed = np.ones(H, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    E = np.full((H, L), np.nan)
    C = np.full((H, L), np.nan)
    choice = np.full((H, L), -1, dtype=np.int64)
    dims = np.array([h.dim for h in hws])
    sp_kb = np.array([h.sp_kb for h in hws])
    acc_kb = np.array([h.acc_kb for h in hws])
    sp_rows = np.array([h.sp_rows for h in hws])
    acc_rows = np.array([h.acc_rows for h in hws])
    evaluated = 0
    units = [unit_draw(sw_samples, seed, li) for li in range(L)]
    for d in sorted(set(dims[allowed].tolist())):
        idx = np.flatnonzero(allowed & (dims == d))
        ref = hws[idx[0]]
        big = dataclasses.replace(ref, sp_kb=int(sp_kb.max()), acc_kb=int(acc_kb.max()))
        for li, layer in enumerate(layers):
            b = layer_candidates(ref, layer, units[li], buffering)
            tile = b.factors[:, 1, :] * b.factors[:, 2, :]
            need_sp, need_acc = rows_needed(*footprint_rows(d, layer.stride, *tile.T), *b.buffers.T)
            fits = (need_sp[:, None] <= sp_rows[idx][None, :]) & (need_acc[:, None] <= acc_rows[idx][None, :])
            keep = np.flatnonzero(fits.any(axis=1))
            if not len(keep):
                continue
            a = cost.evaluate_arrays(layer, big, b.factors[keep], b.order[keep], b.buffers[keep])
            evaluated += len(keep)
            ok = a["feasible"]
            counts = {k: np.where(ok, a[k], 0)[:, None] for k in COUNT_KEYS if k in a}
            e = energy_pj(counts, float(d), sp_kb[idx][None, :].astype(float), acc_kb[idx][None, :].astype(float))
            cyc = np.where(ok, a["cycles"], np.nan)[:, None]
            v = np.where(fits[keep] & ok[:, None], e * cyc, np.inf)            # (mappings, designs)
            j = np.argmin(v, axis=0)
            col = np.arange(len(idx))
            good = np.isfinite(v[j, col])
            E[idx[good], li] = np.broadcast_to(e, v.shape)[j, col][good]
            C[idx[good], li] = cyc[j, 0][good]
            choice[idx[good], li] = keep[j][good]
    n = np.array([lay.count for lay in layers], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        net = (E * n).sum(axis=1) * (C * n).sum(axis=1)
    net = np.where(np.isfinite(net) & allowed, net, np.inf)
    cand = np.flatnonzero(allowed)
    order = cand[np.lexsort((cand, net[cand]))]
    return Ranking(tuple(hws), net, E, C, choice, order, time.perf_counter() - t0, evaluated)


def _best_mappings(hw, layer: Layer, units, buffering: bool, k: int, expect: tuple | None):
    """The k best fitting candidates of the layer on hw by analytical EDP, evaluated
    directly on hw (the check of the shortcut: ``expect`` = (E, C) of the best)."""
    import cost

    b = layer_candidates(hw, layer, units, buffering)
    a = cost.evaluate_arrays(layer, hw, b.factors, b.order, b.buffers)
    v = np.where(a["feasible"], a["edp"], np.inf)
    top = np.argsort(v, kind="stable")[:k]
    top = top[np.isfinite(v[top])]
    if expect is not None and len(top):
        e, c = float(a["energy_pj"][top[0]]), float(a["cycles"][top[0]])
        if not (math.isclose(e, expect[0], rel_tol=1e-9) and math.isclose(c, expect[1], rel_tol=1e-9)):
            raise RuntimeError(f"the oracle's shared-counter shortcut disagrees with a direct evaluation of "
                               f"layer {layer.name!r} on {hw.to_json()}: ({e}, {c}) != {expect}")
    return [b.mapping(int(i)) for i in top]


def run_oracle(layers, opts: OracleOptions, evaluator, store=None, *, progress=None,
               hw_space: HardwareSpace | None = None) -> BaselineResult:
    """Rank every allowed design analytically, then measure the best ``opts.designs``
    with ``evaluator`` (module docstring). ``info``: ``ranking`` (a `Ranking`).
    ``progress(point, best)`` after each measured design."""
    if not isinstance(opts, OracleOptions):
        raise TypeError(f"opts must be OracleOptions; got {type(opts).__name__}")
    layers = list(layers)
    if not layers:
        raise ValueError("no layers to co-design for")
    t_start = time.perf_counter()
    T = {"ranking": 0.0, "candidates": 0.0, "evaluation": 0.0, "evaluate_total": 0.0, "total": 0.0}
    hws, dim, acc, sp, area, ok = allowed_designs(opts.area_budget_mm2, hw_space)
    rank = rank_designs(layers, hws, sw_samples=opts.sw_samples, seed=opts.seed, buffering=opts.buffering,
                        allowed=ok)
    T["ranking"] = rank.seconds
    units = [unit_draw(opts.sw_samples, opts.seed, li) for li in range(len(layers))]
    history = []
    top = [int(i) for i in rank.order if math.isfinite(rank.network_edp[i])][:opts.designs]
    for h, i in enumerate(top):
        hw = hws[i]
        t0 = time.perf_counter()
        best = [_best_mappings(hw, lay, units[li], opts.buffering, opts.per_design,
                               (rank.energy[i, li], rank.cycles[i, li])) for li, lay in enumerate(layers)]
        T["candidates"] += time.perf_counter() - t0
        samples = []
        for j in range(opts.per_design):
            mappings = [ms[min(j, len(ms) - 1)] if ms else None for ms in best]
            results = evaluate_sample(evaluator, store, hw, layers, mappings, iteration=h, phase="oracle", timings=T)
            samples.append(make_sample(h, j, "oracle", layers, mappings, results))
        point = design_point(h, hw, "oracle", layers, samples, area[i], fidelity=evaluator.fidelity,
                             extra={"rank": h, "analytical_edp": float(rank.network_edp[i])})
        record_point(store, point)
        history.append(point)
        if progress is not None:
            progress(point, best_of(history))
    T["total"] = time.perf_counter() - t_start
    return BaselineResult(tuple(history), best_of(history), T, {"ranking": rank})
