"""Amaranth wrapper of the simulation-only backdoor memory (`hw/verilog/sim_mem.v`).

`SimMem` has a synchronous read port, a byte-masked write port and `load` / `dump`
strobes that read or write a hex image file in Verilog `$readmemh` format, with the file
names taken from plusargs (e.g. `+DRAM_IN=path`). It backs the DRAM model and the
instruction memory, so a program and its data are loaded in one step and a whole run
needs no per-cycle Python.

With `backdoor=False` the same ports are implemented by an Amaranth memory (no files),
which lets the Amaranth simulator run unit tests of the units around it.
"""

from pathlib import Path

from amaranth import ClockSignal, Instance, Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["SimMem", "SIM_VERILOG"]

SIM_VERILOG = Path(__file__).with_name("verilog") / "sim_mem.v"


class SimMem(wiring.Component):
    def __init__(self, *, width: int, depth: int, name: str, backdoor: bool = True):
        if width % 8:
            raise ValueError(f"SimMem width must be a multiple of 8, not {width}")
        self.width, self.depth, self.mem_name, self.backdoor = width, depth, name, backdoor
        self.memory = None if backdoor else memory.Memory(shape=width, depth=depth, init=[])
        aw = max(1, ceil_log2(depth))
        self.addr_width = aw
        super().__init__({
            "rd_en": In(1), "rd_addr": In(aw), "rd_data": Out(width),
            "wr_en": In(1), "wr_addr": In(aw), "wr_data": In(width), "wr_mask": In(width // 8),
            "load": In(1), "dump": In(1), "dump_lo": In(aw), "dump_hi": In(aw),
        })

    def elaborate(self, platform):
        m = Module()
        if self.backdoor:
            up = self.mem_name.upper()
            m.submodules.store = Instance(
                "sim_mem",
                p_WIDTH=self.width, p_DEPTH=self.depth, p_AW=self.addr_width,
                p_IN_ARG=f"{up}_IN=%s", p_IN_DEFAULT=f"{self.mem_name}_in.hex",
                p_OUT_ARG=f"{up}_OUT=%s", p_OUT_DEFAULT=f"{self.mem_name}_out.hex",
                i_clk=ClockSignal("sync"),
                i_rd_en=self.rd_en, i_rd_addr=self.rd_addr, o_rd_data=self.rd_data,
                i_wr_en=self.wr_en, i_wr_addr=self.wr_addr, i_wr_data=self.wr_data,
                i_wr_mask=self.wr_mask, i_load=self.load, i_dump=self.dump,
                i_dump_lo=self.dump_lo, i_dump_hi=self.dump_hi,
            )
        else:
            mem = self.memory
            m.submodules.store = mem
            wp = mem.write_port(granularity=8)
            rp = mem.read_port()
            m.d.comb += [
                rp.en.eq(self.rd_en), rp.addr.eq(self.rd_addr), self.rd_data.eq(rp.data),
                wp.addr.eq(self.wr_addr), wp.data.eq(self.wr_data),
                wp.en.eq(self.wr_mask & self.wr_en.replicate(self.width // 8)),
            ]
        return m

