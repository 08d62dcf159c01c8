"""Run one layer on the RTL from the command line.

    python -m sim.run --dim 16 --sp-kb 256 --acc-kb 64 \\
        (--gemm M K N | --conv N K C P Q R S [--stride T] [--pad X] [--groups G]) \\
        [--mapping FILE.json | auto | best [--samples N] [--objective edp|cycles|energy]] [--seed S] [--out int32|int8 --relu --shift B] \\
        [--harness lean|cocotb] [--timeout S] [--trace out.vcd] [--save DIR] [--json]

The options are `hw.cli`'s (shared with `python -m cost.run`). Prints a readable summary
(`hw.cli.summary_text`), or with --json the `Result` as one JSON object on stdout.
--mapping best picks the layer's mapping with `search.software.best_mapping` (the best of
--samples constrained mappings and the default by the analytical model) and simulates it.
--save DIR writes input.npy (NCHW), weight.npy (KCRS) and output.npy (NKPQ) (for a GEMM:
A as M x K, B as K x N, C as M x N) plus mapping.json, layer.json and result.json, so
anyone can re-check the result; it says on stderr what it wrote where. --trace writes a
waveform of the run (cocotb harness, VCD; its size is estimated first and said).

Bounds, checked before any work (one ``error:`` line, exit 2):

* the layer's sizes are `hw.layer`'s limits; the simulation-only DRAM model must hold the
  layer (`sim.compiler.dram_bytes_needed`). Without --dram-mb (or a ``dram_mb`` in
  --from-json) it is sized to the layer (`sim.compiler.dram_mb_for`, at least the
  default; a note says so when it grows), up to HardwareConfig's largest, 256 MB; a
  --dram-mb that is too small, or a layer that needs more than 256 MB, is an error that
  names the bytes needed;
* the program may have at most `MAX_INSTRUCTIONS` instructions (counted by the
  analytical model before compiling: compile time and memory grow with it);
* --save DIR and --trace FILE must be writable (nothing is created before the run).

Long phases say what they do on stderr: the analytical kernel compiling (first run),
compiling a long program, building a Verilator model that is not cached yet, a
simulation estimated to take more than a few seconds.

Exit status: 0 feasible and verified, 1 infeasible (printed with its reason) or a
result that could not be saved (it is printed first), 2 bad arguments.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from hw.cli import (
    ANALYTICAL_COMPILE_NOTICE,
    OneLineParser,
    UsageError,
    add_config_arguments,
    add_layer_arguments,
    add_mapping_argument,
    check_mapping_options,
    add_output_arguments,
    add_rtl_arguments,
    check_output_dir,
    check_output_file,
    config_fields_given,
    config_from_args,
    first_line,
    human_bytes,
    layer_from_args,
    mapping_from_args,
    output_from_args,
    print_error,
    rtl_options_from_args,
    run_main,
    slow_notice,
    summary_text,
)
from hw.config import ConfigError, HardwareConfig, param_spec
from hw.layer import Layer, LayerError
from hw.mapping import Mapping, MappingError

__all__ = ["main", "MAX_INSTRUCTIONS", "size_dram"]

#: Most instructions of a program sim.run compiles and simulates (2**23: about 12 s of
#: compiling and 0.6 GB of memory; the analytical model counts them first).
MAX_INSTRUCTIONS = 1 << 23

#: Above this many instructions the compile phase is announced (about 1.5 s).
_SAY_COMPILE = 1 << 20
#: Instructions compiled per second (measured: 6.3 M in 9.5 s, 101 M in 140 s).
_COMPILE_RATE = 700_000

#: Simulated cycles per second by harness and DIM (BENCHMARKS.md: lean from the RTL
#: dataset, cocotb from the harness comparison); a trace divides the cocotb rate by about
#: 4 (measured: 14 k cycles/s traced at DIM 4 and 8).
_CYCLES_PER_S = {"lean": {4: 530e3, 8: 630e3, 16: 380e3, 32: 150e3},
                 "cocotb": {4: 67e3, 8: 52e3, 16: 28e3, 32: 7.7e3}}

#: VCD bytes per simulated cycle: _VCD_BASE + _VCD_PER_PE x DIM x DIM (measured on traced
#: 64 x 64 x 64 GEMMs: 15.9 KB a cycle at DIM 4, 23.8 KB at DIM 8); --trace's size
#: estimate is this times the analytical cycle count (roughly).
_VCD_BASE, _VCD_PER_PE = 12_000, 220

#: Above this estimated VCD size --trace warns.
_VCD_WARN_BYTES = 50 << 20


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m sim.run", description=__doc__.split("\n\n")[0],
                      epilog=f"Without --dram-mb the simulation DRAM is sized to the layer (at least "
                             f"{HardwareConfig().dram_mb} MB, at most {param_spec('dram_mb').hi} MB; a layer "
                             f"that needs more is an error). Programs have at most {MAX_INSTRUCTIONS:,} "
                             "instructions. Long phases (a Verilator build, compiling, simulating) say so on "
                             "stderr.")
    add_config_arguments(p, defaults={"dram_mb": "sized to the layer: see below"})
    add_layer_arguments(p)
    add_mapping_argument(p)
    add_output_arguments(p)
    add_rtl_arguments(p)
    return p


def size_dram(hw: HardwareConfig, layer: Layer, out: str, *, given: bool) -> tuple[HardwareConfig, str | None]:
    """(``hw`` with a simulation-only DRAM that holds ``layer``, a note or None).

    ``given``: the user chose ``hw.dram_mb``; too small is a ValueError naming the bytes
    needed. Otherwise the DRAM is ``sim.compiler.dram_mb_for([layer])`` (at least
    ``hw.dram_mb``), and the note says so when it grew. A layer that needs more than the
    largest ``dram_mb`` is a ValueError either way."""
    import dataclasses

    from sim.compiler import dram_bytes_needed, dram_mb_for

    need = dram_bytes_needed(layer, out=out)
    top = param_spec("dram_mb").hi
    if need > top << 20:
        raise ValueError(f"layer {layer.name!r} needs {need:,} bytes ({human_bytes(need)}) of simulation DRAM "
                         f"(input, weights, {out} output, partial sums); the simulation-only DRAM holds at most "
                         f"{top} MB: simulate a smaller layer (python -m cost.run evaluates any size)")
    mb = dram_mb_for([layer], out=out, least=1)
    if given:
        if need > hw.dram_bytes:
            raise ValueError(f"layer {layer.name!r} needs {need:,} bytes ({human_bytes(need)}) of simulation DRAM, "
                             f"more than --dram-mb {hw.dram_mb}; give --dram-mb {mb} or more, or leave it out "
                             "(sized to the layer)")
        return hw, None
    if need <= hw.dram_bytes:
        return hw, None
    mb = dram_mb_for([layer], out=out, least=hw.dram_mb)
    return (dataclasses.replace(hw, dram_mb=mb),
            f"note: simulation DRAM sized to {mb} MB for layer {layer.name!r} (it needs {need:,} bytes; "
            f"default {hw.dram_mb} MB)")


def _estimate(hw: HardwareConfig, mapping: Mapping, layer: Layer, out: str):
    """The analytical model's Result for the triple (None when it cannot say)."""
    from cost.evaluate import evaluate as estimate
    from cost.model import warm_up

    with slow_notice(ANALYTICAL_COMPILE_NOTICE):
        warm_up()
    try:
        return estimate(hw, mapping, layer, out=out)
    except (MappingError, ValueError, OverflowError):
        return None


def _plan(hw: HardwareConfig, layer: Layer, est, rtl: dict) -> list[str]:
    """The notes on what the run will take; ValueError when the program is too long."""
    if est is None or not est.feasible:
        return []
    notes = []
    words = int(est.extra.get("instructions", 0))
    if words > MAX_INSTRUCTIONS:
        raise ValueError(f"layer {layer.name!r} with this mapping is a program of about {words:,} instructions "
                         f"(analytical model), more than sim.run's limit of {MAX_INSTRUCTIONS:,}: use larger "
                         "tiles (--mapping), a larger array (--dim) or a smaller layer; python -m cost.run "
                         "evaluates it in a moment")
    if words > _SAY_COMPILE:
        notes.append(f"compiling a program of about {words:,} instructions (roughly {words / _COMPILE_RATE:.0f} s)...")
    rates = _CYCLES_PER_S[rtl["harness"]]
    rate = rates.get(hw.dim, min(rates.values())) / (4 if rtl["trace"] else 1)
    seconds = est.cycles / rate
    if seconds > 10:
        line = (f"simulating about {est.cycles:,} cycles (analytical estimate; roughly {seconds:,.0f} s at "
                f"~{rate / 1e3:,.0f} k cycles/s on the {rtl['harness']} harness)")
        if seconds > rtl["timeout_s"]:
            line += f"; more than --timeout {rtl['timeout_s']:g} s, where the run would stop: raise it"
        notes.append(line + "...")
    if rtl["trace"]:
        vcd = int(est.cycles * (_VCD_BASE + _VCD_PER_PE * hw.dim * hw.dim))
        free = min(shutil.disk_usage(_existing_parent(rtl["trace"])).free,
                   shutil.disk_usage(tempfile.gettempdir()).free)   # written there first, then copied
        if 2 * vcd > free:
            raise ValueError(f"--trace {rtl['trace']}: the VCD of about {est.cycles:,} cycles would be roughly "
                             f"{human_bytes(vcd)}, more than half the {human_bytes(free)} free on the disk; "
                             "trace a smaller layer")
        if vcd > _VCD_WARN_BYTES:
            notes.append(f"warning: --trace writes every signal of every cycle: roughly {human_bytes(vcd)} of VCD "
                         f"for about {est.cycles:,} cycles")
    return notes


def _check_build_cache() -> None:
    """The Verilator build cache ($ACCEL_CACHE_DIR or ~/.cache/accelsim/builds) must be
    writable: ValueError (one line) now, not a traceback after the analysis."""
    import os

    from sim.build import default_cache_dir
    check_output_dir(default_cache_dir(), "$ACCEL_CACHE_DIR" if os.environ.get("ACCEL_CACHE_DIR")
                     else "the Verilator build cache")


def _existing_parent(path: Path) -> Path:
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p if p.is_dir() else p.parent


def _save(dirpath: Path, layer: Layer, mapping: Mapping, result, keep: dict) -> list[str]:
    dirpath.mkdir(parents=True, exist_ok=True)
    x, w, y = keep["x"], keep["w"], keep["y"]
    if layer.is_gemm:
        # Layer.gemm: P = M, C = K (reduction), K = N; NCHW x is (1, K, M, 1), KCRS w is (N, K, 1, 1)
        np.save(dirpath / "input.npy", x[0, :, :, 0].T.copy())        # A: M x K
        np.save(dirpath / "weight.npy", w[:, :, 0, 0].T.copy())       # B: K x N
        np.save(dirpath / "output.npy", y[0, :, :, 0].T.copy())       # C: M x N
    else:
        np.save(dirpath / "input.npy", x)
        np.save(dirpath / "weight.npy", w)
        np.save(dirpath / "output.npy", y)
    (dirpath / "mapping.json").write_text(mapping.to_json())
    (dirpath / "layer.json").write_text(layer.to_json())
    (dirpath / "result.json").write_text(result.to_json())
    return ["input.npy", "weight.npy", "output.npy", "mapping.json", "layer.json", "result.json"]


def main(argv=None) -> int:
    """``python -m sim.run ...``; returns the exit status (bad arguments: 2)."""
    try:
        args = _parser().parse_args(argv)
    except UsageError as e:
        return print_error(e, see_help=True)
    notes: list[str] = []
    try:
        hw = config_from_args(args)
        layer = layer_from_args(args)
        output = output_from_args(args)
        check_mapping_options(args)
        rtl = rtl_options_from_args(args)
        hw, note = size_dram(hw, layer, output["out"], given="dram_mb" in config_fields_given(args))
        notes += [note] if note else []
        _check_build_cache()
        if args.save is not None:
            check_output_dir(args.save, "--save")
        if rtl["trace"] is not None:
            check_output_file(rtl["trace"], "--trace")
        mapping = mapping_from_args(args, hw, layer)
        notes += _plan(hw, layer, _estimate(hw, mapping, layer, output["out"]), rtl)
    except (ConfigError, LayerError, MappingError, ValueError) as e:
        return print_error(e)
    for line in notes:
        print(line, file=sys.stderr, flush=True)
    from sim.evaluate import evaluate

    keep: dict = {}
    kwargs = dict(seed=rtl["seed"], **output, harness=rtl["harness"], timeout_s=rtl["timeout_s"], keep=keep)
    if rtl["trace"]:
        kwargs["waves"] = True
    with tempfile.TemporaryDirectory(prefix="accel-run-") as wd:  # the run's files (a VCD) go with it
        result = evaluate(hw, mapping, layer, workdir=wd, **kwargs)
        print(result.to_json() if args.json else summary_text(hw, layer, mapping, result), flush=True)
        try:  # the result is printed: an output error now loses nothing
            if rtl["trace"] and keep.get("waves_file") is not None:
                rtl["trace"].parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(keep["waves_file"], rtl["trace"])
                size = human_bytes(rtl["trace"].stat().st_size)
                print(f"wrote the waveform {rtl['trace']} ({size})", file=sys.stderr)
            if args.save and result.feasible:
                names = _save(args.save, layer, mapping, result, keep)
                print(f"saved {', '.join(names)} in {args.save}", file=sys.stderr)
        except OSError as e:
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            print(f"error: the result is above, but writing it failed: {e.strerror or first_line(e)}{where}",
                  file=sys.stderr)
            return 1
    return 0 if result.feasible else 1


if __name__ == "__main__":
    run_main(main)
