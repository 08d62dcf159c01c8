"""The constrained software space of one layer on one design, and the best-of-N mapper.

Thesis section 6.1.5 (Polaris's layerwise software optimiser): the realizable mappings
of a layer are still far too many, so the search draws from a constrained space

* the spatially unrolled factors maximise the array's use: the array factor of C (K) is
  the largest divisor of the layer's C (K) per group that is <= ``hw.dim``;
* every tiling factor divides the layer's loop bound (no edge cases): the spad factor of
  a loop is any divisor of what the array factor leaves, the DRAM factor the rest;
* any DRAM-level loop order (the position of a loop whose DRAM factor is 1 changes
  nothing, so orders are kept in a canonical form: the loops that iterate in the given
  order, then the others in `hw.layer.LOOPS` order);
* per operand single or double buffering (``buffering=False``: all double);
* fitting mappings only (`hw.mapping.check_arrays`, the one fit rule).

`SoftwareSpace.pool(n, seed)` gives ``n`` distinct such mappings from a scrambled Sobol
sequence over the 11-number unit cube (7 factor choices, the order's Lehmer code, three
buffer choices; as `search.space.MappingSpace` reads its cube), as a `MappingBatch` of
arrays for the vectorised evaluators and features. Same arguments, same pool.

`best_mapping(hw, layer, samples=N, objective=...)` evaluates such a pool (plus
`hw.mapping.default_mapping`) with the analytical model in one vectorised call and returns
the best: the ``--mapping best`` of ``python -m sim.run`` / ``python -m cost.run``. By
construction it is never worse than the default mapping by the model's own estimate.
Measured (BENCHMARKS.md, "The search"): about 0.1 s per ResNet-50 layer at 4,096 samples.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from hw.config import HardwareConfig
from hw.layer import LOOPS, Layer
from hw.mapping import DEFAULT_BUFFERS, LEVELS, OPERANDS, Mapping, MappingError, check_arrays, default_mapping

from .space import N_ORDERS, MappingSpace

__all__ = ["MAX_SAMPLES", "OBJECTIVES", "MappingBatch", "SoftwareSpace", "best_mapping", "objective_values"]

_NL = len(LOOPS)
#: unit-cube numbers of a software point: 7 factor choices, the order, 3 buffer choices
UNIT_DIMS = _NL + 1 + len(OPERANDS)
#: the most mappings one pool / one `best_mapping` call may hold (memory: ~200 B each)
MAX_SAMPLES = 1 << 20
#: what `best_mapping` minimises: network-style EDP, cycles or energy of the layer
OBJECTIVES = ("edp", "cycles", "energy")
_N_ORDERS = N_ORDERS


def _perms() -> np.ndarray:
    import itertools
    return np.array(list(itertools.permutations(range(_NL))), dtype=np.int64)


_PERMS = _perms()
_PERMS.setflags(write=False)


def _check_count(v, name: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi:,}; got {v!r}")
    return int(v)


@dataclass(frozen=True, eq=False)
class MappingBatch:
    """B mappings of one layer in array form (`hw.mapping`'s layout with a batch axis):
    ``factors`` (B, 3, 7), ``order`` (B, 7), ``buffers`` (B, 3), int64, read-only."""

    factors: np.ndarray
    order: np.ndarray
    buffers: np.ndarray

    def __post_init__(self):
        f = np.array(self.factors, dtype=np.int64)
        o = np.array(self.order, dtype=np.int64)
        b = np.array(self.buffers, dtype=np.int64)
        if f.ndim != 3 or f.shape[1:] != (len(LEVELS), _NL):
            raise ValueError(f"MappingBatch.factors must have shape (B, 3, 7); got {f.shape}")
        if o.shape != (len(f), _NL) or b.shape != (len(f), len(OPERANDS)):
            raise ValueError(f"MappingBatch.order must be (B, 7) and buffers (B, 3) with B = {len(f)}; "
                             f"got {o.shape} and {b.shape}")
        for a in (f, o, b):
            a.setflags(write=False)
        object.__setattr__(self, "factors", f)
        object.__setattr__(self, "order", o)
        object.__setattr__(self, "buffers", b)

    def __len__(self) -> int:
        return len(self.factors)

    @classmethod
    def from_mappings(cls, mappings) -> MappingBatch:
        ms = list(mappings)
        if not ms:
            return cls(np.zeros((0, len(LEVELS), _NL)), np.zeros((0, _NL)), np.zeros((0, len(OPERANDS))))
        fo = [m.to_arrays() for m in ms]
        return cls(np.stack([f for f, _ in fo]), np.stack([o for _, o in fo]),
                   np.array([m.buffers for m in ms]))

    def mapping(self, i: int) -> Mapping:
        """Row ``i`` as a `Mapping`."""
        return Mapping.from_arrays(self.factors[i], self.order[i], self.buffers[i])

    def mappings(self) -> list[Mapping]:
        return [self.mapping(i) for i in range(len(self))]

    def take(self, idx) -> MappingBatch:
        idx = np.asarray(idx, dtype=np.int64)
        return MappingBatch(self.factors[idx], self.order[idx], self.buffers[idx])

    def concat(self, other: MappingBatch) -> MappingBatch:
        return MappingBatch(np.concatenate([self.factors, other.factors]),
                            np.concatenate([self.order, other.order]),
                            np.concatenate([self.buffers, other.buffers]))

    def keys(self) -> np.ndarray:
        """One int64-row view per mapping (factors, order, buffers), for de-duplication."""
        return np.concatenate([self.factors.reshape(len(self), -1), self.order, self.buffers], axis=1)


def canonical_orders(factors: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The orders (B, 7) with the loops of DRAM factor 1 moved after the others (which
    keep their relative order), those in LOOPS order: the same schedule, one spelling."""
    f = np.asarray(factors)
    o = np.asarray(order, dtype=np.int64)
    iterates = np.take_along_axis(f[:, 0, :], o, axis=1) > 1
    # sort key: iterating loops first by position, then the others by loop index
    pos = np.arange(_NL)[None, :]
    key = np.where(iterates, pos, _NL + o)
    return np.take_along_axis(o, np.argsort(key, axis=1, kind="stable"), axis=1)


@dataclass(frozen=True)
class SoftwareSpace:
    """The constrained mappings of ``layer`` on ``hw`` (see the module docstring)."""

    hw: HardwareConfig
    layer: Layer
    buffering: bool = True
    _tab: np.ndarray = field(init=False, repr=False, compare=False)
    _n: np.ndarray = field(init=False, repr=False, compare=False)
    _dims: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.hw, HardwareConfig):
            raise ValueError(f"SoftwareSpace.hw must be a HardwareConfig; got {type(self.hw).__name__}")
        if not isinstance(self.layer, Layer):
            raise ValueError(f"SoftwareSpace.layer must be a Layer; got {type(self.layer).__name__}")
        if not isinstance(self.buffering, bool):
            raise ValueError(f"SoftwareSpace.buffering must be True or False; got {self.buffering!r}")
        dims = self.layer.dims
        # the unconstrained space's (spad, array) choices, kept where the array factor is
        # the largest (1 for loops the array does not unroll): one rule of what a choice is
        full = MappingSpace(self.hw, self.layer)
        choices = []
        for lp in LOOPS:
            cs = full.choices(lp)
            a = max(a for _, a in cs)
            choices.append([(s_, a_) for s_, a_ in cs if a_ == a])
        n = np.array([len(c) for c in choices], dtype=np.int64)
        tab = np.ones((2, _NL, int(n.max())), dtype=np.int64)
        for i, cs in enumerate(choices):
            tab[:, i, :len(cs)] = np.array(cs, dtype=np.int64).T
        for name, v in (("_tab", tab), ("_n", n), ("_dims", np.array([dims[lp] for lp in LOOPS], dtype=np.int64))):
            v.setflags(write=False)
            object.__setattr__(self, name, v)

    @property
    def array_factors(self) -> dict:
        """The fixed array factors {"C": .., "K": ..} (the largest divisors <= dim)."""
        return {lp: int(self._tab[1, LOOPS.index(lp), 0]) for lp in ("C", "K")}

    @property
    def choice_counts(self) -> tuple[int, ...]:
        """Spad-factor choices per loop (LOOPS order)."""
        return tuple(int(v) for v in self._n)

    @property
    def raw_size(self) -> int:
        """Factor choices x orders x bufferings, fitting or not (an upper bound)."""
        return math.prod(self.choice_counts) * _N_ORDERS * (8 if self.buffering else 1)

    def from_unit_arrays(self, u) -> MappingBatch:
        """Unit points (B, 11) -> the mappings they pick (fitting or not), orders canonical."""
        a = np.asarray(u, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != UNIT_DIMS:
            raise ValueError(f"software unit points must have shape (B, {UNIT_DIMS}); got {a.shape}")
        idx = np.minimum((a[:, :_NL] * self._n[None, :]).astype(np.int64), self._n[None, :] - 1)
        loops = np.arange(_NL)[None, :]
        spad, array = self._tab[0][loops, idx], self._tab[1][loops, idx]
        factors = np.stack([self._dims // (spad * array), spad, array], axis=1)
        order = _PERMS[np.minimum((a[:, _NL] * _N_ORDERS).astype(np.int64), _N_ORDERS - 1)]
        if self.buffering:
            buffers = 1 + np.minimum((a[:, _NL + 1:] * 2).astype(np.int64), 1)
        else:
            buffers = np.broadcast_to(np.array(DEFAULT_BUFFERS, dtype=np.int64), (len(a), len(OPERANDS)))
        return MappingBatch(factors, canonical_orders(factors, order), buffers)

    def fits(self, batch: MappingBatch) -> np.ndarray:
        """bool (B,): the mappings pass `Mapping.check` on this hardware."""
        return check_arrays(self._dims, self.layer.stride, batch.factors, batch.order, self.hw.dim,
                            self.hw.sp_rows, self.hw.acc_rows, batch.buffers) == 0

    def pool(self, n: int, seed: int = 0, max_draws: int | None = None) -> MappingBatch:
        """Up to ``n`` distinct fitting mappings, the first ones of the scrambled Sobol
        sequence seeded with ``seed`` (fewer only when the space holds fewer that the draws
        find; at most ``max_draws`` points, default max(2**16, 64 n)). MappingError when
        none fits."""
        from scipy.stats import qmc

        n = _check_count(n, "samples", 1, MAX_SAMPLES)
        seed = _check_count(seed, "seed", 0, 2**63 - 1)
        max_draws = max(1 << 16, 64 * n) if max_draws is None else _check_count(max_draws, "max_draws", 1, 1 << 26)
        sampler = qmc.Sobol(d=UNIT_DIMS, scramble=True, seed=seed)
        kept: MappingBatch | None = None
        seen: set = set()
        draws, stale = 0, 0
        while draws < max_draws and (kept is None or len(kept) < n) and stale < 4:
            k = min(1 << max(10, (2 * n - 1).bit_length()), max_draws - draws, 1 << 17)
            k = 1 << (k.bit_length() - 1)                      # powers of two suit Sobol
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The balance properties", category=UserWarning)
                b = self.from_unit_arrays(sampler.random(k))
            draws += k
            b = b.take(np.flatnonzero(self.fits(b)))
            new = []
            for i, row in enumerate(map(bytes, b.keys())):
                if row not in seen:
                    seen.add(row)
                    new.append(i)
            stale = stale + 1 if not new else 0
            b = b.take(np.array(new[:n - (0 if kept is None else len(kept))], dtype=np.int64))
            kept = b if kept is None else kept.concat(b)
        if kept is None or len(kept) == 0:
            raise MappingError(f"no mapping of layer {self.layer.name!r} in the constrained space fits dim "
                               f"{self.hw.dim}, sp_kb {self.hw.sp_kb}, acc_kb {self.hw.acc_kb}")
        return kept


def objective_values(arrays: dict, objective: str) -> np.ndarray:
    """The minimised quantity of `cost.evaluate_arrays` output (inf where infeasible)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    v = {"edp": arrays["edp"], "cycles": arrays["cycles"], "energy": arrays["energy_pj"]}[objective]
    return np.where(arrays["feasible"], v, np.inf)


def best_mapping(hw: HardwareConfig, layer: Layer, samples: int = 4096, objective: str = "edp",
                 seed: int = 0, buffering: bool = True):
    """(mapping, analytical Result) of the best of ``samples`` constrained mappings and the
    default mapping by the analytical model's ``objective`` (see the module docstring)."""
    import cost
    from cost.evaluate import result_from_arrays

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    samples = _check_count(samples, "samples", 1, MAX_SAMPLES)
    cands = []
    try:
        cands.append(default_mapping(hw, layer))
    except MappingError:
        pass
    batch = MappingBatch.from_mappings(cands)
    try:
        batch = batch.concat(SoftwareSpace(hw, layer, buffering).pool(samples, seed))
    except MappingError:
        if not cands:
            raise
    arrays = cost.evaluate_arrays(layer, hw, batch.factors, batch.order, batch.buffers)
    v = objective_values(arrays, objective)
    i = int(np.argmin(v))   # the first of equals: the default mapping wins ties
    if not np.isfinite(v[i]):
        raise MappingError(f"no feasible mapping of layer {layer.name!r} found on {hw.to_json()}")
    return batch.mapping(i), result_from_arrays(arrays, i)
