"""search.acquisition (LCB, log EI on BoTorch's analytic acquisition functions) and
search.optim.select_from_pool: sign conventions checked against the surrogate's own
posterior and against BoTorch on the raw model, known optima on small pools, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from search.acquisition import LOWER_IS_BETTER, ei, lcb
from search.models import fit_gp
from search.optim import select_from_pool


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def f_true(X):
    return 3 * X[..., 0] - 2 * X[..., 1]


@pytest.fixture(scope="module")
def toy():
    """A linear GP fitted on 40 noisy points of 3 x0 - 2 x1 in [0, 1]^3, and a pool."""
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(40, 3))
    y = f_true(X) + 0.05 * rng.normal(size=40)
    g = np.linspace(0, 1, 6)
    pool = np.array([[a, b, c] for a in g for b in g for c in (0.2, 0.8)])      # 72 rows
    return fit_gp(X, y, seed=0), X, y, pool


@pytest.fixture(scope="module")
def batched():
    """Three linear GPs with different trends, fitted in one call, and their pools."""
    rng = np.random.default_rng(1)
    W = np.array([[3.0, -2.0], [-1.0, 0.5], [0.2, 4.0]])
    X = rng.uniform(size=(3, 25, 2))
    y = np.einsum("bnd,bd->bn", X, W) + 0.05 * rng.normal(size=(3, 25))
    pools = rng.uniform(size=(3, 50, 2))
    return fit_gp(X, y, seed=0), X, y, pools


# ---------------------------------------------------------------------------------- LCB

@pytest.mark.parametrize("kappa", [0.0, 1.0, 2.5])
def test_lcb_is_mean_minus_kappa_std(toy, kappa):
    s, _, _, pool = toy
    mean, std = s.posterior_mean_std(pool)
    np.testing.assert_allclose(lcb(s, pool, kappa), mean - kappa * std, rtol=0, atol=1e-12)


def test_lcb_is_minus_botorch_ucb_on_the_raw_model(toy):
    """The sign convention, against BoTorch itself: UCB(maximize=False) = -mean +
    sqrt(beta) std on the SingleTaskGP, evaluated as BoTorch's own q = 1 t-batches."""
    from botorch.acquisition.analytic import UpperConfidenceBound

    s, _, _, pool = toy
    with torch.no_grad():
        ucb = UpperConfidenceBound(s.model, beta=4.0, maximize=False)(torch.as_tensor(pool).unsqueeze(-2))
    np.testing.assert_allclose(lcb(s, pool, kappa=2.0), -ucb.numpy(), rtol=0, atol=1e-10)


def test_lcb_picks_the_known_minimum(toy):
    s, X, _, pool = toy
    best = int(select_from_pool(lcb(s, pool), 1)[0])
    assert f_true(pool[best]) == f_true(pool).min()           # x0 = 0, x1 = 1
    assert tuple(pool[best, :2]) == (0.0, 1.0)
    # the ranking follows the truth
    top = select_from_pool(lcb(s, pool), 12)
    assert np.all(f_true(pool[top]) <= np.sort(f_true(pool))[11] + 1e-12)
    # excluding the two minima (x2 = 0.2 and 0.8) moves the pick to the next best row
    minima = np.flatnonzero(np.isclose(f_true(pool), f_true(pool).min()))
    nxt = int(select_from_pool(lcb(s, pool), 1, exclude=minima)[0])
    assert nxt not in minima and np.isclose(f_true(pool[nxt]), np.unique(f_true(pool))[1])


def test_lcb_batched(batched):
    s, X, y, pools = batched
    scores = lcb(s, pools)
    assert scores.shape == (3, 50)
    mean, std = s.posterior_mean_std(pools)
    np.testing.assert_allclose(scores, mean - std, rtol=0, atol=1e-12)
    # each member scores like its own unbatched fit
    for i in range(3):
        np.testing.assert_allclose(scores[i], lcb(fit_gp(X[i], y[i], seed=0), pools[i]),
                                   rtol=0, atol=1e-5 * np.abs(y[i]).max())
    # a shared pool, and the raw model's BoTorch UCB as (m, b, 1, d) t-batches
    from botorch.acquisition.analytic import UpperConfidenceBound

    shared = lcb(s, pools[0])
    assert shared.shape == (3, 50)
    np.testing.assert_allclose(shared[0], scores[0], rtol=0, atol=1e-12)
    t = torch.as_tensor(pools).transpose(0, 1).unsqueeze(-2)
    with torch.no_grad():
        ucb = UpperConfidenceBound(s.model, beta=1.0, maximize=False)(t)         # (m, b)
    np.testing.assert_allclose(scores, -ucb.T.numpy(), rtol=0, atol=1e-10)
    # per-member minima of the true trends
    W = np.array([[3.0, -2.0], [-1.0, 0.5], [0.2, 4.0]])
    picks = select_from_pool(scores, 1)
    assert picks.shape == (3, 1)
    for i in range(3):
        truth = pools[i] @ W[i]
        assert truth[picks[i, 0]] <= np.sort(truth)[1]


def test_lcb_bad_arguments(toy):
    s, _, _, pool = toy
    with pytest.raises(ValueError, match="kappa must be finite and >= 0"):
        lcb(s, pool, kappa=-1)
    with pytest.raises(ValueError, match=r"X must have shape \(m, 3\)"):
        lcb(s, pool[:, :2])


# ----------------------------------------------------------------------------------- EI

def test_ei_prefers_points_predicted_below_best_f(toy):
    s, _, y, pool = toy
    best_f = float(np.median(y))
    scores = ei(s, pool, best_f)
    assert LOWER_IS_BETTER["ei"] is False
    lo, hi = np.argmin(f_true(pool)), np.argmax(f_true(pool))
    assert scores[lo] > scores[hi]
    assert np.all(np.isfinite(scores))                           # log EI: no underflow to -inf
    assert int(select_from_pool(scores, 1, lower_is_better=False)[0]) in np.flatnonzero(
        np.isclose(f_true(pool), f_true(pool).min()))


def test_ei_is_the_log_of_the_closed_form(toy):
    """log EI = log(sigma (phi(u) + u Phi(u))), u = (best_f - mean) / sigma (minimising)."""
    s, _, y, pool = toy
    best_f = float(np.median(y))
    mean, std = s.posterior_mean_std(pool)
    u = (best_f - mean) / std
    ok = u > -8                                                  # where the plain formula is accurate
    assert ok.sum() > 10
    ref = np.log(std[ok] * (norm.pdf(u[ok]) + u[ok] * norm.cdf(u[ok])))
    np.testing.assert_allclose(ei(s, pool, best_f)[ok], ref, rtol=1e-6, atol=1e-8)


def test_ei_batched_with_one_best_f_per_member(batched):
    s, X, y, pools = batched
    best = y.min(axis=1)
    scores = ei(s, pools, best)
    assert scores.shape == (3, 50) and np.all(np.isfinite(scores))
    mean, std = s.posterior_mean_std(pools)
    for i in range(3):
        u = (best[i] - mean[i]) / std[i]
        ok = u > -8
        ref = np.log(std[i][ok] * (norm.pdf(u[ok]) + u[ok] * norm.cdf(u[ok])))
        np.testing.assert_allclose(scores[i][ok], ref, rtol=1e-6, atol=1e-8)
    # a scalar best_f applies to all members
    np.testing.assert_allclose(ei(s, pools, float(best[0]))[0], scores[0], rtol=1e-12)
    with pytest.raises(ValueError, match=r"best_f must be a number or have shape \(3,\)"):
        ei(s, pools, best[:2])


# ------------------------------------------------------------------------ select_from_pool

def test_select_ties_go_to_the_lower_index():
    np.testing.assert_array_equal(select_from_pool([2.0, 1.0, 1.0, 0.5, 1.0], 3), [3, 1, 2])
    np.testing.assert_array_equal(select_from_pool(np.zeros(6), 4), [0, 1, 2, 3])
    np.testing.assert_array_equal(select_from_pool([2.0, 1.0, 2.0, 0.5], 2, lower_is_better=False), [0, 2])
    out = select_from_pool([1.0, 0.0], 1)
    assert out.dtype == np.int64 and out.shape == (1,)


def test_select_exclude():
    s = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    mask = np.array([True, False, True, False, False])
    np.testing.assert_array_equal(select_from_pool(s, 2, exclude=mask), [1, 3])
    np.testing.assert_array_equal(select_from_pool(s, 2, exclude=np.array([0, 2])), [1, 3])
    np.testing.assert_array_equal(select_from_pool(s, 2, exclude=[0, -1]), [1, 2])
    np.testing.assert_array_equal(select_from_pool(s, 2, exclude=[]), [0, 1])
    np.testing.assert_array_equal(select_from_pool(s, 9, exclude=mask), [1, 3, 4])      # k > available
    assert select_from_pool(s, 3, exclude=np.ones(5, dtype=bool)).shape == (0,)
    # NaN scores come after every finite one, never before
    np.testing.assert_array_equal(select_from_pool([np.nan, 2.0, -np.inf, np.nan, 1.0], 5), [2, 4, 1, 0, 3])
    with pytest.raises(IndexError, match="out of range for a pool of 5 rows"):
        select_from_pool(s, 1, exclude=[5])
    with pytest.raises(ValueError, match=r"boolean exclude mask must have shape \(5,\)"):
        select_from_pool(s, 1, exclude=np.zeros(4, dtype=bool))
    with pytest.raises(ValueError, match="1-D array of integer indices"):
        select_from_pool(s, 1, exclude=[0.5])
    with pytest.raises(ValueError, match="k must be a non-negative integer"):
        select_from_pool(s, -1)


def test_select_batched():
    s = np.array([[3.0, 1.0, 2.0, 1.0],
                  [0.0, 0.0, 5.0, -1.0]])
    np.testing.assert_array_equal(select_from_pool(s, 2), [[1, 3], [3, 0]])
    np.testing.assert_array_equal(select_from_pool(s, 2, lower_is_better=False), [[0, 2], [2, 0]])
    # a per-member mask, a shared one, shared indices
    mask = np.array([[False, True, False, False], [True, True, False, False]])
    np.testing.assert_array_equal(select_from_pool(s, 2, exclude=mask), [[3, 2], [3, 2]])
    np.testing.assert_array_equal(select_from_pool(s, 1, exclude=mask[0]), [[3], [3]])
    np.testing.assert_array_equal(select_from_pool(s, 1, exclude=[3]), [[1], [0]])
    # k larger than the fewest available rows: that many for every member
    out = select_from_pool(s, 4, exclude=mask)
    assert out.shape == (2, 2)
    with pytest.raises(ValueError, match=r"scores must have shape \(m,\) or \(b, m\)"):
        select_from_pool(np.zeros((2, 2, 2)), 1)
