"""End-to-end tiled GEMMs on the Verilator model: bit-exact against numpy, counters
equal to the counts the program implies, watchdog and fault handling."""

import numpy as np
import pytest

from hw.isa import encode
from hw.program import DramImage
from sim.rtl_run import ProgramCase, run_programs
from tests.hw.rtl_common import CONFIGS, assert_counters, gemm_case

# (M, K, N, options). Shapes are small but cover: partial blocks in every dimension,
# K split over several k-tiles (accumulation across tiles), several m/n tiles (scratchpad
# and accumulator refills), int8 outputs with ReLU and rounding shift, bias rows.
GEMMS = {
    4: [(6, 4, 3, {}),
        (37, 21, 19, dict(tile_m=16, tile_k=8, tile_n=8, out="int8", relu=True, shift=6)),
        (32, 40, 24, dict(tile_m=8, tile_k=16, tile_n=8, bias=True)),
        (20, 12, 9, dict(tile_m=12, tile_k=4, tile_n=4, out="int8", shift=3, loop_order="nmk"))],
    8: [(5, 3, 2, {}),
        (70, 50, 33, dict(tile_m=32, tile_k=16, tile_n=16, out="int8", relu=True, shift=7)),
        (64, 96, 40, dict(tile_m=64, tile_k=32, tile_n=16, bias="full")),
        (129, 64, 64, {})],
    16: [(40, 50, 30, {}),
         (100, 200, 70, dict(tile_m=48, tile_k=64, tile_n=32, out="int8", relu=True, shift=8, bias=True)),
         (256, 96, 48, dict(tile_m=128, tile_k=32, tile_n=48))],
    32: [(70, 90, 40, {}),
         (128, 128, 96, dict(tile_m=64, tile_k=64, tile_n=32, out="int8", shift=9))],
}


@pytest.mark.parametrize("dim", [4, 8, 16, pytest.param(32, marks=pytest.mark.slow)])
def test_random_tiled_gemms_bit_exact(build_model, tmp_path, dim):
    cfg = CONFIGS[dim]
    model = build_model(cfg)
    rng = np.random.default_rng(100 + dim)
    gps, cases = zip(*[gemm_case(cfg, rng, M, K, N, **dict(kw)) for M, K, N, kw in GEMMS[dim]])
    outcomes = run_programs(model, cases, workdir=tmp_path)
    for gp, out in zip(gps, outcomes):
        assert out.ok, f"{out.case.name}: done={out.done} fault={out.fault} timed_out={out.timed_out}"
        C = gp.read_c(out.image)
        ref = gp.reference()
        mismatches = np.argwhere(C != ref)
        assert mismatches.size == 0, f"{out.case.name}: {len(mismatches)} wrong elements, first at {mismatches[0]}"
        assert_counters(out)
        assert out.counters["macs"] == gp.M * gp.K * gp.N


def test_watchdog_and_fault_recovery(build_model, tmp_path):
    """A run over its cycle budget comes back timed out; an illegal opcode faults; the
    simulator recovers and the next program is still correct."""
    cfg = CONFIGS[4]
    model = build_model(cfg)
    rng = np.random.default_rng(7)
    gp, good = gemm_case(cfg, rng, 12, 8, 8)
    starved = ProgramCase("starved", good.words, good.image, good.dump_lo, good.dump_hi, max_cycles=20)
    illegal = ProgramCase("illegal", [encode(0) | 0xF, 0], DramImage(cfg), 0, 0, max_cycles=1000)
    outcomes = run_programs(model, [starved, illegal, good], workdir=tmp_path)
    assert outcomes[0].timed_out and not outcomes[0].done
    assert outcomes[1].fault and outcomes[1].done and not outcomes[1].timed_out
    assert outcomes[2].ok
    assert (gp.read_c(outcomes[2].image) == gp.reference()).all()


def test_long_gemm_keeps_array_busy(build_model, tmp_path):
    """A 256^3 GEMM at DIM 16 (Gemmini defaults) with large tiles: the array does a MAC
    in >= 90 % of PE-cycles while the execute unit is busy."""
    cfg = CONFIGS[16]
    model = build_model(cfg)
    rng = np.random.default_rng(16)
    gp, case = gemm_case(cfg, rng, 256, 256, 256, tile_m=256, tile_k=256, tile_n=32)
    (out,) = run_programs(model, [case], workdir=tmp_path)
    assert out.ok and (gp.read_c(out.image) == gp.reference()).all()
    c = out.counters
    util_exec = c["macs"] / (cfg.dim ** 2 * c["exec_busy"])
    util_total = c["macs"] / (cfg.dim ** 2 * c["cycles"])
    print(f"utilisation while executing {util_exec:.3f}, over the whole run {util_total:.3f}, counters {c}")
    assert util_exec >= 0.90


def test_program_longer_than_instruction_buffer(build_model, tmp_path):
    """The host streams instructions into the buffer: a program over twice imem_depth runs."""
    cfg = CONFIGS[4]
    rng = np.random.default_rng(44)
    gp, case = gemm_case(cfg, rng, 64, 64, 64)
    assert len(case.words) > 2 * cfg.imem_depth
    (out,) = run_programs(build_model(cfg), [case], workdir=tmp_path)
    assert out.ok and (gp.read_c(out.image) == gp.reference()).all()
    assert out.counters["instructions"] == len(case.words)
