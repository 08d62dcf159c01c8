"""search.models.gp: the GP surrogate, checked against an independent closed form (the
linear kernel is Bayesian linear regression), against a hand-built BoTorch model with the
same hyper-parameters, on a toy linear problem, batched against unbatched, and on the
data a search produces (constant columns, duplicates, one or two points, failed fits)."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from search.models import GPFitWarning, Surrogate, fit_gp
from search.models.gp import PREDICT_ROWS_PER_MEMBER, input_bounds


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def linear_data(rng, n, d=5, noise=0.1, lo=0.0, hi=10.0):
    """y = 3 x0 - 2 x1 + noise on [lo, hi]^d (the other columns are irrelevant)."""
    X = rng.uniform(lo, hi, size=(n, d))
    y = 3 * X[:, 0] - 2 * X[:, 1] + noise * rng.normal(size=n)
    return X, y


# ---------------------------------------------------------------- the linear kernel's model

def blr_posterior(surrogate: Surrogate, X, y, Xs):
    """Closed-form Bayesian linear regression with the fitted model's own hyper-parameters,
    in numpy, from first principles: inputs normalised and outputs standardised as the
    module docstring says, f(z) = m0 + w.z with w ~ N(0, v I), noise s2; the weight-space
    posterior w | data ~ N(S Z' t / s2, S), S = (Z'Z / s2 + I / v)^-1. Returns mean and
    variance on the original y scale."""
    hp = surrogate.hyperparameters()
    v, m0, s2 = (float(hp[k]) for k in ("variance", "mean", "noise"))
    lo, hi = input_bounds(X)
    Z, Zs = (X - lo) / (hi - lo) - 0.5, (Xs - lo) / (hi - lo) - 0.5
    ybar, ysd = y.mean(), y.std(ddof=1)
    t = (y - ybar) / ysd - m0
    S = np.linalg.inv(Z.T @ Z / s2 + np.eye(Z.shape[1]) / v)
    w = S @ Z.T @ t / s2
    mean = m0 + Zs @ w
    var = np.einsum("ij,jk,ik->i", Zs, S, Zs)
    return ybar + ysd * mean, ysd**2 * var


def test_linear_kernel_is_bayesian_linear_regression():
    rng = np.random.default_rng(1)
    X, y = linear_data(rng, 30, d=4, noise=0.5)
    y = y + 7.0                                          # an offset for the mean to explain
    s = fit_gp(X, y, seed=3)
    assert s.fitted and s.kernel == "linear" and s.batch_shape == () and (s.n_train, s.d) == (30, 4)
    Xs = np.r_[rng.uniform(0, 10, size=(40, 4)), rng.uniform(-5, 15, size=(10, 4))]  # and outside
    mean, std = s.posterior_mean_std(Xs)
    ref_mean, ref_var = blr_posterior(s, X, y, Xs)
    np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-6 * np.abs(y).max())
    np.testing.assert_allclose(std**2, ref_var, rtol=1e-6, atol=1e-9)
    # with observation noise: the same plus the fitted noise, on the original scale
    _, std_y = s.posterior_mean_std(Xs, observation_noise=True)
    np.testing.assert_allclose(std_y**2, ref_var + float(s.hyperparameters()["noise"]) * y.std(ddof=1) ** 2,
                               rtol=1e-6)


def test_linear_kernel_matches_a_hand_built_botorch_model():
    """The same hyper-parameters in a SingleTaskGP built directly on the normalised
    inputs and standardised outputs (no transforms): the same posterior."""
    from botorch.models import SingleTaskGP
    from gpytorch.kernels import LinearKernel

    rng = np.random.default_rng(2)
    X, y = linear_data(rng, 25, d=3, noise=0.3)
    s = fit_gp(X, y, seed=0)
    hp = s.hyperparameters()
    lo, hi = input_bounds(X)
    Z = torch.as_tensor((X - lo) / (hi - lo) - 0.5)
    Xs = rng.uniform(-2, 12, size=(20, 3))
    Zs = torch.as_tensor((Xs - lo) / (hi - lo) - 0.5)
    ybar, ysd = y.mean(), y.std(ddof=1)
    T = torch.as_tensor((y - ybar) / ysd).unsqueeze(-1)
    ref = SingleTaskGP(Z, T, covar_module=LinearKernel(), outcome_transform=None)
    as_t = lambda v: torch.tensor(float(v), dtype=torch.float64)  # noqa: E731
    ref.covar_module.variance = as_t(hp["variance"])
    ref.likelihood.noise = as_t(hp["noise"])
    ref.mean_module.constant = as_t(hp["mean"])
    ref.eval()
    with torch.no_grad():
        post = ref.posterior(Zs)
    mean, std = s.posterior_mean_std(Xs)
    np.testing.assert_allclose(mean, ybar + ysd * post.mean.squeeze(-1).numpy(), rtol=0, atol=1e-8 * np.abs(y).max())
    np.testing.assert_allclose(std, ysd * post.variance.squeeze(-1).sqrt().numpy(), rtol=1e-8)


def test_toy_linear_problem_recovers_the_trend():
    rng = np.random.default_rng(3)
    X, y = linear_data(rng, 40)
    Xt, yt = linear_data(rng, 200, noise=0.0)
    for kernel in ("linear", "matern"):
        s = fit_gp(X, y, kernel=kernel, seed=0)
        mean, std = s.posterior_mean_std(Xt)
        assert s.fitted and np.all(np.isfinite(mean)) and np.all(std > 0)
        rho = spearmanr(mean, yt).statistic
        assert rho > 0.95, (kernel, rho)
    # the linear GP is the right model here: accurate, not just well ranked
    mean, std = fit_gp(X, y).posterior_mean_std(Xt)
    assert np.abs(mean - yt).max() < 0.2
    assert np.all(std < 0.2)


@pytest.mark.parametrize("kernel, tol", [("linear", 1e-5), ("matern", 1e-4)])
def test_batched_fit_equals_unbatched_fits(kernel, tol):
    """Each member of a batched fit is the unbatched fit of its data (BoTorch's batched
    L-BFGS-B vs scipy's, both to their default tolerances). The Matern data are nonlinear in
    every column: on linear data, or with an irrelevant column, its marginal likelihood has
    flat ridges (lengthscales to infinity) on which the two optimisers stop at different
    points (1e-2 apart in the mean, measured; on these data 3e-5 at most over six seeds)."""
    rng = np.random.default_rng(4)
    b, n, d = 3, 30, 3
    X = rng.uniform(0, 1, size=(b, n, d)) * rng.uniform(1, 100, size=(b, 1, d))   # different scales
    if kernel == "linear":
        W = rng.normal(size=(b, d)) * np.array([3, 1, 0])                         # one column unused
        y = np.einsum("bnd,bd->bn", X, W) + rng.uniform(0.01, 1, size=(b, 1)) * rng.normal(size=(b, n)) + 5
    else:
        U = X / X.max(axis=1, keepdims=True)
        y = np.sin(6 * U[..., 0]) + 2 * U[..., 1] ** 2 + np.cos(5 * U[..., 2]) + 0.05 * rng.normal(size=(b, n))
    P = rng.uniform(0, 1, size=(b, 300, d)) * X.max(axis=1, keepdims=True)
    sb = fit_gp(X, y, kernel=kernel, seed=7)
    assert sb.batch_shape == (b,) and sb.fitted
    mb, sdb = sb.posterior_mean_std(P)
    assert mb.shape == sdb.shape == (b, 300)
    scale = np.abs(y).max()
    for i in range(b):
        si = fit_gp(X[i], y[i], kernel=kernel, seed=7)
        mi, sdi = si.posterior_mean_std(P[i])
        np.testing.assert_allclose(mb[i], mi, rtol=0, atol=tol * scale, err_msg=f"member {i}")
        np.testing.assert_allclose(sdb[i], sdi, rtol=10 * tol, err_msg=f"member {i}")
    # a shared (m, d) pool gives every member's prediction on it
    ms, _ = sb.posterior_mean_std(P[0])
    assert ms.shape == (b, 300)
    np.testing.assert_allclose(ms[0], mb[0], rtol=0, atol=1e-12 * scale)


def test_prediction_in_chunks_is_the_per_point_posterior():
    """Chunked joint posterior calls give the marginals BoTorch gives point by point."""
    rng = np.random.default_rng(5)
    X, y = linear_data(rng, 20, d=3)
    s = fit_gp(X, y)
    m = 3 * PREDICT_ROWS_PER_MEMBER + 17
    P = rng.uniform(0, 10, size=(m, 3))
    mean, std = s.posterior_mean_std(P)
    with torch.no_grad():
        post = s.model.posterior(torch.as_tensor(P).unsqueeze(-2))      # m t-batches of q = 1
    np.testing.assert_allclose(mean, post.mean.reshape(-1).numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(std, post.variance.reshape(-1).sqrt().numpy(), rtol=1e-8)
    assert s.posterior_mean_std(P[:0])[0].shape == (0,)


def test_fit_is_deterministic_and_leaves_the_global_rng_alone():
    rng = np.random.default_rng(6)
    X, y = linear_data(rng, 15, d=4)
    P = rng.uniform(0, 10, size=(50, 4))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for kernel in ("linear", "matern"):
        a = fit_gp(X, y, kernel=kernel, seed=11).posterior_mean_std(P)
        b = fit_gp(X, y, kernel=kernel, seed=11).posterior_mean_std(P)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert torch.equal(torch.get_rng_state(), state)


# ------------------------------------------------------------------------------ robustness

def _finite(s: Surrogate, P):
    mean, std = s.posterior_mean_std(P)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)
    return mean, std


@pytest.mark.parametrize("kernel", ["linear", "matern"])
def test_constant_column(kernel):
    rng = np.random.default_rng(7)
    X, y = linear_data(rng, 20, d=3)
    Xc = np.c_[X[:, :2], np.full(20, 4096.0), X[:, 2:]]            # a constant column, large
    with warnings.catch_warnings():
        warnings.simplefilter("error", GPFitWarning)
        s = fit_gp(Xc, y, kernel=kernel)
    P = rng.uniform(0, 10, size=(30, 3))
    Pc = np.c_[P[:, :2], np.full(30, 4096.0), P[:, 2:]]
    mean, std = _finite(s, Pc)
    _, std_off = _finite(s, np.c_[P[:, :2], np.full(30, 8192.0), P[:, 2:]])
    if kernel == "linear":
        # at the constant's value the column is invisible: the fit without it, exactly
        # (the Matern's lengthscale prior depends on d, so it is not the same model)
        ref_mean, ref_std = fit_gp(X, y, kernel=kernel).posterior_mean_std(P)
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(std, ref_std, rtol=1e-9)
        # off it, the model is less sure
        assert np.all(std_off > std)
    else:
        assert spearmanr(mean, 3 * P[:, 0] - 2 * P[:, 1]).statistic > 0.9


@pytest.mark.parametrize("kernel", ["linear", "matern"])
def test_degenerate_training_sets(kernel):
    rng = np.random.default_rng(8)
    P = rng.uniform(0, 10, size=(10, 4))
    X, y = linear_data(rng, 12, d=4)
    cases = {
        "one point": (X[:1], y[:1]),
        "two points": (X[:2], y[:2]),
        "duplicates": (np.r_[X[:6], X[:6]], np.r_[y[:6], y[:6] + 0.01]),
        "all the same point": (np.repeat(X[:1], 5, axis=0), y[:5]),
        "constant y": (X, np.full(12, 2.5)),
        "integer data": (np.round(X).astype(int), np.round(y).astype(int)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", GPFitWarning)
        for name, (Xi, yi) in cases.items():
            s = fit_gp(Xi, yi, kernel=kernel)
            assert s.fitted, name
            mean, _ = _finite(s, P)
            if name == "constant y":
                np.testing.assert_allclose(mean, 2.5, atol=1e-6)
        # batched, with a different degenerate member each
        Xb = np.stack([X[:2], np.repeat(X[:1], 2, axis=0), np.c_[X[:2, :3], [1.0, 1.0]]])
        yb = np.stack([y[:2], y[:2], y[:2]])
        _finite(fit_gp(Xb, yb, kernel=kernel), P)


def test_failed_fit_falls_back_to_the_initial_hyperparameters(monkeypatch):
    import botorch.fit

    def broken(mll, **kwargs):
        with torch.no_grad():
            for p in mll.parameters():
                p.fill_(float("nan"))                           # a fit that wrecks the model...
        raise RuntimeError("cholesky failed\nmore detail")     # ...and then raises

    rng = np.random.default_rng(9)
    X, y = linear_data(rng, 10, d=3)
    initial = fit_gp(X, y)
    monkeypatch.setattr(botorch.fit, "fit_gpytorch_mll", broken)
    with pytest.warns(GPFitWarning, match="RuntimeError: cholesky failed"):
        s = fit_gp(X, y)
    assert not s.fitted and s.message == "RuntimeError: cholesky failed"
    _finite(s, X)
    hp = s.hyperparameters()
    assert float(hp["variance"]) == pytest.approx(np.log(2))  # softplus(0): gpytorch's initial value
    assert initial.fitted and float(initial.hyperparameters()["variance"]) != pytest.approx(np.log(2))
    # a fit that "succeeds" with NaN parameters is a failure too
    def nan_success(mll, **kwargs):
        with torch.no_grad():
            for p in mll.parameters():
                p.fill_(float("nan"))
        return mll

    monkeypatch.setattr(botorch.fit, "fit_gpytorch_mll", nan_success)
    with pytest.warns(GPFitWarning, match="FloatingPointError"):
        s = fit_gp(X, y)
    assert not s.fitted
    _finite(s, X)


def test_bad_arguments():
    X, y = np.zeros((4, 2)), np.zeros(4)
    with pytest.raises(ValueError, match="kernel must be one of 'linear', 'matern', not 'rbf'"):
        fit_gp(X, y, kernel="rbf")
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        fit_gp(X, np.zeros(3))
    with pytest.raises(ValueError, match=r"X must have shape \(n, d\) or \(b, n, d\)"):
        fit_gp(np.zeros(4), y)
    with pytest.raises(ValueError, match="at least one training point"):
        fit_gp(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(ValueError, match="y must be finite"):
        fit_gp(X, np.array([0, 1, np.nan, 2]))
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        fit_gp(X, y, seed=-1)
    s = fit_gp(np.arange(8.0).reshape(4, 2), np.arange(4.0))
    with pytest.raises(ValueError, match=r"X must have shape \(m, 2\), not \(3, 3\)"):
        s.posterior_mean_std(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="needs a batched model of 2 members"):
        s.posterior_mean_std(np.zeros((2, 3, 2)))


# ------------------------------------------------------------------------------- timing

@pytest.mark.slow
def test_fit_time_report(capsys):
    """The speed-critical path (Spotlight fits one GP per layer, batched, ~1,000 times a
    run): one batched fit of b = 24 GPs with n = 100, d = 20, one unbatched fit, and the
    LCB of a 24 x 1,000 pool. Prints the times; bounds are loose (a shared machine)."""
    from search.acquisition import lcb

    rng = np.random.default_rng(10)
    b, n, d = 24, 100, 20
    X = rng.uniform(size=(b, n, d))
    y = np.einsum("bnd,bd->bn", X, rng.normal(size=(b, d))) + 0.3 * rng.normal(size=(b, n))
    fit_gp(X[:2, :5], y[:2, :5])                                    # imports, first-call costs
    times = {}
    for kernel in ("linear", "matern"):
        t = time.perf_counter()
        s = fit_gp(X, y, kernel=kernel)
        times[f"{kernel} batched b={b}"] = time.perf_counter() - t
        t = time.perf_counter()
        fit_gp(X[0], y[0], kernel=kernel)
        times[f"{kernel} unbatched"] = time.perf_counter() - t
        t = time.perf_counter()
        lcb(s, rng.uniform(size=(b, 1000, d)))
        times[f"{kernel} lcb {b}x1000"] = time.perf_counter() - t
    with capsys.disabled():
        print("\n" + "\n".join(f"  {k}: {v:.2f} s" for k, v in times.items()))
    assert times["linear batched b=24"] < 60
