"""Load, execute and store controllers.

Each controller takes decoded commands from its queue (filled in program order by the
frontend, `hw.frontend`), runs them, and reports completed commands as a bit mask of
their scoreboard slots (`done_mask`), which is what lets the frontend track local
address-range hazards between units.

LoadController   MVIN: one DRAM row read per local row through `DmaReader`; the rows
                 are written to the scratchpad (int8) or the accumulator (int32).
                 Complete when the last row is written.
StoreController  MVOUT: reads local rows, formats them (int8 rows; accumulator rows as
                 raw int32 or ReLU / rounding shift / int8 saturation) and hands them to
                 `DmaWriter`. Complete (for local hazards) once the last row is read;
                 `busy` stays high until every DRAM write is acknowledged.
ExecuteController PRELOAD / COMPUTE_* / COMPUTE_BLOCK: a weight loader fills the shadow
                 weight buffer of the mesh while an A streamer feeds A rows through the
                 active one (a COMPUTE_BLOCK's reps runs back to back: two nested row
                 counters); results are read-modify-written into the accumulator. See
                 `hw/isa.py`.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .config import EXEC_SLOTS, HardwareConfig
from .dma import DmaReader, DmaWriter, ADDR_BITS
from .mesh import Mesh

__all__ = ["LoadCmd", "StoreCmd", "ExecCmd", "ExecOp", "LoadController", "StoreController",
           "ExecuteController", "SLOTS", "TAG_BITS", "LADDR_BITS"]

SLOTS = EXEC_SLOTS
TAG_BITS = 4
LADDR_BITS = 24
DIMF = 6   # rows / cols field width (1..32)
CNTF = 16  # COMPUTE_BLOCK run / reps width (hw.isa.BLOCK_COUNT_MAX)

LoadCmd = data.StructLayout({
    "dram": ADDR_BITS, "stride": ADDR_BITS, "laddr": LADDR_BITS,
    "rows": DIMF, "cols": DIMF, "acc": 1, "tag": TAG_BITS})

StoreCmd = data.StructLayout({
    "dram": ADDR_BITS, "stride": ADDR_BITS, "laddr": LADDR_BITS,
    "rows": DIMF, "cols": DIMF, "acc": 1, "relu": 1, "acc_full": 1, "shift": 5, "tag": TAG_BITS})


class ExecOp:
    PRELOAD = 0
    COMPUTE_PRELOADED = 1
    COMPUTE_ACCUMULATED = 2


# A COMPUTE_* is rows = its rows, reps = 0, block = 0; a COMPUTE_BLOCK rows = its run,
# reps = its reps, block = 1 and a_stride1 from CONFIG EX.
ExecCmd = data.StructLayout({
    "op": 2, "laddr": LADDR_BITS, "rows": CNTF, "cols": DIMF,
    "laddr2": LADDR_BITS, "rows2": DIMF, "cols2": DIMF, "accumulate": 1, "b_none": 1,
    "a_stride": LADDR_BITS, "tag": TAG_BITS,
    "block": 1, "reps": CNTF, "a_stride1": LADDR_BITS})


def _read_client(prefix, aw, width):
    return {f"{prefix}_req": Out(1), f"{prefix}_addr": Out(aw), f"{prefix}_gnt": In(1),
            f"{prefix}_data": In(width)}


def _write_client(prefix, aw, width, mask_width):
    return {f"{prefix}_req": Out(1), f"{prefix}_addr": Out(aw), f"{prefix}_data": Out(width),
            f"{prefix}_mask": Out(mask_width), f"{prefix}_gnt": In(1)}


def _dram_read_ports(reader: DmaReader):
    return {"rreq_valid": Out(1), "rreq_word": Out(reader.word_bits),
            "rreq_beats": Out(range(reader.max_req_beats + 1)), "rreq_ready": In(1),
            "rbeat_valid": In(1), "rbeat_data": In(8 * reader.bus), "rbeat_last": In(1)}


def _dram_write_ports(writer: DmaWriter):
    return {"wbeat_valid": Out(1), "wbeat_word": Out(writer.word_bits),
            "wbeat_data": Out(8 * writer.bus), "wbeat_mask": Out(writer.bus),
            "wbeat_last": Out(1), "wbeat_ready": In(1), "wack": In(1)}


class LoadController(wiring.Component):
    """MVIN engine. I/O: cmd stream, scratchpad and accumulator write clients, DRAM
    read ports, done_mask, busy, dram_bytes (bytes requested this cycle)."""

    def __init__(self, cfg: HardwareConfig, sp_aw: int, acc_aw: int):
        self.cfg = cfg
        self.meta = data.StructLayout({"laddr": LADDR_BITS, "acc": 1, "last": 1, "tag": TAG_BITS})
        self.reader = DmaReader(cfg, self.meta.size)
        d = cfg.dim
        sig = {"cmd_valid": In(1), "cmd": In(LoadCmd), "cmd_ready": Out(1),
               "done_mask": Out(SLOTS), "busy": Out(1), "dram_bytes": Out(8)}
        sig |= _write_client("sp_wr", sp_aw, 8 * d, 1)
        sig |= _write_client("acc_wr", acc_aw, 32 * d, d)
        sig |= _dram_read_ports(self.reader)
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        d = self.cfg.dim
        m.submodules.reader = rd = self.reader
        for name in ("rreq_valid", "rreq_word", "rreq_beats"):
            m.d.comb += getattr(self, name).eq(getattr(rd, name))
        for name in ("rreq_ready", "rbeat_valid", "rbeat_data", "rbeat_last"):
            m.d.comb += getattr(rd, name).eq(getattr(self, name))

        # Row generator: one row request per cycle.
        active = Signal()
        cmd = Signal(LoadCmd)
        r = Signal(DIMF)
        addr = Signal(ADDR_BITS)
        m.d.comb += self.cmd_ready.eq(~active)
        with m.If(~active & self.cmd_valid):
            m.d.sync += [active.eq(1), cmd.eq(self.cmd), r.eq(0), addr.eq(self.cmd.dram)]
        meta = Signal(self.meta)
        last = (r + 1) == cmd.rows
        nbytes = Mux(cmd.acc, cmd.cols << 2, cmd.cols)
        m.d.comb += [
            meta.laddr.eq(cmd.laddr + r), meta.acc.eq(cmd.acc), meta.last.eq(last), meta.tag.eq(cmd.tag),
            rd.in_valid.eq(active), rd.in_addr.eq(addr), rd.in_nbytes.eq(nbytes), rd.in_meta.eq(meta),
        ]
        with m.If(active & rd.in_ready):
            m.d.sync += [r.eq(r + 1), addr.eq(addr + cmd.stride)]
            with m.If(last):
                m.d.sync += active.eq(0)
        m.d.comb += self.dram_bytes.eq(Mux(active & rd.in_ready, nbytes, 0))

        # Row writer: returned rows into the scratchpad or accumulator.
        ometa = data.View(self.meta, rd.out_meta)
        m.d.comb += [
            self.sp_wr_req.eq(rd.out_valid & ~ometa.acc), self.sp_wr_addr.eq(ometa.laddr),
            self.sp_wr_data.eq(rd.out_data[:8 * d]), self.sp_wr_mask.eq(1),
            self.acc_wr_req.eq(rd.out_valid & ometa.acc), self.acc_wr_addr.eq(ometa.laddr),
            self.acc_wr_data.eq(rd.out_data), self.acc_wr_mask.eq(Const(-1, d)),
        ]
        written = rd.out_valid & Mux(ometa.acc, self.acc_wr_gnt, self.sp_wr_gnt)
        m.d.comb += rd.out_ready.eq(written)
        with m.If(written & ometa.last):
            m.d.comb += self.done_mask.eq(1 << ometa.tag)
        m.d.comb += self.busy.eq(active | rd.busy)
        return m


def store_format(m: Module, row, dim: int, relu, shift, name="fmt"):
    """Accumulator row (dim int32) -> dim int8 after ReLU, rounding shift, saturation."""
    outs = []
    for i in range(dim):
        x = row[32 * i: 32 * i + 32].as_signed()
        xr = Signal(signed(34), name=f"{name}_relu{i}")
        m.d.comb += xr.eq(Mux(relu & (x < 0), 0, x))
        rnd = Mux(shift == 0, 0, Const(1, 33) << (shift - 1).as_unsigned())
        y = Signal(signed(34), name=f"{name}_shift{i}")
        m.d.comb += y.eq((xr + rnd) >> shift)
        sat = Mux(y > 127, 127, Mux(y < -128, -128, y))
        outs.append(sat[:8])
    return Cat(*outs)


class StoreController(wiring.Component):
    """MVOUT engine. I/O: cmd stream, scratchpad and accumulator read clients, DRAM
    write ports, done_mask, busy, dram_bytes (bytes accepted for writing this cycle)."""

    def __init__(self, cfg: HardwareConfig, sp_aw: int, acc_aw: int):
        self.cfg = cfg
        self.writer = DmaWriter(cfg)
        d = cfg.dim
        sig = {"cmd_valid": In(1), "cmd": In(StoreCmd), "cmd_ready": Out(1),
               "done_mask": Out(SLOTS), "busy": Out(1), "dram_bytes": Out(8)}
        sig |= _read_client("sp_rd", sp_aw, 8 * d)
        sig |= _read_client("acc_rd", acc_aw, 32 * d)
        sig |= _dram_write_ports(self.writer)
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        d = self.cfg.dim
        rb = 4 * d
        m.submodules.writer = wr = self.writer
        for name in ("wbeat_valid", "wbeat_word", "wbeat_data", "wbeat_mask", "wbeat_last"):
            m.d.comb += getattr(self, name).eq(getattr(wr, name))
        for name in ("wbeat_ready", "wack"):
            m.d.comb += getattr(wr, name).eq(getattr(self, name))

        depth = 4
        row_layout = data.StructLayout({"addr": ADDR_BITS, "nbytes": range(rb + 1), "data": 8 * rb})
        m.submodules.q = q = SyncFIFOBuffered(width=row_layout.size, depth=depth)

        active = Signal()
        cmd = Signal(StoreCmd)
        r = Signal(DIMF)
        addr = Signal(ADDR_BITS)
        m.d.comb += self.cmd_ready.eq(~active)
        with m.If(~active & self.cmd_valid):
            m.d.sync += [active.eq(1), cmd.eq(self.cmd), r.eq(0), addr.eq(self.cmd.dram)]

        # Read stage: one local row per cycle while the row queue has room.
        pending = Signal()          # a read was granted last cycle
        room = (q.level + pending) < depth
        last = (r + 1) == cmd.rows
        m.d.comb += [
            self.sp_rd_req.eq(active & room & ~cmd.acc), self.sp_rd_addr.eq(cmd.laddr + r),
            self.acc_rd_req.eq(active & room & cmd.acc), self.acc_rd_addr.eq(cmd.laddr + r),
        ]
        granted = Mux(cmd.acc, self.acc_rd_gnt, self.sp_rd_gnt) & active & room
        p_addr = Signal(ADDR_BITS)
        p_last = Signal()
        p_tag = Signal(TAG_BITS)
        p_cmd = Signal(StoreCmd)
        m.d.sync += pending.eq(granted)
        with m.If(granted):
            m.d.sync += [r.eq(r + 1), addr.eq(addr + cmd.stride), p_addr.eq(addr), p_last.eq(last),
                         p_tag.eq(cmd.tag), p_cmd.eq(cmd)]
            with m.If(last):
                m.d.sync += active.eq(0)

        # Format stage: the row read last cycle becomes DRAM bytes.
        int8_row = store_format(m, self.acc_rd_data, d, p_cmd.relu, p_cmd.shift)
        row_bytes = Mux(p_cmd.acc, Mux(p_cmd.acc_full, self.acc_rd_data, int8_row), self.sp_rd_data)
        nbytes = Mux(p_cmd.acc & p_cmd.acc_full, p_cmd.cols << 2, p_cmd.cols)
        wrow = Signal(row_layout)
        m.d.comb += [wrow.addr.eq(p_addr), wrow.nbytes.eq(nbytes), wrow.data.eq(row_bytes),
                     q.w_data.eq(wrow.as_value()), q.w_en.eq(pending)]
        with m.If(pending & p_last):
            m.d.comb += self.done_mask.eq(1 << p_tag)

        qrow = data.View(row_layout, q.r_data)
        m.d.comb += [wr.in_valid.eq(q.r_rdy), wr.in_addr.eq(qrow.addr), wr.in_nbytes.eq(qrow.nbytes),
                     wr.in_data.eq(qrow.data), q.r_en.eq(wr.in_ready)]
        m.d.comb += self.dram_bytes.eq(Mux(q.r_rdy & wr.in_ready, qrow.nbytes, 0))
        m.d.comb += self.busy.eq(active | pending | (q.level != 0) | wr.busy)
        return m


class ExecuteController(wiring.Component):
    """PRELOAD / COMPUTE engine around the mesh. I/O: cmd stream; scratchpad read
    clients `a` (A rows) and `b` (weights); accumulator read and write clients;
    done_mask, busy, macs (MACs issued this cycle)."""

    def __init__(self, cfg: HardwareConfig, sp_aw: int, acc_aw: int):
        self.cfg = cfg
        d = cfg.dim
        self.meta = data.StructLayout({
            "c_addr": LADDR_BITS, "wen": 1, "c_cols": DIMF, "acc": 1, "last": 1, "tag": TAG_BITS})
        self.mesh = Mesh(d, meta_width=self.meta.size)
        sig = {"cmd_valid": In(1), "cmd": In(ExecCmd), "cmd_ready": Out(1),
               "done_mask": Out(SLOTS), "busy": Out(1), "macs": Out(range(d * d + 1))}
        sig |= _read_client("a_rd", sp_aw, 8 * d)
        sig |= _read_client("b_rd", sp_aw, 8 * d)
        sig |= _read_client("acc_rd", acc_aw, 32 * d)
        sig |= _write_client("acc_wr", acc_aw, 32 * d, d)
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        d = self.cfg.dim
        m.submodules.mesh = mesh = self.mesh
        cmd = self.cmd
        drain = 2 * d + 2           # cycles for a row to leave the mesh and be written back
        w_hold = d                  # cycles a buffer stays in use after a row entered with it

        cur = Signal()                              # active weight buffer
        w_cnt = Array(Signal(range(w_hold + 1), name=f"w_cnt{i}") for i in range(2))
        pipe_cnt = Signal(range(drain + 1))

        # ---- A streamer ---------------------------------------------------------------
        a_active = Signal()
        a_addr = Signal(LADDR_BITS)
        a_stride = Signal(LADDR_BITS)
        a_rows = Signal(CNTF)       # rows per run
        a_reps = Signal(CNTF)       # runs (a COMPUTE_* has one)
        a_stride1 = Signal(LADDR_BITS)
        a_run0 = Signal(LADDR_BITS)  # first A row of the current run
        a_i = Signal(CNTF)          # row within the run
        a_j = Signal(CNTF)          # run
        a_block = Signal()
        a_cols = Signal(DIMF)
        a_m = Signal(LADDR_BITS)    # C row offset
        a_buf = Signal()
        a_tag = Signal(TAG_BITS)
        a_macs = Signal(range(d * d + 1))
        c_addr = Signal(LADDR_BITS)
        c_rows = Signal(DIMF)
        c_cols = Signal(DIMF)
        c_acc = Signal()
        # C destination set by the latest PRELOAD, for the next COMPUTE.
        p_addr = Signal(LADDR_BITS)
        p_rows = Signal(DIMF)
        p_cols = Signal(DIMF)
        p_acc = Signal()

        # ---- weight loader ------------------------------------------------------------
        # Rows 0..DIM-1 of the shadow buffer are written in order, one per cycle (rows
        # >= b_rows with zeros), "just in time" behind the last wave of rows that used
        # the buffer: a row entering the mesh at cycle t last uses PE row r at cycle
        # t + r + DIM - 1, and the loader writes row r at S + r + 1, so starting at
        # S >= t + DIM - 2 is safe (w_cnt enforces S >= t + DIM). Weight reads have the
        # highest scratchpad priority, so the loader never stalls once it runs, and the
        # COMPUTE that uses the new weights may start in the loader's first cycle: its
        # first row reaches PE row r at s + r >= S + 2 + r, after row r was written.
        b_state = Signal(2)     # 0 idle, 1 wait for the buffer, 2 writing rows
        b_addr = Signal(LADDR_BITS)
        b_rows = Signal(DIMF)
        b_cols = Signal(DIMF)
        b_i = Signal(range(d + 1))
        b_buf = Signal()
        b_tag = Signal(TAG_BITS)
        bw_valid = Signal()
        bw_read = Signal()
        bw_row = Signal(range(d))
        bw_last = Signal()
        loader_idle = (b_state == 0) & ~bw_valid
        weights_ready = (b_state != 1)
        # ---- command dispatch ------------------------------------------------------------
        is_pre = cmd.op == ExecOp.PRELOAD
        is_cp = cmd.op == ExecOp.COMPUTE_PRELOADED
        is_ca = cmd.op == ExecOp.COMPUTE_ACCUMULATED
        a_last = Signal()
        # The streamer takes the next COMPUTE in the cycle its last row is granted, so
        # back-to-back computes stream with no bubble.
        a_free = ~a_active | (a_last & self.a_rd_gnt)
        can_pop = Mux(is_pre, cmd.b_none | loader_idle,
                      Mux(is_cp, a_free & weights_ready, a_free))
        pop = self.cmd_valid & can_pop
        m.d.comb += self.cmd_ready.eq(pop)
        done_pre = Signal(SLOTS)
        done_c = Signal(SLOTS)
        m.d.comb += self.done_mask.eq(done_pre | done_c)

        with m.If(pop & is_pre):
            m.d.sync += [p_addr.eq(cmd.laddr2), p_rows.eq(cmd.rows2), p_cols.eq(cmd.cols2),
                         p_acc.eq(cmd.accumulate)]
            with m.If(~cmd.b_none):
                m.d.sync += [b_state.eq(1), b_addr.eq(cmd.laddr), b_rows.eq(cmd.rows),
                             b_cols.eq(cmd.cols), b_i.eq(0), b_buf.eq(~cur), b_tag.eq(cmd.tag)]
        # ---- weight loader: write the shadow buffer row by row ------------------------
        s1_valid = Signal()
        s1_buf = Signal()
        buf_free = (w_cnt[b_buf] == 0) & ~(s1_valid & (s1_buf == b_buf)) & ~(a_active & (a_buf == b_buf))
        with m.If((b_state == 1) & buf_free):
            m.d.sync += b_state.eq(2)
        b_reads = b_i < b_rows
        m.d.comb += [self.b_rd_req.eq((b_state == 2) & b_reads), self.b_rd_addr.eq(b_addr)]
        m.d.sync += bw_valid.eq(0)
        with m.If(b_state == 2):
            m.d.sync += [b_addr.eq(b_addr + 1), b_i.eq(b_i + 1), bw_valid.eq(1), bw_row.eq(b_i),
                         bw_read.eq(b_reads), bw_last.eq(b_i == d - 1)]
            with m.If(b_i == d - 1):
                m.d.sync += b_state.eq(0)
        b_mask = Cat(*[Mux(bw_read & (j < b_cols), self.b_rd_data[8 * j: 8 * j + 8], 0) for j in range(d)])
        with m.If(bw_valid):
            m.d.comb += [mesh.w_we.eq(1), mesh.w_row.eq(bw_row), mesh.w_buf.eq(b_buf),
                         mesh.w_data.eq(b_mask)]
            with m.If(bw_last):
                m.d.comb += done_pre.eq(1 << b_tag)

        # ---- A streamer: one scratchpad row per cycle into the mesh ----------------------
        run_end = Signal()
        m.d.comb += [run_end.eq((a_i + 1) == a_rows),
                     a_last.eq(run_end & ((a_j + 1) == a_reps))]
        m.d.comb += [self.a_rd_req.eq(a_active), self.a_rd_addr.eq(a_addr)]
        s1_meta = Signal(self.meta)
        s1_cols = Signal(DIMF)
        s1_macs = Signal(range(d * d + 1))
        m.d.sync += s1_valid.eq(a_active & self.a_rd_gnt)
        with m.If(a_active & self.a_rd_gnt):
            m.d.sync += [
                a_m.eq(a_m + 1),
                s1_buf.eq(a_buf), s1_cols.eq(a_cols), s1_macs.eq(a_macs),
                s1_meta.c_addr.eq(c_addr + a_m), s1_meta.wen.eq(a_block | (a_m < c_rows)),
                s1_meta.c_cols.eq(c_cols), s1_meta.acc.eq(c_acc), s1_meta.last.eq(a_last),
                s1_meta.tag.eq(a_tag),
            ]
            with m.If(run_end):
                m.d.sync += [a_i.eq(0), a_j.eq(a_j + 1), a_addr.eq(a_run0 + a_stride1),
                             a_run0.eq(a_run0 + a_stride1)]
            with m.Else():
                m.d.sync += [a_i.eq(a_i + 1), a_addr.eq(a_addr + a_stride)]
            with m.If(a_last):
                m.d.sync += a_active.eq(0)
        with m.If(pop & (is_cp | is_ca)):
            new_buf = Mux(is_cp, ~cur, cur)
            m.d.sync += [
                cur.eq(new_buf), a_active.eq(1), a_addr.eq(cmd.laddr), a_stride.eq(cmd.a_stride),
                a_rows.eq(cmd.rows), a_cols.eq(cmd.cols), a_m.eq(0), a_buf.eq(new_buf), a_tag.eq(cmd.tag),
                a_reps.eq(Mux(cmd.block, cmd.reps, 1)), a_stride1.eq(cmd.a_stride1), a_run0.eq(cmd.laddr),
                a_i.eq(0), a_j.eq(0), a_block.eq(cmd.block),
                a_macs.eq(cmd.cols * p_cols),
                c_addr.eq(p_addr), c_rows.eq(p_rows), c_cols.eq(p_cols), c_acc.eq(p_acc),
            ]

        a_row = Cat(*[Mux(j < s1_cols, self.a_rd_data[8 * j: 8 * j + 8], 0) for j in range(d)])
        m.d.comb += [mesh.in_valid.eq(s1_valid), mesh.in_a.eq(a_row), mesh.in_tag.eq(s1_buf),
                     mesh.in_meta.eq(s1_meta), self.macs.eq(Mux(s1_valid, s1_macs, 0))]
        with m.If(s1_valid):
            m.d.sync += pipe_cnt.eq(drain)
        with m.Elif(pipe_cnt != 0):
            m.d.sync += pipe_cnt.eq(pipe_cnt - 1)
        for b in range(2):
            with m.If(s1_valid & (s1_buf == b)):
                m.d.sync += w_cnt[b].eq(w_hold)
            with m.Elif(w_cnt[b] != 0):
                m.d.sync += w_cnt[b].eq(w_cnt[b] - 1)

        # ---- write-back: read-modify-write into the accumulator --------------------------
        out_meta = data.View(self.meta, mesh.out_meta)
        m.d.comb += [self.acc_rd_req.eq(mesh.out_valid & out_meta.wen & out_meta.acc),
                     self.acc_rd_addr.eq(out_meta.c_addr)]
        wb_valid = Signal()
        wb_meta = Signal(self.meta)
        wb_c = Signal(32 * d)
        m.d.sync += [wb_valid.eq(mesh.out_valid), wb_meta.eq(out_meta), wb_c.eq(mesh.out_c)]
        summed = Cat(*[(wb_c[32 * j: 32 * j + 32] + self.acc_rd_data[32 * j: 32 * j + 32])[:32]
                       for j in range(d)])
        m.d.comb += [
            self.acc_wr_req.eq(wb_valid & wb_meta.wen), self.acc_wr_addr.eq(wb_meta.c_addr),
            self.acc_wr_data.eq(Mux(wb_meta.acc, summed, wb_c)),
            self.acc_wr_mask.eq(Cat(*[j < wb_meta.c_cols for j in range(d)])),
        ]
        with m.If(wb_valid & wb_meta.last):
            m.d.comb += done_c.eq(1 << wb_meta.tag)

        m.d.comb += self.busy.eq(self.cmd_valid | a_active | s1_valid | ~loader_idle |
                                 (pipe_cnt != 0) | wb_valid)
        return m
