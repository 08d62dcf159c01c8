"""Vanilla BO (search.optimizers.vanilla_bo): BoTorch SingleTaskGP + UCB on the raw
parameters. Its choices against BoTorch's UpperConfidenceBound evaluated directly on the
same fitted model, the sample budget as the comparison harness counts it from a run
store, the area budget, reproducibility, and the design objective against brute force."""

import math

import numpy as np
import pytest
import torch

import cost
from search.compare_runs import score_run
from search.evaluators import AnalyticalEvaluator
from search.optimizers import polaris as P
from search.optimizers import vanilla_bo as V
from search.optimizers.vanilla_bo import VanillaBOOptions, run_vanilla_bo
from search.runs import RunDir
from search.space import HardwareSpace
from tests.search._baselines import LAYERS, CountingEvaluator as _Counting, stored_run as stored_baseline_run

SMALL = dict(hw_iters=4, sw_iters=4, sw_pool=48, seed=5)

pytestmark = pytest.mark.usefixtures("module_torch_thread")


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    return stored_baseline_run(tmp_path_factory, "vbo", VanillaBOOptions(**SMALL), run_vanilla_bo, _Counting())


# ---- options ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, msg", [({"hw_iters": 0}, "hw-iters must be an integer in 1..4,096; got 0"),
                                     ({"sw_warmup": -1}, "sw-warmup must be an integer"),
                                     ({"sw_pool": 1.5}, "sw-pool must be an integer"),
                                     ({"beta": -1}, "beta must be a number in 0..10,000; got -1"),
                                     ({"area_budget_mm2": 0}, "area-budget must be a positive number"),
                                     ({"buffering": 1}, "buffering must be True or False")])
def test_options_validate(kw, msg):
    with pytest.raises(ValueError, match=msg):
        VanillaBOOptions(**kw)


def test_options_defaults():
    o = VanillaBOOptions()
    assert (o.hw_iters, o.sw_iters, o.hw_warmup, o.sw_warmup, o.beta) == (8, 6, 2, 2, 1.0)
    assert o.to_dict()["method"] == "vanilla-bo-raw"


# ---- the model and the acquisition --------------------------------------------------------------
def test_fit_gp_is_a_float64_single_task_gp_with_transforms_inside():
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.input import Normalize
    from botorch.models.transforms.outcome import Standardize

    X = V.hardware_inputs([4, 8, 16, 32], [8, 64, 128, 256], [256, 8, 64, 32])
    gp = V.fit_gp(X, [30.0, 29.0, 27.5, 28.0], V.HW_BOUNDS, seed=1)
    assert isinstance(gp, SingleTaskGP) and isinstance(gp.input_transform, Normalize)
    assert isinstance(gp.outcome_transform, Standardize)
    assert gp.train_targets.dtype == torch.float64
    # predictions come back on the original scale (ln EDP), near the data at the data
    mean = gp.posterior(torch.as_tensor(X)).mean.squeeze(-1).detach().numpy()
    assert np.allclose(mean, [30.0, 29.0, 27.5, 28.0], atol=1.0)


@pytest.mark.parametrize("beta", [0.0, 1.0, 9.0])
def test_ucb_pick_equals_botorch_ucb_evaluated_directly(beta):
    from botorch.acquisition import UpperConfidenceBound

    r = np.random.default_rng(0)
    X = r.uniform(0, 1, (7, 3)) * [28, 248, 248] + [4, 8, 8]
    y = np.log(r.uniform(1e9, 1e11, 7))
    gp = V.fit_gp(X, y, V.HW_BOUNDS, seed=3)
    choices = r.uniform(0, 1, (200, 3)) * [28, 248, 248] + [4, 8, 8]
    k, val = V.ucb_pick(gp, choices, beta)
    with torch.no_grad():
        direct = UpperConfidenceBound(gp, beta=beta, maximize=False)(torch.as_tensor(choices)[:, None, :]).numpy()
        post = gp.posterior(torch.as_tensor(choices))
        by_hand = (-post.mean.squeeze(-1) + math.sqrt(beta) * post.variance.squeeze(-1).sqrt()).numpy()
    assert k == int(np.argmax(direct)) and val == pytest.approx(direct[k], rel=1e-9)
    assert np.allclose(direct, by_hand, rtol=1e-9, atol=1e-12)


def test_mapping_inputs_are_the_raw_arrays():
    from search.software import SoftwareSpace

    hw = HardwareSpace().config(1234)
    b = SoftwareSpace(hw, LAYERS[0]).pool(16, seed=2)
    X = V.mapping_inputs(b)
    assert X.shape == (16, 31)
    assert np.array_equal(X[:, :21], b.factors.reshape(16, -1))
    # position of the loop at order[i] is i
    assert all(X[r, 21 + b.order[r, i]] == i for r in range(16) for i in range(7))
    assert np.array_equal(X[:, 28:], b.buffers)


# ---- runs ------------------------------------------------------------------------------------
def test_budget_from_the_store_and_one_call_per_sample(stored_run):
    res, path, ev = stored_run
    s = score_run(path)
    assert s.samples == SMALL["hw_iters"] * SMALL["sw_iters"] == len(res.samples)
    assert s.simulations == sum(p.evaluations for p in res.history)
    assert s.best_edp == pytest.approx(res.best.objective, rel=1e-12)
    assert len(ev.calls) == len(res.samples)
    assert all(len(c) == len(LAYERS) and all(n == 1 for _, _, n in c) for c in ev.calls)
    with RunDir.open_existing(path) as run:
        assert [h.iteration for h in run.hardware_history()] == list(range(SMALL["hw_iters"]))


def test_history_against_reevaluation_and_brute_force(stored_run):
    res, _, _ = stored_run
    assert len({p.hw for p in res.history}) == len(res.history)
    assert [p.phase for p in res.history] == ["warmup", "warmup", "bo", "bo"]
    for p in res.history:
        assert [s.phase for s in p.samples] == ["warmup", "warmup", "bo", "bo"]
        for s in p.samples:
            again = [cost.evaluate(p.hw, m, lay) for m, lay in zip(s.mappings, LAYERS)]
            e = sum(lay.count * r.energy_pj for r, lay in zip(again, LAYERS))
            c = sum(lay.count * r.cycles for r, lay in zip(again, LAYERS))
            assert s.objective == pytest.approx(e * c, rel=1e-9)
            assert s.cost.edp == pytest.approx(cost.network_edp(s.results, LAYERS).edp)
        E = [[s.results[li].energy_pj for s in p.samples] for li in range(len(LAYERS))]
        C = [[s.results[li].cycles for s in p.samples] for li in range(len(LAYERS))]
        assert p.objective == pytest.approx(P.brute_force_min_network_edp(E, C, [2, 1])[0], rel=1e-12)
        assert p.layerwise_objective >= p.objective * (1 - 1e-12)
        assert p.area_mm2 == pytest.approx(float(cost.area_mm2(p.hw.dim, p.hw.sp_kb, p.hw.acc_kb)))


def test_hardware_choice_is_botorch_ucb_over_the_untried_allowed_designs(stored_run):
    from botorch.acquisition import UpperConfidenceBound

    res, _, _ = stored_run
    opts = VanillaBOOptions(**SMALL)
    space = HardwareSpace()
    hws = space.enumerate()
    X_all = V.hardware_inputs([h.dim for h in hws], [h.sp_kb for h in hws], [h.acc_kb for h in hws])
    for h in (2, 3):
        prev = res.history[:h]
        gp = V.fit_gp(V.hardware_inputs([p.hw.dim for p in prev], [p.hw.sp_kb for p in prev],
                                        [p.hw.acc_kb for p in prev]),
                      np.log([p.objective for p in prev]), V.HW_BOUNDS, seed=V.sub_seed(opts.seed, 6, h))
        tried = {space.index(p.hw) for p in prev}
        free = np.array([i for i in range(len(hws)) if i not in tried])
        with torch.no_grad():
            u = UpperConfidenceBound(gp, beta=opts.beta, maximize=False)(torch.as_tensor(X_all[free])[:, None, :])
        assert hws[int(free[int(torch.argmax(u))])] == res.history[h].hw
        assert res.history[h].extra["acquisition"] == pytest.approx(float(u.max()), rel=1e-9)


def test_software_choice_is_botorch_ucb_over_the_pool(stored_run):
    """Replays design 0's third round of layer 0: the GP on its first two rounds, UCB over
    the pool rows not yet evaluated (constant columns dropped), the argmax is the pick."""
    from botorch.acquisition import UpperConfidenceBound

    from search.software import MappingBatch, SoftwareSpace

    res, _, _ = stored_run
    opts = VanillaBOOptions(**SMALL)
    p = res.history[0]
    pool = SoftwareSpace(p.hw, LAYERS[0]).pool(opts.sw_pool, seed=V.sub_seed(opts.seed, 3, 0, 0))
    X, bounds = V.varying_columns(V.mapping_inputs(pool))
    keys = [tuple(r) for r in pool.keys()]
    done = [keys.index(tuple(MappingBatch.from_mappings([s.mappings[0]]).keys()[0])) for s in p.samples[:2]]
    y = [math.log(s.results[0].energy_pj * s.results[0].cycles) for s in p.samples[:2]]
    gp = V.fit_gp(X[done], y, bounds, seed=V.sub_seed(opts.seed, 5, 0, 0, 2))
    free = np.array([i for i in range(len(pool)) if i not in done])
    with torch.no_grad():
        u = UpperConfidenceBound(gp, beta=opts.beta, maximize=False)(torch.as_tensor(X[free])[:, None, :])
    assert pool.mapping(int(free[int(torch.argmax(u))])) == p.samples[2].mappings[0]


def test_same_options_same_history(stored_run):
    res, _, _ = stored_run
    again = run_vanilla_bo(LAYERS, VanillaBOOptions(**SMALL), AnalyticalEvaluator())
    assert [(p.hw, p.mappings, p.objective) for p in again.history] == \
        [(p.hw, p.mappings, p.objective) for p in res.history]
    assert [s.mappings for s in again.samples] == [s.mappings for s in res.samples]


def test_resumed_run_evaluates_nothing_again(stored_run):
    res, path, _ = stored_run
    ev = _Counting()
    opts = VanillaBOOptions(**SMALL)
    with RunDir.open(path, opts.to_dict(), seeds={"seed": opts.seed}) as run:
        again = run_vanilla_bo(LAYERS, opts, ev, run)
    assert ev.calls == [] and [p.objective for p in again.history] == [p.objective for p in res.history]


def test_area_budget_is_respected():
    budget = 0.6
    res = run_vanilla_bo(LAYERS, VanillaBOOptions(hw_iters=3, sw_iters=2, sw_pool=16, sw_warmup=1,
                                                  area_budget_mm2=budget), AnalyticalEvaluator())
    assert len(res.history) == 3
    assert all(float(cost.area_mm2(p.hw.dim, p.hw.sp_kb, p.hw.acc_kb)) <= budget for p in res.history)
    with pytest.raises(ValueError, match="area-budget 0.01 mm\\^2 is below the smallest design"):
        run_vanilla_bo(LAYERS, VanillaBOOptions(area_budget_mm2=0.01), AnalyticalEvaluator())
