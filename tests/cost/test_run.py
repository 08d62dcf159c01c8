"""`python -m cost.run`: the analytical model's command line.

Everything goes through `cost.run.main(argv)` and the captured stdout/stderr: the
numbers it prints must be `cost.evaluate`'s for the same inputs, its counters the
layer's own arithmetic, and every failure one readable line, never a traceback.
"""

from __future__ import annotations

import json
import math

import pytest

import cost
from cost.run import _parser as cost_parser
from cost.run import main
from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import Mapping, default_mapping
from hw.result import COUNT_KEYS
from search.workloads import get_workload, unique_layers
from sim.run import _parser as sim_parser

GEMM = ["--gemm", "48", "96", "80"]
CONV = ["--conv", "2", "32", "24", "14", "14", "3", "3", "--pad", "1", "--stride", "2", "--dim", "8"]


def run(capsys, argv):
    """(exit status, stdout, stderr) of one command line."""
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def run_json(capsys, argv):
    rc, out, err = run(capsys, argv + ["--json"])
    assert err == ""
    return rc, json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in output"))


# ---- one layer: text ----------------------------------------------------------------------
def test_text_summary_reports_cycles_energy_area_and_edp(capsys):
    rc, out, err = run(capsys, GEMM)
    assert rc == 0 and err == ""
    # sim.run's summary first (same format as the RTL CLI) ...
    assert out.startswith("layer    gemm_48x96x80")
    assert "cycles   " in out and "MACs     368,640" in out
    # ... then what only the analytical model has
    assert "energy   " in out and " pJ" in out
    for part in ("mac", "weight_reg", "scratchpad", "accumulator", "dram"):
        assert f" {part} " in out
    assert "area     " in out and "mm^2" in out and "EDP" in out
    assert "fidelity analytical" in out


def test_text_cycles_and_energy_are_the_models(capsys):
    hw = HardwareConfig()
    layer = Layer.gemm("gemm_48x96x80", 48, 96, 80)
    r = cost.evaluate(hw, default_mapping(hw, layer), layer)
    _, out, _ = run(capsys, GEMM)
    assert f"cycles   {r.cycles:,}" in out
    assert f"energy   {r.energy_pj:,.1f} pJ" in out
    assert f"area     {r.area_mm2:.4f} mm^2" in out


# ---- one layer: --json --------------------------------------------------------------------
@pytest.mark.parametrize("argv, hw, layer", [
    (GEMM, HardwareConfig(), Layer.gemm("gemm_48x96x80", 48, 96, 80)),
    (CONV, HardwareConfig(dim=8),
     Layer(name="conv_2x32x24x14x14x3x3", n=2, k=32, c=24, p=14, q=14, r=3, s=3, stride=2, padding=1)),
    (GEMM + ["--dim", "32", "--sp-kb", "16", "--acc-kb", "24", "--out", "int8"],
     HardwareConfig(dim=32, sp_kb=16, acc_kb=24), Layer.gemm("gemm_48x96x80", 48, 96, 80)),
])
def test_json_equals_cost_evaluate(capsys, argv, hw, layer):
    out = "int8" if "int8" in argv else "int32"
    rc, d = run_json(capsys, argv)
    r = cost.evaluate(hw, default_mapping(hw, layer), layer, out=out)
    assert rc == 0
    # Result.to_dict() plus edp and energy_breakdown, nothing else
    assert set(d) == set(r.to_dict()) | {"edp", "energy_breakdown"}
    assert {k: v for k, v in d.items() if k not in ("edp", "energy_breakdown")} == r.to_dict()
    assert d["fidelity"] == "analytical" and d["feasible"] is True
    assert d["cycles"] == r.cycles and d["energy_pj"] == r.energy_pj and d["area_mm2"] == r.area_mm2
    assert d["edp"] == pytest.approx(r.energy_pj * r.cycles, rel=1e-12)
    parts = d["energy_breakdown"]
    assert set(parts) == {"mac", "weight_reg", "scratchpad", "accumulator", "dram"}
    assert sum(parts.values()) == pytest.approx(d["energy_pj"], rel=1e-12)


def test_json_int8_output_writes_a_quarter_of_the_bytes(capsys):
    _, d32 = run_json(capsys, GEMM)
    _, d8 = run_json(capsys, GEMM + ["--out", "int8"])
    # the default mapping keeps each output tile until its reduction is done: no spills
    assert d32["counts"]["dram_bytes_written"] == 48 * 80 * 4
    assert d8["counts"]["dram_bytes_written"] == 48 * 80


@pytest.mark.parametrize("argv, macs", [
    (["--gemm", "48", "96", "80"], 48 * 96 * 80),                                   # M*K*N
    (["--gemm", "1", "2048", "1000"], 1 * 2048 * 1000),
    (CONV, 2 * 32 * 14 * 14 * 24 * 3 * 3),                                         # N*K*P*Q*C*R*S
    (["--conv", "1", "32", "32", "7", "7", "3", "3", "--pad", "1", "--groups", "32"],  # depthwise
     1 * 32 * 7 * 7 * (32 // 32) * 3 * 3),
])
def test_json_counters_hold_the_layers_macs(capsys, argv, macs):
    rc, d = run_json(capsys, argv)
    assert rc == 0
    assert set(d["counts"]) == set(COUNT_KEYS)
    assert d["counts"]["macs"] == macs
    # (the model's utilisation uses its fractional cycle count, Result.cycles the ceiling)
    dim = 8 if "--dim" in argv else 16
    assert d["utilisation"] == pytest.approx(macs / (d["cycles"] * dim ** 2), rel=1e-4)


def test_mapping_file_is_used(capsys, tmp_path):
    hw = HardwareConfig()
    layer = Layer.gemm("g", 64, 64, 64)
    m = Mapping.for_layer(layer, spad={"P": 16, "C": 2}, array={"C": 16, "K": 16},
                          order=("K", "C", "P", "N", "Q", "R", "S"))
    path = tmp_path / "m.json"
    path.write_text(m.to_json())
    rc, d = run_json(capsys, ["--gemm", "64", "64", "64", "--name", "g", "--mapping", str(path)])
    assert rc == 0
    r = cost.evaluate(hw, m, layer)
    assert d["cycles"] == r.cycles and d["counts"] == r.counts and d["energy_pj"] == r.energy_pj
    assert d["cycles"] != cost.evaluate(hw, default_mapping(hw, layer), layer).cycles


# ---- --energy -------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix, text", [
    (".json", '{"dram_pj_per_byte": 200}'),
    (".yaml", "dram_pj_per_byte: 200\n"),
])
def test_energy_override_changes_energy_by_the_expected_amount(capsys, tmp_path, suffix, text):
    path = tmp_path / f"table{suffix}"
    path.write_text(text)
    _, base = run_json(capsys, CONV)
    _, dear = run_json(capsys, CONV + ["--energy", str(path)])
    dram_bytes = base["counts"]["dram_bytes_read"] + base["counts"]["dram_bytes_written"]
    old = cost.EnergyTable().dram_pj_per_byte
    assert dram_bytes > 0
    # doubling the DRAM price adds dram_bytes x the old price; nothing else moves
    assert dear["energy_pj"] == pytest.approx(base["energy_pj"] + dram_bytes * old, rel=1e-12)
    assert dear["energy_breakdown"]["dram"] == pytest.approx(2 * base["energy_breakdown"]["dram"])
    for k in ("mac", "weight_reg", "scratchpad", "accumulator"):
        assert dear["energy_breakdown"][k] == base["energy_breakdown"][k]
    assert dear["cycles"] == base["cycles"] and dear["counts"] == base["counts"]
    assert dear["area_mm2"] == base["area_mm2"]


def test_energy_override_of_area(capsys, tmp_path):
    path = tmp_path / "area.json"
    path.write_text('{"area_const": 1.0138}')
    _, base = run_json(capsys, GEMM)
    _, big = run_json(capsys, GEMM + ["--energy", str(path)])
    assert big["area_mm2"] == pytest.approx(base["area_mm2"] + 1.0)


# ---- bad arguments: exit 2, one line ----------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--gemm", "64", "64"], "--gemm: expected 3 arguments"),
    ([], "one of the arguments --gemm --conv --workload is required"),
    (["--gemm", "4", "4", "4", "--workload", "bert"], "not allowed with argument --gemm"),
    (["--gemm", "4", "4", "4", "--dim", "x"], "--dim: invalid int value"),
    (["--gemm", "0", "4", "4"], "p must be an integer >= 1; got 0"),
    (["--conv", "1", "8", "8", "4", "4", "3", "3", "--pad", "3"], "padding must be an integer"),
    (["--gemm", "4", "4", "4", "--shift", "40"], "--shift must be from 0 to 31; got 40"),
    (["--gemm", "4", "4", "4", "--energy", "/nonexistent/t.json"], "cannot read energy table"),
    (["--workload", "no_such_net"], "unknown workload 'no_such_net'"),
    (["--workload", "resnet50", "--mapping", "m.json"], "--workload takes auto or best for each"),
    (["--workload", "resnet50", "--name", "x"], "--name names one layer"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, message):
    rc, out, err = run(capsys, argv)
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("text, message", [
    ('{"dram_pj": 64}', "unknown energy table key(s) ['dram_pj']"),
    ('{"mac_pj": -1}', "EnergyTable.mac_pj must be a finite number >= 0"),
    ('{"mac_pj": ', "is not valid JSON/YAML"),
])
def test_bad_energy_file_exits_2(capsys, tmp_path, text, message):
    path = tmp_path / "t.json"
    path.write_text(text)
    rc, out, err = run(capsys, GEMM + ["--energy", str(path)])
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


# ---- infeasible: the Result with its reason, exit 1 ------------------------------------------
def _too_big(tmp_path):
    """A mapping of gemm 64x64x64 whose tiles need 1024 scratchpad rows (8 KB at dim 16: 512)."""
    layer = Layer.gemm("g", 64, 64, 64)
    m = Mapping.for_layer(layer, spad={"P": 64, "C": 4, "K": 4}, array={"C": 16, "K": 16})
    path = tmp_path / "big.json"
    path.write_text(m.to_json())
    return layer, m, path


def test_infeasible_mapping_file_gives_the_reason(capsys, tmp_path):
    layer, m, path = _too_big(tmp_path)
    hw = HardwareConfig(sp_kb=8)
    reason = m.check(hw, layer).reason
    assert reason == "input + weight tiles need 1024 scratchpad rows double-buffered, capacity 512"
    argv = ["--gemm", "64", "64", "64", "--sp-kb", "8", "--mapping", str(path)]
    rc, out, err = run(capsys, argv)
    assert rc == 1 and err == ""
    assert f"INFEASIBLE: {reason}" in out
    rc, d = run_json(capsys, argv)
    assert rc == 1
    assert d["feasible"] is False and d["reason"] == reason
    assert d["cycles"] is None and d["energy_pj"] is None and d["edp"] is None
    assert d["energy_breakdown"] is None
    assert d == {**cost.evaluate(hw, m, layer).to_dict(), "edp": None, "energy_breakdown": None}


@pytest.mark.parametrize("content, reason, names_file", [
    (None, "cannot read mapping file", True),
    ('{"factors": ', "is not valid JSON", True),
    ('{"factors": 3}', "Mapping.factors must be a dict", True),
    ('{"factors": {}, "tiles": 1}', "unknown Mapping field(s) ['tiles']", True),
    # a well-formed Mapping that is not one of this layer: Mapping.check's reason
    ('{"factors": {"dram": {"N": 1}}}', "factor levels ['dram'] must be exactly", False),
])
def test_bad_mapping_file_is_an_infeasible_result(capsys, tmp_path, content, reason, names_file):
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    rc, out, err = run(capsys, ["--gemm", "8", "8", "8", "--mapping", str(path)])
    assert rc == 1 and err == ""
    line = next(line for line in out.splitlines() if line.startswith("INFEASIBLE: "))
    assert reason in line
    assert (str(path) in line) == names_file
    rc, d = run_json(capsys, ["--gemm", "8", "8", "8", "--mapping", str(path)])
    assert rc == 1 and d["feasible"] is False and reason in d["reason"]


def test_bad_hardware_configuration_is_a_one_line_error(capsys, tmp_path):
    """As in sim.run: a configuration outside the allowed ranges is bad input (exit 2)."""
    rc, out, err = run(capsys, GEMM + ["--dim", "3"])
    assert rc == 2 and out == ""
    assert err.strip() == "error: HardwareConfig.dim must be one of 4, 8, 16, 32; got 3"
    cfg = tmp_path / "hw.json"
    cfg.write_text('{"dim": 16, "colour": "red"}')
    rc, out, err = run(capsys, GEMM + ["--from-json", str(cfg)])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "unknown HardwareConfig field(s) ['colour']" in err


# ---- RTL-only options --------------------------------------------------------------------------
def test_rtl_only_options_are_accepted_and_ignored(capsys, tmp_path):
    # (--relu / --shift apply to int8 outputs only: with int32 they are an error, issue 18)
    _, plain = run_json(capsys, CONV + ["--out", "int8"])
    rc, rtl = run_json(capsys, CONV + ["--out", "int8", "--seed", "7", "--harness", "cocotb", "--timeout", "0.5",
                                       "--trace", str(tmp_path / "w.vcd"), "--save", str(tmp_path / "d"),
                                       "--relu", "--shift", "3"])
    assert rc == 0 and rtl == plain
    assert not (tmp_path / "w.vcd").exists() and not (tmp_path / "d").exists()


def test_help_says_which_options_are_ignored(capsys):
    rc, out, _ = run(capsys, ["--help"])
    assert rc == 0
    assert out.startswith("usage: python -m cost.run")
    assert " ".join(out.split()).count("(ignored: RTL only)") == 5
    for flag in ("--workload", "--energy", "--mapping", "--gemm", "--conv", "--dim", "--from-json"):
        assert flag in out


def test_takes_every_sim_run_option():
    ours = {s for a in cost_parser()._actions for s in a.option_strings}
    theirs = {s for a in sim_parser()._actions for s in a.option_strings}
    assert theirs <= ours
    assert ours - theirs == {"--workload", "--energy"}


# ---- --workload ------------------------------------------------------------------------------
def test_workload_json_totals_are_count_weighted_sums(capsys):
    rc, d = run_json(capsys, ["--workload", "resnet50"])
    assert rc == 0
    layers, total = d["layers"], d["total"]
    want = unique_layers(get_workload("resnet50"))
    assert [e["name"] for e in layers] == [lay.name for lay in want]
    assert sum(e["count"] for e in layers) == 54
    assert all(e["feasible"] for e in layers)
    energy = sum(e["count"] * e["energy_pj"] for e in layers)
    cycles = sum(e["count"] * e["cycles"] for e in layers)
    assert total["energy_pj"] == pytest.approx(energy, rel=1e-12)
    assert total["cycles"] == cycles
    assert total["edp"] == pytest.approx(energy * cycles, rel=1e-12)
    assert total["edp_layerwise"] == pytest.approx(
        sum(e["count"] * e["energy_pj"] * e["cycles"] for e in layers), rel=1e-12)
    assert total["feasible"] is True and total["layers"] == 24
    assert sum(e["count"] * e["counts"]["macs"] for e in layers) == 4_089_184_256


def test_workload_layer_entries_equal_cost_evaluate(capsys):
    hw = HardwareConfig(dim=8, sp_kb=64, acc_kb=32)
    _, d = run_json(capsys, ["--workload", "bert", "--dim", "8", "--sp-kb", "64", "--acc-kb", "32"])
    for e, layer in zip(d["layers"], unique_layers(get_workload("bert"))):
        m = default_mapping(hw, layer)
        assert e["mapping"] == m.to_dict() and e["layer"] == layer.to_dict()
        r = cost.evaluate(hw, m, layer)
        assert e["cycles"] == r.cycles and e["energy_pj"] == r.energy_pj and e["edp"] == r.edp


def test_workload_text_table_and_totals(capsys):
    rc, out, err = run(capsys, ["--workload", "resnet50"])
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "workload resnet50: 54 layers, 24 distinct"
    header = next(line for line in lines if line.startswith("layer "))
    assert header.split() == ["layer", "count", "cycles", "util", "energy", "uJ", "EDP", "pJ*cyc"]
    assert any(line.split()[:2] == ["layer1.0.conv2", "3"] for line in lines)
    assert any(line.startswith("total    energy ") for line in lines)
    assert sum(line.startswith("EDP ") or "layerwise" in line for line in lines) == 2


def test_workload_on_a_bad_configuration(capsys):
    rc, out, err = run(capsys, ["--workload", "resnet50", "--acc-kb", "7"])
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: HardwareConfig.acc_kb must be") and err.strip().endswith("got 7")


def test_workload_file(capsys, tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("- {name: a, gemm: {m: 32, k: 64, n: 48}, count: 2}\n"
                    "- {name: b, k: 16, c: 8, p: 8, r: 3, pad: 1}\n")
    rc, d = run_json(capsys, ["--workload", str(path)])
    assert rc == 0 and [e["name"] for e in d["layers"]] == ["a", "b"]
    a, b = d["layers"]
    assert a["count"] == 2 and a["counts"]["macs"] == 32 * 64 * 48
    assert d["total"]["cycles"] == 2 * a["cycles"] + b["cycles"]
    assert math.isclose(d["total"]["energy_pj"], 2 * a["energy_pj"] + b["energy_pj"], rel_tol=1e-12)
