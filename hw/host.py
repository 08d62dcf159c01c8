"""Simulation-only host that streams instructions into the accelerator.

The accelerator has an instruction buffer of `imem_depth` instructions (a FIFO in the
frontend) that a host refills as instructions are dispatched, as a host CPU feeds
Gemmini over RoCC. Programs are therefore not limited by the buffer's size.

`HostStream` reads the program file (`+IMEM_IN=` plusarg, one hex word per line) when
`start` is pulsed and offers one instruction per cycle (`out_valid`/`out_data`/
`out_ready`). With `backdoor=False` it instead plays the words of an Amaranth memory
(`self.memory`, filled by a testbench, terminated by the program's HALT) for the
Amaranth simulator.
"""

from pathlib import Path

from amaranth import ClockSignal, Instance, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .isa import INSN_BITS

__all__ = ["HostStream", "HOST_VERILOG"]

HOST_VERILOG = Path(__file__).with_name("verilog") / "sim_host.v"


class HostStream(wiring.Component):
    start: In(1)
    out_valid: Out(1)
    out_data: Out(INSN_BITS)
    out_ready: In(1)

    def __init__(self, *, backdoor: bool = True, depth: int = 1024):
        self.backdoor = backdoor
        self.memory = None if backdoor else memory.Memory(shape=INSN_BITS, depth=depth, init=[])
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        if self.backdoor:
            m.submodules.host = Instance(
                "sim_host", p_WIDTH=INSN_BITS,
                i_clk=ClockSignal("sync"), i_start=self.start,
                o_out_valid=self.out_valid, o_out_data=self.out_data, i_out_ready=self.out_ready)
            return m
        m.submodules.mem = mem = self.memory
        rp = mem.read_port()
        addr = Signal(range(mem.depth))
        active = Signal()
        m.d.comb += [rp.addr.eq(addr), rp.en.eq(1), self.out_data.eq(rp.data), self.out_valid.eq(active)]
        with m.If(self.start):
            m.d.sync += [addr.eq(1), active.eq(1)]
            m.d.comb += rp.addr.eq(0)
        with m.Elif(active & self.out_ready):
            m.d.sync += addr.eq(addr + 1)
            m.d.comb += rp.addr.eq(addr)
            with m.If(addr == mem.depth - 1):
                m.d.sync += active.eq(0)
        with m.Else():
            m.d.comb += rp.addr.eq(addr - 1)
        return m
