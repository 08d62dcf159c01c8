"""Scratchpad and accumulator behaviour on the Verilator model (DIM 4 build):
accumulate vs overwrite, partial C blocks, ReLU / rounding shift / int8 saturation on
the way out, zero fill of partial rows, and bank conflicts."""

import numpy as np

from hw.program import DramImage, Program
from hw.reference import store_transform
from sim.rtl_run import ProgramCase, run_programs
from tests.hw.rtl_common import CFG4, assert_counters

D = CFG4.dim
B_BASE = 2 * CFG4.sp_bank_rows        # B operands live in scratchpad bank 2


def _case(name, prog, image, lo_addr, nbytes):
    bus = CFG4.dma_bus_bytes
    return ProgramCase(name, prog.words, image, lo_addr // bus, (lo_addr + nbytes - 1) // bus, 200_000)


def _accumulate_overwrite(rng):
    """C = D + A B, then overwrite of 2 columns, then only 2 of 4 rows, then D + 2 A B."""
    img = DramImage(CFG4)
    A = rng.integers(-128, 128, (D, D), dtype=np.int8)
    B = rng.integers(-128, 128, (D, D), dtype=np.int8)
    Dm = rng.integers(-2**20, 2**20, (D, D), dtype=np.int32)
    a, b, d = img.alloc(A.size), img.alloc(B.size), img.alloc(Dm.nbytes)
    img.write(a, A), img.write(b, B), img.write(d, Dm)
    out = img.alloc(3 * Dm.nbytes)
    img.write(out, np.full(3 * Dm.nbytes, 0x5A, np.uint8))
    p = Program(CFG4)
    p.config_ld(0, D).config_ld(2, 4 * D).config_st(4 * D, acc_full=True)
    p.mvin(a, 0, D, D).mvin(b, B_BASE, D, D)
    for base in (0, 8, 16):
        p.mvin(d, base, D, D, slot=2, acc=True)
    p.preload(B_BASE, D, D, 0, D, D, accumulate=True).compute(0, D, D)             # acc0 = D + AB
    p.preload(b_none=True, c_laddr=8, c_rows=D, c_cols=2).compute(0, D, D, preloaded=False)  # cols 0,1 := AB
    p.preload(b_none=True, c_laddr=16, c_rows=2, c_cols=D).compute(0, D, D, preloaded=False)  # rows 0,1 := AB
    p.preload(b_none=True, c_laddr=0, c_rows=D, c_cols=D, accumulate=True).compute(0, D, D, preloaded=False)
    for i, base in enumerate((0, 8, 16)):
        p.mvout(out + i * Dm.nbytes, base, D, D, acc=True)
    p.halt()
    AB = A.astype(np.int32) @ B.astype(np.int32)
    exp = [Dm + 2 * AB, Dm.copy(), Dm.copy()]
    exp[1][:, :2] = AB[:, :2]
    exp[2][:2, :] = AB[:2, :]
    return _case("accumulate_overwrite", p, img, out, 3 * Dm.nbytes), (out, np.concatenate(exp))


def _store_activation(rng):
    """Accumulator rows with extreme and tie values stored with several ReLU/shift settings."""
    img = DramImage(CFG4)
    special = np.array([2**31 - 1, -2**31, 0, -1, 1, 127, 128, -128, -129, 96, -96, 95, 2**20 + 2**19,
                        -(2**20 + 2**19), 3 * 2**9, -(3 * 2**9)], dtype=np.int32)
    X = np.concatenate([special, rng.integers(-2**31, 2**31 - 1, 16, dtype=np.int64).astype(np.int32)])
    X = X.reshape(-1, D)
    x = img.alloc(X.nbytes)
    img.write(x, X)
    settings = [(False, 0), (True, 0), (False, 1), (True, 7), (False, 10), (True, 20), (False, 31)]
    out = img.alloc(len(settings) * X.size)
    img.write(out, np.full(len(settings) * X.size, 0x5A, np.uint8))
    p = Program(CFG4)
    p.config_ld(2, 4 * D).mvin(x, 0, D, D, slot=2, acc=True).mvin(x + 16 * D, D, D, D, slot=2, acc=True)
    exp = []
    for i, (relu, shift) in enumerate(settings):
        p.config_st(D, relu=relu, shift=shift)
        p.mvout(out + i * X.size, 0, D, D, acc=True).mvout(out + i * X.size + D * D, D, D, D, acc=True)
        exp.append(store_transform(X, relu=relu, shift=shift).astype(np.int8))
    p.halt()
    return _case("store_activation", p, img, out, len(settings) * X.size), (out, np.concatenate(exp))


def _sp_zero_fill(rng):
    """MVIN of 3 columns into rows that held 4: the 4th column reads back as zero."""
    img = DramImage(CFG4)
    X = rng.integers(-128, 128, (D, D), dtype=np.int8)
    x = img.alloc(X.size)
    img.write(x, X)
    out = img.alloc(2 * X.size)
    p = Program(CFG4)
    p.config_ld(0, D).config_st(D)
    p.mvin(x, 5, D, D).mvout(out, 5, D, D)            # full rows
    p.fence()
    p.mvin(x, 5, D, 3).mvout(out + X.size, 5, D, D)   # 3 columns: the last must be zero
    p.halt()
    Y = X.copy()
    Y[:, 3] = 0
    return _case("sp_zero_fill", p, img, out, 2 * X.size), (out, np.concatenate([X, Y]))


def test_accumulator_and_scratchpad_semantics(build_model, tmp_path):
    model = build_model(CFG4)
    rng = np.random.default_rng(11)
    built = [_accumulate_overwrite(rng), _store_activation(rng), _sp_zero_fill(rng)]
    outcomes = run_programs(model, [c for c, _ in built], workdir=tmp_path)
    for (case, (addr, exp)), out in zip(built, outcomes):
        assert out.ok, case.name
        got = out.image.read(addr, exp.shape, exp.dtype)
        assert (got == exp).all(), f"{case.name}: got\n{got}\nexpected\n{exp}"
        assert_counters(out)


def _blocks_program(rng, b_base):
    """Many PRELOAD+COMPUTE pairs; B at `b_base`, A at row 0 (bank 0)."""
    n = 24
    img = DramImage(CFG4)
    A = rng.integers(-128, 128, (D, D), dtype=np.int8)
    Bs = rng.integers(-128, 128, (n * D, D), dtype=np.int8)
    a, b = img.alloc(A.size), img.alloc(Bs.size)
    img.write(a, A), img.write(b, Bs)
    out = img.alloc(4 * D * D)
    p = Program(CFG4)
    p.config_ld(0, D).config_st(4 * D, acc_full=True)
    p.mvin(a, 0, D, D)
    for i in range(n):
        p.mvin(b + i * D * D, b_base + i * D, D, D)
    for i in range(n):
        p.preload(b_base + i * D, D, D, 0, D, D, accumulate=i > 0).compute(0, D, D)
    p.mvout(out, 0, D, D, acc=True).halt()
    exp = sum(A.astype(np.int32) @ Bs[i * D:(i + 1) * D].astype(np.int32) for i in range(n))
    return _case(f"blocks_b{b_base}", p, img, out, 4 * D * D), (out, exp)


def test_bank_conflicts_cost_cycles_not_correctness(build_model, tmp_path):
    """Weights read from A's bank compete with the A stream for the bank's single read
    port: same result, more execute cycles than with weights in another bank."""
    model = build_model(CFG4)
    rng = np.random.default_rng(5)
    same, other = _blocks_program(rng, 8), _blocks_program(np.random.default_rng(5), B_BASE)
    outs = run_programs(model, [same[0], other[0]], workdir=tmp_path)
    for (case, (addr, exp)), out in zip((same, other), outs):
        assert out.ok and (out.image.read(addr, exp.shape, np.int32) == exp).all()
    assert outs[0].counters["exec_busy"] > outs[1].counters["exec_busy"], \
        (outs[0].counters["exec_busy"], outs[1].counters["exec_busy"])


def _hazard_program(rng):
    """Each instruction depends on the previous unit's unfinished work; only the
    scoreboard makes the result right (the DRAM is slow: 30 cycles latency)."""
    img = DramImage(CFG4)
    A0, A1, B = (rng.integers(-128, 128, (D, D), dtype=np.int8) for _ in range(3))
    Dm = rng.integers(-2**20, 2**20, (D, D), dtype=np.int32)
    a0, a1, b, d = img.alloc(A0.size), img.alloc(A1.size), img.alloc(B.size), img.alloc(Dm.nbytes)
    for addr, x in ((a0, A0), (a1, A1), (b, B), (d, Dm)):
        img.write(addr, x)
    out = img.alloc(3 * Dm.nbytes)
    p = Program(CFG4)
    p.config_ld(0, D).config_ld(2, 4 * D).config_st(4 * D, acc_full=True)
    p.mvin(a0, 0, D, D).mvin(b, B_BASE, D, D)
    p.preload(B_BASE, D, D, 0, D, D).compute(0, D, D)                 # RAW on both MVINs
    p.mvin(a1, 0, D, D)                                               # WAR: overwrites the A just read
    p.preload(b_none=True, c_laddr=4, c_rows=D, c_cols=D).compute(0, D, D, preloaded=False)  # RAW on A1
    p.mvout(out, 0, D, D, acc=True)                                   # RAW on the first compute
    p.mvin(d, 0, D, D, slot=2, acc=True)                              # WAR with that MVOUT, WAW with compute
    p.mvout(out + Dm.nbytes, 0, D, D, acc=True)                       # RAW on the accumulator MVIN
    p.mvout(out + 2 * Dm.nbytes, 4, D, D, acc=True)
    p.halt()
    ab = lambda a: a.astype(np.int32) @ B.astype(np.int32)  # noqa: E731
    exp = np.concatenate([ab(A0), Dm, ab(A1)])
    return _case("hazards", p, img, out, 3 * Dm.nbytes), (out, exp), p


def test_scoreboard_orders_dependent_instructions(build_model, tmp_path):
    from hw.program import interpret
    rng = np.random.default_rng(21)
    case, (addr, exp), prog = _hazard_program(rng)
    seq = case.image.copy()
    interpret(prog, seq)                      # the sequential reference implementation
    assert (seq.read(addr, exp.shape, np.int32) == exp).all()
    (out,) = run_programs(build_model(CFG4), [case], workdir=tmp_path)
    assert out.ok
    assert (out.image.read(addr, exp.shape, np.int32) == exp).all()
    assert_counters(out)
