"""`python -m hw.generate` / `make rtl`: bad input, including an ``--out-dir`` that cannot
be written, is one ``error:`` line and exit 2, before anything is generated; generation
says what it is doing first."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli_common import assert_one_line_error

import hw.generate as gen
from hw.config import HardwareConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_generation(monkeypatch):
    def write_verilog(cfg, out_dir):
        pytest.fail("generation was reached for bad input")
    monkeypatch.setattr(gen, "write_verilog", write_verilog)


def one_line_error(capsys, argv, message):
    rc = gen.main(argv)
    cap = capsys.readouterr()
    assert_one_line_error(rc, cap.out, cap.err, message, argv)


def test_out_dir_problems_are_found_before_generating(capsys, tmp_path, no_generation):
    afile = tmp_path / "afile"
    afile.write_text("x")
    stem = gen.rtl_stem(HardwareConfig(dim=4))
    (tmp_path / "d" / f"{stem}.v").mkdir(parents=True)
    one_line_error(capsys, ["--dim", "4", "--out-dir", str(afile)], f"--out-dir {afile}: exists and is not a directory")
    one_line_error(capsys, ["--dim", "4", "--out-dir", str(afile / "sub" / "deeper")],
                   f"{afile} is a file, not a directory")
    one_line_error(capsys, ["--dim", "4", "--out-dir", str(tmp_path / "d")], "is a directory; give a file name")
    one_line_error(capsys, ["--dim", "4", "--out-dir", "/proc/accelsim-rtl"], "cannot write into /proc")
    assert not (tmp_path / "afile").is_dir() and not any((tmp_path / "d" / f"{stem}.v").iterdir())


@pytest.mark.parametrize("argv, message", [
    (["--dim", "12"], "HardwareConfig.dim must be one of 4, 8, 16, 32; got 12"),
    (["--dim", "1000000000000"], "HardwareConfig.dim must be one of 4, 8, 16, 32"),
    (["--imem-depth", str(1 << 40)], "HardwareConfig.imem_depth must be a power of two from 64 to 65536"),
    (["--dram-mb", "0"], "HardwareConfig.dram_mb must be a power of two from 1 to 256; got 0"),
    (["--dma-max-req-bytes", "8", "--dma-bus-bytes", "16"], "dma_max_req_bytes must be at least dma_bus_bytes"),
    (["--from-json", "/dev/zero"], "cannot read /dev/zero: larger than 1,048,576 bytes"),
    (["--from-json", "/nonexistent.json"], "cannot read /nonexistent.json: No such file or directory"),
    (["--sp-kb", "abc"], "argument --sp-kb: invalid int value: 'abc'"),
    (["--lint", "yes"], "unrecognized arguments: yes"),
    # found trying it as a new user
    (["--dma-max-inflight", "0"], "HardwareConfig.dma_max_inflight must be an integer from 1 to 64; got 0"),
    (["--dram-latency", "100000"], "HardwareConfig.dram_latency must be an integer from 1 to 1000 cycles"),
    (["--dim", "4", "--lint", "--out-dir", "/proc/none"], "--out-dir /proc/none: cannot write into /proc"),
])
def test_bad_config_is_one_line(capsys, no_generation, argv, message):
    one_line_error(capsys, argv, message)


def test_bad_json_file_is_one_line(capsys, tmp_path, no_generation):
    path = tmp_path / "c.json"
    for text, message in (("{", "cannot read"), ("[4]", "does not hold a JSON object"),
                          ('{"dim": "16"}', "HardwareConfig.dim must be an integer"),
                          ('{"colour": 1}', "unknown HardwareConfig field(s) ['colour']")):
        path.write_text(text)
        one_line_error(capsys, ["--from-json", str(path)], message)


def test_generation_is_announced_first(capsys, tmp_path, monkeypatch):
    def write_verilog(cfg, out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{gen.rtl_stem(cfg)}.v"
        path.write_text("module top(); endmodule\n")
        return path
    monkeypatch.setattr(gen, "write_verilog", write_verilog)
    assert gen.main(["--dim", "8", "--out-dir", str(tmp_path / "rtl")]) == 0
    cap = capsys.readouterr()
    assert cap.err.startswith("generating the Verilog of top_d8_sp256_acc64 with Amaranth (about 10-45 s")
    assert cap.out.strip().splitlines()[-1] == str(tmp_path / "rtl" / "top_d8_sp256_acc64.v")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_rtl_out_dir_is_a_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = subprocess.run(["make", "-s", "-C", str(REPO), "rtl", "SIZE=4", f"OUT_DIR={afile}"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("make")]
    assert lines == [f"error: --out-dir {afile}: exists and is not a directory"]
    assert afile.read_text() == "x"
