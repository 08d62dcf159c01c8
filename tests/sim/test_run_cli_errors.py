"""`python -m sim.run`: every bad input is one ``error:`` line and exit 2, found before
any work (no Verilator build, no compile, no simulation); sizes are bounded; output paths
are checked first and a computed result is never lost to an output error.

The RTL is never run here: `sim.evaluate.evaluate` is replaced by a stand-in that fails
the test when a case that should stop early reaches it, or returns a canned result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cli_common import assert_one_line_error

import sim.evaluate
from hw.config import HardwareConfig, param_spec
from hw.layer import Layer
from hw.result import Result
from sim import run as sim_run
from sim.compiler import dram_bytes_needed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_sim(monkeypatch):
    """evaluate() must not be reached."""
    def evaluate(*a, **kw):
        pytest.fail("the simulation was reached for bad input")
    monkeypatch.setattr(sim.evaluate, "evaluate", evaluate)


@pytest.fixture
def fake_sim(monkeypatch):
    """evaluate() returns a feasible result and fills ``keep`` like the real one; records its calls."""
    calls: list = []

    def evaluate(hw, mapping, layer, *, keep=None, **kw):
        calls.append((hw, mapping, layer, kw))
        rng = np.random.default_rng(0)
        x = rng.integers(-128, 128, (layer.n, layer.c, layer.h, layer.w), dtype=np.int8)
        w = rng.integers(-128, 128, (layer.k, layer.c // layer.groups, layer.r, layer.s), dtype=np.int8)
        if keep is not None:
            keep.update(x=x, w=w, y=np.zeros((layer.n, layer.k, layer.p, layer.q), np.int32))
        return Result(cycles=100, busy={"load": 1, "exec": 1, "store": 1},
                      counts={"sp_reads": 0, "sp_writes": 0, "acc_reads": 0, "acc_writes": 0,
                              "dram_bytes_read": 0, "dram_bytes_written": 0, "macs": layer.macs,
                              "weight_loads": 0},
                      utilisation=0.5, feasible=True, reason=None, verified=True, fidelity="rtl",
                      extra={"instructions": 1})
    monkeypatch.setattr(sim.evaluate, "evaluate", evaluate)
    return calls


def run(capsys, argv):
    rc = sim_run.main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line_error(capsys, argv, message):
    rc, out, err = run(capsys, argv)
    assert_one_line_error(rc, out, err, message, argv)
    return err


# ---- bad input of every kind: one line, exit 2, nothing simulated ----------------------------
@pytest.mark.parametrize("argv, message", [
    # the cases
    (["--dim", "4", "--sp-kb", "32", "--acc-kb", "16", "--gemm", "2048", "2048", "2048"],
     "more than sim.run's limit of 8,388,608"),
    (["--gemm", "1000000000", "1000000000", "1000000000"],
     "--gemm M must be an integer from 1 to 1,048,576 (2**20); got 1,000,000,000"),
    (["--gemm", "4", "4", "4", "--seed", "-1"], "--seed must be an integer from 0 to 2**64 - 1; got -1"),
    (["--gemm", "4", "4", "4", "--relu"], "--relu applies to --out int8 only"),
    (["--gemm", "4", "4", "4", "--shift", "3"], "--shift 3 applies to --out int8 only"),
    (["--gemm", "4", "4", "4", "--groups", "2"], "--groups applies to --conv only"),
    (["--gemm", "4", "4", "4", "--stride", "2"], "--stride applies to --conv only"),
    # fresh ones of the same kinds
    (["--gemm", "4", "4", "4", "--pad", "0"], "--pad applies to --conv only"),
    (["--gemm", "4", "4", "4", "--stride", "1", "--groups", "1"], "--stride and --groups apply to --conv only"),
    (["--gemm", "4", "4", "4", "--relu", "--shift", "2"], "--relu and --shift 2 apply to --out int8 only"),
    (["--gemm", "4", "4", "4", "--out", "int8", "--shift", "32"], "--shift must be from 0 to 31; got 32"),
    (["--gemm", "8192", "8192", "8192"], "needs 671,092,736 bytes (640.0 MB) of simulation DRAM"),
    (["--dim", "4", "--gemm", "1048576", "1048576", "1"], "the simulation-only DRAM holds at most 256 MB"),
    (["--conv", "1", "8", "8", "1048576", "1048576", "1", "1"], "bytes (72.0 TB) of simulation DRAM"),
    (["--conv", "1", "1024", "1024", "1048576", "1048576", "1", "1"],
     "1,152,921,504,606,846,976 MACs, more than the limit of 1,125,899,906,842,624 (2**50)"),
    (["--conv", "1", "8", "8", "4", "4", "3", "3", "--stride", "17"], "stride must be an integer from 1 to 16"),
    (["--conv", "2000000", "1", "1", "1", "1", "1", "1"], "n must be an integer from 1 to 1,048,576"),
    (["--conv", "1", "4", "4", "4", "4", "3", "3", "--groups", "3"], "groups must divide both c (4) and k (4)"),
    (["--dim", "4", "--gemm", "1024", "1024", "1024"], "a program of about 25,296,901 instructions"),
    (["--gemm", "2048", "2048", "2048", "--dram-mb", "16"],
     "needs 41,947,136 bytes (40.0 MB) of simulation DRAM, more than --dram-mb 16; give --dram-mb 64"),
    (["--gemm", "4", "4", "4", "--dram-mb", "512"], "HardwareConfig.dram_mb must be a power of two from 1 to 256"),
    (["--gemm", "4", "4", "4", "--seed", str(2**64)], "--seed must be an integer from 0 to 2**64 - 1"),
    (["--gemm", "4", "4", "4", "--timeout", "0"], "--timeout must be a number of seconds > 0"),
    (["--gemm", "4", "4", "4", "--timeout", "nan"], "--timeout must be a number of seconds > 0"),
    (["--gemm", "4", "4", "4", "--timeout", "inf"], "--timeout must be a number of seconds > 0"),
    (["--gemm", "4", "4", "4", "--timeout", "1e9"], "and <= 86400; got 1e+09"),
    (["--gemm", "4", "4", "4", "--trace", "w.fst"], "--trace writes a VCD waveform"),
    (["--gemm", "4", "4", "4", "--trace", "w.vcd", "--harness", "lean"], "--harness lean cannot trace"),
    (["--gemm", "4", "4", "4", "--name", ""], "--name must not be empty"),
    (["--gemm", "4", "4", "4", "--from-json", "/dev/zero"], "larger than 1,048,576 bytes"),
    (["--gemm", "4", "4", "4", "--mapping", "/dev/zero"], "cannot read mapping file /dev/zero: larger than"),
    (["--gemm", "4", "4", "4", "--mapping", "/nonexistent.json"], "cannot read mapping file"),
    (["--gemm", "4", "4", "4", "--dim", "x"], "argument --dim: invalid int value: 'x'"),
    (["--gemm", "4", "4", "4", "--gemm", "5"], "argument --gemm: expected 3 arguments"),
    # found trying it as a new user
    (["--conv", "1", "4", "4", "4", "4", "3", "3", "--groups", "0"], "groups must be an integer >= 1; got 0"),
    (["--conv", "1", "4", "4", "4", "4", "3", "3", "--groups", "8"], "groups must divide both c (4) and k (4)"),
    (["--conv", "4096", "4096", "4096", "4096", "4096", "1", "1"], "MACs, more than the limit of"),
    (["--gemm", "65536", "65536", "65536"], "bytes (40.0 GB) of simulation DRAM"),
    (["--gemm", "4", "4", "4", "--dram-mb", "3"], "HardwareConfig.dram_mb must be a power of two from 1 to 256; got 3"),
    (["--gemm", "4", "4", "4", "--timeout", "1e400"], "--timeout must be a number of seconds > 0 and <= 86400; got inf"),
    (["--gemm", "4", "4", "4", "--harness", "verilator"], "argument --harness: invalid choice: 'verilator'"),
    (["--gemm", "4", "4", "4", "--mapping", "/"], "cannot read mapping file /: Is a directory"),
    (["--gemm", "4", "4", "4", "--from-json", "/"], "cannot read /: Is a directory"),
    (["--workload", "bert"], "one of the arguments --gemm --conv is required"),
])
def test_bad_input_is_one_line(capsys, no_sim, argv, message):
    one_line_error(capsys, argv, message)


@pytest.mark.parametrize("content, message", [
    ('{"dim": 1e999}', "HardwareConfig.dim must be an integer, one of 4, 8, 16, 32; got inf"),
    ('{"dim": 16, "dram_mb": 1024}', "HardwareConfig.dram_mb must be a power of two from 1 to 256; got 1024"),
    ("[", "it is not valid JSON"),
    ("[16]", "does not hold a JSON object"),
])
def test_bad_config_file_is_one_line(capsys, no_sim, tmp_path, content, message):
    path = tmp_path / "hw.json"
    path.write_text(content)
    one_line_error(capsys, ["--gemm", "4", "4", "4", "--from-json", str(path)], message)


@pytest.mark.parametrize("content, message", [
    ('{"factors": ', "it is not valid JSON"),
    ("[1, 2]", "Mapping.from_dict needs a dict; got list"),
    ('{"factors": {}, "order": 5}', "not a Mapping (TypeError"),
    ('{"factors": {"dram": [1, 2]}}', "not a Mapping (TypeError"),
    ('{"factors": {}, "tiles": 1}', "unknown Mapping field(s) ['tiles']"),
])
def test_bad_mapping_file_is_one_line(capsys, no_sim, tmp_path, content, message):
    path = tmp_path / "m.json"
    path.write_text(content)
    err = one_line_error(capsys, ["--gemm", "4", "4", "4", "--mapping", str(path)], message)
    assert str(path) in err


# ---- output paths: checked first, never created there -----------------------------------------
def test_output_paths_are_checked_before_any_work(capsys, no_sim, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    (tmp_path / "adir.vcd").mkdir()
    g = ["--gemm", "4", "4", "4"]
    one_line_error(capsys, g + ["--save", str(afile)], f"--save {afile}: exists and is not a directory")
    one_line_error(capsys, g + ["--save", str(afile / "sub")], f"{afile} is a file, not a directory")
    one_line_error(capsys, g + ["--trace", str(afile / "w.vcd")], f"{afile} is a file, not a directory")
    one_line_error(capsys, g + ["--trace", str(tmp_path / "adir.vcd")], "is a directory; give a file name")
    one_line_error(capsys, g + ["--save", "/proc/accelsim-out"], "cannot write into /proc")
    one_line_error(capsys, g + ["--save", str(tmp_path / ("x" * 300))], "--save")      # name too long
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.vcd", "afile"]


def test_an_unwritable_build_cache_is_one_line(capsys, no_sim, monkeypatch):
    monkeypatch.setenv("ACCEL_CACHE_DIR", "/proc/accelsim-cache")
    one_line_error(capsys, ["--gemm", "4", "4", "4"],
                   "$ACCEL_CACHE_DIR /proc/accelsim-cache: cannot write into /proc")


def test_save_says_where_it_wrote(capsys, fake_sim, tmp_path):
    out = tmp_path / "deep" / "run"
    rc, stdout, err = run(capsys, ["--gemm", "9", "7", "5", "--json", "--save", str(out)])
    assert rc == 0 and json.loads(stdout)["feasible"]
    assert err.strip().splitlines()[-1] == (f"saved input.npy, weight.npy, output.npy, mapping.json, layer.json, "
                                            f"result.json in {out}")
    assert np.load(out / "input.npy").shape == (9, 7) and json.loads((out / "layer.json").read_text())["p"] == 9


def test_a_result_is_never_lost_to_an_output_error(capsys, fake_sim, tmp_path, monkeypatch):
    def broken(*a, **kw):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(sim_run, "_save", broken)
    rc, stdout, err = run(capsys, ["--gemm", "9", "7", "5", "--json", "--save", str(tmp_path / "run")])
    assert rc == 1
    assert json.loads(stdout)["cycles"] == 100                  # printed before writing
    assert err.strip().splitlines()[-1] == ("error: the result is above, but writing it failed: "
                                            "No space left on device")


# ---- the simulation-only DRAM: sized to the layer -------------------------------------------
def test_dram_is_sized_to_the_layer(capsys, fake_sim):
    big = ["--dim", "32", "--gemm", "4096", "4096", "32"]     # 16 MB of A: a 32 MB DRAM, 65,669 instructions
    rc, _, err = run(capsys, big)
    assert rc == 0, err
    assert fake_sim[-1][0].dram_mb == 32
    assert err.splitlines()[0] == ("note: simulation DRAM sized to 32 MB for layer 'gemm_4096x4096x32' "
                                   "(it needs 17,960,960 bytes; default 16 MB)")
    assert err.splitlines()[1].startswith("simulating about 4,262,184 cycles (analytical estimate; roughly 28 s")
    rc, _, err = run(capsys, ["--gemm", "64", "64", "64"])     # fits the default: no note
    assert rc == 0 and fake_sim[-1][0].dram_mb == HardwareConfig().dram_mb and err == ""
    rc, _, err = run(capsys, big + ["--dram-mb", "64"])         # given and large enough: kept
    assert rc == 0 and fake_sim[-1][0].dram_mb == 64 and "DRAM" not in err


def test_dram_mb_from_json_counts_as_given(capsys, no_sim, tmp_path):
    cfg = tmp_path / "hw.json"
    cfg.write_text(json.dumps({"dim": 32, "dram_mb": 16}))
    one_line_error(capsys, ["--from-json", str(cfg), "--gemm", "4096", "4096", "32"], "more than --dram-mb 16")


def test_size_dram_directly():
    top = param_spec("dram_mb").hi
    small = Layer.gemm("s", 8, 8, 8)
    hw = HardwareConfig()
    assert sim_run.size_dram(hw, small, "int32", given=False) == (hw, None)
    assert sim_run.size_dram(HardwareConfig(dram_mb=1), small, "int32", given=True)[0].dram_mb == 1
    layer = Layer.gemm("g", 4096, 4096, 32)
    sized, note = sim_run.size_dram(hw, layer, "int32", given=False)
    assert sized.dram_mb == 32 and sized.dram_bytes >= dram_bytes_needed(layer) and "32 MB" in note
    with pytest.raises(ValueError, match=r"more than --dram-mb 16; give --dram-mb 32 or more"):
        sim_run.size_dram(hw, layer, "int32", given=True)
    huge = Layer.gemm("h", 16384, 16384, 16)
    with pytest.raises(ValueError, match=f"holds at most {top} MB"):
        sim_run.size_dram(hw, huge, "int32", given=False)


# ---- long phases say what they do -----------------------------------------------------------
def test_a_long_simulation_and_a_large_trace_are_announced(capsys, fake_sim, tmp_path, monkeypatch):
    class Usage:
        free = 1 << 50
    monkeypatch.setattr(sim_run.shutil, "disk_usage", lambda path: Usage)
    argv = ["--dim", "4", "--gemm", "2048", "64", "64", "--trace", str(tmp_path / "w.vcd")]
    rc, _, err = run(capsys, argv)
    assert rc == 0
    lines = err.splitlines()
    assert any(line.startswith("warning: --trace writes every signal of every cycle: roughly ") for line in lines)
    assert any(line.startswith("simulating about ") and "cocotb harness" in line for line in lines)
    Usage.free = 1 << 30                        # 1 GB free: a trace of several GB is refused before any work
    calls = len(fake_sim)
    one_line_error(capsys, argv, "more than half the 1.0 GB free on the disk")
    assert len(fake_sim) == calls


def test_build_notice_names_an_uncached_model(tmp_path):
    hw = HardwareConfig(dim=4, sp_kb=16, acc_kb=8)
    note = sim.evaluate.build_notice(hw, "lean", tmp_path)
    assert note.startswith("building the Verilator model for DIM 4 (lean harness;") and str(tmp_path) in note
    assert "cocotb harness, with tracing" in sim.evaluate.build_notice(hw, "cocotb", tmp_path, waves=True)
    assert "every memory size" in sim.evaluate.build_notice(hw, "lean", tmp_path, superset=True)


# ---- as a process ------------------------------------------------------------------------------
def test_module_entry_point_errors_are_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    env = dict(os.environ, ACCEL_CACHE_DIR=str(tmp_path / "cache"))
    for args, message in [
        (["--dim", "4", "--sp-kb", "32", "--acc-kb", "16", "--gemm", "2048", "2048", "2048"], "instructions"),
        (["--gemm", "4", "4", "4", "--save", str(afile)], "exists and is not a directory"),
    ]:
        p = subprocess.run([sys.executable, "-m", "sim.run", *args], capture_output=True, text=True, cwd=REPO,
                           env=env, timeout=120)
        assert p.returncode == 2 and p.stdout == ""
        assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1 and message in p.stderr
    assert not (tmp_path / "cache").exists()           # nothing was built
