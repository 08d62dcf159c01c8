"""Assembler / program builder, DRAM image and a functional interpreter of the ISA.

* `Program` builds a list of 128-bit instruction words (encoded with `hw.isa.encode`)
  from named methods that check every argument against a `HardwareConfig`.
* `write_imem_hex` / `Program.to_hex_lines` write the instruction memory for `$readmemh`.
* `DramImage` is a sparse byte image of the simulated DRAM with a bump allocator; it
  writes a `$readmemh` file of bus-wide words and reads back `$writememh` dumps
  (`read_dump_hex`, `DramImage.load_dump`).
* `interpret` executes a program on numpy arrays, following the semantics written in
  `hw.isa` (a second implementation of the ISA, independent of the RTL).

Hex word format: one word per line, hex digits most-significant first, zero-padded to
width/4 digits; a line ``@<hex word address>`` sets the address of the next word. A
DRAM word is `cfg.dma_bus_bytes` bytes: byte i of word w is DRAM byte ``w*bus + i`` and
sits at bits [8i+7:8i] of the word, so the hex text is the word's bytes reversed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from hw.config import HardwareConfig
from hw.isa import BLOCK_COUNT_MAX, INSN_BITS, ConfigTarget, Op, decode, encode, low_words
from hw.reference import store_transform, wrap_int32

__all__ = [
    "ProgramError", "Program", "write_imem_hex", "words_to_hex_lines",
    "DramImage", "read_dump_hex", "parse_hex_words", "MachineState", "interpret",
]


class ProgramError(ValueError):
    """An instruction argument, a DRAM access or a program is invalid (one-line message)."""


# ---------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------

def _check_range(method: str, name: str, value: int, lo: int, hi: int) -> int:
    """Return int(value) if lo <= value <= hi, else raise a ProgramError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ProgramError(f"{method}: {name}={value!r} must be an integer in {lo}..{hi}")
    if not lo <= value <= hi:
        raise ProgramError(f"{method}: {name}={value} out of range {lo}..{hi}")
    return int(value)


def _check_local(method: str, name: str, laddr: int, rows: int, step: int,
                 mem: str, nrows: int) -> int:
    """Check that rows laddr, laddr+step, ..., laddr+(rows-1)*step are inside `mem`."""
    laddr = _check_range(method, name, laddr, 0, nrows - 1)
    last = laddr + (rows - 1) * step
    if last >= nrows:
        extra = f" and a_stride={step}" if step != 1 else ""
        raise ProgramError(
            f"{method}: {name}={laddr} with rows={rows}{extra} reaches {mem} row {last}, "
            f"out of range 0..{nrows - 1}")
    return laddr


def _check_dram(method: str, dram: int, rows: int, row_bytes: int, stride: int,
                dram_bytes: int) -> int:
    """Check that `rows` rows of `row_bytes` bytes at `stride` from `dram` are in DRAM."""
    dram = _check_range(method, "dram", dram, 0, dram_bytes - 1)
    last = dram + (rows - 1) * stride + row_bytes - 1
    if last >= dram_bytes:
        raise ProgramError(
            f"{method}: dram={dram:#x} with rows={rows} of {row_bytes} bytes at stride {stride} "
            f"reaches byte {last:#x}, out of range 0..{dram_bytes - 1:#x}")
    return dram


# ---------------------------------------------------------------------------------------
# program builder
# ---------------------------------------------------------------------------------------

@dataclass
class _BuildState:
    """Configuration state the builder tracks to validate later instructions."""

    a_stride: int = 1
    a_stride1: int = 0
    ld_stride: list[int] = field(default_factory=lambda: [0, 0, 0])
    st_stride: int = 0
    st_acc_full: bool = False
    c_cols: int | None = None  # cols2 of the latest PRELOAD (None: no PRELOAD yet)
    c_laddr: int = 0           # laddr2 of the latest PRELOAD
    macs: int = 0


class Program:
    """A list of 128-bit instruction words, built by validated named methods.

    Every method appends one instruction and returns `self` (so calls can be chained).
    Arguments are checked against the `HardwareConfig`; a bad one raises `ProgramError`
    with a one-line message naming the argument, its value and the allowed range.
    DRAM ranges are checked with the strides of the most recent CONFIG instructions.
    """

    def __init__(self, cfg: HardwareConfig):
        self.cfg = cfg
        self._words: list[int] = []
        self._state = _BuildState()

    # ---- container protocol ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._words)

    def __iter__(self) -> Iterator[int]:
        return iter(self._words)

    @property
    def words(self) -> list[int]:
        """The instruction words (a copy)."""
        return list(self._words)

    @classmethod
    def from_words(cls, cfg: HardwareConfig, words: list[int], *, macs: int, a_stride: int = 1,
                   a_stride1: int = 0) -> "Program":
        """A program from already-encoded words (e.g. a compiler that packs fields itself
        and checks ranges per tile); `macs` is what `expected_macs()` reports and
        `a_stride` / `a_stride1` the CONFIG EX state left by the words, for instructions
        appended later."""
        prog = cls(cfg)
        prog._words = list(words)
        prog._state.macs = int(macs)
        prog._state.a_stride = int(a_stride)
        prog._state.a_stride1 = int(a_stride1)
        return prog

    def expected_macs(self) -> int:
        """MACs the hardware counts: sum over COMPUTEs of rows * cols * cols2 (latest PRELOAD)."""
        return self._state.macs

    def to_hex_lines(self) -> list[str]:
        """The words as `$readmemh` lines (32 hex digits each, from address 0)."""
        return words_to_hex_lines(self._words, INSN_BITS)

    def write_hex(self, path: str | Path) -> None:
        """Write the instruction memory file for `$readmemh`."""
        self.check_imem()
        write_imem_hex(path, self._words)

    def check_imem(self) -> None:
        """Raise ProgramError if the program does not fit the instruction memory."""
        if len(self) > self.cfg.imem_depth:
            raise ProgramError(
                f"program length={len(self)} out of range 0..{self.cfg.imem_depth} (imem_depth)")

    def _emit(self, op: Op, **fields: int) -> "Program":
        self._words.append(encode(op, **fields))
        return self

    # ---- CONFIG ------------------------------------------------------------------------
    def config_ex(self, a_stride: int = 1, a_stride1: int = 0) -> "Program":
        """CONFIG EX: scratchpad rows between consecutive A rows of a COMPUTE (and of a
        run of a COMPUTE_BLOCK), and between the first rows of consecutive runs of a
        COMPUTE_BLOCK."""
        a_stride = _check_range("config_ex", "a_stride", a_stride, 0, self.cfg.sp_rows - 1)
        a_stride1 = _check_range("config_ex", "a_stride1", a_stride1, 0, self.cfg.sp_rows - 1)
        self._state.a_stride, self._state.a_stride1 = a_stride, a_stride1
        return self._emit(Op.CONFIG, funct=ConfigTarget.EX, stride=a_stride, stride1=a_stride1)

    def config_ld(self, slot: int, stride: int) -> "Program":
        """CONFIG LD: DRAM bytes between rows for MVINs using load configuration `slot`."""
        slot = _check_range("config_ld", "slot", slot, 0, 2)
        stride = _check_range("config_ld", "stride", stride, 0, self.cfg.dram_bytes - 1)
        self._state.ld_stride[slot] = stride
        return self._emit(Op.CONFIG, funct=ConfigTarget.LD, slot=slot, stride=stride)

    def config_st(self, stride: int, relu: bool = False, acc_full: bool = False,
                  shift: int = 0) -> "Program":
        """CONFIG ST: MVOUT DRAM row stride and the accumulator read transform."""
        stride = _check_range("config_st", "stride", stride, 0, self.cfg.dram_bytes - 1)
        shift = _check_range("config_st", "shift", shift, 0, 31)
        self._state.st_stride = stride
        self._state.st_acc_full = bool(acc_full)
        return self._emit(Op.CONFIG, funct=ConfigTarget.ST, stride=stride, relu=int(bool(relu)),
                          acc_full=int(bool(acc_full)), shift=shift)

    # ---- data movement -----------------------------------------------------------------
    def _local(self, acc: bool) -> tuple[str, int]:
        return ("accumulator", self.cfg.acc_rows) if acc else ("scratchpad", self.cfg.sp_rows)

    def mvin(self, dram: int, laddr: int, rows: int, cols: int, slot: int = 0,
             acc: bool = False) -> "Program":
        """MVIN: `rows` DRAM rows (stride of load `slot`) into local rows laddr.. ."""
        d = self.cfg.dim
        rows = _check_range("mvin", "rows", rows, 1, d)
        cols = _check_range("mvin", "cols", cols, 1, d)
        slot = _check_range("mvin", "slot", slot, 0, 2)
        mem, nrows = self._local(acc)
        laddr = _check_local("mvin", "laddr", laddr, rows, 1, mem, nrows)
        elem = 4 if acc else 1
        dram = _check_dram("mvin", dram, rows, cols * elem, self._state.ld_stride[slot],
                           self.cfg.dram_bytes)
        return self._emit(Op.MVIN, slot=slot, acc=int(bool(acc)), rows=rows, cols=cols,
                          laddr=laddr, dram=dram)

    def mvout(self, dram: int, laddr: int, rows: int, cols: int, acc: bool = False) -> "Program":
        """MVOUT: local rows laddr.. to DRAM at the CONFIG ST stride."""
        d = self.cfg.dim
        rows = _check_range("mvout", "rows", rows, 1, d)
        cols = _check_range("mvout", "cols", cols, 1, d)
        mem, nrows = self._local(acc)
        laddr = _check_local("mvout", "laddr", laddr, rows, 1, mem, nrows)
        elem = 4 if (acc and self._state.st_acc_full) else 1
        dram = _check_dram("mvout", dram, rows, cols * elem, self._state.st_stride,
                           self.cfg.dram_bytes)
        return self._emit(Op.MVOUT, acc=int(bool(acc)), rows=rows, cols=cols, laddr=laddr,
                          dram=dram)

    # ---- execute -----------------------------------------------------------------------
    def preload(self, b_laddr: int | None = None, b_rows: int | None = None,
                b_cols: int | None = None, c_laddr: int | None = None, c_rows: int | None = None,
                c_cols: int | None = None, accumulate: bool = False,
                b_none: bool = False) -> "Program":
        """PRELOAD: weights B (scratchpad) into the shadow buffer and set the C destination.

        With `b_none` no weights are loaded and the b_* arguments may be omitted.
        """
        d = self.cfg.dim
        b_fields: dict[str, int] = {}
        if b_none:
            if any(v not in (None, 0) for v in (b_laddr, b_rows, b_cols)):
                raise ProgramError("preload: b_laddr/b_rows/b_cols must be omitted when b_none=True")
        else:
            if b_laddr is None or b_rows is None or b_cols is None:
                raise ProgramError("preload: b_laddr, b_rows and b_cols are required unless b_none=True")
            b_rows = _check_range("preload", "b_rows", b_rows, 1, d)
            b_cols = _check_range("preload", "b_cols", b_cols, 1, d)
            b_laddr = _check_local("preload", "b_laddr", b_laddr, b_rows, 1, "scratchpad",
                                   self.cfg.sp_rows)
            b_fields = dict(rows=b_rows, cols=b_cols, laddr=b_laddr)
        if c_laddr is None or c_rows is None or c_cols is None:
            raise ProgramError("preload: c_laddr, c_rows and c_cols are required")
        c_rows = _check_range("preload", "c_rows", c_rows, 1, d)
        c_cols = _check_range("preload", "c_cols", c_cols, 1, d)
        c_laddr = _check_local("preload", "c_laddr", c_laddr, c_rows, 1, "accumulator",
                               self.cfg.acc_rows)
        self._state.c_cols, self._state.c_laddr = c_cols, c_laddr
        return self._emit(Op.PRELOAD, b_none=int(bool(b_none)), accumulate=int(bool(accumulate)),
                          laddr2=c_laddr, rows2=c_rows, cols2=c_cols, **b_fields)

    def compute(self, a_laddr: int, rows: int, cols: int, preloaded: bool = True) -> "Program":
        """COMPUTE_PRELOADED (swap in the preloaded weights) or COMPUTE_ACCUMULATED."""
        d = self.cfg.dim
        rows = _check_range("compute", "rows", rows, 1, d)
        cols = _check_range("compute", "cols", cols, 1, d)
        a_laddr = _check_local("compute", "a_laddr", a_laddr, rows, self._state.a_stride,
                               "scratchpad", self.cfg.sp_rows)
        if self._state.c_cols is None:
            raise ProgramError("compute: no PRELOAD before the first COMPUTE (C destination unset)")
        self._state.macs += rows * cols * self._state.c_cols
        op = Op.COMPUTE_PRELOADED if preloaded else Op.COMPUTE_ACCUMULATED
        return self._emit(op, rows=rows, cols=cols, laddr=a_laddr)

    def compute_block(self, a_laddr: int, cols: int, run: int, reps: int = 1,
                      preloaded: bool = True) -> "Program":
        """COMPUTE_BLOCK: `reps` runs of `run` A rows (rows a_laddr + j*a_stride1 +
        i*a_stride) through the weights, into the run*reps C rows of the latest PRELOAD's
        destination; `preloaded` swaps in the preloaded weights first."""
        d, st = self.cfg.dim, self._state
        cols = _check_range("compute_block", "cols", cols, 1, d)
        run = _check_range("compute_block", "run", run, 1, BLOCK_COUNT_MAX)
        reps = _check_range("compute_block", "reps", reps, 1, BLOCK_COUNT_MAX)
        a_laddr = _check_range("compute_block", "a_laddr", a_laddr, 0, self.cfg.sp_rows - 1)
        last = a_laddr + (run - 1) * st.a_stride + (reps - 1) * st.a_stride1
        if last >= self.cfg.sp_rows:
            raise ProgramError(
                f"compute_block: a_laddr={a_laddr} with run={run} (a_stride={st.a_stride}) and reps={reps} "
                f"(a_stride1={st.a_stride1}) reaches scratchpad row {last}, out of range 0..{self.cfg.sp_rows - 1}")
        if st.c_cols is None:
            raise ProgramError("compute_block: no PRELOAD before the first COMPUTE (C destination unset)")
        c_last = st.c_laddr + run * reps - 1
        if c_last >= self.cfg.acc_rows:
            raise ProgramError(
                f"compute_block: run*reps={run * reps} C rows from accumulator row {st.c_laddr} reach row "
                f"{c_last}, out of range 0..{self.cfg.acc_rows - 1}")
        st.macs += run * reps * cols * st.c_cols
        return self._emit(Op.COMPUTE_BLOCK, preloaded=int(bool(preloaded)), cols=cols, laddr=a_laddr,
                          run=run, reps=reps)

    # ---- control -----------------------------------------------------------------------
    def fence(self) -> "Program":
        """FENCE: wait until every earlier instruction has completed."""
        return self._emit(Op.FENCE)

    def halt(self) -> "Program":
        """HALT: fence, then stop and raise `done`."""
        return self._emit(Op.HALT)


# ---------------------------------------------------------------------------------------
# hex files
# ---------------------------------------------------------------------------------------

def words_to_hex_lines(words: Iterable[int], width_bits: int) -> list[str]:
    """Format words as hex lines, MSB first, zero-padded to width_bits/4 digits."""
    digits = width_bits // 4
    out = []
    for w in words:
        w = int(w)
        if not 0 <= w < (1 << width_bits):
            raise ProgramError(f"word={w:#x} out of range 0..{(1 << width_bits) - 1:#x}")
        out.append(f"{w:0{digits}x}")
    return out


def write_imem_hex(path: str | Path, words: Sequence[int]) -> None:
    """Write 128-bit instruction words from address 0 as a `$readmemh` file: the same
    text as `words_to_hex_lines`, formatted vectorised (hexlify of the big-endian
    bytes); a word out of range is `words_to_hex_lines`'s ProgramError."""
    import binascii

    assert INSN_BITS == 128
    n = len(words)
    try:
        lo = low_words(words)
        hi = np.fromiter((int(w) >> 64 for w in words), dtype=np.uint64, count=n)
    except (OverflowError, TypeError, ValueError):
        words_to_hex_lines(words, INSN_BITS)          # raises the ProgramError naming the word
        raise
    if n == 0:
        Path(path).write_text("\n")
        return
    be = np.empty((n, 2), dtype=">u8")
    be[:, 0], be[:, 1] = hi, lo
    digits = np.frombuffer(binascii.hexlify(be.tobytes()), dtype=np.uint8).reshape(n, 32)
    text = np.empty((n, 33), dtype=np.uint8)
    text[:, :32] = digits
    text[:, 32] = ord("\n")
    Path(path).write_bytes(text.tobytes())


_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def parse_hex_words(text: str, start: int = 0) -> dict[int, int]:
    """Parse `$readmemh`/`$writememh` text into {word address: value}.

    Accepts `//` and `/* */` comments, blank lines, `@addr` lines and several words per
    line; `_` separators are ignored and x/z digits read as 0. The first word without a
    preceding `@` line is at `start`.
    """
    words: dict[int, int] = {}
    addr = start
    for tok in _COMMENT.sub(" ", text).split():
        if tok.startswith("@"):
            addr = int(tok[1:], 16)
            continue
        clean = re.sub(r"[xXzZ?]", "0", tok.replace("_", ""))
        try:
            words[addr] = int(clean, 16)
        except ValueError:
            raise ProgramError(f"hex token={tok!r} is not a hex word") from None
        addr += 1
    return words


def read_dump_hex(path: str | Path, lo_word: int, cfg: HardwareConfig,
                  hi_word: int | None = None) -> bytes:
    """Bytes of DRAM words lo_word..hi_word from a `$writememh(file, mem, lo, hi)` dump.

    Words absent from the file read as zero. `hi_word` defaults to the highest word
    address in the file.
    """
    bus = cfg.dma_bus_bytes
    words = parse_hex_words(Path(path).read_text(), lo_word)
    if hi_word is None:
        hi_word = max(words, default=lo_word - 1)
    mask = (1 << (8 * bus)) - 1
    return b"".join((words.get(w, 0) & mask).to_bytes(bus, "little")
                    for w in range(lo_word, hi_word + 1))


# ---------------------------------------------------------------------------------------
# DRAM image
# ---------------------------------------------------------------------------------------

_PAGE = 4096  # bytes per page of the sparse image (a multiple of every bus width)


class DramImage:
    """Sparse byte image of the simulated DRAM, with a bump allocator.

    Bytes never written read as zero. `write_hex` writes only the bus-wide words that
    contain a written byte, each contiguous run preceded by an ``@addr`` line.
    """

    def __init__(self, cfg: HardwareConfig, base: int = 0x1000):
        self.cfg = cfg
        self._next = base
        self._pages: dict[int, np.ndarray] = {}
        self._touched: dict[int, np.ndarray] = {}

    # ---- allocation --------------------------------------------------------------------
    def alloc(self, nbytes: int, align: int | None = None) -> int:
        """Reserve `nbytes` (aligned to `align`, default the DMA bus width); return the address."""
        align = self.cfg.dma_bus_bytes if align is None else align
        if align < 1:
            raise ProgramError(f"alloc: align={align} out of range 1..")
        if nbytes < 0:
            raise ProgramError(f"alloc: nbytes={nbytes} out of range 0..{self.cfg.dram_bytes}")
        addr = -(-self._next // align) * align
        if addr + nbytes > self.cfg.dram_bytes:
            raise ProgramError(
                f"alloc: nbytes={nbytes} at {addr:#x} exceeds DRAM (0..{self.cfg.dram_bytes - 1:#x})")
        self._next = addr + nbytes
        return addr

    # ---- byte access -------------------------------------------------------------------
    def _check(self, what: str, addr: int, n: int) -> None:
        if addr < 0 or addr + n > self.cfg.dram_bytes:
            raise ProgramError(
                f"{what}: addr={addr:#x} with {n} bytes out of range 0..{self.cfg.dram_bytes - 1:#x}")

    def _chunks(self, addr: int, n: int) -> Iterator[tuple[int, int, int, int]]:
        """(page, offset in page, offset in data, length) pieces of [addr, addr+n)."""
        pos = 0
        while pos < n:
            page, off = divmod(addr + pos, _PAGE)
            length = min(_PAGE - off, n - pos)
            yield page, off, pos, length
            pos += length

    def write_bytes(self, addr: int, data: bytes | bytearray | np.ndarray) -> None:
        """Store raw bytes at `addr`."""
        buf = np.frombuffer(bytes(data), dtype=np.uint8)
        self._check("write", addr, buf.size)
        for page, off, pos, length in self._chunks(addr, buf.size):
            if page not in self._pages:
                self._pages[page] = np.zeros(_PAGE, np.uint8)
                self._touched[page] = np.zeros(_PAGE, bool)
            self._pages[page][off:off + length] = buf[pos:pos + length]
            self._touched[page][off:off + length] = True

    def read_bytes(self, addr: int, n: int) -> bytes:
        """The `n` bytes at `addr` (zero where never written)."""
        self._check("read", addr, n)
        out = np.zeros(n, np.uint8)
        for page, off, pos, length in self._chunks(addr, n):
            if page in self._pages:
                out[pos:pos + length] = self._pages[page][off:off + length]
        return out.tobytes()

    def write(self, addr: int, array: np.ndarray) -> None:
        """Store the array's bytes (little-endian, C order) at `addr`."""
        a = np.ascontiguousarray(array)
        self.write_bytes(addr, a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())

    def read(self, addr: int, shape: int | tuple[int, ...], dtype) -> np.ndarray:
        """An array of `shape` and `dtype` (little-endian, C order) read from `addr`."""
        dt = np.dtype(dtype).newbyteorder("<")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        return np.frombuffer(self.read_bytes(addr, n), dtype=dt).reshape(shape).astype(
            np.dtype(dtype).newbyteorder("="))

    def copy(self) -> "DramImage":
        """An independent copy (same contents and allocator position)."""
        other = DramImage(self.cfg, self._next)
        other._pages = {k: v.copy() for k, v in self._pages.items()}
        other._touched = {k: v.copy() for k, v in self._touched.items()}
        return other

    # ---- hex files ---------------------------------------------------------------------
    def touched_words(self) -> list[int]:
        """Sorted addresses of the bus-wide words containing a written byte."""
        bus = self.cfg.dma_bus_bytes
        per_page = _PAGE // bus
        out: list[int] = []
        for page in sorted(self._pages):
            hit = np.flatnonzero(self._touched[page].reshape(per_page, bus).any(axis=1))
            out.extend((page * per_page + hit).tolist())
        return out

    def to_hex_lines(self) -> list[str]:
        """`$readmemh` lines for the touched words, each contiguous run after an ``@addr``."""
        bus = self.cfg.dma_bus_bytes
        lines: list[str] = []
        prev = None
        for w in self.touched_words():
            if prev is None or w != prev + 1:
                lines.append(f"@{w:x}")
            lines.append(self.read_bytes(w * bus, bus)[::-1].hex())
            prev = w
        return lines

    def write_hex(self, path: str | Path) -> None:
        """Write the touched words as a `$readmemh` file."""
        Path(path).write_text("\n".join(self.to_hex_lines()) + "\n")

    def load_dump(self, path: str | Path, lo_word: int, hi_word: int) -> None:
        """Overwrite words lo_word..hi_word with a `$writememh(file, mem, lo, hi)` dump."""
        data = read_dump_hex(path, lo_word, self.cfg, hi_word)
        self.write_bytes(lo_word * self.cfg.dma_bus_bytes, data)


# ---------------------------------------------------------------------------------------
# functional interpreter
# ---------------------------------------------------------------------------------------

class _ByteSet:
    """A sparse set of DRAM bytes (pages of bit masks): MVOUT writes not yet fenced."""

    def __init__(self) -> None:
        self._pages: dict[int, np.ndarray] = {}

    def _pieces(self, addr: int, n: int) -> Iterator[tuple[int, int, int]]:
        end = addr + n
        while addr < end:
            page, off = divmod(addr, _PAGE)
            length = min(_PAGE - off, end - addr)
            yield page, off, length
            addr += length

    def add(self, addr: int, n: int) -> None:
        for page, off, length in self._pieces(addr, n):
            self._pages.setdefault(page, np.zeros(_PAGE, bool))[off:off + length] = True

    def overlaps(self, addr: int, n: int) -> bool:
        return any(page in self._pages and self._pages[page][off:off + length].any()
                   for page, off, length in self._pieces(addr, n))

    def clear(self) -> None:
        self._pages.clear()


@dataclass
class MachineState:
    """Architectural state of the accelerator as seen by `interpret`."""

    cfg: HardwareConfig
    sp: np.ndarray            # sp_rows x dim int8
    acc: np.ndarray           # acc_rows x dim int32
    shadow: np.ndarray        # dim x dim int8 preloaded weights
    active: np.ndarray        # dim x dim int8 weights in the array
    a_stride: int = 1
    a_stride1: int = 0
    ld_stride: list[int] = field(default_factory=lambda: [0, 0, 0])
    st_stride: int = 0
    relu: bool = False
    acc_full: bool = False
    shift: int = 0
    c_dest: tuple[int, int, int, bool] | None = None  # (laddr2, rows2, cols2, accumulate)
    macs: int = 0
    executed: int = 0
    halted: bool = False
    unfenced: _ByteSet = field(default_factory=_ByteSet)

    @classmethod
    def reset(cls, cfg: HardwareConfig) -> "MachineState":
        d = cfg.dim
        return cls(cfg=cfg, sp=np.zeros((cfg.sp_rows, d), np.int8),
                   acc=np.zeros((cfg.acc_rows, d), np.int32),
                   shadow=np.zeros((d, d), np.int8), active=np.zeros((d, d), np.int8))


def _rows_check(pc: int, what: str, laddr: int, rows: int, step: int, nrows: int) -> None:
    last = laddr + (rows - 1) * step
    if rows < 1 or laddr < 0 or last >= nrows:
        raise ProgramError(f"insn {pc}: {what} rows {laddr}..{last} out of range 0..{nrows - 1}")


def _fields_check(pc: int, op: Op, f: dict[str, int], d: int) -> None:
    """rows/cols (and rows2/cols2) of a decoded instruction must be 1..dim."""
    names = ["rows", "cols"] if op in (Op.MVIN, Op.MVOUT, Op.COMPUTE_PRELOADED,
                                       Op.COMPUTE_ACCUMULATED) else []
    if op == Op.PRELOAD:
        names = ["rows2", "cols2"] + ([] if f["b_none"] else ["rows", "cols"])
    if op == Op.COMPUTE_BLOCK:
        names = ["cols"]
        for name in ("run", "reps"):
            if f[name] < 1:
                raise ProgramError(f"insn {pc}: {op.name} {name}={f[name]} out of range 1..{BLOCK_COUNT_MAX}")
    for name in names:
        if not 1 <= f[name] <= d:
            raise ProgramError(f"insn {pc}: {op.name} {name}={f[name]} out of range 1..{d}")


def _exec_config(st: MachineState, f: dict[str, int]) -> None:
    target = ConfigTarget(f["funct"])
    if target == ConfigTarget.EX:
        st.a_stride, st.a_stride1 = f["stride"], f["stride1"]
    elif target == ConfigTarget.LD:
        st.ld_stride[f["slot"]] = f["stride"]
    else:
        st.st_stride = f["stride"]
        st.relu, st.acc_full, st.shift = bool(f["relu"]), bool(f["acc_full"]), f["shift"]


def _exec_mvin(st: MachineState, f: dict[str, int], image: DramImage, pc: int) -> None:
    d, rows, cols, laddr = st.cfg.dim, f["rows"], f["cols"], f["laddr"]
    acc = bool(f["acc"])
    stride = st.ld_stride[f["slot"]]
    _rows_check(pc, "MVIN " + ("accumulator" if acc else "scratchpad"), laddr, rows, 1,
                st.cfg.acc_rows if acc else st.cfg.sp_rows)
    dtype = np.int32 if acc else np.int8
    nbytes = cols * np.dtype(dtype).itemsize
    for r in range(rows):
        addr = f["dram"] + r * stride
        if st.unfenced.overlaps(addr, nbytes):
            raise ProgramError(f"insn {pc}: MVIN reads DRAM {addr:#x} written by an "
                               f"earlier MVOUT without a FENCE in between")
        row = np.zeros(d, dtype)
        row[:cols] = image.read(addr, cols, dtype)
        (st.acc if acc else st.sp)[laddr + r] = row


def _exec_mvout(st: MachineState, f: dict[str, int], image: DramImage, pc: int) -> None:
    rows, cols, laddr = f["rows"], f["cols"], f["laddr"]
    acc = bool(f["acc"])
    _rows_check(pc, "MVOUT " + ("accumulator" if acc else "scratchpad"), laddr, rows, 1,
                st.cfg.acc_rows if acc else st.cfg.sp_rows)
    for r in range(rows):
        if acc:
            data = store_transform(st.acc[laddr + r, :cols], st.relu, st.shift, st.acc_full)
        else:
            data = st.sp[laddr + r, :cols]
        addr = f["dram"] + r * st.st_stride
        image.write(addr, data)
        st.unfenced.add(addr, data.nbytes)


def _exec_preload(st: MachineState, f: dict[str, int], pc: int) -> None:
    if not f["b_none"]:
        rows, cols, laddr = f["rows"], f["cols"], f["laddr"]
        _rows_check(pc, "PRELOAD B scratchpad", laddr, rows, 1, st.cfg.sp_rows)
        w = np.zeros_like(st.shadow)
        w[:rows, :cols] = st.sp[laddr:laddr + rows, :cols]
        st.shadow = w
    _rows_check(pc, "PRELOAD C accumulator", f["laddr2"], f["rows2"], 1, st.cfg.acc_rows)
    st.c_dest = (f["laddr2"], f["rows2"], f["cols2"], bool(f["accumulate"]))


def _exec_compute(st: MachineState, op: Op, f: dict[str, int], pc: int) -> None:
    rows, cols, laddr = f["rows"], f["cols"], f["laddr"]
    if st.c_dest is None:
        raise ProgramError(f"insn {pc}: COMPUTE before any PRELOAD")
    _rows_check(pc, "COMPUTE A scratchpad", laddr, rows, st.a_stride, st.cfg.sp_rows)
    if op == Op.COMPUTE_PRELOADED:
        st.shadow, st.active = st.active, st.shadow
    a = st.sp[laddr + np.arange(rows) * st.a_stride].astype(np.int64)
    a[:, cols:] = 0
    c_laddr, c_rows, c_cols, accumulate = st.c_dest
    n = min(rows, c_rows)
    prod = (a @ st.active.astype(np.int64))[:n, :c_cols]
    dst = st.acc[c_laddr:c_laddr + n, :c_cols]
    if accumulate:
        prod = prod + dst.astype(np.int64)
    st.acc[c_laddr:c_laddr + n, :c_cols] = wrap_int32(prod)
    st.macs += rows * cols * c_cols


def _exec_compute_block(st: MachineState, f: dict[str, int], pc: int) -> None:
    cols, laddr, run, reps = f["cols"], f["laddr"], f["run"], f["reps"]
    if st.c_dest is None:
        raise ProgramError(f"insn {pc}: COMPUTE_BLOCK before any PRELOAD")
    rows = (laddr + np.arange(reps)[:, None] * st.a_stride1 + np.arange(run)[None, :] * st.a_stride).ravel()
    if rows[-1] >= st.cfg.sp_rows:
        raise ProgramError(f"insn {pc}: COMPUTE_BLOCK A scratchpad rows {laddr}..{int(rows[-1])} "
                           f"out of range 0..{st.cfg.sp_rows - 1}")
    c_laddr, _c_rows, c_cols, accumulate = st.c_dest
    n = run * reps
    _rows_check(pc, "COMPUTE_BLOCK C accumulator", c_laddr, n, 1, st.cfg.acc_rows)
    if f["preloaded"]:
        st.shadow, st.active = st.active, st.shadow
    a = st.sp[rows].astype(np.int64)
    a[:, cols:] = 0
    prod = (a @ st.active.astype(np.int64))[:, :c_cols]
    if accumulate:
        prod = prod + st.acc[c_laddr:c_laddr + n, :c_cols].astype(np.int64)
    st.acc[c_laddr:c_laddr + n, :c_cols] = wrap_int32(prod)
    st.macs += n * cols * c_cols


def interpret(program: Program | Sequence[int], image: DramImage,
              cfg: HardwareConfig | None = None, max_insns: int | None = None) -> MachineState:
    """Execute `program` sequentially per the semantics in `hw.isa`; return the final state.

    `image` is updated in place by MVOUTs. Execution stops after HALT or at the end of
    the program. Raises ProgramError on an out-of-range access or on a MVIN that reads
    DRAM bytes written by a MVOUT with no FENCE/HALT in between (the hardware does not
    order those).
    """
    if cfg is None:
        if not isinstance(program, Program):
            raise ProgramError("interpret: cfg is required when program is a list of words")
        cfg = program.cfg
    words = program.words if isinstance(program, Program) else list(program)
    st = MachineState.reset(cfg)
    for pc, word in enumerate(words):
        if max_insns is not None and st.executed >= max_insns:
            break
        op, f = decode(word)
        st.executed += 1
        _fields_check(pc, op, f, cfg.dim)
        if op == Op.CONFIG:
            _exec_config(st, f)
        elif op == Op.MVIN:
            _exec_mvin(st, f, image, pc)
        elif op == Op.MVOUT:
            _exec_mvout(st, f, image, pc)
        elif op == Op.PRELOAD:
            _exec_preload(st, f, pc)
        elif op in (Op.COMPUTE_PRELOADED, Op.COMPUTE_ACCUMULATED):
            _exec_compute(st, op, f, pc)
        elif op == Op.COMPUTE_BLOCK:
            _exec_compute_block(st, f, pc)
        else:  # FENCE / HALT
            st.unfenced.clear()
            if op == Op.HALT:
                st.halted = True
                break
    return st
