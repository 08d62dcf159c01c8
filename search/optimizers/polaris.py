"""Polaris: online hardware/software co-design with Starlight as the surrogate (thesis
chapter 6), the evaluations at any fidelity (the RTL in the loop by default).

The loop (section 6.1, Fig 6.1)::

    for h in 0 .. hw_iters - 1:                     (one iteration on a given design: software DSE)
        hardware step: pick a configuration (below), never one tried before or over
            ``area_budget_mm2``
        per layer l: a pool of ``sw_pool`` constrained mappings on it (`SoftwareSpace.pool`,
            scrambled Sobol, seeded by (seed, h, l))
        for j in 0 .. sw_iters - 1:                 (a round = one *sample*: one network evaluation)
            per layer: the pool row with the best acquisition, not evaluated before
            all layers of the round in ONE evaluator call (the RTL runs them in parallel)
            the surrogate updated with the round's feasible results (warm-started fine-tune)
        the design's network cost: the best combination of its evaluated mappings (below)

Surrogate and notation
----------------------
Starlight (`search.models.dkl.Starlight`, by default its residual variant) predicts, for
an input row x of a (hardware, mapping, layer) triple (`search.surrogate_data`), the mean
mu(x) and standard deviation sigma(x) of y = ln EDP = ln(energy_pJ x cycles) of one
occurrence of the layer. Candidate pools are scored with `Starlight.predict` (the exact
predictive marginals; never BoTorch's ``posterior`` on big batches). The RTL's energy is
its counters priced by the energy table, and the analytical model counts the same events
exactly (on the committed RTL data the two energies agree to the last digit; the whole
RTL/model difference is in the cycles), so each candidate's energy is known: E(x) =
exp(a_E(x)), a_E the row's analytical ln energy column, and its predicted delay is
C(x) = exp(mu(x) - a_E(x)).

Acquisition (all scores "lower is better"; kappa >= 0)
-------------------------------------------------------
Per layer, for a candidate x:

    ucb:  s(x) = mu(x) - kappa * sigma(x)         (the UCB of -ln EDP, negated; BoTorch's
                                                   UpperConfidenceBound with beta = kappa^2)
    ei:   s(x) = -log EI(x; b),  EI = E[max(b - y, 0)] = sigma * (phi(z) + z Phi(z)),
          z = (b - mu) / sigma, b the incumbent: in the software step the layer's lowest
          measured ln EDP on this design so far, in the hardware step its lowest on any
          design so far (none yet: the lowest mu among the candidates scored)

The network of L layers with counts n_l and one chosen mapping x_l each has
ln EDP_net = ln(sum_l n_l E_l) + ln(sum_l n_l C_l) (a product of sums). Its prediction,
by the delta method with the layers independent, is

    mu_N    = ln(sum_l n_l E(x_l)) + ln(sum_l n_l C(x_l))
    sigma_N = sqrt(sum_l (w_l sigma(x_l))^2),   w_l = n_l C(x_l) / sum_k n_k C(x_k)

(d ln EDP_net / d y_l = w_l: a layer's error moves only its delay), and the network
acquisition is S = mu_N - kappa sigma_N (ucb) or -log EI(mu_N, sigma_N; b_N) (ei, b_N
the lowest measured network ln EDP of the run so far; none yet: the lowest mu_N scored).

Hardware step
-------------
A hardware point u of the continuous cube [0, 1]^3 (the encoding of
`search.space.HardwareSpace.encode_arrays`: dim index / 3, (acc_kb - 8) / 248,
(sp_kb - 8) / 248) is scored as follows. Its realizable candidate r(u) is the allowed
configuration (within the area budget, not tried before) nearest to u in L1 over all
4,096 encodings (the paper's rounding; the first in index order on ties). Each layer's
``hw_pool`` candidate mappings are the first fitting rows on r(u) of a fixed per-(array
size, layer) Sobol draw (seeded by (seed, layer)); their input rows are those of r(u)
with the three hardware columns set to u itself. Each layer's candidate with the lowest
s(x) is its acquisition-best mapping, and u's score is the network acquisition S of those
mappings (+inf when some layer has no fitting mapping on r(u)).

``hw_search="continuous"`` (the paper's): S is minimised over the cube by
``hw_candidates`` scrambled Sobol points (seeded by (seed, h)), then a pattern search
from the best 3 (steps of +-delta along each axis, delta from 1/8 halving to 1/64, at
most ``hw_refine`` more points); the design is r(u*) of the best point u*.
``hw_search="enumerate"``: S at u = the encoding of every allowed configuration itself
(no rounding), the lowest taken (ties: the lower index); with ``hw_pool`` mappings per
layer per configuration (default 4 here: 4,096 x layers x hw_pool predictions per step).

Each design's network cost (product of sums)
--------------------------------------------
With m rounds a layer has up to m evaluated mappings on the design; the design's
network EDP is the minimum of (sum_l n_l E_l)(sum_l n_l C_l) over all m^L combinations
of them, found exactly by a Pareto sweep (`min_network_edp`: a combination that is
dominated in (energy sum, delay sum) after some layers stays dominated, since the
product is increasing in both sums). The thesis instead takes each layer's own lowest
EDP ("layerwise", a sum of products) and checks on BERT that it hits the same point
(Fig 6.2); `product_of_sums_check` repeats that check and both values are recorded.

Reproducibility and resumption
------------------------------
Every random choice comes from a generator seeded by (seed, iteration, layer); the
surrogate's updates are seeded (`Starlight.update`) and torch runs on one thread during
the run (restored after). Each evaluation is looked up in the run's store
(`search.runs.RunDir.lookup_many`) before it is made and recorded as soon as it is made,
so a rerun after a kill replays the same decisions (and the same surrogate updates),
simulates nothing stored, and ends with the same history and the same best design.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields

import numpy as np

from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import MappingError, footprint_rows, rows_needed
from hw.result import Result

from ..options import check_area_budget, check_bool, check_choice, check_int, check_int_limits, check_number
from ..software import UNIT_DIMS as SW_UNIT_DIMS, MappingBatch, SoftwareSpace
from ..space import HardwareSpace
from .spotlight import hardware_candidates

__all__ = ["ACQUISITIONS", "HW_SEARCHES", "PolarisOptions", "Sample", "PolarisPoint", "PolarisResult",
           "run_polaris", "layer_scores", "network_prediction", "network_scores", "log_ei", "nearest_allowed",
           "min_network_edp", "brute_force_min_network_edp", "layerwise_choice", "product_of_sums_check",
           "hardware_pools"]

ACQUISITIONS = ("ucb", "ei")
HW_SEARCHES = ("continuous", "enumerate")
_LIMITS = {"hw_iters": (1, 4096), "sw_iters": (1, 10_000), "sw_pool": (1, 1 << 16), "hw_candidates": (1, 4096),
           "hw_refine": (0, 4096), "update_iters": (0, 10_000), "seed": (0, 2**32 - 1)}


@dataclass(frozen=True)
class PolarisOptions:
    """Budgets and knobs (defaults: the paper's n = 8, m = 6 and UCB)."""

    hw_iters: int = 8
    sw_iters: int = 6
    acquisition: str = "ucb"
    kappa: float = 1.0
    hw_search: str = "continuous"
    hw_candidates: int = 64
    hw_refine: int = 36
    hw_pool: int | None = None          # None: 32 (continuous) or 4 (enumerate)
    sw_pool: int = 512
    update_iters: int = 10
    area_budget_mm2: float | None = None
    buffering: bool = True
    seed: int = 0

    def __post_init__(self):
        check_int_limits(self, _LIMITS)
        check_choice("acquisition", self.acquisition, ACQUISITIONS)
        check_choice("hw_search", self.hw_search, HW_SEARCHES)
        object.__setattr__(self, "kappa", check_number("kappa", self.kappa, 0, 100))
        if self.hw_pool is None:
            object.__setattr__(self, "hw_pool", 32 if self.hw_search == "continuous" else 4)
        else:
            check_int("hw_pool", self.hw_pool, 1, 4096)
        check_area_budget(self.area_budget_mm2)
        check_bool("buffering", self.buffering)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Sample:
    """One round: one mapping per layer on one design, evaluated together (a network
    evaluation), with the surrogate's prediction made before the evaluation."""

    iteration: int
    round: int
    mappings: tuple               # per layer: Mapping or None (no fitting mapping left)
    results: tuple                # per layer: Result
    cost: object                  # cost.NetworkCost of this round's mappings
    objective: float              # its network EDP (inf if a layer is infeasible)
    predicted_mean: tuple         # per layer: predicted ln EDP (nan where no mapping)
    predicted_std: tuple
    predicted_network: tuple      # (mu_N, sigma_N) of ln network EDP
    best_on_design: float         # min network EDP over combinations of rounds 0..round


@dataclass(frozen=True)
class PolarisPoint:
    """One hardware iteration (the fields `search.runs.RunDir.record_hardware` and
    `search.report` read, as Spotlight's `HardwarePoint`), with its samples."""

    iteration: int
    hw: HardwareConfig
    phase: str                    # "acquisition" or "given"
    mappings: tuple               # per layer: the best combination's mapping, or None
    results: tuple
    cost: object
    objective: float              # network EDP of the best combination (inf: infeasible)
    area_mm2: float
    evaluations: int
    samples: tuple                # Sample per round
    hw_point: tuple               # u* (the continuous point; the encoding itself if enumerated)
    acquisition_value: float      # S at u* (nan for a given design)
    layerwise_objective: float    # network EDP of each layer's lowest-EDP mapping


@dataclass(frozen=True)
class PolarisResult:
    history: tuple                # PolarisPoint per hardware iteration
    best: PolarisPoint | None
    timings: dict                 # seconds by phase (this sitting; a replay re-runs the surrogate)
    surrogate: object             # the final Starlight

    @property
    def samples(self) -> list[Sample]:
        return [s for p in self.history for s in p.samples]


# ---- seeds ------------------------------------------------------------------------------------
def _sub_seed(seed: int, *path: int) -> int:
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0])


# ---- acquisition (numpy; "lower is better") ---------------------------------------------------
_SQRT_HALF_PI = math.sqrt(math.pi / 2)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def log_ei(mean, std, best) -> np.ndarray:
    """log E[max(best - Y, 0)] for Y ~ N(mean, std^2) (minimisation), stable far below
    ``best``: log sigma + log h(z), h(z) = phi(z) + z Phi(z), z = (best - mean) / sigma,
    with h(z) = phi(z) (1 + z sqrt(pi/2) erfcx(-z / sqrt 2)) for z < 0 and its
    asymptote phi(z) / z^2 (1 - 3 / z^2) below z = -25."""
    from scipy.special import erfcx
    from scipy.stats import norm

    mean, std = np.asarray(mean, dtype=np.float64), np.maximum(np.asarray(std, dtype=np.float64), 1e-12)
    z = (np.asarray(best, dtype=np.float64) - mean) / std
    z = np.broadcast_to(z, np.broadcast_shapes(z.shape, std.shape))
    out = np.empty(z.shape)
    log_phi = -0.5 * z * z - _LOG_SQRT_2PI
    pos = z >= 0
    out[pos] = np.log(norm.pdf(z[pos]) + z[pos] * norm.cdf(z[pos]))
    mid = (~pos) & (z > -25)
    zm = z[mid]
    out[mid] = log_phi[mid] + np.log(np.maximum(1 + zm * _SQRT_HALF_PI * erfcx(-zm / math.sqrt(2)), 1e-300))
    far = z <= -25
    zf = z[far]
    out[far] = log_phi[far] - 2 * np.log(-zf) + np.log1p(-3 / (zf * zf))
    return out + np.log(np.broadcast_to(std, z.shape))


def layer_scores(mean, std, acquisition: str, kappa: float, best=None) -> np.ndarray:
    """Per-candidate acquisition scores of one layer, lower is better (module docstring);
    ``best`` (ei): the incumbent ln EDP (None: the lowest mean)."""
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    if acquisition == "ucb":
        return mean - kappa * std
    if acquisition == "ei":
        b = np.nanmin(mean) if best is None else best
        return -log_ei(mean, std, b)
    raise ValueError(f"acquisition must be one of {', '.join(ACQUISITIONS)}; got {acquisition!r}")


def network_prediction(mean, std, log_energy, counts) -> tuple[np.ndarray, np.ndarray]:
    """(mu_N, sigma_N) of ln network EDP from per-layer predictions of the chosen
    mappings (module docstring). Arrays (..., L); ``counts`` (L,). inf where a layer's
    mean is inf (no mapping)."""
    mean, std, le = (np.asarray(a, dtype=np.float64) for a in (mean, std, log_energy))
    n = np.asarray(counts, dtype=np.float64)
    bad = ~np.isfinite(mean).all(axis=-1)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    le = np.where(np.isfinite(le), le, 0.0)
    std = np.where(np.isfinite(std), std, 0.0)
    # sums in log space, shifted for range
    e_log = le + np.log(n)
    c_log = mean - le + np.log(n)
    from scipy.special import logsumexp

    le_sum, lc_sum = logsumexp(e_log, axis=-1), logsumexp(c_log, axis=-1)
    w = np.exp(c_log - lc_sum[..., None])
    mu = le_sum + lc_sum
    sd = np.sqrt(((w * std) ** 2).sum(axis=-1))
    return np.where(bad, np.inf, mu), np.where(bad, 0.0, sd)


def network_scores(mu_n, sd_n, acquisition: str, kappa: float, best=None) -> np.ndarray:
    """The network acquisition S (lower is better); inf stays inf."""
    mu_n, sd_n = np.asarray(mu_n, dtype=np.float64), np.asarray(sd_n, dtype=np.float64)
    ok = np.isfinite(mu_n)
    out = np.full(mu_n.shape, np.inf)
    if ok.any():
        b = (np.min(mu_n[ok]) if best is None else best)
        out[ok] = layer_scores(mu_n[ok], sd_n[ok], acquisition, kappa, b)
    return out


# ---- product of sums ---------------------------------------------------------------------------
def _options(energy, cycles):
    return [np.asarray(e, dtype=np.float64) for e in energy], [np.asarray(c, dtype=np.float64) for c in cycles]


def min_network_edp(energy, cycles, counts) -> tuple[float, tuple]:
    """Exact min over all combinations (one option per layer) of (sum_l n_l E_l) x
    (sum_l n_l C_l); ``energy[l]``, ``cycles[l]``: layer l's options (finite, > 0).
    Returns (value, per-layer option index). A Pareto sweep: after each layer only the
    partial combinations not dominated in (energy sum, cycles sum) are kept (ties: the
    first in enumeration order), which cannot lose the minimiser because the product is
    increasing in both sums."""
    es, cs = _options(energy, cycles)
    n = np.asarray(counts, dtype=np.float64)
    if len(es) != len(cs) or len(es) != len(n) or any(len(e) == 0 or len(e) != len(c) for e, c in zip(es, cs)):
        raise ValueError("every layer needs at least one option, with as many energies as cycles")
    E, C = np.zeros(1), np.zeros(1)
    back: list[tuple[np.ndarray, np.ndarray]] = []
    for e, c, k in zip(es, cs, n):
        m = len(e)
        E2 = (E[:, None] + k * e[None, :]).ravel()
        C2 = (C[:, None] + k * c[None, :]).ravel()
        parent = np.repeat(np.arange(len(E)), m)
        opt = np.tile(np.arange(m), len(E))
        order = np.lexsort((np.arange(len(E2)), C2, E2))          # by E, then C, then first
        cmin = np.minimum.accumulate(C2[order])
        keep = np.ones(len(order), dtype=bool)
        keep[1:] = C2[order][1:] < cmin[:-1]                     # strictly better delay than all before
        sel = order[keep]
        E, C = E2[sel], C2[sel]
        back.append((parent[sel], opt[sel]))
    i = int(np.argmin(E * C))
    value = float(E[i] * C[i])
    choice = []
    for parent, opt in reversed(back):
        choice.append(int(opt[i]))
        i = int(parent[i])
    return value, tuple(reversed(choice))


def brute_force_min_network_edp(energy, cycles, counts) -> tuple[float, tuple]:
    """The same minimum by enumerating all m^L combinations (for checks; exponential)."""
    import itertools

    es, cs = _options(energy, cycles)
    n = np.asarray(counts, dtype=np.float64)
    best, arg = math.inf, None
    for combo in itertools.product(*[range(len(e)) for e in es]):
        e = sum(n[l] * es[l][k] for l, k in enumerate(combo))
        c = sum(n[l] * cs[l][k] for l, k in enumerate(combo))
        if e * c < best:
            best, arg = e * c, combo
    return float(best), tuple(arg)


def layerwise_choice(energy, cycles) -> tuple:
    """Each layer's option of lowest E x C (the layerwise optimiser's pick; first of equals)."""
    es, cs = _options(energy, cycles)
    return tuple(int(np.argmin(e * c)) for e, c in zip(es, cs))


def product_of_sums_check(energy, cycles, counts) -> dict:
    """Thesis Fig 6.2's check: the network EDP (product of sums) of the layerwise choice
    against the exact minimum over all combinations (`min_network_edp`)."""
    es, cs = _options(energy, cycles)
    n = np.asarray(counts, dtype=np.float64)
    lw = layerwise_choice(es, cs)
    e = sum(n[l] * es[l][k] for l, k in enumerate(lw))
    c = sum(n[l] * cs[l][k] for l, k in enumerate(lw))
    opt, arg = min_network_edp(es, cs, n)
    return {"layerwise_edp": float(e * c), "layerwise_choice": lw, "min_edp": opt, "min_choice": arg,
            "equal": bool(np.isclose(e * c, opt, rtol=1e-12)), "ratio": float(e * c / opt),
            "combinations": int(np.prod([len(x) for x in es], dtype=np.float64))}


# ---- hardware candidates -----------------------------------------------------------------------
def nearest_allowed(points, enc: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Index (into ``enc``'s rows) of the allowed row nearest in L1 to each point (first
    on ties); -1 when nothing is allowed."""
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    idx = np.flatnonzero(allowed)
    if not len(idx):
        return np.full(len(pts), -1, dtype=np.int64)
    d = np.abs(pts[:, None, :] - enc[idx][None, :, :]).sum(-1)
    return idx[np.argmin(d, axis=1)]


def _unit_draws(n: int, seed: int) -> np.ndarray:
    import warnings

    from scipy.stats import qmc

    k = 1 << max(10, (32 * n - 1).bit_length())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The balance properties", category=UserWarning)
        return qmc.Sobol(d=SW_UNIT_DIMS, scramble=True, seed=seed).random(k)


class _DrawCache:
    """Per (array size, layer): the deduplicated mappings of a fixed Sobol draw and the
    scratchpad and accumulator rows each needs (`hw.mapping.rows_needed`), so that the
    fit test on one memory configuration is two comparisons."""

    def __init__(self, layers, n: int, seed: int, buffering: bool):
        self.layers, self.n, self.seed, self.buffering = layers, n, seed, buffering
        self._by: dict = {}

    def get(self, hw: HardwareConfig, li: int) -> tuple[MappingBatch, np.ndarray, np.ndarray]:
        key = (hw.dim, li)
        if key not in self._by:
            layer = self.layers[li]
            b = SoftwareSpace(hw, layer, self.buffering).from_unit_arrays(
                _unit_draws(self.n, _sub_seed(self.seed, 2, li)))
            _, first = np.unique(b.keys(), axis=0, return_index=True)
            b = b.take(np.sort(first))
            tile = b.factors[:, 1, :] * b.factors[:, 2, :]
            sp, acc = rows_needed(*footprint_rows(hw.dim, layer.stride, *tile.T), *b.buffers.T)
            self._by[key] = (b, sp, acc)
        return self._by[key]


def hardware_pools(hws, layer: Layer, n: int, seed: int = 0, buffering: bool = True) -> list[MappingBatch | None]:
    """Per configuration of ``hws``: up to ``n`` fitting constrained mappings of ``layer``,
    the first that fit of a fixed Sobol draw per array size (so one draw serves every
    memory size), falling back to `SoftwareSpace.pool` when none of the draw fits; None
    when no mapping fits at all. (As layer 0 of a run seeded with ``seed``.)"""
    return _pools(_DrawCache([layer], n, seed, buffering), hws, 0)


def _pools(cache: _DrawCache, hws, li: int) -> list[MappingBatch | None]:
    layer, n, seed, buffering = cache.layers[li], cache.n, cache.seed, cache.buffering
    out = []
    for hw in hws:
        b, sp, acc = cache.get(hw, li)
        take = np.flatnonzero((sp <= hw.sp_rows) & (acc <= hw.acc_rows))[:n]
        if len(take):
            out.append(b.take(take))
            continue
        try:
            out.append(SoftwareSpace(hw, layer, buffering).pool(n, seed=_sub_seed(seed, 9, li)))
        except MappingError:
            out.append(None)
    return out


# ---- the optimiser -----------------------------------------------------------------------------
class _Surrogate:
    """The current Starlight and the time spent on it."""

    def __init__(self, model, update_iters: int, timings: dict):
        self.model, self.update_iters, self.t = model, update_iters, timings

    def predict(self, X) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        try:
            if len(X) == 0:
                return np.zeros(0), np.zeros(0)
            return self.model.predict(X)
        finally:
            self.t["surrogate_predict"] += time.perf_counter() - t0

    def update(self, X, y) -> None:
        if len(y) == 0:
            return
        t0 = time.perf_counter()
        self.model = self.model.update(X, y, iters=self.update_iters)
        self.t["surrogate_update"] += time.perf_counter() - t0


def _log_energy(X: np.ndarray) -> np.ndarray:
    from ..surrogate_data import BASE_DIMS

    return X[:, BASE_DIMS + 1]


def _inputs(layer: Layer, hws: list, batches: list) -> list[np.ndarray]:
    """Surrogate input rows of each (hardware, batch) of one layer, in one vectorised
    call: `candidate_inputs` on the first design (the mapping columns do not depend on
    the hardware), then each row's own hardware columns and analytical columns (one
    `cost.evaluate_arrays` call for all rows)."""
    from ..surrogate_data import BASE_DIMS, analytical_columns, candidate_inputs

    keep = [i for i, b in enumerate(batches) if b is not None and len(b)]
    out: list = [None] * len(batches)
    if not keep:
        return out
    f = np.concatenate([batches[i].factors for i in keep])
    o = np.concatenate([batches[i].order for i in keep])
    bu = np.concatenate([batches[i].buffers for i in keep])
    rows_hw = [hws[i] for i in keep for _ in range(len(batches[i]))]
    X = candidate_inputs(layer, hws[keep[0]], f, o, bu, analytical=False)
    X[:, :3] = HardwareSpace.encode_arrays([h.dim for h in rows_hw], [h.acc_kb for h in rows_hw],
                                           [h.sp_kb for h in rows_hw])
    X[:, BASE_DIMS:] = analytical_columns([layer] * len(rows_hw), rows_hw, f, o, bu)
    s = 0
    for i in keep:
        out[i] = X[s:s + len(batches[i])]
        s += len(batches[i])
    return out


class _HardwareStep:
    """Scores hardware points (module docstring, "Hardware step")."""

    def __init__(self, opts: PolarisOptions, layers, sur: _Surrogate, hws, enc, allowed, draws, best_layer,
                 best_net):
        self.o, self.layers, self.sur = opts, layers, sur
        self.hws, self.enc, self.allowed, self.draws = hws, enc, allowed, draws
        self.best_layer, self.best_net = best_layer, best_net
        self.counts = np.array([lay.count for lay in layers], dtype=np.float64)
        self.rows: dict[int, list] = {}          # hw index -> per layer X or None

    def _ensure(self, idx) -> None:
        new = [int(i) for i in dict.fromkeys(int(i) for i in idx) if int(i) not in self.rows]
        if not new:
            return
        per_layer = []
        for li, layer in enumerate(self.layers):
            pools = _pools(self.draws, [self.hws[i] for i in new], li)
            per_layer.append(_inputs(layer, [self.hws[i] for i in new], pools))
        for k, i in enumerate(new):
            self.rows[i] = [per_layer[li][k] for li in range(len(self.layers))]

    def score(self, points: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """S at each point (rows of ``points``) scored on the rows of configuration idx."""
        self._ensure(idx)
        P, L = len(points), len(self.layers)
        mean = np.full((P, L), np.inf)
        std = np.zeros((P, L))
        le = np.zeros((P, L))
        for li in range(L):
            parts, owners = [], []
            for p in range(P):
                X = self.rows[int(idx[p])][li]
                if X is None:
                    continue
                X = X.copy()
                X[:, :3] = points[p]
                parts.append(X)
                owners.append(p)
            if not parts:
                continue
            mu, sd = self.sur.predict(np.concatenate(parts))
            s = 0
            for p, X in zip(owners, parts):
                k = len(X)
                sc = layer_scores(mu[s:s + k], sd[s:s + k], self.o.acquisition, self.o.kappa, self.best_layer[li])
                j = int(np.argmin(sc))
                mean[p, li], std[p, li], le[p, li] = mu[s + j], sd[s + j], _log_energy(X)[j]
                s += k
        mu_n, sd_n = network_prediction(mean, std, le, self.counts)
        return network_scores(mu_n, sd_n, self.o.acquisition, self.o.kappa, self.best_net)

    def continuous(self, h: int) -> tuple[int, np.ndarray, float]:
        import warnings

        from scipy.stats import qmc

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The balance properties", category=UserWarning)
            pts = qmc.Sobol(d=3, scramble=True, seed=_sub_seed(self.o.seed, 1, h)).random(self.o.hw_candidates)
        idx = nearest_allowed(pts, self.enc, self.allowed)
        sc = self.score(pts, idx)
        seen_p, seen_s = list(pts), list(sc)
        budget = self.o.hw_refine
        for start in np.argsort(sc, kind="stable")[:3]:
            x, fx, delta = pts[start].copy(), float(sc[start]), 1 / 8
            while budget > 0 and delta >= 1 / 64:
                cand = []
                for a in range(3):
                    for sgn in (1, -1):
                        y = x.copy()
                        y[a] = min(1.0, max(0.0, y[a] + sgn * delta))
                        if not np.array_equal(y, x):
                            cand.append(y)
                cand = np.array(cand[:budget])
                if not len(cand):
                    break
                budget -= len(cand)
                cs = self.score(cand, nearest_allowed(cand, self.enc, self.allowed))
                seen_p += list(cand)
                seen_s += list(cs)
                j = int(np.argmin(cs))
                if cs[j] < fx:
                    x, fx = cand[j], float(cs[j])
                else:
                    delta /= 2
        allp, alls = np.array(seen_p), np.array(seen_s)
        b = int(np.argmin(alls))
        return int(nearest_allowed(allp[b], self.enc, self.allowed)[0]), allp[b], float(alls[b])

    def enumerate(self) -> tuple[int, np.ndarray, float]:
        idx = np.flatnonzero(self.allowed)
        best_i, best_s = int(idx[0]), math.inf
        for s in range(0, len(idx), 256):
            part = idx[s:s + 256]
            sc = self.score(self.enc[part], part)
            self.rows.clear()                         # bounded memory
            j = int(np.argmin(sc))
            if sc[j] < best_s:
                best_i, best_s = int(part[j]), float(sc[j])
        return best_i, self.enc[best_i].copy(), best_s


def _timings() -> dict:
    return {k: 0.0 for k in ("hardware_step", "software_step", "evaluation", "sim_run_s", "sim_compile_s",
                             "surrogate_predict", "surrogate_update", "store", "total")}


def run_polaris(layers, opts: PolarisOptions, evaluator, store=None, *, surrogate, hardware=None,
                hw_space: HardwareSpace | None = None, progress=None) -> PolarisResult:
    """Run (or resume, through ``store``) Polaris on ``layers`` (unique shapes with counts)
    with the pre-trained ``surrogate`` (a `search.models.dkl.Starlight`; updated copies
    are made, the given one is not changed). ``hardware``: software DSE on that design
    (one hardware iteration). ``progress(event)`` is called with a dict (``stage``
    "hardware" / "simulate" / "round" / "design", ``h``, ``n``, ``j``, ``m``,
    ``in_flight``, ``best``) as the run goes.

    Torch runs on one thread meanwhile (restored after): reproducible updates, and the
    simulations have the other cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(list(layers), opts, evaluator, store, surrogate, hardware, hw_space, progress)
    finally:
        torch.set_num_threads(threads)


def _run(layers, opts, evaluator, store, surrogate, hardware, hw_space, progress) -> PolarisResult:
    if not layers:
        raise ValueError("no layers to co-design for")
    t_start = time.perf_counter()
    T = _timings()
    sur = _Surrogate(surrogate, opts.update_iters, T)
    if hardware is not None:
        if not isinstance(hardware, HardwareConfig):
            raise TypeError(f"hardware must be a HardwareConfig; got {type(hardware).__name__}")
        hws, dim, acc, sp, area, ok = hardware_candidates([hardware], opts.area_budget_mm2)
        if not ok.any():
            raise ValueError(f"the given design's area {area[0]:.3f} mm^2 is over area-budget "
                             f"{opts.area_budget_mm2:g} mm^2")
        n_iters = 1
    else:
        hws, dim, acc, sp, area, ok = hardware_candidates(hw_space or HardwareSpace(), opts.area_budget_mm2)
        if not ok.any():
            raise ValueError(f"area-budget {opts.area_budget_mm2:g} mm^2 is below the smallest design of the space "
                             f"({area.min():.3f} mm^2)")
        n_iters = min(opts.hw_iters, int(ok.sum()))
    enc = HardwareSpace.encode_arrays(dim, acc, sp)
    tried = np.zeros(len(hws), dtype=bool)
    counts = np.array([lay.count for lay in layers], dtype=np.float64)
    draws = _DrawCache(layers, opts.hw_pool, opts.seed, opts.buffering)
    history: list[PolarisPoint] = []
    best_layer_run = [None] * len(layers)       # lowest measured ln EDP per layer in the run (any design)
    n_rounds = opts.sw_iters

    def emit(**kw):
        if progress is not None:
            b = min((p.objective for p in history if math.isfinite(p.objective)), default=None)
            progress({"n": n_iters, "m": n_rounds, "best": b, **kw})

    for h in range(n_iters):
        # ---- hardware step
        t0 = time.perf_counter()
        emit(stage="hardware", h=h, j=0, in_flight=0)
        if hardware is not None:
            i_hw, u, acq, phase = 0, enc[0].copy(), math.nan, "given"
        else:
            best_net = min((math.log(p.objective) for p in history if math.isfinite(p.objective)), default=None)
            step = _HardwareStep(opts, layers, sur, hws, enc, ok & ~tried, draws, best_layer_run, best_net)
            i_hw, u, acq = step.continuous(h) if opts.hw_search == "continuous" else step.enumerate()
            phase = "acquisition"
        T["hardware_step"] += time.perf_counter() - t0
        tried[i_hw] = True
        hw = hws[i_hw]
        # ---- software step
        pools, Xs, reasons = [], [], []
        t0 = time.perf_counter()
        for li, layer in enumerate(layers):
            try:
                pools.append(SoftwareSpace(hw, layer, opts.buffering).pool(opts.sw_pool,
                                                                           seed=_sub_seed(opts.seed, 3, h, li)))
                reasons.append(None)
            except MappingError as e:
                pools.append(None)
                reasons.append(str(e).splitlines()[0])
        Xs = [None if p is None else x for p, x in zip(pools, _inputs_by_layer(layers, hw, pools))]
        T["software_step"] += time.perf_counter() - t0
        done = [np.zeros(0 if p is None else len(p), dtype=bool) for p in pools]
        picked: list[list[int]] = [[] for _ in layers]
        res_of: list[list[Result]] = [[] for _ in layers]
        samples: list[Sample] = []
        evaluations = 0
        for j in range(n_rounds if all(p is not None for p in pools) else 0):
            t0 = time.perf_counter()
            picks: dict[int, int] = {}
            pm, ps = np.full(len(layers), np.nan), np.full(len(layers), np.nan)
            for li in range(len(layers)):
                free = np.flatnonzero(~done[li])
                if not len(free):
                    continue
                mu, sd = sur.predict(Xs[li][free])
                meas = [math.log(e) for e in (_edp(r) for r in res_of[li]) if math.isfinite(e) and e > 0]
                sc = layer_scores(mu, sd, opts.acquisition, opts.kappa, min(meas) if meas else None)
                k = int(np.argmin(sc))
                picks[li] = int(free[k])
                pm[li], ps[li] = mu[k], sd[k]
            le = np.array([_log_energy(Xs[li][picks[li]][None])[0] if li in picks else np.nan
                           for li in range(len(layers))])
            pred = network_prediction(pm[None], ps[None], le[None], counts)
            T["software_step"] += time.perf_counter() - t0
            emit(stage="simulate", h=h, j=j, in_flight=len(picks), hw=hw)
            new = _evaluate_round(evaluator, store, hw, layers, pools, picks, h, j, T)
            evaluations += len(picks)
            X_new, y_new = [], []
            for li, r in new.items():
                done[li][picks[li]] = True
                picked[li].append(picks[li])
                res_of[li].append(r)
                e = _edp(r)
                if math.isfinite(e) and e > 0:
                    X_new.append(Xs[li][picks[li]])
                    y_new.append(math.log(e))
                    if best_layer_run[li] is None or math.log(e) < best_layer_run[li]:
                        best_layer_run[li] = math.log(e)
            if X_new:           # nothing feasible (e.g. every layer past the watchdog): nothing to learn
                sur.update(np.stack(X_new), np.array(y_new))
            from cost.evaluate import network_edp

            round_results = [new.get(li) or Result.infeasible("no fitting mapping left", evaluator.fidelity)
                             for li in range(len(layers))]
            c = network_edp(round_results, layers)
            best_here = _best_combination(layers, res_of)[0]
            samples.append(Sample(h, j, tuple(pools[li].mapping(picks[li]) if li in picks else None
                                              for li in range(len(layers))),
                                  tuple(round_results), c, float(c.edp) if c.feasible else math.inf,
                                  tuple(float(v) for v in pm), tuple(float(v) for v in ps),
                                  (float(pred[0][0]), float(pred[1][0])), best_here))
            emit(stage="round", h=h, j=j + 1, in_flight=0, sample=samples[-1], hw=hw)
        # ---- the design's network cost
        from cost.evaluate import network_edp

        value, choice, lw = _best_combination(layers, res_of)
        if choice is None:
            # per layer: a feasible result if it has one, else its first result (whose
            # reason, e.g. the watchdog's, says why), else why nothing was evaluated
            results = tuple(next((r for r in res_of[li] if r.feasible), res_of[li][0]) if res_of[li] else
                            Result.infeasible(reasons[li] or "no mapping evaluated", evaluator.fidelity)
                            for li in range(len(layers)))
            mappings = tuple(None for _ in layers)
        else:
            results = tuple(res_of[li][k] for li, k in enumerate(choice))
            mappings = tuple(pools[li].mapping(picked[li][k]) for li, k in enumerate(choice))
        c = network_edp(results, layers)
        point = PolarisPoint(h, hw, phase, mappings, results, c, float(c.edp) if c.feasible else math.inf,
                             float(area[i_hw]), evaluations, tuple(samples), tuple(float(v) for v in u),
                             float(acq), lw)
        if store is not None:
            t0 = time.perf_counter()
            store.record_hardware(point, extra={"objective": point.objective, "area_mm2": point.area_mm2,
                                                "evaluations": evaluations, "hw_point": list(point.hw_point),
                                                "acquisition": point.acquisition_value,
                                                "samples": [s.objective for s in samples],
                                                "layerwise_objective": lw})
            T["store"] += time.perf_counter() - t0
        history.append(point)
        emit(stage="design", h=h, j=n_rounds, in_flight=0, point=point)
    best = min((p for p in history if math.isfinite(p.objective)), key=lambda p: (p.objective, p.iteration),
               default=None)
    T["total"] = time.perf_counter() - t_start
    return PolarisResult(tuple(history), best, T, sur.model)


def _inputs_by_layer(layers, hw, pools) -> list:
    out = []
    for layer, p in zip(layers, pools):
        out.append(None if p is None else _inputs(layer, [hw], [p])[0])
    return out


def _edp(r: Result) -> float:
    if not r.feasible or r.cycles is None or r.energy_pj is None:
        return math.inf
    return float(r.energy_pj) * float(r.cycles)


def _best_combination(layers, res_of) -> tuple[float, tuple | None, float]:
    """(min network EDP over combinations, its per-layer indices into res_of, the
    layerwise choice's network EDP); (inf, None, inf) when a layer has nothing feasible."""
    E, C, idx = [], [], []
    for rs in res_of:
        ok = [k for k, r in enumerate(rs) if math.isfinite(_edp(r))]
        if not ok:
            return math.inf, None, math.inf
        E.append([rs[k].energy_pj for k in ok])
        C.append([rs[k].cycles for k in ok])
        idx.append(ok)
    counts = [lay.count for lay in layers]
    chk = product_of_sums_check(E, C, counts)
    choice = tuple(idx[li][k] for li, k in enumerate(chk["min_choice"]))
    return chk["min_edp"], choice, chk["layerwise_edp"]


def _evaluate_round(evaluator, store, hw, layers, pools, picks: dict, h: int, j: int, T: dict) -> dict:
    """Evaluate (look up first) each layer's picked mapping, all in one evaluator call;
    record the new ones. {layer index: Result}."""
    out, work, miss = {}, [], []
    t0 = time.perf_counter()
    for li, k in picks.items():
        m = pools[li].mapping(k)
        r = store.lookup_many(evaluator.fidelity, hw, layers[li], [m])[0] if store is not None else None
        if r is None:
            miss.append(li)
            work.append((hw, layers[li], pools[li].take([k])))
        else:
            out[li] = r
    T["store"] += time.perf_counter() - t0
    if work:
        t0 = time.perf_counter()
        fresh = evaluator.results_many(work)
        T["evaluation"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for li, rs in zip(miss, fresh):
            r = rs[0]
            out[li] = r
            ex = r.extra or {}
            T["sim_run_s"] += float(ex.get("sim_wall_s") or 0.0)
            T["sim_compile_s"] += float(ex.get("compile_s") or 0.0)
            if store is not None:
                store.record_many(evaluator.fidelity, hw, layers[li], [pools[li].mapping(picks[li])], [r],
                                  iteration=h, phase=f"round{j}", layer_index=li)
        T["store"] += time.perf_counter() - t0
    return out

