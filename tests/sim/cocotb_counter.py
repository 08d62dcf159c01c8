"""Stand-in design for the build-cache tests: an Amaranth counter, and cocotb tests for it.

``generate_counter(cfg)`` plays the role of ``hw.top.generate_verilog``: top module
``top`` with ports clk, rst, en, count (width ``cfg.dim``). The ``@cocotb.test``
functions run inside the simulator (module ``tests.sim.cocotb_counter``).
"""

from __future__ import annotations

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer


def generate_counter(cfg) -> str:
    """Verilog of a ``cfg.dim``-bit enable counter named ``top``."""
    from amaranth import Module
    from amaranth.back import verilog
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Counter(wiring.Component):
        def __init__(self):
            super().__init__({"en": In(1), "count": Out(cfg.dim)})

        def elaborate(self, platform):
            m = Module()
            with m.If(self.en):
                m.d.sync += self.count.eq(self.count + 1)
            return m

    return verilog.convert(Counter(), name="top")


async def _reset(dut) -> None:
    Clock(dut.clk, 10, unit="ns").start()
    dut.en.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0


@cocotb.test()
async def counts_when_enabled(dut):
    """The counter advances once per enabled cycle and holds otherwise."""
    await _reset(dut)
    dut.en.value = 1
    await ClockCycles(dut.clk, 10)
    dut.en.value = 0
    await RisingEdge(dut.clk)
    held = int(dut.count.value)
    await ClockCycles(dut.clk, 5)
    assert int(dut.count.value) == held
    assert held == 10, held  # 10 rising edges saw en=1


@cocotb.test()
async def sees_env_and_plusargs(dut):
    """Environment and plusargs given to run_cocotb_test reach the simulator."""
    expected = os.environ.get("COUNTER_EXPECT")
    if expected is not None:
        assert cocotb.plusargs.get("COUNTER_PLUSARG") == expected, cocotb.plusargs
    await Timer(1, unit="ns")


@cocotb.test()
async def fails_on_purpose(dut):
    """Fails only when COUNTER_FAIL=1 (to test failure reporting)."""
    await Timer(1, unit="ns")
    assert os.environ.get("COUNTER_FAIL") != "1", "failing on purpose"


@cocotb.test()
async def hangs_on_purpose(dut):
    """Spins forever in wall time when COUNTER_HANG=1 (to test timeouts)."""
    if os.environ.get("COUNTER_HANG") == "1":
        Clock(dut.clk, 10, unit="ns").start()
        while True:
            await ClockCycles(dut.clk, 1_000_000)
    await Timer(1, unit="ns")
