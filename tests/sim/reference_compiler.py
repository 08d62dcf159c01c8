"""Layer compiler: lowers (HardwareConfig, Mapping, Layer) to an instruction stream.

FROZEN REFERENCE: a verbatim copy of sim/compiler.py before its vectorisation (issue 11),
kept only so that tests/sim/test_compiler.py can check that the fast compiler produces
bit-identical programs, DRAM images and statistics. Do not edit or optimise it.

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
then COMPUTEs over every output pixel of the tile. The pixels, in (n, p, q) order, give
(A row, C row) pairs; they are cut greedily (optimal in the number of COMPUTEs) into
runs of at most dim pixels along which A advances by a constant a_stride and C by +1: a
1x1 stride-1 (GEMM-like) tile is one arithmetic run per dim pixels, a 3x3 tile breaks at
each output row. A CONFIG EX precedes a COMPUTE of more than one row whose a_stride
differs from the current one. The first run of a block is PRELOAD(B) +
COMPUTE_PRELOADED, later runs PRELOAD(b_none, new C destination) + COMPUTE_ACCUMULATED.
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
`_interleave` computes the same order faster); finally the stores of the last tile and
HALT. A single-buffered operand's next tile cannot overlap the step that uses its one
buffer: a single-buffered input or weight tile of step t+1 is loaded after the whole
execute stream of step t, and a single-buffered output tile is stored right after the
execute stream of its last step (before anything of the next step writes the
accumulator: its partial-sum reload and its computes). The hardware's scoreboard holds
each such instruction until the instructions it conflicts with are done. The loads of a step are its partial sums, then its input tile, then its weight
tile (each in local-row order). A CONFIG ST precedes a MVOUT whose store mode (int32
partial sums vs. int8 output) differs from the current one.

Speed: instruction words are packed directly from the `hw.isa.FIELDS` bit positions
(not through the validating `Program` methods, which cost a few microseconds each);
the execute stream of a step depends only on which buffers it uses and whether it is a
first visit, so it is built once per variant and reused. Ranges are checked once per
tile (buffers inside the local memories, every DRAM access inside its region), and
`Compiled.validate()` replays the whole program through the `Program` builder (slow,
for tests). The returned `Program` holds the packed words, and its MAC counter
(`expected_macs`) is set to ``layer.macs``, what the builder would have counted.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from hw.config import HardwareConfig
from hw.isa import FIELDS, ConfigTarget, Op, decode
from hw.layer import LOOPS, Layer
from hw.mapping import Mapping, MappingError
from hw.program import DramImage, Program, ProgramError
from hw.schedule import AccessFootprint, Item, deps, merge, overlap
from sim.reference import check_int8

__all__ = ["CompileError", "Compiled", "compile_layer", "dram_bytes_needed", "dram_mb_for"]


class CompileError(ValueError):
    """The layer cannot be compiled with this mapping (one-line reason)."""


# ---------------------------------------------------------------------------------------
# direct instruction packing (bit positions from hw.isa.FIELDS)
# ---------------------------------------------------------------------------------------

_SH = {name: lo for name, (lo, _w) in FIELDS.items()}


def _w_config(target: int, *, slot: int = 0, stride: int = 0, relu: bool = False,
              acc_full: bool = False, shift: int = 0) -> int:
    return (int(Op.CONFIG) | int(target) << _SH["funct"] | slot << _SH["slot"]
            | int(relu) << _SH["relu"] | int(acc_full) << _SH["acc_full"]
            | shift << _SH["shift"] | stride << _SH["stride"])


def _w_mov(op: Op, rows: int, cols: int, laddr: int, dram: int, *, slot: int = 0,
           acc: bool = False) -> int:
    return (int(op) | slot << _SH["slot"] | int(acc) << _SH["acc"] | rows << _SH["rows"]
            | cols << _SH["cols"] | laddr << _SH["laddr"] | dram << _SH["dram"])


def _w_preload(c_laddr: int, c_rows: int, c_cols: int, accumulate: bool,
               b: tuple[int, int, int] | None) -> int:
    w = (int(Op.PRELOAD) | int(accumulate) << _SH["accumulate"] | c_laddr << _SH["laddr2"]
         | c_rows << _SH["rows2"] | c_cols << _SH["cols2"])
    if b is None:
        return w | 1 << _SH["b_none"]
    b_laddr, b_rows, b_cols = b
    return w | b_rows << _SH["rows"] | b_cols << _SH["cols"] | b_laddr << _SH["laddr"]


def _w_compute(a_laddr: int, rows: int, cols: int, preloaded: bool) -> int:
    op = Op.COMPUTE_PRELOADED if preloaded else Op.COMPUTE_ACCUMULATED
    return int(op) | rows << _SH["rows"] | cols << _SH["cols"] | a_laddr << _SH["laddr"]


_FENCE = int(Op.FENCE)
_HALT = int(Op.HALT)
_LADDR_UNIT = 1 << _SH["laddr"]
_DRAM_UNIT = 1 << _SH["dram"]


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
                    replay.config_ex(f["stride"])
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
            elif op == Op.FENCE:
                replay.fence()
            else:
                replay.halt()
            if replay.words[-1] != word:
                raise AssertionError(f"insn {pc}: builder encodes {replay.words[-1]:#x}, "
                                     f"compiler wrote {word:#x}")
        if replay.expected_macs() != self.program.expected_macs():
            raise AssertionError(f"MACs: builder counts {replay.expected_macs()}, "
                                 f"program claims {self.program.expected_macs()}")




# ---------------------------------------------------------------------------------------
# run splitting
# ---------------------------------------------------------------------------------------

class _Run(NamedTuple):
    """Up to dim consecutive local rows whose DRAM addresses advance by a fixed stride."""

    laddr: int   # local row, relative to the tile buffer
    dram: int    # DRAM byte offset, relative to the tile origin
    rows: int
    cols: int


def _dma_runs(rows: list[tuple[int, int]], step: int, d: int) -> list[_Run]:
    """Cut local rows 0, 1, ... (given as (dram offset, cols) in row order) into runs of at
    most d rows with equal cols and DRAM offsets advancing by `step`."""
    out: list[_Run] = []
    start = 0
    n = len(rows)
    while start < n:
        off, cols = rows[start]
        end = start + 1
        while (end < n and end - start < d and rows[end][1] == cols
               and rows[end][0] == off + (end - start) * step):
            end += 1
        out.append(_Run(start, off, end - start, cols))
        start = end
    return out


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
# compiler
# ---------------------------------------------------------------------------------------

def _require(ok: bool, what: str) -> None:
    """Internal consistency check (kept under python -O)."""
    if not ok:
        raise CompileError(f"internal compiler error: {what}")


class _PsumLoad(Item):
    """MVIN of partial sums back into the accumulator (needs a FENCE after their MVOUT)."""

    __slots__ = ()


class _PsumStore(Item):
    """MVOUT of partial sums to the psum region."""

    __slots__ = ()


def _alternate(keys: list, nbuf: int = 2) -> tuple[list[int], list[bool]]:
    """Per step: which of the operand's `nbuf` buffers holds the tile, and whether it is
    loaded (its key differs from the previous step's); with two buffers a new tile takes
    the other one, with one it reuses it."""
    bufs, new = [], []
    cur, prev = nbuf - 1, object()
    for key in keys:
        changed = key != prev
        if changed and nbuf == 2:
            cur ^= 1
        bufs.append(cur)
        new.append(changed)
        prev = key
    return bufs, new


class _ExecBlock(NamedTuple):
    """The execute stream of one step, flattened once (it is reused by many steps)."""

    items: list[Item]
    words: list[int]      # all ops of all items, in order
    ends: list[int]       # ends[j]: number of words up to and including item j
    fp: AccessFootprint
    counts: Counter       # opcode -> instructions
    a_stride: int         # a_stride in force after the block


def _exec_block(items: list[Item], a_stride: int) -> _ExecBlock:
    words: list[int] = []
    ends: list[int] = []
    for it in items:
        words.extend(it.ops)
        ends.append(len(words))
    return _ExecBlock(items, words, ends, AccessFootprint.of(items),
                      Counter(w & 0xF for w in words), a_stride)


def _hazard(later: AccessFootprint, earlier: AccessFootprint) -> bool:
    """A local-address hazard (RAW, WAR or WAW) between two streams."""
    return overlap(later.writes, earlier.access) or overlap(later.reads, earlier.writes)


def _interleave(stores: list[Item], block: _ExecBlock, loads: list[Item], emit_exec,
                emit_item) -> None:
    """Emit `hw.schedule.merge(stores, block.items, loads)` in the same order, faster.

    `merge` recomputes the execute stream's footprint and walks it item by item; here the
    footprint is cached in the block and the side items' positions are found by bisection
    on the block's cumulative instruction counts (the k-th of n side items is due after
    the first execute item with cumulative count >= (k + 1/2) * total / n, `merge`'s rule),
    so the block's words are copied in slices. `emit_exec(words)` receives execute words,
    `emit_item(item)` each store / load item. The compiler's streams never conflict with
    the execute stream (they use the other buffers); if they did, this falls back to
    `merge` itself. Loads that conflict with stores (a partial-sum reload into the
    accumulator buffer being stored) are pulled after those stores, like `merge` does.
    """
    fs, fl = AccessFootprint.of(stores), AccessFootprint.of(loads)
    if _hazard(block.fp, fs) or _hazard(fl, block.fp):
        for it in merge(stores, block.items, loads):
            emit_item(it)
        return
    dep = deps(loads, stores, fl, fs) if stores and loads else [-1] * len(loads)
    ends, n_exec = block.ends, block.ends[-1]

    def due(n: int) -> list[int]:
        return [bisect_left(ends, -(-(2 * k + 1) * n_exec // (2 * n))) for k in range(n)]

    sd, ld = due(len(stores)), due(len(loads))
    si = li = 0
    prev = 0
    for j in sorted(set(sd) | set(ld)):
        emit_exec(block.words[prev:ends[j]])
        prev = ends[j]
        while si < len(stores) and sd[si] <= j:
            emit_item(stores[si])
            si += 1
        while li < len(loads) and ld[li] <= j:
            while si <= dep[li]:
                emit_item(stores[si])
                si += 1
            emit_item(loads[li])
            li += 1
    emit_exec(block.words[prev:])
    for it in stores[si:] + loads[li:]:  # (none left: every item is due before the end)
        emit_item(it)


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
                  relu: bool = False, shift: int = 0) -> Compiled:
    """Lower `layer` with `mapping` to a program and DRAM layout (see the module doc).

    ``out="int32"`` stores the raw accumulators (relu and shift have no effect, as with
    acc_full); ``out="int8"`` stores ReLU / rounding shift / saturated int8.
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
    return _Compiler(hw, mapping, layer, out, relu, shift).run()


class _Compiler:
    def __init__(self, hw: HardwareConfig, mapping: Mapping, layer: Layer, out: str,
                 relu: bool, shift: int):
        self.hw, self.mapping, self.layer = hw, mapping, layer
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

    # ---- tile geometry (relative to the tile's buffer and DRAM origin) --------------------
    def _input_runs(self) -> list[_Run]:
        T, d = self.T, self.d
        rows = []
        for cb in range(self.cbn):
            cc = min(d, T["C"] - cb * d)
            for n in range(T["N"]):
                for ih in range(self.in_h):
                    for iw in range(self.in_w):
                        rows.append((((n * self.Hp + ih) * self.Wp + iw) * self.C + cb * d, cc))
        _require(len(rows) == self.in_rows, "input tile rows differ from the footprint")
        return _dma_runs(rows, self.C, d)

    def _weight_runs(self) -> list[_Run]:
        T, d = self.T, self.d
        rows = []
        for r in range(T["R"]):
            for s in range(T["S"]):
                for kb in range(self.kbn):
                    kc = min(d, T["K"] - kb * d)
                    for c in range(T["C"]):
                        rows.append((((r * self.S + s) * self.Cg + c) * self.Kg + kb * d, kc))
        _require(len(rows) == self.w_rows, "weight tile rows differ from the footprint")
        return _dma_runs(rows, self.Kg, d)

    def _output_runs(self) -> list[_Run]:
        """Runs in elements (DRAM element index offset; multiply by the element size)."""
        T, d = self.T, self.d
        rows = []
        for kb in range(self.kbn):
            kc = min(d, T["K"] - kb * d)
            for n in range(T["N"]):
                for p in range(T["P"]):
                    for q in range(T["Q"]):
                        rows.append((((n * self.P + p) * self.Q + q) * self.K + kb * d, kc))
        _require(len(rows) == self.o_rows, "output tile rows differ from the footprint")
        return _dma_runs(rows, self.K, d)

    def _pixel_runs(self) -> list[tuple[int, int, int, int]]:
        T, st = self.T, self.st
        a_rows = [(n * self.in_h + p * st) * self.in_w + q * st
                  for n in range(T["N"]) for p in range(T["P"]) for q in range(T["Q"])]
        return _compute_runs(a_rows, self.d)

    # ---- the execute stream of one step --------------------------------------------------
    def _exec_items(self, in_base: int, w_base: int, o_base: int, first: bool,
                    a_stride: int) -> tuple[list[Item], int]:
        T, d = self.T, self.d
        items: list[Item] = []
        in_cb = T["N"] * self.in_h * self.in_w
        o_kb = T["N"] * T["P"] * T["Q"]
        runs = self.pixel_runs
        for kb in range(self.kbn):
            kc = min(d, T["K"] - kb * d)
            c_kb = o_base + kb * o_kb
            for r in range(T["R"]):
                for s in range(T["S"]):
                    for cb in range(self.cbn):
                        cc = min(d, T["C"] - cb * d)
                        acc = not (first and r == 0 and s == 0 and cb == 0)
                        b_laddr = w_base + ((r * T["S"] + s) * self.kbn + kb) * T["C"] + cb * d
                        a_blk = in_base + cb * in_cb + r * self.in_w + s
                        for j, (a_off, c_off, n, stride) in enumerate(runs):
                            a, c = a_blk + a_off, c_kb + c_off
                            ops = []
                            if n > 1 and stride != a_stride:
                                ops.append(_w_config(ConfigTarget.EX, stride=stride))
                                a_stride = stride
                            a_last = a + (n - 1) * stride
                            if j == 0:
                                ops.append(_w_preload(c, n, kc, acc, (b_laddr, cc, kc)))
                                ops.append(_w_compute(a, n, cc, True))
                                reads = (("sp", a, a_last), ("sp", b_laddr, b_laddr + cc - 1))
                            else:
                                ops.append(_w_preload(c, n, kc, acc, None))
                                ops.append(_w_compute(a, n, cc, False))
                                reads = (("sp", a, a_last),)
                            items.append(Item(tuple(ops), reads, (("acc", c, c + n - 1),)))
        return items, a_stride

    # ---- main ------------------------------------------------------------------------------
    def run(self) -> Compiled:
        hw, L, T, F = self.hw, self.layer, self.T, self.F
        G, N, P, Q, K, C = self.G, self.N, self.P, self.Q, self.K, self.C

        # Steps: group outermost, then the DRAM loops in mapping.order.
        order = self.mapping.order
        pos = [order.index(lp) for lp in LOOPS]
        steps = []
        for g in range(G):
            for idx in itertools.product(*(range(F[lp]) for lp in order)):
                steps.append((g,) + tuple(idx[i] for i in pos))  # g, n, k, c, p, q, r, s
        nsteps = len(steps)
        in_keys = [(g, n, c, p, q, r, s) for g, n, k, c, p, q, r, s in steps]
        w_keys = [(g, k, c, r, s) for g, n, k, c, p, q, r, s in steps]
        o_keys = [(g, n, k, p, q) for g, n, k, c, p, q, r, s in steps]
        in_buf, in_new = _alternate(in_keys, self.b_in)
        w_buf, w_new = _alternate(w_keys, self.b_w)
        o_buf, o_new = _alternate(o_keys, self.b_out)

        red_total = F["C"] * F["R"] * F["S"]
        visits: dict[tuple, int] = {}
        tile_id: dict[tuple, int] = {}
        first, reload, leave, complete = [], [], [], []
        for t, key in enumerate(o_keys):
            v = visits.get(key, 0)
            visits[key] = v + 1
            tile_id.setdefault(key, len(tile_id))
            first.append(v == 0)
            reload.append(o_new[t] and v > 0)
            lv = t + 1 == nsteps or o_keys[t + 1] != key
            leave.append(lv)
            complete.append(lv and v + 1 == red_total)
        need_psum = any(lv and not cp for lv, cp in zip(leave, complete))

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

        # Relative geometry, computed once.
        in_runs, w_runs, o_runs = self._input_runs(), self._weight_runs(), self._output_runs()
        self.pixel_runs = self._pixel_runs()
        in_cb, o_kb = T["N"] * self.in_h * self.in_w, T["N"] * T["P"] * T["Q"]
        a_max = ((self.cbn - 1) * in_cb + (T["R"] - 1) * self.in_w + T["S"] - 1
                 + max(a + (n - 1) * st_ for a, _c, n, st_ in self.pixel_runs))
        c_max = (self.kbn - 1) * o_kb + max(c + n - 1 for _a, c, n, _s in self.pixel_runs)
        _require(a_max < self.in_rows and c_max < self.o_rows,
                 "compute rows outside the tile buffers")
        _require(max(a_stride for *_x, a_stride in self.pixel_runs) < hw.sp_rows,
                 "a_stride exceeds the scratchpad")
        in_tmpl = [(_w_mov(Op.MVIN, r.rows, r.cols, r.laddr, r.dram, slot=0), r) for r in in_runs]
        w_tmpl = [(_w_mov(Op.MVIN, r.rows, r.cols, r.laddr, r.dram, slot=1), r) for r in w_runs]
        ps_in_tmpl = [(_w_mov(Op.MVIN, r.rows, r.cols, r.laddr, 4 * r.dram, slot=2, acc=True), r)
                      for r in o_runs]
        ps_out_tmpl = [(_w_mov(Op.MVOUT, r.rows, r.cols, r.laddr, 4 * r.dram, acc=True), r)
                       for r in o_runs]
        out_tmpl = [(_w_mov(Op.MVOUT, r.rows, r.cols, r.laddr, self.o_elem * r.dram, acc=True), r)
                    for r in o_runs]
        # Largest relative extents, for the once-per-tile range checks.
        in_span = max(r.dram + (r.rows - 1) * C + r.cols for r in in_runs)
        w_span = max(r.dram + (r.rows - 1) * self.Kg + r.cols for r in w_runs)
        o_span = max(r.dram + (r.rows - 1) * K + r.cols for r in o_runs)  # elements
        in_end, w_end = in_addr + int(np.prod(in_shape)), w_addr + int(np.prod(w_shape))
        o_elems = int(np.prod(o_shape))

        def in_origin(t: int) -> int:
            g, n, k, c, p, q, r, s = steps[t]
            pix = ((n * T["N"] * self.Hp + p * T["P"] * self.st + r * T["R"]) * self.Wp
                   + q * T["Q"] * self.st + s * T["S"])
            off = pix * C + g * self.Cg + c * T["C"]
            _require(in_addr + off + in_span <= in_end, f"input tile of step {t} outside its region")
            return in_addr + off

        def w_origin(t: int) -> int:
            g, n, k, c, p, q, r, s = steps[t]
            off = (((g * self.R + r * T["R"]) * self.S + s * T["S"]) * self.Cg
                   + c * T["C"]) * self.Kg + k * T["K"]
            _require(w_addr + off + w_span <= w_end, f"weight tile of step {t} outside its region")
            return w_addr + off

        def o_origin(t: int) -> int:
            """Element index of the output tile's origin in (N, P, Q, K)."""
            g, n, k, c, p, q, r, s = steps[t]
            off = ((n * T["N"] * P + p * T["P"]) * Q + q * T["Q"]) * K + g * self.Kg + k * T["K"]
            _require(off + o_span <= o_elems, f"output tile of step {t} outside its region")
            return off

        def instantiate(tmpl, laddr_base: int, dram_base: int, cls, mem: str, write: bool,
                        dram_tag: tuple | None = None) -> list[Item]:
            shift_ = laddr_base * _LADDR_UNIT + dram_base * _DRAM_UNIT
            out = []
            for word, r in tmpl:
                rng = ((mem, laddr_base + r.laddr, laddr_base + r.laddr + r.rows - 1),)
                if write:  # MVIN: writes local rows (reads the psum pseudo-memory)
                    out.append(cls((word + shift_,), dram_tag or (), rng))
                else:      # MVOUT: reads local rows (writes the psum pseudo-memory)
                    out.append(cls((word + shift_,), rng, dram_tag or ()))
            return out

        def loads(t: int, part: str = "all") -> list[Item]:
            """Loads of step t: "all", "overlapped" (of the double-buffered operands) or
            "serial" (of the single-buffered ones)."""
            want = {"all": (True, True), "overlapped": (False, True), "serial": (True, False)}[part]
            items: list[Item] = []
            if reload[t] and want[self.b_out - 1]:
                tid = tile_id[o_keys[t]]
                items += instantiate(ps_in_tmpl, o_bases[o_buf[t]], ps_addr + 4 * o_origin(t),
                                     _PsumLoad, "acc", True, (("dram", tid, tid),))
                stats["psum_reloads"] += 1
            if in_new[t] and want[self.b_in - 1]:
                items += instantiate(in_tmpl, in_bases[in_buf[t]], in_origin(t), Item, "sp", True)
                stats["input_tile_loads"] += 1
            if w_new[t] and want[self.b_w - 1]:
                items += instantiate(w_tmpl, w_bases[w_buf[t]], w_origin(t), Item, "sp", True)
                stats["weight_tile_loads"] += 1
            return items

        st_mode = ["final"]  # store configuration in force (program order of the store stream)
        # relu / shift only matter for int8 stores (acc_full ignores them): encode 0 then.
        int8 = self.out == "int8"
        final_cfg = _w_config(ConfigTarget.ST, stride=K * self.o_elem, relu=self.relu and int8,
                              acc_full=not int8, shift=self.shift if int8 else 0)
        psum_cfg = _w_config(ConfigTarget.ST, stride=4 * K, acc_full=True)
        modes_differ = final_cfg != psum_cfg

        def stores(t: int) -> list[Item]:
            base = o_bases[o_buf[t]]
            if complete[t]:
                items = instantiate(out_tmpl, base, o_addr + self.o_elem * o_origin(t), Item,
                                    "acc", False)
                mode, cfg = "final", final_cfg
                stats["output_tile_stores"] += 1
            else:
                tid = tile_id[o_keys[t]]
                items = instantiate(ps_out_tmpl, base, ps_addr + 4 * o_origin(t), _PsumStore,
                                    "acc", False, (("dram", tid, tid),))
                mode, cfg = "psum", psum_cfg
                stats["psum_spills"] += 1
            if mode != st_mode[0] and modes_differ:
                it = items[0]
                items[0] = type(it)((cfg,) + it.ops, it.reads, it.writes)
            st_mode[0] = mode
            return items

        stats = Counter()
        words: list[int] = [
            _w_config(ConfigTarget.EX, stride=1),
            _w_config(ConfigTarget.LD, slot=0, stride=C),
            _w_config(ConfigTarget.LD, slot=1, stride=self.Kg),
        ]
        if need_psum:
            words.append(_w_config(ConfigTarget.LD, slot=2, stride=4 * K))
        words.append(final_cfg)
        n_head = len(words)

        unfenced: set[int] = set()
        counts: Counter = Counter()

        def emit_item(it: Item) -> None:
            if type(it) is _PsumLoad:
                if it.reads[0][1] in unfenced:
                    words.append(_FENCE)
                    counts[Op.FENCE] += 1
                    unfenced.clear()
            elif type(it) is _PsumStore:
                unfenced.add(it.writes[0][1])
            words.extend(it.ops)
            for w in it.ops:
                counts[w & 0xF] += 1

        a_stride = 1
        exec_cache: dict[tuple, _ExecBlock] = {}
        for it in loads(0):
            emit_item(it)
        for t in range(nsteps):
            key = (in_buf[t], w_buf[t], o_buf[t], first[t], a_stride)
            block = exec_cache.get(key)
            if block is None:
                items, a_out = self._exec_items(in_bases[in_buf[t]], w_bases[w_buf[t]],
                                                o_bases[o_buf[t]], first[t], a_stride)
                block = exec_cache[key] = _exec_block(items, a_out)
            a_stride = block.a_stride
            counts.update(block.counts)
            # double-buffered output: the previous tile's stores overlap this step
            st_items = stores(t - 1) if t > 0 and leave[t - 1] and self.b_out == 2 else []
            ld_items = loads(t + 1, "overlapped") if t + 1 < nsteps else []
            _interleave(st_items, block, ld_items, words.extend, emit_item)
            if self.b_out == 1 and leave[t] and t + 1 < nsteps:
                for it in stores(t):   # single-buffered output: stored before step t+1 writes it
                    emit_item(it)
            for it in (loads(t + 1, "serial") if t + 1 < nsteps else []):
                emit_item(it)          # single-buffered operands: after their last use
        for it in stores(nsteps - 1):
            emit_item(it)
        words.append(_HALT)
        counts.update(w & 0xF for w in words[:n_head])
        counts[Op.HALT] += 1

        # Words are packed directly (see the module doc); the MAC count is what the
        # builder's compute() calls would have counted: every MAC of the layer once.
        prog = Program.from_words(hw, words, macs=L.macs, a_stride=a_stride)

        ops = counts
        _require(sum(ops.values()) == len(words), "instruction count mismatch")
        st = {
            "instructions": len(words),
            "steps": nsteps,
            "dram_iterations": self.mapping.dram_iterations,
            "macs": L.macs,
            "config": ops[Op.CONFIG], "mvin": ops[Op.MVIN], "mvout": ops[Op.MVOUT],
            "preload": ops[Op.PRELOAD],
            "compute": ops[Op.COMPUTE_PRELOADED] + ops[Op.COMPUTE_ACCUMULATED],
            "compute_preloaded": ops[Op.COMPUTE_PRELOADED],
            "compute_accumulated": ops[Op.COMPUTE_ACCUMULATED],
            "fence": ops[Op.FENCE], "halt": ops[Op.HALT],
            "input_tile_loads": stats["input_tile_loads"],
            "weight_tile_loads": stats["weight_tile_loads"],
            "output_tile_stores": stats["output_tile_stores"],
            "psum_spills": stats["psum_spills"],
            "psum_reloads": stats["psum_reloads"],
            "input_bytes_loaded": stats["input_tile_loads"] * self.in_rows_bytes(),
            "weight_bytes_loaded": stats["weight_tile_loads"] * self.w_bytes(),
            "psum_bytes_loaded": stats["psum_reloads"] * self.o_tile_elems() * 4,
            "psum_bytes_stored": stats["psum_spills"] * self.o_tile_elems() * 4,
            "output_bytes_stored": stats["output_tile_stores"] * self.o_tile_elems() * self.o_elem,
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

