"""Offline (search.optimizers.offline): the torch objective against Starlight's own
predictions, its gradient against finite differences, descent lowering the predicted
mean, the rounding (allowed, L1-nearest designs; fitting, nearest constrained
mappings), and runs: the sample and area budgets from a run store, reproducibility."""

import numpy as np
import pytest
import torch

import cost
from hw.layer import LOOPS
from search.compare_runs import score_run
from search.evaluators import AnalyticalEvaluator
from search.optimizers import offline as F
from search.optimizers.offline import OfflineOptions, run_offline
from search.optimizers.spotlight import hardware_candidates
from search.runs import RunDir
from search.software import SoftwareSpace
from search.space import HardwareSpace, MappingSpace
from search.surrogate_data import BASE_DIMS
from tests.search._baselines import LAYERS, stored_run as stored_baseline_run

SMALL = dict(starts=6, steps=20, refresh_every=5, round_pool=128, sample_budget=4, seed=2)

pytestmark = pytest.mark.usefixtures("module_torch_thread")


def _setup(sur, budget=None, starts=5, seed=0):
    hws, dim, acc, sp, area, ok = hardware_candidates(HardwareSpace(), budget)
    enc = HardwareSpace.encode_arrays(dim, acc, sp)
    cands = F._Candidates(LAYERS, hws, 128, seed, True)
    D = F.Descent(LAYERS, sur, hws, enc, ok, cands)
    r = np.random.default_rng(seed)
    u = r.uniform(0, 1, (starts, 3))
    idx = F.nearest_allowed(u, enc, ok)
    m = np.stack([np.stack([cands.fitting(int(i), li)[1][0] for li in range(len(LAYERS))]) for i in idx])
    return D, u, m, hws, enc, ok


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory, tiny_surrogate):
    res, path, _ = stored_baseline_run(tmp_path_factory, "offline", OfflineOptions(**SMALL), run_offline,
                                       surrogate=tiny_surrogate)
    return res, path


# ---- options ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, msg", [({"starts": 0}, "starts must be an integer in 1..4,096; got 0"),
                                     ({"lr": 0}, "lr must be a number in \\(0, 1\\]; got 0"),
                                     ({"refresh_every": 0}, "refresh-every must be an integer"),
                                     ({"sample_budget": 0}, "sample-budget must be an integer"),
                                     ({"area_budget_mm2": 0}, "area-budget must be a positive number")])
def test_options_validate(kw, msg):
    with pytest.raises(ValueError, match=msg):
        OfflineOptions(**kw)


# ---- the objective ---------------------------------------------------------------------------
def _torch_point(D, u, m):
    idx, picks = D.round(u, m)
    X = D.rows(idx, picks)
    t, p, q, a = F._split(m)
    T = lambda v: torch.tensor(v, dtype=torch.float64)
    return X, (T(u), T(t), T(p), T(q), T(a), T(X[..., BASE_DIMS:]))


def test_torch_objective_equals_starlight_predictions_at_rounded_points(tiny_surrogate):
    D, u, m, hws, enc, ok = _setup(tiny_surrogate)
    idx, picks = D.round(u, m)
    X = D.rows(idx, picks)
    # the continuous point of a rounded one rebuilds its rows exactly
    m_r = X[:, :, 3:34]
    _, args = _torch_point(D, enc[idx], m_r)
    Xt = D.inputs(*args)
    assert np.allclose(Xt.numpy(), X, rtol=0, atol=1e-12)
    J = D.objective(Xt, args[5][..., 1]).numpy()
    assert np.allclose(J, D.predicted(X), rtol=1e-8)
    mu, _ = tiny_surrogate.predict(X.reshape(-1, X.shape[-1]))
    le = X[:, :, BASE_DIMS + 1]
    n = np.array([l.count for l in LAYERS])
    by_hand = np.log((n * np.exp(le)).sum(1)) + np.log((n * np.exp(mu.reshape(le.shape) - le)).sum(1))
    assert np.allclose(J, by_hand, rtol=1e-8)


def test_gradient_matches_finite_differences(tiny_surrogate):
    D, u, m, *_ = _setup(tiny_surrogate, starts=2)
    _, (uu, t, p, q, a, c) = _torch_point(D, u, m)
    uu.requires_grad_(True)
    p.requires_grad_(True)
    J = D.objective(D.inputs(uu, t, p, q, a, c), c[..., 1]).sum()
    J.backward()
    h = 1e-6
    for var, grad in ((uu, uu.grad), (p, p.grad)):
        flat = var.detach().clone().reshape(-1)
        for k in range(0, flat.numel(), max(1, flat.numel() // 5)):
            def f(delta):
                v = flat.clone()
                v[k] += delta
                args = [uu.detach(), t, p.detach(), q, a, c]
                args[0 if var is uu else 2] = v.reshape(var.shape)
                return float(D.objective(D.inputs(*args), c[..., 1]).sum())
            fd = (f(h) - f(-h)) / (2 * h)
            assert grad.reshape(-1)[k].item() == pytest.approx(fd, rel=1e-4, abs=1e-6)
    assert float(uu.grad.abs().sum()) > 0


def test_gradient_steps_lower_the_predicted_mean(tiny_surrogate):
    """With the analytical columns frozen (no refresh before the end), every few Adam
    steps lower J, and the end is well below the start."""
    D, u, m, *_ = _setup(tiny_surrogate, starts=4)
    opts = OfflineOptions(steps=30, refresh_every=1000, lr=0.01)
    best, trace, u1, m1 = F.descend(D, u, m, opts)
    assert trace[-1] < trace[0] - 1e-3
    assert all(b <= a + 1e-9 for a, b in zip(trace[::5], trace[5::5]))
    assert np.all((u1 >= 0) & (u1 <= 1)) and np.all((m1 >= -1e-12) & (m1 <= 1 + 1e-12))
    # the shares of every loop still add up to 1 (the tiling multiplies to the bound), 0
    # for a loop of bound 1
    big = np.array([[lay.dims[lp] > 1 for lp in LOOPS] for lay in LAYERS], dtype=float)
    assert np.allclose(m1[..., :21].reshape(*m1.shape[:2], 7, 3).sum(-1), big[None])


def test_rounding_gives_allowed_nearest_designs_and_fitting_nearest_mappings(tiny_surrogate):
    budget = 0.6
    D, _, _, hws, enc, ok = _setup(tiny_surrogate, budget=budget)
    r = np.random.default_rng(5)
    u = r.uniform(0, 1, (6, 3))
    m = r.uniform(0, 1, (6, len(LAYERS), 31))
    idx, picks = D.round(u, m)
    for s in range(len(u)):
        assert ok[idx[s]]
        d = np.abs(enc - u[s]).sum(1)
        assert d[idx[s]] == pytest.approx(d[ok].min())
        hw = hws[idx[s]]
        assert float(cost.area_mm2(hw.dim, hw.sp_kb, hw.acc_kb)) <= budget
        for li, layer in enumerate(LAYERS):
            b, k = picks[s][li]
            assert SoftwareSpace(hw, layer).fits(b.take([k]))[0]
            e = MappingSpace(hw, layer, version=2).encode_arrays(b.factors, b.order, b.buffers)
            dist = np.abs(e - m[s, li]).sum(1)
            assert dist[k] == pytest.approx(dist.min())


# ---- runs ------------------------------------------------------------------------------------
def test_run_budget_from_the_store_and_fitting_mappings(stored_run):
    res, path = stored_run
    s = score_run(path)
    assert 1 <= s.samples <= SMALL["sample_budget"] and s.samples == len(res.history)
    assert len({p.hw for p in res.history}) == len(res.history)
    preds = [p.extra["predicted_log_edp"] for p in res.history]
    assert preds == sorted(preds)
    for p in res.history:
        for m, layer in zip(p.mappings, LAYERS):
            assert m.check(p.hw, layer).ok
    assert s.best_edp == pytest.approx(res.best.objective, rel=1e-12)


class _Counting(AnalyticalEvaluator):
    def __init__(self):
        super().__init__()
        self.calls = []

    def results_many(self, work):
        self.calls.append(len(work))
        return super().results_many(work)


def test_resumed_run_evaluates_nothing_again_and_one_call_per_sample(stored_run, tiny_surrogate, tmp_path):
    res, path = stored_run
    opts = OfflineOptions(**SMALL)
    ev = _Counting()
    with RunDir.open(path, opts.to_dict(), seeds={"seed": opts.seed}) as run:
        again = run_offline(LAYERS, opts, ev, run, surrogate=tiny_surrogate)
        assert {r.phase for r in run.evaluations()} == {"offline"}
    assert ev.calls == [] and [p.objective for p in again.history] == [p.objective for p in res.history]
    fresh = _Counting()
    run_offline(LAYERS, opts, fresh, None, surrogate=tiny_surrogate)
    assert fresh.calls == [len(LAYERS)] * len(res.history)


def test_same_options_same_history(stored_run, tiny_surrogate):
    res, _ = stored_run
    again = run_offline(LAYERS, OfflineOptions(**SMALL), AnalyticalEvaluator(), surrogate=tiny_surrogate)
    assert [(p.hw, p.mappings, p.objective) for p in again.history] == \
        [(p.hw, p.mappings, p.objective) for p in res.history]
    assert again.info["trace"] == res.info["trace"]


def test_area_budget_is_respected(tiny_surrogate):
    budget = 0.5
    res = run_offline(LAYERS, OfflineOptions(**{**SMALL, "area_budget_mm2": budget}), AnalyticalEvaluator(),
                      surrogate=tiny_surrogate)
    assert res.history and all(float(cost.area_mm2(p.hw.dim, p.hw.sp_kb, p.hw.acc_kb)) <= budget
                               for p in res.history)
