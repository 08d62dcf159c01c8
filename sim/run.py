"""Run one layer on the RTL from the command line.

    python -m sim.run --dim 16 --sp-kb 256 --acc-kb 64 \\
        (--gemm M K N | --conv N K C P Q R S [--stride T] [--pad X] [--groups G]) \\
        [--mapping FILE.json | --mapping auto] [--seed S] [--out int32|int8 --relu --shift B] \\
        [--harness lean|cocotb] [--trace out.vcd] [--save DIR] [--json]

Prints a readable summary, or with --json the `Result` as one JSON object on stdout.
--save DIR writes input.npy (NCHW), weight.npy (KCRS) and output.npy (NKPQ) (for a GEMM:
A as M x K, B as K x N, C as M x N) plus mapping.json and result.json, so anyone can
re-check the result. --trace writes a waveform of the run (cocotb harness, VCD).
Bad arguments print one `error:` line and exit 2.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from hw.config import ConfigError
from hw.generate import _OneLineParser, add_config_arguments, config_from_args
from hw.layer import Layer, LayerError
from hw.mapping import Mapping, MappingError, default_mapping

__all__ = ["main", "layer_from_args"]


def _parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="python -m sim.run", description=__doc__.split("\n\n")[0])
    add_config_arguments(p)
    shape = p.add_mutually_exclusive_group(required=True)
    shape.add_argument("--gemm", nargs=3, type=int, metavar=("M", "K", "N"), help="C[M,N] = A[M,K] x B[K,N]")
    shape.add_argument("--conv", nargs=7, type=int, metavar=("N", "K", "C", "P", "Q", "R", "S"),
                       help="convolution: batch, out channels, in channels, out height, out width, kernel")
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--pad", type=int, default=0)
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--name", default=None, help="layer name for the report")
    p.add_argument("--mapping", default="auto", help="a Mapping JSON file, or 'auto' (default_mapping)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random int8 inputs (default 0)")
    p.add_argument("--out", choices=("int32", "int8"), default="int32", help="output type (default int32)")
    p.add_argument("--relu", action="store_true", help="int8 output: ReLU")
    p.add_argument("--shift", type=int, default=0, help="int8 output: rounding right shift (0..31)")
    p.add_argument("--harness", choices=("lean", "cocotb"), default="lean")
    p.add_argument("--timeout", type=float, default=600.0, help="wall-clock limit in seconds (default 600)")
    p.add_argument("--trace", type=Path, metavar="FILE.vcd",
                   help="write a VCD waveform of the run (cocotb harness, model built with tracing)")
    p.add_argument("--save", type=Path, metavar="DIR", help="write inputs, output, mapping and result here")
    p.add_argument("--json", action="store_true", help="print the Result as one JSON object")
    return p


def layer_from_args(args) -> Layer:
    if args.gemm:
        m, k, n = args.gemm
        return Layer.gemm(args.name or f"gemm_{m}x{k}x{n}", m, k, n)
    n, k, c, p, q, r, s = args.conv
    return Layer(name=args.name or f"conv_{n}x{k}x{c}x{p}x{q}x{r}x{s}", n=n, k=k, c=c, p=p, q=q, r=r, s=s,
                 stride=args.stride, padding=args.pad, groups=args.groups)


def _mapping(args, hw, layer) -> Mapping:
    if args.mapping == "auto":
        return default_mapping(hw, layer)
    try:
        return Mapping.from_json(Path(args.mapping).read_text())
    except OSError as e:
        raise MappingError(f"cannot read mapping file {args.mapping}: {e.strerror}") from None


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


def _summary(hw, layer, mapping, r) -> str:
    lines = [f"layer    {layer}", f"hardware {hw.to_json()}", f"mapping  {mapping.to_json()}"]
    if not r.feasible:
        lines.append(f"INFEASIBLE: {r.reason}")
        return "\n".join(lines)
    c = r.counts
    lines += [
        f"cycles   {r.cycles:,}   utilisation {r.utilisation:.3f}   "
        + (f"verified {r.verified}" if r.fidelity == "rtl" else f"fidelity {r.fidelity}"),
        f"busy     load {r.busy['load']:,}  exec {r.busy['exec']:,}  store {r.busy['store']:,}",
        f"DRAM     read {c['dram_bytes_read']:,} B  written {c['dram_bytes_written']:,} B",
        f"local    sp reads {c['sp_reads']:,} writes {c['sp_writes']:,}   "
        f"acc reads {c['acc_reads']:,} writes {c['acc_writes']:,}",
        f"MACs     {c['macs']:,}   weight rows loaded {c['weight_loads']:,}   "
        f"instructions {r.extra.get('instructions', 0):,}"
        + (f"   sim {r.extra.get('sim_wall_s', 0):.2f} s" if "sim_wall_s" in r.extra else ""),
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        hw = config_from_args(args)
        layer = layer_from_args(args)
        mapping = _mapping(args, hw, layer)
        if not 0 <= args.shift <= 31:
            raise ValueError(f"--shift must be from 0 to 31; got {args.shift}")
        if args.trace and args.trace.suffix.lower() != ".vcd":
            raise ValueError(f"--trace writes a VCD waveform: give a .vcd file name, not {args.trace.name!r}")
        if args.timeout <= 0:
            raise ValueError(f"--timeout must be positive; got {args.timeout}")
    except (ConfigError, LayerError, MappingError, ValueError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    from sim.evaluate import evaluate

    keep: dict = {}
    harness = "cocotb" if args.trace else args.harness
    kwargs = dict(seed=args.seed, out=args.out, relu=args.relu, shift=args.shift, harness=harness,
                  timeout_s=args.timeout, keep=keep)
    if args.trace:
        kwargs["waves"] = True
    result = evaluate(hw, mapping, layer, **kwargs)
    if args.trace and "waves_file" in keep:
        args.trace.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(keep["waves_file"], args.trace)
    if args.save and result.feasible:
        _save(args.save, layer, mapping, result, keep)
    print(result.to_json() if args.json else _summary(hw, layer, mapping, result))
    return 0 if result.feasible else 1


if __name__ == "__main__":
    raise SystemExit(main())
