"""Shared pieces of the RTL tests: the few hardware configurations that get a Verilator
build (one build per configuration per session), GEMM case helpers, and an independent
count of the events the performance counters must report, derived from the program."""

from __future__ import annotations

import numpy as np

from hw.config import HardwareConfig
from hw.isa import ConfigTarget, Op, decode
from hw.tiled_gemm import gemm_program, random_gemm_inputs
from sim.rtl_run import ProgramCase, default_cycle_budget

# DIM 4 with an unusual memory system: narrow bus, small requests, few in flight, slow DRAM.
CFG4 = HardwareConfig(dim=4, sp_kb=16, acc_kb=8, sp_banks=4, acc_banks=2, dma_bus_bytes=8,
                      dma_max_req_bytes=32, dma_max_inflight=4, dram_latency=30,
                      dram_bytes_per_cycle=4, dram_mb=1, imem_depth=4096)
# DIM 8: Gemmini's memory system, small memories (forces several tiles and refills).
CFG8 = HardwareConfig(dim=8, sp_kb=32, acc_kb=16, sp_banks=2, acc_banks=1, dram_mb=2, imem_depth=4096)
# DIM 16: Gemmini's default configuration with a larger instruction memory.
CFG16 = HardwareConfig(dim=16, dram_mb=4, imem_depth=16384)
# DIM 32 (slow set).
CFG32 = HardwareConfig(dim=32, sp_kb=128, acc_kb=128, dram_mb=4, imem_depth=8192)

CONFIGS = {4: CFG4, 8: CFG8, 16: CFG16, 32: CFG32}


def gemm_case(cfg, rng, M, K, N, *, name=None, **kw):
    """(GemmProgram, ProgramCase) for a random GEMM."""
    bias = kw.pop("bias", False)
    A, B, D = random_gemm_inputs(rng, M, K, N, bias=bias)
    gp = gemm_program(cfg, M, K, N, A=A, B=B, D=D, bias=bias, **kw)
    lo, hi = gp.c_word_range()
    # Poison C in the input image so a row the hardware never writes cannot pass.
    gp.image.write(gp.c_addr, np.full(gp.c_bytes, 0xA5, np.uint8))
    budget = default_cycle_budget(M * K * N, M * K + K * N + 4 * M * N, cfg)
    case = ProgramCase(name or f"gemm_{M}x{K}x{N}", gp.program.words, gp.image, lo, hi, budget)
    return gp, case


def expected_counts(words) -> dict:
    """Event counts a program must produce, from the ISA semantics alone."""
    c = dict(sp_reads=0, sp_writes=0, acc_reads=0, acc_writes=0, dram_bytes_read=0,
             dram_bytes_written=0, macs=0, instructions=0)
    acc_full = False
    c_rows = c_cols = 0
    c_acc = False
    for w in words:
        op, f = decode(w)
        c["instructions"] += 1
        if op == Op.CONFIG and f["funct"] == ConfigTarget.ST:
            acc_full = bool(f["acc_full"])
        elif op == Op.MVIN:
            c["dram_bytes_read"] += f["rows"] * f["cols"] * (4 if f["acc"] else 1)
            c["acc_writes" if f["acc"] else "sp_writes"] += f["rows"]
        elif op == Op.MVOUT:
            c["dram_bytes_written"] += f["rows"] * f["cols"] * (4 if f["acc"] and acc_full else 1)
            c["acc_reads" if f["acc"] else "sp_reads"] += f["rows"]
        elif op == Op.PRELOAD:
            if not f["b_none"]:
                c["sp_reads"] += f["rows"]
            c_rows, c_cols, c_acc = f["rows2"], f["cols2"], bool(f["accumulate"])
        elif op in (Op.COMPUTE_PRELOADED, Op.COMPUTE_ACCUMULATED):
            written = min(f["rows"], c_rows)
            c["sp_reads"] += f["rows"]
            c["acc_writes"] += written
            c["acc_reads"] += written if c_acc else 0
            c["macs"] += f["rows"] * f["cols"] * c_cols
        elif op == Op.HALT:
            break
    return c


def assert_counters(outcome):
    exp = expected_counts(outcome.case.words)
    got = {k: outcome.counters[k] for k in exp}
    assert got == exp, f"{outcome.case.name}: counters {got} != expected {exp}"
