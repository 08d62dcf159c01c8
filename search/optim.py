"""Optimising an acquisition function over a discrete pool: `select_from_pool`.

One job: turn scores (from `search.acquisition`) into the indices of the rows to evaluate.
Models never pick candidates; optimizers (`search.optimizers`) only loop and call this.

Why a sort: for an analytic (q = 1) acquisition function every pool row has its own
score, independent of the others, so the k best rows are exactly the k best scores: a
stable sort is the exact optimum over the pool. BoTorch's ``optimize_acqf_discrete``
solves a different problem (a joint q-batch acquisition, picked greedily one point at a
time with fantasies or pending points), which a top-k of an analytic score does not need.
"""

from __future__ import annotations

import numpy as np

__all__ = ["select_from_pool"]


def _exclusion_mask(exclude, shape: tuple[int, ...]) -> np.ndarray:
    """``exclude`` (None, a boolean mask of ``shape`` or of the pool axis (m,), or a 1-D
    integer index array into the pool axis) -> a boolean mask of ``shape``."""
    m = shape[-1]
    if exclude is None:
        return np.zeros(shape, dtype=bool)
    ex = np.asarray(exclude)
    if ex.dtype == bool:
        if ex.shape == shape or ex.shape == (m,):
            return np.broadcast_to(ex, shape).copy()
        raise ValueError(f"a boolean exclude mask must have shape {shape}" + (f" or ({m},)" if len(shape) > 1 else "")
                         + f", not {ex.shape}")
    if ex.size == 0:
        return np.zeros(shape, dtype=bool)
    if ex.ndim != 1 or not np.issubdtype(ex.dtype, np.integer):
        raise ValueError("exclude must be a boolean mask or a 1-D array of integer indices "
                         f"(dtype {ex.dtype}, shape {ex.shape})")
    if ex.min() < -m or ex.max() >= m:
        raise IndexError(f"exclude index out of range for a pool of {m} rows")
    mask = np.zeros(m, dtype=bool)
    mask[ex] = True
    return np.broadcast_to(mask, shape).copy()


def select_from_pool(scores, k: int, *, lower_is_better: bool = True, exclude=None) -> np.ndarray:
    """Indices of the ``k`` best pool rows by ``scores``.

    ``scores`` (m,) gives (min(k, available),) indices; batched scores (b, m) give (b, k')
    with one row of picks per batch member, where k' = min(k, the fewest rows any member
    has available). Best first; ties are broken by the lower index (a stable sort), so the
    result is deterministic. Rows whose index is in ``exclude`` are never picked: a
    boolean mask (m,) or (b, m) (True = excluded, e.g. already evaluated), or an integer
    index array (the same rows for every member). NaN scores rank last (after every
    finite score). ``lower_is_better`` is True for `search.acquisition.lcb`, False for
    `search.acquisition.ei`.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim not in (1, 2):
        raise ValueError(f"scores must have shape (m,) or (b, m), not {s.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, not {k!r}")
    mask = _exclusion_mask(exclude, s.shape)
    key = s if lower_is_better else -s
    # excluded rows go after everything (inf), NaN scores after finite ones, both stably
    key = np.where(np.isnan(key), np.inf, key)
    order = np.lexsort((key, np.isnan(s) & ~mask, mask), axis=-1)
    available = (~mask).sum(axis=-1)
    kk = int(min(k, available.min(initial=s.shape[-1])))
    return order[..., :kk].astype(np.int64)
