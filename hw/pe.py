"""Processing element: one int8 x int8 multiply-accumulate with a double-buffered weight.

The PE is weight-stationary. It holds two weights (buffers 0 and 1); the `tag` bit that
travels with each activation selects which buffer the activation is multiplied with, so
the next block's weights can be written into one buffer while the current block still
flows through the other.

I/O ports
---------
a_in, tag_in     activation entering from the left and its weight-buffer tag
psum_in          partial sum entering from above
a_out, tag_out   the activation and tag, registered, to the right neighbour
psum_out         psum_in + a_in * w[tag_in], registered, to the neighbour below
w_we, w_buf,     write `w_data` into weight buffer `w_buf` (a row-wide write from the
w_data           preload path)
w_clear          set weight buffer `w_buf` to zero (takes precedence over w_we)
"""

from amaranth import Array, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PE", "PSUM_BITS"]

PSUM_BITS = 32


class PE(wiring.Component):
    a_in: In(signed(8))
    tag_in: In(1)
    psum_in: In(signed(PSUM_BITS))
    a_out: Out(signed(8))
    tag_out: Out(1)
    psum_out: Out(signed(PSUM_BITS))
    w_we: In(1)
    w_clear: In(1)
    w_buf: In(1)
    w_data: In(signed(8))

    def elaborate(self, platform):
        m = Module()
        w = Array(Signal(signed(8), name=f"w{i}") for i in range(2))
        m.d.sync += [
            self.a_out.eq(self.a_in),
            self.tag_out.eq(self.tag_in),
            self.psum_out.eq(self.psum_in + self.a_in * w[self.tag_in]),
        ]
        with m.If(self.w_clear):
            m.d.sync += w[self.w_buf].eq(0)
        with m.Elif(self.w_we):
            m.d.sync += w[self.w_buf].eq(self.w_data)
        return m
