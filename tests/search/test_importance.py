"""search.importance: permutation importance against hand-computed values on a toy
predictor, and the per-layer software importance of a tiny real Spotlight run."""

import numpy as np
import pytest

from search.evaluators import AnalyticalEvaluator
from search.features import SOFTWARE_FEATURE_NAMES
from search.importance import permutation_importance, relative, software_importance
from search.optimizers.spotlight import SpotlightOptions, run_spotlight
from search.runs import RunDir
from search.workloads import get_workload, unique_layers

TINY = dict(hw_iters=3, sw_iters=12, sw_warmup=4, sw_batch=4, sw_pool=64, seed=0)


def _toy(X):
    return 3.0 * X[:, 0] + 0.0 * X[:, 1] + X[:, 2] ** 2


def _sample(n=30, seed=1):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, 3))


def test_linear_column_matches_a_hand_computation_and_unused_column_is_zero():
    X = _sample()
    n, R = len(X), 7
    mean, std = permutation_importance(_toy, X, n_repeats=R, seed=3)
    # the documented draws: rng.permutation(n) for column 0, 1, 2 in turn, R each
    rng = np.random.default_rng(3)
    perms = [[rng.permutation(n) for _ in range(R)] for _ in range(3)]
    per = []
    for perm in perms[0]:
        total = 0.0
        for i in range(n):
            total += abs(3.0 * (X[perm[i], 0] - X[i, 0]))
        per.append(total / n)
    assert mean[0] == pytest.approx(np.mean(per), rel=1e-12)
    assert std[0] == pytest.approx(np.std(per), rel=1e-12)
    assert mean[1] == 0.0 and std[1] == 0.0
    # the quadratic column, by the same loops
    per2 = [sum(abs(X[p[i], 2] ** 2 - X[i, 2] ** 2) for i in range(n)) / n for p in perms[2]]
    assert mean[2] == pytest.approx(np.mean(per2), rel=1e-12)
    assert mean[0] > mean[2] > mean[1]


def test_many_repeats_approach_the_expectation_over_permutations():
    X = _sample(n=20)
    mean, _ = permutation_importance(_toy, X, n_repeats=3000, seed=0)
    n = len(X)
    expect = 3.0 * sum(abs(X[i, 0] - X[k, 0]) for i in range(n) for k in range(n)) / n**2
    assert mean[0] == pytest.approx(expect, rel=0.03)


def test_reproducible_with_a_seed():
    X = _sample()
    a = permutation_importance(_toy, X, seed=5)
    b = permutation_importance(_toy, X, seed=5)
    c = permutation_importance(_toy, X, seed=6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3", 10_001])
def test_bad_n_repeats_is_a_value_error(bad):
    with pytest.raises(ValueError, match="n_repeats"):
        permutation_importance(_toy, _sample(), n_repeats=bad)


def test_bad_inputs_are_value_errors():
    with pytest.raises(ValueError, match="shape"):
        permutation_importance(_toy, np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        permutation_importance(_toy, np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="predict"):
        permutation_importance(lambda Z: Z[:, :2], _sample())
    with pytest.raises(ValueError, match="seed"):
        permutation_importance(_toy, _sample(), seed=-1)


def test_relative():
    assert np.allclose(relative([2.0, 1.0, 1.0]), [0.5, 0.25, 0.25])
    assert np.array_equal(relative([0.0, 0.0]), [0.0, 0.0])
    with pytest.raises(ValueError):
        relative([1.0, -1.0])
    with pytest.raises(ValueError):
        relative([[1.0]])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    by_name = {lay.name: lay for lay in unique_layers(get_workload("resnet50"))}
    layers = [by_name[n] for n in ("layer1.0.conv1", "layer4.1.conv2", "fc")]
    opts = SpotlightOptions(**TINY)
    with RunDir.open(tmp_path_factory.mktemp("imp") / "run", {**opts.to_dict(), "fidelity": "analytical"},
                     seeds={"seed": 0}) as run:
        result = run_spotlight(layers, opts, AnalyticalEvaluator(), run)
        records = run.evaluations()
    return layers, result, records


def test_software_importance_of_a_tiny_run(tiny_run, one_torch_thread):
    layers, result, records = tiny_run
    hw = result.best.hw
    mine = [r for r in records if r.hw == hw]
    imp = software_importance(mine, "spotlight", "edp", seed=0)
    assert imp.names == SOFTWARE_FEATURE_NAMES and imp.hw == hw
    assert list(imp.layers) == [lay.name for lay in layers] and imp.skipped == ()
    for name, share in imp.layers.items():
        assert share.shape == (len(SOFTWARE_FEATURE_NAMES),)
        assert np.isfinite(share).all() and (share >= 0).all()
        assert share.sum() == pytest.approx(1.0)
        assert imp.counts[name] == 12
    assert imp.mean.sum() == pytest.approx(1.0)
    again = software_importance(mine, "spotlight", "edp", seed=0)
    assert np.array_equal(again.mean, imp.mean)
    # Spotlight-V: the raw parameters; a layer with too few points is skipped
    fc = [r for r in mine if r.layer.name == "fc"][:2]
    rest = [r for r in mine if r.layer.name != "fc"]
    v = software_importance(rest + fc, "v", "cycles", n_repeats=3)
    assert len(v.names) == 31 and v.skipped == ("fc",) and set(v.layers) == {"layer1.0.conv1", "layer4.1.conv2"}
    assert all(s.sum() == pytest.approx(1.0) for s in v.layers.values())


def test_software_importance_rejects_bad_input(tiny_run):
    _, result, records = tiny_run
    with pytest.raises(ValueError, match="one hardware design"):
        software_importance(records, "spotlight", "edp")
    mine = [r for r in records if r.hw == result.best.hw]
    with pytest.raises(ValueError, match="variant"):
        software_importance(mine, "x", "edp")
    with pytest.raises(ValueError, match="objective"):
        software_importance(mine, "spotlight", "area")
    with pytest.raises(ValueError, match="no evaluation"):
        software_importance([], "spotlight", "edp")
