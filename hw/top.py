"""Top level of the accelerator: frontend, controllers, memories, DRAM model, counters.

Block diagram::

    host (sim-only) -> Frontend --ld--> LoadController  --DmaReader--\
                               --ex--> ExecuteController (Mesh)     +-- DramModel (SimMem)
                               --st--> StoreController --DmaWriter--/
                     Scratchpad (BankedMemory, int8 rows)   Accumulator (BankedMemory, int32 rows)

Scratchpad clients, highest priority first: reads B (execute weights), A (execute), store;
write: load. Accumulator: reads execute (read-modify-write), store; writes execute, load.

I/O ports
    start                          pulse: run the program in the instruction memory from 0
    running, done, fault           status; `done` stays high after HALT until the next start
    dram_load                      pulse: load the `+DRAM_IN=` hex file into the DRAM model
                                   (the program, `+IMEM_IN=`, is streamed by the host on start)
    dram_dump, dram_dump_lo/hi     pulse: write DRAM words lo..hi to the `+DRAM_OUT=` file
    <counter>                      64-bit performance counters, see COUNTERS; reset by start
    sp_bank_rows, acc_bank_rows    (only with ``capacity_ports``) rows per scratchpad and
                                   accumulator bank of the configuration being simulated;
                                   held constant while a program runs

``capacity_ports=True`` (simulation models only): the memories have the capacity of
``cfg.superset()`` (256 KB each) and their bank boundaries are the two ports' values, so
one model runs every scratchpad and accumulator capacity of the family (same DIM, banks,
DMA and DRAM parameters). With the ports set to ``cfg.sp_bank_rows`` and
``cfg.acc_bank_rows`` and a program that stays within ``cfg``'s rows, every cycle is
that of ``Top(cfg)``: the bank of an address and its row in the bank are the same
functions of the address, computed from a port instead of a constant, and nothing else
in the design depends on the capacity (tests/sim/test_superset.py compares the two).
"""

import re

from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .banked import BankedMemory
from .config import HardwareConfig
from .controllers import ExecuteController, LoadController, StoreController
from .dram import DramModel
from .frontend import Frontend
from .host import HOST_VERILOG, HostStream
from .simmem import SIM_VERILOG

__all__ = ["Top", "COUNTERS", "CAPACITY_PORTS", "capacity_port_values", "generate_verilog"]

COUNTER_BITS = 64

# name -> meaning (all count while the core is running, and reset on start)
COUNTERS = {
    "cycles": "cycles from start to the completion of HALT",
    "load_busy": "cycles the load unit had work (queued, issuing or rows in flight)",
    "exec_busy": "cycles the execute unit had work (queued, preloading, streaming or draining)",
    "store_busy": "cycles the store unit had work (queued, reading, writing or awaiting acks)",
    "sp_reads": "scratchpad rows read",
    "sp_writes": "scratchpad rows written",
    "acc_reads": "accumulator rows read",
    "acc_writes": "accumulator rows written",
    "dram_bytes_read": "bytes requested by MVIN rows",
    "dram_bytes_written": "bytes written by MVOUT rows",
    "macs": "multiply-accumulates issued: per A row, cols(A) x cols(C)",
    "instructions": "instructions dispatched (HALT included)",
}


#: Inputs of a model built with ``capacity_ports``: rows per scratchpad / accumulator bank.
CAPACITY_PORTS = ("sp_bank_rows", "acc_bank_rows")


def capacity_port_values(cfg: HardwareConfig) -> tuple[tuple[str, int], ...]:
    """((port, value), ...) that make a ``capacity_ports`` model behave as ``cfg``."""
    return tuple(zip(CAPACITY_PORTS, (cfg.sp_bank_rows, cfg.acc_bank_rows)))


class Top(wiring.Component):
    def __init__(self, cfg: HardwareConfig, *, backdoor: bool = True, capacity_ports: bool = False):
        if not isinstance(cfg, HardwareConfig):
            raise TypeError(f"Top needs a HardwareConfig, not {cfg!r}")
        self.cfg = cfg
        self.backdoor = backdoor
        self.capacity_ports = capacity_ports
        d = cfg.dim
        mem = cfg.superset() if capacity_ports else cfg
        self.sp = BankedMemory(width=8 * d, depth=mem.sp_rows, banks=cfg.sp_banks, n_read=3, n_write=1,
                               runtime_bank_rows=capacity_ports)
        self.acc = BankedMemory(width=32 * d, depth=mem.acc_rows, banks=cfg.acc_banks, n_read=2, n_write=2,
                                granularity=32, runtime_bank_rows=capacity_ports)
        self.dram = DramModel(cfg, backdoor=backdoor)
        self.host = HostStream(backdoor=backdoor)
        self.frontend = Frontend(cfg.imem_depth)
        self.load = LoadController(cfg, self.sp.addr_width, self.acc.addr_width)
        self.execute = ExecuteController(cfg, self.sp.addr_width, self.acc.addr_width)
        self.store = StoreController(cfg, self.sp.addr_width, self.acc.addr_width)
        aw = self.dram.word_bits
        sig = {
            "start": In(1), "running": Out(1), "done": Out(1), "fault": Out(1),
            "dram_load": In(1), "dram_dump": In(1),
            "dram_dump_lo": In(aw), "dram_dump_hi": In(aw),
        }
        if capacity_ports:
            sig |= {port: In(range(mem.bank_rows + 1)) for port, mem in zip(CAPACITY_PORTS, (self.sp, self.acc))}
        sig |= {name: Out(COUNTER_BITS) for name in COUNTERS}
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        sp, acc, dram, host = self.sp, self.acc, self.dram, self.host
        fe, ld, ex, st = self.frontend, self.load, self.execute, self.store
        for name, sub in (("sp", sp), ("acc", acc), ("dram", dram), ("host", host), ("frontend", fe),
                          ("load", ld), ("execute", ex), ("store", st)):
            m.submodules[name] = sub

        # Host instruction stream and backdoor strobes.
        m.d.comb += [
            host.start.eq(self.start), fe.insn_valid.eq(host.out_valid), fe.insn_data.eq(host.out_data),
            host.out_ready.eq(fe.insn_ready),
            dram.load.eq(self.dram_load), dram.dump.eq(self.dram_dump),
            dram.dump_lo.eq(self.dram_dump_lo), dram.dump_hi.eq(self.dram_dump_hi),
            fe.start.eq(self.start),
            self.running.eq(fe.running), self.done.eq(fe.done), self.fault.eq(fe.fault),
        ]
        if self.capacity_ports:
            m.d.comb += [sp.bank_rows_in.eq(self.sp_bank_rows), acc.bank_rows_in.eq(self.acc_bank_rows)]

        # Frontend <-> controllers.
        for u, unit in (("ld", ld), ("ex", ex), ("st", st)):
            m.d.comb += [
                unit.cmd_valid.eq(getattr(fe, f"{u}_valid")), unit.cmd.eq(getattr(fe, f"{u}_cmd")),
                getattr(fe, f"{u}_ready").eq(unit.cmd_ready),
                getattr(fe, f"{u}_done").eq(unit.done_mask), getattr(fe, f"{u}_busy").eq(unit.busy),
            ]

        # Scratchpad clients.
        def read_client(mem, i, unit, prefix):
            m.d.comb += [
                getattr(mem, f"rd_req_{i}").eq(getattr(unit, f"{prefix}_req")),
                getattr(mem, f"rd_addr_{i}").eq(getattr(unit, f"{prefix}_addr")),
                getattr(unit, f"{prefix}_gnt").eq(getattr(mem, f"rd_gnt_{i}")),
                getattr(unit, f"{prefix}_data").eq(getattr(mem, f"rd_data_{i}")),
            ]

        def write_client(mem, i, unit, prefix):
            m.d.comb += [
                getattr(mem, f"wr_req_{i}").eq(getattr(unit, f"{prefix}_req")),
                getattr(mem, f"wr_addr_{i}").eq(getattr(unit, f"{prefix}_addr")),
                getattr(mem, f"wr_data_{i}").eq(getattr(unit, f"{prefix}_data")),
                getattr(mem, f"wr_mask_{i}").eq(getattr(unit, f"{prefix}_mask")),
                getattr(unit, f"{prefix}_gnt").eq(getattr(mem, f"wr_gnt_{i}")),
            ]

        read_client(sp, 0, ex, "b_rd")
        read_client(sp, 1, ex, "a_rd")
        read_client(sp, 2, st, "sp_rd")
        write_client(sp, 0, ld, "sp_wr")
        read_client(acc, 0, ex, "acc_rd")
        read_client(acc, 1, st, "acc_rd")
        write_client(acc, 0, ex, "acc_wr")
        write_client(acc, 1, ld, "acc_wr")

        # DRAM.
        for name in ("rreq_valid", "rreq_word", "rreq_beats"):
            m.d.comb += getattr(dram, name).eq(getattr(ld, name))
        for name in ("rreq_ready", "rbeat_valid", "rbeat_data", "rbeat_last"):
            m.d.comb += getattr(ld, name).eq(getattr(dram, name))
        for name in ("wbeat_valid", "wbeat_word", "wbeat_data", "wbeat_mask", "wbeat_last"):
            m.d.comb += getattr(dram, name).eq(getattr(st, name))
        for name in ("wbeat_ready", "wack"):
            m.d.comb += getattr(st, name).eq(getattr(dram, name))

        # Performance counters.
        events = {
            "cycles": 1,
            "load_busy": ld.busy,
            "exec_busy": ex.busy,
            "store_busy": st.busy,
            "sp_reads": sp.n_reads,
            "sp_writes": sp.n_writes,
            "acc_reads": acc.n_reads,
            "acc_writes": acc.n_writes,
            "dram_bytes_read": ld.dram_bytes,
            "dram_bytes_written": st.dram_bytes,
            "macs": ex.macs,
            "instructions": fe.dispatched,
        }
        for name, inc in events.items():
            counter = getattr(self, name)
            with m.If(self.start):
                m.d.sync += counter.eq(0)
            with m.Elif(fe.running):
                m.d.sync += counter.eq(counter + inc)
        return m


_ZERO_INIT = re.compile(
    r"^[ \t]*initial begin\n(?:[ \t]*\w+\[\d+\] = \d+'[hd]0+;\n)+[ \t]*end\n", re.MULTILINE)


def strip_zero_memory_init(text: str) -> str:
    """Remove `initial` blocks that only set memory rows to zero.

    Amaranth writes one assignment per row of every memory (65,536 lines for a DIM 4
    scratchpad of 256 KB). The memories here start empty, and the Verilator builds use
    `--x-initial 0`, so these blocks only slow down parsing and compilation."""
    return _ZERO_INIT.sub("", text)


def generate_verilog(cfg: HardwareConfig, *, capacity_ports: bool = False) -> str:
    """Verilog of the whole accelerator (top module `top`) plus the simulation-only
    backdoor memory module it instantiates; ``capacity_ports``: see the module docstring."""
    top = Top(cfg, capacity_ports=capacity_ports)
    text = strip_zero_memory_init(verilog.convert(top, name="top", emit_src=False))
    return text + "\n" + SIM_VERILOG.read_text() + "\n" + HOST_VERILOG.read_text()
