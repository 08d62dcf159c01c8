"""DIM x DIM weight-stationary systolic mesh with input skew and output de-skew.

PE(k, n) (row k, column n) holds weight B[k][n]. An input row A[m][0..DIM-1] presented
at cycle t enters row k of the mesh after k skew registers, moves one PE to the right
per cycle, and meets at PE(k, n) the partial sum of output (m, n) coming down column n.
Column n's result leaves the bottom at t + DIM + n and is delayed DIM-1-n cycles by the
de-skew registers, so a whole output row C[m][0..DIM-1] = A[m] x B appears at once:

    latency (input row to output row)      LATENCY = 2*DIM - 1 cycles
    throughput                              one row per cycle, back to back

A `meta` word of any width travels alongside each row with the same latency, so
controllers can attach the destination of a row without their own delay line.

I/O ports
---------
in_valid, in_a, in_tag, in_meta    a row of DIM int8 activations, its weight-buffer tag
out_valid, out_c, out_meta          a row of DIM int32 results (element n at bits 32n..)
w_we, w_row, w_buf, w_data          write row `w_row` of weight buffer `w_buf`
w_clear                             zero weight buffer `w_buf` in every PE
"""

from amaranth import Cat, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .pe import PE, PSUM_BITS

__all__ = ["Mesh"]


class Mesh(wiring.Component):
    def __init__(self, dim: int, meta_width: int = 1):
        if dim not in (2, 4, 8, 16, 32):
            raise ValueError(f"Mesh dim must be one of 4, 8, 16, 32, not {dim!r}")
        if meta_width < 1:
            raise ValueError(f"Mesh meta_width must be a positive integer, not {meta_width!r}")
        self.dim = dim
        self.meta_width = meta_width
        super().__init__({
            "in_valid": In(1),
            "in_a": In(8 * dim),
            "in_tag": In(1),
            "in_meta": In(meta_width),
            "out_valid": Out(1),
            "out_c": Out(PSUM_BITS * dim),
            "out_meta": Out(meta_width),
            "w_we": In(1),
            "w_clear": In(1),
            "w_row": In(range(dim)),
            "w_buf": In(1),
            "w_data": In(8 * dim),
        })

    @property
    def latency(self) -> int:
        return 2 * self.dim - 1

    def elaborate(self, platform):
        m = Module()
        d = self.dim
        pes = [[PE() for _ in range(d)] for _ in range(d)]
        for k in range(d):
            for n in range(d):
                m.submodules[f"pe_{k}_{n}"] = pes[k][n]

        # Input skew: row k of the mesh sees the input k cycles later.
        for k in range(d):
            a = self.in_a[8 * k: 8 * k + 8].as_signed()
            tag = self.in_tag
            for i in range(k):
                a_r = Signal(signed(8), name=f"skew_a_{k}_{i}")
                tag_r = Signal(name=f"skew_t_{k}_{i}")
                m.d.sync += [a_r.eq(a), tag_r.eq(tag)]
                a, tag = a_r, tag_r
            m.d.comb += [pes[k][0].a_in.eq(a), pes[k][0].tag_in.eq(tag)]

        for k in range(d):
            for n in range(d):
                pe = pes[k][n]
                if n > 0:
                    m.d.comb += [pe.a_in.eq(pes[k][n - 1].a_out), pe.tag_in.eq(pes[k][n - 1].tag_out)]
                m.d.comb += pe.psum_in.eq(pes[k - 1][n].psum_out if k > 0 else 0)
                m.d.comb += [
                    pe.w_we.eq(self.w_we & (self.w_row == k)),
                    pe.w_clear.eq(self.w_clear),
                    pe.w_buf.eq(self.w_buf),
                    pe.w_data.eq(self.w_data[8 * n: 8 * n + 8].as_signed()),
                ]

        # Output de-skew: column n is delayed DIM-1-n cycles.
        outs = []
        for n in range(d):
            c = pes[d - 1][n].psum_out
            for i in range(d - 1 - n):
                c_r = Signal(signed(PSUM_BITS), name=f"deskew_{n}_{i}")
                m.d.sync += c_r.eq(c)
                c = c_r
            outs.append(c)
        m.d.comb += self.out_c.eq(Cat(*outs))

        # valid and meta travel in a plain delay line of the same latency.
        valid, meta = self.in_valid, self.in_meta
        for i in range(self.latency):
            v_r = Signal(name=f"valid_d{i}")
            meta_r = Signal(self.meta_width, name=f"meta_d{i}")
            m.d.sync += [v_r.eq(valid), meta_r.eq(meta)]
            valid, meta = v_r, meta_r
        m.d.comb += [self.out_valid.eq(valid), self.out_meta.eq(meta)]
        return m
