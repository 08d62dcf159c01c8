"""Surrogate models of the search (BoTorch/GPyTorch): fit on numpy data, predict on the
original scale. Scaling of inputs and outputs lives inside the models, nowhere else.

`search.models.gp`
    `fit_gp(X, y, kernel=..., seed=...) -> Surrogate`: an exact GP (BoTorch
    ``SingleTaskGP``), one model or a batch of independent ones fitted in one call;
    `MarginalPosteriorModel`, its fast q = 1 view for acquisition over pools.
"""

from .gp import KERNELS, GPFitWarning, MarginalPosteriorModel, Surrogate, fit_gp

__all__ = ["KERNELS", "GPFitWarning", "MarginalPosteriorModel", "Surrogate", "fit_gp"]
