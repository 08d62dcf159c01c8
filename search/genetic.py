"""A genetic algorithm over a finite candidate pool: pymoo's GA, proposals snapped to the pool.

Spotlight-GA (thesis 4.4.5) replaces daBO_HW and daBO_SW by a genetic algorithm under
the same harness. To keep the comparison about the *search* and not about the candidate
set, the GA here picks from exactly the pools the other variants pick from: the hardware
configurations of `search.space.HardwareSpace` within the area budget, and per layer the
Sobol pool of constrained mappings (`search.software.SoftwareSpace.pool`).

`PoolGA` runs pymoo's single-objective ``GA`` (tournament selection, simulated binary
crossover, polynomial mutation, fitness survival, duplicate elimination; pymoo's
defaults) in ask/tell form over the unit cube of the pool's *raw parameters*: each
column of the pool's encoding (`HardwareSpace.encode_arrays`, `MappingSpace.encode_arrays`
version 2) rescaled to [0, 1] by the pool's min and max. Every offspring pymoo proposes
is snapped to the nearest pool member not yet evaluated (L1 distance in that cube, ties
to the lower index; one offspring per member, in the order pymoo returns them), and the
snapped genome is what the GA is told about, so its population always consists of
evaluated pool members. The first population is given (the caller's random warm-up
picks, which every variant shares).

Fitness is the log objective; an infeasible evaluation (objective inf or nan) gets
``log(max finite) + INFEASIBLE_PENALTY`` of what the GA has seen, so it loses every
tournament against a feasible one. Randomness is pymoo's own generator, seeded through
``Algorithm.setup(seed=...)``: same pool, seed and told values, same proposals.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["INFEASIBLE_PENALTY", "PoolGA", "unit_columns"]

#: added to the worst finite log objective seen, as the fitness of an infeasible point
INFEASIBLE_PENALTY = 10.0


def unit_columns(X) -> np.ndarray:
    """Columns of ``X`` (n, d) rescaled to [0, 1] by their min and max (constant -> 0)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"pool encoding must be a non-empty (n, d) array; got shape {X.shape}")
    lo, hi = X.min(axis=0), X.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (X - lo) / span


class PoolGA:
    """pymoo GA whose individuals are members of a fixed pool (see the module docstring).

    ``encoding`` (n, d): the pool's raw parameters; ``pop_size``: the population
    pymoo keeps; ``n_offsprings``: the offspring per generation; ``seed``: pymoo's
    generator seed. Use: ``start(idx, values)`` once with the evaluated first
    population, then alternately ``ask(k, exclude)`` (-> pool indices of the next
    generation, never one in ``exclude`` or used before) and ``tell(values)`` (their
    objectives, in order)."""

    def __init__(self, encoding, pop_size: int, n_offsprings: int, seed: int):
        from pymoo.algorithms.soo.nonconvex.ga import GA
        from pymoo.core.problem import Problem

        if isinstance(pop_size, bool) or not isinstance(pop_size, int) or pop_size < 2:
            raise ValueError(f"GA population must be an integer >= 2; got {pop_size!r}")
        self.U = unit_columns(encoding)
        if isinstance(n_offsprings, bool) or not isinstance(n_offsprings, int) or n_offsprings < 1:
            raise ValueError(f"GA offspring per generation must be an integer >= 1; got {n_offsprings!r}")
        self.pop_size = pop_size
        self.n_offsprings = n_offsprings
        self.seed = int(seed)
        self._problem = Problem(n_var=self.U.shape[1], n_obj=1, xl=0.0, xu=1.0)
        self._ga_cls = GA
        self._algo = None
        self._pending = None          # pool indices awaiting their values
        self._used = np.zeros(len(self.U), dtype=bool)
        self._worst = -math.inf

    def _fitness(self, values) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.log(v)
        ok = np.isfinite(f)
        if ok.any():
            self._worst = max(self._worst, float(f[ok].max()))
        base = self._worst if math.isfinite(self._worst) else 0.0
        return np.where(ok, f, base + INFEASIBLE_PENALTY)

    def start(self, idx, values) -> None:
        """Seed the GA with the evaluated pool members ``idx`` and their objectives
        (positive; inf/nan = infeasible): its first population."""
        from pymoo.core.population import Population

        if self._algo is not None:
            raise RuntimeError("start() was already called")
        idx = np.asarray(idx, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if len(idx) == 0 or values.shape != idx.shape:
            raise ValueError(f"the GA's first population needs pool indices and as many values; got "
                             f"{len(idx)} indices and values of shape {values.shape}")
        self._algo = self._ga_cls(pop_size=self.pop_size, n_offsprings=self.n_offsprings,
                                  sampling=self.U[idx].copy(), eliminate_duplicates=True)
        self._algo.setup(self._problem, seed=self.seed)
        self._algo.ask()                 # pymoo's copy of the given first population
        self._used[idx] = True
        self._algo.tell(infills=Population.new("X", self.U[idx].copy(), "F", self._fitness(values)[:, None]))

    @property
    def started(self) -> bool:
        return self._algo is not None

    def tell(self, values) -> None:
        """The objectives (positive; inf/nan = infeasible) of the last ask's indices."""
        from pymoo.core.population import Population

        if self._pending is None:
            raise RuntimeError("tell() without a pending generation")
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(self._pending),):
            raise ValueError(f"expected {len(self._pending)} values, got shape {values.shape}")
        self._algo.tell(infills=Population.new("X", self.U[self._pending].copy(),
                                               "F", self._fitness(values)[:, None]))
        self._pending = None

    def ask(self, k: int, exclude=None) -> np.ndarray:
        """Up to ``k`` new pool indices (fewer only when the pool runs out): pymoo's
        offspring, topped up with uniform points from pymoo's generator when it returns
        fewer, each snapped to the nearest unused member outside ``exclude``."""
        if self._algo is None or self._pending is not None:
            raise RuntimeError("ask() needs start() and a tell() of the pending generation")
        free = ~self._used if exclude is None else ~self._used & ~np.asarray(exclude, dtype=bool)
        X = self._algo.ask().get("X")[:k]
        if len(X) < k:
            X = np.concatenate([X, self._algo.random_state.random((k - len(X), self.U.shape[1]))])
        out = []
        for x in X:
            if not free.any():
                break
            d = np.abs(self.U - x[None, :]).sum(axis=1)
            d[~free] = np.inf
            j = int(np.argmin(d))
            out.append(j)
            free[j] = False
        idx = np.array(out, dtype=np.int64)
        self._used[idx] = True
        self._pending = idx if len(idx) else None
        return idx
