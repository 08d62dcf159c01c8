"""Vanilla BO: nested Bayesian optimisation of the hardware and the per-layer mappings on
their RAW parameters (issue 16's "no domain knowledge" baseline), with Polaris's budget
structure (thesis section 6.2: n = 8 hardware iterations x m = 6 software rounds).

The loop::

    for h in 0 .. hw_iters - 1:
        hardware step: a configuration among the allowed ones (the 4,096 of
            `search.space.HardwareSpace` within ``area_budget_mm2``, not tried before):
            uniformly at random while h < hw_warmup or fewer than 2 designs so far are
            feasible, else argmax of UCB (below) over all of them (`optimize_acqf_discrete`)
        per layer l: a pool of ``sw_pool`` constrained mappings on the design
            (`search.software.SoftwareSpace.pool`, scrambled Sobol seeded by (seed, h, l))
        for j in 0 .. sw_iters - 1:                   (a round = one sample)
            per layer: a pool row not evaluated before: at random while j < sw_warmup or
                the layer has fewer than 2 feasible evaluations on this design, else
                argmax of UCB of a GP fitted on the layer's evaluations on this design
            all layers of the round in ONE ``evaluator.results_many`` call
        the design's objective: min over combinations of its evaluated mappings of
            (sum_l n_l E_l) x (sum_l n_l C_l)   (`polaris.product_of_sums_check` "min_edp")

The warm-up exists because a GP needs data: with no point (or one) there is nothing to fit.

Models (BoTorch, float64): ``SingleTaskGP(X, Y, input_transform=Normalize(d, bounds),
outcome_transform=Standardize(1))`` (its default Matern-5/2 ARD kernel and priors), fitted
by ``fit_gpytorch_mll`` on the exact marginal likelihood, under a torch RNG forked and
seeded per fit. Targets y = ln EDP (hardware: ln of the design's network EDP; software:
ln(E_l x C_l) of one occurrence of the layer); infeasible points are left out.

Inputs, raw (no domain features, no transfer):

* hardware x = (dim, sp_kb, acc_kb) as numbers; Normalize bounds: the space's extremes
  (4, 8, 8) .. (32, 256, 256);
* a mapping x = its DRAM tiling factors (7), scratchpad factors (7), array factors (7),
  each loop's position in the DRAM loop order (7, 0 = outermost: the inverse of
  `MappingBatch.order`) and the buffer counts (3), the columns constant over the pool
  dropped (e.g. the array factors, fixed in the constrained space); Normalize bounds:
  the pool's per-column min and max.

Acquisition: BoTorch's analytic ``UpperConfidenceBound(model, beta, maximize=False)``,
i.e. UCB(x) = -mu(x) + sqrt(beta) sigma(x) of the minimised ln EDP (mu, sigma the
posterior on the original scale), maximised over the discrete choices by
``optimize_acqf_discrete(acq, q=1, choices)`` (the first of equal values).

Shared with `search.optimizers.oracle` and `search.optimizers.offline`: the point and
result records (`BaselinePoint`, `BaselineResult`), `evaluate_sample` (store lookup,
one evaluator call per sample, record) and `design_point` (a design's objective).
Every random choice comes from a generator seeded by (seed, step, ...): the same
options give the same history; a rerun through the same store evaluates nothing twice.
Measured (2026-12, one core, 2 others busy): ResNet-50's 24 unique layers, defaults,
analytical evaluator: 128 s, almost all of it the 768 software GP fits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields

import numpy as np

from hw.config import HardwareConfig
from hw.mapping import MappingError
from hw.result import Result

from ..options import check_area_budget, check_bool, check_int_limits, check_number
from ..software import MappingBatch, SoftwareSpace
from ..space import HardwareSpace
from .spotlight import hardware_candidates

__all__ = ["VanillaBOOptions", "BaselineSample", "BaselinePoint", "BaselineResult", "run_vanilla_bo",
           "hardware_inputs", "mapping_inputs", "varying_columns", "fit_gp", "ucb_pick", "evaluate_sample",
           "design_point", "allowed_designs"]

_LIMITS = {"hw_iters": (1, 4096), "sw_iters": (1, 10_000), "hw_warmup": (0, 4096), "sw_warmup": (0, 10_000),
           "sw_pool": (1, 1 << 16), "seed": (0, 2**32 - 1)}
#: Normalize bounds of the raw hardware inputs (dim, sp_kb, acc_kb)
HW_BOUNDS = ((4.0, 8.0, 8.0), (32.0, 256.0, 256.0))


@dataclass(frozen=True)
class VanillaBOOptions:
    """Budgets and knobs (defaults: Polaris's n = 8, m = 6; 2 random warm-up points)."""

    hw_iters: int = 8
    sw_iters: int = 6
    hw_warmup: int = 2
    sw_warmup: int = 2
    beta: float = 1.0
    sw_pool: int = 512
    area_budget_mm2: float | None = None
    buffering: bool = True
    seed: int = 0

    def __post_init__(self):
        check_int_limits(self, _LIMITS)
        object.__setattr__(self, "beta", check_number("beta", self.beta, 0, 1e4))
        check_area_budget(self.area_budget_mm2)
        check_bool("buffering", self.buffering)

    def to_dict(self) -> dict:
        return {"method": "vanilla-bo-raw", **{f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True)
class BaselineSample:
    """One sample: one mapping per layer on one design, evaluated together."""

    iteration: int
    round: int
    phase: str
    mappings: tuple               # per layer: Mapping or None (nothing left to evaluate)
    results: tuple                # per layer: Result
    cost: object                  # cost.NetworkCost of this sample's mappings
    objective: float              # its network EDP (inf if a layer is infeasible)


@dataclass(frozen=True)
class BaselinePoint:
    """One design (the fields `search.runs.RunDir.record_hardware` and `search.report`
    read), with its samples; mappings/results/cost/objective are the best combination's."""

    iteration: int
    hw: HardwareConfig
    phase: str
    mappings: tuple
    results: tuple
    cost: object
    objective: float
    area_mm2: float
    evaluations: int
    samples: tuple
    layerwise_objective: float    # network EDP of each layer's lowest-EDP mapping
    extra: dict                   # method-specific numbers (acquisition value, prediction, ...)


@dataclass(frozen=True)
class BaselineResult:
    history: tuple                # BaselinePoint per design
    best: BaselinePoint | None
    timings: dict                 # seconds by phase
    info: dict                    # method-specific (e.g. the oracle's ranking)

    @property
    def samples(self) -> list[BaselineSample]:
        return [s for p in self.history for s in p.samples]


# ---- seeds ------------------------------------------------------------------------------------
def sub_seed(seed: int, *path: int) -> int:
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0])


def rng(seed: int, *path: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *path]))


# ---- raw inputs -------------------------------------------------------------------------------
def hardware_inputs(dim, sp_kb, acc_kb) -> np.ndarray:
    """(B, 3) float64 raw hardware inputs (dim, sp_kb, acc_kb)."""
    return np.stack([np.asarray(v, dtype=np.float64).reshape(-1) for v in (dim, sp_kb, acc_kb)], axis=1)


def mapping_inputs(batch: MappingBatch) -> np.ndarray:
    """(B, 31) float64 raw mapping inputs (module docstring), before dropping constants."""
    pos = np.argsort(batch.order, axis=1).astype(np.float64)
    return np.concatenate([batch.factors.reshape(len(batch), -1).astype(np.float64), pos,
                           batch.buffers.astype(np.float64)], axis=1)


def varying_columns(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the columns of X that vary, their (2, d) bounds); one column if none varies."""
    lo, hi = X.min(axis=0), X.max(axis=0)
    keep = np.flatnonzero(hi > lo)
    if not len(keep):
        keep = np.array([0])
        return X[:, keep], np.array([[lo[0]], [lo[0] + 1.0]])
    return X[:, keep], np.stack([lo[keep], hi[keep]])


# ---- model and acquisition ----------------------------------------------------------------------
def fit_gp(X, y, bounds, seed: int = 0):
    """A BoTorch SingleTaskGP (float64, Normalize(bounds), Standardize) fitted by
    fit_gpytorch_mll on (X (n, d), y (n,)) under a torch RNG seeded with ``seed``."""
    import torch
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.input import Normalize
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    Xt = torch.as_tensor(np.asarray(X, dtype=np.float64))
    Yt = torch.as_tensor(np.asarray(y, dtype=np.float64).reshape(-1, 1))
    B = torch.as_tensor(np.asarray(bounds, dtype=np.float64))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SingleTaskGP(Xt, Yt, input_transform=Normalize(d=Xt.shape[-1], bounds=B),
                             outcome_transform=Standardize(m=1))
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # tiny data: optimisation warnings are expected
            fit_gpytorch_mll(mll)
    model.eval()
    return model


def ucb_pick(model, choices, beta: float) -> tuple[int, float]:
    """(row index into ``choices`` (n, d), its value) of BoTorch's UpperConfidenceBound
    (maximize=False: -mu + sqrt(beta) sigma of the minimised target), maximised by
    optimize_acqf_discrete (the first of equal values)."""
    import torch
    from botorch.acquisition import UpperConfidenceBound
    from botorch.optim import optimize_acqf_discrete

    C = torch.as_tensor(np.asarray(choices, dtype=np.float64))
    acq = UpperConfidenceBound(model, beta=beta, maximize=False)
    with torch.no_grad():
        cand, val = optimize_acqf_discrete(acq, q=1, choices=C, unique=True)
    hit = np.flatnonzero((C == cand[0]).all(dim=1).numpy())
    return int(hit[0]), float(val.reshape(-1)[0])


# ---- evaluation and a design's objective (shared by the baselines) ------------------------------
def evaluate_sample(evaluator, store, hw: HardwareConfig, layers, mappings, *, iteration: int, phase: str,
                    timings: dict | None = None) -> list[Result]:
    """Per layer the Result of ``mappings[l]`` on ``hw`` (None: not evaluated, an
    infeasible Result comes back): looked up in ``store`` first, the rest in ONE
    ``evaluator.results_many`` call, each new one recorded at once."""
    t0 = time.perf_counter()
    out: list = [None] * len(layers)
    work, miss = [], []
    for li, m in enumerate(mappings):
        if m is None:
            out[li] = Result.infeasible("no mapping left to evaluate", evaluator.fidelity)
            continue
        r = store.lookup_many(evaluator.fidelity, hw, layers[li], [m])[0] if store is not None else None
        if r is None:
            miss.append(li)
            work.append((hw, layers[li], MappingBatch.from_mappings([m])))
        else:
            out[li] = r
    if work:
        t1 = time.perf_counter()
        fresh = evaluator.results_many(work)
        if timings is not None:
            timings["evaluation"] = timings.get("evaluation", 0.0) + time.perf_counter() - t1
        for li, rs in zip(miss, fresh):
            out[li] = rs[0]
            if store is not None:
                store.record_many(evaluator.fidelity, hw, layers[li], [mappings[li]], [rs[0]],
                                  iteration=iteration, phase=phase, layer_index=li)
    if timings is not None:
        timings["evaluate_total"] = timings.get("evaluate_total", 0.0) + time.perf_counter() - t0
    return out


def edp(r: Result) -> float:
    if not r.feasible or r.cycles is None or r.energy_pj is None:
        return math.inf
    return float(r.energy_pj) * float(r.cycles)


def design_point(iteration: int, hw: HardwareConfig, phase: str, layers, samples, area: float, *,
                 fidelity: str, extra: dict | None = None) -> BaselinePoint:
    """The design's point from its samples: the best combination of the evaluated
    feasible mappings (product of sums; inf when some layer has none)."""
    from cost.evaluate import network_edp

    from .polaris import product_of_sums_check

    per = [[(s.mappings[li], s.results[li]) for s in samples
            if s.mappings[li] is not None and math.isfinite(edp(s.results[li]))] for li in range(len(layers))]
    evaluations = sum(1 for s in samples for m in s.mappings if m is not None)
    if all(per):
        chk = product_of_sums_check([[r.energy_pj for _, r in p] for p in per],
                                    [[r.cycles for _, r in p] for p in per], [lay.count for lay in layers])
        mappings = tuple(per[li][k][0] for li, k in enumerate(chk["min_choice"]))
        results = tuple(per[li][k][1] for li, k in enumerate(chk["min_choice"]))
        lw = chk["layerwise_edp"]
    else:
        mappings = tuple(None for _ in layers)
        results = tuple(next((s.results[li] for s in samples if s.mappings[li] is not None), None)
                        or Result.infeasible("no mapping evaluated", fidelity) for li in range(len(layers)))
        lw = math.inf
    c = network_edp(results, layers)
    obj = float(c.edp) if c.feasible else math.inf
    return BaselinePoint(iteration, hw, phase, mappings, results, c, obj, float(area), evaluations,
                         tuple(samples), float(lw), dict(extra or {}))


def record_point(store, point: BaselinePoint) -> None:
    if store is not None:
        store.record_hardware(point, extra={"objective": point.objective, "area_mm2": point.area_mm2,
                                            "evaluations": point.evaluations,
                                            "samples": [s.objective for s in point.samples],
                                            "layerwise_objective": point.layerwise_objective, **point.extra})


def make_sample(h: int, j: int, phase: str, layers, mappings, results) -> BaselineSample:
    from cost.evaluate import network_edp

    c = network_edp(results, layers)
    return BaselineSample(h, j, phase, tuple(mappings), tuple(results), c, float(c.edp) if c.feasible else math.inf)


def allowed_designs(budget, hw_space: HardwareSpace | None = None):
    """`hardware_candidates` of the space, ValueError when nothing is within ``budget``."""
    hws, dim, acc, sp, area, ok = hardware_candidates(hw_space or HardwareSpace(), budget)
    if not ok.any():
        raise ValueError(f"area-budget {budget:g} mm^2 is below the smallest design of the space "
                         f"({area.min():.3f} mm^2)")
    return hws, dim, acc, sp, area, ok


def best_of(history) -> BaselinePoint | None:
    return min((p for p in history if math.isfinite(p.objective)), key=lambda p: (p.objective, p.iteration),
               default=None)


def one_thread(fn):
    """Run ``fn()`` with torch on one thread (restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


# ---- the optimiser ------------------------------------------------------------------------------
def run_vanilla_bo(layers, opts: VanillaBOOptions, evaluator, store=None, *, progress=None,
                   hw_space: HardwareSpace | None = None) -> BaselineResult:
    """Run (or resume, through ``store``) vanilla BO on ``layers`` (unique shapes with
    counts). ``progress(point, best)`` after each design. Torch on one thread meanwhile."""
    if not isinstance(opts, VanillaBOOptions):
        raise TypeError(f"opts must be VanillaBOOptions; got {type(opts).__name__}")
    return one_thread(lambda: _run(list(layers), opts, evaluator, store, progress, hw_space))


def _run(layers, opts, evaluator, store, progress, hw_space) -> BaselineResult:
    if not layers:
        raise ValueError("no layers to co-design for")
    t_start = time.perf_counter()
    T = {k: 0.0 for k in ("hardware_step", "software_step", "evaluation", "evaluate_total", "total")}
    hws, dim, acc, sp, area, ok = allowed_designs(opts.area_budget_mm2, hw_space)
    X_hw = hardware_inputs(dim, sp, acc)
    tried = np.zeros(len(hws), dtype=bool)
    chosen: list[int] = []
    history: list[BaselinePoint] = []
    for h in range(min(opts.hw_iters, int(ok.sum()))):
        t0 = time.perf_counter()
        free = np.flatnonzero(ok & ~tried)
        learned = [k for k, p in enumerate(history) if math.isfinite(p.objective)]
        if h < opts.hw_warmup or len(learned) < 2:
            i, phase, acq = int(rng(opts.seed, 1, h).choice(free)), "warmup", math.nan
        else:
            gp = fit_gp(X_hw[[chosen[k] for k in learned]], np.log([history[k].objective for k in learned]),
                        HW_BOUNDS, seed=sub_seed(opts.seed, 6, h))
            k, acq = ucb_pick(gp, X_hw[free], opts.beta)
            i, phase = int(free[k]), "bo"
        T["hardware_step"] += time.perf_counter() - t0
        tried[i] = True
        chosen.append(i)
        hw = hws[i]
        samples = _software(opts, evaluator, store, hw, layers, h, T)
        point = design_point(h, hw, phase, layers, samples, area[i], fidelity=evaluator.fidelity,
                             extra={"acquisition": acq})
        record_point(store, point)
        history.append(point)
        if progress is not None:
            progress(point, best_of(history))
    T["total"] = time.perf_counter() - t_start
    return BaselineResult(tuple(history), best_of(history), T, {})


def _software(opts, evaluator, store, hw, layers, h, T) -> list[BaselineSample]:
    t0 = time.perf_counter()
    pools, X, bounds = [], [], []
    for li, layer in enumerate(layers):
        try:
            p = SoftwareSpace(hw, layer, opts.buffering).pool(opts.sw_pool, seed=sub_seed(opts.seed, 3, h, li))
        except MappingError:
            p = None
        pools.append(p)
        if p is None:
            X.append(None)
            bounds.append(None)
        else:
            x, b = varying_columns(mapping_inputs(p))
            X.append(x)
            bounds.append(b)
    done = [None if p is None else np.zeros(len(p), dtype=bool) for p in pools]
    picked: list[list[int]] = [[] for _ in layers]
    ys: list[list[float]] = [[] for _ in layers]
    T["software_step"] += time.perf_counter() - t0
    samples = []
    for j in range(opts.sw_iters):
        t0 = time.perf_counter()
        picks: dict[int, int] = {}
        modes = set()
        for li in range(len(layers)):
            if pools[li] is None or done[li].all():
                continue
            free = np.flatnonzero(~done[li])
            fin = [k for k, v in enumerate(ys[li]) if math.isfinite(v)]
            if j < opts.sw_warmup or len(fin) < 2:
                picks[li] = int(rng(opts.seed, 4, h, li, j).choice(free))
                modes.add("warmup")
            else:
                gp = fit_gp(X[li][[picked[li][k] for k in fin]], [ys[li][k] for k in fin], bounds[li],
                            seed=sub_seed(opts.seed, 5, h, li, j))
                k, _ = ucb_pick(gp, X[li][free], opts.beta)
                picks[li] = int(free[k])
                modes.add("bo")
        phase = "bo" if modes == {"bo"} else "warmup" if modes == {"warmup"} else "mixed" if modes else "none"
        T["software_step"] += time.perf_counter() - t0
        if not picks:
            break
        mappings = [pools[li].mapping(picks[li]) if li in picks else None for li in range(len(layers))]
        results = evaluate_sample(evaluator, store, hw, layers, mappings, iteration=h, phase=f"{phase}{j}",
                                  timings=T)
        for li, k in picks.items():
            done[li][k] = True
            picked[li].append(k)
            e = edp(results[li])
            ys[li].append(math.log(e) if math.isfinite(e) and e > 0 else math.inf)
        samples.append(make_sample(h, j, phase, layers, mappings, results))
    return samples
