"""Simulation-only DRAM model: latency, bandwidth and in-order responses.

Storage is a `SimMem` of bus-wide words (backdoor-loaded from a hex file). Around it,
this component models timing:

* Read requests `(word, beats)` enter a queue of depth `dma_max_inflight`; a request
  accepted at cycle t starts returning beats at cycle t + dram_latency, in order.
* Every beat (read or write) moves `dma_bus_bytes` over one shared channel: at most one
  beat per cycle, and a token bucket refilled by `dram_bytes_per_cycle` each cycle
  (capacity max(bus bytes, bytes per cycle)) limits the sustained bandwidth. Reads and
  writes alternate when both are waiting.
* Write beats carry their own word address and byte mask and are applied as accepted;
  the last beat of a request is acknowledged (`wack`) dram_latency cycles later.

I/O ports
    rreq_valid, rreq_word, rreq_beats -> rreq_ready
    rbeat_valid, rbeat_data, rbeat_last           (no back-pressure: the reader reserves room)
    wbeat_valid, wbeat_word, wbeat_data, wbeat_mask, wbeat_last -> wbeat_ready
    wack                                            a write request completed
    load, dump, dump_lo, dump_hi                    backdoor (see SimMem)
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .config import HardwareConfig
from .simmem import SimMem

__all__ = ["DramModel"]

TIME_BITS = 32


class DramModel(wiring.Component):
    def __init__(self, cfg: HardwareConfig, *, backdoor: bool = True):
        self.cfg = cfg
        self.bus = cfg.dma_bus_bytes
        self.word_bits = ceil_log2(cfg.dram_words)
        self.max_beats = cfg.dma_max_req_bytes // cfg.dma_bus_bytes
        self.store = SimMem(width=8 * self.bus, depth=cfg.dram_words, name="dram", backdoor=backdoor)
        aw = self.word_bits
        super().__init__({
            "rreq_valid": In(1), "rreq_word": In(aw), "rreq_beats": In(range(self.max_beats + 1)),
            "rreq_ready": Out(1),
            "rbeat_valid": Out(1), "rbeat_data": Out(8 * self.bus), "rbeat_last": Out(1),
            "wbeat_valid": In(1), "wbeat_word": In(aw), "wbeat_data": In(8 * self.bus),
            "wbeat_mask": In(self.bus), "wbeat_last": In(1), "wbeat_ready": Out(1),
            "wack": Out(1),
            "load": In(1), "dump": In(1), "dump_lo": In(aw), "dump_hi": In(aw),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, bus = self.cfg, self.bus
        lat = cfg.dram_latency
        m.submodules.store = store = self.store
        m.d.comb += [store.load.eq(self.load), store.dump.eq(self.dump),
                     store.dump_lo.eq(self.dump_lo), store.dump_hi.eq(self.dump_hi)]

        now = Signal(TIME_BITS)
        m.d.sync += now.eq(now + 1)

        # ---- bandwidth: token bucket shared by reads and writes --------------------
        cap = max(bus, cfg.dram_bytes_per_cycle)
        credit = Signal(range(cap + cfg.dram_bytes_per_cycle + 1), init=cap)
        beat = Signal()        # a beat moves this cycle
        has_credit = credit >= bus
        refill = credit - (beat * bus) + cfg.dram_bytes_per_cycle
        m.d.sync += credit.eq(refill.as_unsigned())
        with m.If(refill > cap):
            m.d.sync += credit.eq(cap)

        # ---- read requests --------------------------------------------------------
        req_layout = data.StructLayout({"word": self.word_bits,
                                        "beats": range(self.max_beats + 1), "t": TIME_BITS})
        m.submodules.rq = rq = SyncFIFOBuffered(width=req_layout.size, depth=cfg.dma_max_inflight)
        m.d.comb += [
            rq.w_data.eq(Cat(self.rreq_word, self.rreq_beats, now)),
            rq.w_en.eq(self.rreq_valid),
            self.rreq_ready.eq(rq.w_rdy),
        ]
        head = data.View(req_layout, rq.r_data)
        k = Signal(range(self.max_beats + 1))       # beats of the head request sent
        rd_want = rq.r_rdy & ((now - head.t)[:TIME_BITS] >= lat)
        wr_want = self.wbeat_valid

        # ---- channel arbitration (alternate when both wait) ------------------------
        last_was_read = Signal()
        rd_go = Signal()
        wr_go = Signal()
        with m.If(has_credit):
            with m.If(rd_want & wr_want):
                m.d.comb += [rd_go.eq(~last_was_read), wr_go.eq(last_was_read)]
            with m.Else():
                m.d.comb += [rd_go.eq(rd_want), wr_go.eq(wr_want)]
        m.d.comb += beat.eq(rd_go | wr_go)
        with m.If(rd_go):
            m.d.sync += last_was_read.eq(1)
        with m.Elif(wr_go):
            m.d.sync += last_was_read.eq(0)

        # Read beat: read the store now, deliver next cycle.
        is_last = (k + 1) == head.beats
        m.d.comb += [store.rd_en.eq(rd_go), store.rd_addr.eq(head.word + k)]
        with m.If(rd_go):
            m.d.sync += k.eq(k + 1)
            with m.If(is_last):
                m.d.sync += k.eq(0)
                m.d.comb += rq.r_en.eq(1)
        m.d.sync += [self.rbeat_valid.eq(rd_go), self.rbeat_last.eq(rd_go & is_last)]
        m.d.comb += self.rbeat_data.eq(store.rd_data)

        # Write beat: applied when accepted; the last beat of a request is acked later.
        m.d.comb += [
            self.wbeat_ready.eq(wr_go),
            store.wr_en.eq(wr_go), store.wr_addr.eq(self.wbeat_word),
            store.wr_data.eq(self.wbeat_data), store.wr_mask.eq(self.wbeat_mask),
        ]
        m.submodules.aq = aq = SyncFIFOBuffered(width=TIME_BITS, depth=cfg.dma_max_inflight + 1)
        m.d.comb += [aq.w_data.eq(now), aq.w_en.eq(wr_go & self.wbeat_last)]
        ack = aq.r_rdy & ((now - aq.r_data)[:TIME_BITS] >= lat)
        m.d.comb += [aq.r_en.eq(ack), self.wack.eq(ack)]
        return m
