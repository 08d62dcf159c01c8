"""Spotlight: domain-aware Bayesian optimisation (daBO) of the hardware and the per-layer
mappings (thesis chapter 4; Spotlight's public code for the defaults).

The loop (nested, layerwise, section 4.3.1):

    for each of ``hw_iters`` hardware iterations:
        daBO_HW picks a configuration of `search.space.HardwareSpace` (all 4,096, minus
            those evaluated and those over ``area_budget_mm2``): at random during the
            ``hw_warmup`` first iterations and with probability ``hw_explore`` after,
            else the lowest LCB of a GP fitted on the configurations evaluated so far;
        for every layer, daBO_SW runs ``sw_iters`` evaluations in rounds of ``sw_batch``
            over a pool of ``sw_pool`` constrained mappings (`search.software`): random
            picks during the ``sw_warmup`` first evaluations and with probability
            ``sw_explore`` per round after, else the ``sw_batch`` lowest LCBs of a GP
            fitted on the layer's evaluations (all layers' GPs fitted in one batched call);
        the best mapping of each layer (by the layer objective) makes the network cost
            (`search.evaluators.network_objective`), which daBO_HW learns from.

Surrogates (`search.models.gp`): a GP with a linear kernel plus noise on standardised
log objective, inputs normalised inside the model; acquisition: LCB = mean - kappa * std
(`search.acquisition.lcb`, kappa 1 as in Spotlight's code). Inputs by ``variant``:

    spotlight   the feature space (`search.features`): closed-form domain features
    v           Spotlight-V: the raw parameters (`MappingSpace.encode_arrays`, version 2,
                and `HardwareSpace.encode_arrays`)
    a           Spotlight-A: features and raw parameters side by side
    r           Spotlight-R: every pick at random (same pools, same budget)
    ga          Spotlight-GA: pymoo's genetic algorithm in both loops (`search.genetic`),
                over the raw parameters, its offspring snapped to the same pools; the
                warm-up picks are its first population (hardware: ``hw_warmup``, at
                least 2, and as many offspring per generation; software: the
                ``sw_warmup`` picks, ``sw_batch`` offspring per generation); no
                exploration ratio (mutation explores)

Reproducibility and resumption: every random choice comes from a generator seeded by
(seed, hardware iteration, layer), never from the order evaluations complete; the GP fits
are seeded. Each evaluation is looked up in the run's store (`search.runs`) before it is
made, so rerunning a killed run replays the same decisions, re-evaluates nothing that was
stored, and ends with the same history and the same best design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from cost.energy import area_mm2
from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import MappingError
from hw.result import Result

from ..options import check_area_budget, check_bool, check_choice, check_int_limits, check_number
from ..evaluators import layer_objective, network_objective, OBJECTIVES
from ..features import hardware_features, software_features
from ..software import MappingBatch, SoftwareSpace
from ..space import HardwareSpace, MappingSpace

__all__ = ["VARIANTS", "SpotlightOptions", "hardware_candidates", "HardwarePoint", "SpotlightResult", "run_spotlight"]

VARIANTS = ("spotlight", "v", "a", "r", "ga")
_LIMITS = {"hw_iters": (1, 4096), "sw_iters": (1, 100_000), "hw_warmup": (0, 4096), "sw_warmup": (0, 100_000),
           "sw_pool": (1, 1 << 20), "sw_batch": (1, 10_000), "seed": (0, 2**32 - 1)}


@dataclass(frozen=True)
class SpotlightOptions:
    """Budgets and knobs (defaults: the paper's 100 x 100, Spotlight's code otherwise)."""

    hw_iters: int = 100
    sw_iters: int = 100
    variant: str = "spotlight"
    hw_warmup: int = 10
    hw_explore: float = 0.1
    sw_warmup: int = 30
    sw_explore: float = 0.3
    sw_pool: int = 1000
    sw_batch: int = 10
    kappa: float = 1.0
    objective: str = "edp"
    area_budget_mm2: float | None = None
    buffering: bool = True
    seed: int = 0

    def __post_init__(self):
        check_int_limits(self, _LIMITS)
        for name in ("hw_explore", "sw_explore"):
            check_number(name, getattr(self, name), 0, 1)
        check_number("kappa", self.kappa, 0, 100)
        check_choice("variant", self.variant, VARIANTS)
        check_choice("objective", self.objective, OBJECTIVES)
        check_area_budget(self.area_budget_mm2)
        check_bool("buffering", self.buffering)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class HardwarePoint:
    """One hardware iteration: the design, its per-layer best mappings and results, the
    network objective (inf when a layer has no feasible mapping) and how it was picked."""

    iteration: int
    hw: HardwareConfig
    phase: str
    mappings: tuple            # per layer: Mapping or None
    results: tuple             # per layer: Result (infeasible when none fits)
    cost: object               # cost.NetworkCost
    objective: float
    area_mm2: float
    evaluations: int           # software evaluations this iteration (stored ones included)


@dataclass(frozen=True)
class SpotlightResult:
    history: tuple             # HardwarePoint per iteration
    best: HardwarePoint | None

    @property
    def best_so_far(self) -> list[float]:
        out, b = [], math.inf
        for p in self.history:
            b = min(b, p.objective)
            out.append(b)
        return out


def _rng(seed: int, *path: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *path]))


def _sub_seed(seed: int, *path: int) -> int:
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0])


def _sw_inputs(variant: str, hw: HardwareConfig, layer: Layer, b: MappingBatch) -> np.ndarray:
    parts = []
    if variant in ("spotlight", "a", "r"):
        parts.append(software_features(hw, layer, b.factors, b.order, b.buffers))
    if variant in ("v", "a", "ga"):
        parts.append(MappingSpace(hw, layer, version=2).encode_arrays(b.factors, b.order, b.buffers))
    return np.concatenate(parts, axis=1)


def _hw_inputs(variant: str, dim, acc, sp) -> np.ndarray:
    parts = []
    if variant in ("spotlight", "a", "r"):
        parts.append(hardware_features(dim, sp, acc))
    if variant in ("v", "a", "ga"):
        parts.append(HardwareSpace.encode_arrays(dim, acc, sp))
    return np.concatenate(parts, axis=1)


def _log_y(values) -> np.ndarray:
    return np.log(np.asarray(values, dtype=float))


class _LayerSearch:
    """The software search state of one layer on one design."""

    def __init__(self, pool: MappingBatch | None, reason: str | None):
        self.pool = pool
        self.reason = reason
        self.done = np.zeros(0 if pool is None else len(pool), dtype=bool)
        self.picked: list[int] = []
        self.results: list[Result] = []

    @property
    def exhausted(self) -> bool:
        return self.pool is None or bool(self.done.all())

    def best(self, objective: str):
        if not self.results:
            return None, None
        v = [layer_objective(r, objective) for r in self.results]
        i = int(np.argmin(v))              # the first of equals
        return self.pool.mapping(self.picked[i]), self.results[i]


def _evaluate_picks(evaluator, store, hw, layers, picks, searches, iteration, phase_of):
    """Evaluate (look up first) each layer's picked pool rows; append to the searches."""
    work, todo = [], []
    for li, idx in picks.items():
        s = searches[li]
        batch = s.pool.take(idx)
        cached = store.lookup_many(evaluator.fidelity, hw, layers[li], batch.mappings()) if store else [None] * len(idx)
        miss = [j for j, r in enumerate(cached) if r is None]
        todo.append((li, idx, batch, cached, miss))
        if miss:
            work.append((hw, layers[li], batch.take(miss)))
    fresh = iter(evaluator.results_many(work)) if work else iter(())
    for li, idx, batch, cached, miss in todo:
        if miss:
            new = next(fresh)
            if store is not None:
                sub = batch.take(miss)
                store.record_many(evaluator.fidelity, hw, layers[li], sub.mappings(), new,
                                  iteration=iteration, phase=phase_of[li], layer_index=li)
            for j, r in zip(miss, new):
                cached[j] = r
        s = searches[li]
        s.done[idx] = True
        s.picked.extend(int(i) for i in idx)
        s.results.extend(cached)


def _software_search(opts: SpotlightOptions, evaluator, store, hw: HardwareConfig, layers, h: int) -> list:
    from ..acquisition import lcb
    from ..models.gp import fit_gp
    from ..optim import select_from_pool

    searches = []
    for li, layer in enumerate(layers):
        try:
            pool = SoftwareSpace(hw, layer, opts.buffering).pool(opts.sw_pool, seed=_sub_seed(opts.seed, 3, h, li))
            searches.append(_LayerSearch(pool, None))
        except MappingError as e:
            searches.append(_LayerSearch(None, str(e).splitlines()[0]))
    feats = [None if s.pool is None else _sw_inputs(opts.variant, hw, layers[li], s.pool)
             for li, s in enumerate(searches)]
    rng = _rng(opts.seed, 2, h)
    gas: dict = {}                      # Spotlight-GA: a PoolGA per layer
    n_done = 0
    while n_done < opts.sw_iters:
        k = min(opts.sw_batch, opts.sw_iters - n_done)
        active = [li for li, s in enumerate(searches) if not s.exhausted]
        if not active:
            break
        warm = n_done < opts.sw_warmup
        if opts.variant == "r":
            mode = "random"
        elif opts.variant == "ga":
            mode = "warmup" if warm else "ga"
        else:
            mode = "warmup" if warm else "explore" if rng.random() < opts.sw_explore else "bo"
        picks: dict[int, np.ndarray] = {}
        phases: dict[int, str] = {}

        def random_picks(li: int) -> np.ndarray:
            free = np.flatnonzero(~searches[li].done)
            return np.sort(_rng(opts.seed, 4, h, li, n_done).choice(free, size=min(k, len(free)), replace=False))

        if mode in ("random", "warmup", "explore"):
            for li in active:
                picks[li] = random_picks(li)
        elif mode == "ga":
            from ..genetic import PoolGA
            for li in active:
                s = searches[li]
                if li not in gas and len(s.picked) < 2:
                    picks[li], phases[li] = random_picks(li), "warmup"   # too few to breed from
                    continue
                if li not in gas:
                    gas[li] = PoolGA(feats[li], max(2, len(s.picked)), opts.sw_batch, _sub_seed(opts.seed, 7, h, li))
                    gas[li].start(s.picked, [layer_objective(r, opts.objective) for r in s.results])
                picks[li] = gas[li].ask(k)
        else:
            # one batched GP over the layers with the same number of usable points
            usable = {li: [j for j, r in enumerate(searches[li].results)
                           if math.isfinite(layer_objective(r, opts.objective))] for li in active}
            groups: dict[int, list[int]] = {}
            for li in active:
                groups.setdefault(len(usable[li]), []).append(li)
            for n_ok, lis in groups.items():
                if n_ok < 2:
                    for li in lis:   # nothing to learn from: random
                        picks[li] = random_picks(li)
                    continue
                X, Y = [], []
                for li in lis:
                    s, ok = searches[li], usable[li]
                    X.append(feats[li][[s.picked[j] for j in ok]])
                    Y.append(_log_y([layer_objective(s.results[j], opts.objective) for j in ok]))
                sur = fit_gp(np.stack(X), np.stack(Y), seed=_sub_seed(opts.seed, 5, h, n_done))
                # the layers' pools side by side (shorter ones padded with their last row,
                # which is excluded from selection)
                m = max(len(feats[li]) for li in lis)
                P = np.stack([np.concatenate([feats[li], np.repeat(feats[li][-1:], m - len(feats[li]), 0)])
                              for li in lis])
                scores = lcb(sur, P, opts.kappa)
                for row, li in enumerate(lis):
                    ex = np.ones(m, dtype=bool)
                    ex[:len(feats[li])] = searches[li].done
                    picks[li] = select_from_pool(scores[row], k, exclude=ex)
        picks = {li: np.asarray(v, dtype=np.int64) for li, v in picks.items() if len(v)}
        _evaluate_picks(evaluator, store, hw, layers, picks, searches, h,
                        {li: phases.get(li, mode) for li in picks})
        for li, idx in picks.items():
            if li in gas and phases.get(li) is None:
                gas[li].tell([layer_objective(r, opts.objective) for r in searches[li].results[-len(idx):]])
        n_done += k
    return searches


def hardware_candidates(space: HardwareSpace | list, budget: float | None):
    """Every configuration of ``space`` (or of a list of HardwareConfigs) with its axes
    and area (mm^2) as arrays, and the mask of those within ``budget`` (None: all):
    (hws, dim, acc_kb, sp_kb, area, ok)."""
    hws = list(space) if isinstance(space, (list, tuple)) else space.enumerate()
    dim = np.array([h.dim for h in hws])
    acc = np.array([h.acc_kb for h in hws])
    sp = np.array([h.sp_kb for h in hws])
    area = np.asarray(area_mm2(dim, sp, acc), dtype=float)
    ok = np.ones(len(hws), dtype=bool) if budget is None else area <= budget
    return hws, dim, acc, sp, area, ok


def run_spotlight(layers, opts: SpotlightOptions, evaluator, store=None, *, hw_space: HardwareSpace | None = None,
                  hardware: HardwareConfig | None = None, progress=None) -> SpotlightResult:
    """Run (or resume, through ``store``) Spotlight on ``layers`` (unique shapes with
    counts); ``progress(point, best)`` is called after each hardware iteration.
    ``hardware``: software search only, on that one design (one hardware iteration;
    the generalisation scenario's evaluation step and a software DSE).

    Torch runs on one thread meanwhile (restored after): the GPs are tiny, one thread is
    faster than two contending ones, and the fits do not depend on the thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(layers, opts, evaluator, store, hw_space, hardware, progress)
    finally:
        torch.set_num_threads(threads)


def _run(layers, opts, evaluator, store, hw_space, hardware, progress) -> SpotlightResult:
    from cost.evaluate import network_edp

    from ..acquisition import lcb
    from ..models.gp import fit_gp
    from ..optim import select_from_pool

    layers = list(layers)
    if not layers:
        raise ValueError("no layers to co-design for")
    if hardware is not None:
        if not isinstance(hardware, HardwareConfig):
            raise TypeError(f"hardware must be a HardwareConfig; got {type(hardware).__name__}")
        hws, dim, acc, sp, area, ok = hardware_candidates([hardware], opts.area_budget_mm2)
        if not ok.any():
            raise ValueError(f"the given design's area {area[0]:.3f} mm^2 is over area-budget "
                             f"{opts.area_budget_mm2:g} mm^2")
    else:
        hws, dim, acc, sp, area, ok = hardware_candidates(hw_space or HardwareSpace(), opts.area_budget_mm2)
        if not ok.any():
            raise ValueError(f"area-budget {opts.area_budget_mm2:g} mm^2 is below the smallest design of the space "
                             f"({area.min():.3f} mm^2)")
    X_all = _hw_inputs(opts.variant, dim, acc, sp)
    tried = np.zeros(len(hws), dtype=bool)
    history: list[HardwarePoint] = []
    chosen: list[int] = []             # candidate index of each iteration
    ga, queue, generation = None, [], []   # Spotlight-GA's state
    n_iters = 1 if hardware is not None else min(opts.hw_iters, int(ok.sum()))
    for h in range(n_iters):
        rng = _rng(opts.seed, 1, h)
        free = ~tried & ok
        learned = [j for j, p in enumerate(history) if math.isfinite(p.objective)]
        if opts.variant == "ga":
            explore = h < max(2, opts.hw_warmup)
        else:
            explore = opts.variant == "r" or h < opts.hw_warmup or rng.random() < opts.hw_explore or len(learned) < 2
        if explore:
            i = int(rng.choice(np.flatnonzero(free)))
            phase = "random" if opts.variant == "r" else "warmup" if h < opts.hw_warmup else "explore"
        elif opts.variant == "ga":
            from ..genetic import PoolGA
            if ga is None:
                ga = PoolGA(X_all, h, h, _sub_seed(opts.seed, 8))
                ga.start(chosen, [p.objective for p in history])
            if not queue:
                if generation:
                    ga.tell([history[j].objective for j in generation])
                queue = [int(v) for v in ga.ask(ga.n_offsprings, exclude=~ok)]
                generation = []
            i = queue.pop(0)
            generation.append(h)
            phase = "ga"
        else:
            idx = [chosen[j] for j in learned]
            sur = fit_gp(X_all[idx], _log_y([history[j].objective for j in learned]),
                         seed=_sub_seed(opts.seed, 6, h))
            i = int(select_from_pool(lcb(sur, X_all, opts.kappa), 1, exclude=~free)[0])
            phase = "bo"
        tried[i] = True
        chosen.append(i)
        hw = hws[i]
        searches = _software_search(opts, evaluator, store, hw, layers, h)
        mappings, results = [], []
        for s in searches:
            m, r = s.best(opts.objective)
            if r is None:
                r = Result.infeasible(s.reason or "no feasible mapping evaluated", evaluator.fidelity)
            mappings.append(m)
            results.append(r)
        cost_ = network_edp(results, layers)
        point = HardwarePoint(h, hw, phase, tuple(mappings), tuple(results), cost_,
                              network_objective(cost_, opts.objective), float(area[i]),
                              sum(len(s.results) for s in searches))
        if store is not None:
            store.record_hardware(point)
        history.append(point)
        best = min((p for p in history if math.isfinite(p.objective)), key=lambda p: (p.objective, p.iteration),
                   default=None)
        if progress is not None:
            progress(point, best)
    best = min((p for p in history if math.isfinite(p.objective)), key=lambda p: (p.objective, p.iteration),
               default=None)
    return SpotlightResult(tuple(history), best)
