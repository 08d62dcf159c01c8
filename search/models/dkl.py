"""Starlight: deep kernel learning on the transferred Starlight-Low encoder, as a BoTorch model.

Thesis chapter 5.2.4 (Fig 5.4 B). An exact GP whose kernel reads the latent of the
encoder transferred from Starlight-Low (`search.models.vae.LatentEncoder`, its weights
copied at transfer time, then trained further):

    f(x) ~ GP(m(x), s * Matern_{5/2}(g(x), g(x')))       y = f(x) + e,  e ~ N(0, sigma^2)

* ``g`` (`FeatureMap`): the encoder's ``x -> mu`` on the network columns of the input
  (`search.surrogate_data.BASE_DIMS`), then a fixed affine map that standardises each
  latent coordinate by its mean and standard deviation over the first training rows
  (fixed at construction, so that the lengthscales keep their meaning while the
  encoder trains; gpytorch's ``ScaleToBounds`` would rescale to every batch's range);
* the residual variant (``residual=True``, beyond the thesis) also gives the kernel the
  analytical model's ln cycles and ln energy of the triple (standardised the same way),
  and models the residual ``y - a(x)``, ``a`` the analytical ln EDP, standardised on its
  own scale (`ResidualStandardize`, a BoTorch outcome transform that adds ``a(x)`` back
  to the posterior): the analytical model is the prior mean, the GP learns what it
  misses, and far from the data the prediction falls back to it. The mean of the GP
  itself is a constant (``ConstantMean``) in both variants;
* ``s``, the lengthscales and sigma^2 have gamma priors (BoTorch's classic ones:
  lengthscale Gamma(3, 6), outputscale Gamma(2, 0.15), noise Gamma(1.1, 0.05), noise >= 1e-6);
* the target (ln EDP) is standardised inside the model by BoTorch's ``Standardize``
  outcome transform; `StarlightGP.posterior` (BoTorch's) and `Starlight.predict` return
  the original scale. Everything is float64.

Training (`fit_starlight`): the exact marginal log likelihood, maximised by Adam, full
batch, over the GP's mean, kernel and noise (``lr_gp``) and, with
``freeze_encoder=False`` (the thesis's recipe; not the default, see `DKLOptions`), jointly
over the encoder in a second parameter group (``lr_net``; the GPyTorch DKL pattern), under ``torch.random.fork_rng`` seeded with ``seed``: the same
data, options and thread count give the same model. `Starlight.update` adds observations
and fine-tunes from the current weights (warm start) for Polaris's online loop.

Prediction (`Starlight.predict`) computes the exact predictive marginals in chunks from
cached training quantities (no q x q test
covariance, which gpytorch's ``__call__`` builds even under ``fast_pred_var``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import gpytorch
import numpy as np
import torch
from botorch.models.gpytorch import GPyTorchModel
from botorch.models.transforms.outcome import Standardize
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.constraints import GreaterThan
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.means import ConstantMean
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.models import ExactGP
from gpytorch.priors import GammaPrior
from torch import nn

from search.surrogate_data import BASE_DIMS

from .vae import LatentEncoder

__all__ = ["DKLOptions", "FeatureMap", "ResidualStandardize", "Starlight", "StarlightGP", "fit_starlight", "DTYPE"]

DTYPE = torch.float64
PREDICT_CHUNK = 16384


@dataclass(frozen=True)
class DKLOptions:
    """Training of Starlight's DKL."""

    residual: bool = False
    iters: int = 400
    lr_net: float = 1e-3
    lr_gp: float = 0.02
    #: True: the transferred encoder keeps Starlight-Low's weights and only the GP's
    #: hyper-parameters train. The thesis trains both jointly (False), but here that
    #: overfits the marginal likelihood (Ober et al. 2021): on validation rows drawn from
    #: the RTL training split (256 train, 2 draws), joint training at lr_net 1e-3 gave rho
    #: 0.82-0.83 against 0.95 frozen, and 0.88-0.89 at lr_net 1e-4.
    freeze_encoder: bool = True
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.iters, int) or isinstance(self.iters, bool) or self.iters < 0:
            raise ValueError(f"DKLOptions.iters must be an integer >= 0; got {self.iters!r}")
        for name in ("lr_net", "lr_gp"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"DKLOptions.{name} must be a finite number >= 0; got {v!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class FeatureMap(nn.Module):
    """x -> the kernel's inputs: the standardised latent (and, residual, the standardised
    analytical columns)."""

    def __init__(self, encoder: LatentEncoder, residual: bool, X: torch.Tensor):
        super().__init__()
        self.encoder = encoder
        self.residual = residual
        k = encoder.mu.out_features + (2 if residual else 0)
        self.register_buffer("z_mean", torch.zeros(k, dtype=X.dtype))
        self.register_buffer("z_std", torch.ones(k, dtype=X.dtype))
        with torch.no_grad():
            z = self._raw(X)
            sd = z.std(dim=0) if len(z) > 1 else torch.ones_like(z[0])
            self.z_mean.copy_(z.mean(dim=0))
            self.z_std.copy_(torch.where(sd > 1e-9, sd, torch.ones_like(sd)))

    @property
    def out_dims(self) -> int:
        return self.z_mean.numel()

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x[..., :BASE_DIMS])
        if self.residual:
            z = torch.cat([z, x[..., BASE_DIMS:BASE_DIMS + 2]], dim=-1)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self._raw(x) - self.z_mean) / self.z_std


class ResidualStandardize(Standardize):
    """BoTorch's ``Standardize`` of the residual ``Y - a(X)``, ``a`` the analytical ln EDP
    of the row (columns `BASE_DIMS` and `BASE_DIMS` + 1 of X): the GP models what the
    analytical model misses, on the residual's own scale; `untransform_posterior` adds
    ``a(X)`` back, so the posterior is of ln EDP (the residual variant's prior mean)."""

    def __init__(self):
        super().__init__(m=1)

    @staticmethod
    def prior(X: torch.Tensor) -> torch.Tensor:
        return (X[..., BASE_DIMS] + X[..., BASE_DIMS + 1]).unsqueeze(-1)

    def forward(self, Y, Yvar=None, X=None):
        return super().forward(Y - self.prior(X), Yvar, X)

    def untransform(self, Y, Yvar=None, X=None):
        Y, Yvar = super().untransform(Y, Yvar, X)
        return Y + self.prior(X), Yvar

    def untransform_posterior(self, posterior, X=None):
        p = super().untransform_posterior(posterior, X)
        mvn = p.distribution
        return GPyTorchPosterior(MultivariateNormal(mvn.mean + self.prior(X).squeeze(-1), mvn.lazy_covariance_matrix))


class StarlightGP(ExactGP, GPyTorchModel):
    """The DKL as a BoTorch model (``posterior``, acquisition functions take it)."""

    _num_outputs = 1

    def __init__(self, train_X: torch.Tensor, train_Y: torch.Tensor, features: FeatureMap):
        outcome_transform = ResidualStandardize() if features.residual else Standardize(m=1)
        Yt, _ = outcome_transform(train_Y, X=train_X)
        likelihood = GaussianLikelihood(noise_prior=GammaPrior(1.1, 0.05), noise_constraint=GreaterThan(1e-6))
        super().__init__(train_X, Yt.squeeze(-1), likelihood)
        self.outcome_transform = outcome_transform
        self.features = features
        self.mean_module = ConstantMean()
        self.covar_module = ScaleKernel(
            MaternKernel(nu=2.5, ard_num_dims=features.out_dims, lengthscale_prior=GammaPrior(3.0, 6.0)),
            outputscale_prior=GammaPrior(2.0, 0.15))
        self.to(train_X)

    def forward(self, x: torch.Tensor) -> MultivariateNormal:
        return MultivariateNormal(self.mean_module(x), self.covar_module(self.features(x)))


def _tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=DTYPE)


def _train(model: StarlightGP, options: DKLOptions, iters: int, callback=None) -> list[float]:
    model.train()
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    net = [] if options.freeze_encoder else list(model.features.parameters())
    gp = list(model.mean_module.parameters()) + list(model.covar_module.parameters()) + \
        list(model.likelihood.parameters())
    groups = [{"params": gp, "lr": options.lr_gp}] + ([{"params": net, "lr": options.lr_net}] if net else [])
    opt = torch.optim.Adam(groups)
    losses = []
    X, y = model.train_inputs[0], model.train_targets
    for _ in range(iters):
        opt.zero_grad()
        with gpytorch.settings.cholesky_max_tries(6):
            loss = -mll(model(X), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if callback is not None:
            model.eval()
            callback(len(losses), model)
            model.train()
    model.eval()
    return losses


class Starlight:
    """A fitted Starlight: `model` (the BoTorch `StarlightGP`), `predict` on numpy rows,
    `update` with new observations; ``options`` and ``provenance`` (where the encoder
    came from) travel with it into its file (`search.models.model_file`)."""

    def __init__(self, model: StarlightGP, options: DKLOptions, provenance: dict, losses: list | None = None):
        self.model = model
        self.options = options
        self.provenance = provenance
        self.losses = list(losses or [])

    @property
    def train_X(self) -> np.ndarray:
        return self.model.train_inputs[0].detach().numpy()

    @property
    def train_y(self) -> np.ndarray:
        """The training targets on the original scale (ln EDP)."""
        m = self.model
        y, _ = m.outcome_transform.untransform(m.train_targets.unsqueeze(-1), X=m.train_inputs[0])
        return y.squeeze(-1).detach().numpy()

    def _cache(self) -> dict:
        """The training-side quantities of the exact predictive equations, computed once:
        the training features Z, the Cholesky factor L of K(Z, Z) + sigma^2 I and
        alpha = (K + sigma^2 I)^-1 (y - m), all on the standardised scale."""
        if getattr(self, "_pred_cache", None) is None:
            m = self.model
            m.eval()
            with torch.no_grad():
                Z = m.features(m.train_inputs[0])
                noise = m.likelihood.noise.reshape(())
                K = m.covar_module(Z).to_dense()
                K = K + noise * torch.eye(len(Z), dtype=K.dtype)
                L, info = torch.linalg.cholesky_ex(K)
                jitter = 1e-8
                while int(info) != 0 and jitter < 1.0:      # numerically indefinite: add jitter
                    L, info = torch.linalg.cholesky_ex(K + jitter * torch.eye(len(Z), dtype=K.dtype))
                    jitter *= 10
                r = (m.train_targets - m.mean_module(Z)).unsqueeze(-1)
                alpha = torch.cholesky_solve(r, L).squeeze(-1)
            self._pred_cache = {"Z": Z, "L": L, "alpha": alpha, "noise": noise}
        return self._pred_cache

    def predict(self, X, *, observation_noise: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and standard deviation of ln EDP (original scale) for rows
        ``X`` (n, `BASE_DIMS` + 2); ``observation_noise`` adds the fitted noise.

        The exact predictive marginals, mean m(x) + k(x, Z) alpha and variance
        k(x, x) - |L^-1 k(Z, x)|^2, in chunks of `PREDICT_CHUNK` rows: O(n) per row, with
        no test-by-test covariance (gpytorch's ``__call__`` evaluates the kernel of the
        joint train + test batch, quadratic in the batch even under ``fast_pred_var``).
        Equal to the posterior of `StarlightGP` (BoTorch's ``posterior``) to rounding."""
        m = self.model
        m.eval()
        Xt = _tensor(X)
        if Xt.ndim != 2 or Xt.shape[1] != m.train_inputs[0].shape[1]:
            raise ValueError(f"X must be (n, {m.train_inputs[0].shape[1]}); got {tuple(Xt.shape)}")
        if len(Xt) == 0:
            return np.zeros(0), np.zeros(0)
        c = self._cache()
        ot = m.outcome_transform
        mu, sd = ot.means.squeeze(), ot.stdvs.squeeze()
        means, vars_ = [], []
        with torch.no_grad():
            for i in range(0, len(Xt), PREDICT_CHUNK):
                Zs = m.features(Xt[i:i + PREDICT_CHUNK])
                Ks = m.covar_module(Zs, c["Z"]).to_dense()                  # (q, n)
                means.append(m.mean_module(Zs) + Ks @ c["alpha"])
                V = torch.linalg.solve_triangular(c["L"], Ks.T, upper=False)  # (n, q)
                v = m.covar_module(Zs, diag=True) - (V * V).sum(0)
                if observation_noise:
                    v = v + c["noise"]
                vars_.append(v.clamp_min(1e-12))
        mean = torch.cat(means) * sd + mu
        if self.options.residual:
            mean = mean + ResidualStandardize.prior(Xt).squeeze(-1)
        std = torch.cat(vars_).sqrt() * sd
        return mean.numpy(), std.numpy()

    def update(self, X_new, y_new, *, iters: int | None = None) -> Starlight:
        """A new Starlight on the training rows plus (X_new, y_new ln EDP), fine-tuned for
        ``iters`` Adam steps (default: a quarter of ``options.iters``) from this one's
        weights; the feature standardisation stays this model's."""
        X = torch.cat([self.model.train_inputs[0], _tensor(X_new)])
        y = torch.cat([_tensor(self.train_y), _tensor(y_new).reshape(-1)])
        features = copy.deepcopy(self.model.features)
        with torch.random.fork_rng():
            torch.manual_seed(self.options.seed)
            model = StarlightGP(X, y.unsqueeze(-1), features)
            state = {k: v for k, v in self.model.state_dict().items() if not k.startswith("outcome_transform")}
            model.load_state_dict(state, strict=False)
            n = self.options.iters // 4 if iters is None else int(iters)
            losses = _train(model, self.options, n)
        return Starlight(model, self.options, self.provenance, self.losses + losses)


def build_model(encoder: LatentEncoder, X, y, residual: bool) -> StarlightGP:
    """An untrained `StarlightGP` on (X, y) with a double-precision copy of ``encoder``."""
    Xt, yt = _tensor(X), _tensor(y).reshape(-1, 1)
    enc = copy.deepcopy(encoder).to(DTYPE)
    return StarlightGP(Xt, yt, FeatureMap(enc, residual, Xt))


def fit_starlight(encoder: LatentEncoder, X, y, options: DKLOptions = DKLOptions(), *,
                  provenance: dict | None = None, callback=None) -> Starlight:
    """Starlight on rows ``X`` (n, `BASE_DIMS` + 2) and targets ``y`` ln EDP, its encoder
    a copy of ``encoder`` (Starlight-Low's, `StarlightLow.encoder`). ``callback(i,
    Starlight)``, if given, is called after every training iteration i (for the
    training curve of thesis Fig 5.6; the model is in eval mode during the call)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape[1] < BASE_DIMS + (2 if options.residual else 0) or len(X) != len(y) or len(X) < 2:
        raise ValueError(f"X (n, >= {BASE_DIMS}) and y (n,) with n >= 2 expected; got {X.shape} and {y.shape}")
    cols = X[:, :BASE_DIMS + 2] if options.residual else X[:, :BASE_DIMS]
    if not (np.isfinite(cols).all() and np.isfinite(y).all()):
        raise ValueError("X (the columns the model reads) and y must be finite")
    with torch.random.fork_rng():
        torch.manual_seed(options.seed)
        model = build_model(encoder, X, y, options.residual)
        cb = None if callback is None else (lambda i, m: callback(i, Starlight(m, options, {})))
        losses = _train(model, options, options.iters, cb)
    return Starlight(model, options, dict(provenance or {}), losses)
