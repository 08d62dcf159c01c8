"""Mapping vocabulary: how one layer is tiled onto one accelerator.

Shared by the compiler in sim/ (which lowers (HardwareConfig, Mapping, Layer) to the
instruction stream the RTL runs), the analytical model in cost/ and the search. The RTL
generator (hw/top.py and the units) never imports this module.

Loops and levels
----------------
``LOOPS = ("N", "K", "C", "P", "Q", "R", "S")`` are the seven loops of one group of a
convolution (``Layer.dims``; a GEMM M x K x N is P = M, C = K, K = N, everything else 1).
``LEVELS = ("dram", "spad", "array")`` are the memory levels, outermost first. A
`Mapping` holds, for every level and loop, an integer tiling factor, and ``order``: a
permutation of LOOPS giving the nesting of the DRAM-level loops, outermost first.

Semantics
---------
* For every loop: ``dram * spad * array == layer.dims[loop]`` (divisors only, no
  remainder tiles).
* The array level is the spatial unrolling of the weight-stationary array: C on the
  array rows and K on the columns. Array factors of every other loop must be 1, and
  ``array C <= dim``, ``array K <= dim``.
* The spad-level tile, i.e. what one DRAM-level iteration moves into the scratchpad and
  accumulator, has per-loop extent ``T[loop] = spad[loop] * array[loop]``
  (`Mapping.tile`). The spad-level loops (inside one tile) are run by the compiler in
  an order of its choosing; only the DRAM-level order is part of the mapping.
* Grouped convolutions: the mapping describes ONE group (layer.dims are per group);
  the group loop is an implicit outermost loop around the DRAM-level loops.

Tile footprints in local-memory rows (the contract the compiler implements)
---------------------------------------------------------------------------
::

    cb = ceil(T_C / dim)   (channel blocks),   kb = ceil(T_K / dim)
    in_h = (T_P - 1)*stride + T_R,   in_w = (T_Q - 1)*stride + T_S
    input_rows  = T_N * in_h * in_w * cb   (scratchpad; one row = up to dim channels of one pixel)
    weight_rows = T_R * T_S * kb * T_C     (scratchpad; one row = up to dim output channels of one (r, s, c))
    output_rows = T_N * T_P * T_Q * kb     (accumulator; one row = up to dim output channels of one output pixel)

Everything is double-buffered, so a mapping fits when
``sp_rows_needed = 2*(input_rows + weight_rows) <= hw.sp_rows`` and
``acc_rows_needed = 2*output_rows <= hw.acc_rows`` (`Mapping.footprint`, `Mapping.check`).

Default mapping
---------------
`default_mapping` is a greedy "largest tiles that fit" tiler in the spirit of Gemmini's
auto-tiler: array C = the largest divisor of C that is <= dim, array K likewise; all
spad factors start at 1; then, repeatedly, for each loop take its next larger spad
factor (the smallest larger one with spad*array dividing the loop bound), keep those
whose mapping still fits, and apply the one that multiplies the tile's MACs
(the product of all T) the most, preferring K, C, P, Q, N, R, S in that order on ties;
stop when no loop can grow. The DRAM-level order is ``DEFAULT_ORDER =
("N", "K", "P", "Q", "C", "R", "S")`` (output tiles outer, reduction inner, so a
partial-sum tile stays in the accumulator across its whole C, R, S reduction). If the
maximal array factors do not fit with all-ones spad factors (never the case in the
configuration space), smaller array factors are tried, down to 1 x 1; if nothing
fits, `MappingError`.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping as _AbcMapping
from dataclasses import dataclass
from fractions import Fraction

from hw.layer import LOOPS, Layer

__all__ = [
    "DEFAULT_ORDER",
    "LEVELS",
    "LOOPS",
    "Check",
    "Footprint",
    "Mapping",
    "MappingError",
    "default_mapping",
    "divisors",
]

LEVELS = ("dram", "spad", "array")
DEFAULT_ORDER = ("N", "K", "P", "Q", "C", "R", "S")
_GROW_PREFERENCE = ("K", "C", "P", "Q", "N", "R", "S")
_LOOPS_TEXT = ", ".join(LOOPS)


class MappingError(ValueError):
    """A mapping is malformed or none can be built (one-line message)."""


def divisors(n: int) -> list[int]:
    """All positive divisors of n, ascending."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"divisors() needs an integer >= 1; got {n!r}")
    n = int(n)
    small, large = [], []
    i = 1
    while i * i <= n:
        if n % i == 0:
            small.append(i)
            if i * i != n:
                large.append(n // i)
        i += 1
    return small + large[::-1]


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _rank(names: tuple, key) -> tuple:
    return (names.index(key), "") if key in names else (len(names), str(key))


@dataclass(frozen=True)
class Footprint:
    """Local-memory rows of one spad-level tile (see the module docstring)."""

    input_rows: int
    weight_rows: int
    output_rows: int

    @property
    def sp_rows_needed(self) -> int:
        """Scratchpad rows for input + weight tiles, double-buffered."""
        return 2 * (self.input_rows + self.weight_rows)

    @property
    def acc_rows_needed(self) -> int:
        """Accumulator rows for the output tile, double-buffered."""
        return 2 * self.output_rows

    def to_dict(self) -> dict:
        return {"input_rows": self.input_rows, "weight_rows": self.weight_rows,
                "output_rows": self.output_rows, "sp_rows_needed": self.sp_rows_needed,
                "acc_rows_needed": self.acc_rows_needed}


@dataclass(frozen=True)
class Check:
    """Outcome of `Mapping.check`: truthy iff ok; ``reason`` is one line when not ok."""

    ok: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.ok


def _footprint(dim: int, stride: int, t: dict) -> Footprint:
    cb = -(-t["C"] // dim)
    kb = -(-t["K"] // dim)
    in_h = (t["P"] - 1) * stride + t["R"]
    in_w = (t["Q"] - 1) * stride + t["S"]
    return Footprint(input_rows=t["N"] * in_h * in_w * cb,
                     weight_rows=t["R"] * t["S"] * kb * t["C"],
                     output_rows=t["N"] * t["P"] * t["Q"] * kb)


@dataclass(frozen=True)
class Mapping:
    """Tiling factors per level and the DRAM-level loop order (see module docstring).

    ``factors`` may be given as ``{level: {loop: int}}``; it is stored as a canonical
    tuple of ``(level, ((loop, factor), ...))`` (levels in LEVELS order, loops in LOOPS
    order) so that a Mapping is hashable and equal mappings compare equal. The
    constructor only normalises the structure; `check` validates the content.
    """

    factors: tuple
    order: tuple = DEFAULT_ORDER

    def __post_init__(self):
        f = self.factors
        if isinstance(f, _AbcMapping):
            items = list(f.items())
        elif isinstance(f, (tuple, list)):
            items = list(f)
        else:
            raise MappingError(f"Mapping.factors must be a dict level -> {{loop: factor}}; got {type(f).__name__}")
        levels = []
        for item in items:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise MappingError(f"Mapping.factors entries must be (level, factors) pairs; got {item!r}")
            level, per_loop = item
            if isinstance(per_loop, _AbcMapping):
                pairs = list(per_loop.items())
            elif isinstance(per_loop, (tuple, list)):
                pairs = [tuple(p) for p in per_loop]
                if any(len(p) != 2 for p in pairs):
                    raise MappingError(f"Mapping factors of level {level!r} must be (loop, factor) pairs")
            else:
                raise MappingError(
                    f"Mapping factors of level {level!r} must be a dict loop -> factor; got {type(per_loop).__name__}")
            loops = [p[0] for p in pairs]
            if len(set(loops)) != len(loops):
                raise MappingError(f"Mapping factors of level {level!r} repeat a loop: {loops}")
            pairs = [(lp, int(v) if _is_int(v) else v) for lp, v in pairs]
            pairs.sort(key=lambda p: _rank(LOOPS, p[0]))
            levels.append((level, tuple(pairs)))
        names = [lv for lv, _ in levels]
        if len(set(names)) != len(names):
            raise MappingError(f"Mapping.factors repeats a level: {names}")
        levels.sort(key=lambda p: _rank(LEVELS, p[0]))
        object.__setattr__(self, "factors", tuple(levels))
        if isinstance(self.order, str) or not hasattr(self.order, "__iter__"):
            raise MappingError(f"Mapping.order must be a sequence of loop names; got {self.order!r}")
        object.__setattr__(self, "order", tuple(self.order))

    # ---- construction helpers ------------------------------------------------------
    @classmethod
    def for_layer(cls, layer: Layer, spad: dict | None = None, array: dict | None = None,
                  order=DEFAULT_ORDER) -> Mapping:
        """Mapping with the given spad and array factors (missing loops = 1) and the DRAM
        factors derived as dims / (spad * array); MappingError if that leaves a remainder."""
        spad = dict(spad or {})
        array = dict(array or {})
        for name, d in (("spad", spad), ("array", array)):
            bad = sorted(set(d) - set(LOOPS))
            if bad:
                raise MappingError(f"{name} factors name unknown loop(s) {bad}; loops are {_LOOPS_TEXT}")
        dims = layer.dims
        dram = {}
        for lp in LOOPS:
            sp, ar = spad.get(lp, 1), array.get(lp, 1)
            if not (_is_int(sp) and _is_int(ar) and sp >= 1 and ar >= 1):
                raise MappingError(f"loop {lp}: spad {sp!r} and array {ar!r} must be integers >= 1")
            if dims[lp] % (sp * ar):
                raise MappingError(
                    f"loop {lp}: spad {sp} x array {ar} = {sp * ar} does not divide layer dim {dims[lp]}")
            dram[lp] = dims[lp] // (sp * ar)
        return cls(factors={"dram": dram,
                            "spad": {lp: spad.get(lp, 1) for lp in LOOPS},
                            "array": {lp: array.get(lp, 1) for lp in LOOPS}},
                   order=order)

    # ---- accessors ------------------------------------------------------------------
    def level(self, level: str) -> dict:
        """Factors of one level as a dict loop -> factor."""
        for lv, pairs in self.factors:
            if lv == level:
                return dict(pairs)
        raise MappingError(f"mapping has no level {level!r}; levels are {', '.join(LEVELS)}")

    def factor(self, level: str, loop: str):
        """Factor of `loop` at `level`."""
        d = self.level(level)
        if loop not in d:
            raise MappingError(f"mapping level {level!r} has no loop {loop!r}; loops are {_LOOPS_TEXT}")
        return d[loop]

    def factors_dict(self) -> dict:
        """``{level: {loop: factor}}`` (a fresh copy)."""
        return {lv: dict(pairs) for lv, pairs in self.factors}

    def tile(self, loop: str) -> int:
        """Spad-level tile extent T[loop] = spad[loop] * array[loop]."""
        return self.factor("spad", loop) * self.factor("array", loop)

    def tiles(self) -> dict:
        """{loop: T[loop]} for all LOOPS."""
        return {lp: self.tile(lp) for lp in LOOPS}

    @property
    def dram_iterations(self) -> int:
        """Number of spad-level tiles (product of the DRAM factors) for one group."""
        out = 1
        for v in self.level("dram").values():
            out *= v
        return out

    # ---- contract -------------------------------------------------------------------
    def footprint(self, hw, layer: Layer) -> Footprint:
        """Local-memory rows of the spad-level tile (see the module docstring)."""
        return _footprint(hw.dim, layer.stride, self.tiles())

    def check(self, hw, layer: Layer) -> Check:
        """Validate this mapping for (hw, layer); the first failing rule gives the reason."""
        names = [lv for lv, _ in self.factors]
        if tuple(names) != LEVELS:
            return Check(False, f"factor levels {names} must be exactly {list(LEVELS)}")
        for lv, pairs in self.factors:
            loops = tuple(lp for lp, _ in pairs)
            if loops != LOOPS:
                return Check(False, f"{lv} factors cover loops {list(loops)}; need each of {_LOOPS_TEXT} once")
        if len(self.order) != len(LOOPS) or set(self.order) != set(LOOPS):
            return Check(False, f"order {list(self.order)} is not a permutation of {_LOOPS_TEXT}")
        fd = self.factors_dict()
        for lv in LEVELS:
            for lp in LOOPS:
                v = fd[lv][lp]
                if not _is_int(v) or v < 1:
                    return Check(False, f"{lv} factor of {lp} is {v!r}; factors must be integers >= 1")
        dims = layer.dims
        for lp in LOOPS:
            a, b, c = fd["dram"][lp], fd["spad"][lp], fd["array"][lp]
            if a * b * c != dims[lp]:
                return Check(False, f"loop {lp}: dram {a} x spad {b} x array {c} = {a * b * c} "
                                    f"!= layer dim {dims[lp]}")
        for lp in LOOPS:
            if lp not in ("C", "K") and fd["array"][lp] != 1:
                return Check(False, f"array factor of {lp} is {fd['array'][lp]}; "
                                    f"only C and K are unrolled on the array, others must be 1")
        for lp in ("C", "K"):
            if fd["array"][lp] > hw.dim:
                return Check(False, f"array {lp} factor {fd['array'][lp]} exceeds array dim {hw.dim}")
        fp = self.footprint(hw, layer)
        if fp.sp_rows_needed > hw.sp_rows:
            return Check(False, f"input + weight tiles need {fp.sp_rows_needed} scratchpad rows "
                                f"double-buffered, capacity {hw.sp_rows}")
        if fp.acc_rows_needed > hw.acc_rows:
            return Check(False, f"output tile needs {fp.acc_rows_needed} accumulator rows "
                                f"double-buffered, capacity {hw.acc_rows}")
        return Check(True, None)

    def validate(self, hw, layer: Layer) -> Mapping:
        """Return self if `check` passes, else raise MappingError(reason)."""
        c = self.check(hw, layer)
        if not c:
            raise MappingError(f"mapping invalid for layer {layer.name!r}: {c.reason}")
        return self

    # ---- serialisation --------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"factors": self.factors_dict(), "order": list(self.order)}

    @classmethod
    def from_dict(cls, d: dict) -> Mapping:
        if not isinstance(d, dict):
            raise MappingError(f"Mapping.from_dict needs a dict; got {type(d).__name__}")
        unknown = sorted(set(d) - {"factors", "order"})
        if unknown:
            raise MappingError(f"unknown Mapping field(s) {unknown}; allowed: ['factors', 'order']")
        if "factors" not in d:
            raise MappingError("missing Mapping field(s) ['factors']")
        return cls(factors=d["factors"], order=tuple(d.get("order", DEFAULT_ORDER)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, s: str) -> Mapping:
        return cls.from_dict(json.loads(s))

    def __str__(self) -> str:
        fd = self.factors_dict()
        loops = list(LOOPS) + sorted({str(lp) for pairs in fd.values() for lp in pairs} - set(LOOPS))
        width = max([5] + [len(str(v)) + 1 for d in fd.values() for v in d.values()])
        lines = [f"Mapping (dram order {' > '.join(map(str, self.order))})",
                 " " * 6 + "".join(f"{lp:>{width}}" for lp in loops)]
        for lv, d in fd.items():
            lines.append(f"{lv!s:<6}" + "".join(f"{d.get(lp, '-')!s:>{width}}" for lp in loops))
        return "\n".join(lines)


def _largest_divisor_le(n: int, bound: int) -> int:
    return max(d for d in divisors(n) if d <= bound)


def default_mapping(hw, layer: Layer) -> Mapping:
    """Greedy largest-tile mapping that passes `Mapping.check` (see module docstring)."""
    dims = layer.dims
    dim = hw.dim

    def fits(spad: dict, array: dict) -> bool:
        fp = _footprint(dim, layer.stride, {lp: spad[lp] * array[lp] for lp in LOOPS})
        return fp.sp_rows_needed <= hw.sp_rows and fp.acc_rows_needed <= hw.acc_rows

    spad = {lp: 1 for lp in LOOPS}
    best_c = _largest_divisor_le(dims["C"], dim)
    best_k = _largest_divisor_le(dims["K"], dim)
    array = None
    if fits(spad, {**spad, "C": best_c, "K": best_k}):
        array = {**spad, "C": best_c, "K": best_k}
    else:
        combos = [(ac, ak) for ac in divisors(dims["C"]) if ac <= dim
                  for ak in divisors(dims["K"]) if ak <= dim]
        combos.sort(key=lambda ck: (-ck[0] * ck[1], -ck[1], -ck[0]))
        for ac, ak in combos:
            if fits(spad, {**spad, "C": ac, "K": ak}):
                array = {**spad, "C": ac, "K": ak}
                break
    if array is None:
        raise MappingError(
            f"no mapping of layer {layer.name!r} fits dim={hw.dim}, sp_kb={getattr(hw, 'sp_kb', '?')}, "
            f"acc_kb={getattr(hw, 'acc_kb', '?')} (even 1x1 tiles need 4 scratchpad and 2 accumulator rows)")

    options = {lp: divisors(dims[lp] // array[lp]) for lp in LOOPS}
    while True:
        best = None  # (gain, loop, new factor)
        for lp in _GROW_PREFERENCE:
            cur = spad[lp]
            nxt = next((d for d in options[lp] if d > cur), None)
            if nxt is None:
                continue
            trial = {**spad, lp: nxt}
            if not fits(trial, array):
                continue
            gain = Fraction(nxt, cur)
            if best is None or gain > best[0]:  # strict: earlier loops win ties
                best = (gain, lp, nxt)
        if best is None:
            break
        spad[best[1]] = best[2]

    m = Mapping.for_layer(layer, spad=spad, array=array, order=DEFAULT_ORDER)
    chk = m.check(hw, layer)
    if not chk:  # cannot happen: every step above kept the mapping fitting
        raise MappingError(f"default mapping of layer {layer.name!r} failed its check: {chk.reason}")
    return m
