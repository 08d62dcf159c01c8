"""cocotb testbenches for the PE and the Mesh on their own (top = the unit).

Convention: inputs are driven and outputs sampled at the falling edge, so "cycle k"
is the interval between rising edges k and k+1. A row driven in cycle t appears on the
mesh output in cycle t + LATENCY, LATENCY = 2*DIM - 1 (hw/mesh.py).
"""

import os
import random

import cocotb
import numpy as np
from amaranth.back import verilog
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from hw.mesh import Mesh
from hw.pe import PE

META_BITS = 16


def generate_mesh(cfg):
    return verilog.convert(Mesh(cfg.dim, meta_width=META_BITS), name="top", emit_src=False)


def generate_pe(cfg):
    return verilog.convert(PE(), name="top", emit_src=False)


def pack(row, bits):
    v = 0
    for i, x in enumerate(row):
        v |= (int(x) & ((1 << bits) - 1)) << (bits * i)
    return v


def unpack(v, n, bits):
    out = []
    for i in range(n):
        x = (v >> (bits * i)) & ((1 << bits) - 1)
        out.append(x - (1 << bits) if x >> (bits - 1) else x)
    return np.array(out, dtype=np.int64)


def u(handle):
    value = handle.value
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


def s(handle, bits):
    v = u(handle)
    return v - (1 << bits) if v >> (bits - 1) else v


async def start(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start(start_high=False))
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await FallingEdge(dut.clk)


class MeshBench:
    """Drives one mesh: weight writes, input rows; records every output row with its cycle."""

    def __init__(self, dut, dim):
        self.dut, self.dim = dut, dim
        self.cycle = 0
        self.outputs = []          # (cycle, meta, row)

    def idle(self):
        d = self.dut
        d.in_valid.value = 0
        d.w_we.value = 0
        d.w_clear.value = 0

    async def step(self):
        """End the current cycle; sample the outputs of the next one."""
        await FallingEdge(self.dut.clk)
        self.cycle += 1
        if u(self.dut.out_valid):
            self.outputs.append((self.cycle, u(self.dut.out_meta),
                                 unpack(u(self.dut.out_c), self.dim, 32)))

    async def write_weights(self, buf, B):
        for k in range(self.dim):
            self.idle()
            self.dut.w_we.value = 1
            self.dut.w_row.value = k
            self.dut.w_buf.value = buf
            self.dut.w_data.value = pack(B[k], 8)
            await self.step()
        self.idle()

    async def clear(self, buf):
        self.idle()
        self.dut.w_clear.value = 1
        self.dut.w_buf.value = buf
        await self.step()
        self.idle()

    def drive_row(self, row, tag, meta):
        self.dut.in_valid.value = 1
        self.dut.in_a.value = pack(row, 8)
        self.dut.in_tag.value = tag
        self.dut.in_meta.value = meta

    async def drain(self, cycles):
        self.idle()
        for _ in range(cycles):
            await self.step()


@cocotb.test()
async def mesh_latency_and_throughput(dut):
    dim = int(os.environ["MESH_DIM"])
    latency = 2 * dim - 1
    rng = np.random.default_rng(int(os.environ.get("SEED", "1")))
    await start(dut)
    tb = MeshBench(dut, dim)
    B = [rng.integers(-128, 128, (dim, dim)) for _ in range(3)]
    await tb.write_weights(0, B[0])
    await tb.write_weights(1, B[1])

    # 1. One isolated row: it leaves exactly LATENCY cycles after it entered.
    a = rng.integers(-128, 128, dim)
    t_in = tb.cycle
    tb.drive_row(a, 0, 7)
    await tb.step()
    await tb.drain(latency + 5)
    assert len(tb.outputs) == 1, tb.outputs
    t_out, meta, row = tb.outputs[0]
    assert meta == 7
    assert t_out - t_in == latency, f"latency {t_out - t_in}, expected {latency}"
    assert (row == a @ B[0]).all()

    # 2. Back-to-back rows, switching weight buffers twice mid-stream: one output row per
    #    cycle, in order, each multiplied by the weights of its own buffer.
    tb.outputs.clear()
    n = 3 * dim
    A = rng.integers(-128, 128, (n, dim))
    tags = [0] * dim + [1] * dim + [0] * dim
    t0 = tb.cycle
    for i in range(n):
        tb.drive_row(A[i], tags[i], i)
        await tb.step()
    await tb.drain(latency + 2)
    assert [m for _, m, _ in tb.outputs] == list(range(n)), "rows lost, duplicated or reordered"
    cycles = [c for c, _, _ in tb.outputs]
    assert cycles == list(range(t0 + latency, t0 + latency + n)), "not one row per cycle"
    for (_, i, row) in tb.outputs:
        W = B[0] if tags[i] == 0 else B[1]
        assert (row == A[i] @ W).all(), f"row {i} wrong"

    # 3. Double buffering: write buffer 0 with B[2] while rows stream through buffer 1.
    tb.outputs.clear()
    A = rng.integers(-128, 128, (2 * dim, dim))
    for i in range(dim):           # rows on buffer 1 while buffer 0's rows are written
        tb.drive_row(A[i], 1, i)
        tb.dut.w_we.value = 1
        tb.dut.w_row.value = i
        tb.dut.w_buf.value = 0
        tb.dut.w_data.value = pack(B[2][i], 8)
        await tb.step()
    tb.dut.w_we.value = 0
    for i in range(dim, 2 * dim):  # then switch to buffer 0 with no bubble
        tb.drive_row(A[i], 0, i)
        await tb.step()
    await tb.drain(latency + 2)
    assert len(tb.outputs) == 2 * dim
    for (_, i, row) in tb.outputs:
        W = B[1] if i < dim else B[2]
        assert (row == A[i] @ W).all(), f"row {i} wrong after double-buffered weight load"

    # 4. Clear zeroes a buffer.
    tb.outputs.clear()
    await tb.clear(0)
    tb.drive_row(A[0], 0, 1)
    await tb.step()
    await tb.drain(latency + 2)
    assert (tb.outputs[0][2] == 0).all()


@cocotb.test()
async def pe_mac_and_double_buffer(dut):
    rng = random.Random(3)
    await start(dut)
    w = [0, 0]
    for _ in range(200):
        # random weight writes / clears into either buffer, and a random MAC
        buf = rng.randrange(2)
        op = rng.choice(["none", "we", "clear"])
        wd = rng.randrange(-128, 128)
        a, tag, psum = rng.randrange(-128, 128), rng.randrange(2), rng.randrange(-2**30, 2**30)
        dut.w_we.value = int(op == "we")
        dut.w_clear.value = int(op == "clear")
        dut.w_buf.value = buf
        dut.w_data.value = wd & 0xFF
        dut.a_in.value = a & 0xFF
        dut.tag_in.value = tag
        dut.psum_in.value = psum & 0xFFFFFFFF
        expected = psum + a * w[tag]          # uses the weight before this cycle's write
        await FallingEdge(dut.clk)
        assert s(dut.psum_out, 32) == expected
        assert s(dut.a_out, 8) == a and u(dut.tag_out) == tag
        if op == "we":
            w[buf] = wd
        elif op == "clear":
            w[buf] = 0
