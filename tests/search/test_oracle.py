"""The analytical oracle (search.optimizers.oracle): its ranking against a brute-force
analytical evaluation of every candidate on every design of a small subset (no shared
counters), the measured designs against the ranking, the sample and area budgets from a
run store, and reproducibility."""

import math

import numpy as np
import pytest

import cost
from search.compare_runs import score_run
from search.evaluators import AnalyticalEvaluator
from search.optimizers import oracle as O
from search.optimizers.oracle import OracleOptions, rank_designs, run_oracle
from search.runs import RunDir
from search.software import SoftwareSpace
from tests.search._baselines import LAYERS, CountingEvaluator as _Counting, stored_run as stored_baseline_run
from search.space import HardwareSpace

SMALL = dict(sw_samples=256, designs=4, per_design=2, sample_budget=8, seed=3)


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    return stored_baseline_run(tmp_path_factory, "oracle", OracleOptions(**SMALL), run_oracle, _Counting())


def _brute_force(hws, n, seed):
    """Per design: each layer's lowest EDP over the draw, evaluated directly on the design."""
    out = []
    for hw in hws:
        E, C = [], []
        for li, layer in enumerate(LAYERS):
            b = SoftwareSpace(hw, layer).from_unit_arrays(O.unit_draw(n, seed, li))
            a = cost.evaluate_arrays(layer, hw, b.factors, b.order, b.buffers)
            v = np.where(a["feasible"], a["edp"], np.inf)
            if not np.isfinite(v).any():
                E = None
                break
            j = int(np.argmin(v))
            E.append(a["energy_pj"][j])
            C.append(a["cycles"][j])
        out.append(math.inf if E is None else
                   sum(l.count * e for l, e in zip(LAYERS, E)) * sum(l.count * c for l, c in zip(LAYERS, C)))
    return np.array(out)


# ---- options ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, msg", [({"sw_samples": 0}, "sw-samples must be an integer in 1..262,144; got 0"),
                                     ({"designs": 20}, "designs x per-design must be at most sample-budget 48; "
                                                       "got 20 x 3 = 60"),
                                     ({"per_design": 0}, "per-design must be an integer"),
                                     ({"area_budget_mm2": -1}, "area-budget must be a positive number"),
                                     ({"seed": -1}, "seed must be an integer")])
def test_options_validate(kw, msg):
    with pytest.raises(ValueError, match=msg):
        OracleOptions(**kw)


def test_default_is_16_designs_x_3_mappings_within_48_samples():
    o = OracleOptions()
    assert (o.designs, o.per_design, o.sample_budget, o.sw_samples) == (16, 3, 48, 4096)


# ---- ranking ---------------------------------------------------------------------------------
def test_ranking_equals_brute_force_on_a_small_subset():
    space = HardwareSpace()
    idx = np.random.default_rng(0).choice(space.size, 24, replace=False)
    hws = [space.config(int(i)) for i in idx] + [space.config(0)]      # 4x4 with 8 KB: infeasible
    rk = rank_designs(LAYERS, hws, sw_samples=128, seed=7)
    ref = _brute_force(hws, 128, 7)
    assert np.array_equal(np.isfinite(rk.network_edp), np.isfinite(ref))
    fin = np.isfinite(ref)
    assert np.allclose(rk.network_edp[fin], ref[fin], rtol=1e-9)
    expect = sorted(range(len(hws)), key=lambda i: (ref[i], i))
    assert rk.order.tolist() == expect
    # the allowed mask leaves the others out of the ranking
    mask = np.zeros(len(hws), dtype=bool)
    mask[::2] = True
    part = rank_designs(LAYERS, hws, sw_samples=128, seed=7, allowed=mask)
    assert part.order.tolist() == [i for i in expect if mask[i]]
    assert np.all(np.isinf(part.network_edp[~mask]))


# ---- runs ------------------------------------------------------------------------------------
def test_measures_the_top_designs_in_rank_order(stored_run):
    res, _, _ = stored_run
    rk = res.info["ranking"]
    top = [rk.hws[i] for i in rk.order[:SMALL["designs"]]]
    assert [p.hw for p in res.history] == top
    for h, p in enumerate(res.history):
        assert p.extra["analytical_edp"] == pytest.approx(rk.network_edp[rk.order[h]], rel=1e-12)
        # sample 0: each layer's best by analytical EDP on the design, so at analytical
        # fidelity the first sample's network EDP is the ranking's
        assert p.samples[0].objective == pytest.approx(p.extra["analytical_edp"], rel=1e-9)
        assert p.objective <= p.samples[0].objective * (1 + 1e-12)
        # sample 1: each layer's second best (or its best again when it has one only)
        for li, layer in enumerate(LAYERS):
            assert cost.evaluate(p.hw, p.samples[1].mappings[li], layer).edp >= \
                cost.evaluate(p.hw, p.samples[0].mappings[li], layer).edp


def test_budget_from_the_store_and_one_call_per_sample(stored_run):
    res, path, ev = stored_run
    s = score_run(path)
    assert s.samples <= SMALL["sample_budget"] and s.samples == len(res.samples) == 8
    assert s.best_edp == pytest.approx(res.best.objective, rel=1e-12)
    assert len(ev.calls) == len(res.samples) and all(len(c) == len(LAYERS) for c in ev.calls)


def test_resumed_run_evaluates_nothing_again(stored_run):
    res, path, _ = stored_run
    opts = OracleOptions(**SMALL)
    ev = _Counting()
    with RunDir.open(path, opts.to_dict(), seeds={"seed": opts.seed}) as run:
        again = run_oracle(LAYERS, opts, ev, run)
        assert {r.phase for r in run.evaluations()} == {"oracle"}
    assert ev.calls == [] and [p.objective for p in again.history] == [p.objective for p in res.history]


def test_default_budget_is_kept():
    ev = _Counting()
    res = run_oracle(LAYERS, OracleOptions(sw_samples=256), ev)
    assert len(res.history) == 16 and len(res.samples) == 48 == len(ev.calls)


def test_same_options_same_history(stored_run):
    res, _, _ = stored_run
    again = run_oracle(LAYERS, OracleOptions(**SMALL), AnalyticalEvaluator())
    assert [(p.hw, p.mappings, p.objective) for p in again.history] == \
        [(p.hw, p.mappings, p.objective) for p in res.history]


def test_area_budget_is_respected():
    budget = 0.5
    res = run_oracle(LAYERS, OracleOptions(**{**SMALL, "area_budget_mm2": budget}), AnalyticalEvaluator())
    rk = res.info["ranking"]
    areas = np.array([float(cost.area_mm2(h.dim, h.sp_kb, h.acc_kb)) for h in rk.hws])
    assert set(rk.order.tolist()) == set(np.flatnonzero(areas <= budget).tolist())
    assert all(float(cost.area_mm2(p.hw.dim, p.hw.sp_kb, p.hw.acc_kb)) <= budget for p in res.history)
    with pytest.raises(ValueError, match="area-budget 0.01 mm\\^2 is below the smallest design"):
        run_oracle(LAYERS, OracleOptions(area_budget_mm2=0.01), AnalyticalEvaluator())
