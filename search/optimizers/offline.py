"""Offline: gradient descent on Starlight's posterior mean, then rounding, then measurement
(thesis section 6.2's "Offline": offline gradient ascent on Starlight's mean function,
no online updates; issue 16).

Variables (per start s; L layers)
---------------------------------
u in [0, 1]^3, the hardware cube of `search.space.HardwareSpace.encode_arrays` (dim index
/ 3, (acc_kb - 8) / 248, (sp_kb - 8) / 248), and per layer the continuous mapping
encoding of `search.space.MappingSpace` (version 2): per loop i the scratchpad log share
t_i in [0, 1 - a_i] (a_i the array log share of the constrained space on the current
rounded design: the largest divisor <= dim; the DRAM share is 1 - a_i - t_i, so the
factors always multiply to the loop bound; a loop of bound 1 has every share 0), the
loop-order positions p in [0, 1]^7 and the buffer numbers q in [0, 1]^3. The input row x(u, t, p, q) of each layer is Starlight's
(`search.surrogate_data`): those 34 numbers, the layer's 9 shape numbers, the 21 factor
features (share x the layer's log bound: linear in the variables) and the two analytical
columns (ln cycles, ln energy of the analytical model).

Objective (predicted ln network EDP, Polaris's delta-method network prediction)
---------------------------------------------------------------------------------
    J = ln(sum_l n_l exp(e_l)) + ln(sum_l n_l exp(mu(x_l) - e_l))

mu = Starlight's posterior mean of ln EDP (BoTorch ``posterior(X).mean`` of its
`StarlightGP`, differentiable in X through torch: `Starlight.predict` is numpy under
``no_grad``, so the gradient is taken on the torch model itself), e_l the row's
analytical ln energy. The analytical columns (and a_i) are those of the current ROUNDED
point: piecewise constant in the variables (the analytical model is not differentiable),
so the gradient of J is exact almost everywhere and those columns are refreshed every
``refresh_every`` steps (DOSA's periodic rounding). Adam (``lr``) on J summed over the
starts, ``steps`` steps, each step followed by projection onto the box.

Rounding
--------
Design: the allowed configuration (within ``area_budget_mm2``) nearest to u in L1 over
the encodings (`polaris.nearest_allowed`). Mapping of layer l: among the distinct
constrained mappings of a fixed draw of ``round_pool`` scrambled Sobol points (seeded by
(seed, 2, l): `oracle.layer_candidates`) that FIT the design, the one nearest in L1 to
the continuous encoding (31 numbers; first on ties); a layer with no fitting candidate
makes the point infeasible. Each start keeps the best rounded point (by predicted J,
`Starlight.predict` on its rows) of all refreshes and the final one.

Starts and measurement
----------------------
``starts`` scrambled Sobol points u (seeded by (seed, 1)); each layer's start mapping a
random fitting candidate (seeded by (seed, 4, s, l)). After descent the starts' rounded
points are ranked by predicted J, one per design (the best), and the first
``sample_budget`` designs are measured in that order, one sample (all layers in one
evaluator call) each; iteration = rank, phase "offline". Deterministic given the
options and the surrogate (torch on one thread, the surrogate not changed).

What the gradient sees
----------------------
With the residual Starlight (the default surrogate) the mean is a(x) + r(x), a the
analytical ln EDP read from the two analytical columns: a is piecewise constant here, so
the gradient is that of the learned residual r (and of the kernel's dependence on the
other columns), and the analytical part enters only through the refreshes and the
best-rounded-point bookkeeping. With a non-residual Starlight (``DKLOptions(residual=
False)``) the whole mean is differentiable in the variables. Measured (2026-12, one
core, 2 others busy), ResNet-50's 24 unique layers, defaults, a Starlight of 571 RTL
rows: 70 s (gradient steps 46 s, rounding/refreshes 22 s); its best measured design
(analytical fidelity) was 2.6e18 against the analytical oracle's 1.5e17, in line with
the thesis's remark that Offline performs poorly.

Learning rate (tuned as DOSA's was; `python -m search.experiments codesign --methods
offline --fidelity analytical --set offline.lr=LR`, best measured network EDP, analytical
evaluator, the default surrogate): BERT seed 0: steps 0 (the rounded starts alone)
1.14e19, lr 0.002 1.14e19, 0.02 (the earlier default) 7.53e18, 0.1 4.36e18, 0.3 1.29e18
(seed 1: 2.91e18), 1.0 2.43e18; ResNet-50 seed 0: 0.02 2.63e18, 0.3 2.85e18. 0.3 is the
default: much better on BERT, within 8 % on ResNet-50, where the descent finds designs
the surrogate over-rates whatever the rate.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, fields

import numpy as np

from hw.mapping import footprint_rows, rows_needed

from ..options import check_area_budget, check_bool, check_int, check_number
from ..space import HardwareSpace, MappingSpace
from .oracle import layer_candidates, unit_draw
from .polaris import nearest_allowed
from .vanilla_bo import (BaselineResult, allowed_designs, best_of, design_point,
                         evaluate_sample, make_sample, one_thread, record_point, rng, sub_seed)

__all__ = ["OfflineOptions", "run_offline", "Descent"]


@dataclass(frozen=True)
class OfflineOptions:
    """Defaults: 48 starts x 300 Adam steps (lr 0.3, the module docstring's sweep), refresh
    every 10, measured 48 designs."""

    starts: int = 48
    steps: int = 300
    lr: float = 0.3
    refresh_every: int = 10
    round_pool: int = 1024
    sample_budget: int = 48
    area_budget_mm2: float | None = None
    buffering: bool = True
    seed: int = 0

    def __post_init__(self):
        check_int("starts", self.starts, 1, 4096)
        check_int("steps", self.steps, 0, 100_000)
        check_int("refresh_every", self.refresh_every, 1, 100_000)
        check_int("round_pool", self.round_pool, 1, 1 << 18)
        check_int("sample_budget", self.sample_budget, 1, 1 << 20)
        check_int("seed", self.seed, 0, 2**32 - 1)
        object.__setattr__(self, "lr", check_number("lr", self.lr, 0, 1, lo_open=True))
        check_area_budget(self.area_budget_mm2)
        check_bool("buffering", self.buffering)

    def to_dict(self) -> dict:
        return {"method": "offline", **{f.name: getattr(self, f.name) for f in fields(self)}}


class _Candidates:
    """Per (array size, layer): the draw's distinct constrained mappings, their rows
    needed and encodings; per (design, layer): the fitting ones."""

    def __init__(self, layers, hws, n: int, seed: int, buffering: bool):
        self.layers, self.hws, self.buffering = layers, hws, buffering
        self.units = [unit_draw(n, seed, li) for li in range(len(layers))]
        self._by_dim: dict = {}
        self._fit: dict = {}

    def by_dim(self, i_hw: int, li: int):
        hw = self.hws[i_hw]
        key = (hw.dim, li)
        if key not in self._by_dim:
            layer = self.layers[li]
            b = layer_candidates(hw, layer, self.units[li], self.buffering)
            tile = b.factors[:, 1, :] * b.factors[:, 2, :]
            sp, acc = rows_needed(*footprint_rows(hw.dim, layer.stride, *tile.T), *b.buffers.T)
            enc = MappingSpace(hw, layer, version=2).encode_arrays(b.factors, b.order, b.buffers)
            self._by_dim[key] = (b, sp, acc, enc)
        return self._by_dim[key]

    def fitting(self, i_hw: int, li: int):
        """(batch, encodings) of the candidates fitting design i_hw (None if none)."""
        key = (i_hw, li)
        if key not in self._fit:
            hw = self.hws[i_hw]
            b, sp, acc, enc = self.by_dim(i_hw, li)
            k = np.flatnonzero((sp <= hw.sp_rows) & (acc <= hw.acc_rows))
            self._fit[key] = (b.take(k), enc[k]) if len(k) else None
        return self._fit[key]


class Descent:
    """The continuous variables of all starts, their rounding and the objective J
    (module docstring). ``surrogate``: a `search.models.dkl.Starlight` (a copy of its
    torch model is used, with its parameters frozen)."""

    def __init__(self, layers, surrogate, hws, enc, allowed, cands: _Candidates):
        import torch

        from ..surrogate_data import layer_features

        self.layers, self.sur, self.hws, self.enc, self.allowed, self.c = layers, surrogate, hws, enc, allowed, cands
        self.model = copy.deepcopy(surrogate.model)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.counts = torch.tensor([lay.count for lay in layers], dtype=torch.float64)
        self.lay = torch.tensor(np.stack([layer_features(lay) for lay in layers]), dtype=torch.float64)  # (L, 9)
        # loops of bound 1 have every share 0 (`MappingSpace.encode_arrays`)
        self.big = (self.lay[:, :7] > 0).to(torch.float64)                                       # (L, 7)

    # ---- rounding ----------------------------------------------------------------------
    def round(self, u: np.ndarray, m: np.ndarray):
        """(design indices (S,), per start the per-layer (batch, row) or None) of the
        points u (S, 3), m (S, L, 31)."""
        idx = nearest_allowed(u, self.enc, self.allowed)
        picks = []
        for s in range(len(u)):
            row = []
            for li in range(len(self.layers)):
                f = self.c.fitting(int(idx[s]), li)
                if f is None:
                    row = None
                    break
                b, e = f
                row.append((b, int(np.argmin(np.abs(e - m[s, li][None, :]).sum(axis=1)))))
            picks.append(row)
        return idx, picks

    def rows(self, idx, picks):
        """Starlight input rows (S, L, D) of the rounded points (NaN rows where None)."""
        from ..surrogate_data import BASE_DIMS, candidate_inputs

        S, L = len(idx), len(self.layers)
        X = np.full((S, L, BASE_DIMS + 2), np.nan)
        for li, layer in enumerate(self.layers):
            ss = [s for s in range(S) if picks[s] is not None]
            if not ss:
                continue
            f = np.stack([picks[s][li][0].factors[picks[s][li][1]] for s in ss])
            o = np.stack([picks[s][li][0].order[picks[s][li][1]] for s in ss])
            b = np.stack([picks[s][li][0].buffers[picks[s][li][1]] for s in ss])
            X[ss, li] = candidate_inputs(layer, [self.hws[int(idx[s])] for s in ss], f, o, b)
        return X

    def network_mean(self, mu, log_energy):
        """J from per-layer means and analytical ln energies (..., L) (torch or numpy)."""
        import torch

        mu, le = torch.as_tensor(mu, dtype=torch.float64), torch.as_tensor(log_energy, dtype=torch.float64)
        n = self.counts.log()
        return torch.logsumexp(le + n, dim=-1) + torch.logsumexp(mu - le + n, dim=-1)

    def predicted(self, X) -> np.ndarray:
        """Exact predicted J (S,) of rounded rows (inf where NaN: no fitting point)."""
        from ..surrogate_data import BASE_DIMS

        S, L, D = X.shape
        out = np.full(S, np.inf)
        ok = np.isfinite(X.reshape(S, -1)).all(axis=1)
        if ok.any():
            mu, _ = self.sur.predict(X[ok].reshape(-1, D))
            out[ok] = self.network_mean(mu.reshape(-1, L), X[ok][:, :, BASE_DIMS + 1]).numpy()
        return out

    # ---- the differentiable objective --------------------------------------------------------
    def inputs(self, u, t, p, q, a, const):
        """Torch rows (S, L, D): u (S, 3), t (S, L, 7) scratchpad shares, p (S, L, 7), q
        (S, L, 3); a (S, L, 7) array shares and const (S, L, 2) analytical columns."""
        import torch

        S, L = t.shape[:2]
        dram = (1.0 - a - t) * self.big
        shares = torch.stack([dram, t, a], dim=-1)                        # (S, L, 7, 3)
        lay = self.lay[None].expand(S, L, -1)
        fac = (shares * lay[..., :7, None]).reshape(S, L, 21)
        return torch.cat([u[:, None, :].expand(S, L, 3), shares.reshape(S, L, 21), p, q, lay, fac, const], dim=-1)

    def objective(self, X, le):
        """J (S,) of torch rows X (S, L, D), differentiable in X."""
        S, L, D = X.shape
        mu = self.model.posterior(X.reshape(-1, D)).mean.reshape(S, L)
        return self.network_mean(mu, le)


def _split(m: np.ndarray):
    """(t, p, q, a) of encodings m (..., 31): spad shares, positions, buffers, array shares."""
    sh = m[..., :21].reshape(*m.shape[:-1], 7, 3)
    return sh[..., 1], m[..., 21:28], m[..., 28:31], sh[..., 2]


def run_offline(layers, opts: OfflineOptions, evaluator, store=None, *, surrogate, progress=None,
                hw_space: HardwareSpace | None = None) -> BaselineResult:
    """Descend on Starlight's mean, round, measure (module docstring). ``info``:
    ``trace`` (per step the summed J of the continuous points), ``starts`` (per start
    the design index, its predicted J and the step of its best rounded point)."""
    if not isinstance(opts, OfflineOptions):
        raise TypeError(f"opts must be OfflineOptions; got {type(opts).__name__}")
    return one_thread(lambda: _run(list(layers), opts, evaluator, store, surrogate, progress, hw_space))


def descend(D: Descent, u0, m0, opts: OfflineOptions, T: dict | None = None):
    """Adam on J from (u0 (S, 3), m0 (S, L, 31)); returns (best rounded per start as
    (design index, picks, J, step), trace of summed continuous J, final u, final m)."""
    import torch

    from ..surrogate_data import BASE_DIMS

    T = {} if T is None else T
    S, L = m0.shape[:2]
    t0_, p0, q0, _ = _split(m0)
    u = torch.tensor(u0, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(t0_, dtype=torch.float64, requires_grad=True)
    p = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
    q = torch.tensor(q0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([u, t, p, q], lr=opts.lr)
    best = [(-1, None, math.inf, -1)] * S
    trace = []

    def current():
        sh = torch.stack([(1.0 - a - t) * D.big, t, a], dim=-1).detach().numpy().reshape(S, L, 21)
        return u.detach().numpy(), np.concatenate([sh, p.detach().numpy(), q.detach().numpy()], axis=-1)

    def refresh(step):
        nonlocal a, const
        t1 = time.perf_counter()
        uu, mm = current()
        idx, picks = D.round(uu, mm)
        X = D.rows(idx, picks)
        J = D.predicted(X)
        for s in range(S):
            if J[s] < best[s][2]:
                best[s] = (int(idx[s]), picks[s], float(J[s]), step)
        # the constants of the rounded point; where none fits, keep the previous ones
        ok = np.isfinite(X.reshape(S, -1)).all(axis=1)
        a_new = a.numpy().copy()
        c_new = const.numpy().copy()
        if ok.any():
            a_new[ok] = X[ok][:, :, 3:24].reshape(-1, L, 7, 3)[..., 2]
            c_new[ok] = X[ok][:, :, BASE_DIMS:]
        a, const = torch.tensor(a_new), torch.tensor(c_new)
        with torch.no_grad():
            t.copy_(torch.minimum(t.clamp_min(0.0), (1.0 - a) * D.big))
        T["rounding"] = T.get("rounding", 0.0) + time.perf_counter() - t1

    a = torch.tensor(_split(m0)[3], dtype=torch.float64)
    const = torch.zeros(S, L, 2, dtype=torch.float64)
    refresh(0)
    for step in range(opts.steps):
        t1 = time.perf_counter()
        opt.zero_grad()
        X = D.inputs(u, t, p, q, a, const)
        J = D.objective(X, const[..., 1])
        loss = J[torch.isfinite(J)].sum()
        loss.backward()
        opt.step()
        with torch.no_grad():
            u.clamp_(0.0, 1.0)
            p.clamp_(0.0, 1.0)
            q.clamp_(0.0, 1.0)
            t.copy_(torch.minimum(t.clamp_min(0.0), (1.0 - a) * D.big))
        trace.append(float(loss.detach()))
        T["gradient"] = T.get("gradient", 0.0) + time.perf_counter() - t1
        if (step + 1) % opts.refresh_every == 0 or step + 1 == opts.steps:
            refresh(step + 1)
    uu, mm = current()
    return best, trace, uu, mm


def _run(layers, opts, evaluator, store, surrogate, progress, hw_space) -> BaselineResult:
    from scipy.stats import qmc

    if not layers:
        raise ValueError("no layers to co-design for")
    t_start = time.perf_counter()
    T = {"start": 0.0, "gradient": 0.0, "rounding": 0.0, "evaluation": 0.0, "evaluate_total": 0.0, "total": 0.0}
    hws, dim, acc, sp, area, ok = allowed_designs(opts.area_budget_mm2, hw_space)
    enc = HardwareSpace.encode_arrays(dim, acc, sp)
    cands = _Candidates(layers, hws, opts.round_pool, opts.seed, opts.buffering)
    D = Descent(layers, surrogate, hws, enc, ok, cands)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The balance properties", category=UserWarning)
        u0 = qmc.Sobol(d=3, scramble=True, seed=sub_seed(opts.seed, 1)).random(opts.starts)
    idx0 = nearest_allowed(u0, enc, ok)
    m0 = np.zeros((opts.starts, len(layers), 31))
    for s in range(opts.starts):
        for li in range(len(layers)):
            f = cands.fitting(int(idx0[s]), li)
            if f is None:        # nothing fits this design: the draw's first (the descent moves on)
                m0[s, li] = cands.by_dim(int(idx0[s]), li)[3][0]
                continue
            m0[s, li] = f[1][int(rng(opts.seed, 4, s, li).integers(len(f[1])))]
    T["start"] = time.perf_counter() - t0
    best, trace, _, _ = descend(D, u0, m0, opts, T)
    # one point per design, ranked by predicted J
    ranked = sorted((b for b in best if b[1] is not None and math.isfinite(b[2])), key=lambda b: (b[2], b[0]))
    seen, chosen = set(), []
    for b in ranked:
        if b[0] not in seen:
            seen.add(b[0])
            chosen.append(b)
    history = []
    for h, (i, picks, J, step) in enumerate(chosen[:opts.sample_budget]):
        hw = hws[i]
        mappings = [bt.mapping(k) for bt, k in picks]
        results = evaluate_sample(evaluator, store, hw, layers, mappings, iteration=h, phase="offline", timings=T)
        sample = make_sample(h, 0, "offline", layers, mappings, results)
        point = design_point(h, hw, "offline", layers, [sample], area[i], fidelity=evaluator.fidelity,
                             extra={"predicted_log_edp": J, "best_step": step})
        record_point(store, point)
        history.append(point)
        if progress is not None:
            progress(point, best_of(history))
    T["total"] = time.perf_counter() - t_start
    info = {"trace": trace, "starts": [(b[0], b[2], b[3]) for b in best]}
    return BaselineResult(tuple(history), best_of(history), T, info)
