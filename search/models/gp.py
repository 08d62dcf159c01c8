"""Exact Gaussian-process surrogates on BoTorch: `fit_gp` and the `Surrogate` it returns.

One job: turn numpy training data into a fitted BoTorch model and predict with it on the
original scale. Picking candidates is `search.acquisition` + `search.optim`; loops are
`search.optimizers`.

The model
---------
``SingleTaskGP(train_X, train_Y, covar_module=K, input_transform=Normalize(...),
outcome_transform=Standardize(m=1))`` in ``torch.float64``, with BoTorch's default
``ConstantMean`` and its default Gaussian likelihood (homoskedastic noise, LogNormal(-4, 1)
prior, noise >= 1e-4 in standardised units). The scaling lives inside the model:

* inputs: `Normalize` with bounds fixed from the training data (`input_bounds`), centred
  (``center=0``): each column maps its training range onto [-0.5, 0.5]. A column that is
  constant in the training data (range <= 1e-12 x max(1, |value|)) is not divided by its
  zero range: it is shifted to 0 and scaled by max(1, |value|), so the training points see
  0 there (no information, exactly as if it were dropped) while a pool row that differs
  there is still told apart (the prior variance grows in that direction, as it does with
  scikit-learn's StandardScaler, which leaves a zero-variance column unscaled);
* outputs: `Standardize` per model (zero mean, unit variance; a single point or a constant
  y keeps a scale of 1), so `Surrogate.posterior_mean_std` returns the original scale.

Kernels (``K``, `KERNELS`):

``"linear"``
    ``LinearKernel()``: k(z, z') = v z.z' with BoTorch's fitted ``ConstantMean`` m, i.e.
    f(z) = m + w.z, w ~ N(0, v I): the model of Spotlight's public code (scikit-learn
    ``DotProduct(sigma_0) + WhiteKernel``; the WhiteKernel is the likelihood's noise).
    DotProduct's bias sigma_0^2 (a ``ConstantKernel`` c) is left out because the fitted
    ConstantMean makes it redundant: with m at its maximum-likelihood (GLS) value the
    residual r satisfies 1' K^-1 r = 0, so by Sherman-Morrison adding c 1 1' to K leaves
    the data-fit term unchanged and only raises log det: the marginal likelihood always
    prefers c = 0. Measured with ``LinearKernel() + ConstantKernel()``: c fitted to 1e-11
    to 1e-7 on every data set tried, predictions within 1e-4 (relative) of the kernel
    without it, and 2.5 to 3x the fit time for b = 24, n = 100, d = 20 (L-BFGS-B chasing c
    to 0 through its softplus). Inputs are centred so that the prior variance v |z|^2 is symmetric about the
    middle of the training range (Spotlight standardises X); v is one scalar for all
    columns (DotProduct has no per-column weights).
``"matern"``
    ``ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=d))`` with BoTorch's dimension-scaled
    LogNormal lengthscale prior (``get_covar_module_with_dim_scaled_prior``, the prior of
    BoTorch's default SingleTaskGP). Much slower to fit than the linear kernel when the data
    are close to linear (lengthscales drift towards infinity: 200 to 700 L-BFGS-B iterations
    per member, and a batch runs until its slowest member converges): ~40 s for b = 24,
    n = 100, d = 20 on linear data, against ~1 s for the linear kernel.

Batched models
--------------
``X`` (b, n, d) and ``y`` (b, n) fit b independent GPs in one call: one ``SingleTaskGP``
with ``batch_shape`` (b,), per-member bounds, standardisation and hyper-parameters.
`fit_gpytorch_mll` then runs BoTorch's batched L-BFGS-B, which optimises every member's
hyper-parameters independently (``botorch.optim.fit._fit_gpytorch_mll_scipy_independent``),
so a member's fit is the unbatched fit of its data up to the optimiser's tolerance. All
members share n: group data sets by size (as `search.optimizers.spotlight` does).

Prediction
----------
`Surrogate.posterior_mean_std` evaluates the pool in chunks of at most `PREDICT_ROWS`
rows (summed over the batch members; at most 256 per member), each one joint
``model.posterior`` call, under ``torch.no_grad()`` and ``gpytorch.settings.fast_pred_var()``
(exact for n <= gpytorch's ``max_cholesky_size``, 800). The chunks are much smaller than
65,536 because gpytorch 1.15.2 evaluates the dense q x q test covariance of a joint call
(quadratic in the chunk) and BoTorch's q = 1 t-batch layout broadcasts the prediction
caches over every row. Measured for b = 24, n = 40, d = 20 on a 24 x 1,000 pool, Matern:
0.3 s in chunks, 3.4 s as one joint call, 1.7 s as q = 1 t-batches (1.1 s without
fast_pred_var); linear: 0.02 s in chunks, 0.3 s as t-batches. `Surrogate.pool_model`
(`MarginalPosteriorModel`) offers the same marginals to BoTorch's analytic (q = 1)
acquisition functions.

Determinism and robustness
--------------------------
Every fit runs with scipy's OpenBLAS limited to one thread (``threadpoolctl``, a BoTorch
dependency): L-BFGS-B's step routine calls BLAS on 3-element arrays, and the thread pool
made each call ~2.5 ms on this shared 2-core machine (a b = 24 linear fit: 4.7 s -> 1.0 s).
The caller's torch thread count is left alone.

Every fit runs under ``torch.random.fork_rng`` seeded with ``seed`` (BoTorch's retries
resample hyper-parameters from their priors), so the same data and seed give the same model
and the caller's torch RNG is untouched. A fit that raises or leaves non-finite parameters
is not an error: the model keeps its initial hyper-parameters, `GPFitWarning` is issued and
`Surrogate.fitted` is False. Warnings from inside a fit (BoTorch's retries) are silenced;
only the outcome is reported. Duplicate points, one or two points and constant columns
are valid data.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from botorch.models.model import Model

__all__ = ["KERNELS", "DTYPE", "PREDICT_ROWS", "MIN_VARIANCE", "GPFitWarning", "Surrogate",
           "MarginalPosteriorModel", "fit_gp", "input_bounds", "marginal_posterior"]

KERNELS = ("linear", "matern")
DTYPE = torch.float64
#: Pool rows per joint posterior call, summed over the model's batch members (<= 65,536).
PREDICT_ROWS = 4096
#: ... and at most this many per member (the dense q x q test covariance of a call).
PREDICT_ROWS_PER_MEMBER = 256
#: Relative range below which a training column counts as constant.
CONSTANT_RTOL = 1e-12
#: Floor of the predictive variance: BoTorch's analytic acquisition functions' ``min_var``.
MIN_VARIANCE = 1e-12


class GPFitWarning(UserWarning):
    """A GP fit failed; the model kept its initial hyper-parameters."""


def _as_float_array(a, name: str) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of numbers, not {type(a).__name__}") from e
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return arr


def _check_training_data(X, y) -> tuple[np.ndarray, np.ndarray]:
    X = _as_float_array(X, "X")
    y = _as_float_array(y, "y")
    if X.ndim not in (2, 3):
        raise ValueError(f"X must have shape (n, d) or (b, n, d), not {X.shape}")
    if y.shape != X.shape[:-1]:
        raise ValueError(f"y must have shape {X.shape[:-1]} to match X {X.shape}, not {y.shape}")
    if X.shape[-2] < 1:
        raise ValueError("at least one training point is needed")
    if X.shape[-1] < 1:
        raise ValueError("X needs at least one column")
    if X.ndim == 3 and X.shape[0] < 1:
        raise ValueError("a batched X needs at least one batch member")
    return X, y


def input_bounds(X: np.ndarray) -> np.ndarray:
    """The `Normalize` bounds of training inputs ``X`` (..., n, d): (..., 2, d), rows lower
    and upper. A constant column of value c gets c -+ max(1, |c|) / 2, so that the centred
    transform maps c to 0 (see the module docstring)."""
    lo = X.min(axis=-2)
    hi = X.max(axis=-2)
    scale = np.maximum(1.0, np.abs(lo))
    const = hi - lo <= CONSTANT_RTOL * scale
    lower = np.where(const, lo - 0.5 * scale, lo)
    upper = np.where(const, lo + 0.5 * scale, hi)
    return np.stack([lower, upper], axis=-2)


def _covar_module(kernel: str, d: int, batch_shape: torch.Size):
    from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
    from gpytorch.kernels import LinearKernel, ScaleKernel

    if kernel == "linear":
        return LinearKernel(batch_shape=batch_shape)
    # Matern-5/2 (the helper's default nu) with BoTorch's dimension-scaled lengthscale prior
    matern = get_covar_module_with_dim_scaled_prior(ard_num_dims=d, batch_shape=batch_shape, use_rbf_kernel=False)
    return ScaleKernel(matern, batch_shape=batch_shape)


def _params_finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def fit_gp(X, y, *, kernel: str = "linear", seed: int = 0) -> "Surrogate":
    """Fit an exact GP on ``X`` (n, d), ``y`` (n,), or b independent GPs on ``X`` (b, n, d),
    ``y`` (b, n), in one call; ``y`` on its own scale (e.g. log EDP: the model standardises
    it). ``kernel`` is one of `KERNELS`; ``seed`` makes the fit reproducible.

    Never raises for a failed fit (see `GPFitWarning`); raises ``ValueError`` or
    ``TypeError`` for malformed data (shapes, NaN/inf), an unknown kernel or a bad seed.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(map(repr, KERNELS))}, not {kernel!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    X, y = _check_training_data(X, y)

    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from threadpoolctl import threadpool_limits    # a dependency of botorch

    d = X.shape[-1]
    batch_shape = torch.Size(X.shape[:-2])
    train_X = torch.as_tensor(X, dtype=DTYPE)
    train_Y = torch.as_tensor(y, dtype=DTYPE).unsqueeze(-1)
    bounds = torch.as_tensor(input_bounds(X), dtype=DTYPE)

    message = ""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = SingleTaskGP(
            train_X, train_Y,
            covar_module=_covar_module(kernel, d, batch_shape),
            input_transform=Normalize(d=d, bounds=bounds, center=0.0),
            outcome_transform=Standardize(m=1, batch_shape=batch_shape),
        )
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        initial = copy.deepcopy(model.state_dict())
        try:
            # scipy's L-BFGS-B steps (setulb) call OpenBLAS on tiny arrays: its thread pool
            # makes each step ~2.5 ms instead of ~5 us on this shared 2-core machine
            with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
                warnings.simplefilter("ignore")
                fit_gpytorch_mll(mll)
            if not _params_finite(model):
                raise FloatingPointError("non-finite hyper-parameters after the fit")
            fitted = True
        except Exception as e:  # noqa: BLE001  (a failed fit must never stop the search)
            model.load_state_dict(initial)
            fitted = False
            first = str(e).splitlines()[0] if str(e) else ""
            message = f"{type(e).__name__}: {first}" if first else type(e).__name__
            warnings.warn(f"GP fit failed ({message}); keeping the initial hyper-parameters",
                          GPFitWarning, stacklevel=2)
    model.eval()
    return Surrogate(model=model, kernel=kernel, fitted=fitted, message=message)


def _chunk_rows(m: int, members: int) -> list[slice]:
    step = max(1, min(PREDICT_ROWS_PER_MEMBER, PREDICT_ROWS // max(1, members)))
    return [slice(i, min(m, i + step)) for i in range(0, m, step)]


def marginal_posterior(model, X: torch.Tensor, *, observation_noise: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Marginal posterior mean and variance (floored at `MIN_VARIANCE`) of a fitted
    single-output BoTorch GP at a pool ``X``: (m, d), or (b, m, d) for a model of batch
    shape (b,) (a (m, d) pool is shared by all members). Returns (m,) or (b, m) tensors,
    on the model's output scale (its outcome transform untransforms them).

    Chunked joint ``model.posterior`` calls (see the module docstring) under
    ``torch.no_grad()`` and ``gpytorch.settings.fast_pred_var()``.
    """
    import gpytorch
    from gpytorch.utils.warnings import GPInputWarning, NumericalWarning

    batch = tuple(model.batch_shape)
    out_shape = torch.broadcast_shapes(tuple(X.shape[:-2]), batch) + (X.shape[-2],)
    mean = torch.empty(out_shape, dtype=X.dtype)
    var = torch.empty(out_shape, dtype=X.dtype)
    members = math.prod(out_shape[:-1]) if len(out_shape) > 1 else 1
    with torch.no_grad(), gpytorch.settings.fast_pred_var(), warnings.catch_warnings():
        warnings.simplefilter("ignore", GPInputWarning)   # predicting at training inputs is fine
        warnings.simplefilter("ignore", NumericalWarning)  # round-off negative variances: floored below
        for sl in _chunk_rows(X.shape[-2], members):
            post = model.posterior(X[..., sl, :], observation_noise=observation_noise)
            mean[..., sl] = post.mean.squeeze(-1)
            var[..., sl] = post.variance.squeeze(-1)
    return mean, var.clamp_min(MIN_VARIANCE)


class MarginalPosteriorModel(Model):
    """A BoTorch ``Model`` view of a fitted GP for analytic (q = 1) acquisition functions
    on large pools: ``posterior(X)`` for ``X`` (t..., 1, d) returns the independent
    marginals of the wrapped model (`marginal_posterior`) as a ``GPyTorchPosterior`` of
    shape (t..., 1, 1), the same numbers ``gp.posterior`` gives for those t-batches, but
    computed as chunked joint calls instead of one q = 1 t-batch per row (10x faster for a
    batched model; see the module docstring). The t-batch shape must end with the
    wrapped model's batch shape (or 1), as for the wrapped model itself."""

    _num_outputs = 1

    def __init__(self, gp: Model):
        super().__init__()
        self.gp = gp

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return self.gp.batch_shape

    def posterior(self, X, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
        from botorch.posteriors.gpytorch import GPyTorchPosterior
        from gpytorch.distributions import MultivariateNormal
        from linear_operator.operators import DiagLinearOperator

        if posterior_transform is not None or output_indices not in (None, [0]):
            raise ValueError("MarginalPosteriorModel has one output and no posterior transforms; got "
                             f"output_indices={output_indices!r}, posterior_transform={posterior_transform!r}")
        if X.ndim < 2 or X.shape[-2] != 1:
            raise ValueError(f"MarginalPosteriorModel evaluates q = 1 t-batches (t..., 1, d), not {tuple(X.shape)}")
        Z = X.squeeze(-2)                                    # (t..., d)
        batch = tuple(self.gp.batch_shape)
        if batch:                                            # (t..., b|1, d) -> (b|1, M, d)
            if Z.ndim < 2:
                Z = Z.unsqueeze(0)
            tb = Z.shape[:-1]
            mean, var = marginal_posterior(self.gp, Z.reshape(-1, tb[-1], Z.shape[-1]).transpose(0, 1),
                                           observation_noise=bool(observation_noise))
            shape = tuple(tb[:-1]) + (mean.shape[0],)
            mean, var = mean.transpose(0, 1).reshape(shape), var.transpose(0, 1).reshape(shape)
        else:                                                # (t..., d) -> (M, d)
            tb = Z.shape[:-1]
            mean, var = marginal_posterior(self.gp, Z.reshape(-1, Z.shape[-1]),
                                           observation_noise=bool(observation_noise))
            mean, var = mean.reshape(tb), var.reshape(tb)
        mvn = MultivariateNormal(mean.unsqueeze(-1), DiagLinearOperator(var.unsqueeze(-1)))
        return GPyTorchPosterior(mvn)


@dataclass(frozen=True, eq=False)
class Surrogate:
    """A fitted GP (`fit_gp`): predictions on the original y scale.

    ``model`` is the BoTorch ``SingleTaskGP`` (eval mode), usable with any BoTorch
    acquisition function; ``pool_model`` is its fast q = 1 view for pools
    (`MarginalPosteriorModel`, what `search.acquisition` uses). ``fitted`` is False when
    the fit failed and the model kept its initial hyper-parameters (``message`` says why).
    Do not change the model's hyper-parameters: its prediction caches would go stale.
    """

    model: object
    kernel: str
    fitted: bool = True
    message: str = ""
    pool_model: MarginalPosteriorModel = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "pool_model", MarginalPosteriorModel(self.model))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """() for one GP, (b,) for b independent ones."""
        return tuple(self.model.batch_shape)

    @property
    def n_train(self) -> int:
        return int(self.model.train_inputs[0].shape[-2])

    @property
    def d(self) -> int:
        return int(self.model.train_inputs[0].shape[-1])

    def check_inputs(self, X) -> np.ndarray:
        """``X`` as float64, checked against the model: (m, d), or (b, m, d) for a batched
        model of b members (a (m, d) pool is then shared by all of them)."""
        X = _as_float_array(X, "X")
        bs = self.batch_shape
        if X.ndim not in (2, 3) or X.shape[-1] != self.d:
            want = f"(m, {self.d})" + (f" or ({bs[0]}, m, {self.d})" if bs else "")
            raise ValueError(f"X must have shape {want}, not {X.shape}")
        if X.ndim == 3 and not (bs and X.shape[0] == bs[0]):
            raise ValueError(f"a pool of shape {X.shape} needs a batched model of {X.shape[0]} members; "
                             f"this one has batch shape {bs}")
        return X

    def posterior_mean_std(self, X, *, observation_noise: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation at the rows of ``X`` on the original y
        scale: (m,) each for a (m, d) pool and a single model, (b, m) for a batched one.
        The latent function's posterior (what BoTorch's analytic acquisition functions
        use); ``observation_noise=True`` adds the fitted noise (as scikit-learn's
        ``predict(return_std=True)`` with a WhiteKernel does). Variances are floored at
        `MIN_VARIANCE`, as in the acquisition functions."""
        X = self.check_inputs(X)
        mean, var = marginal_posterior(self.model, torch.as_tensor(X, dtype=DTYPE),
                                       observation_noise=observation_noise)
        return mean.numpy(), var.sqrt().numpy()

    def hyperparameters(self) -> dict[str, np.ndarray]:
        """The fitted hyper-parameters on the model's scale (normalised inputs,
        standardised outputs), one value per batch member: ``mean`` (the ConstantMean),
        ``noise``, and ``variance`` (linear) or ``outputscale`` and ``lengthscale``
        (matern; (..., d))."""
        m = self.model
        bs = self.batch_shape
        hp = {"mean": m.mean_module.constant, "noise": m.likelihood.noise}
        if self.kernel == "linear":
            hp["variance"] = m.covar_module.variance
        else:
            hp["outputscale"] = m.covar_module.outputscale
            hp["lengthscale"] = m.covar_module.base_kernel.lengthscale
        return {k: v.detach().numpy().reshape(*bs, -1) if k == "lengthscale" else v.detach().numpy().reshape(bs)
                for k, v in hp.items()}
