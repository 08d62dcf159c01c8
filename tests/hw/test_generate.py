"""`make rtl SIZE=N`: Verilog written, its path printed last, clean Verilator lint;
a bad size is a one-line error."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hw.config import HardwareConfig
from hw.top import generate_verilog, strip_zero_memory_init
from sim.toolchain import verilator_env, verilator_executable

REPO = Path(__file__).resolve().parents[2]


def _make_rtl(tmp_path, *args):
    return subprocess.run(["make", "-s", "-C", str(REPO), "rtl", f"OUT_DIR={tmp_path}", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("size", [4, pytest.param(8, marks=pytest.mark.slow),
                                  pytest.param(16, marks=pytest.mark.slow),
                                  pytest.param(32, marks=pytest.mark.slow)])
def test_make_rtl_writes_lint_clean_verilog(tmp_path, size):
    r = _make_rtl(tmp_path, f"SIZE={size}")
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.parent == tmp_path
    text = path.read_text()
    assert "module top(" in text and "module sim_mem" in text
    lint = subprocess.run([verilator_executable(), "--lint-only", "-Wno-fatal", "--top-module", "top", str(path)],
                          capture_output=True, text=True, env=verilator_env(), timeout=600)
    assert lint.returncode == 0, lint.stderr[-2000:]
    assert not re.search(r"^%Error", lint.stderr, re.MULTILINE)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_rtl_bad_size_is_one_line_error(tmp_path):
    r = _make_rtl(tmp_path, "SIZE=12")
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("make")]
    assert lines == ["error: HardwareConfig.dim must be one of 4, 8, 16, 32; got 12"]
    assert "Traceback" not in r.stderr + r.stdout


def test_memory_initialisers_are_stripped():
    text = generate_verilog(HardwareConfig(dim=4))
    # 256 KB scratchpad = 65,536 rows: no row-by-row zero initialisation is left.
    assert not re.search(r"bank0\[\d+\] = ", text)
    assert len(text) < 1_000_000


def test_strip_zero_memory_init_keeps_nonzero_and_other_initials():
    text = ("  initial begin\n    m[0] = 8'h00;\n    m[1] = 8'd0;\n  end\n"
            "  initial begin\n    n[0] = 8'h01;\n  end\n"
            "  initial begin\n    x = 1'h0;\n  end\n")
    out = strip_zero_memory_init(text)
    assert "m[0]" not in out and "n[0] = 8'h01" in out and "x = 1'h0" in out
