"""Instruction fetch, decode and in-order dispatch with a local-address scoreboard.

The frontend takes 128-bit instructions from its instruction buffer (a FIFO of
`imem_depth` instructions that the host refills; see `hw.host`), one per cycle,
applies CONFIG instructions to its configuration registers, and dispatches MVIN to the
load queue, PRELOAD / COMPUTE_* / COMPUTE_BLOCK to the execute queue and MVOUT to the
store queue. Each
dispatched instruction that touches local memory takes a scoreboard slot of its unit,
recording the local row ranges it reads and writes; the unit frees the slot when the
instruction has completed.

An instruction waits at dispatch while an unfinished instruction of *another* unit has
an overlapping range that it writes, or that the new instruction writes (RAW, WAR, WAW).
Units run their own queues in order, so instructions of one unit need no check. FENCE
and HALT wait until everything has completed and all DRAM writes are acknowledged.

I/O ports
    start                      pulse: pc := 0, configuration reset, run
    running, done, fault       status (fault: illegal opcode, which also stops the core)
    insn_valid, insn_data -> insn_ready   instructions from the host (into the buffer)
    ld_*, ex_*, st_*           command queues to the controllers
    ld_done, ex_done, st_done  completed scoreboard slots (bit masks)
    ld_busy, ex_busy, st_busy  unit activity
    dispatched                 an instruction was dispatched this cycle
    pc                         instructions dispatched since start
"""

from amaranth import Array, Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .controllers import ExecCmd, ExecOp, LoadCmd, StoreCmd, SLOTS, TAG_BITS, LADDR_BITS
from .isa import FIELDS, INSN_BITS, ConfigTarget, Op

__all__ = ["Frontend", "QUEUE_DEPTH"]

QUEUE_DEPTH = 8
RBITS = LADDR_BITS + 1      # range bounds (exclusive upper bound may be 2^24)

# Scoreboard ranges are kept as two EBITS-wide bounds, (lo, hi) = (acc:lo, acc:hi) with the
# memory (acc: accumulator, else scratchpad) above the RBITS-wide row bounds, and an
# absent range as (all ones, 0). Then two ranges overlap iff lo_a < hi_b and lo_b < hi_a:
# for two present ranges of the same memory that is the row test; ranges of different
# memories never pass it (the scratchpad one's hi < 2^RBITS <= the other's lo), nor does
# an absent one (lo = 2^EBITS - 1 is never below a hi, and a hi of 0 never above a lo).
# The same test as comparing valid bits, memories and rows separately, in two
# comparisons of narrow values.
EBITS = RBITS + 1
ABSENT_LO = (1 << EBITS) - 1


def _field(word, name):
    lo, width = FIELDS[name]
    return word[lo: lo + width]


def _enc(m, name, present, acc, lo, hi):
    """Encoded (lo, hi) of a range of rows lo .. hi-1 (RBITS-wide values) of one memory."""
    elo, ehi = Signal(EBITS, name=f"{name}_lo"), Signal(EBITS, name=f"{name}_hi")
    lo_r = Signal(RBITS, name=f"{name}_row_lo")
    m.d.comb += [lo_r.eq(lo),
                 elo.eq(Mux(present, Cat(lo_r, acc), ABSENT_LO)),
                 ehi.eq(Mux(present, Cat(hi, acc), 0))]
    return elo, ehi


def _overlap(a, b):
    return (a[0] < b[1]) & (b[0] < a[1])


class Frontend(wiring.Component):
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
        a_stride1 = Signal(LADDR_BITS)
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
        is_cb = op == Op.COMPUTE_BLOCK
        illegal = op > Op.COMPUTE_BLOCK
        is_exec = is_pre | is_cp | is_ca | is_cb
        is_comp = is_cp | is_ca | is_cb

        # Ranges of the new instruction, encoded for the scoreboard (see _enc): the range it
        # reads (MVOUT, PRELOAD with weights, COMPUTE_*) and the one it writes (MVIN, COMPUTE_*).
        # A COMPUTE_BLOCK reads rows laddr .. laddr + (run-1)*a_stride + (reps-1)*a_stride1
        # (every row between its lowest and highest A row, a conservative range) and
        # writes all its run*reps C rows.
        rows = f["rows"]
        laddr = f["laddr"]
        run, reps = f["run"], f["reps"]
        comp_hi = Mux(is_cb, laddr + (run - 1) * a_stride + (reps - 1) * a_stride1 + 1,
                      laddr + (rows - 1) * a_stride + 1)
        c_written = Mux(is_cb, run * reps, Mux(rows < c_rows, rows, c_rows))
        r_hi = Signal(RBITS)
        w_lo = Signal(RBITS)
        w_hi = Signal(RBITS)
        m.d.comb += [r_hi.eq(Mux(is_comp, comp_hi, laddr + rows)),
                     w_lo.eq(Mux(is_mvin, laddr, c_addr)),
                     w_hi.eq(Mux(is_mvin, laddr + rows, c_addr + c_written))]
        xr = _enc(m, "xr", is_mvout | (is_pre & ~f["b_none"]) | is_comp, is_mvout & f["acc"], laddr, r_hi)
        xw = _enc(m, "xw", is_mvin | is_comp, ~is_mvin | f["acc"], w_lo, w_hi)

        # ---- scoreboards ------------------------------------------------------------------
        # A slot keeps the encoded ranges of its instruction that another unit can hit: a
        # MVIN's write range, a MVOUT's read range, both ranges of an execute instruction
        # (a MVIN reads no local memory and a MVOUT writes none). Each bound of each unit
        # is a small memory with one row per slot, written when the slot is allocated and
        # read through one combinational port per slot: the same values as a register
        # per slot, without a next-state update of every slot at every edge. Slot ranges
        # are only looked at while the slot is valid, so they need no reset.
        units = ("ld", "ex", "st")
        valid = {u: Signal(SLOTS, name=f"{u}_slots") for u in units}
        kept = {"ld": ("w",), "ex": ("r", "w"), "st": ("r",)}
        slot_mems = {}
        slot_ranges = {u: [{} for _ in range(SLOTS)] for u in units}
        for u in units:
            for k in kept[u]:
                for b, bound in enumerate(("lo", "hi")):
                    mem = Memory(shape=EBITS, depth=SLOTS, init=[])
                    m.submodules[f"{u}_{k}_{bound}"] = mem
                    slot_mems[u, k, b] = mem.write_port()
                    for s in range(SLOTS):
                        rp = mem.read_port(domain="comb")
                        m.d.comb += rp.addr.eq(s)
                        slot_ranges[u][s].setdefault(k, [None, None])[b] = rp.data
        # The hazards each unit's slots are checked for. conflict["ex"] only stops a MVIN
        # (write range xw; hazards with an execute read or write: WAR, WAW) or a MVOUT (read
        # range xr, absent xw; hazard with an execute write: RAW), so its write ranges are
        # checked against one probe, xw for a MVIN and xr otherwise. conflict["ld"] stops a
        # MVOUT or an execute instruction (RAW through xr, WAW through xw) and
        # conflict["st"] a MVIN or an execute instruction (WAR through xw).
        probe = tuple(Signal(EBITS, name=f"probe_{b}") for b in ("lo", "hi"))
        m.d.comb += [probe[0].eq(Mux(is_mvin, xw[0], xr[0])), probe[1].eq(Mux(is_mvin, xw[1], xr[1]))]
        checks = {"ld": (("w", xw), ("w", xr)), "ex": (("r", xw), ("w", probe)), "st": (("r", xw),)}
        conflict = {}
        free_slot = {}
        has_free = {}
        for u in units:
            hits = []
            for s in range(SLOTS):
                y = slot_ranges[u][s]
                hits.append(valid[u][s] & Cat(*[_overlap(x, y[k]) for k, x in checks[u]]).any())
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
        swap = is_cp | (is_cb & f["preloaded"])
        m.d.comb += [
            ex.op.eq(Mux(is_pre, ExecOp.PRELOAD, Mux(swap, ExecOp.COMPUTE_PRELOADED, ExecOp.COMPUTE_ACCUMULATED))),
            ex.laddr.eq(laddr), ex.rows.eq(Mux(is_cb, run, rows)), ex.cols.eq(f["cols"]),
            ex.block.eq(is_cb), ex.reps.eq(Mux(is_cb, reps, 0)), ex.a_stride1.eq(Mux(is_cb, a_stride1, 0)),
            ex.laddr2.eq(f["laddr2"]),   # used by PRELOADs only
            ex.rows2.eq(f["rows2"]), ex.cols2.eq(f["cols2"]), ex.accumulate.eq(f["accumulate"]),
            ex.b_none.eq(f["b_none"]), ex.a_stride.eq(a_stride), ex.tag.eq(free_slot["ex"]),
        ]
        m.d.comb += [
            qs["ld"].w_data.eq(ld.as_value()), qs["ld"].w_en.eq(go & is_mvin),
            qs["st"].w_data.eq(st.as_value()), qs["st"].w_en.eq(go & is_mvout),
            qs["ex"].w_data.eq(ex.as_value()), qs["ex"].w_en.eq(go & is_exec),
        ]

        # Slot bookkeeping: allocate on dispatch, free on completion.
        entry = {"r": xr, "w": xw}
        for u, takes in (("ld", is_mvin), ("st", is_mvout), ("ex", needs_ex_slot)):
            alloc = Signal(SLOTS, name=f"{u}_alloc")
            m.d.comb += alloc.eq(Mux(go & takes, 1 << free_slot[u], 0))
            m.d.sync += valid[u].eq((valid[u] | alloc) & ~getattr(self, f"{u}_done"))
            for k in kept[u]:
                for b in range(2):
                    wp = slot_mems[u, k, b]
                    m.d.comb += [wp.addr.eq(free_slot[u]), wp.data.eq(entry[k][b]), wp.en.eq(go & takes)]

        # Configuration and PRELOAD bookkeeping.
        with m.If(go & is_cfg):
            with m.Switch(f["funct"]):
                with m.Case(ConfigTarget.EX):
                    m.d.sync += [a_stride.eq(f["stride"]), a_stride1.eq(f["stride1"])]
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
                         a_stride.eq(1), a_stride1.eq(0), st_stride.eq(0), st_relu.eq(0), st_full.eq(0), st_shift.eq(0),
                         c_addr.eq(0), c_rows.eq(0)]
            m.d.sync += [s.eq(0) for s in ld_stride]
        return m
