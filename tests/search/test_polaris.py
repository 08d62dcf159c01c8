"""Polaris (search.optimizers.polaris): the product-of-sums minimum against brute force,
the acquisition and network formulas against hand computations, the hardware pools and
inputs against the library's own per-design functions, and small analytical runs against
an independent re-evaluation, the store's contents, a second run and an interrupted one."""

import itertools
import math

import numpy as np
import pytest

import cost
from hw.config import HardwareConfig
from hw.layer import LOOPS, Layer
from hw.mapping import check_arrays
from search.evaluators import AnalyticalEvaluator
from search.optimizers import polaris as P
from search.optimizers.polaris import PolarisOptions, run_polaris
from search.runs import RunDir
from search.software import SoftwareSpace
from search.space import HardwareSpace
from search.surrogate_data import BASE_DIMS, candidate_inputs

LAYERS = [Layer.conv("conv", n=1, k=32, c=16, p=8, q=8, r=3, s=3, padding=1, count=2),
          Layer.gemm("fc", m=16, k=64, n=32)]
SMALL = dict(hw_iters=2, sw_iters=3, sw_pool=48, hw_candidates=12, hw_refine=6, update_iters=2)

pytestmark = pytest.mark.usefixtures("module_torch_thread")


class _Store:
    """A dict store that also counts what it was asked to record."""

    def __init__(self):
        self.evals, self.hw, self.recorded = {}, [], 0

    def lookup_many(self, fidelity, hw, layer, mappings):
        return [self.evals.get((hw, layer, m)) for m in mappings]

    def record_many(self, fidelity, hw, layer, mappings, results, **ctx):
        for m, r in zip(mappings, results):
            assert (hw, layer, m) not in self.evals, "an evaluation was made twice"
            self.evals[(hw, layer, m)] = r
            self.recorded += 1

    def record_hardware(self, point, **kw):
        self.hw.append(point)


class _Analytic:
    """A surrogate whose prediction is the analytical model's ln EDP (exact at
    analytical fidelity) with a fixed std: its decisions can be recomputed by hand."""

    def __init__(self, std=0.0):
        self.std, self.updates = std, 0

    def predict(self, X):
        X = np.asarray(X)
        return X[:, BASE_DIMS] + X[:, BASE_DIMS + 1], np.full(len(X), self.std)

    def update(self, X, y, iters=None):
        self.updates += 1
        return self


# ---- product of sums -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_pareto_minimum_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    L, m = rng.integers(2, 5), rng.integers(1, 6)
    E = [rng.lognormal(0, 1, m) for _ in range(L)]
    C = [rng.lognormal(0, 1, m) for _ in range(L)]
    n = rng.integers(1, 4, L)
    v, arg = P.min_network_edp(E, C, n)
    ref = min((sum(n[l] * E[l][k] for l, k in enumerate(c)) * sum(n[l] * C[l][k] for l, k in enumerate(c)), c)
              for c in itertools.product(range(m), repeat=int(L)))
    assert v == pytest.approx(ref[0], rel=1e-12)
    assert P.brute_force_min_network_edp(E, C, n)[0] == pytest.approx(ref[0], rel=1e-12)
    e = sum(n[l] * E[l][k] for l, k in enumerate(arg))
    c = sum(n[l] * C[l][k] for l, k in enumerate(arg))
    assert e * c == pytest.approx(v, rel=1e-12)


def test_product_of_sums_is_not_separable_and_the_check_says_so():
    # layer 0: (E, C) = (1, 10) or (10, 1.2) (EDP 10 vs 12); layer 1 has one option, (1, 0.1)
    # layerwise picks (1, 10): (1+1) x (10+0.1) = 20.2; the other gives 11 x 1.3 = 14.3
    E, C = [[1.0, 10.0], [1.0]], [[10.0, 1.2], [0.1]]
    chk = P.product_of_sums_check(E, C, [1, 1])
    assert chk["layerwise_choice"] == (0, 0) and chk["layerwise_edp"] == pytest.approx(20.2)
    assert chk["min_choice"] == (1, 0) and chk["min_edp"] == pytest.approx(14.3)
    assert not chk["equal"] and chk["ratio"] == pytest.approx(20.2 / 14.3)
    assert chk["combinations"] == 2


# ---- acquisition and network formulas --------------------------------------------------------
def test_log_ei_against_the_closed_form_and_its_asymptote():
    from scipy.stats import norm

    mean, std, best = np.array([0.0, 1.0, -2.0, 3.0]), np.array([1.0, 0.5, 2.0, 0.3]), 0.5
    z = (best - mean) / std
    direct = np.log(std * (norm.pdf(z) + z * norm.cdf(z)))
    assert np.allclose(P.log_ei(mean, std, best), direct, rtol=1e-10)
    # far below the incumbent: log(phi(z) / z^2) to leading order, z = -40
    v = P.log_ei(np.array([40.0]), np.array([1.0]), 0.0)[0]
    assert v == pytest.approx(-0.5 * 1600 - 0.5 * math.log(2 * math.pi) - 2 * math.log(40), abs=5e-3)
    assert np.all(np.diff(P.log_ei(np.linspace(-5, 50, 200), np.ones(200), 0.0)) < 0)   # monotone in the mean


def test_layer_scores_ucb_and_ei_orders():
    mean, std = np.array([1.0, 1.0, 0.9]), np.array([0.1, 0.5, 0.0])
    assert np.allclose(P.layer_scores(mean, std, "ucb", 2.0), [0.8, 0.0, 0.9])
    ei = P.layer_scores(mean, std, "ei", 1.0, best=0.95)
    assert np.argmin(ei) == 1                      # the most uncertain at equal mean


def test_network_prediction_by_hand_and_by_finite_differences():
    n = np.array([2.0, 1.0])
    mu, sd, le = np.array([3.0, 2.0]), np.array([0.2, 0.4]), np.array([1.0, 0.5])
    E, C = np.exp(le), np.exp(mu - le)
    m, s = P.network_prediction(mu[None], sd[None], le[None], n)
    assert m[0] == pytest.approx(math.log((n * E).sum() * (n * C).sum()))
    eps, grad = 1e-6, []
    for i in range(2):
        d = mu.copy()
        d[i] += eps
        grad.append((P.network_prediction(d[None], sd[None], le[None], n)[0][0] - m[0]) / eps)
    assert s[0] == pytest.approx(math.sqrt(sum((g * v) ** 2 for g, v in zip(grad, sd))), rel=1e-5)
    # a layer without a mapping makes the network infeasible
    assert P.network_prediction(np.array([[np.inf, 1.0]]), sd[None], le[None], n)[0][0] == math.inf


def test_nearest_allowed_is_the_l1_nearest_and_matches_decode():
    hws = HardwareSpace().enumerate()
    enc = HardwareSpace.encode_arrays([h.dim for h in hws], [h.acc_kb for h in hws], [h.sp_kb for h in hws])
    rng = np.random.default_rng(0)
    pts = rng.random((20, 3))
    everything = np.ones(len(hws), dtype=bool)
    for p, i in zip(pts, P.nearest_allowed(pts, enc, everything)):
        assert hws[i] == HardwareSpace().decode(p)
    allowed = rng.random(len(hws)) < 0.1
    for p, i in zip(pts, P.nearest_allowed(pts, enc, allowed)):
        d = np.abs(enc - p).sum(1)
        d[~allowed] = np.inf
        assert allowed[i] and d[i] == d.min()
    assert (P.nearest_allowed(pts, enc, np.zeros(len(hws), dtype=bool)) == -1).all()


# ---- hardware pools and inputs ---------------------------------------------------------------
def test_hardware_pools_fit_and_are_the_first_fitting_rows_of_the_draw():
    hws = [HardwareConfig(dim=8, sp_kb=8, acc_kb=8), HardwareConfig(dim=8, sp_kb=256, acc_kb=64),
           HardwareConfig(dim=32, sp_kb=16, acc_kb=8)]
    layer = LAYERS[0]
    pools = P.hardware_pools(hws, layer, 16, seed=3)
    cache = P._DrawCache([layer], 16, 3, True)
    dims = np.array([layer.dims[lp] for lp in LOOPS])
    for hw, b in zip(hws, pools):
        assert b is not None and 0 < len(b) <= 16
        assert (check_arrays(dims, layer.stride, b.factors, b.order, hw.dim, hw.sp_rows, hw.acc_rows,
                             b.buffers) == 0).all()
        draw = cache.get(hw, 0)[0]
        ok = np.flatnonzero(check_arrays(dims, layer.stride, draw.factors, draw.order, hw.dim, hw.sp_rows,
                                         hw.acc_rows, draw.buffers) == 0)[:16]
        assert np.array_equal(b.keys(), draw.take(ok).keys())
        # the constrained space: array factors fill the array
        af = SoftwareSpace(hw, layer).array_factors
        assert (b.factors[:, 2, LOOPS.index("C")] == af["C"]).all() and (b.factors[:, 2, LOOPS.index("K")] == af["K"]).all()


def test_inputs_of_many_designs_equal_candidate_inputs_per_design():
    hws = [HardwareConfig(dim=4, sp_kb=64, acc_kb=32), HardwareConfig(dim=16, sp_kb=128, acc_kb=16)]
    layer = LAYERS[1]
    pools = P.hardware_pools(hws, layer, 8, seed=1)
    got = P._inputs(layer, hws, pools)
    for hw, b, X in zip(hws, pools, got):
        ref = candidate_inputs(layer, hw, b.factors, b.order, b.buffers)
        assert np.allclose(X, ref, equal_nan=True)


# ---- options ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, msg", [({"hw_iters": 0}, "hw-iters must be an integer"),
                                     ({"acquisition": "pi"}, "acquisition must be one of ucb, ei"),
                                     ({"hw_search": "grid"}, "hw-search must be one of"),
                                     ({"kappa": -1}, "kappa must be a number"),
                                     ({"hw_pool": 0}, "hw-pool must be an integer"),
                                     ({"area_budget_mm2": 0}, "area-budget must be a positive number")])
def test_options_validate(kw, msg):
    with pytest.raises(ValueError, match=msg):
        PolarisOptions(**kw)


def test_options_defaults_and_dict():
    o = PolarisOptions()
    assert (o.hw_iters, o.sw_iters, o.acquisition, o.hw_pool) == (8, 6, "ucb", 32)
    assert PolarisOptions(hw_search="enumerate").hw_pool == 4
    assert PolarisOptions(**o.to_dict()) == o


# ---- runs with a hand-checkable surrogate ----------------------------------------------------
def test_software_rounds_pick_the_pool_in_acquisition_order():
    """kappa 0 and the exact analytical surrogate: round j evaluates each layer's j-th best
    pool mapping (by the model), so the first round is the pool's best."""
    hw = HardwareConfig(dim=8, sp_kb=64, acc_kb=32)
    opts = PolarisOptions(sw_iters=3, sw_pool=32, kappa=0.0)
    store = _Store()
    res = run_polaris(LAYERS, opts, AnalyticalEvaluator(), store, surrogate=_Analytic(), hardware=hw)
    (p,) = res.history
    assert p.phase == "given" and len(p.samples) == 3 and store.recorded == 6
    for li, layer in enumerate(LAYERS):
        pool = SoftwareSpace(hw, layer).pool(32, seed=P._sub_seed(0, 3, 0, li))
        a = cost.evaluate_arrays(layer, hw, pool.factors, pool.order, pool.buffers)
        order = np.argsort(a["edp"], kind="stable")[:3]
        assert [s.mappings[li] for s in p.samples] == [pool.mapping(int(i)) for i in order]


def test_enumerate_picks_the_design_a_brute_force_scoring_picks():
    """With the exact analytical surrogate and kappa 0, the enumerated hardware step's
    choice is the design whose hw-pool mappings (each layer's best) give the lowest
    network EDP, recomputed here from cost.evaluate_arrays over the allowed designs."""
    space_hws = [h for h in HardwareSpace().enumerate() if h.sp_kb in (16, 128) and h.acc_kb in (8, 64)]
    opts = PolarisOptions(hw_iters=1, sw_iters=1, sw_pool=8, kappa=0.0, hw_search="enumerate", hw_pool=6)
    res = run_polaris(LAYERS, opts, AnalyticalEvaluator(), None, surrogate=_Analytic(), hw_space=_ListSpace(space_hws))
    best, best_v = None, math.inf
    for hw in space_hws:
        E = C = 0.0
        for li, layer in enumerate(LAYERS):
            b = P._pools(P._DrawCache(LAYERS, 6, 0, True), [hw], li)[0]
            a = cost.evaluate_arrays(layer, hw, b.factors, b.order, b.buffers)
            k = int(np.argmin(a["edp"]))
            E += layer.count * a["energy_pj"][k]
            C += layer.count * a["cycles"][k]
        if E * C < best_v:
            best, best_v = hw, E * C
    assert res.history[0].hw == best
    assert res.history[0].acquisition_value == pytest.approx(math.log(best_v), rel=1e-9)


class _ListSpace:
    """A hardware space of a few configurations (what `hardware_candidates` reads)."""

    def __init__(self, hws):
        self.hws = list(hws)

    def enumerate(self):
        return list(self.hws)


# ---- runs with Starlight ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_run(tiny_surrogate):
    store = _Store()
    res = run_polaris(LAYERS, PolarisOptions(**SMALL, seed=4), AnalyticalEvaluator(), store, surrogate=tiny_surrogate)
    return res, store


def test_small_run_against_reevaluation_and_store(small_run):
    res, store = small_run
    assert len(res.history) == 2 and len({p.hw for p in res.history}) == 2
    assert len(res.samples) == 6 and store.recorded == 2 * 3 * len(LAYERS)
    for p in res.history:
        for s in p.samples:
            again = [cost.evaluate(p.hw, m, lay) for m, lay in zip(s.mappings, LAYERS)]
            e = sum(lay.count * r.energy_pj for r, lay in zip(again, LAYERS))
            c = sum(lay.count * r.cycles for r, lay in zip(again, LAYERS))
            assert s.objective == pytest.approx(e * c, rel=1e-9)
            assert all(store.evals[(p.hw, lay, m)] == r for lay, m, r in zip(LAYERS, s.mappings, s.results))
        # the design's objective: the brute-force minimum over combinations of its samples
        E = [[s.results[li].energy_pj for s in p.samples] for li in range(len(LAYERS))]
        C = [[s.results[li].cycles for s in p.samples] for li in range(len(LAYERS))]
        assert p.objective == pytest.approx(P.brute_force_min_network_edp(E, C, [2, 1])[0], rel=1e-12)
        assert p.samples[-1].best_on_design == pytest.approx(p.objective, rel=1e-12)
        assert p.layerwise_objective >= p.objective * (1 - 1e-12)
        assert all(np.isfinite(s.predicted_network[0]) and s.predicted_network[1] >= 0 for s in p.samples)
    assert res.best.objective == min(p.objective for p in res.history)
    assert res.timings["surrogate_update"] > 0 and res.timings["total"] > 0
    # the surrogate learned online: 6 rounds x 2 layers more training rows
    assert len(res.surrogate.train_y) == 64 + 12


def test_same_options_same_history(small_run, tiny_surrogate):
    res, _ = small_run
    again = run_polaris(LAYERS, PolarisOptions(**SMALL, seed=4), AnalyticalEvaluator(), None, surrogate=tiny_surrogate)
    assert [(p.hw, p.mappings, p.objective) for p in again.history] == \
        [(p.hw, p.mappings, p.objective) for p in res.history]
    assert [s.predicted_network for s in again.samples] == [s.predicted_network for s in res.samples]


def test_area_budget_is_respected_and_ei_runs(tiny_surrogate):
    budget = 0.6
    res = run_polaris(LAYERS, PolarisOptions(**{**SMALL, "acquisition": "ei"}, area_budget_mm2=budget),
                      AnalyticalEvaluator(), None, surrogate=tiny_surrogate)
    assert all(p.area_mm2 <= budget for p in res.history)
    assert all(math.isfinite(p.acquisition_value) for p in res.history)
    with pytest.raises(ValueError, match="area-budget 0.01 mm\\^2 is below the smallest design"):
        run_polaris(LAYERS, PolarisOptions(**SMALL, area_budget_mm2=0.01), AnalyticalEvaluator(), None,
                    surrogate=tiny_surrogate)


class _Interrupt(Exception):
    pass


class _Failing(AnalyticalEvaluator):
    """Raises on call number ``after`` (a kill in the middle of a run)."""

    def __init__(self, after):
        super().__init__()
        self.after, self.calls = after, 0

    def results_many(self, work):
        self.calls += 1
        if self.calls == self.after:
            raise _Interrupt
        return super().results_many(work)


class _Counting(AnalyticalEvaluator):
    def __init__(self):
        super().__init__()
        self.evaluated = 0

    def results_many(self, work):
        self.evaluated += sum(len(b) for _, _, b in work)
        return super().results_many(work)


def test_interrupted_run_resumes_to_the_same_history(tmp_path, small_run, tiny_surrogate):
    res, store = small_run
    opts = PolarisOptions(**SMALL, seed=4)
    with RunDir.open(tmp_path / "r", opts.to_dict(), seeds={"seed": 4}) as run:
        with pytest.raises(_Interrupt):
            run_polaris(LAYERS, opts, _Failing(after=5), run, surrogate=tiny_surrogate)
        stored = run.count()
        assert 0 < stored < store.recorded
    ev = _Counting()
    with RunDir.open(tmp_path / "r", opts.to_dict(), seeds={"seed": 4}) as run:
        again = run_polaris(LAYERS, opts, ev, run, surrogate=tiny_surrogate)
        assert run.count() == store.recorded                    # every evaluation once
        assert ev.evaluated == store.recorded - stored          # nothing stored was made again
        assert [h.iteration for h in run.hardware_history()] == [0, 1]
    assert [(p.hw, p.mappings, p.objective) for p in again.history] == \
        [(p.hw, p.mappings, p.objective) for p in res.history]


def test_bert_layerwise_minimum_against_all_m_to_the_l_combinations(tiny_surrogate):
    """Thesis Fig 6.2's experiment: 7 software rounds on BERT's 5 layers (one design),
    then the network EDP of every one of the 7^5 combinations of the evaluated mappings,
    enumerated here independently, against the layerwise choice and the Pareto minimum."""
    from search.polaris_report import combination_points
    from search.workloads import get_workload, unique_layers

    layers = unique_layers(get_workload("bert"))
    assert len(layers) == 5
    hw = HardwareConfig(dim=16, sp_kb=256, acc_kb=64)
    res = run_polaris(layers, PolarisOptions(sw_iters=7, sw_pool=64, update_iters=1), AnalyticalEvaluator(), None,
                      surrogate=tiny_surrogate, hardware=hw)
    (p,) = res.history
    E = [[s.results[li].energy_pj for s in p.samples] for li in range(5)]
    C = [[s.results[li].cycles for s in p.samples] for li in range(5)]
    counts = [lay.count for lay in layers]
    Es, Cs, every = combination_points(E, C, counts)
    assert every and len(Es) == 7 ** 5
    brute = float((Es * Cs).min())
    chk = P.product_of_sums_check(E, C, counts)
    assert chk["combinations"] == 7 ** 5
    assert chk["min_edp"] == pytest.approx(brute, rel=1e-12)
    assert p.objective == pytest.approx(brute, rel=1e-12)
    lw = [int(np.argmin(np.array(e) * np.array(c))) for e, c in zip(E, C)]
    lw_edp = sum(n * E[l][k] for l, (k, n) in enumerate(zip(lw, counts))) * \
        sum(n * C[l][k] for l, (k, n) in enumerate(zip(lw, counts)))
    assert chk["layerwise_edp"] == pytest.approx(lw_edp, rel=1e-12)
    assert chk["equal"] == bool(np.isclose(lw_edp, brute, rtol=1e-12))


class _Watchdog(AnalyticalEvaluator):
    """Every evaluation of layer ``bad`` comes back as the RTL evaluator's watchdog does."""

    def __init__(self, bad):
        super().__init__()
        self.bad = bad

    def results_many(self, work):
        from hw.result import Result

        out = super().results_many(work)
        return [[Result.infeasible("watchdog: no HALT within 1 cycles or 1 s", "analytical") for _ in rs]
                if layer.name == self.bad else rs for (hw, layer, b), rs in zip(work, out)]


def test_a_watchdog_result_is_infeasible_and_the_run_goes_on(tiny_surrogate):
    res = run_polaris(LAYERS, PolarisOptions(**SMALL), _Watchdog("fc"), None, surrogate=tiny_surrogate)
    assert len(res.history) == 2 and all(len(p.samples) == 3 for p in res.history)
    assert all(not math.isfinite(s.objective) for s in res.samples)
    assert res.best is None and all("watchdog" in p.results[1].reason for p in res.history)
    # only the feasible layer's results were learned from
    assert len(res.surrogate.train_y) == 64 + 6
