"""What lean builds compile (sim.build.lean_verilog) and the build-time facts the harness
relies on, on small stand-in designs (no accelerator build; Verilator lints the result)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sim import build
from sim.build import (BuildError, LEAN_CORE_MODULE, LEAN_SIM_MODULES, harness_fingerprint, lean_ports_header,
                       lean_verilog, posedge_clk_only)
from sim.toolchain import verilator_env, verilator_executable

REPO_ROOT = Path(__file__).resolve().parents[2]

TOP = """(* top =  1  *)
module top(clk, rst, start, a, y, done);
  input clk;
  wire clk;
  input rst;
  wire rst;
  input start;
  input [3:0] a;
  output [7:0] y;
  reg [7:0] y = 8'h00;
  output done;
  wire done;
  assign done = y[7];
  always @(posedge clk) y <= rst ? 8'h00 : start ? {4'h0, a} : y + 8'h01;
  sim_host #(.WIDTH(128)) host (.clk(clk), .start(start), .out_ready(1'b1));
  sim_mem #(.WIDTH(32), .DEPTH(16), .AW(4)) store (.clk(clk), .rd_en(1'b0), .rd_addr(4'h0), .wr_en(1'b0),
      .wr_addr(4'h0), .wr_data(32'h0), .wr_mask(4'h0), .load(1'b0), .dump(1'b0), .dump_lo(4'h0), .dump_hi(4'h0));
endmodule
"""


def _original_sim_modules() -> str:
    return (REPO_ROOT / "hw" / "verilog" / "sim_mem.v").read_text() + "\n" + \
        (REPO_ROOT / "hw" / "verilog" / "sim_host.v").read_text()


def test_sim_modules_are_replaced_and_top_registers_rst_and_start():
    text = lean_verilog(TOP + _original_sim_modules())
    assert not [line for line in text.splitlines() if "$fscanf" in line.split("//")[0]]
    for name, path in LEAN_SIM_MODULES.items():
        assert len(re.findall(rf"^module {name}\b", text, re.M)) == 1
        assert path.read_text().strip() in text
    assert text.count(f"module {LEAN_CORE_MODULE}(clk, rst, start, a, y, done);") == 1
    wrapper = text[text.index("\nmodule top("):]
    assert "module top(clk, rst, start, a, y, done);" in wrapper
    assert "input [3:0] a;" in wrapper and "output [7:0] y;" in wrapper
    assert "reg rst_q = 1'b1;" in wrapper and "reg start_q = 1'b0;" in wrapper
    assert f"{LEAN_CORE_MODULE} core (.clk(clk), .rst(rst_q), .start(start_q), .a(a), .y(y), .done(done));" in wrapper


def test_lean_verilog_lints(tmp_path):
    path = tmp_path / "top.v"
    path.write_text(lean_verilog(TOP + _original_sim_modules()))
    r = subprocess.run([verilator_executable(), "--lint-only", "-Wno-fatal", "--top-module", "top", str(path)],
                       env=verilator_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_lean_verilog_rejects_what_it_cannot_wrap():
    with pytest.raises(BuildError, match="modules named top"):
        lean_verilog(TOP.replace("module top(", "module other("))
    with pytest.raises(BuildError, match="one-bit input 'start'"):
        lean_verilog(TOP.replace("input start;", "input [1:0] start;"))
    with pytest.raises(BuildError, match="2 sim_host modules"):
        host = (REPO_ROOT / "hw" / "verilog" / "sim_host.v").read_text()
        lean_verilog(TOP + host + host)


def test_ports_header_marks_registered_inputs_and_posedge_models():
    vtop = "VL_IN8(&clk,0,0); VL_IN8(&rst,0,0); VL_IN8(&start,0,0); VL_IN8(&dram_load,0,0); " \
           "VL_IN8(&dram_dump,0,0); VL_OUT8(&done,0,0); VL_OUT8(&fault,0,0); VL_IN(&dram_dump_lo,17,0); " \
           "VL_IN(&dram_dump_hi,17,0); VL_OUT64(&cycles,63,0);"
    text = lean_ports_header(vtop, ["cycles"], registered=("rst", "start"), posedge_only=True)
    assert "#define ACCEL_REGISTERED_RST 1" in text and "#define ACCEL_REGISTERED_START 1" in text
    assert "#define ACCEL_POSEDGE_ONLY 1" in text
    plain = lean_ports_header(vtop, ["cycles"])
    assert "ACCEL_REGISTERED" not in plain and "ACCEL_POSEDGE_ONLY" not in plain
    with pytest.raises(BuildError, match="reset"):
        lean_ports_header(vtop, ["cycles"], registered=("reset",))


TRIGGERS = """void Vtop___024root___eval_triggers_vec__act(Vtop___024root* vlSelf) {
    VL_DEBUG_IF(VL_DBG_MSGF("+    Vtop___024root___eval_triggers_vec__act\\n"); );
    Vtop__Syms* const __restrict vlSymsp VL_ATTR_UNUSED = vlSelf->vlSymsp;
    auto& vlSelfRef = std::ref(*vlSelf).get();
    // Body
    vlSelfRef.__VactTriggered[0U] = (QData)((IData)(
                                                    ((IData)(vlSelfRef.clk) 
                                                     & (~ (IData)(vlSelfRef.__Vtrigprevexpr___TOP__clk__0)))));
    vlSelfRef.__Vtrigprevexpr___TOP__clk__0 = vlSelfRef.clk;
}
"""


def test_posedge_clk_only_reads_the_trigger_code(tmp_path):
    (tmp_path / "Vtop___024root__0.cpp").write_text("// other code\n" + TRIGGERS)
    assert posedge_clk_only(tmp_path)
    both = TRIGGERS.replace("vlSelfRef.__Vtrigprevexpr___TOP__clk__0 = vlSelfRef.clk;",
                            "vlSelfRef.__VactTriggered[0U] = (vlSelfRef.__VactTriggered[0U] | 2ULL);\n"
                            "    vlSelfRef.__Vtrigprevexpr___TOP__clk__0 = vlSelfRef.clk;")
    (tmp_path / "Vtop___024root__0.cpp").write_text(both)
    assert not posedge_clk_only(tmp_path)
    (tmp_path / "Vtop___024root__0.cpp").write_text("// no trigger function\n")
    assert not posedge_clk_only(tmp_path)


def test_harness_fingerprint_covers_the_replacement_modules(tmp_path, monkeypatch):
    copy = tmp_path / "harness"
    shutil.copytree(build.HARNESS_DIR, copy)
    monkeypatch.setattr(build, "HARNESS_DIR", copy)
    before = harness_fingerprint()
    (copy / "sim_mem_lean.v").write_text((copy / "sim_mem_lean.v").read_text() + "\n// changed\n")
    assert harness_fingerprint() != before


def test_bank_sizes_of_a_family_model_are_latched_at_dram_load(tmp_path):
    top = TOP.replace("module top(clk, rst, start, a, y, done);",
                      "module top(clk, rst, start, a, y, done, dram_load, sp_bank_rows);")
    top = top.replace("  input [3:0] a;\n", "  input [3:0] a;\n  input dram_load;\n  input [13:0] sp_bank_rows;\n")
    text = lean_verilog(top + _original_sim_modules())
    wrapper = text[text.index("\nmodule top("):]
    assert "reg [13:0] sp_bank_rows_q = 0;" in wrapper
    assert "if (dram_load) sp_bank_rows_q <= sp_bank_rows;" in wrapper
    assert ".sp_bank_rows(sp_bank_rows_q)" in wrapper and ".dram_load(dram_load)" in wrapper
    path = tmp_path / "top.v"
    path.write_text(text)
    r = subprocess.run([verilator_executable(), "--lint-only", "-Wno-fatal", "--top-module", "top", str(path)],
                       env=verilator_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    no_load = top.replace(", dram_load, ", ", ").replace("  input dram_load;\n", "")
    with pytest.raises(BuildError, match="dram_load"):
        lean_verilog(no_load)
