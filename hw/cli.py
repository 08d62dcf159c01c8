"""Command-line pieces shared by every tool of the toolkit.

`hw.generate`, `sim.run`, `cost.run` and the `search.*` commands build their parsers
from these functions, so an option is defined once and reads the same everywhere.

- `OneLineParser`: argparse that raises `UsageError` (argparse's one-line message)
  instead of printing a usage block and exiting; a ``main`` prints it with
  `print_error` as one ``error: ...`` line and returns 2. ``--help`` still prints the
  help and exits 0.
- `add_config_arguments` / `config_from_args`: one ``--flag`` per `HardwareConfig`
  field (underscores become dashes; help, allowed values and default from the field's
  `ParamSpec`) and ``--from-json FILE``.
- `add_layer_arguments` / `layer_from_args`: ``--gemm M K N | --conv N K C P Q R S``
  (optionally ``| --workload``), ``--stride``, ``--pad``, ``--groups``, ``--name``.
- `add_mapping_argument` / `mapping_from_args`: ``--mapping FILE|auto``.
- `add_output_arguments` / `output_from_args`: ``--out int32|int8``, ``--relu``,
  ``--shift`` (0..31), ``--json``.
- `add_rtl_arguments`: the RTL simulation's ``--seed``, ``--harness``, ``--timeout``,
  ``--trace``, ``--save``.
- `summary_text`: the readable summary of one layer's `Result`.
- `first_line`: the first line of an exception's message.

``analytical=True`` (`add_output_arguments`, `add_rtl_arguments`) words the help for the
analytical model (``cost.run``): the RTL-only options say "(ignored: RTL only)", --relu
and --shift "(no effect on the analytical cost)".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import NoReturn

from hw.config import ConfigError, HardwareConfig
from hw.layer import Layer
from hw.mapping import Mapping, MappingError, default_mapping

__all__ = [
    "UsageError", "OneLineParser", "print_error", "first_line",
    "add_config_arguments", "config_from_args",
    "add_layer_arguments", "layer_from_args",
    "add_mapping_argument", "mapping_from_args",
    "add_output_arguments", "output_from_args", "SHIFT_MAX",
    "add_rtl_arguments", "RTL_ONLY", "summary_text",
]

#: Largest ``--shift`` (the int8 output's rounding right shift): 0..SHIFT_MAX.
SHIFT_MAX = 31

#: Destinations of the options that only the RTL simulation reads (`add_rtl_arguments`).
RTL_ONLY = ("seed", "harness", "timeout", "trace", "save")

_IGNORED = " (ignored: RTL only)"
_NO_COST_EFFECT = " (no effect on the analytical cost)"


# ---- errors ---------------------------------------------------------------------------------
class UsageError(Exception):
    """Bad command-line arguments; ``str(e)`` is argparse's one-line message."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises `UsageError` instead of printing usage and exiting, so a
    ``main(argv)`` can report one ``error:`` line and return 2 (and tests can call it)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def print_error(e: BaseException, *, see_help: bool = False) -> int:
    """Print ``error: <first line of e>`` to stderr (``see_help``: plus `` (see --help)``);
    returns 2, the exit status of bad input."""
    print(f"error: {first_line(e)}{' (see --help)' if see_help else ''}", file=sys.stderr)
    return 2


def _help(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help with %


# ---- hardware configuration -----------------------------------------------------------------
def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """Add one ``--flag N`` per HardwareConfig field, and ``--from-json FILE``, to ``p``
    (in an argument group). Each flag's help is its `ParamSpec`'s help, allowed values
    and the field's default."""
    g = p.add_argument_group("hardware configuration",
                             "one flag per HardwareConfig field; a field not given keeps its value "
                             "from --from-json, or its default")
    for f in dataclasses.fields(HardwareConfig):
        spec = f.metadata["spec"]
        g.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=int, metavar="N",
                       help=_help(f"{spec.help}; {spec.allowed} (default {f.default})"))
    g.add_argument("--from-json", type=Path, metavar="FILE",
                   help="start from a HardwareConfig JSON file (flags override its fields)")


def config_from_args(args: argparse.Namespace) -> HardwareConfig:
    """HardwareConfig from parsed arguments (raises ConfigError on a bad value or file)."""
    base: dict = {}
    if args.from_json is not None:
        try:
            base = json.loads(Path(args.from_json).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read {args.from_json}: {e}") from None
        if not isinstance(base, dict):
            raise ConfigError(f"{args.from_json} does not hold a JSON object")
    for f in dataclasses.fields(HardwareConfig):
        value = getattr(args, f.name)
        if value is not None:
            base[f.name] = value
    return HardwareConfig.from_dict(base)


# ---- layer ----------------------------------------------------------------------------------
def add_layer_arguments(p: argparse.ArgumentParser, *, workload_help: str | None = None) -> None:
    """Add the required ``--gemm M K N | --conv N K C P Q R S`` and ``--stride``, ``--pad``,
    ``--groups``, ``--name``. With ``workload_help``, ``--workload NAME|FILE`` (help text
    ``workload_help``) joins the required group: exactly one of the three."""
    g = p.add_argument_group("layer")
    shape = g.add_mutually_exclusive_group(required=True)
    shape.add_argument("--gemm", nargs=3, type=int, metavar=("M", "K", "N"), help="C[M,N] = A[M,K] x B[K,N]")
    shape.add_argument("--conv", nargs=7, type=int, metavar=("N", "K", "C", "P", "Q", "R", "S"),
                       help="convolution: batch, out channels, in channels, out height, out width, kernel")
    if workload_help is not None:
        shape.add_argument("--workload", metavar="NAME|FILE", help=_help(workload_help))
    g.add_argument("--stride", type=int, default=1, metavar="T", help="convolution stride (default 1)")
    g.add_argument("--pad", type=int, default=0, metavar="X", help="convolution padding (default 0)")
    g.add_argument("--groups", type=int, default=1, metavar="G", help="convolution groups (default 1)")
    g.add_argument("--name", default=None, help="layer name for the report")


def layer_from_args(args: argparse.Namespace) -> Layer:
    """The Layer of ``--gemm`` or ``--conv`` (raises LayerError on a bad shape)."""
    if args.gemm:
        m, k, n = args.gemm
        return Layer.gemm(args.name or f"gemm_{m}x{k}x{n}", m, k, n)
    n, k, c, p, q, r, s = args.conv
    return Layer(name=args.name or f"conv_{n}x{k}x{c}x{p}x{q}x{r}x{s}", n=n, k=k, c=c, p=p, q=q, r=r, s=s,
                 stride=args.stride, padding=args.pad, groups=args.groups)


# ---- mapping --------------------------------------------------------------------------------
def add_mapping_argument(p: argparse.ArgumentParser, *, workload: bool = False) -> None:
    """Add ``--mapping FILE|auto`` (default auto). ``workload``: the parser also has
    ``--workload``, which always uses default_mapping (said in the help)."""
    p.add_argument("--mapping", default="auto", metavar="FILE|auto",
                   help="a Mapping JSON file, or 'auto' (default_mapping)"
                        + ("; --workload always uses default_mapping" if workload else ""))


def mapping_from_args(args: argparse.Namespace, hw: HardwareConfig, layer: Layer) -> Mapping:
    """``default_mapping(hw, layer)`` for ``--mapping auto``, else the Mapping of the file.

    Raises MappingError (no mapping fits, an unreadable file: ``cannot read mapping file
    ...``, or not a Mapping) or ValueError (the file is not valid JSON)."""
    if args.mapping == "auto":
        return default_mapping(hw, layer)
    try:
        return Mapping.from_json(Path(args.mapping).read_text())
    except OSError as e:
        raise MappingError(f"cannot read mapping file {args.mapping}: {e.strerror}") from None


# ---- output ---------------------------------------------------------------------------------
def add_output_arguments(p: argparse.ArgumentParser, *, analytical: bool = False,
                         json_help: str = "print the Result as one JSON object") -> None:
    """Add ``--out int32|int8``, ``--relu``, ``--shift B`` and ``--json`` (help ``json_help``).
    ``analytical``: the help says --relu and --shift do not change the analytical cost."""
    note = _NO_COST_EFFECT if analytical else ""
    g = p.add_argument_group("output")
    g.add_argument("--out", choices=("int32", "int8"), default="int32", help="output type (default int32)")
    g.add_argument("--relu", action="store_true", help="int8 output: ReLU" + note)
    g.add_argument("--shift", type=int, default=0, metavar="B",
                   help=f"int8 output: rounding right shift (0..{SHIFT_MAX})" + note)
    g.add_argument("--json", action="store_true", help=_help(json_help))


def output_from_args(args: argparse.Namespace) -> dict:
    """``{"out", "relu", "shift"}`` of the parsed arguments; ValueError when --shift is
    outside 0..SHIFT_MAX."""
    if not 0 <= args.shift <= SHIFT_MAX:
        raise ValueError(f"--shift must be from 0 to {SHIFT_MAX}; got {args.shift}")
    return {"out": args.out, "relu": args.relu, "shift": args.shift}


def add_rtl_arguments(p: argparse.ArgumentParser, *, analytical: bool = False) -> None:
    """Add the RTL simulation's options (destinations `RTL_ONLY`): ``--seed``, ``--harness``,
    ``--timeout``, ``--trace FILE.vcd``, ``--save DIR``. ``analytical``: the parser is the
    analytical model's, which accepts them (one command line runs on either evaluator)
    and ignores them; each help says "(ignored: RTL only)"."""
    note = _IGNORED if analytical else ""
    g = p.add_argument_group("RTL simulation")
    g.add_argument("--seed", type=int, default=0, help="seed of the random int8 inputs (default 0)" + note)
    g.add_argument("--harness", choices=("lean", "cocotb"), default="lean",
                   help="simulation harness (default lean)" + note)
    g.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                   help="wall-clock limit in seconds (default 600)" + note)
    g.add_argument("--trace", type=Path, metavar="FILE.vcd",
                   help="write a VCD waveform of the run (cocotb harness, model built with tracing)" + note)
    g.add_argument("--save", type=Path, metavar="DIR",
                   help="write inputs, output, mapping and result here" + note)


# ---- readable summary -----------------------------------------------------------------------
def summary_text(hw: HardwareConfig, layer: Layer, mapping: Mapping, r) -> str:
    """The readable summary of one layer's `Result` ``r``: layer, hardware and mapping,
    then cycles, utilisation, busy cycles and counters, or ``INFEASIBLE: <reason>``."""
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
