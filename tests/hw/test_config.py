"""Tests of hw.config.HardwareConfig and of the hw.generate command line."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from hw import generate
from hw.config import ConfigError, HardwareConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_gemmini_defaults():
    cfg = HardwareConfig()
    assert (cfg.dim, cfg.sp_kb, cfg.acc_kb, cfg.sp_banks, cfg.acc_banks) == (16, 256, 64, 4, 2)
    assert (cfg.dma_bus_bytes, cfg.dma_max_req_bytes, cfg.dma_max_inflight) == (16, 64, 16)
    assert (cfg.dram_latency, cfg.dram_bytes_per_cycle, cfg.dram_mb, cfg.imem_depth) == (40, 8, 16, 4096)


# (field, bad value, exact message)
BAD_VALUES = [
    ("dim", 12, "HardwareConfig.dim must be one of 4, 8, 16, 32; got 12"),
    ("dim", 64, "HardwareConfig.dim must be one of 4, 8, 16, 32; got 64"),
    ("sp_kb", 12, "HardwareConfig.sp_kb must be a multiple of 8 from 8 to 256; got 12"),
    ("sp_kb", 264, "HardwareConfig.sp_kb must be a multiple of 8 from 8 to 256; got 264"),
    ("acc_kb", 0, "HardwareConfig.acc_kb must be a multiple of 8 from 8 to 256; got 0"),
    ("sp_banks", 3, "HardwareConfig.sp_banks must be one of 1, 2, 4, 8; got 3"),
    ("acc_banks", 16, "HardwareConfig.acc_banks must be one of 1, 2, 4, 8; got 16"),
    ("dma_bus_bytes", 2, "HardwareConfig.dma_bus_bytes must be one of 4, 8, 16, 32, 64; got 2"),
    ("dma_max_req_bytes", 48, "HardwareConfig.dma_max_req_bytes must be a power of two from 4 to 4096; got 48"),
    ("dma_max_req_bytes", 8192, "HardwareConfig.dma_max_req_bytes must be a power of two from 4 to 4096; got 8192"),
    ("dma_max_inflight", 0, "HardwareConfig.dma_max_inflight must be an integer from 1 to 64; got 0"),
    ("dram_latency", 1001, "HardwareConfig.dram_latency must be an integer from 1 to 1000 cycles; got 1001"),
    ("dram_bytes_per_cycle", 65, "HardwareConfig.dram_bytes_per_cycle must be an integer from 1 to 64; got 65"),
    ("dram_mb", 3, "HardwareConfig.dram_mb must be a power of two from 1 to 256; got 3"),
    ("imem_depth", 32, "HardwareConfig.imem_depth must be a power of two from 64 to 65536; got 32"),
    ("dim", "16", "HardwareConfig.dim must be an integer, one of 4, 8, 16, 32; got '16'"),
    ("dram_mb", True, "HardwareConfig.dram_mb must be an integer, a power of two from 1 to 256; got True"),
    ("sp_kb", 64.0, "HardwareConfig.sp_kb must be an integer, a multiple of 8 from 8 to 256; got 64.0"),
]


@pytest.mark.parametrize("field,value,message", BAD_VALUES, ids=[f"{f}={v!r}" for f, v, _ in BAD_VALUES])
def test_bad_value_message(field, value, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        HardwareConfig(**{field: value})


def test_every_field_has_a_bad_value_case():
    assert {f.name for f in dataclasses.fields(HardwareConfig)} == {f for f, _, _ in BAD_VALUES}


def test_request_smaller_than_bus_is_rejected():
    msg = "HardwareConfig.dma_max_req_bytes must be at least dma_bus_bytes (64); got 32"
    with pytest.raises(ConfigError, match=f"^{re.escape(msg)}$"):
        HardwareConfig(dma_bus_bytes=64, dma_max_req_bytes=32)
    assert HardwareConfig(dma_bus_bytes=64, dma_max_req_bytes=64).dma_max_req_bytes == 64


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_derived_quantities_by_hand():
    d = HardwareConfig()  # 16, 256 KB sp / 4 banks, 64 KB acc / 2 banks
    assert d.sp_rows == 256 * 1024 // 16 == 16384
    assert d.sp_bank_rows == 4096
    assert d.acc_rows == 64 * 1024 // (4 * 16) == 1024
    assert d.acc_bank_rows == 512
    assert d.dram_bytes == 16 * 1024 * 1024
    assert d.dram_words == 1048576  # 16 MiB / 16-byte beats
    assert d.peak_macs_per_cycle == 256

    c = HardwareConfig(dim=32, acc_kb=8, acc_banks=1, sp_kb=8, sp_banks=8, dma_bus_bytes=64, dram_mb=1)
    assert c.acc_rows == 64 and c.acc_bank_rows == 64
    assert c.sp_rows == 256 and c.sp_bank_rows == 32
    assert c.dram_words == 16384
    assert c.peak_macs_per_cycle == 1024


def test_json_round_trip_and_key():
    cfg = HardwareConfig(dim=8, sp_kb=128, dram_latency=100)
    s = cfg.to_json()
    assert json.loads(s)["dram_latency"] == 100
    assert HardwareConfig.from_json(s) == cfg
    assert HardwareConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.key() == HardwareConfig.from_json(s).key()
    assert cfg.key() != HardwareConfig().key()
    assert re.fullmatch(r"[0-9a-f]{12}", cfg.key())


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match=re.escape("unknown HardwareConfig field(s) ['size']; allowed: [")):
        HardwareConfig.from_dict({"size": 16})


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        HardwareConfig().dim = 8  # type: ignore[misc]


# ---- hw.generate -------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hw.generate", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (("--dim", "12"), "error: HardwareConfig.dim must be one of 4, 8, 16, 32; got 12"),
    (("--dim", "16", "--sp-kb", "12"), "error: HardwareConfig.sp_kb must be a multiple of 8 from 8 to 256; got 12"),
    (("--dim", "abc"), "error: argument --dim: invalid int value: 'abc' (see --help)"),
])
def test_cli_bad_value_is_one_line(args, message):
    out = _cli(*args)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [message]
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_cli_help():
    out = _cli("--help")
    assert out.returncode == 0
    for flag in ("--dim", "--sp-kb", "--acc-kb", "--dram-bytes-per-cycle", "--imem-depth", "--out-dir", "--lint"):
        assert flag in out.stdout


def test_rtl_stem():
    assert generate.rtl_stem(HardwareConfig()) == "top_d16_sp256_acc64"
    assert generate.rtl_stem(HardwareConfig(dim=8, sp_kb=128, dram_latency=100, dma_bus_bytes=32)) == \
        "top_d8_sp128_acc64_dma_bus_bytes32_dram_latency100"


def test_main_writes_file_and_prints_path_last(tmp_path, monkeypatch, capsys):
    fake_top = types.ModuleType("hw.top")
    fake_top.generate_verilog = lambda cfg: f"// dim {cfg.dim} acc {cfg.acc_kb}\nmodule top(); endmodule\n"
    monkeypatch.setitem(sys.modules, "hw.top", fake_top)
    cfg_json = tmp_path / "cfg.json"
    cfg_json.write_text(HardwareConfig(dim=4, acc_kb=16).to_json())

    assert generate.main(["--from-json", str(cfg_json), "--dim", "8", "--out-dir", str(tmp_path / "rtl")]) == 0
    path = tmp_path / "rtl" / "top_d8_sp256_acc16.v"
    assert capsys.readouterr().out.splitlines()[-1] == str(path)
    assert path.read_text().startswith("// dim 8 acc 16\n")
