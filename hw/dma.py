"""DMA engines between the DRAM model and the local memories.

`DmaReader` turns row reads `(byte address, bytes, meta)` into DRAM requests and
reassembles the returned beats into rows; `DmaWriter` turns rows into byte-masked
write beats. Both split a row at every `dma_max_req_bytes`-aligned boundary (as
Gemmini's DMA does), so a row may take several requests, and each request covers the
bus words it touches. A row is at most `4 * dim` bytes (one accumulator row).

DmaReader I/O
    in_valid, in_addr, in_nbytes, in_meta -> in_ready       row read requests
    out_valid, out_data, out_meta <- out_ready               assembled rows, bytes
                                                             >= nbytes are zero
    (rreq_*, rbeat_*)                                        to / from the DRAM model
    busy                                                     rows in flight
DmaWriter I/O
    in_valid, in_addr, in_nbytes, in_data -> in_ready        rows to write
    (wbeat_*, wack)                                          to / from the DRAM model
    busy                                                     rows queued or writes unacked
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .config import HardwareConfig

__all__ = ["DmaReader", "DmaWriter", "ROWS_IN_FLIGHT"]

ROWS_IN_FLIGHT = 8      # DmaWriter row queue; the reader tracks max(2, dma_max_inflight) rows
ADDR_BITS = 32


def _geometry(cfg: HardwareConfig):
    bus = cfg.dma_bus_bytes
    row_bytes = 4 * cfg.dim
    max_beats_row = -(-(bus - 1 + row_bytes) // bus)
    return bus, ceil_log2(bus), row_bytes, max_beats_row


class DmaReader(wiring.Component):
    def __init__(self, cfg: HardwareConfig, meta_width: int):
        self.cfg = cfg
        self.meta_width = meta_width
        bus, self.lb, self.row_bytes, self.max_beats_row = _geometry(cfg)
        self.bus = bus
        self.word_bits = ceil_log2(cfg.dram_words)
        self.max_req_beats = cfg.dma_max_req_bytes // bus
        super().__init__({
            "in_valid": In(1), "in_addr": In(ADDR_BITS), "in_nbytes": In(range(self.row_bytes + 1)),
            "in_meta": In(meta_width), "in_ready": Out(1),
            "out_valid": Out(1), "out_data": Out(8 * self.row_bytes), "out_meta": Out(meta_width),
            "out_ready": In(1),
            "rreq_valid": Out(1), "rreq_word": Out(self.word_bits),
            "rreq_beats": Out(range(self.max_req_beats + 1)), "rreq_ready": In(1),
            "rbeat_valid": In(1), "rbeat_data": In(8 * bus), "rbeat_last": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, bus, lb = self.cfg, self.bus, self.lb
        R = cfg.dma_max_req_bytes
        rb, mbr = self.row_bytes, self.max_beats_row

        rows_max = max(2, cfg.dma_max_inflight)     # rows in flight: one request each at least
        info_layout = data.StructLayout({
            "off": range(bus), "beats": range(mbr + 1), "nbytes": range(rb + 1), "meta": self.meta_width})
        m.submodules.info = info = SyncFIFOBuffered(width=info_layout.size, depth=rows_max)
        m.submodules.outq = outq = SyncFIFOBuffered(width=8 * rb + self.meta_width, depth=rows_max)

        # Rows issued but not yet handed out; bounded so the output queue never overflows.
        inflight = Signal(range(rows_max + 1))
        take = Signal()
        give = outq.r_rdy & self.out_ready
        m.d.sync += inflight.eq(inflight + take - give)

        # ---- issue: split the current row into DRAM requests --------------------------
        active = Signal()
        cur = Signal(ADDR_BITS)
        end = Signal(ADDR_BITS + 1)
        src = Mux(active, cur, self.in_addr)
        src_end = Mux(active, end, self.in_addr + self.in_nbytes)
        boundary = (src | (R - 1)) + 1
        req_end = Mux(boundary < src_end, boundary, src_end)
        first_word = src >> lb
        beats = ((req_end - 1) >> lb) - first_word + 1
        can_take = ~active & self.in_valid & (inflight < rows_max) & info.w_rdy
        issuing = active | can_take
        m.d.comb += [
            self.rreq_valid.eq(issuing),
            self.rreq_word.eq(first_word),
            self.rreq_beats.eq(beats),
            take.eq(can_take & self.rreq_ready),
            self.in_ready.eq(take),
        ]
        row_first = self.in_addr >> lb
        row_last = (self.in_addr + self.in_nbytes - 1) >> lb
        m.d.comb += info.w_en.eq(take)
        winfo = Signal(info_layout)
        m.d.comb += [
            winfo.off.eq(self.in_addr[:lb]),
            winfo.beats.eq(row_last - row_first + 1),
            winfo.nbytes.eq(self.in_nbytes),
            winfo.meta.eq(self.in_meta),
            info.w_data.eq(winfo.as_value()),
        ]
        with m.If(issuing & self.rreq_ready):
            m.d.sync += [cur.eq(req_end), active.eq(req_end != src_end)]
            with m.If(can_take):
                m.d.sync += end.eq(self.in_addr + self.in_nbytes)

        # ---- assemble returned beats into rows ---------------------------------------
        rinfo = data.View(info_layout, info.r_data)
        buf = Signal(8 * bus * mbr)
        k = Signal(range(mbr + 1))
        shifted_in = Cat(buf[8 * bus:], self.rbeat_data)      # beat enters at the top
        row_done = self.rbeat_valid & ((k + 1) == rinfo.beats)
        shift = (((mbr - rinfo.beats) * bus).as_unsigned() + rinfo.off) * 8
        aligned = Signal(8 * rb)
        m.d.comb += aligned.eq(shifted_in >> shift)
        masked = Cat(*[Mux(i < rinfo.nbytes, aligned[8 * i: 8 * i + 8], 0) for i in range(rb)])
        with m.If(self.rbeat_valid):
            m.d.sync += [buf.eq(shifted_in), k.eq(k + 1)]
            with m.If(row_done):
                m.d.sync += k.eq(0)
        m.d.comb += [
            info.r_en.eq(row_done),
            outq.w_en.eq(row_done),
            outq.w_data.eq(Cat(masked, rinfo.meta)),
            self.out_valid.eq(outq.r_rdy),
            self.out_data.eq(outq.r_data[:8 * rb]),
            self.out_meta.eq(outq.r_data[8 * rb:]),
            outq.r_en.eq(self.out_ready),
            self.busy.eq(active | (inflight != 0)),
        ]
        return m


class DmaWriter(wiring.Component):
    def __init__(self, cfg: HardwareConfig):
        self.cfg = cfg
        bus, self.lb, self.row_bytes, self.max_beats_row = _geometry(cfg)
        self.bus = bus
        self.word_bits = ceil_log2(cfg.dram_words)
        super().__init__({
            "in_valid": In(1), "in_addr": In(ADDR_BITS), "in_nbytes": In(range(self.row_bytes + 1)),
            "in_data": In(8 * self.row_bytes), "in_ready": Out(1),
            "wbeat_valid": Out(1), "wbeat_word": Out(self.word_bits), "wbeat_data": Out(8 * bus),
            "wbeat_mask": Out(bus), "wbeat_last": Out(1), "wbeat_ready": In(1),
            "wack": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, bus, lb = self.cfg, self.bus, self.lb
        rb, mbr = self.row_bytes, self.max_beats_row
        words_per_req = cfg.dma_max_req_bytes // bus
        F = cfg.dma_max_inflight

        layout = data.StructLayout({"addr": ADDR_BITS, "nbytes": range(rb + 1), "data": 8 * rb})
        m.submodules.q = q = SyncFIFOBuffered(width=layout.size, depth=4)
        win = Signal(layout)
        m.d.comb += [win.addr.eq(self.in_addr), win.nbytes.eq(self.in_nbytes), win.data.eq(self.in_data),
                     q.w_data.eq(win.as_value()), q.w_en.eq(self.in_valid), self.in_ready.eq(q.w_rdy)]
        row = data.View(layout, q.r_data)

        off = row.addr[:lb] if lb else Const(0, 1)
        first = row.addr >> lb
        nbeats = ((row.addr + row.nbytes - 1) >> lb) - first + 1
        k = Signal(range(mbr + 1))
        word = (first + k)[:self.word_bits]
        shifted = Signal(8 * bus * mbr)
        m.d.comb += shifted.eq(row.data << (off * 8))
        beat_data = shifted.word_select(k, 8 * bus)
        pos0 = k * bus
        mask = Cat(*[((pos0 + j) >= off) & ((pos0 + j) < off + row.nbytes) for j in range(bus)])
        if words_per_req > 1:
            starts_req = (k == 0) | (word[:ceil_log2(words_per_req)] == 0)
            ends_req = ((k + 1) == nbeats) | ((word + 1)[:ceil_log2(words_per_req)] == 0)
        else:
            starts_req = Const(1)
            ends_req = Const(1)

        outstanding = Signal(range(F + 2))
        may_send = q.r_rdy & (~starts_req | (outstanding < F))
        sent = may_send & self.wbeat_ready
        m.d.comb += [
            self.wbeat_valid.eq(may_send), self.wbeat_word.eq(word), self.wbeat_data.eq(beat_data),
            self.wbeat_mask.eq(mask), self.wbeat_last.eq(ends_req),
        ]
        m.d.sync += outstanding.eq(outstanding + (sent & starts_req) - self.wack)
        with m.If(sent):
            m.d.sync += k.eq(k + 1)
            with m.If((k + 1) == nbeats):
                m.d.sync += k.eq(0)
                m.d.comb += q.r_en.eq(1)
        m.d.comb += self.busy.eq((q.level != 0) | (outstanding != 0))
        return m
