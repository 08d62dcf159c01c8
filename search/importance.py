"""Permutation importance of a fitted surrogate's inputs (thesis section 4.4.4, Fig 4.5).

One job: after a GP is trained, permute each input column in turn and measure how much
the surrogate's prediction changes (Altmann et al., "Permutation importance: a corrected
feature importance measure", 2010). Features whose permutation moves the prediction a
lot are the ones the surrogate relies on. Fitting is `search.models.gp`; the inputs are
those the optimiser used (`search.optimizers.spotlight`).

`permutation_importance(predict, X)` is the measure for any predictor;
`relative(importances)` normalises it to shares that sum to 1;
`software_importance(records, variant, objective)` does what the thesis does for daBO_SW
on one design: a GP per layer on that layer's evaluations, its permutation importance on
the same points, normalised per layer, and the mean over the layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .evaluators import layer_objective
from .features import SOFTWARE_FEATURE_NAMES
from .software import MappingBatch
from .space import MappingSpace

__all__ = ["MIN_POINTS", "SoftwareImportance", "feature_names", "permutation_importance", "relative",
           "software_importance"]

#: fewest finite-objective evaluations of a layer for its GP to be fitted and measured
MIN_POINTS = 3
_MAX_REPEATS = 10_000


def permutation_importance(predict, X, *, n_repeats: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Permutation importance of each column of ``X`` for ``predict``.

    Parameters
    ----------
    predict : callable
        Maps an (m, d) array to the (m,) predicted means (any m).
    X : array_like, (n, d)
        The points to measure on (for a surrogate: those it was trained on), finite.
    n_repeats : int
        Permutations per column, 1..10,000.
    seed : int
        Seeds ``numpy.random.default_rng(seed)``, the only source of randomness.

    Returns
    -------
    mean, std : ndarray, (d,) each
        With ``f = predict(X)`` and ``X^(j,r)`` the copy of ``X`` whose column j is
        permuted by the r-th permutation ``pi_(j,r)`` of the rows,

            I_(j,r) = (1/n) sum_i |predict(X^(j,r))_i - f_i|
            mean_j  = (1/R) sum_r I_(j,r)
            std_j   = sqrt((1/R) sum_r (I_(j,r) - mean_j)^2)        (R = n_repeats)

        The permutations are drawn in the order j = 0..d-1, then r = 0..R-1, each as
        ``rng.permutation(n)``. For a linear column, ``predict = a * x_j + g(others)``,
        ``I_(j,r) = |a| / n * sum_i |x_(pi(i), j) - x_(i, j)|``, whose expectation over
        uniform permutations is ``|a| / n^2 * sum_(i,k) |x_(i,j) - x_(k,j)|``; a column the
        prediction does not depend on has importance 0.
    """
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, (int, np.integer)) or not 1 <= n_repeats <= _MAX_REPEATS:
        raise ValueError(f"n_repeats must be an integer in 1..{_MAX_REPEATS:,}; got {n_repeats!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must have shape (n, d) with n, d >= 1; got {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X must be finite")
    n, d = X.shape
    base = _predict(predict, X, n)
    rng = np.random.default_rng(int(seed))
    per = np.empty((d, int(n_repeats)))
    for j in range(d):
        # the R permuted copies of X stacked into one (R * n, d) call of predict
        stacked = np.tile(X, (int(n_repeats), 1))
        for r in range(int(n_repeats)):
            stacked[r * n:(r + 1) * n, j] = X[rng.permutation(n), j]
        moved = _predict(predict, stacked, len(stacked)).reshape(int(n_repeats), n)
        per[j] = np.abs(moved - base[None, :]).mean(axis=1)
    return per.mean(axis=1), per.std(axis=1)


def _predict(predict, X: np.ndarray, m: int) -> np.ndarray:
    y = np.asarray(predict(X), dtype=np.float64)
    if y.shape != (m,):
        raise ValueError(f"predict must map ({m}, d) to ({m},); got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("predict returned non-finite values")
    return y


def relative(importances) -> np.ndarray:
    """Importances as shares: ``v / sum(v)`` (sums to 1); all zeros stay zeros.

    ``importances`` is a 1-D array of finite, non-negative numbers.
    """
    v = np.asarray(importances, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"importances must be 1-D; got shape {v.shape}")
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError("importances must be finite and non-negative")
    total = v.sum()
    return v / total if total > 0 else np.zeros_like(v)


def feature_names(variant: str, hw, layer) -> tuple[str, ...]:
    """Names of the software inputs of ``variant`` (the columns of
    `search.optimizers.spotlight._sw_inputs`): `SOFTWARE_FEATURE_NAMES` for spotlight and
    r, `MappingSpace(hw, layer, version=2).encoding_names` for v and ga, both for a (where
    the raw names that are also feature names, the three ``buffers_*``, get a ``raw_``
    prefix so that every name is unique)."""
    from .optimizers.spotlight import VARIANTS

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    names: tuple[str, ...] = ()
    if variant in ("spotlight", "a", "r"):
        names += tuple(SOFTWARE_FEATURE_NAMES)
    if variant in ("v", "a", "ga"):
        raw = MappingSpace(hw, layer, version=2).encoding_names
        names += tuple(f"raw_{n}" if n in names else n for n in raw)
    return names


@dataclass(frozen=True, eq=False)
class SoftwareImportance:
    """Relative permutation importance of daBO_SW's inputs on one design.

    ``layers`` maps each measured layer's name to its (d,) shares (summing to 1, or all
    zero when the surrogate is flat), ``counts`` to its number of points; ``mean`` is
    the mean of the layers' shares ((d,), zeros when no layer was measured); ``skipped``
    names the layers with fewer than `MIN_POINTS` finite evaluations."""

    names: tuple
    layers: MappingProxyType      # layer name -> (d,) ndarray, read-only
    counts: MappingProxyType      # layer name -> points measured
    mean: np.ndarray
    skipped: tuple
    variant: str
    objective: str
    hw: object                    # HardwareConfig


def software_importance(records, variant: str, objective: str, *, seed: int = 0,
                        n_repeats: int = 10) -> SoftwareImportance:
    """Permutation importance of the software surrogate's inputs, per layer, on one design.

    ``records`` are `search.runs.EvaluationRecord` of ONE hardware design and one
    fidelity (e.g. ``[r for r in run.evaluations() if r.hw == best.hw]``). For each layer
    (grouped by `Layer`, in order of first appearance) with at least `MIN_POINTS`
    evaluations whose ``layer_objective(result, objective)`` is finite and positive:

        X = _sw_inputs(variant, hw, layer, MappingBatch.from_mappings(mappings))
        y = log(layer_objective)
        surrogate = fit_gp(X, y, seed=s_l)       (linear kernel, as the optimiser)
        share_l = relative(permutation_importance(mean of surrogate, X, seed=s_l)[0])

    with ``s_l`` drawn from ``SeedSequence([seed, l])`` (l the layer's position), and
    ``mean = (1/L) sum_l share_l`` over the L measured layers.
    """
    from .evaluators import OBJECTIVES
    from .models.gp import fit_gp
    from .optimizers.spotlight import VARIANTS, _sw_inputs

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    records = list(records)
    if not records:
        raise ValueError("no evaluation records given")
    hws = {r.hw for r in records}
    if len(hws) != 1:
        raise ValueError(f"records must be of one hardware design; got {len(hws)}")
    fids = {r.fidelity for r in records}
    if len(fids) != 1:
        raise ValueError(f"records must be of one fidelity; got {', '.join(sorted(fids))}")
    hw = records[0].hw
    groups: dict = {}
    for r in records:
        groups.setdefault(r.layer, []).append(r)
    by_name = {}
    for layer in groups:
        if by_name.setdefault(layer.name, layer) is not layer:
            raise ValueError(f"two different layers are named {layer.name!r}")
    names = feature_names(variant, hw, next(iter(groups)))
    shares, counts, skipped = {}, {}, []
    for li, (layer, recs) in enumerate(groups.items()):
        values = [layer_objective(r.result, objective) for r in recs]
        ok = [i for i, v in enumerate(values) if math.isfinite(v) and v > 0]
        if len(ok) < MIN_POINTS:
            skipped.append(layer.name)
            continue
        batch = MappingBatch.from_mappings([recs[i].mapping for i in ok])
        X = _sw_inputs(variant, hw, layer, batch)
        y = np.log([values[i] for i in ok])
        s = int(np.random.SeedSequence([int(seed), li]).generate_state(1)[0])
        sur = fit_gp(X, y, seed=s)
        mean, _ = permutation_importance(lambda Z: sur.posterior_mean_std(Z)[0], X, n_repeats=n_repeats, seed=s)
        share = relative(mean)
        share.setflags(write=False)
        shares[layer.name], counts[layer.name] = share, len(ok)
    avg = np.mean(list(shares.values()), axis=0) if shares else np.zeros(len(names))
    avg.setflags(write=False)
    return SoftwareImportance(names, MappingProxyType(shares), MappingProxyType(counts), avg, tuple(skipped),
                              variant, objective, hw)
