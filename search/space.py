"""The co-design space: hardware configurations x mappings, and their numeric forms.

Table 6.1 of the Polaris/Starlight thesis (Gemmini's co-design space), restated on this
toolkit's `HardwareConfig`, `Layer` and `Mapping`. The searched hardware fields are
``HW_AXES = ("dim", "acc_kb", "sp_kb")``; their values are the allowed values of those
fields (`hw.config.param_spec`), never a copy:

=========================  ================================================
Spatial array              DIMS = 4, 8, 16, 32 (dim x dim PEs)
Accumulator size           MEM_KB = 8, 16, ..., 256 KB (32 values)
Scratchpad size            MEM_KB = 8, 16, ..., 256 KB (32 values)
Loop order                 permutations of the seven DRAM-level loops (5040)
Tiling factors             divisors of the layer's loop bounds, per level
=========================  ================================================

Three spaces, one job each:

`HardwareSpace`
    The 4 x 32 x 32 = 4,096 hardware configurations; every other `HardwareConfig`
    field comes from ``base``. Enumeration, index <-> config, a [0,1]^3 encoding for
    surrogates with "rounding" of a continuous point to the nearest realizable
    configuration (`HardwareSpace.decode`), and unit-cube sampling.

`MappingSpace(hw, layer)`
    The mappings of one layer on one configuration: per loop a (spad, array) factor
    pair (the DRAM factor is what is left), and a DRAM-level loop order. It exposes
    the numeric encoding (`ENCODING_NAMES`, 28 inputs in [0,1]), a unit-cube map for
    sampling (`from_unit`, `UNIT_DIMS` = 8), Sobol/uniform sampling of fitting
    mappings, the exact or estimated count of fitting mappings (`size`), and batch
    array forms for vectorised cost models (`from_unit_arrays`, `fits_arrays`).

`CoDesignSpace(layers, hw_space, version)`
    The joint unit cube (layer, hardware, mapping: `CODESIGN_UNIT_DIMS_BY_VERSION`, 12
    numbers in encoding version 1, 15 in version 2) and a reproducible, skippable
    scrambled Sobol sequence over it, for building datasets.

Mapping choices
---------------
For loop ``lp`` with bound ``d = layer.dims[lp]`` (one group of a grouped convolution,
see `hw.layer`), the choices are the pairs ``(spad, array)`` with ``spad * array``
dividing ``d``, where ``array`` is 1 unless ``lp`` is C or K, for which it is any divisor
of ``d`` that is ``<= hw.dim``. ``dram = d // (spad * array)``. `MappingSpace.choices`
lists them sorted by ``(array, spad)``. Every such mapping passes the structural part of
`Mapping.check`; whether it *fits* (the capacity rules, see `hw.mapping`) depends on the
factors only, never on the order.

Loop orders are numbered by their Lehmer code (`order_from_index`, `order_index`):
index 0 is ``LOOPS`` itself, 5039 is ``LOOPS`` reversed, and the numbering is the
lexicographic order of the permutations of ``(0, ..., 6)`` (loop indices into LOOPS).

Array layout
------------
A batch of B mappings is ``factors`` (B, 3, 7) and ``order`` (B, 7), int64: the array
form of `hw.mapping` (`Mapping.to_arrays` / `Mapping.from_arrays`) with a batch axis.
Every mapping a `MappingSpace` produces has, for every loop, factors whose product is
the loop's bound and array factors 1 except for K and C; the fit rule on batches is
`hw.mapping.check_arrays` (`MappingSpace.fits_arrays`).

Numeric encoding (the surrogate's inputs)
-----------------------------------------
Following Starlight (thesis section 5.2.1: the loop order "encoded as a numerical value
from 0 to 6 for each of the seven loops", all inputs min-max scaled to the unit cube),
a mapping is a vector of 28 numbers in [0, 1], named by `ENCODING_NAMES`:

* positions 3*lp + lv (lp in LOOPS order, lv in dram, spad, array order): the factor f
  of that loop and level as ``log(f) / log(dims[lp])``, or 0 when ``dims[lp] == 1``.
  Factors are divisors of ``dims[lp]``, from 1 to ``dims[lp]``, so this is min-max
  scaling in log space.
* positions 21 + lp: the position (0 = outermost .. 6) of loop ``LOOPS[lp]`` in the
  DRAM-level order, divided by 6.

`MappingSpace.decode` maps any real 28-vector back to the nearest structurally valid
mapping (see its docstring); ``decode(encode(m)) == m`` for every mapping of the space.
The hardware encoding is in `HardwareSpace.encode`.

Unit cubes (for sampling; separate from the encodings)
------------------------------------------------------
* hardware, 3 numbers: ``u -> (DIMS[floor(u0 * 4)], acc_kb = MEM_KB[floor(u1 * 32)],
  sp_kb = MEM_KB[floor(u2 * 32)])`` (`HardwareSpace.from_unit`);
* mapping, 8 numbers: ``u[i]`` (i < 7) picks choice ``floor(u[i] * len(choices(LOOPS[i])))``
  of loop i, ``u[7]`` picks order index ``floor(u[7] * 5040)`` (`MappingSpace.from_unit`);
* joint, 12 numbers (15 in version 2): ``u[0]`` picks the layer ``floor(u0 * len(layers))``,
  ``u[1:4]`` the hardware, ``u[4:]`` the mapping's 8 (11) (`CoDesignSpace.point`).

Each index is clipped to the last one, so u = 1 is allowed. A unit-cube mapping need not
fit its hardware; datasets keep such samples with `Mapping.check`'s reason.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from hw.config import HardwareConfig, param_spec
from hw.layer import LOOPS, Layer
from hw.mapping import (DEFAULT_BUFFERS, LEVELS, OPERANDS, Mapping, MappingError, check_arrays, divisors,
                        footprint_rows, rows_needed)

__all__ = [
    "BUFFER_ENCODING_NAMES",
    "CODESIGN_UNIT_DIMS",
    "CODESIGN_UNIT_DIMS_BY_VERSION",
    "ENCODING_VERSIONS",
    "DIMS",
    "ENCODING_NAMES",
    "HW_AXES",
    "HW_ENCODING_NAMES",
    "HW_UNIT_DIMS",
    "MEM_KB",
    "N_ORDERS",
    "UNIT_DIMS",
    "CoDesignSpace",
    "HardwareSpace",
    "MappingSpace",
    "SpaceError",
    "SpaceSize",
    "order_from_index",
    "order_index",
    "unit_index",
]

#: The searched HardwareConfig fields, in the order of the hardware encoding and unit cube.
HW_AXES = ("dim", "acc_kb", "sp_kb")
HW_ENCODING_NAMES = tuple(f"hw_{a}" for a in HW_AXES)
DIMS = tuple(param_spec("dim").values)
MEM_KB = tuple(param_spec("sp_kb").values)
assert MEM_KB == tuple(param_spec("acc_kb").values)  # one grid for both memories
_AXIS_VALUES = (DIMS, MEM_KB, MEM_KB)
N_ORDERS = math.factorial(len(LOOPS))  # 5040
HW_UNIT_DIMS = len(HW_AXES)
UNIT_DIMS = len(LOOPS) + 1  # 8
ENCODING_NAMES = tuple([f"{lv}_{lp}" for lp in LOOPS for lv in LEVELS]
                       + [f"order_{lp}" for lp in LOOPS])
#: Mapping encoding versions: 1 = the 28 inputs above (every tile double-buffered),
#: 2 = those and one input per operand's buffering (0 single, 1 double).
ENCODING_VERSIONS = (1, 2)
BUFFER_ENCODING_NAMES = tuple(f"buffers_{op}" for op in OPERANDS)
_ENC_NAMES = {1: ENCODING_NAMES, 2: ENCODING_NAMES + BUFFER_ENCODING_NAMES}
_UNIT = {1: UNIT_DIMS, 2: UNIT_DIMS + len(OPERANDS)}
#: Numbers of the joint unit cube (layer, hardware, mapping) per encoding version: 12, 15.
CODESIGN_UNIT_DIMS_BY_VERSION = {v: 1 + HW_UNIT_DIMS + _UNIT[v] for v in ENCODING_VERSIONS}
CODESIGN_UNIT_DIMS = CODESIGN_UNIT_DIMS_BY_VERSION[1]  # 12

_METHODS = ("uniform", "sobol")
_NL = len(LOOPS)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# All 5040 permutations of loop indices in lexicographic (= Lehmer code) order.
_PERMS = _readonly(np.array(list(itertools.permutations(range(_NL))), dtype=np.int64))


class SpaceError(ValueError):
    """A value is outside a design space or an argument is invalid (one-line message)."""


@dataclass(frozen=True)
class SpaceSize:
    """Number of fitting mappings: exact, or a Monte-Carlo estimate with its standard error."""

    count: float
    exact: bool
    stderr: float


# ---- argument checks ----------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_int(v, name: str, lo: int, hi: int | None = None) -> int:
    if not _is_int(v) or v < lo or (hi is not None and v > hi):
        rng = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise SpaceError(f"{name} must be an integer {rng}; got {v!r}")
    return int(v)


def _check_method(method) -> str:
    if method not in _METHODS:
        raise SpaceError(f"method must be 'uniform' or 'sobol'; got {method!r}")
    return method


def _vector(x, n: int, name: str) -> np.ndarray:
    """x as a finite float64 vector of length n, else SpaceError."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpaceError(f"{name} must be a real vector of length {n}; got {x!r}") from None
    if a.shape != (n,):
        raise SpaceError(f"{name} must be a real vector of length {n}; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise SpaceError(f"{name} must be finite; got {a.tolist()}")
    return a


def _unit_matrix(u, d: int, name: str) -> np.ndarray:
    """u as a float64 (B, d) array with entries in [0, 1], else SpaceError."""
    try:
        a = np.asarray(u, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpaceError(f"{name} must be a real (B, {d}) array in [0, 1]; got {u!r}") from None
    if a.ndim != 2 or a.shape[1] != d:
        raise SpaceError(f"{name} must be a (B, {d}) array in [0, 1]; got shape {a.shape}")
    bad = ~((a >= 0.0) & (a <= 1.0))  # also catches NaN
    if bad.any():
        raise SpaceError(f"{name} entries must be in [0, 1]; got {float(a[bad][0])!r}")
    return a


def _unit_vector(u, d: int, name: str) -> np.ndarray:
    """u as a float64 vector of length d with entries in [0, 1], else SpaceError."""
    return _unit_matrix(_vector(u, d, name)[None, :], d, name)[0]


def unit_index(u: np.ndarray, k) -> np.ndarray:
    """The unit-cube rule of every space here: index floor(u * k), clipped to k - 1
    (u in [0, 1]; k broadcasts)."""
    return np.minimum(np.floor(u * k).astype(np.int64), np.asarray(k, dtype=np.int64) - 1)


def _points(method: str, seed: int, d: int):
    """A function k -> the next k points (k, d) of the seeded uniform or Sobol stream."""
    if method == "uniform":
        rng = np.random.default_rng(seed)
        return lambda k: rng.random((k, d))
    sampler = _sobol_sampler(d, seed)

    def draw(k: int) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The balance properties", category=UserWarning)
            return sampler.random(k)
    return draw


def _sobol_sampler(d: int, seed: int):
    from scipy.stats import qmc  # scipy only where Sobol points are asked for
    return qmc.Sobol(d=d, scramble=True, seed=seed)


# ---- loop orders ----------------------------------------------------------------------
def order_from_index(i: int) -> tuple[str, ...]:
    """The DRAM-level loop order (outermost first) with Lehmer code ``i`` in 0..5039."""
    i = _check_int(i, "order index", 0, N_ORDERS - 1)
    return tuple(LOOPS[j] for j in _PERMS[i])


def order_index(order) -> int:
    """Lehmer code (0..5039) of a DRAM-level loop order, a permutation of LOOPS."""
    if isinstance(order, str) or not isinstance(order, Sequence) or sorted(order, key=str) != sorted(LOOPS):
        raise SpaceError(f"order must be a permutation of {', '.join(LOOPS)}; got {order!r}")
    remaining = list(LOOPS)
    idx = 0
    for pos, lp in enumerate(order):
        j = remaining.index(lp)
        idx += j * math.factorial(_NL - 1 - pos)
        remaining.pop(j)
    return idx


# ---- hardware ---------------------------------------------------------------------------
def _hw_text(hw: HardwareConfig) -> str:
    return f"dim={hw.dim}, sp_kb={hw.sp_kb}, acc_kb={hw.acc_kb}"


@dataclass(frozen=True)
class HardwareSpace:
    """The 4,096 configurations ``dim in DIMS`` x ``acc_kb in MEM_KB`` x ``sp_kb in MEM_KB``.

    Every other `HardwareConfig` field is taken from ``base``. Index ``i`` is
    ``(DIMS.index(dim) * 32 + MEM_KB.index(acc_kb)) * 32 + MEM_KB.index(sp_kb)``: the
    enumeration runs over dim, then acc_kb, then sp_kb (the last fastest).
    """

    base: HardwareConfig = field(default_factory=HardwareConfig)

    size: ClassVar[int] = len(DIMS) * len(MEM_KB) * len(MEM_KB)

    def __post_init__(self):
        if not isinstance(self.base, HardwareConfig):
            raise SpaceError(f"HardwareSpace.base must be a HardwareConfig; got {type(self.base).__name__}")

    def __len__(self) -> int:
        return self.size

    def _make(self, di: int, ai: int, si: int) -> HardwareConfig:
        return dataclasses.replace(self.base, dim=DIMS[di], acc_kb=MEM_KB[ai], sp_kb=MEM_KB[si])

    def enumerate(self) -> list[HardwareConfig]:
        """All configurations, in index order (dim, then acc_kb, then sp_kb)."""
        return [self._make(di, ai, si) for di in range(len(DIMS))
                for ai in range(len(MEM_KB)) for si in range(len(MEM_KB))]

    def config(self, i: int) -> HardwareConfig:
        """Configuration number ``i`` (0 .. size - 1)."""
        i = _check_int(i, "hardware index", 0, self.size - 1)
        rest, si = divmod(i, len(MEM_KB))
        di, ai = divmod(rest, len(MEM_KB))
        return self._make(di, ai, si)

    def _indices(self, hw) -> tuple[int, int, int]:
        if not isinstance(hw, HardwareConfig):
            raise SpaceError(f"expected a HardwareConfig; got {type(hw).__name__}")
        for name, values in zip(HW_AXES, _AXIS_VALUES):
            v = getattr(hw, name)
            if v not in values:
                raise SpaceError(f"{name} must be {param_spec(name).allowed}; got {v}")
        rest = dataclasses.replace(hw, dim=self.base.dim, acc_kb=self.base.acc_kb, sp_kb=self.base.sp_kb)
        if rest != self.base:
            diff = ", ".join(f"{f.name}={getattr(hw, f.name)} (base {getattr(self.base, f.name)})"
                             for f in dataclasses.fields(hw) if getattr(rest, f.name) != getattr(self.base, f.name))
            raise SpaceError(f"configuration not in this hardware space: fixed field(s) differ from its base: {diff}")
        return DIMS.index(hw.dim), MEM_KB.index(hw.acc_kb), MEM_KB.index(hw.sp_kb)

    def index(self, hw: HardwareConfig) -> int:
        """Index of ``hw`` in `enumerate`; SpaceError if it is not in this space."""
        di, ai, si = self._indices(hw)
        return (di * len(MEM_KB) + ai) * len(MEM_KB) + si

    def encode(self, hw: HardwareConfig) -> np.ndarray:
        """``hw`` as a point of [0,1]^3 (`encode_arrays` of one configuration)."""
        self._indices(hw)
        return self.encode_arrays(hw.dim, hw.acc_kb, hw.sp_kb)[0]

    @staticmethod
    def encode_arrays(dim, acc_kb, sp_kb) -> np.ndarray:
        """Encoding (B, 3) of grid values (arrays or scalars, in the grid):
        ``(DIMS.index(dim) / 3, (acc_kb - 8) / 248, (sp_kb - 8) / 248)``.

        The array dimension is encoded by its index in DIMS, i.e. uniformly in log2(dim)
        (4, 8, 16, 32 -> 0, 1/3, 2/3, 1); the memory sizes are min-max scaled over their
        allowed range. The realizable points form the product grid {0, 1/3, 2/3, 1} x
        {j/31} x {j/31}."""
        dim, acc_kb, sp_kb = (np.atleast_1d(np.asarray(v, dtype=np.int64)) for v in (dim, acc_kb, sp_kb))
        di = np.searchsorted(np.asarray(DIMS), dim)
        lo, hi = MEM_KB[0], MEM_KB[-1]
        return np.stack([di / (len(DIMS) - 1), (acc_kb - lo) / (hi - lo), (sp_kb - lo) / (hi - lo)], axis=1)

    def encode_many(self, hws) -> np.ndarray:
        """`encode` of each configuration: shape (n, 3)."""
        return np.array([self.encode(hw) for hw in hws], dtype=np.float64).reshape(-1, HW_UNIT_DIMS)

    def decode(self, x) -> HardwareConfig:
        """Round a continuous point (any finite real 3-vector) to a realizable configuration.

        The point is clipped to [0,1]^3, then each coordinate is rounded to the nearest
        grid value of `encode` (ties upwards). The realizable points are a product grid
        and the L1 distance is a sum of per-coordinate terms, so per-coordinate rounding
        gives the configuration nearest in L1 (Polaris's "rounding" by minimum L1 norm
        over all 4,096 candidates, without enumerating them). Clipping does not change
        the answer (it shifts every candidate's distance in that coordinate equally).
        """
        a = np.clip(_vector(x, HW_UNIT_DIMS, "hardware point"), 0.0, 1.0)
        steps = np.array([len(DIMS) - 1, len(MEM_KB) - 1, len(MEM_KB) - 1], dtype=np.float64)
        di, ai, si = (int(v) for v in np.floor(a * steps + 0.5))
        return self._make(di, ai, si)

    def from_unit(self, u) -> HardwareConfig:
        """Unit-cube point (3 numbers in [0, 1]) -> configuration, by floor(u * len) per axis."""
        a = _unit_vector(u, HW_UNIT_DIMS, "hardware unit point")
        di, ai, si = (int(v) for v in unit_index(a, [len(v) for v in _AXIS_VALUES]))
        return self._make(di, ai, si)

    @staticmethod
    def from_unit_arrays(u) -> dict:
        """`from_unit` of a batch of unit points (B, 3), as int64 arrays (B,) of the
        searched fields: ``{"dim": ..., "acc_kb": ..., "sp_kb": ...}``."""
        a = _unit_matrix(u, HW_UNIT_DIMS, "hardware unit points")
        idx = unit_index(a, np.array([len(v) for v in _AXIS_VALUES]))
        return {name: np.asarray(values, dtype=np.int64)[idx[:, i]]
                for i, (name, values) in enumerate(zip(HW_AXES, _AXIS_VALUES))}

    def sample(self, n: int, seed: int = 0, method: str = "uniform") -> list[HardwareConfig]:
        """``n`` configurations (with repetition) from seeded uniform or scrambled Sobol
        points of [0,1]^3 through `from_unit`. Same arguments, same list."""
        n = _check_int(n, "n", 0)
        seed = _check_int(seed, "seed", 0)
        draw = _points(_check_method(method), seed, HW_UNIT_DIMS)
        if n == 0:
            return []
        return [self.from_unit(row) for row in draw(n)]


# ---- mappings ----------------------------------------------------------------------------
def _log_scale(f: np.ndarray, d: np.ndarray) -> np.ndarray:
    """log(f) / log(d), 0 where d == 1 (f, d broadcast; f divides d)."""
    d = np.asarray(d, dtype=np.float64)
    big = d > 1
    den = np.where(big, np.log(np.where(big, d, 2.0)), 1.0)
    return np.where(big, np.log(np.asarray(f, dtype=np.float64)) / den, 0.0)


@dataclass(frozen=True)
class MappingSpace:
    """Mappings of one layer on one hardware configuration (see the module docstring).

    All derived tables are built once in the constructor; the object is immutable.
    """

    hw: HardwareConfig
    layer: Layer
    version: int = 1
    _choices: tuple = field(init=False, repr=False, compare=False)
    _dims: np.ndarray = field(init=False, repr=False, compare=False)
    _n: np.ndarray = field(init=False, repr=False, compare=False)
    _tab: np.ndarray = field(init=False, repr=False, compare=False)
    _enc_tab: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.hw, HardwareConfig):
            raise SpaceError(f"MappingSpace.hw must be a HardwareConfig; got {type(self.hw).__name__}")
        if not isinstance(self.layer, Layer):
            raise SpaceError(f"MappingSpace.layer must be a Layer; got {type(self.layer).__name__}")
        if isinstance(self.version, bool) or self.version not in ENCODING_VERSIONS:
            raise SpaceError(f"MappingSpace.version must be one of {ENCODING_VERSIONS}; got {self.version!r}")
        dims = self.layer.dims
        choices = []
        for lp in LOOPS:
            d = dims[lp]
            arrays = [a for a in divisors(d) if a <= self.hw.dim] if lp in ("C", "K") else [1]
            pairs = [(s, a) for a in arrays for s in divisors(d // a)]
            choices.append(tuple(sorted(pairs, key=lambda sa: (sa[1], sa[0]))))
        n = np.array([len(c) for c in choices], dtype=np.int64)
        # tab[lv, lp, j]: spad (lv 0) and array (lv 1) factor of choice j of loop lp
        # (padded with 1 beyond n[lp]).
        tab = np.ones((2, _NL, int(n.max())), dtype=np.int64)
        for lp, cs in enumerate(choices):
            tab[:, lp, :len(cs)] = np.array(cs, dtype=np.int64).T
        dims_arr = np.array([dims[lp] for lp in LOOPS], dtype=np.int64)
        set_ = object.__setattr__
        set_(self, "_choices", tuple(choices))
        set_(self, "_dims", _readonly(dims_arr))
        set_(self, "_n", _readonly(n))
        set_(self, "_tab", _readonly(tab))
        set_(self, "_enc_tab", _readonly(_log_scale(tab, dims_arr[None, :, None])))

    # ---- version ---------------------------------------------------------------------------
    @property
    def encoding_names(self) -> tuple[str, ...]:
        """Names of this version's encoding inputs (28 in version 1, 31 in version 2)."""
        return _ENC_NAMES[self.version]

    @property
    def unit_dims(self) -> int:
        """Numbers of this version's unit cube (8 in version 1, 11 in version 2)."""
        return _UNIT[self.version]

    # ---- choices and orders ------------------------------------------------------------
    def choices(self, loop: str) -> list[tuple[int, int]]:
        """The (spad, array) factor pairs of ``loop``, sorted by (array, spad)."""
        if loop not in LOOPS:
            raise SpaceError(f"loop must be one of {', '.join(LOOPS)}; got {loop!r}")
        return list(self._choices[LOOPS.index(loop)])

    @property
    def choice_counts(self) -> tuple[int, ...]:
        """Number of choices per loop, in LOOPS order."""
        return tuple(int(v) for v in self._n)

    @property
    def factor_combinations(self) -> int:
        """Number of factor combinations (product of `choice_counts`)."""
        return math.prod(self.choice_counts)

    @property
    def raw_size(self) -> int:
        """All mappings of the space, fitting or not: factor combinations x 5040 orders."""
        return self.factor_combinations * N_ORDERS

    order_from_index = staticmethod(order_from_index)
    order_index = staticmethod(order_index)

    # ---- fit rule (vectorised; the rule itself is hw.mapping's) --------------------------
    def _fits_tiles(self, t: np.ndarray, buffers=DEFAULT_BUFFERS) -> np.ndarray:
        """Capacity rule of `Mapping.check` on tile extents t (B, 7) of mappings of this
        space (structurally valid by construction) with buffer counts ``buffers`` ((3,) or
        (B, 3)): bool (B,)."""
        b = np.asarray(buffers)
        bufs = [b[..., i] for i in range(len(OPERANDS))]
        sp, acc = rows_needed(*footprint_rows(self.hw.dim, self.layer.stride, *(t[:, i] for i in range(_NL))),
                              *bufs)
        return (sp <= self.hw.sp_rows) & (acc <= self.hw.acc_rows)

    def _tiles_from_choice_indices(self, idx: np.ndarray) -> np.ndarray:
        loops = np.arange(_NL)[None, :]
        return self._tab[0][loops, idx] * self._tab[1][loops, idx]

    def fits_arrays(self, factors, buffers=None) -> np.ndarray:
        """bool (B,): for each row of ``factors`` (B, 3, 7), whether the mapping passes
        `Mapping.check` (which never depends on the order): factors >= 1 whose product is
        each loop's bound, array factors 1 except C and K, those <= hw.dim, and the tile,
        buffered as ``buffers`` (B, 3) says (None: all double), fits the scratchpad and
        the accumulator (`hw.mapping.check_arrays`)."""
        f = np.asarray(factors)
        if f.ndim != 3 or f.shape[1:] != (len(LEVELS), _NL) or not np.issubdtype(f.dtype, np.integer):
            raise SpaceError(f"factors must be an integer array of shape (B, 3, 7); got {f.dtype} {f.shape}")
        code = check_arrays(self._dims, self.layer.stride, f, None, self.hw.dim, self.hw.sp_rows,
                            self.hw.acc_rows, buffers)
        return code == 0

    # ---- unit cube -> mappings ---------------------------------------------------------
    def from_unit_arrays(self, u) -> tuple[np.ndarray, np.ndarray]:
        """Unit-cube points ``u`` (B, `unit_dims`) -> (factors (B, 3, 7), order (B, 7))
        int64 arrays in the layout of the module docstring: ``u[:, i]`` picks choice
        ``floor(u * len(choices(LOOPS[i])))`` of loop i, ``u[:, 7]`` the order with Lehmer
        code ``floor(u * 5040)`` (indices clipped to the last); version 2's buffering
        columns are `buffers_from_unit`'s."""
        a = _unit_matrix(u, self.unit_dims, "mapping unit points")
        idx = unit_index(a[:, :_NL], self._n[None, :])
        loops = np.arange(_NL)[None, :]
        spad = self._tab[0][loops, idx]
        array = self._tab[1][loops, idx]
        factors = np.stack([self._dims // (spad * array), spad, array], axis=1)
        order = _PERMS[unit_index(a[:, _NL], N_ORDERS)]
        return factors, order

    def buffers_from_unit(self, u) -> np.ndarray:
        """Buffer counts (B, 3) of unit points (B, `unit_dims`): version 2's ``u[:, 8 + i]``
        gives operand i ``1 + floor(2 u)`` (clipped: u < 1/2 single, else double);
        version 1, all 2."""
        a = _unit_matrix(u, self.unit_dims, "mapping unit points")
        if self.version == 1:
            return np.full((len(a), len(OPERANDS)), 2, dtype=np.int64)
        return 1 + unit_index(a[:, UNIT_DIMS:], 2)

    def from_unit(self, u) -> Mapping:
        """Unit-cube point (`unit_dims` numbers in [0, 1]) -> mapping (it may not fit)."""
        a = _unit_vector(u, self.unit_dims, "mapping unit point")[None, :]
        factors, order = self.from_unit_arrays(a)
        return Mapping.from_arrays(factors[0], order[0], self.buffers_from_unit(a)[0])

    # ---- array <-> Mapping ---------------------------------------------------------------
    @staticmethod
    def mapping_from_arrays(factors_row, order_row) -> Mapping:
        """`Mapping.from_arrays` of one row (factors (3, 7), order (7,)); SpaceError if
        the row is not in array form."""
        try:
            return Mapping.from_arrays(factors_row, order_row)
        except MappingError as e:
            raise SpaceError(str(e)) from None

    def _not_in_space(self, m) -> str | None:
        """Why mapping m is not a (structurally valid) mapping of this space, or None."""
        if not isinstance(m, Mapping):
            return f"expected a Mapping; got {type(m).__name__}"
        if tuple(lv for lv, _ in m.factors) != LEVELS:
            return f"mapping levels {[lv for lv, _ in m.factors]} must be {list(LEVELS)}"
        for lv, pairs in m.factors:
            if tuple(lp for lp, _ in pairs) != LOOPS:
                return f"mapping {lv} factors must cover loops {', '.join(LOOPS)}"
            for lp, v in pairs:
                if not _is_int(v) or v < 1:
                    return f"mapping {lv} factor of {lp} is {v!r}; factors must be integers >= 1"
        if sorted(m.order, key=str) != sorted(LOOPS):
            return f"mapping order {list(m.order)} is not a permutation of {', '.join(LOOPS)}"
        if self.version == 1 and m.buffers != DEFAULT_BUFFERS:
            return (f"mapping buffers {m.buffers_dict()} are not all double: encoding version 1 holds "
                    f"double-buffered mappings only (use version 2)")
        if any(b not in (1, 2) for b in m.buffers):
            return f"mapping buffers {m.buffers_dict()} must each be 1 or 2"
        fd = m.factors_dict()
        for i, lp in enumerate(LOOPS):
            d, sp, ar = fd["dram"][lp], fd["spad"][lp], fd["array"][lp]
            if (sp, ar) not in self._choices[i] or d * sp * ar != self._dims[i]:
                return (f"loop {lp}: dram {d} x spad {sp} x array {ar} is not a choice for bound {self._dims[i]} "
                        f"(product = bound; array factor 1, or for C and K <= dim {self.hw.dim})")
        return None

    def arrays_from_mapping(self, m: Mapping) -> tuple[np.ndarray, np.ndarray]:
        """(factors (3, 7), order (7,)) int64 of a mapping of this space (fitting or not);
        SpaceError if the mapping is not one of its structurally valid mappings."""
        why = self._not_in_space(m)
        if why is not None:
            raise SpaceError(f"mapping not in the space of layer {self.layer.name!r}: {why}")
        return m.to_arrays()

    # ---- numeric encoding ------------------------------------------------------------------
    def encode_arrays(self, factors, order, buffers=None) -> np.ndarray:
        """Encoding (B, 28) of a batch in array form (see the module docstring); version 2
        appends ``buffers - 1`` (B, 3) (None: all double)."""
        f = np.asarray(factors)
        o = np.asarray(order)
        if f.ndim != 3 or f.shape[1:] != (len(LEVELS), _NL) or o.shape != (f.shape[0], _NL):
            raise SpaceError(f"factors (B, 3, 7) and order (B, 7) expected; got {f.shape} and {o.shape}")
        enc = _log_scale(f, self._dims[None, None, :])            # (B, 3, 7)
        pos = np.argsort(o, axis=1).astype(np.float64) / (_NL - 1)  # position of each loop
        parts = [enc.transpose(0, 2, 1).reshape(-1, len(LEVELS) * _NL), pos]
        if self.version == 2:
            b = np.broadcast_to(np.asarray(DEFAULT_BUFFERS if buffers is None else buffers), (len(f), 3))
            parts.append(b.astype(np.float64) - 1.0)
        return np.concatenate(parts, axis=1)

    def encode(self, m: Mapping) -> np.ndarray:
        """Encoding (28 or 31,) of a mapping of this space, ordered as `encoding_names`."""
        factors, order = self.arrays_from_mapping(m)
        return self.encode_arrays(factors[None], order[None], np.asarray(m.buffers)[None])[0]

    def encode_many(self, mappings) -> np.ndarray:
        """`encode` of each mapping: shape (n, 28 or 31)."""
        mappings = list(mappings)
        rows = [self.arrays_from_mapping(m) for m in mappings]
        if not rows:
            return np.zeros((0, len(self.encoding_names)))
        return self.encode_arrays(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]),
                                  np.array([m.buffers for m in mappings], dtype=np.int64))

    def decode(self, x) -> Mapping:
        """Nearest structurally valid mapping to any finite real 28-vector ``x``.

        Per loop: the (spad, array) choice whose encoded (spad, array) is nearest in L1
        to x's (spad, array) coordinates (the first in `choices` order on ties); x's dram
        coordinate is ignored, the DRAM factor is derived. Order: loops sorted by their
        order coordinate, smallest outermost (ties in LOOPS order). The result need not
        fit the hardware. ``decode(encode(m)) == m`` for every mapping of the space.
        """
        a = _vector(x, len(self.encoding_names), "mapping encoding")
        per_loop = a[:len(LEVELS) * _NL].reshape(_NL, len(LEVELS))
        factors = np.empty((len(LEVELS), _NL), dtype=np.int64)
        for i in range(_NL):
            k = int(self._n[i])
            dist = (np.abs(self._enc_tab[0, i, :k] - per_loop[i, 1])
                    + np.abs(self._enc_tab[1, i, :k] - per_loop[i, 2]))
            j = int(np.argmin(dist))
            sp, ar = self._tab[0, i, j], self._tab[1, i, j]
            factors[:, i] = (self._dims[i] // (sp * ar), sp, ar)
        order = np.argsort(a[len(LEVELS) * _NL:len(ENCODING_NAMES)], kind="stable")
        buffers = None if self.version == 1 else np.where(a[len(ENCODING_NAMES):] >= 0.5, 2, 1)
        return Mapping.from_arrays(factors, order, buffers)

    # ---- size --------------------------------------------------------------------------
    def size(self, exact_limit: int = 2_000_000, samples: int = 200_000, seed: int = 0) -> SpaceSize:
        """Number of mappings that pass `Mapping.check` (fitting factor combinations x 5040).

        Exact (vectorised enumeration of all factor combinations) when there are at most
        ``exact_limit`` combinations; otherwise an unbiased Monte-Carlo estimate from
        ``samples`` combinations drawn uniformly (with replacement, seeded) with its
        binomial standard error (0 when no or every sample fits).
        """
        exact_limit = _check_int(exact_limit, "exact_limit", 0)
        samples = _check_int(samples, "samples", 1)
        seed = _check_int(seed, "seed", 0)
        total = self.factor_combinations
        bufferings = [DEFAULT_BUFFERS] if self.version == 1 else list(itertools.product((1, 2), repeat=3))
        if len(bufferings) > 1:   # version 2: the mappings of each buffering, added up
            parts = [dataclasses.replace(self, version=1)._size(total, exact_limit, samples, seed, b)
                     for b in bufferings]
            exact = all(p.exact for p in parts)
            return SpaceSize(count=sum(p.count for p in parts), exact=exact,
                             stderr=math.sqrt(sum(p.stderr ** 2 for p in parts)))
        return self._size(total, exact_limit, samples, seed, DEFAULT_BUFFERS)

    def _size(self, total: int, exact_limit: int, samples: int, seed: int, buffers) -> SpaceSize:
        n = self._n
        if total <= exact_limit:
            radix = np.ones(_NL, dtype=np.int64)  # mixed radix, last loop fastest
            for i in range(_NL - 2, -1, -1):
                radix[i] = radix[i + 1] * n[i + 1]
            fit = 0
            chunk = 1 << 18
            for start in range(0, total, chunk):
                flat = np.arange(start, min(start + chunk, total), dtype=np.int64)[:, None]
                idx = (flat // radix[None, :]) % n[None, :]
                fit += int(np.count_nonzero(self._fits_tiles(self._tiles_from_choice_indices(idx), buffers)))
            return SpaceSize(count=float(fit * N_ORDERS), exact=True, stderr=0.0)
        rng = np.random.default_rng(seed)
        fit = 0
        chunk = 1 << 18
        for start in range(0, samples, chunk):
            m = min(chunk, samples - start)
            idx = rng.integers(0, n[None, :], size=(m, _NL))
            fit += int(np.count_nonzero(self._fits_tiles(self._tiles_from_choice_indices(idx), buffers)))
        p = fit / samples
        scale = float(total) * N_ORDERS
        return SpaceSize(count=p * scale, exact=False, stderr=math.sqrt(p * (1 - p) / samples) * scale)

    # ---- sampling ------------------------------------------------------------------------
    def sample(self, n: int, seed: int = 0, method: str = "uniform", feasible_only: bool = True,
               max_tries: int | None = None) -> list[Mapping]:
        """``n`` mappings from seeded uniform or scrambled Sobol points through `from_unit`.

        With ``feasible_only``, points whose mapping fails `Mapping.check` are skipped and
        drawing continues (for Sobol, with the next points of the same sequence) until
        ``n`` are found; SpaceError after ``max_tries`` points (default
        ``max(2**20, 1000 * n)``). (1x1 tiles fit every configuration of the space, so
        some mapping always fits; the fraction can still be tiny for large layers on
        small memories.) The fit test is vectorised over whole batches of points and
        `Mapping` objects are built only for the accepted ones.
        The result is the first ``n`` accepted points of the stream: same arguments, same
        list. Without ``feasible_only``, the first ``n`` points, fitting or not.
        """
        n = _check_int(n, "n", 0)
        seed = _check_int(seed, "seed", 0)
        method = _check_method(method)
        if max_tries is None:
            max_tries = max(1 << 20, 1000 * n)
        max_tries = _check_int(max_tries, "max_tries", 1)
        if n == 0:
            return []
        draw = _points(method, seed, self.unit_dims)
        if not feasible_only:
            u = draw(n)
            f, o = self.from_unit_arrays(u)
            b = self.buffers_from_unit(u)
            return [Mapping.from_arrays(f[i], o[i], b[i]) for i in range(n)]
        kept_f, kept_o, kept_b, found, tries = [], [], [], 0, 0
        while found < n:
            if tries >= max_tries:
                raise SpaceError(
                    f"only {found} of {n} sampled mappings of layer {self.layer.name!r} fit "
                    f"{_hw_text(self.hw)} after {tries} draws (max_tries); the fitting fraction is "
                    f"too small for this hardware")
            want = 1 << max(10, (2 * (n - found) - 1).bit_length())  # powers of 2 suit Sobol
            k = min(want, 1 << 17, max_tries - tries)
            u = draw(k)
            f, o = self.from_unit_arrays(u)
            b = self.buffers_from_unit(u)
            tries += k
            ok = self._fits_tiles(f[:, 1, :] * f[:, 2, :], b)
            take = np.flatnonzero(ok)[:n - found]
            kept_f.append(f[take])
            kept_o.append(o[take])
            kept_b.append(b[take])
            found += len(take)
        f, o, b = np.concatenate(kept_f), np.concatenate(kept_o), np.concatenate(kept_b)
        return [Mapping.from_arrays(f[i], o[i], None if self.version == 1 else b[i]) for i in range(n)]


# ---- the joint space ---------------------------------------------------------------------
def _check_version(v, name: str) -> int:
    if isinstance(v, bool) or v not in ENCODING_VERSIONS:
        raise SpaceError(f"{name} must be one of {ENCODING_VERSIONS}; got {v!r}")
    return int(v)


class _OfVersion:
    """A `CoDesignSpace` attribute that depends on the encoding version: read on an
    instance, that of its version; read on the class (as before there were versions),
    version 1's. ``f(version, space_or_None)`` computes it."""

    def __init__(self, f):
        self.f = f
        self.__doc__ = f.__doc__

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        return self.f(1 if obj is None else obj.version, obj)


def _sobol_of(version: int, space):
    def sobol(n: int, seed: int = 0, skip: int = 0, *, version: int | None = None) -> np.ndarray:
        """Points ``skip .. skip + n - 1`` (shape (n, `unit_dims`)) of the scrambled Sobol
        sequence seeded with ``seed``: 100 points at once equal 50 and then 50 more with
        skip=50. On the class, version 1's 12-dimensional sequence unless ``version`` says
        otherwise; on an instance, that of its version."""
        n = _check_int(n, "n", 0)
        seed = _check_int(seed, "seed", 0)
        skip = _check_int(skip, "skip", 0)
        v = own if version is None else _check_version(version, "version")
        if space is not None and v != own:
            raise SpaceError(f"version {v} differs from this space's encoding version {own}")
        sampler = _sobol_sampler(CODESIGN_UNIT_DIMS_BY_VERSION[v], seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The balance properties", category=UserWarning)
            if skip:
                sampler.fast_forward(skip)
            return sampler.random(n)
    own = version
    return sobol


@dataclass(frozen=True)
class CoDesignSpace:
    """Layers x hardware x mappings as one unit cube of `unit_dims` numbers:
    `CODESIGN_UNIT_DIMS_BY_VERSION` (12 in encoding version 1, 15 in version 2).

    ``u[0]`` picks the layer ``floor(u0 * len(layers))``, ``u[1:4]`` the hardware
    (`HardwareSpace.from_unit`) and ``u[4:]`` the mapping (`MappingSpace.from_unit` of
    that layer and hardware in this ``version``: 8 numbers, or 11 with the buffering).
    ``layers`` may be given as any sequence; it is stored as a tuple. Version 1's
    points and their meaning are those of the space before versions existed.
    `unit_dims` and `sobol` read on the class itself are version 1's.
    """

    layers: tuple
    hw_space: HardwareSpace = field(default_factory=HardwareSpace)
    version: int = 1

    unit_dims = _OfVersion(lambda v, _: CODESIGN_UNIT_DIMS_BY_VERSION[v])
    sobol = _OfVersion(_sobol_of)

    def __post_init__(self):
        if isinstance(self.layers, (str, Layer)) or not isinstance(self.layers, Sequence):
            raise SpaceError(f"CoDesignSpace.layers must be a sequence of Layer; got {type(self.layers).__name__}")
        layers = tuple(self.layers)
        if not layers:
            raise SpaceError("CoDesignSpace.layers must hold at least one Layer; got none")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise SpaceError(f"CoDesignSpace.layers[{i}] must be a Layer; got {type(layer).__name__}")
        if not isinstance(self.hw_space, HardwareSpace):
            raise SpaceError(f"CoDesignSpace.hw_space must be a HardwareSpace; got {type(self.hw_space).__name__}")
        _check_version(self.version, "CoDesignSpace.version")
        object.__setattr__(self, "layers", layers)

    def mapping_space(self, layer_index: int, hw: HardwareConfig) -> MappingSpace:
        """The `MappingSpace` (of this version) of layer ``layers[layer_index]`` on ``hw``."""
        i = _check_int(layer_index, "layer index", 0, len(self.layers) - 1)
        return MappingSpace(hw, self.layers[i], self.version)

    def point(self, u) -> tuple[int, HardwareConfig, Mapping]:
        """Unit-cube point (`unit_dims` numbers in [0, 1]) -> (layer index, hardware, mapping)."""
        a = _unit_vector(u, self.unit_dims, "co-design unit point")
        li = int(unit_index(a[0], len(self.layers)))
        hw = self.hw_space.from_unit(a[1:1 + HW_UNIT_DIMS])
        return li, hw, MappingSpace(hw, self.layers[li], self.version).from_unit(a[1 + HW_UNIT_DIMS:])
