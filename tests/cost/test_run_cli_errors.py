"""`python -m cost.run`: every bad input is one ``error:`` line and exit 2 (never an
OverflowError, never silently ignored), sizes are `hw.layer`'s limits, and a slow first
run says it is compiling the analytical kernel."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_common import assert_one_line_error

from cost import run as cost_run

REPO = Path(__file__).resolve().parents[2]
G = ["--gemm", "4", "4", "4"]


def one_line_error(capsys, argv, message):
    rc = cost_run.main(argv)
    cap = capsys.readouterr()
    assert_one_line_error(rc, cap.out, cap.err, message, argv)


@pytest.mark.parametrize("argv, message", [
    # the cases
    (["--gemm", "1000000000", "1000000000", "1000000000"],
     "--gemm M must be an integer from 1 to 1,048,576 (2**20); got 1,000,000,000"),
    (G + ["--relu"], "--relu applies to --out int8 only"),
    (G + ["--shift", "4"], "--shift 4 applies to --out int8 only"),
    (G + ["--groups", "2"], "--groups applies to --conv only"),
    (G + ["--stride", "2"], "--stride applies to --conv only"),
    # fresh ones of the same kinds
    (["--gemm", "1048576", "1048576", "1048576"], "MACs, more than the limit of 1,125,899,906,842,624 (2**50)"),
    (["--gemm", "4", "4", "99999999999999999999"], "--gemm N must be an integer from 1 to 1,048,576"),
    (["--conv", "1", "4", "4", "4", "4", "1048577", "1"], "r must be an integer from 1 to 1,048,576"),
    (["--conv", "1", "4", "4", "4", "4", "3", "3", "--pad", "-1"], "padding must be an integer from 0"),
    (G + ["--pad", "1", "--groups", "2"], "--pad and --groups apply to --conv only"),
    (["--workload", "resnet50", "--stride", "2"], "--stride shapes one --conv layer"),
    (["--workload", "resnet50", "--pad", "1", "--groups", "4"], "--pad and --groups shape one --conv layer"),
    (G + ["--seed", "-5"], "--seed must be an integer from 0 to 2**64 - 1; got -5"),
    (G + ["--timeout", "-1"], "--timeout must be a number of seconds > 0"),
    (G + ["--timeout", "nan"], "--timeout must be a number of seconds > 0"),
    (G + ["--trace", "w.txt"], "--trace writes a VCD waveform"),
    (G + ["--energy", "/dev/zero"], "cannot read energy table '/dev/zero': larger than 1,048,576 bytes"),
    (G + ["--from-json", "/dev/zero"], "cannot read /dev/zero: larger than 1,048,576 bytes"),
    (G + ["--from-json", "/"], "cannot read /: Is a directory"),
    (G + ["--name", "  "], "--name must not be empty"),
    (G + ["--dim", "64"], "HardwareConfig.dim must be one of 4, 8, 16, 32; got 64"),
    (G + ["--imem-depth", str(1 << 40)], "HardwareConfig.imem_depth must be a power of two"),
    (["--workload", "resnet50", "--name", "x"], "--name names one layer"),
    # found trying it as a new user
    (["--workload", "bert", "--relu"], "--relu applies to --out int8 only"),
    (G + ["--harness", "lean", "--trace", "x.vcd"], "--harness lean cannot trace"),
    (G + ["--stride", "0"], "--stride applies to --conv only"),
    (G + ["--seed", "-9", "--save", "/proc/nowhere"], "--seed must be an integer from 0"),
    (["--conv", "1", "1048576", "1048576", "1048576", "1", "1", "1"], "MACs, more than the limit of"),
])
def test_bad_input_is_one_line(capsys, argv, message):
    one_line_error(capsys, argv, message)


def test_a_huge_workload_file_is_one_line(capsys, tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("- {name: big, gemm: {m: 1048576, k: 1048576, n: 1048576}}\n")
    one_line_error(capsys, ["--workload", str(path)], "big': 1,152,921,504,606,846,976 MACs, more than the limit")
    path.write_text("- {name: a, gemm: {m: 1000000000, k: 4, n: 4}}\n")
    one_line_error(capsys, ["--workload", str(path)], "gemm.m must be an integer from 1 to 1,048,576")
    counted = tmp_path / "counted.yaml"
    counted.write_text("- {name: a, gemm: {m: 1048576, k: 1048576, n: 1024}, count: 1073741824}\n")
    one_line_error(capsys, ["--workload", str(counted)], "MACs in all (count x MACs), more than the limit")


@pytest.mark.parametrize("name, text, message", [
    ("dup.yaml", "- {name: a, k: 4, c: 4, p: 4, r: 3}\n- {name: a, k: 4, c: 4, p: 4, r: 3}\n",
     "name 'a' is already used by the layer at line 1"),
    ("cnt.yaml", "- {name: a, gemm: {m: 4, k: 4, n: 4}, count: -1}\n", "count must be an integer >= 1; got -1"),
    ("h.yaml", "- {name: a, k: 4, c: 4, p: 1, r: 1, h: 1048577}\n", "give p or h, not both"),
    ("g0.yaml", "- {name: a, k: 4, c: 4, p: 4, r: 3, pad: 1, groups: 0}\n", "groups must be an integer >= 1"),
    ("rand.onnx", None, "not an ONNX model"),
])
def test_bad_workload_file_is_one_line(capsys, tmp_path, name, text, message):
    path = tmp_path / name
    if text is None:
        pytest.importorskip("onnx")
        path.write_bytes(bytes(range(256)) * 2)
    else:
        path.write_text(text)
    one_line_error(capsys, ["--workload", str(path)], message)


@pytest.mark.parametrize("text, message", [
    ("mac_pj: .nan\n", "EnergyTable.mac_pj must be a finite number >= 0; got nan"),
    ("mac_pj: 1e400\n", "EnergyTable.mac_pj must be a finite number >= 0"),
    ("- 1\n", "an energy table must be a mapping"),
])
def test_bad_energy_file_is_one_line(capsys, tmp_path, text, message):
    path = tmp_path / "e.yaml"
    path.write_text(text)
    one_line_error(capsys, G + ["--energy", str(path)], message)


def test_energy_values_that_overflow_are_one_line(capsys, tmp_path):
    path = tmp_path / "e.json"
    path.write_text('{"dram_pj_per_byte": 1e308, "mac_pj": 1e308}')
    one_line_error(capsys, ["--gemm", "64", "64", "64", "--energy", str(path)], "overflows (inf)")


def test_large_valid_layers_evaluate_without_overflow(capsys):
    """The largest layers within the limits are evaluated (no OverflowError in the kernel)."""
    import json
    for argv in (["--gemm", "1048576", "1048576", "1024"], ["--dim", "4", "--conv", "1", "1", "1", "1048576",
                                                          "1048576", "1", "1"]):
        assert cost_run.main(argv + ["--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        assert d["feasible"] and d["cycles"] > 0 and d["counts"]["macs"] > 2**39


def test_compiling_notice_only_when_slow(capsys, monkeypatch):
    import cost.model
    from hw import cli
    monkeypatch.setattr(cost_run, "slow_notice",
                        lambda message, **kw: cli.slow_notice(message, **{**kw, "after": 0.05}))
    monkeypatch.setattr(cost.model, "warm_up", lambda: time.sleep(0.3))          # a cold cache: compiling
    assert cost_run.main(G, notices=True) == 0
    assert capsys.readouterr().err == "compiling the analytical model (first run only, about 15 s)...\n"
    assert cost_run.main(G) == 0                                                 # main(argv): no notices
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(cost.model, "warm_up", lambda: None)                     # a warm cache: nothing said
    assert cost_run.main(G, notices=True) == 0
    assert capsys.readouterr().err == ""


def test_closed_stdout_is_quiet(tmp_path):
    """``python -m cost.run --workload FILE | head -1`` with a table larger than a pipe holds:
    no BrokenPipeError traceback, exit 0 (and a progress bar for the 3,000 layers)."""
    import json
    path = tmp_path / "many.json"
    path.write_text(json.dumps([{"name": f"l{i}", "gemm": {"m": 16 + i, "k": 64, "n": 64}} for i in range(3000)]))
    p = subprocess.Popen([sys.executable, "-m", "cost.run", "--workload", str(path)], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0
    assert first.startswith(b"workload ") and "Traceback" not in err and "BrokenPipe" not in err
    assert "/3000 [" in err                  # the progress bar


def test_readme_examples_run(capsys, tmp_path):
    """The mapping and energy files the README shows ship under examples/ and run as written."""
    import json

    from cost.energy import EnergyTable
    from hw.mapping import Mapping
    conv = ["--dim", "8", "--conv", "1", "32", "32", "14", "14", "3", "3", "--stride", "2", "--pad", "1"]
    mapping = REPO / "examples" / "mapping_conv_d8.json"
    energy = REPO / "examples" / "energy_lpddr4.yaml"
    assert cost_run.main(conv + ["--mapping", str(mapping), "--energy", str(energy), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["feasible"] and d["cycles"] == 35_615
    assert EnergyTable.from_file(energy).dram_pj_per_byte == 64.0
    readme = (REPO / "README.md").read_text()
    assert mapping.read_text().strip() in readme                    # the README shows the file itself
    p = subprocess.run([sys.executable, "examples/default_mapping.py", *conv], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    written = tmp_path / "m.json"
    written.write_text(p.stdout)
    assert cost_run.main(conv + ["--mapping", str(written)]) == 0
    from hw.config import HardwareConfig
    from hw.layer import Layer
    from hw.mapping import default_mapping
    layer = Layer(name="c", n=1, k=32, c=32, p=14, q=14, r=3, s=3, stride=2, padding=1)
    assert Mapping.from_json(p.stdout) == default_mapping(HardwareConfig(dim=8), layer)
