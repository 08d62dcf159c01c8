"""Layer compiler: lowers (HardwareConfig, Mapping, Layer) to an instruction stream.

``compile_layer(hw, mapping, layer, out="int32" | "int8", relu=False, shift=0)`` returns
a `Compiled`: the `Program`, a `DramImage` with the regions allocated (inputs zero until
`Compiled.write_inputs`), the addresses and shapes of the regions, and statistics.

DRAM layout (all row-major, little-endian; G groups, Cg = C/G, Kg = K/G)
-------------------------------------------------------------------------
    input    int8  (N, H + 2*pad, W + 2*pad, C)   NHWC of the zero-PADDED input; the
                                                  compiler owns the padding (zeros)
    weights  int8  (G, R, S, Cg, Kg)              one row of Kg output channels per (g, r, s, c)
    output   int32 or int8  (N, P, Q, K)          NHWC
    psum     int32 (N, P, Q, K)                   partial sums, only when the DRAM loop
                                                  order leaves an output tile before its
                                                  reduction is complete

`Compiled.write_inputs` converts NCHW / KCRS arrays into these layouts and
`Compiled.read_output` returns the output as (N, K, P, Q).

Lowering (the tile-footprint contract of `hw.mapping`)
------------------------------------------------------
The group loop is outermost; inside it the DRAM-level loops nest in ``mapping.order``
with trip counts ``mapping.factor("dram", loop)``; one iteration ("step") handles one
spad-level tile of extents T[loop] = ``mapping.tile(loop)`` at origin index * T. With
cbn = ceil(T_C/dim), kbn = ceil(T_K/dim), in_h = (T_P-1)*stride + T_R and
in_w = (T_Q-1)*stride + T_S:

* input tile (scratchpad): row ((cb*T_N + n)*in_h + ih)*in_w + iw holds channels
  [cb*dim, min(T_C, (cb+1)*dim)) of padded input pixel
  (n0+n, p0*stride + r0 + ih, q0*stride + s0 + iw). Loaded with MVINs (load slot 0,
  DRAM row stride C bytes) of up to dim rows that are consecutive both in the
  scratchpad and in DRAM (consecutive iw; a run continues into the next ih row when the
  tile spans the whole padded width).
* weight tile (scratchpad): row ((r*T_S + s)*kbn + kb)*T_C + c holds output channels
  [kb*dim, min(T_K, (kb+1)*dim)) of weight (g, r0+r, s0+s, c0+c); MVINs (load slot 1,
  row stride Kg bytes) of up to dim consecutive c.
* output tile (accumulator): row ((kb*T_N + n)*T_P + p)*T_Q + q holds the output
  channels of block kb of pixel (n0+n, p0+p, q0+q). Partial sums move with MVINs /
  MVOUTs of up to dim consecutive pixels (load slot 2, row stride 4K bytes).

These are exactly the footprints of `Mapping.footprint`; each operand has one or two
buffers (`Mapping.buffers`).

Placement. Scratchpad: the input buffers from row 0 up (input_rows each), the weight
buffers from the top down (the first at sp_rows - weight_rows). A COMPUTE reads
input rows while a PRELOAD reads weight rows; the scratchpad's banks are consecutive row
ranges, so with inputs packed at the bottom and weights at the top they share a bank
only if ceil(b_in*input_rows / bank) + ceil(b_w*weight_rows / bank) > sp_banks, i.e. only
when the bank size does not allow better. Accumulator: a double-buffered output has its
buffers at rows 0 and acc_rows / 2 (a bank boundary when acc_banks >= 2), so the MVOUTs
of one tile and the computes into the other use different banks; a single-buffered
output has one buffer at row 0.

Computes of one step: for each kb, for each weight block (r, s, cb) of the tile, a
PRELOAD of the block (b_rows = channels of block cb, b_cols = output channels of kb)
then the computes over every output pixel of the tile. The pixels, in (n, p, q) order,
give (A row, C row) pairs. By default (``block=True``) they are streamed by
COMPUTE_BLOCKs (`hw.isa`): `hw.blocks.block_items` covers them with the fewest two-level
patterns (run x reps A rows, C rows consecutive), usually one per weight block (one per
image when the images do not join up), with the strides set once by the head's CONFIG
EX; a later block of the same weights follows a PRELOAD(b_none) with its C destination.
With ``block=False`` (the stream before COMPUTE_BLOCK, kept for comparison and for the
frozen reference) they are cut greedily (optimal in the number of COMPUTEs) into runs of
at most dim pixels along which A advances by a constant a_stride and C by +1: a 1x1
stride-1 (GEMM-like) tile is one arithmetic run per dim pixels, a 3x3 tile breaks at
each output row; a CONFIG EX precedes a COMPUTE of more than one row whose a_stride
differs from the current one. The first run (block) of a weight block is PRELOAD(B) +
COMPUTE_PRELOADED (COMPUTE_BLOCK with preloaded), later ones PRELOAD(b_none, new C
destination) + COMPUTE_ACCUMULATED (COMPUTE_BLOCK without).
``accumulate`` is False only for the first weight block (r = s = cb = 0) of the first
visit of an output tile (DRAM origin c0 = r0 = s0 = 0, nothing reloaded), else True.

DRAM loop order. Every order is honoured, bad ones included: a tile is reloaded exactly
when its index changes between consecutive steps (input: n, c, p, q, r, s; weights: k,
c, r, s; output: n, k, p, q), into the other half of its double buffer, or into its one
buffer when single-buffered (a buffer is kept while its tile is unchanged). When the output index changes, the tile that was just
computed is stored: to the output region (int32 via acc_full, or int8 with ReLU /
shift) if its whole reduction (all DRAM-level C, R, S iterations) is done, else as int32
partial sums to the psum region; a later visit of that tile first MVINs them back into
the accumulator (acc=True) and then accumulates. A FENCE is put before such a MVIN when
an earlier MVOUT of that tile's partial sums has not been fenced yet.

Program order (performance only; the result is a valid sequential program, which is how
`hw.program.interpret` runs it, and the hardware's scoreboard enforces local hazards):
configuration, the loads of step 0, then for each step t the execute stream of t merged
with the stores of the tile finished at t-1 and the loads of step t+1 in the order of
`hw.schedule.merge` (each side stream spread evenly over the execute stream; a
partial-sum reload into the accumulator buffer still being stored follows those stores;
`_merge_order` computes the same order from counts); finally the stores of the last tile and
HALT. A single-buffered operand's next tile cannot overlap the step that uses its one
buffer: a single-buffered input or weight tile of step t+1 is loaded after the whole
execute stream of step t, and a single-buffered output tile is stored right after the
execute stream of its last step (before anything of the next step writes the
accumulator: its partial-sum reload and its computes). The hardware's scoreboard holds
each such instruction until the instructions it conflicts with are done. The loads of a step are its partial sums, then its input tile, then its weight
tile (each in local-row order). A CONFIG ST precedes a MVOUT whose store mode (int32
partial sums vs. int8 output) differs from the current one.

Speed (a ResNet-50 layer's program has 10^4 to 10^7 instructions; no instruction is
built by a Python call of its own, and the work per step is a few list and dict
operations):

* Words are packed directly from the `hw.isa.FIELDS` bit positions, with numpy: the
  fields of many instructions are arrays, shifted and or-ed into the low and high 64-bit
  halves of the words (`_pack`), not through the validating `Program` methods (a few
  microseconds each). Each word ends up as a Python int (the `Program` holds a list).
* The execute stream of a step depends only on the a_stride in force when it starts,
  its buffers and whether it is a first visit. Its items (kb, r, s, cb, pixel run) are
  packed all at once for buffers at row 0 (`_Compiler._exec_proto`, once per a_stride);
  each (buffers, first visit) variant adds the buffer rows to that prototype, one
  addition per word (`_Compiler._exec_block`); the steps of a variant share its word objects.
* A tile's DMA loads or stores are its run template (`_dma_runs`, vectorised) plus one
  offset per tile (buffer row and DRAM origin), added to each word.
* The order of `hw.schedule.merge` is computed from counts, not `Item`s. The side
  streams never conflict with the execute stream (they use the other buffers, which is
  checked over all steps), and their conflicts with each other follow from the tile
  layout: a partial-sum reload MVIN k into the accumulator buffer being stored writes
  the rows store k reads, and a reload of the tile being spilled reads what every
  spill MVOUT wrote. `_merge_order` then places each side item from its due position
  and those dependencies, and `_positions` gives the word positions of the step. Both
  are cached per layout. `_Emitter.words` writes every step of a layout into the
  program with a few numpy assignments.
* The bookkeeping per step (new tiles, buffers, visits, DRAM origins) is computed as
  arrays over all steps. Ranges are checked once per tile over those arrays (buffers
  inside the local memories, every DRAM access inside its region).

`Compiled.validate()` replays the whole program through the `Program` builder (slow, for
tests). The returned `Program` holds the packed words, and its MAC counter
(`expected_macs`) is set to ``layer.macs``, what the builder would have counted.
tests/sim/reference_compiler.py keeps the previous, item-by-item compiler; the test
suite checks that both produce the same words, DRAM layout and statistics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from hw.blocks import block_items
from hw.config import HardwareConfig
from hw.isa import FIELDS, ConfigTarget, Op, decode
from hw.layer import LOOPS, Layer
from hw.mapping import Mapping, MappingError
from hw.program import DramImage, Program, ProgramError
from sim.reference import check_int8

__all__ = ["CompileError", "Compiled", "compile_layer", "dram_bytes_needed", "dram_mb_for"]


class CompileError(ValueError):
    """The layer cannot be compiled with this mapping (one-line reason)."""


# ---------------------------------------------------------------------------------------
# instruction packing (bit positions from hw.isa.FIELDS)
# ---------------------------------------------------------------------------------------

_SH = {name: lo for name, (lo, _w) in FIELDS.items()}
# every field lies within one 64-bit half of the word (what `_pack` relies on)
assert all(lo // 64 == (lo + w - 1) // 64 for lo, w in FIELDS.values())


def _w_config(target: int, *, slot: int = 0, stride: int = 0, relu: bool = False,
              acc_full: bool = False, shift: int = 0, stride1: int = 0) -> int:
    return (int(Op.CONFIG) | int(target) << _SH["funct"] | slot << _SH["slot"]
            | int(relu) << _SH["relu"] | int(acc_full) << _SH["acc_full"]
            | shift << _SH["shift"] | stride << _SH["stride"] | stride1 << _SH["stride1"])


def _pack(op, **fields) -> np.ndarray:
    """Instruction words (an object array of Python ints) from field values: `op` and
    each field an int or an integer array (broadcast together), placed at its
    `hw.isa.FIELDS` bit position in the low or the high 64-bit half of the word."""
    halves = [np.zeros((), np.uint64), np.zeros((), np.uint64)]
    halves[0] = halves[0] | np.asarray(op, np.uint64)
    for name, value in fields.items():
        lo, _width = FIELDS[name]
        h = lo // 64
        halves[h] = halves[h] | (np.asarray(value, np.uint64) << np.uint64(lo - 64 * h))
    low, high = np.broadcast_arrays(*halves)
    words = low.astype(object).ravel()
    nz = np.flatnonzero(high)
    if nz.size:
        words[nz] = (high.ravel()[nz].astype(object) << 64) | words[nz]
    return words


def _w_mov(op: Op, runs: "_Runs", *, dram_scale: int = 1, slot: int = 0,
           acc: bool = False) -> np.ndarray:
    """The MVIN / MVOUT words of a tile's runs, relative to its buffer and DRAM origin."""
    return _pack(int(op), slot=slot, acc=int(acc), rows=runs.rows, cols=runs.cols,
                 laddr=runs.laddr, dram=dram_scale * runs.dram)


_FENCE = int(Op.FENCE)
_HALT = int(Op.HALT)
_LADDR_UNIT = 1 << _SH["laddr"]
_DRAM_UNIT = 1 << _SH["dram"]
_EMPTY = np.empty(0, object)


# ---------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Compiled:
    """One layer lowered with one mapping: program, DRAM image and layout (module doc)."""

    hw: HardwareConfig
    mapping: Mapping
    layer: Layer
    out: str
    relu: bool
    shift: int
    program: Program
    image: DramImage
    input_addr: int
    input_shape: tuple[int, int, int, int]       # (N, H + 2*pad, W + 2*pad, C) int8
    weight_addr: int
    weight_shape: tuple[int, int, int, int, int]  # (G, R, S, C/G, K/G) int8
    output_addr: int
    output_shape: tuple[int, int, int, int]      # (N, P, Q, K)
    psum_addr: int | None                        # None when no partial sums leave the accumulator
    psum_shape: tuple[int, int, int, int] | None  # (N, P, Q, K) int32
    stats: dict = field(compare=False)

    # ---- layout ------------------------------------------------------------------------
    @property
    def output_dtype(self) -> type:
        return np.int32 if self.out == "int32" else np.int8

    @property
    def output_bytes(self) -> int:
        return int(np.prod(self.output_shape)) * np.dtype(self.output_dtype).itemsize

    def output_word_range(self) -> tuple[int, int]:
        """(lo, hi) DRAM bus-word addresses (inclusive) covering the output region."""
        bus = self.hw.dma_bus_bytes
        return self.output_addr // bus, (self.output_addr + self.output_bytes - 1) // bus

    # ---- data --------------------------------------------------------------------------
    def input_dram(self, x_nchw: np.ndarray) -> np.ndarray:
        """x (N, C, H, W) as the padded NHWC int8 array the input region holds."""
        L = self.layer
        x = check_int8("x", x_nchw, (L.n, L.c, L.h, L.w))
        pad = L.padding
        xp = np.zeros(self.input_shape, np.int8)
        xp[:, pad:pad + L.h, pad:pad + L.w, :] = x.transpose(0, 2, 3, 1)
        return xp

    def weight_dram(self, w_kcrs: np.ndarray) -> np.ndarray:
        """w (K, C/G, R, S) as the (G, R, S, C/G, K/G) int8 array the weight region holds."""
        L = self.layer
        G, Cg, Kg = L.groups, L.c_per_group, L.k_per_group
        w = check_int8("w", w_kcrs, (L.k, Cg, L.r, L.s))
        return np.ascontiguousarray(w.reshape(G, Kg, Cg, L.r, L.s).transpose(0, 3, 4, 2, 1))

    def write_inputs(self, x_nchw: np.ndarray, w_kcrs: np.ndarray,
                     image: DramImage | None = None) -> None:
        """Store x (N, C, H, W) and w (K, C/G, R, S), int8, in `image` (default self.image)."""
        image = self.image if image is None else image
        image.write(self.input_addr, self.input_dram(x_nchw))
        image.write(self.weight_addr, self.weight_dram(w_kcrs))

    def read_inputs(self, image: DramImage | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(x (N, C, H, W), w (K, C/G, R, S)) as stored in `image` (default self.image)."""
        image = self.image if image is None else image
        L = self.layer
        pad = L.padding
        xp = image.read(self.input_addr, self.input_shape, np.int8)
        x = xp[:, pad:pad + L.h, pad:pad + L.w, :].transpose(0, 3, 1, 2)
        G, R, S, Cg, Kg = self.weight_shape
        w = image.read(self.weight_addr, self.weight_shape, np.int8)
        w = w.transpose(0, 4, 3, 1, 2).reshape(G * Kg, Cg, R, S)
        return np.ascontiguousarray(x), np.ascontiguousarray(w)

    def read_output(self, image: DramImage | None = None) -> np.ndarray:
        """The output as stored in `image` (default self.image), as (N, K, P, Q)."""
        image = self.image if image is None else image
        y = image.read(self.output_addr, self.output_shape, self.output_dtype)
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))

    def reference(self, image: DramImage | None = None) -> np.ndarray:
        """The expected output (N, K, P, Q) for the inputs stored in `image`."""
        from sim.reference import conv_reference
        x, w = self.read_inputs(image)
        return conv_reference(x, w, self.layer, out=self.out, relu=self.relu, shift=self.shift)

    # ---- checking ----------------------------------------------------------------------
    def validate(self) -> None:
        """Replay every instruction through the validating `Program` builder (slow).

        Raises ProgramError if an argument is out of range, and AssertionError if the
        builder encodes a different word or counts different MACs.
        """
        replay = Program(self.hw)
        for pc, word in enumerate(self.program.words):
            op, f = decode(word)
            if op == Op.CONFIG:
                t = ConfigTarget(f["funct"])
                if t == ConfigTarget.EX:
                    replay.config_ex(f["stride"], f["stride1"])
                elif t == ConfigTarget.LD:
                    replay.config_ld(f["slot"], f["stride"])
                else:
                    replay.config_st(f["stride"], relu=bool(f["relu"]),
                                     acc_full=bool(f["acc_full"]), shift=f["shift"])
            elif op == Op.MVIN:
                replay.mvin(f["dram"], f["laddr"], f["rows"], f["cols"], slot=f["slot"],
                            acc=bool(f["acc"]))
            elif op == Op.MVOUT:
                replay.mvout(f["dram"], f["laddr"], f["rows"], f["cols"], acc=bool(f["acc"]))
            elif op == Op.PRELOAD:
                if f["b_none"]:
                    replay.preload(b_none=True, c_laddr=f["laddr2"], c_rows=f["rows2"],
                                   c_cols=f["cols2"], accumulate=bool(f["accumulate"]))
                else:
                    replay.preload(f["laddr"], f["rows"], f["cols"], f["laddr2"], f["rows2"],
                                   f["cols2"], accumulate=bool(f["accumulate"]))
            elif op in (Op.COMPUTE_PRELOADED, Op.COMPUTE_ACCUMULATED):
                replay.compute(f["laddr"], f["rows"], f["cols"],
                               preloaded=(op == Op.COMPUTE_PRELOADED))
            elif op == Op.COMPUTE_BLOCK:
                replay.compute_block(f["laddr"], f["cols"], f["run"], f["reps"],
                                     preloaded=bool(f["preloaded"]))
            elif op == Op.FENCE:
                replay.fence()
            else:
                replay.halt()
            if replay._words[-1] != word:
                raise AssertionError(f"insn {pc}: builder encodes {replay._words[-1]:#x}, "
                                     f"compiler wrote {word:#x}")
        if replay.expected_macs() != self.program.expected_macs():
            raise AssertionError(f"MACs: builder counts {replay.expected_macs()}, "
                                 f"program claims {self.program.expected_macs()}")


# ---------------------------------------------------------------------------------------
# run splitting
# ---------------------------------------------------------------------------------------

class _Runs(NamedTuple):
    """The DMA runs of a tile, one entry per MVIN / MVOUT (int64 arrays): up to dim
    consecutive local rows whose DRAM addresses advance by a fixed stride."""

    laddr: np.ndarray   # first local row, relative to the tile buffer
    dram: np.ndarray    # DRAM offset of that row, relative to the tile origin
    rows: np.ndarray
    cols: np.ndarray

    def span(self, stride: int) -> int:
        """One past the largest DRAM offset the runs touch (rows `stride` apart)."""
        return int(np.max(self.dram + (self.rows - 1) * stride + self.cols))


def _dma_runs(off: np.ndarray, cols: np.ndarray, step: int, d: int) -> _Runs:
    """Cut local rows 0, 1, ... (DRAM offset `off` and `cols` of each) into runs of at
    most d rows with equal cols and DRAM offsets advancing by `step`.

    Greedy from the first row, like a sequential scan: a run continues while the next
    row has the same cols and the next offset and the run is shorter than d. So the runs
    are the maximal stretches of such rows, each cut into pieces of d rows from its start.
    """
    n = len(off)
    idx = np.arange(n)
    brk = np.ones(n, bool)
    brk[1:] = (cols[1:] != cols[:-1]) | (np.diff(off) != step)
    stretch = np.maximum.accumulate(np.where(brk, idx, 0))
    starts = np.flatnonzero((idx - stretch) % d == 0)
    return _Runs(starts, off[starts], np.diff(np.append(starts, n)), cols[starts])


def _compute_runs(a_rows: list[int], d: int) -> list[tuple[int, int, int, int]]:
    """Cut pixels 0, 1, ... (A row of each, C row = index) into arithmetic runs.

    Returns (A row, C row, length, a_stride) with length <= d; a_stride is 0 for runs of
    one pixel (any value works). Greedy longest-first: optimal in the number of runs,
    because every piece of an arithmetic run is arithmetic.
    """
    out = []
    start, n = 0, len(a_rows)
    while start < n:
        end = start + 1
        if end < n:
            stride = a_rows[end] - a_rows[start]
            while (end < n and end - start < d
                   and a_rows[end] - a_rows[end - 1] == stride):
                end += 1
        out.append((a_rows[start], start, end - start, stride if end - start > 1 else 0))
        start = end
    return out


# ---------------------------------------------------------------------------------------
# the interleaving of hw.schedule.merge, on counts
# ---------------------------------------------------------------------------------------

def _due(ends: np.ndarray, n: int) -> np.ndarray:
    """Per item k < n of a side stream: the execute item after which `hw.schedule.merge`
    emits it, the first whose cumulative instruction count `ends` reaches
    (k + 1/2) * total / n."""
    if n == 0:
        return np.zeros(0, np.int64)
    k = np.arange(n, dtype=np.int64)
    return np.searchsorted(ends, -(-(2 * k + 1) * int(ends[-1]) // (2 * n)), side="left")


def _merge_order(ends: np.ndarray, n_s: int, n_l: int, dep: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Where ``merge(stores, execs, loads)`` puts the side items, for an execute stream
    with cumulative instruction counts `ends` (per item) that has no hazard with the
    n_s stores or the n_l loads; ``dep[li]`` is the last store that load li has a hazard
    with, or -1 (`hw.schedule.deps`).

    Returns (order, slot): the side items (stores 0..n_s-1, then loads n_s..) in their
    emission order, and per side item the execute item after which it is emitted. Store
    k is due after execute item sd[k], load li after lq[li] (`_due`); at each execute
    item, first the stores due, then each load due, preceded by the stores it depends on
    that are not out yet: so store k is emitted before the first load that depends on it
    if that load comes earlier than sd[k].
    """
    sd, lq = _due(ends, n_s), _due(ends, n_l)
    slot_s, sub_s = sd.copy(), np.full(n_s, -1, np.int64)
    if n_s and n_l:
        reach = np.maximum.accumulate(dep)
        pull = np.searchsorted(reach, np.arange(n_s), side="left")  # first load with dep >= k
        p = np.minimum(pull, n_l - 1)
        pulled = (pull < n_l) & (lq[p] < sd)
        slot_s[pulled] = lq[p[pulled]]
        sub_s[pulled] = 2 * pull[pulled]
    slot = np.concatenate([slot_s, lq])
    sub = np.concatenate([sub_s, 2 * np.arange(n_l, dtype=np.int64) + 1])
    order = np.lexsort((np.arange(n_s + n_l), sub, slot))
    return order, slot


def _positions(ends: np.ndarray, order: np.ndarray, slot: np.ndarray, wc: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Word positions of a merged step: (positions of the execute words, positions of the
    side words in canonical order), for side items of wc[i] words emitted in `order`
    after the execute items `slot` (`_merge_order`)."""
    wc_e = wc[order]
    before = np.concatenate([[0], np.cumsum(wc_e)])       # side words before emitted item e
    ins = ends[slot[order]]                               # execute words before it
    start = np.empty(len(order), np.int64)
    start[order] = ins + before[:-1]
    first = np.cumsum(wc) - wc                            # canonical index of each item's first word
    side_pos = np.repeat(start - first, wc) + np.arange(int(wc.sum()))
    e = np.arange(int(ends[-1]))
    exec_pos = e + before[np.searchsorted(ins, e, side="right")]
    return exec_pos, side_pos


# ---------------------------------------------------------------------------------------
# compiler
# ---------------------------------------------------------------------------------------

def _require(ok, what: str) -> None:
    """Internal consistency check (kept under python -O)."""
    if not ok:
        raise CompileError(f"internal compiler error: {what}")


def _first_bad(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


class _ExecBlock(NamedTuple):
    """The execute stream of one step variant, built once (it is reused by many steps)."""

    bid: int              # index in the compiler's cache (a key of the layout cache)
    words: np.ndarray     # object array of the instruction words
    ends: np.ndarray      # ends[j]: number of words up to and including item j
    counts: dict          # opcode -> instructions
    a_stride: int         # a_stride in force after the block


class _ExecProto(NamedTuple):
    """An execute stream for buffers at row 0 and not a first visit (`_Compiler._exec_proto`)."""

    words: np.ndarray     # object array of the instruction words
    kind: np.ndarray      # per word, which buffer rows `_exec_block` adds (_K_*)
    ends: np.ndarray
    counts: dict
    a_stride: int


# Word kinds of an execute stream, the index of what `_exec_block` adds to a word:
# CONFIG EX, COMPUTE, PRELOAD with b_none, PRELOAD of weights; a PRELOAD of the first
# weight block (r = s = cb = 0) has kind + _K_FIRST (4, 5: accumulate cleared on a first visit).
_K_CFG, _K_CMP, _K_PRE, _K_PRE_B = 0, 1, 2, 3
_K_FIRST = 2


class _Side(NamedTuple):
    """The stores of a finished tile or the loads of a step (MVOUT / MVIN words)."""

    words: list[int]      # the words, in order (loads: psum, input, weight)
    n_psum: int           # stores: all if partial sums, else 0; loads: the leading psum MVINs
    tid: int              # the output tile
    acc_base: int         # its accumulator buffer
    cfg: int | None = None  # stores: a CONFIG ST to put before them (store mode change)


def _changes(*keys: np.ndarray) -> np.ndarray:
    """Per step: whether the operand's tile index differs from the previous step's."""
    new = np.ones(len(keys[0]), bool)
    if len(new) > 1:
        new[1:] = np.any([k[1:] != k[:-1] for k in keys], axis=0)
    return new


def _alternate(new: np.ndarray, nbuf: int) -> np.ndarray:
    """Per step: which of the operand's `nbuf` buffers holds its tile; with two buffers a
    new tile takes the other one (the first tile buffer 0), with one it reuses it."""
    if nbuf == 1:
        return np.zeros(len(new), np.int64)
    return (1 + np.cumsum(new)) % 2


def _visits(key: np.ndarray) -> np.ndarray:
    """Per step: how many earlier steps had the same output tile."""
    n = len(key)
    perm = np.argsort(key, kind="stable")
    sk = key[perm]
    starts = np.flatnonzero(np.concatenate([[True], sk[1:] != sk[:-1]]))
    rank = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    v = np.empty(n, np.int64)
    v[perm] = rank
    return v


class _Group:
    """The merged steps that share one word layout: where each starts in the program and
    their side words (one list, step after step); `_Emitter.words` writes them all at once."""

    __slots__ = ("exec_words", "exec_pos", "side_pos", "starts", "side")

    def __init__(self, exec_words: np.ndarray, exec_pos: np.ndarray, side_pos: np.ndarray):
        self.exec_words, self.exec_pos, self.side_pos = exec_words, exec_pos, side_pos
        self.starts: list[int] = []
        self.side: list[int] = []


class _Emitter:
    """Lays out the program's words in program order, with the state that depends on it:
    the CONFIG ST mode in force, the partial-sum tiles spilled since the last FENCE and the
    instruction counts. Words are not copied per step: a step records where it starts
    and its side words, and `words()` writes the steps of a layout with a few numpy
    assignments."""

    def __init__(self, head: list[int], final_cfg: int, psum_cfg: int):
        self.final_cfg, self.psum_cfg = final_cfg, psum_cfg
        self.st_mode = "final"
        self.unfenced: set[int] = set()
        self.n = Counter({Op.CONFIG: len(head)})
        self.block_uses: Counter = Counter()
        self.at = 0                          # words laid out so far
        self.plain: list[int] = []           # words emitted on their own, in order ...
        self.plain_runs: list[tuple[int, int]] = []  # ... as (program position, count)
        self.groups: dict[tuple, _Group] = {}
        self._orders: dict[tuple, tuple] = {}
        self.append(head)

    def append(self, words: list[int]) -> None:
        """Emit words as they are."""
        if words:
            self.plain += words
            self.plain_runs.append((self.at, len(words)))
            self.at += len(words)

    def store_config(self, psum: bool) -> int | None:
        """The CONFIG ST to put before the stores of the next tile (or None); call in the
        program order of the stores."""
        mode = "psum" if psum else "final"
        cfg = self.psum_cfg if psum else self.final_cfg
        change = mode != self.st_mode and self.final_cfg != self.psum_cfg
        self.st_mode = mode
        return cfg if change else None

    def stores(self, st: _Side) -> None:
        """Emit a tile's stores on their own."""
        if st.cfg is not None:
            self.append([st.cfg])
            self.n[Op.CONFIG] += 1
        self.append(st.words)
        self.n[Op.MVOUT] += len(st.words)
        if st.n_psum:
            self.unfenced.add(st.tid)

    def loads(self, ld: _Side | None) -> None:
        """Emit a step's loads on their own (a FENCE first when a psum reload needs it)."""
        if ld is None:
            return
        if ld.n_psum and ld.tid in self.unfenced:
            self.append([_FENCE])
            self.n[Op.FENCE] += 1
            self.unfenced.clear()
        self.append(ld.words)
        self.n[Op.MVIN] += len(ld.words)

    def _order(self, block: _ExecBlock, n_s: int, n_l: int, n_ps: int, same_buf: bool,
               same_tile: bool) -> tuple[np.ndarray, np.ndarray, int]:
        """`_merge_order` of a step's side streams (cached) and how many stores precede
        the first load. Hazards between the side streams: a psum reload MVIN k into the
        accumulator buffer being stored writes the rows store k reads (both follow the
        output runs); a reload of the tile being spilled reads what every spill writes."""
        key = (block.bid, n_s, n_l, n_ps, same_buf, same_tile)
        got = self._orders.get(key)
        if got is None:
            dep = np.full(n_l, -1, np.int64)
            if same_buf:
                _require(n_s == n_ps, "psum reload and store runs differ")
                dep[:n_ps] = np.arange(n_ps)
            if same_tile:
                dep[:n_ps] = n_s - 1
            order, slot = _merge_order(block.ends, n_s, n_l, dep)
            n_before = int(np.flatnonzero(order == n_s)[0]) if n_l else n_s
            got = self._orders[key] = (order, slot, n_before)
        return got

    def merged(self, block: _ExecBlock, st: _Side | None, ld: _Side | None) -> None:
        """Emit ``merge(stores, execute items, loads)`` of one step (see `_merge_order`)."""
        self.block_uses[block.bid] += 1
        n_s = len(st.words) if st is not None else 0
        n_l = len(ld.words) if ld is not None else 0
        n_ps = ld.n_psum if ld is not None else 0
        cfg = fence = False
        side: list[int] = []
        if n_s or n_l:
            same_buf = bool(n_s and n_ps and st.acc_base == ld.acc_base)
            same_tile = bool(n_s and n_ps and st.n_psum and st.tid == ld.tid)
            key = (block.bid, n_s, n_l, n_ps, same_buf, same_tile)
            order, slot, n_before = self._order(block, *key[1:])
            # a FENCE before the first psum reload if its tile was spilled since the last
            # FENCE (n_before of this step's spill MVOUTs precede that reload)
            spill = bool(n_s and st.n_psum)
            unf = self.unfenced | {st.tid} if spill and n_before else self.unfenced
            if n_ps and ld.tid in unf:
                fence, unf = True, set()
            self.unfenced = unf | {st.tid} if spill and n_before < n_s else unf
            if n_s:
                cfg = st.cfg is not None
                side = [st.cfg] + st.words if cfg else st.words
            if n_l:
                side = side + [_FENCE] + ld.words if fence else side + ld.words
        else:
            key = (block.bid,)
        gkey = key + (cfg, fence)
        grp = self.groups.get(gkey)
        if grp is None:
            if len(key) == 1:
                pos = (np.arange(len(block.words)), np.zeros(0, np.int64))
            else:
                wc = np.ones(n_s + n_l, np.int64)
                wc[0] += cfg
                if fence:
                    wc[n_s] += 1
                pos = _positions(block.ends, order, slot, wc)
            grp = self.groups[gkey] = _Group(block.words, *pos)
        grp.starts.append(self.at)
        grp.side += side
        self.at += len(block.words) + len(side)
        self.n[Op.CONFIG] += cfg
        self.n[Op.FENCE] += fence
        self.n[Op.MVOUT] += n_s
        self.n[Op.MVIN] += n_l

    def words(self) -> list[int]:
        """The program: every group of merged steps and the plain words written into one
        array, with a few numpy assignments per group (`_write_group`)."""
        out = np.empty(self.at, object)
        for grp in self.groups.values():
            _write_group(out, grp)
        starts, counts = (np.array(x, np.int64) for x in zip(*self.plain_runs))
        pos = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
        out[pos] = np.array(self.plain, object)
        self.groups, self.plain = {}, []
        return out.tolist()


def _write_group(out: np.ndarray, grp: _Group) -> None:
    """Write the steps of `grp` into `out`: a large step on its own (two fancy
    assignments into its slice), small ones many at once (in chunks of about a million
    words). (Slice copies of the execute words between side items are no faster: numpy
    copies object arrays element by element either way.)"""
    side = np.array(grp.side, object) if grp.side else None
    n_e, n_s = len(grp.exec_pos), len(grp.side_pos)
    if n_e + n_s >= 4096:
        for i, at in enumerate(grp.starts):
            region = out[at:at + n_e + n_s]
            region[grp.exec_pos] = grp.exec_words
            if side is not None:
                region[grp.side_pos] = side[i * n_s:(i + 1) * n_s]
        return
    starts = np.array(grp.starts, np.int64)
    step = max(1, (1 << 20) // (n_e + n_s))
    for i in range(0, len(starts), step):
        at = starts[i:i + step, None]
        out[at + grp.exec_pos] = grp.exec_words
        if side is not None:
            out[(at + grp.side_pos).ravel()] = side[i * n_s:(i + len(at)) * n_s]


def dram_bytes_needed(layer: Layer, *, out: str = "int32", align: int = 64) -> int:
    """Upper bound of the simulation-only DRAM that `compile_layer` allocates for
    `layer` with any mapping: the image base, the padded NHWC input, the weights, the
    output and a partial-sum region, each aligned to `align` (>= the DMA bus width)."""
    def up(x):
        return -(-x // align) * align
    n_in = layer.n * (layer.h + 2 * layer.padding) * (layer.w + 2 * layer.padding) * layer.c
    n_w = layer.groups * layer.r * layer.s * layer.c_per_group * layer.k_per_group
    n_out = layer.n * layer.p * layer.q * layer.k
    return up(0x1000) + up(n_in) + up(n_w) + up(n_out * (4 if out == "int32" else 1)) + up(4 * n_out)


def dram_mb_for(layers, *, out: str = "int32", least: int = 1) -> int:
    """The smallest `HardwareConfig.dram_mb` (a power of two, at least `least`, at most
    256) whose DRAM holds every layer of `layers` (`dram_bytes_needed`)."""
    need = max((dram_bytes_needed(L, out=out) for L in layers), default=0)
    mb = max(1, least)
    while (mb << 20) < need and mb < 256:
        mb *= 2
    return mb


def compile_layer(hw: HardwareConfig, mapping: Mapping, layer: Layer, *, out: str = "int32",
                  relu: bool = False, shift: int = 0, block: bool = True) -> Compiled:
    """Lower `layer` with `mapping` to a program and DRAM layout (see the module doc).

    ``out="int32"`` stores the raw accumulators (relu and shift have no effect, as with
    acc_full); ``out="int8"`` stores ReLU / rounding shift / saturated int8.
    ``block=True`` (the default) streams each weight block's pixels with COMPUTE_BLOCKs
    (`block_items`); ``block=False`` with the PRELOAD + COMPUTE_* runs of <= dim rows
    (the instruction stream before COMPUTE_BLOCK existed, kept for comparison).
    Raises CompileError if ``mapping.check(hw, layer)`` fails (with its reason), if an
    argument is invalid, or if the tensors do not fit the DRAM.
    """
    if out not in ("int32", "int8"):
        raise CompileError(f"out={out!r} must be 'int32' or 'int8'")
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or not 0 <= shift <= 31:
        raise CompileError(f"shift={shift!r} must be an integer from 0 to 31")
    shift, relu = int(shift), bool(relu)
    try:
        chk = mapping.check(hw, layer)
    except (MappingError, TypeError, AttributeError) as e:
        raise CompileError(f"mapping invalid for layer {layer.name!r}: {e}") from None
    if not chk:
        raise CompileError(f"mapping invalid for layer {layer.name!r}: {chk.reason}")
    return _Compiler(hw, mapping, layer, out, relu, shift, bool(block)).run()


class _Compiler:
    def __init__(self, hw: HardwareConfig, mapping: Mapping, layer: Layer, out: str,
                 relu: bool, shift: int, block: bool = True):
        self.hw, self.mapping, self.layer = hw, mapping, layer
        self.block = block
        self.s0, self.s1 = 1, 0
        self.out, self.relu, self.shift = out, relu, shift
        d = self.d = hw.dim
        L = layer
        self.G, self.Cg, self.Kg = L.groups, L.c_per_group, L.k_per_group
        self.C, self.K = L.c, L.k
        self.N, self.P, self.Q, self.R, self.S = L.n, L.p, L.q, L.r, L.s
        self.st = L.stride
        self.Hp, self.Wp = L.h + 2 * L.padding, L.w + 2 * L.padding
        T = self.T = mapping.tiles()
        self.F = mapping.level("dram")
        self.cbn = -(-T["C"] // d)
        self.kbn = -(-T["K"] // d)
        self.in_h = (T["P"] - 1) * self.st + T["R"]
        self.in_w = (T["Q"] - 1) * self.st + T["S"]
        fp = mapping.footprint(hw, layer)
        self.in_rows, self.w_rows, self.o_rows = fp.input_rows, fp.weight_rows, fp.output_rows
        self.b_in, self.b_w, self.b_out = mapping.buffers
        self.o_elem = 4 if out == "int32" else 1
        self._protos: dict[int, _ExecProto] = {}

    # ---- tile geometry (relative to the tile's buffer and DRAM origin) --------------------
    def _blocks(self, size: int, n: int) -> np.ndarray:
        """Channels of each of the n dim-wide blocks of a tile extent `size`."""
        return np.minimum(self.d, size - self.d * np.arange(n))

    def _input_runs(self) -> _Runs:
        T, d = self.T, self.d
        cb, n, ih, iw = np.indices((self.cbn, T["N"], self.in_h, self.in_w)).reshape(4, -1)
        off = ((n * self.Hp + ih) * self.Wp + iw) * self.C + cb * d
        _require(len(off) == self.in_rows, "input tile rows differ from the footprint")
        return _dma_runs(off, self._blocks(T["C"], self.cbn)[cb], self.C, d)

    def _weight_runs(self) -> _Runs:
        T, d = self.T, self.d
        r, s, kb, c = np.indices((T["R"], T["S"], self.kbn, T["C"])).reshape(4, -1)
        off = ((r * self.S + s) * self.Cg + c) * self.Kg + kb * d
        _require(len(off) == self.w_rows, "weight tile rows differ from the footprint")
        return _dma_runs(off, self._blocks(T["K"], self.kbn)[kb], self.Kg, d)

    def _output_runs(self) -> _Runs:
        """Runs in elements (DRAM element index offset; multiply by the element size)."""
        T, d = self.T, self.d
        kb, n, p, q = np.indices((self.kbn, T["N"], T["P"], T["Q"])).reshape(4, -1)
        off = ((n * self.P + p) * self.Q + q) * self.K + kb * d
        _require(len(off) == self.o_rows, "output tile rows differ from the footprint")
        return _dma_runs(off, self._blocks(T["K"], self.kbn)[kb], self.K, d)

    def _pixel_runs(self) -> list[tuple[int, int, int, int]]:
        """Classic mode: (A row, C row, length, a_stride) per run; block mode: (A row, C
        row, run, reps) per COMPUTE_BLOCK, and self.s0 / self.s1 set to its strides."""
        T, st = self.T, self.st
        if self.block:
            items, self.s0, self.s1 = block_items(T["N"], T["P"], T["Q"], st, self.in_h, self.in_w)
            return items
        n, p, q = np.indices((T["N"], T["P"], T["Q"])).reshape(3, -1)
        a_rows = ((n * self.in_h + p * st) * self.in_w + q * st).tolist()
        return _compute_runs(a_rows, self.d)

    # ---- the execute stream of one step --------------------------------------------------
    def _exec_proto(self, a_stride: int) -> _ExecProto:
        """The execute stream of a step entered with `a_stride` in force, for buffers at
        row 0 and not a first visit: for each kb, for each weight block (r, s, cb), for
        each pixel run j, an optional CONFIG EX (a run of more than one row whose a_stride
        differs from the one in force), the PRELOAD (of the block's weights when j == 0)
        and the COMPUTE. All items at once, as arrays (blocks x runs)."""
        T, d = self.T, self.d
        kb, r, s, cb = (x[:, None] for x in
                        np.indices((self.kbn, T["R"], T["S"], self.cbn)).reshape(4, -1))
        kc, cc = self._blocks(T["K"], self.kbn)[kb], self._blocks(T["C"], self.cbn)[cb]
        b_laddr = ((r * T["S"] + s) * self.kbn + kb) * T["C"] + cb * d
        a_blk = cb * (T["N"] * self.in_h * self.in_w) + r * self.in_w + s
        c_kb = kb * (T["N"] * T["P"] * T["Q"])
        a_off, c_off, n, stride = (np.array(x, np.int64)[None, :] for x in zip(*self.pixel_runs))
        j0 = np.arange(n.shape[1])[None, :] == 0
        shape = (kb.shape[0], n.shape[1])
        if self.block:
            run, reps = n, stride
            total = run * reps
            pre = _pack(int(Op.PRELOAD), accumulate=1, laddr2=c_kb + c_off, rows2=np.minimum(total, d), cols2=kc,
                        b_none=~j0, rows=np.where(j0, cc, 0), cols=np.where(j0, kc, 0),
                        laddr=np.where(j0, b_laddr, 0))
            cmp = _pack(int(Op.COMPUTE_BLOCK), preloaded=j0, cols=cc, laddr=a_blk + a_off, run=run, reps=reps)
            ends = np.arange(2, 2 * pre.size + 1, 2)
            words = np.empty(2 * pre.size, object)
            kind = np.empty(len(words), np.int8)
            words[0::2], words[1::2] = pre, cmp
            kind[0::2] = (np.where(j0, _K_PRE_B, _K_PRE)
                          + np.where((r == 0) & (s == 0) & (cb == 0), _K_FIRST, 0)).ravel()
            kind[1::2] = _K_CMP
            counts = {Op.PRELOAD: pre.size, Op.COMPUTE_BLOCK: pre.size}
            return _ExecProto(words, kind, ends, counts, a_stride)

        # CONFIG EX before a run of more than one row whose a_stride is not in force
        multi = np.broadcast_to(n > 1, shape).ravel()
        strides = np.broadcast_to(stride, shape).ravel()
        ms = strides[multi]
        cfg = np.zeros(multi.shape, bool)
        cfg[multi] = ms != np.concatenate([[a_stride], ms[:-1]])
        a_out = int(ms[-1]) if ms.size else a_stride

        pre = _pack(int(Op.PRELOAD), accumulate=1, laddr2=c_kb + c_off, rows2=n, cols2=kc,
                    b_none=~j0, rows=np.where(j0, cc, 0), cols=np.where(j0, kc, 0),
                    laddr=np.where(j0, b_laddr, 0))
        cmp = _pack(np.where(j0, int(Op.COMPUTE_PRELOADED), int(Op.COMPUTE_ACCUMULATED)),
                    rows=n, cols=cc, laddr=a_blk + a_off)
        ends = np.cumsum(2 + cfg)
        words = np.empty(int(ends[-1]), object)
        kind = np.full(len(words), _K_CFG, np.int8)
        words[ends - 2] = pre
        kind[ends - 2] = (np.where(j0, _K_PRE_B, _K_PRE)
                          + np.where((r == 0) & (s == 0) & (cb == 0), _K_FIRST, 0)).ravel()
        words[ends - 1] = cmp
        kind[ends - 1] = _K_CMP
        words[(ends - 3)[cfg]] = _pack(int(Op.CONFIG), funct=int(ConfigTarget.EX),
                                       stride=strides[cfg]) if cfg.any() else _EMPTY
        n_blocks = shape[0]
        counts = {Op.CONFIG: int(cfg.sum()), Op.PRELOAD: multi.size,
                  Op.COMPUTE_PRELOADED: n_blocks, Op.COMPUTE_ACCUMULATED: multi.size - n_blocks}
        return _ExecProto(words, kind, ends, counts, a_out)

    def _exec_block(self, bid: int, in_base: int, w_base: int, o_base: int, first: bool,
                    a_stride: int) -> _ExecBlock:
        """The execute stream of a step: its prototype (`_exec_proto`) re-based, one
        addition per word: the input buffer's row to the COMPUTEs' A address, the weight
        buffer's row to the PRELOADs' B address, the accumulator buffer's row to their C
        address, and a first visit clears `accumulate` of the first weight block's."""
        proto = self._protos.get(a_stride)
        if proto is None:
            proto = self._protos[a_stride] = self._exec_proto(a_stride)
        c, b = o_base << _SH["laddr2"], w_base << _SH["laddr"]
        delta = [0] * 6
        delta[_K_CMP] = in_base << _SH["laddr"]
        delta[_K_PRE], delta[_K_PRE_B] = c, c + b
        acc = (1 << _SH["accumulate"]) if first else 0
        delta[_K_PRE + _K_FIRST], delta[_K_PRE_B + _K_FIRST] = c - acc, c + b - acc
        words = proto.words + np.array(delta, object)[proto.kind]
        return _ExecBlock(bid, words, proto.ends, proto.counts, proto.a_stride)

    # ---- main ------------------------------------------------------------------------------
    def run(self) -> Compiled:
        hw, L, T, F = self.hw, self.layer, self.T, self.F
        G, N, P, Q, K, C = self.G, self.N, self.P, self.Q, self.K, self.C

        # Steps: group outermost, then the DRAM loops in mapping.order (arrays over steps).
        order = self.mapping.order
        shape = (G,) + tuple(F[lp] for lp in order)
        idx = np.indices(shape).reshape(len(shape), -1).astype(np.int64)
        ix = dict(zip(("G",) + tuple(order), idx))
        g, n, k, c, p, q, r, s = (ix[lp] for lp in ("G",) + tuple(LOOPS))
        nsteps = idx.shape[1]
        in_new, w_new = _changes(g, n, c, p, q, r, s), _changes(g, k, c, r, s)
        o_key = np.ravel_multi_index((g, n, k, p, q), (G, F["N"], F["K"], F["P"], F["Q"]))
        o_new = _changes(o_key)
        in_buf, w_buf, o_buf = (_alternate(new, b) for new, b in
                                ((in_new, self.b_in), (w_new, self.b_w), (o_new, self.b_out)))
        visits = _visits(o_key)
        first = visits == 0
        reload = o_new & (visits > 0)
        leave = np.append(o_key[1:] != o_key[:-1], True)
        complete = leave & (visits + 1 == F["C"] * F["R"] * F["S"])
        need_psum = bool(np.any(leave & ~complete))

        # DRAM regions.
        image = DramImage(hw)
        in_shape = (N, self.Hp, self.Wp, C)
        w_shape = (G, self.R, self.S, self.Cg, self.Kg)
        o_shape = (N, P, Q, K)
        try:
            in_addr = image.alloc(int(np.prod(in_shape)))
            w_addr = image.alloc(int(np.prod(w_shape)))
            o_addr = image.alloc(int(np.prod(o_shape)) * self.o_elem)
            ps_addr = image.alloc(int(np.prod(o_shape)) * 4) if need_psum else None
        except ProgramError as e:
            raise CompileError(f"layer {L.name!r} does not fit the DRAM: {e}") from None

        # Local placement (see the module docstring).
        in_bases = (0, self.in_rows)[:self.b_in]
        w_bases = (hw.sp_rows - self.w_rows, hw.sp_rows - 2 * self.w_rows)[:self.b_w]
        half = hw.acc_rows // 2 if self.b_out == 2 else hw.acc_rows
        o_bases = (0, half)[:self.b_out]
        _require(self.b_in * self.in_rows <= w_bases[-1] and self.o_rows <= half,
                 "tile buffers overlap (mapping.check should have refused the mapping)")
        # The loads overlapped with a step go to the other buffer of a double-buffered
        # operand, and the stores overlapped with it read the other accumulator buffer:
        # they never touch the execute stream's rows (so `_merge_order` applies).
        nxt = np.arange(1, nsteps)
        _require(not np.any(((self.b_in == 2) & in_new[nxt] & (in_buf[nxt] == in_buf[nxt - 1]))
                            | ((self.b_w == 2) & w_new[nxt] & (w_buf[nxt] == w_buf[nxt - 1]))
                            | ((self.b_out == 2) & o_new[nxt] & (o_buf[nxt] == o_buf[nxt - 1]))),
                 "an overlapped load or store touches the execute stream's buffers")

        # Relative geometry, computed once.
        in_runs, w_runs, o_runs = self._input_runs(), self._weight_runs(), self._output_runs()
        self.pixel_runs = self._pixel_runs()
        in_cb, o_kb = T["N"] * self.in_h * self.in_w, T["N"] * T["P"] * T["Q"]
        if self.block:
            s0, s1 = self.s0, self.s1
            a_rel = max(a + (run - 1) * s0 + (reps - 1) * s1 for a, _c, run, reps in self.pixel_runs)
            c_rel = max(c_ + run * reps - 1 for _a, c_, run, reps in self.pixel_runs)
            strides = (s0, s1)
        else:
            a_rel = max(a + (n_ - 1) * st_ for a, _c, n_, st_ in self.pixel_runs)
            c_rel = max(c_ + n_ - 1 for _a, c_, n_, _s in self.pixel_runs)
            strides = [a_stride for *_x, a_stride in self.pixel_runs]
        a_max = (self.cbn - 1) * in_cb + (T["R"] - 1) * self.in_w + T["S"] - 1 + a_rel
        c_max = (self.kbn - 1) * o_kb + c_rel
        _require(a_max < self.in_rows and c_max < self.o_rows,
                 "compute rows outside the tile buffers")
        _require(max(strides) < hw.sp_rows, "a_stride exceeds the scratchpad")
        in_tmpl = _w_mov(Op.MVIN, in_runs, slot=0)
        w_tmpl = _w_mov(Op.MVIN, w_runs, slot=1)
        ps_in_tmpl = _w_mov(Op.MVIN, o_runs, dram_scale=4, slot=2, acc=True)
        ps_out_tmpl = _w_mov(Op.MVOUT, o_runs, dram_scale=4, acc=True)
        out_tmpl = _w_mov(Op.MVOUT, o_runs, dram_scale=self.o_elem, acc=True)

        # DRAM origins of every step's tiles, range-checked where a tile moves.
        in_org = in_addr + (((n * T["N"] * self.Hp + p * T["P"] * self.st + r * T["R"]) * self.Wp
                             + q * T["Q"] * self.st + s * T["S"]) * C + g * self.Cg + c * T["C"])
        w_org = w_addr + ((((g * self.R + r * T["R"]) * self.S + s * T["S"]) * self.Cg
                           + c * T["C"]) * self.Kg + k * T["K"])
        o_org = ((n * T["N"] * P + p * T["P"]) * Q + q * T["Q"]) * K + g * self.Kg + k * T["K"]
        for what, bad in (
                ("input", in_new & (in_org + in_runs.span(C) > in_addr + int(np.prod(in_shape)))),
                ("weight", w_new & (w_org + w_runs.span(self.Kg) > w_addr + int(np.prod(w_shape)))),
                ("output", (reload | leave) & (o_org + o_runs.span(K) > int(np.prod(o_shape))))):
            _require(not bad.any(), f"{what} tile of step {_first_bad(bad) if bad.any() else 0} "
                                    "outside its region")

        # Python scalars for the step loop.
        in_buf, w_buf, o_buf = in_buf.tolist(), w_buf.tolist(), o_buf.tolist()
        in_new, w_new, reload = in_new.tolist(), w_new.tolist(), reload.tolist()
        first, leave, complete = first.tolist(), leave.tolist(), complete.tolist()
        in_org, w_org, o_org, o_key = in_org.tolist(), w_org.tolist(), o_org.tolist(), o_key.tolist()

        int8 = self.out == "int8"
        # relu / shift only matter for int8 stores (acc_full ignores them): encode 0 then.
        final_cfg = _w_config(ConfigTarget.ST, stride=K * self.o_elem, relu=self.relu and int8,
                              acc_full=not int8, shift=self.shift if int8 else 0)
        psum_cfg = _w_config(ConfigTarget.ST, stride=4 * K, acc_full=True)
        head = [_w_config(ConfigTarget.EX, stride=self.s0, stride1=self.s1),
                _w_config(ConfigTarget.LD, slot=0, stride=C),
                _w_config(ConfigTarget.LD, slot=1, stride=self.Kg)]
        if need_psum:
            head.append(_w_config(ConfigTarget.LD, slot=2, stride=4 * K))
        head.append(final_cfg)
        em = _Emitter(head, final_cfg, psum_cfg)

        # MVIN / MVOUT templates as lists: a tile's words are its template plus one
        # offset (buffer row, DRAM origin), added word by word (small lists are the
        # common case, where a list beats a numpy call)
        in_tmpl, w_tmpl, ps_in_tmpl, ps_out_tmpl, out_tmpl = (
            x.tolist() for x in (in_tmpl, w_tmpl, ps_in_tmpl, ps_out_tmpl, out_tmpl))
        n_ps_runs = len(ps_in_tmpl)
        # which operands each kind of load call moves: single- or double-buffered ones
        parts = {"all": (1, 2), "overlapped": (2,), "serial": (1,)}

        def loads(t: int, part: str) -> _Side | None:
            """Loads of step t: "all", "overlapped" (of the double-buffered operands) or
            "serial" (of the single-buffered ones): psum reload, input, weight tile."""
            want = parts[part]
            words: list[int] = []
            n_ps = 0
            if reload[t] and self.b_out in want:
                sh = o_bases[o_buf[t]] * _LADDR_UNIT + (ps_addr + 4 * o_org[t]) * _DRAM_UNIT
                words = [w + sh for w in ps_in_tmpl]
                n_ps = n_ps_runs
            if in_new[t] and self.b_in in want:
                sh = in_bases[in_buf[t]] * _LADDR_UNIT + in_org[t] * _DRAM_UNIT
                words += [w + sh for w in in_tmpl]
            if w_new[t] and self.b_w in want:
                sh = w_bases[w_buf[t]] * _LADDR_UNIT + w_org[t] * _DRAM_UNIT
                words += [w + sh for w in w_tmpl]
            return _Side(words, n_ps, o_key[t], o_bases[o_buf[t]]) if words else None

        def stores(t: int) -> _Side:
            """The stores of the output tile of step t (it leaves the accumulator)."""
            base = o_bases[o_buf[t]] * _LADDR_UNIT
            psum = not complete[t]
            if psum:
                sh = base + (ps_addr + 4 * o_org[t]) * _DRAM_UNIT
                words = [w + sh for w in ps_out_tmpl]
            else:
                sh = base + (o_addr + self.o_elem * o_org[t]) * _DRAM_UNIT
                words = [w + sh for w in out_tmpl]
            return _Side(words, len(words) if psum else 0, o_key[t], o_bases[o_buf[t]],
                         em.store_config(psum))

        a_stride = self.s0
        blocks: dict[tuple, _ExecBlock] = {}
        em.loads(loads(0, "all"))
        for t in range(nsteps):
            key = (in_buf[t], w_buf[t], o_buf[t], first[t], a_stride)
            block = blocks.get(key)
            if block is None:
                block = blocks[key] = self._exec_block(
                    len(blocks), in_bases[in_buf[t]], w_bases[w_buf[t]], o_bases[o_buf[t]],
                    first[t], a_stride)
            a_stride = block.a_stride
            # double-buffered output: the previous tile's stores overlap this step
            st = stores(t - 1) if t > 0 and leave[t - 1] and self.b_out == 2 else None
            last = t + 1 == nsteps
            em.merged(block, st, None if last else loads(t + 1, "overlapped"))
            if self.b_out == 1 and leave[t] and not last:
                em.stores(stores(t))   # single-buffered output: stored before step t+1 writes it
            if not last:
                em.loads(loads(t + 1, "serial"))  # single-buffered operands: after their last use
        em.stores(stores(nsteps - 1))
        em.append([_HALT])
        words = em.words()

        # Words are packed directly (see the module doc); the MAC count is what the
        # builder's compute() calls would have counted: every MAC of the layer once.
        prog = Program.from_words(hw, words, macs=L.macs, a_stride=a_stride, a_stride1=self.s1)

        ops = em.n
        ops[Op.HALT] += 1
        for b in blocks.values():
            for op, cnt in b.counts.items():
                ops[op] += cnt * em.block_uses[b.bid]
        _require(sum(ops.values()) == len(words), "instruction count mismatch")
        loaded = {"input": int(np.sum(in_new)), "weight": int(np.sum(w_new)),
                  "psum": int(np.sum(reload))}
        stored = int(np.sum(np.array(leave) & np.array(complete)))
        spilled = int(np.sum(leave)) - stored
        st = {
            "instructions": len(words),
            "steps": nsteps,
            "dram_iterations": self.mapping.dram_iterations,
            "macs": L.macs,
            "config": ops[Op.CONFIG], "mvin": ops[Op.MVIN], "mvout": ops[Op.MVOUT],
            "preload": ops[Op.PRELOAD],
            "compute": ops[Op.COMPUTE_PRELOADED] + ops[Op.COMPUTE_ACCUMULATED] + ops[Op.COMPUTE_BLOCK],
            "compute_preloaded": ops[Op.COMPUTE_PRELOADED],
            "compute_accumulated": ops[Op.COMPUTE_ACCUMULATED],
            "compute_block": ops[Op.COMPUTE_BLOCK],
            "fence": ops[Op.FENCE], "halt": ops[Op.HALT],
            "input_tile_loads": loaded["input"],
            "weight_tile_loads": loaded["weight"],
            "output_tile_stores": stored,
            "psum_spills": spilled,
            "psum_reloads": loaded["psum"],
            "input_bytes_loaded": loaded["input"] * self.in_rows_bytes(),
            "weight_bytes_loaded": loaded["weight"] * self.w_bytes(),
            "psum_bytes_loaded": loaded["psum"] * self.o_tile_elems() * 4,
            "psum_bytes_stored": spilled * self.o_tile_elems() * 4,
            "output_bytes_stored": stored * self.o_tile_elems() * self.o_elem,
            "pixel_runs_per_block": len(self.pixel_runs),
            "sp_rows_used": self.b_in * self.in_rows + self.b_w * self.w_rows,
            "acc_rows_used": self.b_out * self.o_rows,
        }
        return Compiled(hw=hw, mapping=self.mapping, layer=L, out=self.out, relu=self.relu,
                        shift=self.shift, program=prog, image=image, input_addr=in_addr,
                        input_shape=in_shape, weight_addr=w_addr, weight_shape=w_shape,
                        output_addr=o_addr, output_shape=o_shape, psum_addr=ps_addr,
                        psum_shape=o_shape if need_psum else None, stats=st)

    # ---- tile sizes in DRAM bytes / elements -------------------------------------------------
    def in_rows_bytes(self) -> int:
        T = self.T
        return T["N"] * self.in_h * self.in_w * T["C"]

    def w_bytes(self) -> int:
        T = self.T
        return T["R"] * T["S"] * T["C"] * T["K"]

    def o_tile_elems(self) -> int:
        T = self.T
        return T["N"] * T["P"] * T["Q"] * T["K"]
