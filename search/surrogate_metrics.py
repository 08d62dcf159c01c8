"""How well a surrogate predicts ln EDP on held-out rows: one function, `metrics`.

``rho``              Spearman's rank correlation of prediction and truth (thesis 5.3); 0
                     for a constant prediction, which ranks nothing
``median_abs_log``   median |ln predicted - ln actual| (0.01 is a 1 % error)
``p95_abs_log``      its 95th percentile
``coverage90``       share of rows inside the central 90 % predictive interval
                     mean +- 1.6449 std (only with a std: the GP models)
``top10_recall``     of the 10 % rows with the lowest actual EDP (ceil(0.1 n)), the share
                     that are among the 10 % with the lowest prediction
``n``                rows
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm, spearmanr

__all__ = ["metrics", "METRIC_NAMES", "Z90"]

METRIC_NAMES = ("rho", "median_abs_log", "p95_abs_log", "coverage90", "top10_recall")
Z90 = float(norm.ppf(0.95))


def metrics(y, mean, std=None) -> dict:
    """The metrics above for truth ``y`` and prediction ``mean`` (ln EDP), with the
    predictive standard deviation ``std`` when the model has one."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    m = np.asarray(mean, dtype=np.float64).reshape(-1)
    if y.shape != m.shape or len(y) < 2:
        raise ValueError(f"y and mean must be equal-length vectors of >= 2; got {y.shape} and {m.shape}")
    err = np.abs(m - y)
    k = max(1, math.ceil(0.1 * len(y)))
    best = set(np.argsort(y, kind="stable")[:k].tolist())
    picked = set(np.argsort(m, kind="stable")[:k].tolist())
    rho = float(spearmanr(m, y)[0]) if np.ptp(m) > 0 and np.ptp(y) > 0 else 0.0
    out = {"n": int(len(y)), "rho": rho, "median_abs_log": float(np.median(err)),
           "p95_abs_log": float(np.percentile(err, 95)), "top10_recall": len(best & picked) / k,
           "coverage90": None}
    if std is not None:
        s = np.asarray(std, dtype=np.float64).reshape(-1)
        out["coverage90"] = float(np.mean(err <= Z90 * s))
    return out
