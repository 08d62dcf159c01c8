"""Run accelerator programs on the lean C++ harness (throughput path).

`run_programs_lean(model, cases)` has the contract of `sim.rtl_run.run_programs`: it
writes each `ProgramCase` to a case directory (same layout: `imem.hex`, `dram_in.hex`,
`case.json`), runs them all in one process of the harness executable of a model from
`sim.build.build_lean_model` (`sim/harness/main.cpp`), and returns one `ProgramOutcome`
per case. The harness replays `sim/program_tb.py`'s clock, reset, load, start and dump
sequence, so counters and DRAM outputs equal the cocotb path's cycle for cycle
(tests/sim/test_lean.py checks it); `wall_s` is the harness's own wall time from start
to done. The model is the cocotb build's Verilog through `sim.build.lean_verilog`
(the program read through DPI-C instead of `$fscanf`, a cheaper DRAM backdoor, rst and
start registered at the top and set a cycle ahead by the harness): the same cycles,
several times faster at small DIM.

    model = build_lean_model(cfg)
    outcomes = run_programs_lean(model, cases)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sim.build import BuiltModel, CocotbTestFailure, SimulationTimeout, lean_executable
from sim.rtl_run import ProgramCase, ProgramOutcome, read_outcomes, write_cases

__all__ = ["LeanRunFailure", "write_cases", "run_programs_lean"]


class LeanRunFailure(CocotbTestFailure):
    """The harness exited abnormally or left a case without results."""


def die_with_parent() -> None:
    """``preexec_fn`` of the harness process: on Linux, the kernel kills it (SIGKILL)
    when the process that started it dies, so a worker killed mid-simulation (a
    collection stopped with SIGTERM) leaves no orphan simulator running on; elsewhere a
    no-op. Runs in the child between fork and exec."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)   # PR_SET_PDEATHSIG


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.splitlines()[-n:])


def run_programs_lean(model: BuiltModel, cases: Sequence[ProgramCase], *, workdir: Path | None = None,
                      timeout_s: float | None = 600, case_timeout_s: float | None = None) -> list[ProgramOutcome]:
    """Run `cases` in one harness process; raises if the harness itself fails.

    `timeout_s` bounds the whole process (then :class:`sim.build.SimulationTimeout` is
    raised, as by `run_programs`); `case_timeout_s` is the harness's own wall-clock
    watchdog per case, which marks a case `timed_out` and goes on with the next."""
    from hw.top import CAPACITY_PORTS

    names = set(CAPACITY_PORTS) if model.capacity_ports else set()
    for case in cases:
        given = {name for name, _ in case.ports}
        if given != names:
            raise ValueError(f"case {case.name!r} sets ports {sorted(given)} but the model "
                             f"{model.build_dir.name} needs exactly {sorted(names)}")
    exe = lean_executable(model)
    if not exe.is_file():
        raise FileNotFoundError(f"no lean harness executable {exe}: build the model with sim.build.build_lean_model")
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="accel-lean-"))
    root = root.resolve()
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    dirs = write_cases(cases, root)
    cmd = [str(exe), "--work", str(work), "--cases", str(root / "cases.txt")]
    if case_timeout_s:
        cmd += ["--max-seconds", f"{float(case_timeout_s):g}"]
    log = root / "lean.log"
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout_s,
                              preexec_fn=die_with_parent)
    except subprocess.TimeoutExpired as e:
        out = (e.stderr or b"")
        log.write_text(out.decode(errors="replace") if isinstance(out, bytes) else out)
        raise SimulationTimeout(f"lean harness killed after {timeout_s:g} s wall time; log: {log}") from None
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise LeanRunFailure(f"lean harness exited with status {proc.returncode}; log: {log}\n"
                             f"{_tail(proc.stdout + proc.stderr)}")
    try:
        return read_outcomes(cases, dirs)
    except (OSError, ValueError, KeyError) as e:
        raise LeanRunFailure(f"no complete result from the lean harness ({e}); log: {log}") from None


# ---- throughput benchmark: python -m sim.lean [--dims 4,8,16] ---------------------------------

def bench_gemm(dim: int, *, cache_dir=None, workdir: Path | None = None, repeat: int = 1) -> dict:
    """Lean-harness speed on the GEMM of scripts/bench_rtl.py: (32*D) x (8*D) x (8*D) on
    HardwareConfig(dim=D, imem_depth=8192, dram_mb=4), checked against numpy. The case is
    run `repeat` times in one process; the fastest run is reported."""
    import time

    import numpy as np

    from hw.config import HardwareConfig
    from hw.tiled_gemm import gemm_program, random_gemm_inputs
    from sim.build import build_lean_model
    from sim.rtl_run import default_cycle_budget

    cfg = HardwareConfig(dim=dim, imem_depth=8192, dram_mb=4)
    t0 = time.perf_counter()
    model = build_lean_model(cfg, cache_dir=cache_dir)
    build_s = time.perf_counter() - t0
    M, K, N = 32 * dim, 8 * dim, 8 * dim
    A, B, _ = random_gemm_inputs(np.random.default_rng(dim), M, K, N)
    gp = gemm_program(cfg, M, K, N, A=A, B=B)
    lo, hi = gp.c_word_range()
    case = ProgramCase(f"gemm_{M}x{K}x{N}", gp.program.words, gp.image, lo, hi,
                       default_cycle_budget(M * K * N, M * K + K * N + 4 * M * N, cfg))
    outs = run_programs_lean(model, [case] * repeat, workdir=workdir)
    for out in outs:
        if not out.ok or not (gp.read_c(out.image) == gp.reference()).all():
            raise RuntimeError(f"DIM {dim}: wrong result or run did not finish")
    out = min(outs, key=lambda o: o.wall_s)
    c = out.counters
    return {"dim": dim, "gemm": [M, K, N], "build_s": round(build_s, 1), "model_build_s": model.build_s,
            "cycles": c["cycles"], "sim_wall_s": round(out.wall_s, 4),
            "cycles_per_s": round(c["cycles"] / out.wall_s), "macs_per_s": round(c["macs"] / out.wall_s),
            "build_dir": str(model.build_dir)}


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Lean-harness throughput on the scripts/bench_rtl.py GEMM.")
    ap.add_argument("--dims", default="4,8,16")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: sim.build.default_cache_dir())")
    args = ap.parse_args(argv)
    print(f"{'DIM':>4} {'GEMM MxKxN':>16} {'build s':>8} {'cycles':>9} {'sim s':>8} {'cycles/s':>11} {'MAC/s':>13}",
          flush=True)
    for d in (int(x) for x in args.dims.split(",")):
        r = bench_gemm(d, cache_dir=args.cache_dir, repeat=args.repeat)
        print(f"{d:>4} {'x'.join(map(str, r['gemm'])):>16} {r['build_s']:>8.1f} {r['cycles']:>9} "
              f"{r['sim_wall_s']:>8.3f} {r['cycles_per_s']:>11,} {r['macs_per_s']:>13,}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
