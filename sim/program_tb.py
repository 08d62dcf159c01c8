"""cocotb testbench that runs accelerator programs on the `top` model.

It is generic: each *case* is a directory written by `sim.rtl_run` holding
`imem.hex` (the program, streamed by the simulated host on start), `dram_in.hex` and
`case.json` ({"max_cycles", "dump_lo", "dump_hi"}). For
each case listed (one directory per line) in the file named by `$ACCEL_CASES`, the
testbench loads the program and the DRAM image through the backdoor, pulses `start`,
waits for `done` with no per-cycle Python (the simulator runs freely until `done`
rises or the cycle budget expires: the watchdog), dumps DRAM words dump_lo..dump_hi to
`dram_out.hex` and writes `result.json` with the performance counters.

The backdoor file names are fixed per simulation by plusargs
(+IMEM_IN, +DRAM_IN, +DRAM_OUT, all under `$ACCEL_WORK`); each case's files are
copied there before its load pulse. Checking results is the caller's job.
"""

import json
import os
import shutil
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout, SimTimeoutError

from hw.top import COUNTERS

PERIOD_NS = 10


def _u(handle) -> int:
    value = handle.value
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


async def _pulse(dut, sig, cycles=1):
    sig.value = 1
    await ClockCycles(dut.clk, cycles)
    sig.value = 0


async def _reset(dut):
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 1)


@cocotb.test()
async def run_programs(dut):
    work = Path(os.environ["ACCEL_WORK"])
    cases = [Path(line) for line in Path(os.environ["ACCEL_CASES"]).read_text().split() if line]
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start(start_high=False))
    for sig in (dut.start, dut.dram_load, dut.dram_dump, dut.dram_dump_lo, dut.dram_dump_hi):
        sig.value = 0
    await _reset(dut)
    for case in cases:
        spec = json.loads((case / "case.json").read_text())
        shutil.copyfile(case / "imem.hex", work / "imem.hex")
        shutil.copyfile(case / "dram_in.hex", work / "dram_in.hex")
        dut.dram_load.value = 1
        await ClockCycles(dut.clk, 1)
        dut.dram_load.value = 0
        await ClockCycles(dut.clk, 1)

        t0 = time.perf_counter()
        await _pulse(dut, dut.start)
        timed_out = False
        try:
            await with_timeout(RisingEdge(dut.done), spec["max_cycles"] * PERIOD_NS, "ns")
        except SimTimeoutError:
            timed_out = True
        wall = time.perf_counter() - t0
        await ClockCycles(dut.clk, 1)
        result = {
            "done": bool(_u(dut.done)),
            "fault": bool(_u(dut.fault)),
            "timed_out": timed_out,
            "wall_s": wall,
            "counters": {name: _u(getattr(dut, name)) for name in COUNTERS},
        }
        dut.dram_dump_lo.value = spec["dump_lo"]
        dut.dram_dump_hi.value = spec["dump_hi"]
        await _pulse(dut, dut.dram_dump)
        await ClockCycles(dut.clk, 1)
        shutil.copyfile(work / "dram_out.hex", case / "dram_out.hex")
        (case / "result.json").write_text(json.dumps(result))
        if timed_out:
            await _reset(dut)
