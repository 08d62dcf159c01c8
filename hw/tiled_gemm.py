"""Tiled GEMM program generator: C = A x B (+ D) for testbenches and benchmarks.

DRAM layout (all row-major, little-endian):

    A  M x K int8,  row stride K bytes
    B  K x N int8,  row stride N bytes
    D  bias, int32: ``bias="row"`` (or True) a 1 x N row added to every row of C, loaded
       into the accumulator with a zero load stride; ``bias="full"`` an M x N matrix,
       row stride 4N bytes
    C  M x N, int32 (row stride 4N) for ``out="int32"`` or int8 (row stride N) for "int8"

Tiling: the problem is cut into tiles of tile_m x tile_k (A), tile_k x tile_n (B) and
tile_m x tile_n (C) elements; edge tiles are partial. Loop order over tiles: m-tiles
(or n-tiles for "nmk") outer, k-tiles inner; a C tile stays in the accumulator across
its k-tiles and is stored after the last one.

Local layout (dim = d, blocks are d x d, partial blocks use rows/cols < d):

    scratchpad  A region = lower half of the rows (the lower half of the banks),
                B region = upper half. A block (i, kb) of a tile: tile_m rows at
                buffer + kb*tile_m; B block (kb, nb): d rows at buffer + (kb*tile_n/d + nb)*d.
                Each region holds two buffers (its two halves) when two tiles fit.
    accumulator C block (nb) of a tile: tile_m rows at buffer + nb*tile_m; two buffers
                (the two halves of the accumulator) when two C tiles fit.

Program order (software pipelined; the scheduling contract is `hw.schedule`'s). The
program is built from three streams per tile step t: E(t) = the PRELOAD / COMPUTE pairs
of step t, L(t+1) = the loads of step t+1 into the other (double-)buffers (A / B blocks
in k-block order, then the bias) and S(t-1) = the stores of the C tile finished at step
t-1 (when C is double-buffered, so step t computes into the other C buffer). Each step is

    [loads of step t's single-buffered operands]  (all of step 0's loads: the prologue)
    E(t) merged with S(t-1) and L(t+1)
    [stores of step t if C is single-buffered and t is its last k-tile]

and after the last step the last C tile is stored (double-buffered C), then HALT. The
merge is `hw.schedule.merge`: it walks E(t) and after each PRELOAD / COMPUTE pair emits
the stores and loads due so far, spreading each stream evenly, and honours any local
address hazard between the streams in program order (S(t-1) before E(t) before L(t+1)),
e.g. a bias load for step t+1 into the C buffer still being stored follows that store.
The program is thus a valid sequential program (as `hw.program.interpret` runs it); the
hardware's scoreboard also stalls on the hazards, so results never depend on the overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np

from hw.config import HardwareConfig
from hw.program import DramImage, Program
from hw.reference import gemm_reference
from hw.schedule import Item, merge

__all__ = ["GemmProgram", "gemm_program", "default_tiles", "random_gemm_inputs"]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _pad(x: int, d: int) -> int:
    return _ceil_div(x, d) * d


class _Step(NamedTuple):
    """One (m, n, k) tile step: element offsets and sizes."""

    mi: int
    ni: int
    ki: int
    m0: int
    mrows: int
    n0: int
    ncols: int
    k0: int
    kcols: int
    last_k: bool


@dataclass(frozen=True)
class _Buffers:
    """Local base rows of the tile buffers and whether each operand is double-buffered."""

    a: tuple[int, ...]
    b: tuple[int, ...]
    c: tuple[int, ...]


@dataclass(frozen=True)
class GemmProgram:
    """A generated GEMM: the program, the DRAM image with its inputs, and the layout."""

    cfg: HardwareConfig
    M: int
    K: int
    N: int
    tile_m: int
    tile_k: int
    tile_n: int
    loop_order: str
    out: str
    relu: bool
    shift: int
    bias: str  # "none", "row" or "full"
    program: Program
    image: DramImage
    a_addr: int
    b_addr: int
    c_addr: int
    d_addr: int | None

    # ---- layout ------------------------------------------------------------------------
    @property
    def c_elem_bytes(self) -> int:
        return 4 if self.out == "int32" else 1

    @property
    def c_dtype(self) -> type:
        return np.int32 if self.out == "int32" else np.int8

    @property
    def c_bytes(self) -> int:
        return self.M * self.N * self.c_elem_bytes

    @property
    def d_shape(self) -> tuple[int, int] | None:
        return {"none": None, "row": (1, self.N), "full": (self.M, self.N)}[self.bias]

    @property
    def expected_macs(self) -> int:
        return self.M * self.K * self.N

    def c_word_range(self) -> tuple[int, int]:
        """(lo, hi) DRAM word addresses (inclusive) covering C, e.g. for `$writememh`."""
        bus = self.cfg.dma_bus_bytes
        return self.c_addr // bus, (self.c_addr + self.c_bytes - 1) // bus

    # ---- data --------------------------------------------------------------------------
    def write_inputs(self, A: np.ndarray, B: np.ndarray, D: np.ndarray | None = None,
                     image: DramImage | None = None) -> None:
        """Store A, B (and D) at their addresses in `image` (default: self.image)."""
        image = self.image if image is None else image
        _check_shape("A", A, (self.M, self.K))
        _check_shape("B", B, (self.K, self.N))
        image.write(self.a_addr, np.asarray(A, np.int8))
        image.write(self.b_addr, np.asarray(B, np.int8))
        if self.bias != "none":
            if D is None:
                raise ValueError(f"D is required for bias={self.bias!r} (shape {self.d_shape})")
            _check_shape("D", D, self.d_shape)
            image.write(self.d_addr, np.asarray(D, np.int32))
        elif D is not None:
            raise ValueError("D given but the program was generated with bias=False")

    def read_inputs(self, image: DramImage | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(A, B, D) as stored in `image` (default: self.image)."""
        image = self.image if image is None else image
        A = image.read(self.a_addr, (self.M, self.K), np.int8)
        B = image.read(self.b_addr, (self.K, self.N), np.int8)
        D = None if self.bias == "none" else image.read(self.d_addr, self.d_shape, np.int32)
        return A, B, D

    def read_c(self, image: DramImage | None = None) -> np.ndarray:
        """C (M x N, int32 or int8) as stored in `image` (default: self.image)."""
        image = self.image if image is None else image
        return image.read(self.c_addr, (self.M, self.N), self.c_dtype)

    def reference(self, image: DramImage | None = None) -> np.ndarray:
        """The expected C for the inputs stored in `image`, from `gemm_reference`."""
        A, B, D = self.read_inputs(image)
        return gemm_reference(A, B, D, out=self.out, relu=self.relu, shift=self.shift)


def _check_shape(name: str, x: np.ndarray, shape: tuple[int, ...]) -> None:
    if np.shape(x) != tuple(shape):
        raise ValueError(f"{name} has shape {np.shape(x)}, expected {tuple(shape)}")


# ---------------------------------------------------------------------------------------
# tiling
# ---------------------------------------------------------------------------------------

def _normalize_tiles(cfg: HardwareConfig, M: int, K: int, N: int, tile_m: int, tile_k: int,
                     tile_n: int) -> tuple[int, int, int]:
    """Validate tile sizes and clamp them to the (dim-padded) problem."""
    d = cfg.dim
    for name, v in (("M", M), ("K", K), ("N", N), ("tile_m", tile_m)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}={v!r} must be an integer >= 1")
    for name, v in (("tile_k", tile_k), ("tile_n", tile_n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 or v % d:
            raise ValueError(f"{name}={v!r} must be a positive multiple of dim={d}")
    return min(int(tile_m), M), min(int(tile_k), _pad(K, d)), min(int(tile_n), _pad(N, d))


def _plan_buffers(cfg: HardwareConfig, tile_m: int, tile_k: int, tile_n: int) -> _Buffers:
    """Place the A, B and C tile buffers; raise ValueError if a tile does not fit."""
    d = cfg.dim
    half = cfg.sp_rows // 2
    a_rows = (tile_k // d) * tile_m
    b_rows = (tile_k // d) * tile_n
    c_rows = (tile_n // d) * tile_m
    if a_rows > half:
        raise ValueError(f"A tile tile_m={tile_m} x tile_k={tile_k} needs {a_rows} scratchpad rows; "
                         f"capacity {half} rows (half of {cfg.sp_rows})")
    if b_rows > half:
        raise ValueError(f"B tile tile_k={tile_k} x tile_n={tile_n} needs {b_rows} scratchpad rows; "
                         f"capacity {half} rows (half of {cfg.sp_rows})")
    if c_rows > cfg.acc_rows:
        raise ValueError(f"C tile tile_m={tile_m} x tile_n={tile_n} needs {c_rows} accumulator rows; "
                         f"capacity {cfg.acc_rows} rows")
    a = (0, half // 2) if 2 * a_rows <= half else (0,)
    b = (half, half + half // 2) if 2 * b_rows <= half else (half,)
    c = (0, cfg.acc_rows // 2) if 2 * c_rows <= cfg.acc_rows else (0,)
    return _Buffers(a, b, c)


def _steps(M: int, K: int, N: int, tile_m: int, tile_k: int, tile_n: int,
           loop_order: str) -> list[_Step]:
    """Tile steps in program order (k-tiles innermost)."""
    nm, nk, nn = _ceil_div(M, tile_m), _ceil_div(K, tile_k), _ceil_div(N, tile_n)
    if loop_order == "mnk":
        outer = [(mi, ni) for mi in range(nm) for ni in range(nn)]
    elif loop_order == "nmk":
        outer = [(mi, ni) for ni in range(nn) for mi in range(nm)]
    else:
        raise ValueError(f"loop_order={loop_order!r} must be 'mnk' or 'nmk'")
    out = []
    for mi, ni in outer:
        for ki in range(nk):
            m0, n0, k0 = mi * tile_m, ni * tile_n, ki * tile_k
            out.append(_Step(mi, ni, ki, m0, min(tile_m, M - m0), n0, min(tile_n, N - n0),
                             k0, min(tile_k, K - k0), ki == nk - 1))
    return out


def _assign(keys: list, buffers: tuple[int, ...]) -> list[tuple[int, bool]]:
    """Per step: (buffer base, needs a load).

    A tile still held by a buffer is reused; a new one goes into a buffer other than the
    previous step's (its loads are interleaved with the previous step's computes).
    """
    out: list[tuple[int, bool]] = []
    contents: list[object] = [None] * len(buffers)
    prev = len(buffers) - 1
    for key in keys:
        if key in contents:
            cur, needed = contents.index(key), False
        else:
            cur, needed = (prev + 1) % len(buffers), True
            contents[cur] = key
        out.append((buffers[cur], needed))
        prev = cur
    return out


# ---------------------------------------------------------------------------------------
# program emission
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Emitter:
    """Builds the instruction items of one GEMM (loads, computes, stores per tile step)."""

    d: int
    K: int
    N: int
    tile_m: int
    tile_n: int
    a_addr: int
    b_addr: int
    c_addr: int
    d_addr: int | None
    bias: str
    c_elem: int

    def _row_chunks(self, rows: int) -> Iterator[tuple[int, int]]:
        for r0 in range(0, rows, self.d):
            yield r0, min(self.d, rows - r0)

    def _blocks(self, n: int) -> Iterator[tuple[int, int]]:
        for b in range(_ceil_div(n, self.d)):
            yield b, min(self.d, n - b * self.d)

    @staticmethod
    def _mvin(dram: int, laddr: int, rows: int, cols: int, slot: int, acc: bool = False) -> Item:
        return Item((("mvin", dict(dram=dram, laddr=laddr, rows=rows, cols=cols, slot=slot,
                                   acc=acc)),),
                    writes=(("acc" if acc else "sp", laddr, laddr + rows - 1),))

    def load_a(self, s: _Step, buf: int, kb: int, kr: int) -> list[Item]:
        """MVINs of the A blocks of k-block kb (all row chunks of the tile)."""
        return [self._mvin(self.a_addr + (s.m0 + r0) * self.K + s.k0 + kb * self.d,
                           buf + kb * self.tile_m + r0, rows, kr, slot=0)
                for r0, rows in self._row_chunks(s.mrows)]

    def _b_laddr(self, buf: int, kb: int, nb: int) -> int:
        return buf + (kb * (self.tile_n // self.d) + nb) * self.d

    def load_b(self, s: _Step, buf: int, kb: int, kr: int) -> list[Item]:
        """MVINs of the B blocks of k-block kb (all n-blocks of the tile)."""
        return [self._mvin(self.b_addr + (s.k0 + kb * self.d) * self.N + s.n0 + nb * self.d,
                           self._b_laddr(buf, kb, nb), kr, nc, slot=1)
                for nb, nc in self._blocks(s.ncols)]

    def load_bias(self, s: _Step, buf: int) -> list[Item]:
        out = []
        for nb, nc in self._blocks(s.ncols):
            for r0, rows in self._row_chunks(s.mrows):
                dram = self.d_addr + (s.n0 + nb * self.d) * 4
                if self.bias == "full":
                    dram += (s.m0 + r0) * 4 * self.N
                out.append(self._mvin(dram, buf + nb * self.tile_m + r0, rows, nc, slot=2, acc=True))
        return out

    def compute(self, s: _Step, a_buf: int, b_buf: int, c_buf: int) -> list[Item]:
        """PRELOAD + COMPUTE pairs (k-blocks outermost; one item per pair)."""
        out = []
        for kb, kr in self._blocks(s.kcols):
            for nb, nc in self._blocks(s.ncols):
                accumulate = self.bias != "none" or s.ki > 0 or kb > 0
                b_laddr = self._b_laddr(b_buf, kb, nb)
                for i, mr in self._row_chunks(s.mrows):
                    c_laddr = c_buf + nb * self.tile_m + i
                    a_laddr = a_buf + kb * self.tile_m + i
                    reads = [("sp", a_laddr, a_laddr + mr - 1)]  # a_stride is 1
                    if i == 0:
                        pre = dict(b_laddr=b_laddr, b_rows=kr, b_cols=nc, c_laddr=c_laddr,
                                   c_rows=mr, c_cols=nc, accumulate=accumulate)
                        reads.append(("sp", b_laddr, b_laddr + kr - 1))
                    else:
                        pre = dict(b_none=True, c_laddr=c_laddr, c_rows=mr, c_cols=nc,
                                   accumulate=accumulate)
                    out.append(Item((("preload", pre),
                                     ("compute", dict(a_laddr=a_laddr, rows=mr, cols=kr,
                                                      preloaded=(i == 0)))),
                                    reads=tuple(reads),
                                    writes=(("acc", c_laddr, c_laddr + mr - 1),)))
        return out

    def store(self, s: _Step, buf: int) -> list[Item]:
        out = []
        for nb, nc in self._blocks(s.ncols):
            for r0, rows in self._row_chunks(s.mrows):
                dram = self.c_addr + ((s.m0 + r0) * self.N + s.n0 + nb * self.d) * self.c_elem
                laddr = buf + nb * self.tile_m + r0
                out.append(Item((("mvout", dict(dram=dram, laddr=laddr, rows=rows, cols=nc,
                                                acc=True)),),
                                reads=(("acc", laddr, laddr + rows - 1),)))
        return out


def _normalize_bias(bias: bool | str) -> str:
    if bias is False or bias is None or bias == "none":
        return "none"
    if bias is True or bias == "row":
        return "row"
    if bias == "full":
        return "full"
    raise ValueError(f"bias={bias!r} must be False, True, 'row' or 'full'")


def gemm_program(cfg: HardwareConfig, M: int, K: int, N: int, *, tile_m: int | None = None,
                 tile_k: int | None = None, tile_n: int | None = None, loop_order: str = "mnk",
                 out: str = "int32", relu: bool = False, shift: int = 0,
                 bias: bool | str = False, A: np.ndarray | None = None,
                 B: np.ndarray | None = None, D: np.ndarray | None = None) -> GemmProgram:
    """Generate the tiled GEMM program C = A x B (+ D) and its DRAM image.

    Tiles default to `default_tiles`. tile_k and tile_n must be multiples of cfg.dim;
    tiles larger than the problem are clamped. `out="int32"` stores raw accumulators
    (relu/shift have no effect, as with acc_full); `out="int8"` applies ReLU, the rounding
    shift and saturation. `bias`: False, True/"row" (1 x N int32) or "full" (M x N int32).
    If A and B (and D) are given they are written into the image; otherwise the regions
    are allocated and zero (fill them with `GemmProgram.write_inputs`).
    """
    if out not in ("int32", "int8"):
        raise ValueError(f"out={out!r} must be 'int32' or 'int8'")
    bias = _normalize_bias(bias)
    if None in (tile_m, tile_k, tile_n):
        dm, dk, dn = default_tiles(cfg, M, K, N)
        tile_m, tile_k, tile_n = tile_m or dm, tile_k or dk, tile_n or dn
    tile_m, tile_k, tile_n = _normalize_tiles(cfg, M, K, N, tile_m, tile_k, tile_n)
    bufs = _plan_buffers(cfg, tile_m, tile_k, tile_n)
    steps = _steps(M, K, N, tile_m, tile_k, tile_n, loop_order)

    image = DramImage(cfg)
    c_elem = 4 if out == "int32" else 1
    a_addr = image.alloc(M * K)
    b_addr = image.alloc(K * N)
    d_addr = None if bias == "none" else image.alloc(4 * N * (M if bias == "full" else 1))
    c_addr = image.alloc(M * N * c_elem)

    prog = Program(cfg)
    prog.config_ex(a_stride=1)
    prog.config_ld(slot=0, stride=K)
    prog.config_ld(slot=1, stride=N)
    if bias != "none":
        prog.config_ld(slot=2, stride=4 * N if bias == "full" else 0)
    prog.config_st(stride=N * c_elem, relu=relu, acc_full=(out == "int32"), shift=shift)

    em = _Emitter(cfg.dim, K, N, tile_m, tile_n, a_addr, b_addr, c_addr, d_addr, bias, c_elem)
    for item in _schedule(em, steps, bufs, bias != "none"):
        for method, kwargs in item.ops:
            getattr(prog, method)(**kwargs)
    prog.halt()

    gp = GemmProgram(cfg, M, K, N, tile_m, tile_k, tile_n, loop_order, out, bool(relu), shift,
                     bias, prog, image, a_addr, b_addr, c_addr, d_addr)
    if A is not None or B is not None:
        gp.write_inputs(A, B, D)
    return gp


def _schedule(em: _Emitter, steps: list[_Step], bufs: _Buffers, has_bias: bool) -> list[Item]:
    """All loads, computes and stores of the GEMM, software-pipelined (see the module doc).

    Block of step t: [loads of step t's single-buffered operands] then the execute stream
    of step t merged with the loads of step t+1 (double-buffered operands) and the stores
    of step t-1 (double-buffered C), then the stores of step t if C is single-buffered.
    Step 0's loads all come first (prologue) and the last C tile is stored at the end.
    """
    a = _assign([(s.mi, s.ki) for s in steps], bufs.a)
    b = _assign([(s.ki, s.ni) for s in steps], bufs.b)
    c = _assign([(s.mi, s.ni) for s in steps], bufs.c)
    c_double = len(bufs.c) > 1

    def loads(t: int, prefetched: bool | None) -> list[Item]:
        """Step t's loads (all, or only those of (not) double-buffered operands): the A and
        B blocks in k-block order (the order the computes use them), then the bias."""
        s = steps[t]
        want = lambda bufs_: prefetched is None or (len(bufs_) > 1) == prefetched
        (a_buf, a_new), (b_buf, b_new), (c_buf, c_new) = a[t], b[t], c[t]
        out: list[Item] = []
        for kb, kr in em._blocks(s.kcols):
            if a_new and want(bufs.a):
                out += em.load_a(s, a_buf, kb, kr)
            if b_new and want(bufs.b):
                out += em.load_b(s, b_buf, kb, kr)
        if has_bias and c_new and want(bufs.c):
            out += em.load_bias(s, c_buf)
        return out

    def stores(t: int) -> list[Item]:
        return em.store(steps[t], c[t][0]) if 0 <= t < len(steps) and steps[t].last_k else []

    out: list[Item] = []
    for t, s in enumerate(steps):
        out += loads(t, None if t == 0 else False)
        prefetch = loads(t + 1, True) if t + 1 < len(steps) else []
        out += merge(stores(t - 1) if c_double else [], em.compute(s, a[t][0], b[t][0], c[t][0]),
                     prefetch)
        if not c_double:
            out += stores(t)
    if c_double:
        out += stores(len(steps) - 1)
    return out


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def _candidates(x: int, d: int, multiple: bool) -> list[int]:
    """Powers of two times d up to x (padded to d), plus x itself."""
    top = _pad(x, d) if multiple else x
    out = {top}
    v = d
    while v < top:
        out.add(v)
        v *= 2
    return sorted(out)


def default_tiles(cfg: HardwareConfig, M: int, K: int, N: int) -> tuple[int, int, int]:
    """Large (tile_m, tile_k, tile_n) that fit with A, B and C double-buffered.

    Minimises the DRAM bytes loaded (A is reloaded per n-tile unless K is one tile, B per
    m-tile unless it is the only B tile), then the number of tile steps.
    """
    d = cfg.dim
    half = cfg.sp_rows // 2
    best, best_cost = (min(d, M), d, d), None
    for tm in _candidates(M, d, False):
        for tk in _candidates(K, d, True):
            for tn in _candidates(N, d, True):
                if (2 * (tk // d) * tm > half or 2 * (tk // d) * tn > half
                        or 2 * (tn // d) * tm > cfg.acc_rows):
                    continue
                nm, nk, nn = _ceil_div(M, tm), _ceil_div(K, tk), _ceil_div(N, tn)
                a_bytes = M * K * (1 if nk == 1 else nn)
                b_bytes = K * N * (1 if nk == 1 and nn == 1 else nm)
                cost = (a_bytes + b_bytes, nm * nk * nn, -tm)
                if best_cost is None or cost < best_cost:
                    best, best_cost = (tm, tk, tn), cost
    return best


def random_gemm_inputs(rng: np.random.Generator, M: int, K: int, N: int, bias: bool | str = False,
                       bias_range: int = 1 << 12) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Random int8 A (M x K), B (K x N) and, if `bias`, an int32 D of the matching shape."""
    A = rng.integers(-128, 128, (M, K), dtype=np.int8)
    B = rng.integers(-128, 128, (K, N), dtype=np.int8)
    mode = _normalize_bias(bias)
    D = None
    if mode != "none":
        D = rng.integers(-bias_range, bias_range, (1 if mode == "row" else M, N), dtype=np.int32)
    return A, B, D
