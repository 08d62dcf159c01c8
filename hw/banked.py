"""Banked single-read-port / single-write-port memory shared by several clients.

Used for the scratchpad (rows of DIM int8) and the accumulator (rows of DIM int32).
Rows are split into `banks` consecutive ranges of `depth // banks` rows. Each bank has
one synchronous read port and one write port; every cycle each bank serves at most one
read and one write. Clients are served by fixed priority (client 0 highest): a client
whose bank is taken by a higher-priority client is not granted and retries.

I/O ports (per read client i)
    rd_req[i], rd_addr[i]  ->  rd_gnt[i] (same cycle)   rd_data[i] (the cycle after a grant)
I/O ports (per write client i)
    wr_req[i], wr_addr[i], wr_data[i], wr_mask[i]  ->  wr_gnt[i] (written at the clock edge)
Statistics
    n_reads, n_writes      rows read / written this cycle (for performance counters)
Runtime bank size (``runtime_bank_rows=True``, simulation builds only)
    bank_rows_in           rows per bank in use, <= depth // banks (held constant during a
                           run): the bank boundaries of a smaller memory of
                           ``bank_rows * banks`` rows, so one build serves every capacity
                           cycle for cycle (see `hw.top.Top`'s ``capacity_ports``)

Reads are transparent to the same bank's write in the same cycle, so a read-modify-write
pipeline that reads a row in the cycle it is being written sees the new value.
"""

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["BankedMemory"]


class BankedMemory(wiring.Component):
    def __init__(self, *, width: int, depth: int, banks: int, n_read: int, n_write: int,
                 granularity: int | None = None, runtime_bank_rows: bool = False):
        if banks not in (1, 2, 4, 8):
            raise ValueError(f"banks must be one of 1, 2, 4, 8, not {banks!r}")
        if depth % banks:
            raise ValueError(f"depth {depth} is not a multiple of banks {banks}")
        if granularity is not None and width % granularity:
            raise ValueError(f"granularity {granularity} does not divide width {width}")
        self.width, self.depth, self.banks = width, depth, banks
        self.bank_rows = depth // banks
        self.granularity = granularity
        self.n_read, self.n_write = n_read, n_write
        self.runtime_bank_rows = runtime_bank_rows
        aw = ceil_log2(depth)
        self.addr_width = aw
        mw = 1 if granularity is None else width // granularity
        self.mask_width = mw
        sig = {
            "n_reads": Out(range(n_read + 1)),
            "n_writes": Out(range(n_write + 1)),
        }
        if runtime_bank_rows:
            sig["bank_rows_in"] = In(range(self.bank_rows + 1))
        for i in range(n_read):
            sig[f"rd_req_{i}"] = In(1)
            sig[f"rd_addr_{i}"] = In(aw)
            sig[f"rd_gnt_{i}"] = Out(1)
            sig[f"rd_data_{i}"] = Out(width)
        for i in range(n_write):
            sig[f"wr_req_{i}"] = In(1)
            sig[f"wr_addr_{i}"] = In(aw)
            sig[f"wr_data_{i}"] = In(width)
            sig[f"wr_mask_{i}"] = In(mw)
            sig[f"wr_gnt_{i}"] = Out(1)
        super().__init__(sig)

    def rd(self, i):
        return (getattr(self, f"rd_req_{i}"), getattr(self, f"rd_addr_{i}"),
                getattr(self, f"rd_gnt_{i}"), getattr(self, f"rd_data_{i}"))

    def wr(self, i):
        return (getattr(self, f"wr_req_{i}"), getattr(self, f"wr_addr_{i}"),
                getattr(self, f"wr_data_{i}"), getattr(self, f"wr_mask_{i}"),
                getattr(self, f"wr_gnt_{i}"))

    def _split(self, m, addr, name):
        """(bank index, row within bank) of a row address: banks are consecutive ranges of
        `bank_rows` rows (the constant, or the runtime input)."""
        nb = self.banks
        br = self.bank_rows_in if self.runtime_bank_rows else self.bank_rows
        bank = Signal(range(nb), name=f"{name}_bank")
        row = Signal(range(self.bank_rows), name=f"{name}_row")
        if nb == 1:
            m.d.comb += [bank.eq(0), row.eq(addr)]
        else:
            sel = sum((addr >= i * br).as_unsigned() for i in range(1, nb))
            m.d.comb += bank.eq(sel)
            offs = Mux(bank == 0, 0, 0)
            for i in range(1, nb):
                offs = Mux(bank == i, i * br, offs)
            m.d.comb += row.eq(addr - offs)
        return bank, row

    def elaborate(self, platform):
        m = Module()
        nb = self.banks
        rd = [self.rd(i) for i in range(self.n_read)]
        wr = [self.wr(i) for i in range(self.n_write)]
        rsplit = [self._split(m, a, f"rd{i}") for i, (_, a, _, _) in enumerate(rd)]
        wsplit = [self._split(m, a, f"wr{i}") for i, (_, a, _, _, _) in enumerate(wr)]

        bank_rdata = []
        for b in range(nb):
            mem = memory.Memory(shape=self.width, depth=self.bank_rows, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port(granularity=self.granularity)
            rp = mem.read_port(transparent_for=(wp,))
            bank_rdata.append(rp.data)
            # Write arbitration (fixed priority).
            taken = Const(0)
            for i, (req, _, data, mask, gnt) in enumerate(wr):
                bank_i, row_i = wsplit[i]
                want = req & (bank_i == b)
                with m.If(want & ~taken):
                    m.d.comb += [gnt.eq(1), wp.addr.eq(row_i), wp.data.eq(data),
                                 wp.en.eq(mask if self.granularity else 1)]
                taken = taken | want
            # Read arbitration (fixed priority).
            taken = Const(0)
            for i, (req, _, gnt, _) in enumerate(rd):
                bank_i, row_i = rsplit[i]
                want = req & (bank_i == b)
                with m.If(want & ~taken):
                    m.d.comb += [gnt.eq(1), rp.addr.eq(row_i)]
                taken = taken | want
            m.d.comb += rp.en.eq(1)

        # Return data: each client remembers the bank it was granted.
        for i, (req, _, gnt, data) in enumerate(rd):
            bank_q = Signal(range(nb), name=f"rd{i}_bank_q")
            m.d.sync += bank_q.eq(rsplit[i][0])
            sel = bank_rdata[0]
            for b in range(1, nb):
                sel = Mux(bank_q == b, bank_rdata[b], sel)
            m.d.comb += data.eq(sel)

        m.d.comb += [
            self.n_reads.eq(sum(r[2].as_unsigned() for r in rd)),
            self.n_writes.eq(sum(w[4].as_unsigned() for w in wr)),
        ]
        return m
