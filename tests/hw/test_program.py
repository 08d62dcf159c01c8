"""Fast tests (no simulator) for hw.program, hw.tiled_gemm and hw.reference."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hw.config import HardwareConfig
from hw.isa import ConfigTarget, Op, decode, encode
from hw.program import (DramImage, Program, ProgramError, interpret, parse_hex_words,
                        read_dump_hex, words_to_hex_lines, write_imem_hex)
from hw.reference import gemm_reference, round_shift, store_transform, wrap_int32
from hw.schedule import Item, merge
from hw.tiled_gemm import default_tiles, gemm_program, random_gemm_inputs

SMALL = HardwareConfig(dim=4, sp_kb=8, acc_kb=8, dma_bus_bytes=8, dma_max_req_bytes=16, dram_mb=1)
DEFAULT = HardwareConfig()


def last(p: Program) -> tuple[Op, dict[str, int]]:
    return decode(p.words[-1])


# ---------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------

def test_config_encodings():
    p = Program(DEFAULT)
    assert last(p.config_ex(a_stride=3)) == (Op.CONFIG, dict(
        funct=ConfigTarget.EX, slot=0, relu=0, acc_full=0, shift=0, stride=3, stride1=0))
    assert last(p.config_ex(a_stride=2, a_stride1=DEFAULT.sp_rows - 1)) == (Op.CONFIG, dict(
        funct=ConfigTarget.EX, slot=0, relu=0, acc_full=0, shift=0, stride=2, stride1=DEFAULT.sp_rows - 1))
    assert last(p.config_ld(2, 1000)) == (Op.CONFIG, dict(
        funct=ConfigTarget.LD, slot=2, relu=0, acc_full=0, shift=0, stride=1000, stride1=0))
    assert last(p.config_st(64, relu=True, acc_full=True, shift=31)) == (Op.CONFIG, dict(
        funct=ConfigTarget.ST, slot=0, relu=1, acc_full=1, shift=31, stride=64, stride1=0))


def test_data_movement_encodings():
    p = Program(DEFAULT).config_ld(1, 16)
    assert last(p.mvin(0x1234, 100, 16, 5, slot=1)) == (Op.MVIN, dict(
        slot=1, acc=0, rows=16, cols=5, laddr=100, dram=0x1234))
    assert last(p.mvin(0x40, DEFAULT.acc_rows - 2, 2, 16, acc=True)) == (Op.MVIN, dict(
        slot=0, acc=1, rows=2, cols=16, laddr=DEFAULT.acc_rows - 2, dram=0x40))
    assert last(p.mvout(0x80, 7, 1, 1, acc=True)) == (Op.MVOUT, dict(
        acc=1, rows=1, cols=1, laddr=7, dram=0x80))


def test_execute_and_control_encodings():
    p = Program(DEFAULT)
    assert last(p.preload(10, 16, 3, 20, 4, 5, accumulate=True)) == (Op.PRELOAD, dict(
        b_none=0, accumulate=1, rows=16, cols=3, laddr=10, laddr2=20, rows2=4, cols2=5))
    assert last(p.preload(b_none=True, c_laddr=30, c_rows=16, c_cols=16)) == (Op.PRELOAD, dict(
        b_none=1, accumulate=0, rows=0, cols=0, laddr=0, laddr2=30, rows2=16, cols2=16))
    assert last(p.compute(50, 7, 9)) == (Op.COMPUTE_PRELOADED, dict(rows=7, cols=9, laddr=50))
    assert last(p.compute(51, 16, 16, preloaded=False)) == (
        Op.COMPUTE_ACCUMULATED, dict(rows=16, cols=16, laddr=51))
    assert last(p.fence()) == (Op.FENCE, {})
    assert last(p.halt()) == (Op.HALT, {})
    assert len(p) == 6
    assert p.expected_macs() == 7 * 9 * 16 + 16 * 16 * 16
    p.preload(b_none=True, c_laddr=DEFAULT.acc_rows - 7 * 100, c_rows=1, c_cols=5)
    assert last(p.compute_block(60, 9, 7, 100, preloaded=False)) == (Op.COMPUTE_BLOCK, dict(
        preloaded=0, cols=9, laddr=60, run=7, reps=100))
    assert last(p.compute_block(1, 3, 700, preloaded=True)) == (Op.COMPUTE_BLOCK, dict(
        preloaded=1, cols=3, laddr=1, run=700, reps=1))
    assert p.expected_macs() == 7 * 9 * 16 + 16 * 16 * 16 + 7 * 100 * 9 * 5 + 700 * 3 * 5
    top = dict(preloaded=1, cols=63, laddr=(1 << 24) - 1, run=65535, reps=65535)
    assert decode(encode(Op.COMPUTE_BLOCK, **top)) == (Op.COMPUTE_BLOCK, top)


def test_hex_lines_and_imem_file(tmp_path):
    p = Program(DEFAULT).config_st(4, shift=2).mvout(0x1000, 3, 2, 4, acc=True).halt()
    lines = p.to_hex_lines()
    assert all(re.fullmatch(r"[0-9a-f]{32}", line) for line in lines)
    assert [int(line, 16) for line in lines] == p.words
    write_imem_hex(tmp_path / "imem.hex", p.words)
    words = parse_hex_words((tmp_path / "imem.hex").read_text())
    assert [words[i] for i in range(len(p))] == p.words


def test_imem_file_equals_the_hex_lines_of_any_words(tmp_path):
    """The vectorised writer gives exactly `words_to_hex_lines`'s text, at the edges of
    both 64-bit halves too; out-of-range words are its ProgramError."""
    rng = np.random.default_rng(5)
    edge = [0, 1, (1 << 64) - 1, 1 << 64, (1 << 128) - 1, (1 << 127) | 1]
    words = edge + [int(a) << 64 | int(b) for a, b in rng.integers(0, 1 << 63, (500, 2), dtype=np.uint64)]
    f = tmp_path / "imem.hex"
    write_imem_hex(f, words)
    assert f.read_text() == "\n".join(words_to_hex_lines(words, 128)) + "\n"
    write_imem_hex(f, [])
    assert f.read_text() == "\n"
    for bad in (-1, 1 << 128):
        with pytest.raises(ProgramError, match="out of range"):
            write_imem_hex(f, [3, bad])


# ---------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda p: p.mvin(0, 0, 5, 4), "mvin: rows=5 out of range 1..4"),
    (lambda p: p.mvin(0, 0, 4, 0), "mvin: cols=0 out of range 1..4"),
    (lambda p: p.mvin(0, 0, 1, 1, slot=3), "mvin: slot=3 out of range 0..2"),
    (lambda p: p.mvin(0, 2046, 4, 4), "mvin: laddr=2046 with rows=4 reaches scratchpad row 2049, "
                                      "out of range 0..2047"),
    (lambda p: p.mvin(0, 512, 1, 4, acc=True), "mvin: laddr=512 out of range 0..511"),
    (lambda p: p.mvout(0, -1, 1, 4), "mvout: laddr=-1 out of range 0..2047"),
    (lambda p: p.mvin(0xFFFFE, 0, 1, 4), "mvin: dram=0xffffe with rows=1 of 4 bytes at stride 0 "
                                         "reaches byte 0x100001, out of range 0..0xfffff"),
    (lambda p: p.mvin(1 << 20, 0, 1, 4), "mvin: dram=1048576 out of range 0..1048575"),
    (lambda p: p.preload(0, 4, 4, 510, 4, 4), "preload: c_laddr=510 with rows=4 reaches accumulator "
                                              "row 513, out of range 0..511"),
    (lambda p: p.preload(0, 4, 5, 0, 4, 4), "preload: b_cols=5 out of range 1..4"),
    (lambda p: p.preload(b_none=True, c_laddr=0, c_rows=0, c_cols=1),
     "preload: c_rows=0 out of range 1..4"),
    (lambda p: p.preload(0, 4, 4, 0, 4, 4).compute(0, 4, 17), "compute: cols=17 out of range 1..4"),
    (lambda p: p.compute(0, 4, 4), "compute: no PRELOAD before the first COMPUTE (C destination unset)"),
    (lambda p: p.config_st(0, shift=32), "config_st: shift=32 out of range 0..31"),
    (lambda p: p.config_ex(1, 2048), "config_ex: a_stride1=2048 out of range 0..2047"),
    (lambda p: p.compute_block(0, 4, 4), "compute_block: no PRELOAD before the first COMPUTE (C destination unset)"),
    (lambda p: p.preload(0, 4, 4, 0, 4, 4).compute_block(0, 4, 0), "compute_block: run=0 out of range 1..65535"),
    (lambda p: p.preload(0, 4, 4, 0, 4, 4).compute_block(0, 4, 1, 65536),
     "compute_block: reps=65536 out of range 1..65535"),
    (lambda p: p.preload(0, 4, 4, 0, 4, 4).compute_block(0, 5, 1), "compute_block: cols=5 out of range 1..4"),
    (lambda p: p.config_ex(2, 100).preload(0, 4, 4, 0, 4, 4).compute_block(50, 4, 4, 21),
     "compute_block: a_laddr=50 with run=4 (a_stride=2) and reps=21 (a_stride1=100) reaches scratchpad "
     "row 2056, out of range 0..2047"),
    (lambda p: p.preload(0, 4, 4, 500, 4, 4).compute_block(0, 4, 4, 4),
     "compute_block: run*reps=16 C rows from accumulator row 500 reach row 515, out of range 0..511"),
    (lambda p: p.config_ld(3, 0), "config_ld: slot=3 out of range 0..2"),
    (lambda p: p.config_ld(0, True), "config_ld: stride=True must be an integer in 0..1048575"),
])
def test_validation_messages(call, message):
    with pytest.raises(ProgramError, match=f"^{re.escape(message)}$"):
        call(Program(SMALL))


def test_validation_uses_latest_config():
    p = Program(SMALL).config_ex(a_stride=500)
    p.preload(0, 4, 4, 0, 4, 4)
    p.compute(0, 4, 4)  # rows 0, 500, 1000, 1500
    with pytest.raises(ProgramError, match=re.escape(
            "compute: a_laddr=600 with rows=4 and a_stride=500 reaches scratchpad row 2100, "
            "out of range 0..2047")):
        p.compute(600, 4, 4)
    p.config_ld(1, 0x60000)
    p.mvin(0, 0, 3, 4, slot=1)
    with pytest.raises(ProgramError, match="^mvin: dram=0x0 with rows=4 of 4 bytes at stride 393216 "
                                           "reaches byte 0x120003"):
        p.mvin(0, 0, 4, 4, slot=1)
    p.config_st(0, acc_full=True)
    with pytest.raises(ProgramError, match="rows=1 of 16 bytes at stride 0 reaches byte 0x100007"):
        p.mvout((1 << 20) - 8, 0, 1, 4, acc=True)
    p.mvout((1 << 20) - 8, 0, 1, 4)  # scratchpad rows: 4 bytes each
    assert ProgramError.__mro__[1] is ValueError


def test_imem_depth_check(tmp_path):
    p = Program(HardwareConfig(imem_depth=64))
    for _ in range(65):
        p.fence()
    with pytest.raises(ProgramError, match=r"^program length=65 out of range 0\.\.64 \(imem_depth\)$"):
        p.write_hex(tmp_path / "x.hex")


# ---------------------------------------------------------------------------------------
# DRAM image and hex files
# ---------------------------------------------------------------------------------------

def test_alloc():
    im = DramImage(SMALL)
    a = im.alloc(3)
    b = im.alloc(5)
    c = im.alloc(1, align=64)
    assert a % 8 == 0 and b == a + 8 and c % 64 == 0 and c > b and a > 0
    with pytest.raises(ProgramError, match="^alloc: nbytes=1048576 at"):
        im.alloc(1 << 20)


def test_write_read_arrays():
    im = DramImage(SMALL)
    x = np.arange(-20, 20, dtype=np.int32).reshape(5, 8)
    im.write(0x1003, x)
    assert np.array_equal(im.read(0x1003, (5, 8), np.int32), x)
    assert im.read_bytes(0x1003, 4) == (-20).to_bytes(4, "little", signed=True)
    assert im.read_bytes(0x2000, 3) == b"\0\0\0"
    big = np.array([[1, 2]], dtype=">i4")  # stored little-endian whatever the input order
    im.write(0x3000, big)
    assert im.read_bytes(0x3000, 8) == bytes([1, 0, 0, 0, 2, 0, 0, 0])
    with pytest.raises(ProgramError):
        im.write((1 << 20) - 2, np.zeros(4, np.int8))


@pytest.mark.parametrize("bus", [4, 16, 64])
def test_hex_round_trip_random(tmp_path, bus):
    cfg = HardwareConfig(dma_bus_bytes=bus, dma_max_req_bytes=64, dram_mb=1)
    rng = np.random.default_rng(bus)
    im = DramImage(cfg)
    for _ in range(40):  # unaligned writes of random length, some overlapping or adjacent
        addr = int(rng.integers(0, 20000))
        im.write(addr, rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8))
    im.write(4094, np.arange(7, dtype=np.uint8))  # across the image's page boundary
    path = tmp_path / "dram.hex"
    im.write_hex(path)
    lines = path.read_text().split()
    assert all(re.fullmatch(r"@[0-9a-f]+|[0-9a-f]{%d}" % (2 * bus), line) for line in lines)
    words = im.touched_words()
    assert len(words) == sum(not line.startswith("@") for line in lines)
    runs = sum(1 for i, w in enumerate(words) if i == 0 or words[i - 1] != w - 1)
    assert runs == sum(line.startswith("@") for line in lines)

    lo, hi = 0, 20400 // bus
    back = read_dump_hex(path, lo, cfg, hi)
    assert back == im.read_bytes(0, (hi + 1) * bus)
    fresh = DramImage(cfg)
    fresh.load_dump(path, lo, hi)
    assert fresh.read_bytes(0, (hi + 1) * bus) == im.read_bytes(0, (hi + 1) * bus)


def test_word_byte_order(tmp_path):
    im = DramImage(SMALL)
    im.write(8, np.arange(1, 9, dtype=np.uint8))
    im.write(17, np.array([0xAB], np.uint8))
    assert im.to_hex_lines() == ["@1", "0807060504030201", "000000000000ab00"]


def test_read_dump_formats(tmp_path):
    text = """// memory dump
    0000000000000001 00000000000000ff   // two words on one line

    @12
    x0x0_0000_0000_zz02
    /* block comment */ 0123456789abcdef
    """
    path = tmp_path / "dump.hex"
    path.write_text(text)
    data = read_dump_hex(path, 0x10, SMALL)
    words = [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]
    assert words == [1, 0xFF, 2, 0x0123456789ABCDEF]
    assert len(read_dump_hex(path, 0x10, SMALL, hi_word=0x15)) == 6 * 8


# ---------------------------------------------------------------------------------------
# reference model
# ---------------------------------------------------------------------------------------

def test_store_transform():
    x = np.array([-3, -2, -1, 0, 1, 2, 3, 5, 1 << 20, -(1 << 20), 2**31 - 1, -2**31], np.int32)
    assert store_transform(x, shift=1).tolist() == [-1, -1, 0, 0, 1, 1, 2, 3, 127, -128, 127, -128]
    assert store_transform(x, relu=True, shift=1).tolist() == [0, 0, 0, 0, 1, 1, 2, 3, 127, 0, 127, 0]
    assert store_transform(x).tolist() == [-3, -2, -1, 0, 1, 2, 3, 5, 127, -128, 127, -128]
    assert store_transform(x, relu=True, shift=4, acc_full=True).dtype == np.int32
    assert np.array_equal(store_transform(x, relu=True, shift=4, acc_full=True), x)
    assert round_shift(np.array([2**31 - 1]), 31).tolist() == [1]
    assert round_shift(np.array([-2**31]), 31).tolist() == [-1]


def test_gemm_reference_wraps_and_broadcasts():
    A = np.full((1, 2), -128, np.int8)
    B = np.full((2, 1), -128, np.int8)
    D = np.array([[2**31 - 32768]], np.int32)
    assert gemm_reference(A, B, D)[0, 0] == wrap_int32(2**31 + 32768 - 32768 + 0)
    rng = np.random.default_rng(1)
    A, B, D = random_gemm_inputs(rng, 3, 5, 4, bias="row")
    want = store_transform(wrap_int32(A.astype(np.int64) @ B + D), relu=True, shift=6)
    assert np.array_equal(gemm_reference(A, B, D, out="int8", relu=True, shift=6), want)


# ---------------------------------------------------------------------------------------
# interpreter
# ---------------------------------------------------------------------------------------

def test_interpreter_semantics():
    cfg = SMALL
    rng = np.random.default_rng(2)
    im = DramImage(cfg)
    a_addr, w_addr, c_addr = im.alloc(64), im.alloc(64), im.alloc(256)
    A = rng.integers(-128, 128, (8, 4), dtype=np.int8)
    W = rng.integers(-128, 128, (4, 4), dtype=np.int8)
    im.write(a_addr, A)
    im.write(w_addr, W)
    p = Program(cfg).config_ld(0, 4).config_ex(a_stride=2).config_st(16, acc_full=True)
    p.mvin(a_addr, 0, 4, 4).mvin(a_addr + 16, 4, 4, 3)  # rows 4..7: column 3 zero-filled
    p.mvin(w_addr, 100, 4, 4)
    p.preload(100, 3, 4, 10, 2, 3)            # weights: rows < 3 only; C: 2 rows, 3 cols
    p.compute(0, 4, 4)                        # A rows 0, 2, 4, 6
    p.preload(b_none=True, c_laddr=10, c_rows=4, c_cols=4, accumulate=True)
    p.compute(1, 4, 2, preloaded=False)       # A rows 1, 3, 5, 7, cols < 2, same weights
    p.mvout(c_addr, 10, 4, 4, acc=True).halt().fence()
    st = interpret(p, im)
    Wm = W.astype(np.int64).copy()
    Wm[3:] = 0
    A2 = A.astype(np.int64).copy()
    A2[4:, 3] = 0
    first = A2[[0, 2, 4, 6]] @ Wm
    second = A2[[1, 3, 5, 7]][:, :2] @ Wm[:2]
    want = np.zeros((4, 4), np.int64)
    want[:2, :3] = first[:2, :3]
    want += second
    assert np.array_equal(im.read(c_addr, (4, 4), np.int32), want)
    assert st.halted and st.executed == len(p) - 1
    assert st.macs == p.expected_macs() == 4 * 4 * 3 + 4 * 2 * 4


def test_interpreter_swaps_weights():
    cfg = SMALL
    im = DramImage(cfg)
    src = im.alloc(16)
    im.write(src, np.eye(4, dtype=np.int8))
    p = Program(cfg).config_ld(0, 4)
    p.mvin(src, 0, 4, 4)                                  # sp 0..3 = I
    p.preload(0, 4, 4, 0, 4, 4).compute(0, 4, 4)          # active = I, C0 = I
    p.preload(0, 2, 2, 4, 4, 4).compute(0, 4, 4)          # active = I[:2,:2]
    p.preload(b_none=True, c_laddr=8, c_rows=4, c_cols=4).compute(0, 4, 4)  # swap back to I
    st = interpret(p, im)
    eye2 = np.zeros((4, 4), np.int32)
    eye2[:2, :2] = np.eye(2)
    assert np.array_equal(st.acc[0:4], np.eye(4)) and np.array_equal(st.acc[4:8], eye2)
    assert np.array_equal(st.acc[8:12], np.eye(4))


def test_interpreter_compute_block_semantics():
    """COMPUTE_BLOCK against numpy: reps runs of run A rows (row laddr + j*a_stride1 +
    i*a_stride, columns >= cols zero) into run*reps consecutive C rows (all written, the
    PRELOAD's rows2 unused), accumulate from the PRELOAD, swap only when preloaded."""
    cfg = SMALL
    rng = np.random.default_rng(5)
    im = DramImage(cfg)
    a_addr, w_addr = im.alloc(4 * 64), im.alloc(32)
    A = rng.integers(-128, 128, (64, 4), dtype=np.int8)
    W1, W2 = (rng.integers(-128, 128, (4, 4), dtype=np.int8) for _ in range(2))
    im.write(a_addr, A)
    im.write(w_addr, np.concatenate([W1, W2]))
    p = Program(cfg).config_ld(0, 4).config_ex(a_stride=3, a_stride1=10)
    for r in range(0, 64, 4):
        p.mvin(a_addr + 4 * r, r, 4, 4)
    p.mvin(w_addr, 100, 4, 4).mvin(w_addr + 16, 104, 4, 4)
    p.preload(100, 4, 4, 20, 1, 4)                       # W1; C rows 20.. (rows2 = 1 is not used)
    p.compute_block(2, 3, run=4, reps=5)                 # swap in W1: 20 rows, A cols < 3
    p.preload(104, 4, 2, 40, 4, 2, accumulate=True)      # W2 into the shadow; C 40.., 2 cols
    p.compute_block(1, 4, run=2, reps=3, preloaded=False)  # keeps W1 active
    p.preload(b_none=True, c_laddr=40, c_rows=4, c_cols=4, accumulate=True)
    p.compute_block(0, 4, run=6, reps=1)                 # swaps in W2 (its cols >= 2 are zero)
    st = interpret(p, im)
    a64 = A.astype(np.int64)
    rows1 = [2 + 10 * j + 3 * i for j in range(5) for i in range(4)]
    a1 = a64[rows1].copy()
    a1[:, 3:] = 0
    np.testing.assert_array_equal(st.acc[20:40], wrap_int32(a1 @ W1.astype(np.int64)))
    rows2 = [1 + 10 * j + 3 * i for j in range(3) for i in range(2)]
    w2 = W2.astype(np.int64).copy()
    w2[:, 2:] = 0
    want = np.zeros((6, 4), np.int64)
    want[:, :2] = (a64[rows2] @ W1.astype(np.int64))[:, :2]   # accumulate onto zeros, 2 cols
    want += a64[[3 * i for i in range(6)]] @ w2
    np.testing.assert_array_equal(st.acc[40:46], wrap_int32(want))
    assert st.macs == p.expected_macs() == 20 * 3 * 4 + 6 * 4 * 2 + 6 * 4 * 4


def test_compute_block_equals_the_compute_sequence():
    """A COMPUTE_BLOCK gives what its runs cut into COMPUTEs of <= dim rows give."""
    cfg = SMALL
    rng = np.random.default_rng(6)
    for trial in range(20):
        run, reps = int(rng.integers(1, 9)), int(rng.integers(1, 5))
        s0, s1 = int(rng.integers(0, 4)), int(rng.integers(0, 9))
        acc0 = bool(rng.integers(0, 2))
        im = DramImage(cfg)
        a_addr, w_addr, c_addr = im.alloc(4 * 64), im.alloc(16), im.alloc(4 * 4 * 64)
        im.write(a_addr, rng.integers(-128, 128, (64, 4), dtype=np.int8))
        im.write(w_addr, rng.integers(-128, 128, (4, 4), dtype=np.int8))
        im.write(c_addr, rng.integers(-2**31, 2**31, (64, 4), dtype=np.int64).astype(np.int32))
        outs = []
        for block in (True, False):
            img = im.copy()
            p = Program(cfg).config_ld(0, 4).config_ld(2, 16).config_st(16, acc_full=True)
            for r in range(0, 64, 4):
                p.mvin(a_addr + 4 * r, r, 4, 4).mvin(c_addr + 16 * r, r, 4, 4, slot=2, acc=True)
            p.mvin(w_addr, 100, 4, 4).config_ex(a_stride=s0, a_stride1=s1)
            if block:
                p.preload(100, 4, 4, 7, 1, 3, accumulate=acc0).compute_block(5, 3, run=run, reps=reps)
            else:
                first = True
                for j in range(reps):
                    for i0 in range(0, run, 4):
                        n = min(4, run - i0)
                        c = 7 + j * run + i0
                        if first:
                            p.preload(100, 4, 4, c, n, 3, accumulate=acc0)
                        else:
                            p.preload(b_none=True, c_laddr=c, c_rows=n, c_cols=3, accumulate=acc0)
                        p.compute(5 + j * s1 + i0 * s0, n, 3, preloaded=first)
                        first = False
            p.fence()
            for r in range(0, 64, 4):
                p.mvout(c_addr + 16 * r, r, 4, 4, acc=True)
            interpret(p.halt(), img)
            outs.append(img.read(c_addr, (64, 4), np.int32))
        np.testing.assert_array_equal(outs[0], outs[1], err_msg=f"trial {trial}")


def test_interpreter_requires_fence_for_dram_raw():
    im = DramImage(SMALL)
    buf = im.alloc(16)
    p = Program(SMALL).config_st(4).config_ld(0, 4).mvout(buf, 0, 1, 4).mvin(buf, 0, 1, 4)
    with pytest.raises(ProgramError, match="MVOUT without a FENCE"):
        interpret(p, im.copy())
    p = Program(SMALL).config_st(4).config_ld(0, 4).mvout(buf, 0, 1, 4).fence().mvin(buf, 0, 1, 4)
    interpret(p, im.copy())


# ---------------------------------------------------------------------------------------
# tiled GEMM
# ---------------------------------------------------------------------------------------

def run_gemm(cfg: HardwareConfig, M: int, K: int, N: int, seed: int = 0, **kw):
    A, B, D = random_gemm_inputs(np.random.default_rng(seed), M, K, N, kw.get("bias", False))
    gp = gemm_program(cfg, M, K, N, A=A, B=B, D=D, **kw)
    image = gp.image.copy()
    st = interpret(gp.program, image)
    want = gemm_reference(A, B, D, out=gp.out, relu=gp.relu, shift=gp.shift)
    got = gp.read_c(image)
    assert got.dtype == want.dtype
    assert np.array_equal(got, want)
    assert st.halted and st.macs == gp.expected_macs == gp.program.expected_macs() == M * K * N
    assert np.array_equal(gp.reference(), want)
    return gp, image


@pytest.mark.parametrize("shape, kw", [
    ((4, 4, 4), dict(tile_m=4, tile_k=4, tile_n=4)),
    ((13, 22, 9), dict(tile_m=6, tile_k=8, tile_n=8)),                        # partial tiles, 3 k-tiles
    ((13, 22, 9), dict(tile_m=5, tile_k=4, tile_n=4, out="int8", relu=True, shift=7)),
    ((17, 9, 11), dict(tile_m=9, tile_k=8, tile_n=12, bias=True, out="int8", shift=5)),
    ((17, 9, 11), dict(tile_m=3, tile_k=4, tile_n=4, bias="full", loop_order="nmk")),
    ((30, 33, 20), dict(tile_m=64, tile_k=64, tile_n=8, relu=True)),          # clamped tiles
    ((70, 130, 9), dict(tile_m=64, tile_k=64, tile_n=4)),                     # single-buffered A
    ((70, 9, 80), dict(tile_m=64, tile_k=4, tile_n=32, bias=True)),           # single-buffered C
    ((20, 8, 24), dict(tile_m=8, tile_k=8, tile_n=8, bias="full")),           # one k-tile: bias loads
    ((13, 7, 22), dict(tile_m=5, tile_k=8, tile_n=12, bias="full", loop_order="nmk")),  # reuse C bufs
    ((21, 19, 23), dict()),                                                   # default tiles
])
def test_gemm_small_dim(shape, kw):
    run_gemm(SMALL, *shape, **kw)


def test_gemm_default_config_and_one_bank():
    run_gemm(DEFAULT, 40, 70, 33, tile_m=24, tile_k=32, tile_n=16, out="int8", shift=9, bias=True)
    one_bank = HardwareConfig(dim=8, sp_kb=8, acc_kb=8, sp_banks=1, acc_banks=1)
    run_gemm(one_bank, 40, 70, 33, out="int8", relu=True, shift=8)


def test_gemm_dump_flow(tmp_path):
    """C read back through a `$writememh`-style dump of the word range, as a testbench would."""
    gp, image = run_gemm(SMALL, 10, 12, 6, tile_m=4, tile_k=8, tile_n=4)
    lo, hi = gp.c_word_range()
    bus = SMALL.dma_bus_bytes
    assert lo * bus <= gp.c_addr and (hi + 1) * bus >= gp.c_addr + gp.c_bytes
    dump = "\n".join(image.read_bytes(w * bus, bus)[::-1].hex() for w in range(lo, hi + 1))
    (tmp_path / "c.hex").write_text("// $writememh\n" + dump + "\n")
    fresh = gp.image.copy()
    fresh.load_dump(tmp_path / "c.hex", lo, hi)
    assert np.array_equal(gp.read_c(fresh), gp.reference())


def test_gemm_prefetch_order_and_layout():
    gp = gemm_program(SMALL, 8, 8, 8, tile_m=4, tile_k=4, tile_n=4)
    ops = [decode(w)[0] for w in gp.program.words]
    preloads = [i for i, op in enumerate(ops) if op == Op.PRELOAD]
    # prologue: step 0's A and B blocks; step 1's (next k) are prefetched during step 0
    assert ops[:preloads[0]].count(Op.MVIN) == 2
    assert ops[:preloads[1]].count(Op.MVIN) == 4
    assert ops[-1] == Op.HALT and ops.count(Op.MVOUT) == 4
    half = SMALL.sp_rows // 2
    for w in gp.program.words:
        op, f = decode(w)
        if op == Op.MVIN and f["slot"] == 0:
            assert f["laddr"] < half
        if op == Op.MVIN and f["slot"] == 1:
            assert f["laddr"] >= half
    assert gp.c_addr >= gp.b_addr + 64 and gp.d_addr is None


def _longest_run(ops: list[Op], op: Op) -> int:
    best = cur = 0
    for o in ops:
        cur = cur + 1 if o == op else 0
        best = max(best, cur)
    return best


@pytest.mark.parametrize("bias", [False, True])
def test_gemm_streams_interleaved(bias):
    """Loads, computes and stores are software-pipelined: after the prologue (step 0's loads)
    no long run of one unit's instructions fills its 8-deep queue; C tile t-1 is stored
    while tile t is computed, and only the last tile is stored after the last COMPUTE."""
    cfg = HardwareConfig(imem_depth=16384)
    gp, _ = run_gemm(cfg, 256, 256, 256, tile_m=256, tile_k=256, tile_n=32, bias=bias)
    gp.program.check_imem()
    ops = [decode(w)[0] for w in gp.program.words]
    computes = (Op.COMPUTE_PRELOADED, Op.COMPUTE_ACCUMULATED)
    first = ops.index(Op.PRELOAD)
    last = max(i for i, op in enumerate(ops) if op in computes)
    n_bias = 16 * 2 if bias else 0                            # per C tile (16 row chunks x 2 n-blocks)
    prologue = ops[:first]
    assert set(prologue) == {Op.CONFIG, Op.MVIN}
    assert prologue.count(Op.MVIN) == 16 * 16 + 16 * 2 + n_bias  # all of A, B and bias of step 0
    body = ops[first:last + 1]
    assert _longest_run(body, Op.MVIN) <= 8 and _longest_run(body, Op.MVOUT) <= 8
    assert body.count(Op.MVOUT) == 7 * 32                     # tiles 0..6 stored during computes
    assert ops[last + 1:] == [Op.MVOUT] * 32 + [Op.HALT]      # flush of the last C tile
    assert all(ops[i + 1] in computes for i, op in enumerate(ops) if op == Op.PRELOAD)
    assert ops.count(Op.MVIN) == 256 + 8 * 32 + 8 * n_bias and ops.count(Op.PRELOAD) == 8 * 512


def test_gemm_single_c_buffer_stores_after_computes():
    """With one C buffer, a tile's stores follow its computes (they could not overlap)."""
    gp, _ = run_gemm(SMALL, 70, 9, 80, tile_m=64, tile_k=4, tile_n=32)
    ops = [decode(w)[0] for w in gp.program.words]
    mvouts = [i for i, op in enumerate(ops) if op == Op.MVOUT]
    # 6 C tiles (2 m-tiles x 3 n-tiles), each stored as one run of MVOUTs
    runs = sum(1 for j, i in enumerate(mvouts) if j == 0 or mvouts[j - 1] != i - 1)
    assert runs == 6


def _item(unit: str, reads=(), writes=()) -> Item:
    return Item(((unit, {}),), tuple(reads), tuple(writes))


def test_merge_spreads_streams_and_honours_hazards():
    execs = [_item("ex", reads=[("sp", 100 + i, 100 + i)], writes=[("acc", i, i)])
             for i in range(16)]
    stores = [_item("st", reads=[("acc", 200 + i, 200 + i)]) for i in range(4)]
    loads = [_item("ld", writes=[("sp", 300 + i, 300 + i)]) for i in range(4)]
    out = merge(stores, execs, loads)
    assert sorted(map(id, out)) == sorted(map(id, execs + stores + loads))
    pos = {id(it): i for i, it in enumerate(out)}
    n_before = lambda it: sum(pos[id(e)] < pos[id(it)] for e in execs)
    assert [n_before(it) for it in stores] == [2, 6, 10, 14]   # k-th after (k - 1/2) * 16 / 4
    assert [n_before(it) for it in loads] == [2, 6, 10, 14]
    # a load into rows a later store reads is emitted after that store; a load into rows an
    # execute item reads waits for it; an execute item writing rows a store reads follows it
    stores[3] = _item("st", reads=[("acc", 500, 503)])
    loads[0] = _item("ld", writes=[("acc", 502, 502)])
    loads[1] = _item("ld", writes=[("sp", 111, 111)])
    execs[1] = _item("ex", writes=[("acc", 200, 200)])
    out = merge(stores, execs, loads)
    pos = {id(it): i for i, it in enumerate(out)}
    assert pos[id(stores[3])] < pos[id(loads[0])] and n_before(loads[0]) == 2
    assert pos[id(execs[11])] < pos[id(loads[1])]
    assert pos[id(stores[0])] < pos[id(execs[1])]
    store_ids = [id(it) for it in stores]
    assert [id(it) for it in out if id(it) in store_ids] == store_ids


def test_gemm_reuses_a_tile_when_k_fits():
    gp = gemm_program(SMALL, 4, 8, 16, tile_m=4, tile_k=8, tile_n=4)
    mvins = [f for op, f in map(decode, gp.program.words) if op == Op.MVIN]
    assert sum(f["slot"] == 0 for f in mvins) == 2          # A loaded once (2 k-blocks)
    assert sum(f["slot"] == 1 for f in mvins) == 8          # B: 4 n-tiles x 2 k-blocks


@pytest.mark.parametrize("kw, message", [
    (dict(tile_m=4, tile_k=6, tile_n=4), "tile_k=6 must be a positive multiple of dim=4"),
    (dict(tile_m=0, tile_k=4, tile_n=4), "tile_m=0 must be an integer >= 1"),
    (dict(tile_m=4, tile_k=4, tile_n=4, out="fp32"), "out='fp32' must be 'int32' or 'int8'"),
    (dict(tile_m=4, tile_k=4, tile_n=4, loop_order="kmn"), "loop_order='kmn' must be 'mnk' or 'nmk'"),
    (dict(tile_m=512, tile_k=12, tile_n=4),
     "A tile tile_m=512 x tile_k=12 needs 1536 scratchpad rows; capacity 1024 rows (half of 2048)"),
    (dict(tile_m=4, tile_k=1024, tile_n=8),
     "B tile tile_k=1024 x tile_n=8 needs 2048 scratchpad rows; capacity 1024 rows (half of 2048)"),
    (dict(tile_m=300, tile_k=4, tile_n=8),
     "C tile tile_m=300 x tile_n=8 needs 600 accumulator rows; capacity 512 rows"),
])
def test_gemm_tile_errors(kw, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        gemm_program(SMALL, 1000, 1024, 1000, **kw)


def test_default_tiles_fit_double_buffered():
    for cfg, shape in [(SMALL, (100, 200, 50)), (DEFAULT, (512, 512, 512)), (DEFAULT, (3, 1000, 7))]:
        tm, tk, tn = default_tiles(cfg, *shape)
        d = cfg.dim
        assert tk % d == 0 and tn % d == 0 and tm >= 1
        assert 2 * (tk // d) * max(tm, tn) <= cfg.sp_rows // 2
        assert 2 * (tn // d) * tm <= cfg.acc_rows
        gemm_program(cfg, *shape)  # fits
