"""Command line: write the accelerator's Verilog for one HardwareConfig.

    python -m hw.generate --dim 16 [--sp-kb 256] [--acc-kb 64] [--<field> N ...]
                          [--from-json cfg.json] [--out-dir build/rtl] [--lint]

Every HardwareConfig field has a flag (underscores become dashes; `hw.cli`'s
``add_config_arguments``, help from the field's ``ParamSpec``); fields not given keep
the values of ``--from-json`` or the HardwareConfig defaults. The file is
named from the config (``top_d16_sp256_acc64.v``, plus ``_<field><value>`` for each
other field that differs from its default) and its path is the last line printed.
A bad value, or an ``--out-dir`` that is a file or not writable, prints one
``error: ...`` line to stderr and exits with status 2, before anything is generated.
Generation takes 10-45 s (Amaranth; DIM 32 is the slowest) and says so on stderr first.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from hw.cli import (
    OneLineParser,
    UsageError,
    add_config_arguments,
    check_output_dir,
    check_output_file,
    config_from_args,
    first_line,
    print_error,
    run_main,
)
from hw.config import ConfigError, HardwareConfig

__all__ = ["rtl_stem", "write_verilog", "lint_verilog", "main"]

_MAIN_FIELDS = ("dim", "sp_kb", "acc_kb")


def rtl_stem(cfg: HardwareConfig) -> str:
    """File stem naming ``cfg``: ``top_d16_sp256_acc64`` plus ``_<field><value>`` for non-default fields."""
    stem = f"top_d{cfg.dim}_sp{cfg.sp_kb}_acc{cfg.acc_kb}"
    for f in dataclasses.fields(HardwareConfig):
        value = getattr(cfg, f.name)
        if f.name not in _MAIN_FIELDS and value != f.default:
            stem += f"_{f.name}{value}"
    return stem


def _parser() -> OneLineParser:
    p = OneLineParser(
        prog="python -m hw.generate",
        description="Write the accelerator Verilog (top module 'top') for one HardwareConfig; "
        "prints the file path as the last line.",
    )
    add_config_arguments(p)
    p.add_argument("--out-dir", type=Path, default=Path("build/rtl"), help="output directory (default build/rtl)")
    p.add_argument("--lint", action="store_true", help="also run 'verilator --lint-only -Wno-fatal' on the file")
    return p


def write_verilog(cfg: HardwareConfig, out_dir: Path) -> Path:
    """Generate the Verilog of ``cfg`` with ``hw.top.generate_verilog`` into ``out_dir``."""
    from hw.top import generate_verilog  # lazy: --help and config errors work without it

    text = generate_verilog(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{rtl_stem(cfg)}.v"
    path.write_text(text)
    return path


def lint_verilog(path: Path) -> tuple[int, str]:
    """Run ``verilator --lint-only -Wno-fatal`` on ``path``.

    The full output goes to ``<path without .v>.lint.log``; ``%Error`` lines are
    echoed to stderr. Returns (verilator's exit status, one-line summary).
    """
    from sim.toolchain import verilator_env, verilator_executable

    proc = subprocess.run(
        [verilator_executable(), "--lint-only", "-Wno-fatal", "--top-module", "top", str(path)],
        env=verilator_env(), capture_output=True, text=True,
    )
    out = proc.stdout + proc.stderr
    log = path.with_suffix(".lint.log")
    log.write_text(out)
    for line in re.findall(r"^%Error.*$", out, re.M):
        print(line, file=sys.stderr)
    warnings = Counter(re.findall(r"^%Warning-([A-Z0-9_]+)", out, re.M))
    errors = len(re.findall(r"^%Error", out, re.M))
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(warnings.items())) or "none"
    return proc.returncode, (f"lint: exit {proc.returncode}, {errors} errors, "
                             f"{sum(warnings.values())} warnings ({kinds}); full output in {log}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m hw.generate``; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except UsageError as e:
        return print_error(e, see_help=True)
    try:
        cfg = config_from_args(args)
        check_output_dir(args.out_dir, "--out-dir")
        check_output_file(args.out_dir / f"{rtl_stem(cfg)}.v", "--out-dir")
    except (ConfigError, ValueError) as e:
        return print_error(e)
    print(f"generating the Verilog of {rtl_stem(cfg)} with Amaranth (about 10-45 s; DIM 32 is the slowest)...",
          file=sys.stderr, flush=True)
    try:
        path = write_verilog(cfg, args.out_dir)
    except ModuleNotFoundError as e:
        if e.name not in ("hw.top",):
            raise
        print("error: hw.top is not available yet (no RTL top-level to generate)", file=sys.stderr)
        return 1
    except OSError as e:  # the folder went away or filled up since the check
        print(f"error: cannot write into --out-dir {args.out_dir}: {first_line(e)}", file=sys.stderr)
        return 1
    status = 0
    if args.lint:
        print(f"linting {path} with Verilator (a few seconds to a minute)...", file=sys.stderr, flush=True)
        status, summary = lint_verilog(path)
        print(summary)
    print(path)
    return status


if __name__ == "__main__":
    run_main(main)
