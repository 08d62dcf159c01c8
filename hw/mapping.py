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

Buffering
---------
Each operand's tile is single- or double-buffered: ``Mapping.buffers`` holds
``b_input, b_weight, b_output`` in {1, 2} (`OPERANDS` order; default all 2). A
double-buffered operand's next tile is loaded into the other buffer while the current
one is in use; a single-buffered operand reuses its one region, so its next tile waits
for the last use of the current one (for the output: its store). A mapping fits when

``sp_rows_needed = b_input*input_rows + b_weight*weight_rows <= hw.sp_rows`` and
``acc_rows_needed = b_output*output_rows <= hw.acc_rows`` (`Mapping.footprint`,
`Mapping.check`); with the default all 2 that is ``2*(input_rows + weight_rows)`` and
``2*output_rows``.

The fit rule (one definition)
-----------------------------
`footprint_rows` (the three row counts from the tile extents) and `rows_needed` (the
scratchpad and accumulator rows they occupy) are plain integer arithmetic that runs
unchanged on Python ints, on numpy arrays of any broadcastable shape (a batch of tiles
x a batch of hardware) and compiled by Numba (the analytical model's kernel compiles
these same two functions). `reason_codes` applies every rule of `Mapping.check` in its
precedence and returns a reason code (`REASONS`: 0 = fits, ...), again on ints (one
mapping: `Mapping.check`, after the structural checks that only a `Mapping` object can
fail) or on arrays (a batch: `check_arrays`, over the array form); `reason_text` words a
code with the offending values (the one wording, used by `Mapping.check` and the dataset
writer).

Array form (a contract: the cost model and the search consume it)
-----------------------------------------------------------------
One mapping is two int64 arrays (`Mapping.to_arrays`, `Mapping.from_arrays`); a batch
of B mappings adds a leading axis:

``factors``: shape ``(3, 7)``
    ``factors[lv, lp]`` is the tiling factor at level ``LEVELS[lv]`` (0 = "dram",
    1 = "spad", 2 = "array") of loop ``LOOPS[lp]`` (0..6 = N, K, C, P, Q, R, S). The
    spad-level tile extent is ``factors[1] * factors[2]``.

``order``: shape ``(7,)``
    ``order[pos]`` is the index into LOOPS of the loop at DRAM nesting position ``pos``,
    outermost first: ``Mapping.order == tuple(LOOPS[i] for i in order)``.

``buffers``: shape ``(3,)``
    ``b_input, b_weight, b_output`` (`Mapping.buffers`); absent (None) means all 2.

`arrays_json` writes the JSON text of `Mapping.to_json` straight from that form (the
dataset writer stores mappings with it without building `Mapping` objects). The JSON
form has ``"buffers": {"input": b, "weight": b, "output": b}`` only when some b is 1, so
every all-double mapping keeps the JSON it had before buffering was a choice.

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
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from hw.layer import LOOPS, Layer

__all__ = [
    "DEFAULT_BUFFERS",
    "DEFAULT_ORDER",
    "LEVELS",
    "OPERANDS",
    "LOOPS",
    "REASONS",
    "Check",
    "Footprint",
    "Mapping",
    "MappingError",
    "arrays_json",
    "check_arrays",
    "default_mapping",
    "reason_codes",
    "divisors",
    "footprint_rows",
    "reason_text",
    "rows_needed",
]

LEVELS = ("dram", "spad", "array")
DEFAULT_ORDER = ("N", "K", "P", "Q", "C", "R", "S")
#: The operands whose tiles a mapping buffers, in the order of `Mapping.buffers`.
OPERANDS = ("input", "weight", "output")
DEFAULT_BUFFERS = (2, 2, 2)
BUFFER_CHOICES = (1, 2)
_GROW_PREFERENCE = ("K", "C", "P", "Q", "N", "R", "S")
_LOOPS_TEXT = ", ".join(LOOPS)
_NL = len(LOOPS)
_IK, _IC = LOOPS.index("K"), LOOPS.index("C")

#: Reason codes of `reason_codes` (and `Check.code`, and the analytical kernel), with their
#: short wording (`reason_text` gives the wording with the offending values). The rules
#: apply in this order, the first failing one giving the code: a buffer count not 1 or 2,
#: a factor < 1, the order not
#: a permutation, factors not multiplying to the bounds, a loop other than C or K
#: unrolled, an array factor above dim, the scratchpad, the accumulator.
REASON_FACTOR, REASON_ORDER, REASON_PRODUCT, REASON_UNROLL, REASON_ARRAY, REASON_SPAD, REASON_ACC = \
    7, 6, 1, 2, 3, 4, 5
REASON_BUFFERS = 8   # before every other rule: a buffer count that is not 1 or 2
REASONS = {
    0: None,
    1: "factors do not multiply to the layer's loop bounds",
    2: "a loop other than C or K is unrolled on the array",
    3: "an array factor exceeds the array dimension",
    4: "input + weight tiles exceed the scratchpad (as buffered)",
    5: "output tile exceeds the accumulator (as buffered)",
    6: "the loop order is not a permutation of N, K, C, P, Q, R, S",
    7: "a factor is < 1",
    8: "a buffer count is not 1 or 2",
}


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
    """Local-memory rows of one spad-level tile and its buffering (module docstring)."""

    input_rows: int
    weight_rows: int
    output_rows: int
    buffers: tuple = DEFAULT_BUFFERS

    @property
    def sp_rows_needed(self) -> int:
        """Scratchpad rows for the input and weight tiles, as buffered (`rows_needed`)."""
        return rows_needed(self.input_rows, self.weight_rows, self.output_rows, *self.buffers)[0]

    @property
    def acc_rows_needed(self) -> int:
        """Accumulator rows for the output tile, as buffered (`rows_needed`)."""
        return rows_needed(self.input_rows, self.weight_rows, self.output_rows, *self.buffers)[1]

    def to_dict(self) -> dict:
        return {"input_rows": self.input_rows, "weight_rows": self.weight_rows,
                "output_rows": self.output_rows, "sp_rows_needed": self.sp_rows_needed,
                "acc_rows_needed": self.acc_rows_needed, "buffers": dict(zip(OPERANDS, self.buffers))}


@dataclass(frozen=True)
class Check:
    """Outcome of `Mapping.check`: truthy iff ok; ``reason`` is one line when not ok and
    ``code`` its `REASONS` code (0 when ok, -1 for a malformed `Mapping` object that
    has no array form; not part of equality)."""

    ok: bool
    reason: str | None = None
    code: int = field(default=0, compare=False)

    def __bool__(self) -> bool:
        return self.ok


# ---- the fit rule ---------------------------------------------------------------------
def footprint_rows(dim, stride, tn, tk, tc, tp, tq, tr, ts):
    """(input_rows, weight_rows, output_rows) of a tile with extents T_N .. T_S (see the
    module docstring). Integer arithmetic only: ints, broadcastable numpy arrays, Numba."""
    cb = -(-tc // dim)
    kb = -(-tk // dim)
    in_h = (tp - 1) * stride + tr
    in_w = (tq - 1) * stride + ts
    return tn * in_h * in_w * cb, tr * ts * kb * tc, tn * tp * tq * kb


def rows_needed(input_rows, weight_rows, output_rows, b_input=2, b_weight=2, b_output=2):
    """(scratchpad rows, accumulator rows) the tile occupies with each operand's buffer
    count (default double). A mapping fits when they are <= hw.sp_rows and hw.acc_rows.
    Ints, numpy arrays, Numba."""
    return b_input * input_rows + b_weight * weight_rows, b_output * output_rows


def _footprint(dim: int, stride: int, t: dict, buffers: tuple = DEFAULT_BUFFERS) -> Footprint:
    i, w, o = footprint_rows(dim, stride, *(t[lp] for lp in LOOPS))
    return Footprint(input_rows=i, weight_rows=w, output_rows=o, buffers=buffers)


def reason_codes(dims, stride, F, O, dim, sp_rows, acc_rows, Bf=DEFAULT_BUFFERS):
    """The rules of `Mapping.check` in precedence order, as arithmetic on values that are
    all Python ints (one mapping) or all numpy arrays (a batch, broadcasting): ``F[lv][lp]``
    the factor at level lv of loop lp, ``O[pos]`` the loop index at DRAM position pos
    (``O=None`` skips the order rule), ``Bf`` the three buffer counts (`OPERANDS` order),
    ``dims`` the 7 loop bounds. Returns the `REASONS` code (0: valid and fits) of each
    mapping. `check_arrays` and `Mapping.check` are its two front ends."""
    bad_buf = False
    for b in Bf:
        bad_buf = bad_buf | ((b != 1) & (b != 2))
    small = wrong = unrolled = False
    for i in range(_NL):
        a, b, c = F[0][i], F[1][i], F[2][i]
        small = small | (a < 1) | (b < 1) | (c < 1)
        wrong = wrong | (a * b * c != dims[i])
        if i not in (_IK, _IC):
            unrolled = unrolled | (c != 1)
    rules = [(REASON_BUFFERS, bad_buf), (REASON_FACTOR, small)]
    if O is not None:
        inside = [(o >= 0) & (o < _NL) for o in O]
        mask = sum(1 << (o * ok) for o, ok in zip(O, inside))   # one bit per loop seen
        every = inside[0]
        for ok in inside[1:]:
            every = every & ok
        rules.append((REASON_ORDER, ~(every & (mask == (1 << _NL) - 1)) if isinstance(mask, np.ndarray)
                      else not (every and mask == (1 << _NL) - 1)))
    wide = (F[2][_IC] > dim) | (F[2][_IK] > dim)
    rules += [(REASON_PRODUCT, wrong), (REASON_UNROLL, unrolled), (REASON_ARRAY, wide)]
    failed = bad_buf | small | wrong | unrolled | wide
    sane = ~failed if isinstance(failed, np.ndarray) else not failed
    t = [F[1][i] * F[2][i] * sane + (1 - sane) for i in range(_NL)]   # 1 where a rule already failed
    sp, acc = rows_needed(*footprint_rows(dim, stride, *t), *Bf)
    rules += [(REASON_SPAD, sp > sp_rows), (REASON_ACC, acc > acc_rows)]
    if not isinstance(sp, np.ndarray):
        return next((c for c, bad in rules if bad), 0)
    code = np.zeros(np.shape(sp), dtype=np.int64)
    for c, bad in reversed(rules):
        code = np.where(bad, c, code)
    return code


def check_arrays(dims, stride, factors, order, dim, sp_rows, acc_rows, buffers=None) -> np.ndarray:
    """Reason code (`REASONS`; 0 = the mapping is valid and fits) of each of B mappings
    in array form: `reason_codes` on a batch.

    ``dims``: the layer's loop bounds (7,) in LOOPS order, ``stride`` its stride;
    ``factors`` (B, 3, 7), ``order`` (B, 7) and ``buffers`` (B, 3) or (3,) as in the
    module docstring (``order=None`` skips the order rule: fitting never depends on it;
    ``buffers=None``: all double); ``dim``, ``sp_rows``, ``acc_rows``: scalars or (B,)
    arrays (one hardware configuration, or one per row).
    """
    f = np.asarray(factors, dtype=np.int64)
    B = f.shape[0]
    F = [[f[:, lv, lp] for lp in range(_NL)] for lv in range(len(LEVELS))]
    O = None if order is None else [c for c in np.asarray(order, dtype=np.int64).T]
    d = np.broadcast_to(np.asarray(dim, dtype=np.int64), (B,))
    b = np.broadcast_to(np.asarray(DEFAULT_BUFFERS if buffers is None else buffers, dtype=np.int64), (B, 3))
    code = reason_codes([int(v) for v in dims], stride, F, O, d, np.asarray(sp_rows), np.asarray(acc_rows),
                        [b[:, i] for i in range(3)])
    return np.broadcast_to(code, (B,)).astype(np.int64)


def reason_text(code: int, dims, stride, factors, order, dim: int, sp_rows: int, acc_rows: int,
                buffers=None) -> str | None:
    """The one-line wording of reason ``code`` for one mapping in array form (factors
    (3, 7), order (7,), buffers (3,) or None for all 2), naming the offending operand,
    loop and values (None for code 0)."""
    code = int(code)
    if code == 0:
        return None
    bufs = tuple(DEFAULT_BUFFERS if buffers is None else np.asarray(buffers).tolist())
    if code == REASON_BUFFERS:
        op, b = next((op, b) for op, b in zip(OPERANDS, bufs) if b not in BUFFER_CHOICES)
        return f"{op} buffers is {b!r}; a tile is single- (1) or double-buffered (2)"
    f = np.asarray(factors).tolist()
    if code == REASON_ORDER:
        names = [LOOPS[i] if 0 <= i < _NL else i for i in np.asarray(order).tolist()]
        return f"order {names} is not a permutation of {_LOOPS_TEXT}"
    if code == REASON_FACTOR:
        lv, lp = next((lv, lp) for lv in range(3) for lp in range(_NL) if f[lv][lp] < 1)
        return f"{LEVELS[lv]} factor of {LOOPS[lp]} is {f[lv][lp]!r}; factors must be integers >= 1"
    dims = [int(v) for v in dims]
    if code == REASON_PRODUCT:
        i = next(i for i in range(_NL) if f[0][i] * f[1][i] * f[2][i] != dims[i])
        a, b, c = f[0][i], f[1][i], f[2][i]
        return f"loop {LOOPS[i]}: dram {a} x spad {b} x array {c} = {a * b * c} != layer dim {dims[i]}"
    if code == REASON_UNROLL:
        i = next(i for i in range(_NL) if i not in (_IK, _IC) and f[2][i] != 1)
        return (f"array factor of {LOOPS[i]} is {f[2][i]}; "
                f"only C and K are unrolled on the array, others must be 1")
    if code == REASON_ARRAY:
        i = next(i for i in (_IC, _IK) if f[2][i] > dim)
        return f"array {LOOPS[i]} factor {f[2][i]} exceeds array dim {dim}"
    i_rows, w_rows, o_rows = footprint_rows(dim, stride, *(f[1][i] * f[2][i] for i in range(_NL)))
    sp, acc = rows_needed(i_rows, w_rows, o_rows, *bufs)
    if code == REASON_SPAD:
        if bufs[0] == bufs[1] == 2:
            return f"input + weight tiles need {sp} scratchpad rows double-buffered, capacity {sp_rows}"
        return (f"input tile {i_rows} rows {_BUFFERED[bufs[0]]} + weight tile {w_rows} rows "
                f"{_BUFFERED[bufs[1]]} need {sp} scratchpad rows, capacity {sp_rows}")
    if code == REASON_ACC:
        return f"output tile needs {acc} accumulator rows {_BUFFERED[bufs[2]]}, capacity {acc_rows}"
    raise ValueError(f"reason code must be one of {sorted(REASONS)}; got {code}")


_BUFFERED = {1: "single-buffered", 2: "double-buffered"}


def arrays_json(factors, order, buffers=None) -> str:
    """`Mapping.to_json` of the mapping with ``factors`` (3 x 7, or 21 level-major ints),
    ``order`` (7 loop indices) and ``buffers`` (3 ints, or None for all 2), written
    straight from the array form."""
    f = np.asarray(factors).reshape(-1).tolist()
    text = _MAPPING_FMT % (*f, ", ".join(_QUOTED[i] for i in np.asarray(order).tolist()))
    b = DEFAULT_BUFFERS if buffers is None else tuple(np.asarray(buffers).tolist())
    if b == DEFAULT_BUFFERS:
        return text
    return text[:-1] + ', "buffers": {' + ", ".join(f'"{op}": {v}' for op, v in zip(OPERANDS, b)) + "}}"


def _mapping_format() -> str:
    """`Mapping.to_dict`'s JSON text with %d for the 21 factors and %s for the order."""
    levels = ", ".join(f'"{lv}": {{' + ", ".join(f'"{lp}": %d' for lp in LOOPS) + "}" for lv in LEVELS)
    return '{"factors": {' + levels + '}, "order": [%s]}'


_MAPPING_FMT = _mapping_format()
_QUOTED = tuple(f'"{lp}"' for lp in LOOPS)


def _buffers(b) -> tuple:
    """``buffers`` as the canonical (b_input, b_weight, b_output): from a dict operand ->
    count (missing operands 2) or a sequence of three; the counts are checked by `check`."""
    if isinstance(b, _AbcMapping):
        unknown = sorted(set(map(str, b)) - set(OPERANDS))
        if unknown:
            raise MappingError(f"Mapping.buffers names unknown operand(s) {unknown}; operands are "
                               f"{', '.join(OPERANDS)}")
        b = tuple(b.get(op, 2) for op in OPERANDS)
    elif isinstance(b, (tuple, list)) and len(b) == len(OPERANDS):
        b = tuple(b)
    else:
        raise MappingError(f"Mapping.buffers must be a dict operand -> 1 or 2 (operands "
                           f"{', '.join(OPERANDS)}); got {b!r}")
    return tuple(int(v) if _is_int(v) else v for v in b)


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
    buffers: tuple = DEFAULT_BUFFERS

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
        object.__setattr__(self, "buffers", _buffers(self.buffers))

    # ---- construction helpers ------------------------------------------------------
    @classmethod
    def for_layer(cls, layer: Layer, spad: dict | None = None, array: dict | None = None,
                  order=DEFAULT_ORDER, buffers=DEFAULT_BUFFERS) -> Mapping:
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
                   order=order, buffers=buffers)

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
        """Local-memory rows of the spad-level tile and its buffering (module docstring)."""
        return _footprint(hw.dim, layer.stride, self.tiles(), self.buffers)

    def buffers_dict(self) -> dict:
        """``{"input": b, "weight": b, "output": b}``."""
        return dict(zip(OPERANDS, self.buffers))

    def check(self, hw, layer: Layer) -> Check:
        """Validate this mapping for (hw, layer); the first failing rule gives the reason."""
        names = [lv for lv, _ in self.factors]
        if tuple(names) != LEVELS:
            return Check(False, f"factor levels {names} must be exactly {list(LEVELS)}", -1)
        for lv, pairs in self.factors:
            loops = tuple(lp for lp, _ in pairs)
            if loops != LOOPS:
                return Check(False, f"{lv} factors cover loops {list(loops)}; need each of {_LOOPS_TEXT} once",
                             -1)
        for op, b in zip(OPERANDS, self.buffers):
            if not _is_int(b) or b not in BUFFER_CHOICES:
                return Check(False, f"{op} buffers is {b!r}; a tile is single- (1) or double-buffered (2)",
                             REASON_BUFFERS)
        fd = self.factors_dict()
        for lv in LEVELS:
            for lp in LOOPS:
                v = fd[lv][lp]
                if not _is_int(v) or v < 1:
                    return Check(False, f"{lv} factor of {lp} is {v!r}; factors must be integers >= 1",
                                 REASON_FACTOR)
        if len(self.order) != len(LOOPS) or set(self.order) != set(LOOPS):
            return Check(False, f"order {list(self.order)} is not a permutation of {_LOOPS_TEXT}", REASON_ORDER)
        dims = [layer.dims[lp] for lp in LOOPS]
        code = reason_codes(dims, layer.stride, [[fd[lv][lp] for lp in LOOPS] for lv in LEVELS],
                            [LOOPS.index(lp) for lp in self.order], hw.dim, hw.sp_rows, hw.acc_rows,
                            self.buffers)
        if code:
            factors, order = self.to_arrays()
            return Check(False, reason_text(code, dims, layer.stride, factors, order, hw.dim, hw.sp_rows,
                                            hw.acc_rows, self.buffers), code)
        return Check(True, None)

    def validate(self, hw, layer: Layer) -> Mapping:
        """Return self if `check` passes, else raise MappingError(reason)."""
        c = self.check(hw, layer)
        if not c:
            raise MappingError(f"mapping invalid for layer {layer.name!r}: {c.reason}")
        return self

    # ---- array form -------------------------------------------------------------------
    def to_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(factors (3, 7), order (7,)) int64 (the module docstring's array form);
        MappingError when this is not a table of integer factors of the seven loops at
        the three levels with an order that names loops."""
        try:
            fd = self.factors_dict()
            factors = np.array([[fd[lv][lp] for lp in LOOPS] for lv in LEVELS], dtype=np.int64)
            order = np.array([LOOPS.index(lp) for lp in self.order], dtype=np.int64)
        except (KeyError, ValueError, TypeError, OverflowError) as e:
            raise MappingError(f"mapping is not a (level x loop) table of integers with an order of "
                               f"the loops {', '.join(LOOPS)}: {e}") from None
        if order.shape != (_NL,):
            raise MappingError(f"order {list(self.order)} is not a permutation of {_LOOPS_TEXT}")
        return factors, order

    @classmethod
    def from_arrays(cls, factors, order, buffers=None) -> Mapping:
        """The `Mapping` of one mapping in array form: factors (3, 7), order (7,), a
        permutation of 0..6, and buffers (3,) or None for all 2 (MappingError otherwise)."""
        f = np.asarray(factors)
        o = np.asarray(order)
        if f.shape != (len(LEVELS), _NL) or not np.issubdtype(f.dtype, np.integer):
            raise MappingError(f"factors row must be an integer array of shape (3, 7); got {f.dtype} {f.shape}")
        if o.shape != (_NL,) or not np.issubdtype(o.dtype, np.integer) or sorted(o.tolist()) != list(range(_NL)):
            raise MappingError(f"order row must be a permutation of 0..6; got {o.tolist()}")
        fl = f.tolist()
        return cls(factors={lv: dict(zip(LOOPS, fl[i])) for i, lv in enumerate(LEVELS)},
                   order=tuple(LOOPS[i] for i in o.tolist()),
                   buffers=DEFAULT_BUFFERS if buffers is None else tuple(np.asarray(buffers).tolist()))

    # ---- serialisation --------------------------------------------------------------
    def to_dict(self) -> dict:
        """``{"factors", "order"}`` plus ``"buffers"`` when some operand is single-buffered."""
        d = {"factors": self.factors_dict(), "order": list(self.order)}
        if self.buffers != DEFAULT_BUFFERS:
            d["buffers"] = self.buffers_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Mapping:
        if not isinstance(d, dict):
            raise MappingError(f"Mapping.from_dict needs a dict; got {type(d).__name__}")
        unknown = sorted(set(d) - {"factors", "order", "buffers"})
        if unknown:
            raise MappingError(f"unknown Mapping field(s) {unknown}; allowed: ['buffers', 'factors', 'order']")
        if "factors" not in d:
            raise MappingError("missing Mapping field(s) ['factors']")
        return cls(factors=d["factors"], order=tuple(d.get("order", DEFAULT_ORDER)),
                   buffers=d.get("buffers", DEFAULT_BUFFERS))

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
        if self.buffers != DEFAULT_BUFFERS:
            lines.append("buffers " + ", ".join(f"{op} {_BUFFERED.get(b, b)}" for op, b in zip(OPERANDS, self.buffers)))
        return "\n".join(lines)


def _largest_divisor_le(n: int, bound: int) -> int:
    return max(d for d in divisors(n) if d <= bound)


def default_mapping(hw, layer: Layer, buffers=DEFAULT_BUFFERS) -> Mapping:
    """Greedy largest-tile mapping that passes `Mapping.check` (see module docstring),
    with the given buffering (default all double; a single-buffered operand leaves room
    for a tile up to twice as large)."""
    buffers = _buffers(buffers)
    bad = [b for b in buffers if b not in BUFFER_CHOICES]
    if bad:
        raise MappingError(f"buffers must be 1 or 2 per operand ({', '.join(OPERANDS)}); got {bad[0]!r}")
    dims = layer.dims
    dim = hw.dim

    def fits(spad: dict, array: dict) -> bool:
        fp = _footprint(dim, layer.stride, {lp: spad[lp] * array[lp] for lp in LOOPS}, buffers)
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

    m = Mapping.for_layer(layer, spad=spad, array=array, order=DEFAULT_ORDER, buffers=buffers)
    chk = m.check(hw, layer)
    if not chk:  # cannot happen: every step above kept the mapping fitting
        raise MappingError(f"default mapping of layer {layer.name!r} failed its check: {chk.reason}")
    return m
