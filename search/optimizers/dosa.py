"""DOSA-style offline co-design baseline: gradient descent on a differentiable model over
the mappings, the hardware being the minimal one the mappings imply (issue 16; Hong et al.,
MICRO 2023; the design is read from the paper's description, no code is copied).

Variables and model
-------------------
Per layer l and loop p with bound D_{l,p} > 1 the normalised log inner factors
``x = log(f) / log(D)`` of the spad factor s and, for C and K only (the array unrolls
nothing else), the array factor a; the DRAM factor is derived, ``F = D / (s a)``. The
model is `search.models.differentiable.stack_cost` (exact access counts, energy from the
`cost.energy` coefficients, DOSA's roofline latency) at the current DRAM order of each
layer, on the minimal hardware: ``dim`` = ``array_dim`` if fixed, else the smallest
realizable dim >= max a (no gradient), and the continuous memory sizes
``sp_kb = max_l sp_kb_l``, ``acc_kb = max_l acc_kb_l`` (`stack_memory_kb`). All layers
are one batch of tensors (`stack_layers`), one forward and backward pass per step.

Loss (Adam, ``lr`` on x; default 0.2, below)

    loss = log(sum_l n_l E_l) + log(sum_l n_l C_l) + w P
    P = sum relu(-log F)^2 + relu(-log s)^2 + relu(-log a)^2 + relu(log a - log a_max)^2
        + relu(log(area / area_budget))^2                      (when a budget is given)

log(EDP) instead of EDP: the same minimisers, and the penalty weight ``w`` is scale-free.
a_max = ``array_dim`` or the largest realizable dim.

The learning rate is tuned for this parametrisation, not taken from DOSA (whose 1e-5 ..
7.5e-5 go with its own variables): Adam moves each x by about ``lr`` per step, so at 5e-5
the 1,490 steps move a factor by at most D^0.075 and the result is that of the random
starts. Measured (BERT, analytical evaluator, `scripts/bench_dosa.py --lr`, best network
EDP, seeds 0 / 1): 5e-5 4.52e18 / 2.74e18; 1e-3 1.58e18 / 1.69e18; 1e-2 1.87e18 / -;
5e-2 1.44e18 / 1.24e18; 0.2 1.24e18 / 1.08e18 (BENCHMARKS.md). 0.2, the best on both seeds, is the default.

Rounding (at step 0, then every ``round_every`` steps and after the last)
-------------------------------------------------------------------------
Array factors of C and K: the divisor of D nearest in log space to a, at most a_max; the
network's dim follows (`minimal_hardware`). Spad factors: the divisor of D / a nearest to
s in log space; while the tile does not fit the largest realizable memories at that dim,
the largest spad factor steps down to its next smaller divisor. Then for each layer the
three DRAM orders are tried (`Mapping.order` is the DRAM loop order): weight-stationary
(K C R S N P Q), input-stationary (N C P Q R S K) and output-stationary (N K P Q C R S);
each layer keeps the order of lowest analytical EDP (`cost.evaluate`, its own E x C) on
the minimal hardware, which is also the order the continuous model uses from then on.
The rounded point (minimal hardware, mappings) is priced by the analytical network EDP
(sum n E)(sum n C); points over the area budget are dropped.

Starts and measurement
----------------------
``starts`` starts; start k draws its initial mapping (random divisors, shrunk to fit as
above) from `vanilla_bo.rng`(seed, 1, k). Every distinct rounded point of every start is
ranked by analytical EDP (ties: first found); the best ``sample_budget`` are measured
with the evaluator, one sample each (a sample = one mapping per layer on one design, as
for the other baselines), grouped by design in rank order (iteration h = the design's
rank); each design's objective is `vanilla_bo.design_point`'s. Deterministic given the
options (torch float64 on the CPU, one thread, restored after; no global state). All
layers are one batch of tensors; one Adam step on ResNet-50's 24 layers takes about
1.5 ms (`scripts/bench_dosa.py`; it was 18 ms with a Python loop over the layers and
torch's two threads).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, fields

import numpy as np
import torch

import cost
from cost.energy import DEFAULT_TABLE, area_mm2
from hw.config import HardwareConfig
from hw.layer import LOOPS, Layer
from hw.mapping import Mapping, divisors

from ..models.differentiable import minimal_hardware, order_index, stack_cost, stack_layers, stack_memory_kb
from ..options import check_area_budget, check_int, check_number
from ..space import DIMS, MEM_KB
from .vanilla_bo import (BaselineResult, best_of, design_point, evaluate_sample, make_sample, one_thread, record_point,
                         rng)

__all__ = ["DRAM_ORDERS", "DosaOptions", "round_mappings", "run_dosa"]

DRAM_ORDERS = {"weight-stationary": ("K", "C", "R", "S", "N", "P", "Q"),
               "input-stationary": ("N", "C", "P", "Q", "R", "S", "K"),
               "output-stationary": ("N", "K", "P", "Q", "C", "R", "S")}
_IC, _IK = LOOPS.index("C"), LOOPS.index("K")


@dataclass(frozen=True)
class DosaOptions:
    """Defaults: DOSA's 7 starts x 1,490 steps, rounding every 500, 48 samples."""

    starts: int = 7
    steps: int = 1490
    lr: float = 0.2
    round_every: int = 500
    sample_budget: int = 48
    array_dim: int | None = None
    area_budget_mm2: float | None = None
    penalty_weight: float = 10.0
    seed: int = 0

    def __post_init__(self):
        check_int("starts", self.starts, 1, 1024)
        check_int("steps", self.steps, 0, 1 << 20)
        check_number("lr", self.lr, 0.0, 1.0, lo_open=True)
        check_int("round_every", self.round_every, 1, 1 << 20)
        check_int("sample_budget", self.sample_budget, 1, 1 << 20)
        if self.array_dim is not None and (isinstance(self.array_dim, bool) or self.array_dim not in DIMS):
            raise ValueError(f"array-dim must be None or one of {', '.join(map(str, DIMS))}; got {self.array_dim!r}")
        check_area_budget(self.area_budget_mm2)
        check_number("penalty_weight", self.penalty_weight, 0.0, 1e12, lo_open=True)
        check_int("seed", self.seed, 0, 2**32 - 1)

    def to_dict(self) -> dict:
        return {"method": "dosa", **{f.name: getattr(self, f.name) for f in fields(self)}}


def _nearest(cands, v: float) -> int:
    lv = math.log(max(v, 1e-300))
    return min(cands, key=lambda d: (abs(math.log(d) - lv), d))


def _shrink_to_fit(layer: Layer, spad: dict, array: dict, dim: int, base: HardwareConfig) -> dict:
    """Step the largest spad factor down until the tile fits the largest memories at dim."""
    hw = dataclasses.replace(base, dim=dim, sp_kb=max(MEM_KB), acc_kb=max(MEM_KB))
    spad = dict(spad)
    while True:
        m = Mapping.for_layer(layer, spad=spad, array=array)
        if m.check(hw, layer):
            return spad
        lp = max((p for p in LOOPS if spad[p] > 1), key=lambda p: (spad[p], -LOOPS.index(p)), default=None)
        if lp is None:
            return spad
        ds = divisors(layer.dims[lp] // array[lp])
        spad[lp] = max(d for d in ds if d < spad[lp])


def round_mappings(layers, s_vals, a_vals, orders, *, a_max: int, array_dim: int | None = None,
                   base: HardwareConfig | None = None) -> list[Mapping]:
    """Per layer the rounded `Mapping` of continuous spad and array factors ``s_vals[l]``,
    ``a_vals[l]`` (7 floats each) with DRAM order ``orders[l]`` (module docstring)."""
    base = base or HardwareConfig()
    arrays = []
    for layer, a in zip(layers, a_vals):
        arr = {lp: 1 for lp in LOOPS}
        for i in (_IC, _IK):
            lp = LOOPS[i]
            arr[lp] = _nearest([d for d in divisors(layer.dims[lp]) if d <= a_max], float(a[i]))
        arrays.append(arr)
    need = max(max(arr["C"], arr["K"]) for arr in arrays)
    dim = array_dim if array_dim is not None else next(d for d in DIMS if d >= need)
    out = []
    for layer, s, arr, order in zip(layers, s_vals, arrays, orders):
        spad = {lp: _nearest(divisors(layer.dims[lp] // arr[lp]), float(s[i])) for i, lp in enumerate(LOOPS)}
        spad = _shrink_to_fit(layer, spad, arr, dim, base)
        out.append(Mapping.for_layer(layer, spad=spad, array=arr, order=tuple(order)))
    return out


def _network_edp(layers, hw, mappings) -> tuple[float, list]:
    rs = [cost.evaluate(hw, m, lay) for lay, m in zip(layers, mappings)]
    if not all(r.feasible for r in rs):
        return math.inf, rs
    E = sum(lay.count * r.energy_pj for lay, r in zip(layers, rs))
    C = sum(lay.count * r.cycles for lay, r in zip(layers, rs))
    return float(E) * float(C), rs


def _round_point(layers, s_vals, a_vals, orders, opts: DosaOptions, a_max: int, base: HardwareConfig):
    """(edp, hw, mappings, orders) of the rounded point with each layer's best DRAM order;
    None when no realizable hardware holds it or it is over the area budget."""
    ms = round_mappings(layers, s_vals, a_vals, orders, a_max=a_max, array_dim=opts.array_dim, base=base)
    hw = minimal_hardware(layers, ms, base=base, array_dim=opts.array_dim)
    if hw is None:
        return None
    if opts.area_budget_mm2 is not None and area_mm2(hw.dim, hw.sp_kb, hw.acc_kb) > opts.area_budget_mm2:
        return None
    best = []
    for lay, m in zip(layers, ms):
        trials = []
        for name, order in DRAM_ORDERS.items():
            mo = Mapping(factors=m.factors_dict(), order=order, buffers=m.buffers)
            r = cost.evaluate(hw, mo, lay)
            trials.append((r.energy_pj * r.cycles if r.feasible else math.inf, list(DRAM_ORDERS).index(name), mo))
        best.append(min(trials, key=lambda t: (t[0], t[1]))[2])
    edp, _ = _network_edp(layers, hw, best)
    return edp, hw, best, [m.order for m in best]


def _initial(layers, g: np.random.Generator, a_max: int, opts: DosaOptions, base: HardwareConfig):
    s_vals, a_vals = [], []
    for layer in layers:
        a = [1.0] * 7
        for i in (_IC, _IK):
            ds = [d for d in divisors(layer.dims[LOOPS[i]]) if d <= a_max]
            a[i] = float(ds[int(g.integers(len(ds)))])
        s = [float(divisors(int(layer.dims[lp] // a[i]))[int(g.integers(len(divisors(int(layer.dims[lp] // a[i])))))])
             for i, lp in enumerate(LOOPS)]
        s_vals.append(s)
        a_vals.append(a)
    return s_vals, a_vals


def run_dosa(layers, opts: DosaOptions, evaluator, store=None, *, progress=None,
             base: HardwareConfig | None = None) -> BaselineResult:
    """Gradient descent with periodic rounding from ``opts.starts`` starts, then the best
    distinct rounded points measured with ``evaluator`` (module docstring). ``info``:
    ``candidates`` (distinct rounded points found), ``rounded`` (rounded points, all)."""
    if not isinstance(opts, DosaOptions):
        raise TypeError(f"opts must be DosaOptions; got {type(opts).__name__}")
    layers = list(layers)
    if not layers:
        raise ValueError("no layers to co-design for")
    return one_thread(lambda: _run(layers, opts, evaluator, store, progress, base or HardwareConfig()))


def _run(layers, opts: DosaOptions, evaluator, store, progress, base: HardwareConfig) -> BaselineResult:
    t_start = time.perf_counter()
    T = {"descent": 0.0, "rounding": 0.0, "evaluation": 0.0, "evaluate_total": 0.0, "total": 0.0}
    a_max = opts.array_dim if opts.array_dim is not None else max(DIMS)
    D = torch.tensor([[float(lay.dims[lp]) for lp in LOOPS] for lay in layers], dtype=torch.float64)
    logD = torch.log(D).clamp_min(1e-12)
    free_s = D > 1
    free_a = free_s.clone()
    free_a[:, [i for i in range(7) if i not in (_IC, _IK)]] = False
    counts = torch.tensor([float(lay.count) for lay in layers], dtype=torch.float64)
    stack = stack_layers(layers)
    order_of = order_t = None          # the DRAM orders' index tensor, rebuilt when they change
    found: dict = {}
    rounded = 0
    for k in range(opts.starts):
        g = rng(opts.seed, 1, k)
        s0, a0 = _initial(layers, g, a_max, opts, base)
        orders = [DRAM_ORDERS["output-stationary"]] * len(layers)
        xs = (torch.log(torch.tensor(s0, dtype=torch.float64)) / logD).where(free_s, torch.zeros(()))
        xa = (torch.log(torch.tensor(a0, dtype=torch.float64)) / logD).where(free_a, torch.zeros(()))
        xs.requires_grad_(True)
        xa.requires_grad_(True)
        adam = torch.optim.Adam([xs, xa], lr=opts.lr)
        for step in range(opts.steps + 1):
            s = torch.exp(torch.where(free_s, xs, torch.zeros(())) * logD)
            a = torch.exp(torch.where(free_a, xa, torch.zeros(())) * logD)
            if step == 0 or step % opts.round_every == 0 or step == opts.steps:
                t0 = time.perf_counter()
                pt = _round_point(layers, s.detach().tolist(), a.detach().tolist(), orders, opts, a_max, base)
                rounded += 1
                if pt is not None:
                    edp, hw, ms, orders = pt
                    key = (hw.to_json(), tuple(m.to_json() for m in ms))
                    if math.isfinite(edp) and key not in found:
                        found[key] = (edp, len(found), hw, ms)
                T["rounding"] += time.perf_counter() - t0
            if step == opts.steps:
                break
            t0 = time.perf_counter()
            F = D / (s * a)
            amax = float(a.detach()[:, [_IC, _IK]].max())
            dim = float(opts.array_dim if opts.array_dim is not None
                        else next((d for d in DIMS if d >= amax), max(DIMS)))
            sp_l, acc_l = stack_memory_kb(stack, s, a, dim)
            sp_kb, acc_kb = sp_l.amax(), acc_l.amax()
            if order_of is not orders:
                order_of, order_t = orders, order_index(orders)
            E, C, _ = stack_cost(stack, F, s, a, order_t, dim, sp_kb, acc_kb, hw=base)
            loss = torch.log((counts * E).sum()) + torch.log((counts * C).sum())
            relu = torch.nn.functional.relu
            pen = ((relu(-torch.log(F)) ** 2).sum() + (relu(-torch.log(s)) ** 2).sum()
                   + (relu(-torch.log(a)) ** 2).sum() + (relu(torch.log(a) - math.log(a_max)) ** 2).sum())
            if opts.area_budget_mm2 is not None:
                area = area_mm2(dim, 0, 0) + DEFAULT_TABLE.area_per_sp_kb * sp_kb \
                    + DEFAULT_TABLE.area_per_acc_kb * acc_kb
                pen = pen + relu(torch.log(area / opts.area_budget_mm2)) ** 2
            loss = loss + opts.penalty_weight * pen
            adam.zero_grad()
            loss.backward()
            adam.step()
            T["descent"] += time.perf_counter() - t0
    ranked = sorted(found.values(), key=lambda v: (v[0], v[1]))[:opts.sample_budget]
    groups: dict = {}
    for edp, _, hw, ms in ranked:
        groups.setdefault(hw.to_json(), (hw, []))[1].append((edp, ms))
    history = []
    for h, (hw, cands) in enumerate(groups.values()):
        samples = []
        for j, (edp, ms) in enumerate(cands):
            results = evaluate_sample(evaluator, store, hw, layers, ms, iteration=h, phase="dosa", timings=T)
            samples.append(make_sample(h, j, "dosa", layers, ms, results))
        area = float(area_mm2(hw.dim, hw.sp_kb, hw.acc_kb))
        point = design_point(h, hw, "dosa", layers, samples, area, fidelity=evaluator.fidelity,
                             extra={"rank": h, "analytical_edp": float(cands[0][0])})
        record_point(store, point)
        history.append(point)
        if progress is not None:
            progress(point, best_of(history))
    T["total"] = time.perf_counter() - t_start
    return BaselineResult(tuple(history), best_of(history), T, {"candidates": len(found), "rounded": rounded})
