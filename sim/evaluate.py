"""Run one (hardware, mapping, layer) on the RTL and return a verified `Result`.

    evaluate(hw, mapping, layer, *, seed=0, verify=True) -> Result

1. `mapping.check(hw, layer)`: a mapping that does not fit comes back as an infeasible
   `Result` with the reason, before any simulation.
2. `sim.compiler.compile_layer` lowers the triple to a program and a DRAM layout.
3. Inputs (int8 activations NCHW, int8 weights KCRS) are drawn from `seed`.
4. The program runs on the Verilator model of `hw` (built once per configuration and
   cached): the lean C++ harness by default, cocotb with `harness="cocotb"`. A cycle
   budget derived from the program (the watchdog) and a wall-clock limit bound the run;
   a run that exceeds either, faults or crashes comes back infeasible with the reason.
   With ``superset=True`` the program runs on the one model of `hw`'s capacity family
   (`sim.build.build_lean_model(..., capacity_ports=True)`: the largest memories, with
   the bank sizes of `hw` set through ports), cycle for cycle the same as `hw`'s own
   model (tests/sim/test_superset.py); a search over memory sizes then builds one
   model per array size instead of one per configuration.
5. The output is compared with `sim.reference.conv_reference`; a mismatch raises
   `VerificationError` and is never returned as a result.

`evaluate_many` runs many triples over a process pool with a progress bar.
"""

from __future__ import annotations

import os
import sys
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.cli import first_line
from hw.config import HardwareConfig
from hw.isa import ConfigTarget, Op, fields_array, high_words, low_words
from hw.layer import Layer
from hw.mapping import Mapping
from hw.result import Result

__all__ = ["evaluate", "evaluate_many", "VerificationError", "cycle_budget", "Inputs", "make_inputs"]

HARNESSES = ("lean", "cocotb")


class VerificationError(AssertionError):
    """The RTL output differs from the numpy reference (a bug, never a result)."""


@dataclass(frozen=True)
class Inputs:
    x: np.ndarray       # (N, C, H, W) int8
    w: np.ndarray       # (K, C/groups, R, S) int8


def make_inputs(layer: Layer, seed: int) -> Inputs:
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (layer.n, layer.c, layer.h, layer.w), dtype=np.int8)
    w = rng.integers(-128, 128, (layer.k, layer.c // layer.groups, layer.r, layer.s), dtype=np.int8)
    return Inputs(x, w)


def cycle_budget(words: Sequence[int], hw: HardwareConfig, low: np.ndarray | None = None) -> int:
    """Watchdog budget: 4x a pessimistic serial estimate of the program plus 20k cycles.
    ``words``: the instruction words; ``low``: their `hw.isa.low_words` if already read.

    Every instruction is charged its own work with no overlap: DRAM rows at the lower of
    the bus and DRAM rates plus a full latency per `dma_max_inflight` requests, one cycle
    per local row, and the wait a hazard can put before it (single-buffered tiles
    serialise them): a whole DRAM latency per MVIN / MVOUT and the array's drain
    (2 x dim) per PRELOAD / COMPUTE. A correct run always finishes well inside it (the
    seed-102 block13.dw case of scripts/validate_cost.py, 25 one-row steps per group,
    once ran past the budget without the hazard terms)."""
    rate = max(1, min(hw.dma_bus_bytes, hw.dram_bytes_per_cycle))
    low = low_words(words) if low is None else low
    op = fields_array(low, "opcode")
    rows, cols = fields_array(low, "rows"), fields_array(low, "cols")
    blk = np.flatnonzero(op == Op.COMPUTE_BLOCK)
    if blk.size:   # a COMPUTE_BLOCK streams run * reps rows (fields in the high half)
        high = high_words([words[i] for i in blk.tolist()])
        rows[blk] = fields_array(low[blk], "run", high) * fields_array(low[blk], "reps", high)
    # acc_full of the latest CONFIG ST before each instruction (False before the first)
    is_st = (op == Op.CONFIG) & (fields_array(low, "funct") == ConfigTarget.ST)
    last = np.maximum.accumulate(np.where(is_st, np.arange(len(op)), -1)) if len(op) else np.zeros(0, np.int64)
    acc_full = np.where(last >= 0, fields_array(low, "acc_full")[np.maximum(last, 0)], 0).astype(bool)
    acc = fields_array(low, "acc").astype(bool)
    mv = (op == Op.MVIN) | (op == Op.MVOUT)
    elem = np.where(acc & ((op == Op.MVIN) | acc_full), 4, 1)
    nbytes = rows * (cols * elem + hw.dma_bus_bytes)
    mv_cost = nbytes // rate + rows * (1 + hw.dram_latency // hw.dma_max_inflight) + 2 + hw.dram_latency
    ex = (op == Op.PRELOAD) | (op == Op.COMPUTE_PRELOADED) | (op == Op.COMPUTE_ACCUMULATED) | (op == Op.COMPUTE_BLOCK)
    other = np.where(is_st, 0, 1)                # a CONFIG ST only sets acc_full
    total = int(np.where(mv, mv_cost, np.where(ex, rows + 2 + 2 * hw.dim, other)).sum())
    return 4 * (total + 2 * hw.dram_latency + 4 * hw.dim) + 20_000


def _weight_loads(words: Sequence[int]) -> int:
    """Weight rows written into the array (PRELOADs with new weights)."""
    low = low_words(words)
    new = (fields_array(low, "opcode") == Op.PRELOAD) & (fields_array(low, "b_none") == 0)
    return int(fields_array(low, "rows")[new].sum())


def _model(hw: HardwareConfig, harness: str, cache_dir, waves: bool = False, superset: bool = False):
    from sim import build
    if superset:
        return build.build_lean_model(hw, cache_dir=cache_dir, capacity_ports=True)
    if harness == "lean" and not waves:
        return build.build_lean_model(hw, cache_dir=cache_dir)
    return build.build_cocotb_model(hw, cache_dir=cache_dir, waves=waves)


def build_notice(hw: HardwareConfig, harness: str = "lean", cache_dir=None, waves: bool = False,
                 superset: bool = False) -> str | None:
    """The one-line progress message for the Verilator model `_model` would build, or None
    when the build cache's index already has it (a cheap look-up, no generation)."""
    from sim import build
    try:
        root = Path(cache_dir).expanduser() if cache_dir is not None else build.default_cache_dir()
        if superset or (harness == "lean" and not waves):
            cfg = hw.superset() if superset else hw
            hit = build._read_index(root, build._lean_index_path(root, cfg, superset), cfg, False)
        else:
            hit = build._read_index(root, build._index_path(root, hw, waves), hw, waves)
    except Exception:  # noqa: BLE001  (unsure: say it)
        hit = None
    if hit is not None:
        return None
    what = ("lean harness, every memory size" if superset else
            "cocotb harness, with tracing" if waves else f"{harness} harness")
    took = "about 20-90 s" if superset or (harness == "lean" and not waves) else "about 40-250 s"
    return (f"building the Verilator model for DIM {hw.dim} ({what}; first time for this configuration or "
            f"these hw/ sources, {took}; cached in {root})...")


def _run(model, case, harness: str, workdir: Path, timeout_s: float):
    if harness == "lean":
        from sim.lean import run_programs_lean
        return run_programs_lean(model, [case], workdir=workdir, timeout_s=timeout_s)[0]
    from sim.rtl_run import run_programs
    return run_programs(model, [case], workdir=workdir, timeout_s=timeout_s)[0]


def evaluate(hw: HardwareConfig, mapping: Mapping, layer: Layer, *, seed: int = 0, verify: bool = True,
             out: str = "int32", relu: bool = False, shift: int = 0, harness: str = "lean",
             timeout_s: float = 600.0, cache_dir: str | os.PathLike | None = None,
             workdir: str | os.PathLike | None = None, keep: dict | None = None,
             waves: bool = False, max_cycles: int | None = None, superset: bool = False) -> Result:
    """Simulate one layer with one mapping on the RTL; see the module docstring.

    `keep`, if given, receives the inputs, the output and the compiled program (for
    `--save` and debugging). `waves=True` runs the cocotb harness on a model built with
    tracing; `keep["waves_file"]` is then the VCD. `max_cycles` overrides the watchdog's
    cycle budget (derived from the program by `cycle_budget`). `superset=True`: run on
    the capacity family's model (module docstring)."""
    from sim.compiler import compile_layer
    from sim.reference import conv_reference
    from sim.rtl_run import ProgramCase

    if harness not in HARNESSES:
        raise ValueError(f"harness={harness!r} must be one of {', '.join(HARNESSES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be a number of seconds > 0; got {timeout_s!r}")
    if superset and (harness != "lean" or waves):
        raise ValueError("superset=True runs on the lean harness only (no cocotb, no waves)")
    fits = mapping.check(hw, layer)
    if not fits:
        return Result.infeasible(fits.reason, "rtl")
    t0 = time.perf_counter()
    compiled = compile_layer(hw, mapping, layer, out=out, relu=relu, shift=shift)
    inputs = make_inputs(layer, seed)
    image = compiled.image.copy()
    compiled.write_inputs(inputs.x, inputs.w, image=image)
    words = compiled.program.words
    lo, hi = compiled.output_word_range()
    low = low_words(words)                    # the fields of both statistics below, read once
    budget = int(max_cycles) if max_cycles is not None else cycle_budget(words, hw, low)
    if superset:
        from hw.top import capacity_port_values
    ports = capacity_port_values(hw) if superset else ()
    case = ProgramCase(layer.name or "layer", words, image, lo, hi, budget, ports)
    compile_s = time.perf_counter() - t0

    if waves:
        harness = "cocotb"
    if (notice := build_notice(hw, harness, cache_dir, waves, superset)) is not None:
        print(notice, file=sys.stderr, flush=True)
    model = _model(hw, harness, cache_dir, waves, superset)
    wd = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="accel-eval-"))
    try:
        outcome = _run(model, case, harness, wd, timeout_s)
        if keep is not None and waves:
            keep["waves_file"] = next(iter(sorted(wd.glob("*.vcd"))), None)
    except Exception as e:  # the simulator crashed or was killed: the caller carries on
        return Result.infeasible(f"simulation failed: {first_line(e)}", "rtl", compile_s=compile_s)
    finally:
        # our own scratch directory (program, DRAM images: up to hundreds of MB) goes as
        # soon as the outcome is in memory; a caller's workdir and a waveform are kept
        if workdir is None and not waves:
            shutil.rmtree(wd, ignore_errors=True)
    if outcome.timed_out:
        return Result.infeasible(f"watchdog: no HALT within {budget} cycles or {timeout_s:g} s", "rtl",
                                 wall_s=outcome.wall_s)
    if outcome.fault or not outcome.done:
        return Result.infeasible("the accelerator faulted (illegal instruction)", "rtl")

    got = compiled.read_output(outcome.image)
    if verify:
        ref = conv_reference(inputs.x, inputs.w, layer, out=out, relu=relu, shift=shift)
        if got.shape != ref.shape or not np.array_equal(got, ref):
            bad = np.argwhere(got != ref) if got.shape == ref.shape else []
            where = f", first at NKPQ index {tuple(int(i) for i in bad[0])}" if len(bad) else ""
            raise VerificationError(
                f"RTL output differs from the reference for {layer.name or layer} with mapping "
                f"{mapping.to_json()} on {hw.to_json()}: {len(bad)} elements{where}")
    if keep is not None:
        keep.update(x=inputs.x, w=inputs.w, y=got, compiled=compiled)
    c = outcome.counters
    cycles = c["cycles"]
    return Result(
        cycles=cycles,
        busy={"load": c["load_busy"], "exec": c["exec_busy"], "store": c["store_busy"]},
        counts={"sp_reads": c["sp_reads"], "sp_writes": c["sp_writes"], "acc_reads": c["acc_reads"],
                "acc_writes": c["acc_writes"], "dram_bytes_read": c["dram_bytes_read"],
                "dram_bytes_written": c["dram_bytes_written"], "macs": c["macs"],
                "weight_loads": _weight_loads(low)},
        utilisation=c["macs"] / (hw.dim * hw.dim * cycles) if cycles else None,
        feasible=True, reason=None, verified=bool(verify), fidelity="rtl",
        extra={"instructions": len(words), "sim_wall_s": round(outcome.wall_s, 4),
               "compile_s": round(compile_s, 4), "harness": harness, "seed": seed,
               **({"model": "superset"} if superset else {})},
    )


def _evaluate_star(args):
    hw, mapping, layer, kwargs = args
    return evaluate(hw, mapping, layer, **kwargs)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the pool's pending work and terminate its workers. Python 3.14 has
    ``terminate_workers``; before it, the pool's process table, read before the
    shutdown (which forgets it)."""
    if hasattr(pool, "terminate_workers"):
        pool.terminate_workers()
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)


def evaluate_many(items: Iterable[tuple[HardwareConfig, Mapping, Layer]], *, workers: int | None = None,
                  progress: bool = True, **kwargs) -> list[Result]:
    """Evaluate many triples in a process pool; results in input order.

    Each distinct hardware configuration is built once first (in this process, shared
    through the build cache). A progress bar shows rate and ETA. On Ctrl-C the pending
    work is cancelled and the workers are shut down before KeyboardInterrupt propagates;
    when a simulation raises (a `VerificationError`, a compiler error), the pending work
    is cancelled and the workers still simulating are stopped, so the error reaches the
    caller at once instead of after the longest simulation in flight."""
    from tqdm import tqdm

    items = list(items)
    harness = kwargs.get("harness", "lean")
    superset = kwargs.get("superset", False)
    for hw in dict.fromkeys(t[0].superset() if superset else t[0] for t in items):
        if progress and (notice := build_notice(hw, harness, kwargs.get("cache_dir"), superset=superset)):
            print(notice, file=sys.stderr, flush=True)
        _model(hw, harness, kwargs.get("cache_dir"), superset=superset)
    workers = workers or max(1, (os.cpu_count() or 1))
    results: list[Result | None] = [None] * len(items)
    bar = tqdm(total=len(items), unit="eval", disable=not progress, dynamic_ncols=True)
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(_evaluate_star, (hw, m, layer, kwargs)): i
                   for i, (hw, m, layer) in enumerate(items)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            bar.update(1)
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        bar.close()
    pool.shutdown()
    return results  # type: ignore[return-value]
