"""`hw.cli`: the command-line pieces shared by hw.generate, sim.run, cost.run and search.*."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from hw import cli
from hw.config import HW_FIELDS, ConfigError, HardwareConfig, param_spec
from hw.layer import Layer, LayerError
from hw.mapping import Mapping, MappingError, default_mapping


def _parser(**layer_kw) -> cli.OneLineParser:
    p = cli.OneLineParser(prog="test")
    cli.add_config_arguments(p)
    cli.add_layer_arguments(p, **layer_kw)
    cli.add_mapping_argument(p)
    cli.add_output_arguments(p)
    cli.add_rtl_arguments(p)
    return p


def _help_of(p: argparse.ArgumentParser) -> dict:
    return {a.dest: a.help for a in p._actions}


# ---- the parser -----------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--gemm", "4", "4", "4", "--dim", "abc"], "argument --dim: invalid int value: 'abc'"),
    (["--gemm", "4", "4"], "argument --gemm: expected 3 arguments"),
    ([], "one of the arguments --gemm --conv is required"),
    (["--gemm", "4", "4", "4", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--gemm", "4", "4", "4", "--out", "int16"], "argument --out: invalid choice: 'int16'"),
])
def test_parser_error_raises_usage_error_with_argparses_message(argv, message, capsys):
    with pytest.raises(cli.UsageError) as info:
        _parser().parse_args(argv)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert capsys.readouterr() == ("", "")           # nothing printed: the main reports it


def test_help_still_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: test")


def test_print_error_is_one_line_and_returns_2(capsys):
    assert cli.print_error(cli.UsageError("argument --dim: invalid int value: 'x'"), see_help=True) == 2
    assert capsys.readouterr().err == "error: argument --dim: invalid int value: 'x' (see --help)\n"
    assert cli.print_error(ValueError("first\nsecond")) == 2
    assert capsys.readouterr().err == "error: first\n"


# ---- hardware configuration -----------------------------------------------------------------
def test_one_flag_per_config_field_with_its_param_spec_help():
    p = cli.OneLineParser()
    cli.add_config_arguments(p)
    actions = {a.dest: a for a in p._actions}
    assert set(HW_FIELDS) | {"from_json", "help"} == set(actions)
    for f in dataclasses.fields(HardwareConfig):
        a, spec = actions[f.name], param_spec(f.name)
        assert a.option_strings == [f"--{f.name.replace('_', '-')}"]
        assert a.type is int and a.default is None
        assert spec.help in a.help and spec.allowed in a.help
        assert a.help.endswith(f"(default {f.default})")
    assert actions["from_json"].option_strings == ["--from-json"]


def test_config_help_renders():
    p = cli.OneLineParser(prog="test")
    cli.add_config_arguments(p)
    text = " ".join(p.format_help().split())
    assert "systolic array is dim x dim PEs; one of 4, 8, 16, 32 (default 16)" in text


def test_config_from_args(tmp_path):
    p = _parser()
    assert cli.config_from_args(p.parse_args(["--gemm", "1", "1", "1"])) == HardwareConfig()
    args = p.parse_args(["--gemm", "1", "1", "1", "--dim", "8", "--dram-latency", "100"])
    assert cli.config_from_args(args) == HardwareConfig(dim=8, dram_latency=100)
    path = tmp_path / "hw.json"
    path.write_text(HardwareConfig(dim=4, acc_kb=16).to_json())
    args = p.parse_args(["--gemm", "1", "1", "1", "--from-json", str(path), "--dim", "8"])
    assert cli.config_from_args(args) == HardwareConfig(dim=8, acc_kb=16)
    with pytest.raises(ConfigError, match="HardwareConfig.dim must be one of 4, 8, 16, 32; got 12"):
        cli.config_from_args(p.parse_args(["--gemm", "1", "1", "1", "--dim", "12"]))
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="does not hold a JSON object"):
        cli.config_from_args(p.parse_args(["--gemm", "1", "1", "1", "--from-json", str(path)]))
    with pytest.raises(ConfigError, match="cannot read"):
        cli.config_from_args(p.parse_args(["--gemm", "1", "1", "1", "--from-json", str(tmp_path / "no")]))


# ---- layer ----------------------------------------------------------------------------------
def test_layer_from_args_gemm():
    layer = cli.layer_from_args(_parser().parse_args(["--gemm", "9", "7", "5"]))
    assert layer == Layer.gemm("gemm_9x7x5", 9, 7, 5)
    named = cli.layer_from_args(_parser().parse_args(["--gemm", "9", "7", "5", "--name", "fc"]))
    assert named.name == "fc" and named.shape() == layer.shape()


def test_layer_from_args_conv():
    args = _parser().parse_args(["--conv", "2", "8", "4", "5", "6", "3", "3", "--stride", "2", "--pad", "1",
                                 "--groups", "4"])
    assert cli.layer_from_args(args) == Layer(name="conv_2x8x4x5x6x3x3", n=2, k=8, c=4, p=5, q=6, r=3, s=3,
                                              stride=2, padding=1, groups=4)
    with pytest.raises(LayerError):
        cli.layer_from_args(_parser().parse_args(["--gemm", "0", "4", "4"]))


def test_workload_joins_the_required_shape_group():
    plain = _parser()
    assert "workload" not in _help_of(plain)
    p = _parser(workload_help="a network")
    assert _help_of(p)["workload"] == "a network"
    assert p.parse_args(["--workload", "bert"]).workload == "bert"
    with pytest.raises(cli.UsageError, match="one of the arguments --gemm --conv --workload is required"):
        p.parse_args([])
    with pytest.raises(cli.UsageError, match="not allowed with argument --gemm"):
        p.parse_args(["--gemm", "4", "4", "4", "--workload", "bert"])


# ---- mapping --------------------------------------------------------------------------------
def test_mapping_from_args(tmp_path):
    hw, layer = HardwareConfig(), Layer.gemm("g", 64, 64, 64)
    args = _parser().parse_args(["--gemm", "64", "64", "64"])
    assert args.mapping == "auto"
    assert cli.mapping_from_args(args, hw, layer) == default_mapping(hw, layer)
    m = Mapping.for_layer(layer, spad={"P": 64, "C": 4, "K": 4}, array={"C": 16, "K": 16})
    path = tmp_path / "m.json"
    path.write_text(m.to_json())
    args = _parser().parse_args(["--gemm", "64", "64", "64", "--mapping", str(path)])
    assert cli.mapping_from_args(args, hw, layer) == m
    args.mapping = str(tmp_path / "missing.json")
    with pytest.raises(MappingError, match="cannot read mapping file .*missing.json"):
        cli.mapping_from_args(args, hw, layer)


def test_mapping_help_mentions_workload_only_when_asked():
    p = cli.OneLineParser()
    cli.add_mapping_argument(p, workload=True)
    assert _help_of(p)["mapping"].endswith("; --workload takes auto or best for each layer")
    p = cli.OneLineParser()
    cli.add_mapping_argument(p)
    assert "--workload" not in _help_of(p)["mapping"]


# ---- output and RTL options -----------------------------------------------------------------
@pytest.mark.parametrize("shift", [0, 7, 31])
def test_shift_in_range(shift):
    args = _parser().parse_args(["--gemm", "1", "1", "1", "--out", "int8", "--relu", "--shift", str(shift)])
    assert cli.output_from_args(args) == {"out": "int8", "relu": True, "shift": shift}


@pytest.mark.parametrize("shift", [-1, 32, 40])
def test_shift_out_of_range(shift):
    args = _parser().parse_args(["--gemm", "1", "1", "1", "--shift", str(shift)])
    with pytest.raises(ValueError, match=f"^--shift must be from 0 to 31; got {shift}$"):
        cli.output_from_args(args)


def test_output_defaults():
    args = _parser().parse_args(["--gemm", "1", "1", "1"])
    assert cli.output_from_args(args) == {"out": "int32", "relu": False, "shift": 0}
    assert args.json is False


def test_analytical_help_notes():
    rtl, ana = cli.OneLineParser(), cli.OneLineParser()
    for p, analytical in ((rtl, False), (ana, True)):
        cli.add_output_arguments(p, analytical=analytical, json_help="print JSON")
        cli.add_rtl_arguments(p, analytical=analytical)
    h_rtl, h_ana = _help_of(rtl), _help_of(ana)
    assert set(h_rtl) == set(h_ana)
    for dest in cli.RTL_ONLY:
        assert h_ana[dest] == h_rtl[dest] + " (ignored: RTL only)"
    for dest in ("relu", "shift"):
        assert h_ana[dest] == h_rtl[dest] + " (no effect on the analytical cost)"
    assert h_ana["out"] == h_rtl["out"] and h_ana["json"] == h_rtl["json"] == "print JSON"
    assert not any("ignored" in (h or "") or "no effect" in (h or "") for h in h_rtl.values())


def test_rtl_defaults():
    args = _parser().parse_args(["--gemm", "1", "1", "1"])
    assert (args.seed, args.harness, args.timeout, args.trace, args.save) == (0, "lean", 600.0, None, None)


# ---- summary --------------------------------------------------------------------------------
def test_summary_text():
    from hw.result import Result
    hw, layer = HardwareConfig(), Layer.gemm("g", 16, 16, 16)
    m = default_mapping(hw, layer)
    bad = cli.summary_text(hw, layer, m, Result.infeasible("too big", "analytical"))
    assert bad.splitlines() == [f"layer    {layer}", f"hardware {hw.to_json()}", f"mapping  {m.to_json()}",
                                "INFEASIBLE: too big"]
    import cost
    r = cost.evaluate(hw, m, layer)
    lines = cli.summary_text(hw, layer, m, r).splitlines()
    assert lines[3].startswith(f"cycles   {r.cycles:,}") and lines[3].endswith("fidelity analytical")
    assert lines[-1].startswith(f"MACs     {16 ** 3:,}")


# ---- first_line -----------------------------------------------------------------------------
@pytest.mark.parametrize("e, line", [
    (ValueError("one"), "one"),
    (ValueError("  first\nsecond\n"), "first"),
    (ValueError(""), "ValueError"),
    (KeyError("k"), "'k'"),
    (RuntimeError(), "RuntimeError"),
])
def test_first_line(e, line):
    assert cli.first_line(e) == line


def test_parse_hardware_from_fields_and_from_json_files(tmp_path):
    import json

    from hw.cli import parse_hardware
    from hw.config import ConfigError, HardwareConfig

    assert parse_hardware("dim=8, sp_kb=64,acc_kb=32") == HardwareConfig(dim=8, sp_kb=64, acc_kb=32)
    f = tmp_path / "hw.json"
    f.write_text(json.dumps({"dim": 4, "sp_kb": 16}))
    assert parse_hardware(str(f)) == HardwareConfig(dim=4, sp_kb=16)
    best = tmp_path / "best.json"                      # a run's best.json: its "hw" object
    best.write_text(json.dumps({"hw": HardwareConfig(dim=32).to_dict(), "objective": 1.0}))
    assert parse_hardware(str(best)) == HardwareConfig(dim=32)
    for text, message in (("dim=7", "dim must be one of 4, 8, 16, 32; got 7"), ("dim=8,dim=8", "given twice"),
                          ("sp_kb=x", "'sp_kb=x' is not field=N"), ("", "--hw is empty")):
        with pytest.raises(ConfigError, match=message):
            parse_hardware(text)
