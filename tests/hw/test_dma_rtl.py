"""DMA and DRAM model on the Verilator model: strided, unaligned transfers are exact
and touch nothing else; latency, requests-in-flight and bandwidth limits are honoured,
measured through the load unit's busy cycles against the model in hw/dram.py."""

import numpy as np

from hw.program import DramImage, Program
from sim.rtl_run import ProgramCase, run_programs
from tests.hw.rtl_common import CFG4, CFG8, assert_counters


def _span_case(cfg, name, prog, img, lo, nbytes):
    bus = cfg.dma_bus_bytes
    return ProgramCase(name, prog.words, img, lo // bus, (lo + nbytes - 1) // bus, 200_000)


def test_strided_unaligned_transfers(build_model, tmp_path):
    cfg = CFG4
    d = cfg.dim
    rng = np.random.default_rng(3)
    img = DramImage(cfg)
    region = img.alloc(4096)
    img.write(region, np.full(4096, 0xEE, np.uint8))           # sentinel everywhere
    src8, src32 = region + 3, region + 1001                     # unaligned sources
    s_in8, s_in32, s_out8, s_out32 = 13, 37, 11, 29             # strides, none a multiple of the bus
    rows = 12
    X8 = rng.integers(-128, 128, (rows, d), dtype=np.int8)
    X32 = rng.integers(-2**31, 2**31 - 1, (rows, d), dtype=np.int64).astype(np.int32)
    for r in range(rows):
        img.write(src8 + r * s_in8, X8[r])
        img.write(src32 + r * s_in32, X32[r])
    dst8, dst32 = region + 2005, region + 2607
    p = Program(cfg)
    p.config_ld(0, s_in8).config_ld(1, s_in32)
    blocks = range(0, rows, d)
    for r0 in blocks:                       # int8 rows to the scratchpad, int32 to the accumulator
        p.mvin(src8 + r0 * s_in8, r0, d, d)
        p.mvin(src32 + r0 * s_in32, r0, d, 3, slot=1, acc=True)
    p.config_st(s_out8)
    for r0 in blocks:
        p.mvout(dst8 + r0 * s_out8, r0, d, d)
    p.config_st(s_out32, acc_full=True)
    for r0 in blocks:
        p.mvout(dst32 + r0 * s_out32, r0, d, 3, acc=True)
    p.halt()
    case = _span_case(cfg, "strided", p, img, region, 4096)
    (out,) = run_programs(build_model(cfg), [case], workdir=tmp_path)
    assert out.ok
    assert_counters(out)
    exp = bytearray(img.read(region, (4096,), np.uint8).tobytes())
    for r in range(rows):
        o = dst8 - region + r * s_out8
        exp[o:o + d] = X8[r].tobytes()
        o = dst32 - region + r * s_out32
        exp[o:o + 12] = X32[r, :3].tobytes()
    got = out.image.read(region, (4096,), np.uint8).tobytes()
    assert got == bytes(exp), "strided transfer wrong or wrote outside its rows"


def _load_only(cfg, name, rows, acc, stride):
    img = DramImage(cfg)
    elem = 4 if acc else 1
    src = img.alloc(rows * stride + 64)
    p = Program(cfg)
    p.config_ld(0, stride)
    for r0 in range(0, rows, cfg.dim):
        p.mvin(src + r0 * stride, r0, min(cfg.dim, rows - r0), cfg.dim, acc=acc)
    p.halt()
    return ProgramCase(name, p.words, img, 0, 0, 100_000), rows * cfg.dim * elem


def test_latency_inflight_and_bandwidth_limits(build_model, tmp_path):
    # DIM 4: latency 30, 4 requests in flight, 4 B/cycle, 8-byte bus.
    one, _ = _load_only(CFG4, "one_row", 1, False, 4)
    many, _ = _load_only(CFG4, "inflight", 64, False, 64)     # 64 single-request rows
    o_one, o_many = run_programs(build_model(CFG4), [one, many], workdir=tmp_path / "d4")
    L, F = CFG4.dram_latency, CFG4.dma_max_inflight
    t_one = o_one.counters["load_busy"]
    print("one-row MVIN load_busy", t_one)
    assert L < t_one <= L + 8, f"one row took {t_one} cycles with DRAM latency {L}"
    # Each request occupies one of F slots for at least L+1 cycles: rows / F * (L+1) cycles.
    bound = 64 / F * (L + 1)
    t_many = o_many.counters["load_busy"]
    print(f"64 rows: {t_many} cycles, in-flight bound {bound:.0f}")
    assert bound <= t_many <= 1.15 * bound + L

    # DIM 8, Gemmini memory system: 16 in flight, 8 B/cycle, 16-byte bus; 32-byte rows.
    stream, nbytes = _load_only(CFG8, "bandwidth", 256, True, 4 * CFG8.dim)
    (o_bw,) = run_programs(build_model(CFG8), [stream], workdir=tmp_path / "d8")
    t = o_bw.counters["load_busy"]
    rate = nbytes / (t - CFG8.dram_latency)
    print(f"{nbytes} bytes in {t} cycles: {rate:.2f} B/cycle (limit {CFG8.dram_bytes_per_cycle})")
    assert 0.9 * CFG8.dram_bytes_per_cycle <= rate <= CFG8.dram_bytes_per_cycle
    assert o_bw.counters["dram_bytes_read"] == nbytes
