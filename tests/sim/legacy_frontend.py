"""The frontend of hw/frontend.py as it was before its scoreboard was re-implemented
(issue 11: narrow encoded ranges, slot ranges in small memories, fewer comparisons),
kept verbatim as the reference that tests/sim/test_scoreboard.py checks the current
frontend against, cycle for cycle. Not used by the design."""

from amaranth import Array, Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.controllers import ExecCmd, ExecOp, LoadCmd, StoreCmd, SLOTS, TAG_BITS, LADDR_BITS
from hw.isa import FIELDS, INSN_BITS, ConfigTarget, Op

__all__ = ["LegacyFrontend"]

QUEUE_DEPTH = 8
RBITS = LADDR_BITS + 1      # range bounds (exclusive upper bound may be 2^24)

Range = data.StructLayout({"v": 1, "acc": 1, "lo": RBITS, "hi": RBITS})
SlotRanges = data.StructLayout({"r": Range, "w": Range})


def _field(word, name):
    lo, width = FIELDS[name]
    return word[lo: lo + width]


def _overlap(a, b):
    return a.v & b.v & (a.acc == b.acc) & (a.lo < b.hi) & (b.lo < a.hi)


class LegacyFrontend(wiring.Component):
    def __init__(self, imem_depth: int):
        if imem_depth < 2:
            raise ValueError(f"imem_depth must be at least 2, not {imem_depth!r}")
        self.imem_depth = imem_depth
        super().__init__({
            "start": In(1), "running": Out(1), "done": Out(1), "fault": Out(1),
            "insn_valid": In(1), "insn_data": In(INSN_BITS), "insn_ready": Out(1),
            "ld_valid": Out(1), "ld_cmd": Out(LoadCmd), "ld_ready": In(1),
            "ex_valid": Out(1), "ex_cmd": Out(ExecCmd), "ex_ready": In(1),
            "st_valid": Out(1), "st_cmd": Out(StoreCmd), "st_ready": In(1),
            "ld_done": In(SLOTS), "ex_done": In(SLOTS), "st_done": In(SLOTS),
            "ld_busy": In(1), "ex_busy": In(1), "st_busy": In(1),
            "dispatched": Out(1), "pc": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        # Instruction buffer, emptied by start.
        ibuf = ResetInserter(self.start)(SyncFIFOBuffered(width=INSN_BITS, depth=self.imem_depth))
        m.submodules.ibuf = ibuf
        m.d.comb += [ibuf.w_data.eq(self.insn_data), ibuf.w_en.eq(self.insn_valid),
                     self.insn_ready.eq(ibuf.w_rdy)]
        ir = ibuf.r_data
        ir_valid = ibuf.r_rdy
        pc = self.pc
        running = Signal()
        m.d.comb += self.running.eq(running)

        # ---- configuration registers (reset by start) ----------------------------------
        a_stride = Signal(LADDR_BITS, init=1)
        ld_stride = Array(Signal(32, name=f"ld_stride{i}") for i in range(3))
        st_stride = Signal(32)
        st_relu = Signal()
        st_full = Signal()
        st_shift = Signal(5)
        # C destination of the latest dispatched PRELOAD (for the COMPUTE's write range).
        c_addr = Signal(LADDR_BITS)
        c_rows = Signal(6)

        # ---- decode ---------------------------------------------------------------------
        f = {name: _field(ir, name) for name in FIELDS}
        op = f["opcode"]
        is_cfg = op == Op.CONFIG
        is_mvin = op == Op.MVIN
        is_mvout = op == Op.MVOUT
        is_pre = op == Op.PRELOAD
        is_cp = op == Op.COMPUTE_PRELOADED
        is_ca = op == Op.COMPUTE_ACCUMULATED
        is_fence = op == Op.FENCE
        is_halt = op == Op.HALT
        illegal = op > Op.HALT
        is_exec = is_pre | is_cp | is_ca
        is_comp = is_cp | is_ca

        # Ranges of the new instruction.
        xr = Signal(Range)
        xw = Signal(Range)
        rows = f["rows"]
        laddr = f["laddr"]
        comp_hi = laddr + (rows - 1) * a_stride + 1
        c_written = Mux(rows < c_rows, rows, c_rows)
        with m.If(is_mvin):
            m.d.comb += [xw.v.eq(1), xw.acc.eq(f["acc"]), xw.lo.eq(laddr), xw.hi.eq(laddr + rows)]
        with m.If(is_mvout):
            m.d.comb += [xr.v.eq(1), xr.acc.eq(f["acc"]), xr.lo.eq(laddr), xr.hi.eq(laddr + rows)]
        with m.If(is_pre & ~f["b_none"]):
            m.d.comb += [xr.v.eq(1), xr.acc.eq(0), xr.lo.eq(laddr), xr.hi.eq(laddr + rows)]
        with m.If(is_comp):
            m.d.comb += [xr.v.eq(1), xr.acc.eq(0), xr.lo.eq(laddr), xr.hi.eq(comp_hi),
                         xw.v.eq(1), xw.acc.eq(1), xw.lo.eq(c_addr), xw.hi.eq(c_addr + c_written)]

        # ---- scoreboards ------------------------------------------------------------------
        units = ("ld", "ex", "st")
        valid = {u: Signal(SLOTS, name=f"{u}_slots") for u in units}
        ranges = {u: Array(Signal(SlotRanges, name=f"{u}_slot{s}") for s in range(SLOTS)) for u in units}
        conflict = {}
        free_slot = {}
        has_free = {}
        for u in units:
            hits = []
            for s in range(SLOTS):
                y = ranges[u][s]
                hits.append(valid[u][s] & (_overlap(xw, y.r) | _overlap(xw, y.w) | _overlap(xr, y.w)))
            conflict[u] = Cat(*hits).any()
            fs = Signal(TAG_BITS, name=f"{u}_free")
            for s in reversed(range(SLOTS)):
                fs_next = Signal(TAG_BITS, name=f"{u}_free_{s}")
                m.d.comb += fs_next.eq(Mux(~valid[u][s], s, fs))
                fs = fs_next
            free_slot[u] = fs
            has_free[u] = ~valid[u].all()

        # ---- queues -----------------------------------------------------------------------
        qs = {}
        for u, layout in (("ld", LoadCmd), ("ex", ExecCmd), ("st", StoreCmd)):
            q = SyncFIFOBuffered(width=layout.size, depth=QUEUE_DEPTH)
            m.submodules[f"{u}_q"] = q
            qs[u] = q
            m.d.comb += [getattr(self, f"{u}_valid").eq(q.r_rdy),
                         getattr(self, f"{u}_cmd").eq(q.r_data),
                         q.r_en.eq(getattr(self, f"{u}_ready"))]

        all_idle = (~Cat(*[valid[u].any() for u in units]).any() &
                    ~Cat(*[qs[u].level != 0 for u in units]).any() &
                    ~self.ld_busy & ~self.ex_busy & ~self.st_busy)

        needs_ex_slot = is_comp | (is_pre & ~f["b_none"])
        go_ld = is_mvin & qs["ld"].w_rdy & has_free["ld"] & ~conflict["ex"] & ~conflict["st"]
        go_st = is_mvout & qs["st"].w_rdy & has_free["st"] & ~conflict["ld"] & ~conflict["ex"]
        go_ex = is_exec & qs["ex"].w_rdy & (~needs_ex_slot | has_free["ex"]) & ~conflict["ld"] & ~conflict["st"]
        go = Signal()
        m.d.comb += go.eq(running & ir_valid &
                          (is_cfg | go_ld | go_st | go_ex | ((is_fence | is_halt) & all_idle) | illegal))
        m.d.comb += self.dispatched.eq(go)

        # Commands.
        ld = Signal(LoadCmd)
        m.d.comb += [ld.dram.eq(f["dram"]), ld.stride.eq(ld_stride[f["slot"]]), ld.laddr.eq(laddr),
                     ld.rows.eq(rows), ld.cols.eq(f["cols"]), ld.acc.eq(f["acc"]), ld.tag.eq(free_slot["ld"])]
        st = Signal(StoreCmd)
        m.d.comb += [st.dram.eq(f["dram"]), st.stride.eq(st_stride), st.laddr.eq(laddr), st.rows.eq(rows),
                     st.cols.eq(f["cols"]), st.acc.eq(f["acc"]), st.relu.eq(st_relu), st.acc_full.eq(st_full),
                     st.shift.eq(st_shift), st.tag.eq(free_slot["st"])]
        ex = Signal(ExecCmd)
        m.d.comb += [
            ex.op.eq(Mux(is_pre, ExecOp.PRELOAD, Mux(is_cp, ExecOp.COMPUTE_PRELOADED, ExecOp.COMPUTE_ACCUMULATED))),
            ex.laddr.eq(laddr), ex.rows.eq(rows), ex.cols.eq(f["cols"]), ex.laddr2.eq(f["laddr2"]),
            ex.rows2.eq(f["rows2"]), ex.cols2.eq(f["cols2"]), ex.accumulate.eq(f["accumulate"]),
            ex.b_none.eq(f["b_none"]), ex.a_stride.eq(a_stride), ex.tag.eq(free_slot["ex"]),
        ]
        m.d.comb += [
            qs["ld"].w_data.eq(ld.as_value()), qs["ld"].w_en.eq(go & is_mvin),
            qs["st"].w_data.eq(st.as_value()), qs["st"].w_en.eq(go & is_mvout),
            qs["ex"].w_data.eq(ex.as_value()), qs["ex"].w_en.eq(go & is_exec),
        ]

        # Slot bookkeeping: allocate on dispatch, free on completion.
        entry = Signal(SlotRanges)
        m.d.comb += [entry.r.eq(xr), entry.w.eq(xw)]
        for u, takes in (("ld", is_mvin), ("st", is_mvout), ("ex", needs_ex_slot)):
            alloc = Signal(SLOTS, name=f"{u}_alloc")
            m.d.comb += alloc.eq(Mux(go & takes, 1 << free_slot[u], 0))
            m.d.sync += valid[u].eq((valid[u] | alloc) & ~getattr(self, f"{u}_done"))
            with m.If(go & takes):
                m.d.sync += ranges[u][free_slot[u]].eq(entry)

        # Configuration and PRELOAD bookkeeping.
        with m.If(go & is_cfg):
            with m.Switch(f["funct"]):
                with m.Case(ConfigTarget.EX):
                    m.d.sync += a_stride.eq(f["stride"])
                with m.Case(ConfigTarget.LD):
                    m.d.sync += ld_stride[f["slot"]].eq(f["stride"])
                with m.Case(ConfigTarget.ST):
                    m.d.sync += [st_stride.eq(f["stride"]), st_relu.eq(f["relu"]),
                                 st_full.eq(f["acc_full"]), st_shift.eq(f["shift"])]
        with m.If(go & is_pre):
            m.d.sync += [c_addr.eq(f["laddr2"]), c_rows.eq(f["rows2"])]

        # ---- dispatch bookkeeping ------------------------------------------------------------
        m.d.comb += ibuf.r_en.eq(go)
        with m.If(go):
            m.d.sync += pc.eq(pc + 1)
            with m.If(is_halt | illegal):
                m.d.sync += [running.eq(0), self.done.eq(1), self.fault.eq(illegal)]
        with m.If(self.start):
            m.d.sync += [pc.eq(0), running.eq(1), self.done.eq(0), self.fault.eq(0),
                         a_stride.eq(1), st_stride.eq(0), st_relu.eq(0), st_full.eq(0), st_shift.eq(0),
                         c_addr.eq(0), c_rows.eq(0)]
            m.d.sync += [s.eq(0) for s in ld_stride]
        return m
