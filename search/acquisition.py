"""Acquisition functions over a pool of candidates: BoTorch's analytic (q = 1) ones on a
fitted `search.models.gp.Surrogate`, numpy in and out.

One job: score pool rows. Fitting is `search.models`; picking the best rows is
`search.optim.select_from_pool`; loops are `search.optimizers`.

Conventions
-----------
* The search minimises (log EDP, latency, ...). Each function says whether its score is
  better lower or higher; pass that to `select_from_pool` (``lower_is_better``).
* ``X`` is a pool of rows in the model's input space, (m, d), scored to (m,); for a
  batched surrogate (b members) it is (b, m, d), one pool per member, or (m, d), shared,
  and the scores are (b, m): one score per pool row per member.
* Scores are on the original y scale (the surrogate's outcome transform untransforms the
  posterior), from the latent function's posterior (no observation noise), its variance
  floored at 1e-12 as BoTorch does.

`lcb(surrogate, X, kappa)` = mean - kappa * std, **lower is better**.
    BoTorch's ``UpperConfidenceBound(model, beta, maximize=False)`` returns
    ``-mean + sqrt(beta) * std`` (``botorch/acquisition/analytic.py``:
    ``(mean if self.maximize else -mean) + self.beta.sqrt() * sigma``), higher is better;
    with ``beta = kappa**2`` that is exactly ``-lcb``. Spotlight's public code ranks its
    candidates by mean - 1.0 * std (kappa = 1).
`ei(surrogate, X, best_f)` = log E[max(best_f - f(x), 0)], **higher is better**.
    BoTorch's ``LogExpectedImprovement(model, best_f, maximize=False)``: the logarithm of
    the expected improvement below ``best_f`` (the best, i.e. lowest, y observed so far,
    on the original scale; a scalar, or one per batch member). Numerically stable far
    from ``best_f`` where plain EI underflows to 0 (it returns large negative logs).

Both evaluate through ``surrogate.pool_model`` (the fitted BoTorch GP's marginals computed
in chunked joint posterior calls: `search.models.gp.MarginalPosteriorModel`), so the
q = 1 t-batches ``(rows, [b,] 1, d)`` BoTorch expects are never broadcast row by row.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["lcb", "ei", "LOWER_IS_BETTER"]

#: Whether a lower score is better, by acquisition function (for `select_from_pool`).
LOWER_IS_BETTER = {"lcb": True, "ei": False}


def _t_batches(surrogate, X) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Pool ``X`` -> the q = 1 t-batch tensor BoTorch's analytic acquisition functions
    take: (m, 1, d) for a single model, (m, b, 1, d) for a batched one; and the shape of
    the scores to return ((m,) or (b, m))."""
    from .models.gp import DTYPE

    X = surrogate.check_inputs(X)
    t = torch.as_tensor(X, dtype=DTYPE)
    bs = surrogate.batch_shape
    if not bs:
        return t.unsqueeze(-2), (X.shape[0],)
    if t.ndim == 2:
        t = t.unsqueeze(0).expand(bs[0], *t.shape)
    return t.transpose(0, 1).unsqueeze(-2), (bs[0], X.shape[-2])


def _evaluate(acqf, t: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    with torch.no_grad():
        v = acqf(t)                     # (m,) or (m, b)
    v = v.transpose(0, 1) if v.ndim == 2 else v
    return v.reshape(shape).numpy().copy()


def _check_kappa(kappa) -> float:
    try:
        k = float(kappa)
    except (TypeError, ValueError) as e:
        raise TypeError(f"kappa must be a number, not {type(kappa).__name__}") from e
    if not np.isfinite(k) or k < 0:
        raise ValueError(f"kappa must be finite and >= 0, not {kappa!r}")
    return k


def lcb(surrogate, X, kappa: float = 1.0) -> np.ndarray:
    """Lower confidence bound mean - kappa * std at the rows of pool ``X`` (lower is
    better): (m,), or (b, m) for a batched surrogate. ``-UpperConfidenceBound(model,
    beta=kappa**2, maximize=False)``; see the module docstring."""
    from botorch.acquisition.analytic import UpperConfidenceBound

    k = _check_kappa(kappa)
    t, shape = _t_batches(surrogate, X)
    acqf = UpperConfidenceBound(surrogate.pool_model, beta=k * k, maximize=False)
    return -_evaluate(acqf, t, shape)


def ei(surrogate, X, best_f) -> np.ndarray:
    """Log expected improvement below ``best_f`` at the rows of pool ``X`` (higher is
    better): (m,), or (b, m) for a batched surrogate, where ``best_f`` is a number or one
    per member, (b,). ``LogExpectedImprovement(model, best_f, maximize=False)``."""
    from botorch.acquisition.analytic import LogExpectedImprovement

    from .models.gp import DTYPE

    bf = np.asarray(best_f, dtype=np.float64)
    bs = surrogate.batch_shape
    if not np.all(np.isfinite(bf)):
        raise ValueError("best_f must be finite")
    if bf.ndim > 1 or (bf.ndim == 1 and bf.shape != tuple(bs)):
        raise ValueError(f"best_f must be a number{f' or have shape {tuple(bs)}' if bs else ''}, not shape {bf.shape}")
    t, shape = _t_batches(surrogate, X)
    # one best_f per member: (b, 1), to broadcast against the posterior mean (m, b, 1)
    tbf = torch.as_tensor(bf, dtype=DTYPE).reshape(-1, 1) if bf.ndim == 1 else torch.as_tensor(bf, dtype=DTYPE)
    acqf = LogExpectedImprovement(surrogate.pool_model, best_f=tbf, maximize=False)
    return _evaluate(acqf, t, shape)
