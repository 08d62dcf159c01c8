"""The frontend's re-implemented scoreboard (issue 11) against the original, in the Amaranth
simulator: no Verilator build, so these run in seconds.

* The encoded range test of hw/frontend.py (`_enc`, `_overlap`: memory and absence folded
  into two narrow bounds) equals the original test (valid bits, same memory, row
  overlap) on edge and random ranges.
* The whole frontend equals the original one (tests/sim/legacy_frontend.py, the code
  before the change) cycle for cycle: both get the same random stimulus (instructions
  with small, often overlapping ranges in both memories, random queue readiness, slot
  completions and unit activity, restarts after HALT) and every output must be equal at
  every edge, so dispatch and stalls are unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from hw.controllers import SLOTS
from hw.frontend import RBITS, Frontend, _enc, _overlap
from hw.isa import ConfigTarget, Op, encode
from tests.sim.legacy_frontend import LegacyFrontend


# ---- the encoded overlap test ----------------------------------------------------------------

def _original(a, b):
    (va, acc_a, lo_a, hi_a), (vb, acc_b, lo_b, hi_b) = a, b
    return bool(va and vb and acc_a == acc_b and lo_a < hi_b and lo_b < hi_a)


def _ranges(rng, n):
    top = (1 << RBITS) - 1
    edge = [0, 1, 2, (1 << 24) - 1, 1 << 24, top - 1, top]
    out = []
    for _ in range(n):
        pick = (lambda: int(rng.choice(edge))) if rng.random() < 0.4 else (lambda: int(rng.integers(0, 40)))
        if rng.random() < 0.1:
            pick = lambda: int(rng.integers(0, top + 1))  # noqa: E731
        out.append((int(rng.random() < 0.85), int(rng.integers(0, 2)), pick(), pick()))
    return out


def test_encoded_overlap_equals_the_original_test():
    m = Module()
    a = [Signal(1), Signal(1), Signal(RBITS), Signal(RBITS)]
    b = [Signal(1), Signal(1), Signal(RBITS), Signal(RBITS)]
    ov = Signal()
    ea = _enc(m, "a", a[0], a[1], a[2], a[3])
    eb = _enc(m, "b", b[0], b[1], b[2], b[3])
    m.d.comb += ov.eq(_overlap(ea, eb))
    rng = np.random.default_rng(11)
    pairs = list(zip(_ranges(rng, 3000), _ranges(rng, 3000)))
    pairs += [((1, x, lo, hi), (1, y, lo2, hi2)) for x in (0, 1) for y in (0, 1)
              for lo, hi, lo2, hi2 in [(0, 4, 3, 8), (0, 4, 4, 8), (5, 5, 0, 9), (0, (1 << RBITS) - 1, 0, 1),
                                       ((1 << 24) - 1, 1 << 24, (1 << 24) - 1, (1 << 24) + 3)]]
    bad = []

    async def bench(ctx):
        for ra, rb in pairs:
            for sig, v in zip(a + b, ra + rb):
                ctx.set(sig, v)
            if bool(ctx.get(ov)) != _original(ra, rb):
                bad.append((ra, rb))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, f"{len(bad)} of {len(pairs)} range pairs differ, e.g. {bad[:3]}"


# ---- the whole frontend, cycle for cycle ----------------------------------------------------

INPUTS = ("start", "insn_valid", "insn_data", "ld_ready", "ex_ready", "st_ready", "ld_done", "ex_done", "st_done",
          "ld_busy", "ex_busy", "st_busy")
OUTPUTS = ("running", "done", "fault", "insn_ready", "ld_valid", "ld_cmd", "ex_valid", "ex_cmd", "st_valid", "st_cmd",
           "dispatched", "pc")


def _random_insn(rng) -> int:
    """An instruction with small local ranges (rows 1..4 in 0..47), so that hazards between
    the units are frequent, in both memories."""
    def la():
        return int(rng.integers(0, 48))

    def rows():
        return int(rng.integers(1, 5))

    k = rng.random()
    if k < 0.06:
        target = ConfigTarget(int(rng.integers(0, 3)))
        return encode(Op.CONFIG, funct=target, slot=int(rng.integers(0, 3)), stride=int(rng.integers(0, 4)))
    if k < 0.32:
        return encode(Op.MVIN, slot=int(rng.integers(0, 3)), acc=int(rng.integers(0, 2)), rows=rows(), cols=4,
                      laddr=la(), dram=int(rng.integers(0, 1 << 16)))
    if k < 0.52:
        return encode(Op.MVOUT, acc=int(rng.integers(0, 2)), rows=rows(), cols=4, laddr=la(),
                      dram=int(rng.integers(0, 1 << 16)))
    if k < 0.72:
        return encode(Op.PRELOAD, b_none=int(rng.random() < 0.3), accumulate=int(rng.integers(0, 2)), rows=rows(),
                      cols=4, laddr=la(), laddr2=la(), rows2=int(rng.integers(1, 5)), cols2=4)
    if k < 0.96:
        op = Op.COMPUTE_PRELOADED if rng.random() < 0.5 else Op.COMPUTE_ACCUMULATED
        return encode(op, rows=rows(), cols=4, laddr=la())
    if k < 0.985:
        return encode(Op.FENCE)
    return encode(Op.HALT)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_frontend_matches_the_original_cycle_for_cycle(seed):
    depth = 8
    m = Module()
    m.submodules.new = new = Frontend(depth)
    m.submodules.old = old = LegacyFrontend(depth)
    ins = {name: Signal.like(getattr(new, name), name=f"in_{name}") for name in INPUTS}
    for name, sig in ins.items():
        m.d.comb += [getattr(new, name).eq(sig), getattr(old, name).eq(sig)]
    rng = np.random.default_rng(seed)
    cycles, mismatches, stats = 1500, [], {"dispatched": 0, "stalled": 0, "halts": 0}

    async def bench(ctx):
        pending = _random_insn(rng)
        restart = True
        for cycle in range(cycles):
            ctx.set(ins["start"], int(restart))
            restart = False
            ctx.set(ins["insn_valid"], 1)
            ctx.set(ins["insn_data"], pending)
            for u in ("ld", "ex", "st"):
                ctx.set(ins[f"{u}_ready"], int(rng.random() < 0.6))
                ctx.set(ins[f"{u}_busy"], int(rng.random() < 0.5))
                done = 0
                for s in range(SLOTS):
                    done |= int(rng.random() < 0.08) << s
                ctx.set(ins[f"{u}_done"], done)
            for name in OUTPUTS:
                a, b = ctx.get(getattr(new, name)), ctx.get(getattr(old, name))
                a = a.as_value().value if hasattr(a, "as_value") else a
                b = b.as_value().value if hasattr(b, "as_value") else b
                if int(a) != int(b):
                    mismatches.append((cycle, name, int(a), int(b)))
            if ctx.get(new.insn_ready):
                pending = _random_insn(rng)
            if ctx.get(new.dispatched):
                stats["dispatched"] += 1
            elif ctx.get(new.running):
                stats["stalled"] += 1
            if ctx.get(new.done) and not ctx.get(new.running):
                stats["halts"] += 1
                restart = True
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert not mismatches, f"{len(mismatches)} mismatches, first {mismatches[:5]}"
    # the stimulus exercised dispatch, stalls and restarts
    assert stats["dispatched"] > 200 and stats["stalled"] > 200 and stats["halts"] >= 2, stats


def test_compute_block_range_holds_conflicting_instructions():
    """A COMPUTE_BLOCK's scoreboard ranges: it reads every scratchpad row from its first
    to its last A row (laddr .. laddr + (run-1)*a_stride + (reps-1)*a_stride1) and writes
    its run*reps C rows. An instruction of another unit that touches them waits at
    dispatch until the execute unit reports the block done; one just outside does not."""
    cfg_ex = encode(Op.CONFIG, funct=ConfigTarget.EX, stride=1, stride1=10)
    program = [
        cfg_ex,
        encode(Op.PRELOAD, b_none=1, laddr2=100, rows2=1, cols2=4),
        encode(Op.COMPUTE_BLOCK, preloaded=0, cols=4, laddr=0, run=2, reps=3),  # A rows 0..21, C 100..105
        encode(Op.MVIN, rows=1, cols=4, laddr=22, dram=0),            # after the A range: goes
        encode(Op.MVIN, acc=1, rows=1, cols=4, laddr=106, dram=0),    # after the C range: goes
        encode(Op.MVOUT, acc=1, rows=1, cols=4, laddr=105, dram=0),   # reads C row 105: waits
        encode(Op.MVIN, rows=1, cols=4, laddr=15, dram=0),            # between two runs: waits
        encode(Op.HALT),
    ]
    m = Module()
    m.submodules.fe = fe = Frontend(16)
    release = 40
    dispatched = {}

    async def bench(ctx):
        ctx.set(fe.start, 1)
        await ctx.tick()
        ctx.set(fe.start, 0)
        fed = 0
        for cycle in range(120):
            for u in ("ld", "ex", "st"):
                ctx.set(getattr(fe, f"{u}_ready"), 1)
            ctx.set(fe.ex_done, 1 if cycle == release else 0)
            ctx.set(fe.ld_done, 0xFF if cycle > release + 5 else 0)
            ctx.set(fe.st_done, 0xFF if cycle > release + 5 else 0)
            ctx.set(fe.insn_valid, int(fed < len(program)))
            ctx.set(fe.insn_data, program[fed] if fed < len(program) else 0)
            if fed < len(program) and ctx.get(fe.insn_ready):
                fed += 1
            if ctx.get(fe.dispatched):
                dispatched[ctx.get(fe.pc)] = cycle
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert all(i in dispatched for i in range(len(program))), dispatched
    assert dispatched[3] < release and dispatched[4] < release       # outside the ranges
    assert dispatched[5] > release and dispatched[6] > release       # held until the block is done
    assert dispatched[5] - release <= 2
