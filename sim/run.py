"""Run one layer on the RTL from the command line.

    python -m sim.run --dim 16 --sp-kb 256 --acc-kb 64 \\
        (--gemm M K N | --conv N K C P Q R S [--stride T] [--pad X] [--groups G]) \\
        [--mapping FILE.json | --mapping auto] [--seed S] [--out int32|int8 --relu --shift B] \\
        [--harness lean|cocotb] [--timeout S] [--trace out.vcd] [--save DIR] [--json]

The options are `hw.cli`'s (shared with `python -m cost.run`). Prints a readable summary
(`hw.cli.summary_text`), or with --json the `Result` as one JSON object on stdout.
--save DIR writes input.npy (NCHW), weight.npy (KCRS) and output.npy (NKPQ) (for a GEMM:
A as M x K, B as K x N, C as M x N) plus mapping.json, layer.json and result.json, so
anyone can re-check the result. --trace writes a waveform of the run (cocotb harness, VCD).
Bad arguments print one `error:` line and exit 2; an infeasible result exits 1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from hw.cli import (
    OneLineParser,
    UsageError,
    add_config_arguments,
    add_layer_arguments,
    add_mapping_argument,
    add_output_arguments,
    add_rtl_arguments,
    config_from_args,
    layer_from_args,
    mapping_from_args,
    output_from_args,
    print_error,
    summary_text,
)
from hw.config import ConfigError
from hw.layer import Layer, LayerError
from hw.mapping import Mapping, MappingError

__all__ = ["main"]


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m sim.run", description=__doc__.split("\n\n")[0])
    add_config_arguments(p)
    add_layer_arguments(p)
    add_mapping_argument(p)
    add_output_arguments(p)
    add_rtl_arguments(p)
    return p


def _save(dirpath: Path, layer: Layer, mapping: Mapping, result, keep: dict) -> None:
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


def main(argv=None) -> int:
    """``python -m sim.run ...``; returns the exit status (bad arguments: 2)."""
    try:
        args = _parser().parse_args(argv)
    except UsageError as e:
        return print_error(e, see_help=True)
    try:
        hw = config_from_args(args)
        layer = layer_from_args(args)
        mapping = mapping_from_args(args, hw, layer)
        output = output_from_args(args)
        if args.trace and args.trace.suffix.lower() != ".vcd":
            raise ValueError(f"--trace writes a VCD waveform: give a .vcd file name, not {args.trace.name!r}")
        if args.timeout <= 0:
            raise ValueError(f"--timeout must be positive; got {args.timeout}")
    except (ConfigError, LayerError, MappingError, ValueError) as e:
        return print_error(e)
    from sim.evaluate import evaluate

    keep: dict = {}
    harness = "cocotb" if args.trace else args.harness
    kwargs = dict(seed=args.seed, **output, harness=harness, timeout_s=args.timeout, keep=keep)
    if args.trace:
        kwargs["waves"] = True
    result = evaluate(hw, mapping, layer, **kwargs)
    if args.trace and "waves_file" in keep:
        args.trace.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(keep["waves_file"], args.trace)
    if args.save and result.feasible:
        _save(args.save, layer, mapping, result, keep)
    print(result.to_json() if args.json else summary_text(hw, layer, mapping, result))
    return 0 if result.feasible else 1


if __name__ == "__main__":
    raise SystemExit(main())
