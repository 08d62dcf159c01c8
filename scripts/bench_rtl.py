"""RTL benchmark: Verilator build time and simulation speed per array size.

For each DIM it builds the cocotb Verilator model of a Gemmini-default configuration
from scratch (in a temporary cache, so the build is cold), then runs a GEMM that keeps
the array busy, (M, K, N) = (32*DIM, 8*DIM, 8*DIM), checks the result against numpy,
and reports simulated cycles/s, simulated MAC/s and the array utilisation.

    python scripts/bench_rtl.py [--dims 4,8,16,32] [--json out.json]

Figures go to BENCHMARKS.md together with the command that produced them.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.cli import OneLineParser, UsageError, check_output_file, first_line, print_error, run_main  # noqa: E402
from hw.config import HardwareConfig  # noqa: E402
from hw.tiled_gemm import gemm_program, random_gemm_inputs  # noqa: E402
from sim.build import build_cocotb_model  # noqa: E402
from sim.rtl_run import ProgramCase, default_cycle_budget, run_programs  # noqa: E402


#: Cold cocotb build times measured (BENCHMARKS.md), for the message before each build.
_BUILD_S = {4: 40, 8: 50, 16: 120, 32: 250}


def bench_dim(dim: int, cache: Path) -> dict:
    cfg = HardwareConfig(dim=dim, imem_depth=8192, dram_mb=4)
    print(f"building the cocotb Verilator model for DIM {dim} from scratch (about {_BUILD_S[dim]} s)...",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    model = build_cocotb_model(cfg, cache_dir=cache)
    build_s = time.perf_counter() - t0

    M, K, N = 32 * dim, 8 * dim, 8 * dim
    rng = np.random.default_rng(dim)
    A, B, _ = random_gemm_inputs(rng, M, K, N)
    gp = gemm_program(cfg, M, K, N, A=A, B=B)
    lo, hi = gp.c_word_range()
    case = ProgramCase(f"gemm_{M}x{K}x{N}", gp.program.words, gp.image, lo, hi,
                       default_cycle_budget(M * K * N, M * K + K * N + 4 * M * N, cfg))
    print(f"simulating the {M}x{K}x{N} GEMM on the cocotb harness (seconds at DIM 4, about 20 s at DIM 32)...",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    (out,) = run_programs(model, [case], workdir=cache / f"run{dim}")
    run_s = time.perf_counter() - t0
    if not out.ok or not (gp.read_c(out.image) == gp.reference()).all():
        raise SystemExit(f"DIM {dim}: wrong result or run did not finish")
    c = out.counters
    return {
        "dim": dim, "gemm": [M, K, N], "tiles": [gp.tile_m, gp.tile_k, gp.tile_n],
        "instructions": len(gp.program.words), "build_s": round(build_s, 1),
        "cycles": c["cycles"], "sim_wall_s": round(out.wall_s, 3), "run_wall_s": round(run_s, 2),
        "cycles_per_s": round(c["cycles"] / out.wall_s),
        "macs_per_s": round(c["macs"] / out.wall_s),
        "util_exec": round(c["macs"] / (dim * dim * c["exec_busy"]), 4),
        "util_total": round(c["macs"] / (dim * dim * c["cycles"]), 4),
    }


def main(argv=None) -> int:
    ap = OneLineParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", default="4,8,16,32", help="comma-separated array sizes (default 4,8,16,32)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    try:
        args = ap.parse_args(argv)
    except UsageError as e:
        return print_error(e, see_help=True)
    try:
        dims = [int(x) for x in args.dims.split(",")]
        for d in dims:
            HardwareConfig(dim=d)
        if len(set(dims)) != len(dims):
            raise ValueError("an array size is listed twice")
        if args.json is not None:   # checked now: the figures take minutes to measure
            check_output_file(args.json, "--json")
    except ValueError as e:
        print(f"error: --dims {args.dims!r}: {first_line(e)}" if not str(e).startswith("--json")
              else f"error: {first_line(e)}", file=sys.stderr)
        return 2
    rows = []
    header = (f"{'DIM':>4} {'GEMM MxKxN':>16} {'build s':>8} {'cycles':>9} {'sim s':>7} "
              f"{'cycles/s':>10} {'MAC/s':>12} {'util(exec)':>10} {'util(all)':>9}")
    print(header, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-rtl-") as tmp:
        for d in dims:
            r = bench_dim(d, Path(tmp))
            rows.append(r)
            print(f"{d:>4} {'x'.join(map(str, r['gemm'])):>16} {r['build_s']:>8.1f} {r['cycles']:>9} "
                  f"{r['sim_wall_s']:>7.2f} {r['cycles_per_s']:>10,} {r['macs_per_s']:>12,} "
                  f"{r['util_exec']:>10.3f} {r['util_total']:>9.3f}", flush=True)
    if args.json:
        try:
            args.json.write_text(json.dumps(rows, indent=2))
        except OSError as e:   # the table above holds the figures
            print(f"error: cannot write --json {args.json}: {e.strerror or e}", file=sys.stderr)
            return 1
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
