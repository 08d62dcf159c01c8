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
  (optionally ``| --workload``), ``--stride``, ``--pad``, ``--groups`` (``--conv`` only:
  an error with ``--gemm``; `conv_options_given`), ``--name``. Sizes are `hw.layer`'s
  limits (one-line `LayerError`).
- `add_mapping_argument` / `mapping_from_args`: ``--mapping FILE|auto``.
- `add_output_arguments` / `output_from_args`: ``--out int32|int8``, ``--relu``,
  ``--shift`` (0..31; both need ``--out int8``: an error with int32), ``--json``.
- `add_rtl_arguments` / `rtl_options_from_args`: the RTL simulation's ``--seed``
  (0..SEED_MAX), ``--harness``, ``--timeout`` (0 < s <= TIMEOUT_MAX_S), ``--trace``,
  ``--save``.
- `check_output_dir` / `check_output_file`: an output path is checked before any work
  (never created there), so no computed result is lost to an output error.
- `slow_notice`: a one-line notice on stderr when a phase turns out slow (the analytical
  kernel compiling on a cold cache).
- `run_main`: the ``__main__`` wrapper of every tool: a closed stdout (``| head``) ends
  quietly, Ctrl-C is one ``interrupted`` line (exit 130).
- `summary_text`: the readable summary of one layer's `Result`.
- `first_line`: the first line of an exception's message.

``analytical=True`` (`add_output_arguments`, `add_rtl_arguments`) words the help for the
analytical model (``cost.run``): the RTL-only options say "(ignored: RTL only)", --relu
and --shift "(no effect on the analytical cost)".
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from hw.config import ConfigError, HardwareConfig
from hw.layer import MAX_DIM, MAX_MACS, MAX_STRIDE, Layer, LayerError
from hw.mapping import Mapping, MappingError, default_mapping

__all__ = [
    "UsageError", "OneLineParser", "print_error", "first_line",
    "add_config_arguments", "config_from_args",
    "add_layer_arguments", "layer_from_args",
    "add_mapping_argument", "check_mapping_options", "mapping_from_args",
    "add_output_arguments", "output_from_args", "SHIFT_MAX", "conv_options_given",
    "add_rtl_arguments", "rtl_options_from_args", "RTL_ONLY", "SEED_MAX", "TIMEOUT_MAX_S",
    "check_output_dir", "check_output_file", "read_json", "read_small_text", "MAX_INPUT_FILE_BYTES",
    "slow_notice", "ANALYTICAL_COMPILE_NOTICE", "human_bytes", "run_main", "config_fields_given", "summary_text",
]

#: Largest ``--shift`` (the int8 output's rounding right shift): 0..SHIFT_MAX.
SHIFT_MAX = 31

#: Largest ``--seed`` of the RTL inputs: 0..SEED_MAX (2**64 - 1, so any input seed of a
#: ``search.collect`` sample, ``seed * 2**32 + idx``, can be given again).
SEED_MAX = 2**64 - 1

#: Largest ``--timeout`` in seconds (one day); every ``--timeout`` is > 0 and finite.
TIMEOUT_MAX_S = 86_400.0

#: What a command says on stderr when the analytical model's Numba kernel compiles (the
#: first run, or after cost/kernel.py changed; `slow_notice` around ``cost.model.warm_up``).
ANALYTICAL_COMPILE_NOTICE = "compiling the analytical model (first run only, about 15 s)..."

#: Largest configuration, mapping or energy-table file read (1 MB; JSON/YAML of a few lines).
MAX_INPUT_FILE_BYTES = 1 << 20

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


def parse_or_exit_status(parser: argparse.ArgumentParser, argv) -> tuple[argparse.Namespace | None, int]:
    """``(args, 0)``; or ``(None, status)`` when there is nothing to run: bad arguments of a
    `OneLineParser` (one ``error:`` line printed, status 2) or ``--help`` (status 0). The
    preamble of a tool's ``main(argv)``::

        args, status = parse_or_exit_status(_parser(), argv)
        if args is None:
            return status
    """
    try:
        return parser.parse_args(argv), 0
    except UsageError as e:
        return None, print_error(e, see_help=True)
    except SystemExit as e:   # argparse's --help and --version
        return None, e.code if isinstance(e.code, int) else 0


def human_bytes(nbytes: int) -> str:
    """A size in bytes for people: ``40.0 MB``, ``1.0 TB``, ``512 bytes`` (powers of 1024)."""
    for unit, shift in (("TB", 40), ("GB", 30), ("MB", 20), ("KB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes / (1 << shift):,.1f} {unit}"
    return f"{nbytes:,} bytes"


def _help(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help with %


class _Default(str):
    """A string default that knows it is one (``--harness``: given or not), equal to the
    plain string everywhere else."""


def read_json(path, what: str, error: type[Exception]):
    """The JSON value in file ``path`` (at most MAX_INPUT_FILE_BYTES); ``error(f"{what}:
    ...")`` with one line when it cannot be read or is not JSON."""
    try:
        text = read_small_text(path)
    except OSError as e:
        raise error(f"{what}: {e.strerror or e}") from None
    except ValueError as e:
        raise error(f"{what}: {first_line(e)}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise error(f"{what}: it is not valid JSON: {first_line(e)}") from None


def read_small_text(path, limit: int = MAX_INPUT_FILE_BYTES) -> str:
    """The text of ``path``, read with a bound (``/dev/zero`` is not read forever).

    Raises OSError (unreadable) or ValueError (more than ``limit`` bytes, not UTF-8; the
    message does not name the file: the caller does)."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit:,} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"not a UTF-8 text file ({e.reason} at byte {e.start})") from None


# ---- hardware configuration -----------------------------------------------------------------
def add_config_arguments(p: argparse.ArgumentParser, *, defaults: dict[str, str] | None = None) -> None:
    """Add one ``--flag N`` per HardwareConfig field, and ``--from-json FILE``, to ``p``
    (in an argument group). Each flag's help is its `ParamSpec`'s help, allowed values
    and the field's default (``defaults``: field -> the words for a default the tool
    chooses itself, e.g. sim.run's DRAM size)."""
    defaults = defaults or {}
    g = p.add_argument_group("hardware configuration",
                             "one flag per HardwareConfig field; a field not given keeps its value "
                             "from --from-json, or its default")
    for f in dataclasses.fields(HardwareConfig):
        spec = f.metadata["spec"]
        g.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=int, metavar="N",
                       help=_help(f"{spec.help}; {spec.allowed} (default {defaults.get(f.name, f.default)})"))
    g.add_argument("--from-json", type=Path, metavar="FILE",
                   help="start from a HardwareConfig JSON file (flags override its fields)")


def config_from_args(args: argparse.Namespace) -> HardwareConfig:
    """HardwareConfig from parsed arguments (raises ConfigError on a bad value or file)."""
    base: dict = {}
    if args.from_json is not None:
        base = read_json(args.from_json, f"cannot read {args.from_json}", ConfigError)
        if not isinstance(base, dict):
            raise ConfigError(f"{args.from_json} does not hold a JSON object")
    for f in dataclasses.fields(HardwareConfig):
        value = getattr(args, f.name)
        if value is not None:
            base[f.name] = value
    return HardwareConfig.from_dict(base)


def parse_hardware(text: str) -> HardwareConfig:
    """A HardwareConfig from ``--hw``'s text: ``field=N,field=N,...`` (fields not given keep
    their defaults) or the path of a HardwareConfig JSON file (a run's ``best.json``
    works: its ``hw`` object is taken). ConfigError with one line on a bad value."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("--hw is empty; give field=N,... (e.g. dim=16,sp_kb=256,acc_kb=64) or a JSON file")
    if "=" not in text:
        doc = read_json(text, f"--hw {text}", ConfigError)
        if isinstance(doc, dict) and isinstance(doc.get("hw"), dict):
            doc = doc["hw"]
        if not isinstance(doc, dict):
            raise ConfigError(f"--hw {text}: the file does not hold a JSON object")
        return HardwareConfig.from_dict(doc)
    fields: dict = {}
    for part in (p.strip() for p in text.split(",")):
        name, eq, value = part.partition("=")
        name = name.strip()
        try:
            number = int(value)
        except ValueError:
            number = None
        if not eq or not name or number is None:
            raise ConfigError(f"--hw: {part!r} is not field=N (e.g. dim=16,sp_kb=256,acc_kb=64)")
        if name in fields:
            raise ConfigError(f"--hw: {name} is given twice")
        fields[name] = number
    return HardwareConfig.from_dict(fields)


def config_fields_given(args: argparse.Namespace) -> set[str]:
    """The HardwareConfig fields the command line sets: by a flag, or in ``--from-json``
    (an unreadable file gives none; `config_from_args` reports it)."""
    given = {f.name for f in dataclasses.fields(HardwareConfig) if getattr(args, f.name) is not None}
    if args.from_json is not None:
        with contextlib.suppress(OSError, ValueError):
            base = json.loads(read_small_text(args.from_json))
            if isinstance(base, dict):
                given |= set(base)
    return given


# ---- layer ----------------------------------------------------------------------------------
def add_layer_arguments(p: argparse.ArgumentParser, *, workload_help: str | None = None) -> None:
    """Add the required ``--gemm M K N | --conv N K C P Q R S`` and ``--stride``, ``--pad``,
    ``--groups``, ``--name``. With ``workload_help``, ``--workload NAME|FILE`` (help text
    ``workload_help``) joins the required group: exactly one of the three."""
    g = p.add_argument_group("layer", f"each dimension from 1 to {MAX_DIM:,}, at most {MAX_MACS:,} MACs "
                                      "(hw.layer's limits)")
    shape = g.add_mutually_exclusive_group(required=True)
    shape.add_argument("--gemm", nargs=3, type=int, metavar=("M", "K", "N"), help="C[M,N] = A[M,K] x B[K,N]")
    shape.add_argument("--conv", nargs=7, type=int, metavar=("N", "K", "C", "P", "Q", "R", "S"),
                       help="convolution: batch, out channels, in channels, out height, out width, kernel")
    if workload_help is not None:
        shape.add_argument("--workload", metavar="NAME|FILE", help=_help(workload_help))
    g.add_argument("--stride", type=int, default=None, metavar="T",
                   help=f"convolution stride, 1..{MAX_STRIDE} (--conv only; default 1)")
    g.add_argument("--pad", type=int, default=None, metavar="X",
                   help="convolution padding, 0..min(R, S) - 1 (--conv only; default 0)")
    g.add_argument("--groups", type=int, default=None, metavar="G",
                   help="convolution groups, dividing K and C (--conv only; default 1)")
    g.add_argument("--name", default=None, help="layer name for the report")


def _applies(options: list) -> str:
    return "applies" if len(options) == 1 else "apply"


def conv_options_given(args: argparse.Namespace) -> list[str]:
    """The convolution-only options (``--stride``, ``--pad``, ``--groups``) on the command line."""
    return [f"--{k}" for k in ("stride", "pad", "groups") if getattr(args, k, None) is not None]


def layer_from_args(args: argparse.Namespace) -> Layer:
    """The Layer of ``--gemm`` or ``--conv`` (raises LayerError on a bad shape or size, or
    on ``--stride`` / ``--pad`` / ``--groups`` with ``--gemm``)."""
    if args.name is not None and not args.name.strip():
        raise LayerError("--name must not be empty")
    if args.gemm:
        given = conv_options_given(args)
        if given:
            raise LayerError(f"{' and '.join(given)} {_applies(given)} to --conv only (a --gemm is a 1x1 "
                             "convolution with stride 1, no padding, one group); use --conv N K C P Q R S")
        m, k, n = args.gemm
        for letter, v in zip("MKN", args.gemm):
            if v > MAX_DIM:
                raise LayerError(f"--gemm {letter} must be an integer from 1 to {MAX_DIM:,} (2**20); got {v:,}")
        return Layer.gemm(args.name or f"gemm_{m}x{k}x{n}", m, k, n)
    n, k, c, p, q, r, s = args.conv
    stride = 1 if args.stride is None else args.stride
    pad = 0 if args.pad is None else args.pad
    groups = 1 if args.groups is None else args.groups
    return Layer(name=args.name or f"conv_{n}x{k}x{c}x{p}x{q}x{r}x{s}", n=n, k=k, c=c, p=p, q=q, r=r, s=s,
                 stride=stride, padding=pad, groups=groups)


# ---- mapping --------------------------------------------------------------------------------
def add_mapping_argument(p: argparse.ArgumentParser, *, workload: bool = False) -> None:
    """Add ``--mapping FILE|auto|best`` (default auto), ``--samples N`` and ``--objective``
    (the best-of-N mapper, `search.software.best_mapping`). ``workload``: the parser also
    has ``--workload``, which takes auto or best for each layer (said in the help)."""
    p.add_argument("--mapping", default="auto", metavar="FILE|auto|best",
                   help="a Mapping JSON file, 'auto' (default_mapping) or 'best' (the best of --samples "
                        "constrained mappings by the analytical model, default_mapping among them)"
                        + ("; --workload takes auto or best for each layer" if workload else ""))
    p.add_argument("--samples", type=int, default=None, metavar="N",
                   help=f"with --mapping best: mappings drawn per layer (1..{MAX_BEST_SAMPLES:,}, "
                        f"default {DEFAULT_BEST_SAMPLES})")
    p.add_argument("--objective", choices=("edp", "cycles", "energy"), default=None,
                   help="with --mapping best: what the mapping minimises (default edp)")


#: --mapping best: default and largest --samples (search.software.MAX_SAMPLES)
DEFAULT_BEST_SAMPLES = 4096
MAX_BEST_SAMPLES = 1 << 20


def check_mapping_options(args: argparse.Namespace) -> None:
    """ValueError (one line) for --samples / --objective without --mapping best, or a
    --samples outside 1..MAX_BEST_SAMPLES: before any work."""
    if args.mapping != "best":
        for opt in ("samples", "objective"):
            if getattr(args, opt) is not None:
                raise ValueError(f"--{opt} applies to --mapping best only (got --mapping {args.mapping})")
    elif args.samples is not None and not 1 <= args.samples <= MAX_BEST_SAMPLES:
        raise ValueError(f"--samples must be in 1..{MAX_BEST_SAMPLES:,}; got {args.samples}")


def mapping_from_args(args: argparse.Namespace, hw: HardwareConfig, layer: Layer) -> Mapping:
    """``default_mapping(hw, layer)`` for ``--mapping auto``, the best-of-N mapping for
    ``best``, else the Mapping of the file.

    Raises MappingError: no mapping fits, an unreadable file or one that is not JSON
    (``cannot read mapping file ...``), or not a Mapping."""
    if args.mapping == "auto":
        return default_mapping(hw, layer)
    if args.mapping == "best":
        # the mapper lives in the search package (it draws and ranks candidates); hw.cli is
        # the command lines' shared module, so it is imported here, where it is used
        from search.software import best_mapping
        return best_mapping(hw, layer, samples=args.samples or DEFAULT_BEST_SAMPLES,
                            objective=args.objective or "edp")[0]
    data = read_json(args.mapping, f"cannot read mapping file {args.mapping}", MappingError)
    try:
        return Mapping.from_dict(data)
    except MappingError as e:
        raise MappingError(f"mapping file {args.mapping}: {first_line(e)}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as e:  # a field of the wrong shape
        raise MappingError(f"mapping file {args.mapping}: not a Mapping ({type(e).__name__}: {first_line(e)}); "
                           "see examples/mapping_conv_d8.json") from None


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
    outside 0..SHIFT_MAX, or when --relu or a --shift other than 0 comes with
    ``--out int32`` (the raw accumulators: neither would have an effect)."""
    if not 0 <= args.shift <= SHIFT_MAX:
        raise ValueError(f"--shift must be from 0 to {SHIFT_MAX}; got {args.shift}")
    if args.out == "int32" and (args.relu or args.shift):
        given = [f for f, on in (("--relu", args.relu), (f"--shift {args.shift}", args.shift)) if on]
        raise ValueError(f"{' and '.join(given)} {_applies(given)} to --out int8 only (int32 outputs are the raw "
                         "accumulators); add --out int8")
    return {"out": args.out, "relu": args.relu, "shift": args.shift}


def add_rtl_arguments(p: argparse.ArgumentParser, *, analytical: bool = False) -> None:
    """Add the RTL simulation's options (destinations `RTL_ONLY`): ``--seed``, ``--harness``,
    ``--timeout``, ``--trace FILE.vcd``, ``--save DIR``. ``analytical``: the parser is the
    analytical model's, which accepts them (one command line runs on either evaluator)
    and ignores them; each help says "(ignored: RTL only)"."""
    note = _IGNORED if analytical else ""
    g = p.add_argument_group("RTL simulation")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of the random int8 inputs, 0..2**64-1 (default 0)" + note)
    g.add_argument("--harness", choices=("lean", "cocotb"), default=_Default("lean"),
                   help="simulation harness (default lean)" + note)
    g.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                   help=f"wall-clock limit in seconds, up to {TIMEOUT_MAX_S:g} (default 600)" + note)
    g.add_argument("--trace", type=Path, metavar="FILE.vcd",
                   help="write a VCD waveform of the run (cocotb harness, model built with tracing; "
                        "large: the size is estimated first)" + note)
    g.add_argument("--save", type=Path, metavar="DIR",
                   help="write inputs, output, mapping and result here" + note)


def rtl_options_from_args(args: argparse.Namespace) -> dict:
    """``{"seed", "harness", "timeout_s", "trace"}`` of `add_rtl_arguments`' options, checked
    (no file is touched): --seed in 0..SEED_MAX, --timeout finite in (0, TIMEOUT_MAX_S],
    --trace a ``.vcd`` name, and not ``--harness lean`` with --trace (a trace needs
    cocotb). Raises ValueError (one line)."""
    if not 0 <= args.seed <= SEED_MAX:
        raise ValueError(f"--seed must be an integer from 0 to 2**64 - 1; got {args.seed}")
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= TIMEOUT_MAX_S):
        raise ValueError(f"--timeout must be a number of seconds > 0 and <= {TIMEOUT_MAX_S:g}; got {args.timeout:g}")
    harness = str(args.harness)
    if args.trace is not None:
        if args.trace.suffix.lower() != ".vcd":
            raise ValueError(f"--trace writes a VCD waveform: give a .vcd file name, not {args.trace.name!r}")
        if harness == "lean" and not isinstance(args.harness, _Default):
            raise ValueError("--trace runs on the cocotb harness; --harness lean cannot trace (leave --harness out)")
        harness = "cocotb"
    return {"seed": args.seed, "harness": harness, "timeout_s": args.timeout, "trace": args.trace}


# ---- output paths -----------------------------------------------------------------------------
def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_creatable(path: Path, option: str, shown: Path | None = None) -> None:
    """The folders up to ``path`` can be created: the nearest existing one is a writable
    directory (ValueError naming ``option`` otherwise)."""
    import tempfile

    base = _nearest_existing(path)
    path = shown if shown is not None else path
    if not base.is_dir():
        raise ValueError(f"{option} {path}: {base} is a file, not a directory")
    try:  # a probe file, gone at once: permissions, a read-only disk, /proc, ...
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as e:
        raise ValueError(f"{option} {path}: cannot write into {base}: {e.strerror or e}") from None


@contextlib.contextmanager
def _path_errors(path, option: str) -> Iterator[None]:
    try:
        yield
    except OSError as e:  # a name too long, a loop of links, ...
        raise ValueError(f"{option} {path}: {e.strerror or e}") from None
    except ValueError as e:  # an embedded NUL
        if str(e).startswith(f"{option} "):
            raise
        raise ValueError(f"{option} {path!r}: {first_line(e)}") from None


def check_output_dir(path: Path, option: str) -> Path:
    """``path`` as an output directory: an existing directory that is writable, or one that
    can be created. Nothing is created. ValueError (one line, naming ``option``) otherwise."""
    path = Path(path)
    with _path_errors(path, option):
        if path.exists() and not path.is_dir():
            raise ValueError(f"{option} {path}: exists and is not a directory")
        _check_creatable(path, option)
    return path


def check_output_file(path: Path, option: str) -> Path:
    """``path`` as an output file: not a directory, an existing file writable, else its
    folder creatable. Nothing is created. ValueError (one line, naming ``option``) otherwise."""
    path = Path(path)
    with _path_errors(path, option):
        if path.is_dir():
            raise ValueError(f"{option} {path}: is a directory; give a file name")
        if path.exists():
            try:
                with open(path, "ab"):
                    pass
            except OSError as e:
                raise ValueError(f"{option} {path}: cannot write the file: {e.strerror or e}") from None
            return path
        _check_creatable(path.parent, option, path)
    return path


# ---- long phases ----------------------------------------------------------------------------
@contextlib.contextmanager
def slow_notice(message: str, *, after: float = 3.0, stream=None, enabled: bool = True) -> Iterator[None]:
    """Print ``message`` (one line, to ``stream``, default stderr) if the block is still
    running after ``after`` seconds: a notice for a phase that is only sometimes slow
    (``enabled=False``: never)."""
    if not enabled:
        yield
        return
    done = threading.Event()

    def say():
        if not done.wait(max(0.0, after)):
            print(message, file=stream or sys.stderr, flush=True)

    t = threading.Thread(target=say, daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join()


def run_main(main: Callable[[], int]) -> NoReturn:
    """``raise SystemExit(main())`` for a tool's ``__main__``: a reader that closes stdout
    early (``| head``) ends the command quietly (exit 0, as after the lines it wanted), and
    Ctrl-C prints one ``interrupted`` line (exit 130) instead of a traceback."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # point stdout at /dev/null so that the interpreter's own final flush is quiet too
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    raise SystemExit(status)


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
