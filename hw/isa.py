"""Instruction set of the accelerator: the one written source of truth for the encoding.

Both the RTL decoder (`hw.frontend`) and the assembler (`hw.program`) read `FIELDS` and
`Op` from this module; nothing else defines a bit position.

Instructions are 128 bits wide. Fields sit at the same bit positions in every
instruction that uses them; unused bits must be zero.

    field       bits      meaning
    ----------  --------  -----------------------------------------------------------
    opcode      [3:0]     Op below
    funct       [5:4]     CONFIG target: 0 = EX, 1 = LD, 2 = ST
    slot        [7:6]     CONFIG LD / MVIN: which of the 3 load configurations (0..2)
    acc         [8]       MVIN / MVOUT: local address is in the accumulator (else scratchpad)
    accumulate  [9]       PRELOAD: the following compute adds into C (else overwrites C)
    relu        [10]      CONFIG ST: apply ReLU on accumulator reads
    acc_full    [11]      CONFIG ST: accumulator MVOUT writes raw int32 (else int8 after
                          ReLU / shift / saturation)
    b_none      [12]      PRELOAD: no new weights (only set the C destination)
    preloaded   [13]      COMPUTE_BLOCK: swap in the preloaded weights first (as
                          COMPUTE_PRELOADED; else keep the active ones)
    shift       [20:16]   CONFIG ST: arithmetic right shift with rounding (0..31)
    rows        [29:24]   block rows, 1..DIM   (MVIN/MVOUT rows, PRELOAD B rows,
                                                COMPUTE A rows)
    cols        [37:32]   block columns, 1..DIM (elements per row)
    laddr       [63:40]   local row address (scratchpad or accumulator row)
    stride1     [63:40]   CONFIG EX: scratchpad rows between the first A rows of
                          consecutive runs of a COMPUTE_BLOCK (a_stride1)
    dram        [95:64]   DRAM byte address (MVIN / MVOUT)
    stride      [95:64]   CONFIG: LD/ST DRAM bytes between rows; EX scratchpad rows
                          between consecutive A rows of a COMPUTE (a_stride)
    laddr2      [87:64]   PRELOAD: accumulator row address of C
    run         [79:64]   COMPUTE_BLOCK: A rows per run, 1..65535
    reps        [95:80]   COMPUTE_BLOCK: runs, 1..65535
    rows2       [101:96]  PRELOAD: C rows, 1..DIM
    cols2       [109:104] PRELOAD: C columns, 1..DIM

Semantics (weight-stationary, C = A x B with A rows streaming through the array):

    CONFIG EX   a_stride := stride; a_stride1 := stride1           (default 1, 0)
    CONFIG LD   ld_stride[slot] := stride                             (default 0)
    CONFIG ST   st_stride := stride; relu, acc_full, shift            (default 0, off)
    MVIN        for r < rows: local[laddr + r] := DRAM row at dram + r*ld_stride[slot],
                cols elements (int8 to the scratchpad, little-endian int32 to the
                accumulator); elements cols..DIM-1 of the local row are set to zero.
    MVOUT       for r < rows: DRAM at dram + r*st_stride := first cols elements of
                local[laddr + r]; scratchpad rows as int8; accumulator rows as int32
                if acc_full, else round_shift(relu?(x), shift) saturated to int8.
                round_shift(x, s) = (x + 2^(s-1)) >> s for s > 0 (ties toward +inf).
    PRELOAD     unless b_none: the shadow weight buffer := scratchpad rows
                laddr .. laddr+rows-1, columns < cols (all other weights zero).
                C destination := (laddr2, rows2, cols2, accumulate) for the next COMPUTE.
    COMPUTE_PRELOADED    swap the shadow and active weights, then for m < rows:
                         C[laddr2 + m] (+)= A[m] x W, A[m] = scratchpad row
                         laddr + m*a_stride with columns >= cols forced to zero;
                         only rows m < rows2 and columns < cols2 of C are written.
    COMPUTE_ACCUMULATED  the same with the active weights kept (no swap).
    COMPUTE_BLOCK        if preloaded, swap the shadow and active weights; then for
                         j < reps, i < run, m = j*run + i:
                         C[laddr2 + m] (+)= A[j, i] x W, A[j, i] = scratchpad row
                         laddr + j*a_stride1 + i*a_stride with columns >= cols forced
                         to zero; every one of the run*reps C rows is written (the
                         PRELOAD's rows2 is not used), columns < cols2. One instruction
                         streams a whole 2-D block of A rows (a convolution tile's
                         output rows x columns) through the same weights, where
                         COMPUTE_* streams at most DIM rows of one arithmetic run: the
                         same results as the equivalent COMPUTE_* sequence (one per
                         run, cut into pieces of <= DIM rows, each but the first after
                         a PRELOAD with b_none of its C rows).
    FENCE       wait until every earlier instruction has completed (DRAM writes acked).
    HALT        like FENCE, then stop and raise `done`.

Ordering: instructions dispatch in program order to three units (load: MVIN;
execute: PRELOAD, COMPUTE_*; store: MVOUT) that run concurrently. An instruction
waits at dispatch while an earlier, unfinished instruction of another unit touches
an overlapping local address range (read-after-write, write-after-read or
write-after-write), so results never depend on timing. DRAM is not tracked: a MVIN
that reads what an earlier MVOUT wrote needs a FENCE between them.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["Op", "ConfigTarget", "FIELDS", "INSN_BITS", "encode", "decode", "IsaError", "low_words", "high_words",
           "fields_array", "BLOCK_COUNT_MAX"]

INSN_BITS = 128
#: the largest run / reps of a COMPUTE_BLOCK (16-bit fields)
BLOCK_COUNT_MAX = (1 << 16) - 1


class IsaError(ValueError):
    """A field value does not fit its instruction field."""


class Op(enum.IntEnum):
    CONFIG = 0
    MVIN = 1
    MVOUT = 2
    PRELOAD = 3
    COMPUTE_PRELOADED = 4
    COMPUTE_ACCUMULATED = 5
    FENCE = 6
    HALT = 7
    COMPUTE_BLOCK = 8


class ConfigTarget(enum.IntEnum):
    EX = 0
    LD = 1
    ST = 2


# field name -> (lowest bit, width)
FIELDS: dict[str, tuple[int, int]] = {
    "opcode": (0, 4),
    "funct": (4, 2),
    "slot": (6, 2),
    "acc": (8, 1),
    "accumulate": (9, 1),
    "relu": (10, 1),
    "acc_full": (11, 1),
    "b_none": (12, 1),
    "preloaded": (13, 1),
    "shift": (16, 5),
    "rows": (24, 6),
    "cols": (32, 6),
    "laddr": (40, 24),
    "stride1": (40, 24),
    "dram": (64, 32),
    "stride": (64, 32),
    "laddr2": (64, 24),
    "run": (64, 16),
    "reps": (80, 16),
    "rows2": (96, 6),
    "cols2": (104, 6),
}

# Fields each opcode may set (others must be zero).
OP_FIELDS: dict[Op, tuple[str, ...]] = {
    Op.CONFIG: ("funct", "slot", "relu", "acc_full", "shift", "stride", "stride1"),
    Op.MVIN: ("slot", "acc", "rows", "cols", "laddr", "dram"),
    Op.MVOUT: ("acc", "rows", "cols", "laddr", "dram"),
    Op.PRELOAD: ("b_none", "accumulate", "rows", "cols", "laddr", "laddr2", "rows2", "cols2"),
    Op.COMPUTE_PRELOADED: ("rows", "cols", "laddr"),
    Op.COMPUTE_ACCUMULATED: ("rows", "cols", "laddr"),
    Op.FENCE: (),
    Op.HALT: (),
    Op.COMPUTE_BLOCK: ("preloaded", "cols", "laddr", "run", "reps"),
}


def encode(op: Op, **fields: int) -> int:
    """Pack one instruction into a 128-bit integer."""
    op = Op(op)
    word = int(op)
    allowed = OP_FIELDS[op]
    for name, value in fields.items():
        if name not in allowed:
            raise IsaError(f"{op.name} has no field {name!r}; allowed: {', '.join(allowed) or 'none'}")
        lo, width = FIELDS[name]
        value = int(value)
        if not 0 <= value < (1 << width):
            raise IsaError(f"{op.name}.{name} = {value} does not fit {width} bits (0..{(1 << width) - 1})")
        word |= value << lo
    return word


def decode(word: int) -> tuple[Op, dict[str, int]]:
    """Unpack an instruction into (op, {field: value}) for the fields its opcode uses."""
    op = Op(word & 0xF)
    out = {}
    for name in OP_FIELDS[op]:
        lo, width = FIELDS[name]
        out[name] = (word >> lo) & ((1 << width) - 1)
    return op, out


def low_words(words) -> np.ndarray:
    """The low 64 bits of each instruction word, as a uint64 array (one pass over a
    Python sequence; a numpy array of words is taken as it is)."""
    if isinstance(words, np.ndarray):
        return words.astype(np.uint64, copy=False)
    mask = (1 << 64) - 1
    return np.fromiter((w & mask for w in words), dtype=np.uint64, count=len(words))


def high_words(words) -> np.ndarray:
    """The high 64 bits of each instruction word, as a uint64 array (see `low_words`; a
    numpy array is taken as the high halves already)."""
    if isinstance(words, np.ndarray):
        return words.astype(np.uint64, copy=False)
    return np.fromiter((w >> 64 for w in words), dtype=np.uint64, count=len(words))


def fields_array(low: np.ndarray, name: str, high: np.ndarray | None = None) -> np.ndarray:
    """Field ``name`` of every word, vectorised: ``low`` is `low_words` of a program and
    ``high`` its `high_words`, needed only for fields in the high 64 bits (dram ...
    reps). The value is the raw bits, whatever the word's opcode (see `decode` for the
    fields an opcode uses)."""
    lo, width = FIELDS[name]
    src = low
    if lo + width > 64:
        if lo < 64:
            raise IsaError(f"field {name!r} (bits {lo}..{lo + width - 1}) straddles the 64-bit halves")
        if high is None:
            raise IsaError(f"field {name!r} (bits {lo}..{lo + width - 1}) is not in the low 64 bits; pass high=")
        src, lo = high, lo - 64
    return ((src >> np.uint64(lo)) & np.uint64((1 << width) - 1)).astype(np.int64)
