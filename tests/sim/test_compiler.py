"""Tests of sim.compiler (layer -> program) and sim.reference (numpy convolution).

The machine is `hw.program.interpret` (the sequential ISA interpreter): for random small
layers and random valid mappings (including DRAM loop orders that put reduction loops
outside output loops, so partial sums go to DRAM and come back), the interpreted output
must equal `conv_reference` exactly. And the vectorised compiler must produce exactly
what the frozen pre-vectorisation compiler (tests/sim/reference_compiler.py) does: the
same words, DRAM layout and statistics, on random mappings and ResNet-50 layers.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import numpy as np
import pytest

from hw.config import HardwareConfig
from hw.isa import Op, decode
from hw.layer import LOOPS, Layer
from hw.mapping import Mapping, default_mapping, divisors
from hw.program import interpret
from hw.schedule import AccessFootprint, Item, deps, merge
from sim.compiler import CompileError, Compiled, _merge_order, _positions, compile_layer
from sim.reference import conv_reference
from tests.sim import reference_compiler

HW4 = HardwareConfig(dim=4, sp_kb=8, acc_kb=8, dma_bus_bytes=8, dma_max_req_bytes=16, dram_mb=1)
HW8 = HardwareConfig(dim=8, sp_kb=8, acc_kb=8, dram_mb=1)

REDUCTION = ("C", "R", "S")
OUTPUT = ("N", "K", "P", "Q")


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def random_mapping(rng: random.Random, hw: HardwareConfig, layer: Layer, order=None,
                   tries: int = 500) -> Mapping:
    """A random mapping that passes `check`: random divisor factors per level (array
    factors only for C and K, at most dim) and a random DRAM order (unless given)."""
    dims = layer.dims
    for _ in range(tries):
        array = {lp: 1 for lp in LOOPS}
        for lp in ("C", "K"):
            array[lp] = rng.choice([v for v in divisors(dims[lp]) if v <= hw.dim])
        spad = {lp: rng.choice(divisors(dims[lp] // array[lp])) for lp in LOOPS}
        o = list(order) if order is not None else rng.sample(LOOPS, len(LOOPS))
        m = Mapping.for_layer(layer, spad=spad, array=array, order=tuple(o))
        if m.check(hw, layer):
            return m
    raise AssertionError(f"no random valid mapping found for {layer}")


def reduction_outside(m: Mapping) -> bool:
    """Some DRAM reduction loop (> 1 trip) encloses some DRAM output loop (> 1 trip)."""
    dram = m.level("dram")
    red = [m.order.index(lp) for lp in REDUCTION if dram[lp] > 1]
    outp = [m.order.index(lp) for lp in OUTPUT if dram[lp] > 1]
    return bool(red and outp and min(red) < max(outp))


def random_inputs(rng: np.random.Generator, layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(-128, 128, (layer.n, layer.c, layer.h, layer.w), dtype=np.int8)
    w = rng.integers(-128, 128, (layer.k, layer.c_per_group, layer.r, layer.s), dtype=np.int8)
    return x, w


def run_compiled(c: Compiled, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    image = c.image.copy()
    c.write_inputs(x, w, image)
    st = interpret(c.program, image, c.hw)
    assert st.halted
    assert st.macs == c.layer.macs == c.program.expected_macs()
    return c.read_output(image)


def check_layer(hw, layer, mapping, out, relu, shift, np_rng, validate=False) -> Compiled:
    c = compile_layer(hw, mapping, layer, out=out, relu=relu, shift=shift)
    x, w = random_inputs(np_rng, layer)
    got = run_compiled(c, x, w)
    want = conv_reference(x, w, layer, out=out, relu=relu, shift=shift)
    assert got.dtype == want.dtype and got.shape == (layer.n, layer.k, layer.p, layer.q)
    np.testing.assert_array_equal(got, want, err_msg=f"{layer}\n{mapping}\nout={out}")
    if validate:
        c.validate()
    return c


LAYERS = [
    Layer.conv("pw", k=12, c=8, r=1, p=5),
    Layer.conv("c3", k=8, c=6, r=3, p=5, padding=1),
    Layer.conv("c3s2", k=8, c=8, r=3, p=3, stride=2, padding=1),
    Layer.conv("c7s2", k=8, c=3, r=7, p=4, stride=2, padding=3),
    Layer.conv("dw", k=8, c=8, r=3, p=4, padding=1, groups=8),
    Layer.conv("g2", k=8, c=12, r=3, p=4, padding=1, groups=2),
    Layer.conv("b2", k=8, c=8, r=3, p=3, padding=1, n=2),
    Layer.gemm("gemm", 12, 20, 10),
    Layer(name="rect", n=1, k=4, c=5, p=3, q=5, r=1, s=3, stride=1, padding=0),
]


# ---------------------------------------------------------------------------------------
# sim.reference
# ---------------------------------------------------------------------------------------

def test_conv_reference_hand_computed():
    L = Layer.conv("hand", k=1, c=1, r=2, h=3)
    assert (L.p, L.q, L.h, L.w) == (2, 2, 3, 3)
    x = np.arange(1, 10, dtype=np.int8).reshape(1, 1, 3, 3)   # [[1,2,3],[4,5,6],[7,8,9]]
    w = np.array([[1, 2], [3, 4]], np.int8).reshape(1, 1, 2, 2)
    y = conv_reference(x, w, L)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y[0, 0], [[37, 47], [67, 77]])
    # int8: rounding shift by 3, ReLU on negated weights.
    np.testing.assert_array_equal(conv_reference(x, w, L, out="int8", shift=3)[0, 0],
                                  [[5, 6], [8, 10]])
    assert not conv_reference(x, -w, L, out="int8", relu=True).any()
    np.testing.assert_array_equal(conv_reference(x, -w, L, out="int8")[0, 0],
                                  [[-37, -47], [-67, -77]])


def test_conv_reference_padding_by_hand():
    L = Layer.conv("pad", k=1, c=1, r=2, h=2, padding=1)
    assert (L.p, L.q) == (3, 3)
    x = np.array([[1, 2], [3, 4]], np.int8).reshape(1, 1, 2, 2)
    w = np.array([[1, 2], [3, 4]], np.int8).reshape(1, 1, 2, 2)
    np.testing.assert_array_equal(conv_reference(x, w, L)[0, 0],
                                  [[4, 11, 6], [14, 30, 14], [6, 11, 4]])


def test_conv_reference_matches_naive_loops():
    rng = np.random.default_rng(5)
    for L in (Layer.conv("a", k=6, c=4, r=3, p=4, stride=2, padding=1, groups=2, n=2),
              Layer(name="b", n=1, k=3, c=3, p=4, q=3, r=2, s=3, padding=1, groups=3)):
        x, w = random_inputs(rng, L)
        Cg, Kg = L.c_per_group, L.k_per_group
        pad = L.padding
        xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        want = np.zeros((L.n, L.k, L.p, L.q), np.int64)
        for n in range(L.n):
            for k in range(L.k):
                g = k // Kg
                for p in range(L.p):
                    for q in range(L.q):
                        patch = xp[n, g * Cg:(g + 1) * Cg, p * L.stride:p * L.stride + L.r,
                                   q * L.stride:q * L.stride + L.s]
                        want[n, k, p, q] = (patch * w[k].astype(np.int64)).sum()
        np.testing.assert_array_equal(conv_reference(x, w, L), want)


def test_conv_reference_wraps_int32():
    # 2**17 products of (-128)*(-128) = 2**14 sum to 2**31, which wraps to -2**31.
    L = Layer.gemm("wrap", 1, 1 << 17, 1)
    x = np.full((1, 1 << 17, 1, 1), -128, np.int8)
    w = np.full((1, 1 << 17, 1, 1), -128, np.int8)
    assert conv_reference(x, w, L)[0, 0, 0, 0] == -(1 << 31)


# ---------------------------------------------------------------------------------------
# compiled programs vs the reference
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("hw", [HW4, HW8], ids=["dim4", "dim8"])
@pytest.mark.parametrize("layer", LAYERS, ids=[L.name for L in LAYERS])
def test_random_mappings_match_reference(hw, layer):
    rng = random.Random(f"{hw.dim}-{layer.name}")
    np_rng = np.random.default_rng(rng.randrange(1 << 30))
    mappings = [default_mapping(hw, layer)] + [random_mapping(rng, hw, layer) for _ in range(4)]
    for i, m in enumerate(mappings):
        out = "int32" if i % 2 == 0 else "int8"
        check_layer(hw, layer, m, out, relu=(i % 4 == 1),
                    shift=rng.randrange(0, 12) if out == "int8" else 0,
                    np_rng=np_rng, validate=(i < 2))


@pytest.mark.parametrize("layer", [LAYERS[1], LAYERS[3], LAYERS[5], LAYERS[6]],
                         ids=lambda L: L.name)
def test_reduction_outside_output_loops_spills_partial_sums(layer):
    rng = random.Random(f"psum-{layer.name}")
    np_rng = np.random.default_rng(7)
    found = 0
    for attempt in range(200):
        order = list(REDUCTION)
        rng.shuffle(order)
        rest = list(OUTPUT)
        rng.shuffle(rest)
        # reduction loops outermost (some shuffled into the output loops)
        full = order + rest if attempt % 2 == 0 else rest[:1] + order + rest[1:]
        m = random_mapping(rng, HW4, layer, order=full)
        if not reduction_outside(m):
            continue
        c = check_layer(HW4, layer, m, "int8" if found % 2 else "int32", relu=bool(found % 2),
                        shift=found % 5, np_rng=np_rng, validate=(found == 0))
        assert c.stats["psum_spills"] > 0 and c.stats["psum_reloads"] > 0
        assert c.psum_addr is not None and c.psum_addr != c.output_addr
        found += 1
        if found == 2:
            break
    assert found == 2


def test_explicit_bad_order_fences_and_reloads():
    L = Layer.conv("c3", k=8, c=8, r=3, p=4, padding=1, n=2)
    m = Mapping.for_layer(L, spad={"P": 2, "Q": 2}, array={"C": 4, "K": 4},
                          order=("C", "R", "N", "K", "P", "Q", "S"))
    assert m.check(HW4, L)
    np_rng = np.random.default_rng(3)
    c = check_layer(HW4, L, m, "int8", relu=True, shift=7, np_rng=np_rng, validate=True)
    dram = m.level("dram")
    tiles = dram["N"] * dram["K"] * dram["P"] * dram["Q"]
    # each output tile stays in the accumulator over its S tiles (S innermost) and leaves
    # after each of its C x R passes: stored once, spilled and reloaded C*R - 1 times.
    assert c.stats["output_tile_stores"] == tiles
    assert c.stats["psum_spills"] == tiles * (dram["C"] * dram["R"] - 1)
    assert c.stats["steps"] == tiles * dram["C"] * dram["R"] * dram["S"]
    assert c.stats["psum_reloads"] == c.stats["psum_spills"]
    assert c.stats["fence"] >= 1
    # the int8 output and int32 partial sums need different CONFIG ST settings
    assert c.stats["config"] > 5
    # a FENCE separates every psum MVOUT from a later MVIN of the same DRAM bytes:
    # interpret() (run above) raises otherwise. The good order needs none.
    good = compile_layer(HW4, Mapping(m.factors), L, out="int8", relu=True, shift=7)
    assert good.psum_addr is None and good.stats["psum_spills"] == 0 and good.stats["fence"] == 0
    assert good.stats["instructions"] < c.stats["instructions"]


def test_grouped_and_batched_default_dim8():
    np_rng = np.random.default_rng(11)
    L = Layer.conv("dwb", k=16, c=16, r=3, p=5, padding=1, groups=16, n=2)
    check_layer(HW8, L, default_mapping(HW8, L), "int8", relu=True, shift=4, np_rng=np_rng)
    L = Layer.conv("g4", k=16, c=8, r=1, p=6, stride=2, groups=4, n=2)
    check_layer(HW8, L, random_mapping(random.Random(1), HW8, L), "int32", False, 0, np_rng)


# ---------------------------------------------------------------------------------------
# compiler API and decisions
# ---------------------------------------------------------------------------------------

def test_invalid_mapping_raises_compile_error_with_reason():
    L = Layer.conv("big", k=64, c=4, r=1, p=8)
    too_big = Mapping.for_layer(L, spad={"P": 8, "Q": 8, "K": 16}, array={"C": 4, "K": 4})
    chk = too_big.check(HW4, L)
    assert not chk and "accumulator rows" in chk.reason
    with pytest.raises(CompileError, match="mapping invalid") as e:
        compile_layer(HW4, too_big, L)
    assert chk.reason in str(e.value)
    assert isinstance(e.value, ValueError)
    wrong = Mapping(factors={"dram": {lp: 1 for lp in LOOPS}, "spad": {lp: 1 for lp in LOOPS},
                             "array": {lp: 1 for lp in LOOPS}})
    with pytest.raises(CompileError, match="!= layer dim"):
        compile_layer(HW4, wrong, L)
    with pytest.raises(CompileError, match="out="):
        compile_layer(HW4, default_mapping(HW4, L), L, out="int16")
    with pytest.raises(CompileError, match="shift"):
        compile_layer(HW4, default_mapping(HW4, L), L, out="int8", shift=32)


def test_different_mappings_give_different_programs():
    L = Layer.conv("c3", k=8, c=8, r=3, p=4, padding=1)
    m1 = default_mapping(HW4, L)
    m2 = Mapping(m1.factors, order=("C", "R", "S", "N", "K", "P", "Q"))
    m3 = Mapping.for_layer(L, spad={"P": 2}, array={"C": 4, "K": 4})
    progs = [compile_layer(HW4, m, L).program.words for m in (m1, m2, m3)]
    assert progs[0] != progs[2] and progs[1] != progs[2]
    # the same mapping compiles to the same program
    assert compile_layer(HW4, m3, L).program.words == progs[2]


def test_layout_helpers_and_stats():
    L = Layer.conv("c3s2", k=8, c=6, r=3, p=3, stride=2, padding=1, n=2)
    c = compile_layer(HW4, default_mapping(HW4, L), L, out="int8")
    pad = L.padding
    assert c.input_shape == (2, L.h + 2 * pad, L.w + 2 * pad, 6)
    assert c.weight_shape == (1, 3, 3, 6, 8)
    assert c.output_shape == (2, L.p, L.q, 8)
    x, w = random_inputs(np.random.default_rng(0), L)
    c.write_inputs(x, w)
    xp = c.image.read(c.input_addr, c.input_shape, np.int8)
    assert not xp[:, :pad].any() and not xp[:, -pad:].any()
    assert not xp[:, :, :pad].any() and not xp[:, :, -pad:].any()
    np.testing.assert_array_equal(xp[1, pad + 2, pad + 1], x[1, :, 2, 1])
    wd = c.image.read(c.weight_addr, c.weight_shape, np.int8)
    np.testing.assert_array_equal(wd[0, 2, 1, :, 5], w[5, :, 2, 1])
    x2, w2 = c.read_inputs()
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(w2, w)
    lo, hi = c.output_word_range()
    bus = HW4.dma_bus_bytes
    assert lo * bus <= c.output_addr and (hi + 1) * bus >= c.output_addr + 2 * L.p * L.q * 8
    assert hi * bus < c.output_addr + 2 * L.p * L.q * 8
    assert c.stats["instructions"] == len(c.program)
    assert c.stats["macs"] == L.macs == c.program.expected_macs()
    ops = [decode(wd_)[0] for wd_ in c.program.words]
    assert ops[-1] == Op.HALT and ops.count(Op.HALT) == 1
    assert ops.count(Op.PRELOAD) == c.stats["preload"] == c.stats["compute"]
    image = c.image.copy()
    interpret(c.program, image, HW4)
    np.testing.assert_array_equal(c.read_output(image), c.reference(image))
    with pytest.raises(ValueError, match="shape"):
        c.write_inputs(x[:, :, :-1], w)


def _compute_ops(c: Compiled):
    return [(op, f) for op, f in map(decode, c.program.words)
            if op in (Op.COMPUTE_PRELOADED, Op.COMPUTE_ACCUMULATED, Op.COMPUTE_BLOCK)]


def test_run_splitting():
    """block=False: COMPUTEs of arithmetic runs of <= dim pixels."""
    hw = HW8
    # 1x1 stride 1: the whole tile is one arithmetic run of dim pixels at a time.
    L = Layer.conv("pw", k=8, c=8, r=1, p=4, n=2)
    m = Mapping.for_layer(L, spad={"P": 4, "Q": 4, "N": 2}, array={"C": 8, "K": 8})
    c = compile_layer(hw, m, L, block=False)
    assert c.stats["pixel_runs_per_block"] == 2 * 16 // hw.dim
    assert all(f["rows"] == hw.dim for _, f in _compute_ops(c))
    # 3x3 stride 1: runs break at every output row (T_Q = 4 < dim).
    L = Layer.conv("c3", k=8, c=8, r=3, p=4, padding=1)
    m = Mapping.for_layer(L, spad={"P": 4, "Q": 4, "R": 3, "S": 3}, array={"C": 8, "K": 8})
    c = compile_layer(hw, m, L, block=False)
    assert c.stats["pixel_runs_per_block"] == 4
    assert all(f["rows"] == 4 for _, f in _compute_ops(c))
    assert c.stats["compute"] == 9 * 4
    assert c.stats["compute_preloaded"] == 9
    # 1x1 stride 2 with T_Q = 1: A advances by 2 * in_w rows per pixel (CONFIG EX a_stride).
    L = Layer.conv("ds", k=8, c=8, r=1, p=4, q=1, stride=2)
    m = Mapping.for_layer(L, spad={"P": 4}, array={"C": 8, "K": 8})
    c = compile_layer(hw, m, L, block=False)
    strides = [f["stride"] for op, f in map(decode, c.program.words)
               if op == Op.CONFIG and f["funct"] == 0]
    assert strides[-1] == 2 and c.stats["pixel_runs_per_block"] == 1
    check_layer(hw, L, m, "int32", False, 0, np.random.default_rng(2))


def test_compute_blocks():
    """block=True (the default): one COMPUTE_BLOCK per weight block (per n where the
    pattern needs it), strides set once by the head CONFIG EX; the same output as the
    classic runs, far fewer instructions."""
    hw = HW8

    def ex_config(c):
        return [f for op, f in map(decode, c.program.words) if op == Op.CONFIG and f["funct"] == 0]

    # 1x1 stride 1, two images: the whole tile (2 x 4 x 4 pixels) is one run.
    L = Layer.conv("pw", k=8, c=8, r=1, p=4, n=2)
    m = Mapping.for_layer(L, spad={"P": 4, "Q": 4, "N": 2}, array={"C": 8, "K": 8})
    c = compile_layer(hw, m, L)
    assert [(op, f["run"], f["reps"]) for op, f in _compute_ops(c)] == [(Op.COMPUTE_BLOCK, 32, 1)]
    assert [(f["stride"], f["stride1"]) for f in ex_config(c)] == [(1, 0)]
    # 3x3 stride 1: run T_Q = 4 pixels, reps T_P = 4 rows, a_stride1 = in_w = 6.
    L = Layer.conv("c3", k=8, c=8, r=3, p=4, padding=1)
    m = Mapping.for_layer(L, spad={"P": 4, "Q": 4, "R": 3, "S": 3}, array={"C": 8, "K": 8})
    c = compile_layer(hw, m, L)
    ops = _compute_ops(c)
    assert {(f["run"], f["reps"]) for _, f in ops} == {(4, 4)} and len(ops) == 9
    assert [bool(f["preloaded"]) for _, f in ops] == [True] * 9
    assert [(f["stride"], f["stride1"]) for f in ex_config(c)] == [(1, 6)]
    assert c.stats["compute"] == c.stats["compute_block"] == 9 and c.stats["preload"] == 9
    classic = compile_layer(hw, m, L, block=False)
    assert len(classic.program) - len(c.program) == 2 * 9 * 3   # 4 runs -> 1 per block
    # 3x3 stride 1 with two images: one block per image (in_h = 6 != T_P = 4): PRELOAD
    # (b_none) of the second image's C rows + COMPUTE_BLOCK keeping the weights.
    L = Layer.conv("c3b", k=8, c=8, r=3, p=4, padding=1, n=2)
    m = Mapping.for_layer(L, spad={"P": 4, "Q": 4, "R": 3, "S": 3, "N": 2}, array={"C": 8, "K": 8})
    c = compile_layer(hw, m, L)
    ops = _compute_ops(c)
    assert [(f["run"], f["reps"], f["preloaded"]) for _, f in ops[:2]] == [(4, 4, 1), (4, 4, 0)]
    assert ops[1][1]["laddr"] - ops[0][1]["laddr"] == 6 * 6
    # 1x1 stride 2 with T_Q = 1: one run of 4 rows 2 * in_w apart.
    L = Layer.conv("ds", k=8, c=8, r=1, p=4, q=1, stride=2)
    m = Mapping.for_layer(L, spad={"P": 4}, array={"C": 8, "K": 8})
    c = compile_layer(hw, m, L)
    assert [(f["run"], f["reps"]) for _, f in _compute_ops(c)] == [(4, 1)]
    assert [(f["stride"], f["stride1"]) for f in ex_config(c)] == [(2, 0)]
    rng = np.random.default_rng(3)
    for layer, mapping in ((L, m),):
        check_layer(hw, layer, mapping, "int32", False, 0, rng, validate=True)


def test_compute_blocks_cover_every_pixel_once():
    """`hw.blocks.block_items` against the pixel enumeration, over many tile shapes: every
    output pixel (n, p, q) gets C row (n*tp + p)*tq + q and A row (n*in_h +
    p*stride)*in_w + q*stride, exactly once."""
    from itertools import product

    from hw.blocks import block_items, compute_blocks
    for tn, tp, tq, st, r, s in product((1, 2, 3), (1, 2, 5), (1, 3, 4, 7), (1, 2, 3), (1, 2, 3), (1, 3)):
        in_h, in_w = (tp - 1) * st + r, (tq - 1) * st + s
        n, p, q = np.indices((tn, tp, tq)).reshape(3, -1)
        want = dict(zip(((n * tp + p) * tq + q).tolist(), ((n * in_h + p * st) * in_w + q * st).tolist()))
        items, a0, a1 = block_items(tn, tp, tq, st, in_h, in_w)
        got = {}
        for a, c, run, reps in items:
            for j in range(reps):
                for i in range(run):
                    assert c + j * run + i not in got
                    got[c + j * run + i] = a + j * a1 + i * a0
        assert got == want, (tn, tp, tq, st, r, s)
        assert len(items) == compute_blocks(tn, tp, tq, st, in_h, in_w)[0] <= tn


def test_accumulate_flag_only_on_first_contribution():
    L = Layer.conv("c3", k=8, c=8, r=3, p=2, padding=1)
    m = Mapping.for_layer(L, spad={"P": 2, "Q": 2}, array={"C": 4, "K": 4})  # dram C 2, R 3, S 3
    c = compile_layer(HW4, m, L)
    pre = [f for op, f in map(decode, c.program.words) if op == Op.PRELOAD]
    overwrite = [f for f in pre if not f["accumulate"]]
    # one non-accumulating PRELOAD per output tile and pixel run (tile = 2x2 pixels, one kb)
    tiles = m.level("dram")["K"]
    assert len(overwrite) == tiles * c.stats["pixel_runs_per_block"]
    assert len(pre) == tiles * 2 * 3 * 3 * c.stats["pixel_runs_per_block"]


def test_scratchpad_placement_inputs_bottom_weights_top():
    L = Layer.conv("c3", k=8, c=8, r=3, p=4, padding=1)
    m = default_mapping(HW4, L)
    fp = m.footprint(HW4, L)
    c = compile_layer(HW4, m, L)
    sp_rows = HW4.sp_rows
    b_addrs = [f["laddr"] for op, f in map(decode, c.program.words)
               if op == Op.PRELOAD and not f["b_none"]]
    a_addrs = [f["laddr"] for op, f in _compute_ops(c)]
    assert min(b_addrs) >= sp_rows - 2 * fp.weight_rows
    assert max(a_addrs) < 2 * fp.input_rows


def test_merge_order_matches_merge():
    """`_merge_order` + `_positions` place the side items exactly where `hw.schedule.merge`
    does, for side streams that do not touch the execute stream's rows (the compiler's
    case) but conflict with each other (accumulator rows, the "dram" pseudo-memory)."""
    rnd = random.Random(1)

    def items(n, mems, nops=(1, 1)):
        out = []
        for _ in range(n):
            a = rnd.randrange(0, 40)
            rng_ = ((rnd.choice(mems), a, a + rnd.randrange(0, 4)),)
            ops = tuple(rnd.randrange(1 << 20) for _ in range(rnd.randint(*nops)))
            out.append(Item(ops, rng_, ()) if rnd.random() < 0.5 else Item(ops, (), rng_))
        return out

    for _ in range(500):
        st = items(rnd.randrange(0, 12), ["acc", "dram"], (1, 2))
        ex = items(rnd.randrange(1, 30), ["sp"], (1, 3))
        ld = items(rnd.randrange(0, 12), ["acc", "sp2", "dram"], (1, 2))
        want = [w for it in merge(st, ex, ld) for w in it.ops]
        ends = np.cumsum([len(it.ops) for it in ex])
        dep = np.array(deps(ld, st, AccessFootprint.of(ld), AccessFootprint.of(st)), np.int64)
        order, slot = _merge_order(ends, len(st), len(ld), dep)
        side = st + ld
        wc = np.array([len(it.ops) for it in side], np.int64)
        exec_pos, side_pos = _positions(ends, order, slot, wc)
        got = np.empty(len(exec_pos) + len(side_pos), object)
        got[exec_pos] = [w for it in ex for w in it.ops]
        got[side_pos] = [w for it in side for w in it.ops]
        assert got.tolist() == want


def test_resnet50_layer_instruction_counts():
    """A big ResNet-50 layer (speed: scripts/bench_compile.py): the classic stream has two
    instructions per 7-pixel output row and weight block, the block stream two per
    weight block; the DMA instructions are the same."""
    hw = HardwareConfig()
    L = Layer.conv("res5_3x3", k=512, c=512, r=3, p=7, padding=1)
    m = default_mapping(hw, L)
    c, classic = compile_layer(hw, m, L), compile_layer(hw, m, L, block=False)
    assert classic.stats["instructions"] > 100_000
    tp = m.tiles()["P"]
    assert classic.stats["compute"] == tp * c.stats["compute_block"]
    assert classic.stats["instructions"] - c.stats["instructions"] == 2 * (tp - 1) * c.stats["compute_block"]
    assert (c.stats["mvin"], c.stats["mvout"]) == (classic.stats["mvin"], classic.stats["mvout"])


# ---------------------------------------------------------------------------------------
# the vectorised compiler against the frozen reference (tests/sim/reference_compiler.py)
# ---------------------------------------------------------------------------------------

HW16 = HardwareConfig(dim=16, sp_kb=8, acc_kb=8, dram_mb=1)
EQ_LAYERS = LAYERS + [
    Layer.conv("c3wide", k=24, c=32, r=3, p=4, padding=1),      # several C and K blocks at DIM 4, 8
    Layer.conv("c1s2", k=16, c=8, r=1, p=4, stride=2),           # 1x1 stride 2 (downsample)
    Layer.conv("c7b", k=8, c=3, r=7, p=3, stride=2, padding=3, n=2),
    Layer.conv("g4s2", k=16, c=16, r=3, p=3, stride=2, padding=1, groups=4),
]


def assert_same_as_reference(hw, mapping, layer, **kw) -> Compiled:
    """The fast compiler and the reference agree on every word, the DRAM layout and the
    statistics."""
    want = reference_compiler.compile_layer(hw, mapping, layer, **kw)
    got = compile_layer(hw, mapping, layer, block=False, **kw)
    gw, ww = got.program.words, want.program.words
    if gw != ww:
        i = next((i for i, (a, b) in enumerate(zip(gw, ww)) if a != b), min(len(gw), len(ww)))
        raise AssertionError(f"{layer}\n{mapping.to_json()} {kw}: {len(gw)} vs {len(ww)} words, "
                             f"first difference at {i}")
    assert {k: v for k, v in got.stats.items() if k != "compute_block"} == want.stats
    assert got.stats["compute_block"] == 0
    for name in ("input_addr", "input_shape", "weight_addr", "weight_shape", "output_addr",
                 "output_shape", "psum_addr", "psum_shape", "out", "relu", "shift"):
        assert getattr(got, name) == getattr(want, name), name
    assert got.image._next == want.image._next and got.image.touched_words() == want.image.touched_words()
    assert got.program.expected_macs() == want.program.expected_macs()
    assert got.program._state.a_stride == want.program._state.a_stride
    return got


def _random_cases(rng: random.Random, hw: HardwareConfig, layer: Layer):
    """Random valid mappings of `layer` on `hw`: random orders and factors
    (`random_mapping`) with random buffering, reduction loops outermost (partial-sum
    spills), and unit points of `MappingSpace` (encoding version 2, with buffering)."""
    from search.space import MappingSpace

    red_first = list(REDUCTION) + list(OUTPUT)
    for i in range(4):
        m = random_mapping(rng, hw, layer, order=red_first if i == 3 else None)
        bm = Mapping(m.factors, order=m.order, buffers=tuple(rng.choice((1, 2)) for _ in range(3)))
        yield bm if bm.check(hw, layer) else m
    space = MappingSpace(hw, layer, 2)
    found = 0
    for _ in range(200):
        m = space.from_unit([rng.random() for _ in range(space.unit_dims)])
        if m.check(hw, layer):
            yield m
            found += 1
            if found == 2:
                break


def test_matches_reference_on_random_mappings():
    rng = random.Random(2024)
    seen = Counter()
    for hw in (HW4, HW8, HW16):
        for layer in EQ_LAYERS:
            for m in _random_cases(rng, hw, layer):
                out = rng.choice(("int32", "int8"))
                c = assert_same_as_reference(hw, m, layer, out=out, relu=rng.random() < 0.5,
                                             shift=rng.randrange(0, 12))
                seen["cases"] += 1
                seen[out] += 1
                seen["psum spills"] += c.stats["psum_spills"] > 0
                seen["fence"] += c.stats["fence"] > 0
                seen["stride 2"] += layer.stride == 2
                seen["groups"] += layer.groups > 1
                seen[f"dim {hw.dim}"] += 1
                for op, b in zip(("input", "weight", "output"), m.buffers):
                    seen[f"{op} single"] += b == 1
                seen[m.order] += 1
    # the draw covers what it should (so that it cannot silently shrink)
    for what in ("int32", "int8", "psum spills", "fence", "stride 2", "groups", "dim 4", "dim 8",
                 "dim 16", "input single", "weight single", "output single"):
        assert seen[what] >= 3, (what, seen[what])
    assert len([k for k in seen if isinstance(k, tuple)]) >= 50  # distinct loop orders
    assert seen["cases"] >= 200


RESNET50_EQ = [(4, "layer1.0.conv1"), (4, "layer1.0.conv2"), (16, "conv1"), (16, "layer2.0.conv2"),
               (16, "layer3.0.downsample"), (16, "fc")]


@pytest.mark.parametrize("dim,name", RESNET50_EQ, ids=[f"dim{d}-{n}" for d, n in RESNET50_EQ])
def test_matches_reference_on_resnet50_default_mappings(dim, name):
    from search.workloads import resnet50

    layer = next(L for L in resnet50() if L.name == name)
    hw = HardwareConfig(dim=dim)
    c = assert_same_as_reference(hw, default_mapping(hw, layer), layer)
    assert c.stats["instructions"] > 9_000


# ---------------------------------------------------------------------------------------
# DRAM sizing of the simulation-only model
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", LAYERS, ids=[L.name for L in LAYERS])
def test_dram_bytes_needed_bounds_every_allocation(layer):
    """The bound holds for psum-spilling and plain mappings, int32 and int8 outputs, and a
    DRAM of exactly `dram_mb_for` megabytes is enough."""
    from sim.compiler import dram_bytes_needed, dram_mb_for

    rng = random.Random(f"dram-{layer.name}")
    need = dram_bytes_needed(layer)
    orders = [None, list(REDUCTION) + list(OUTPUT)]
    for order in orders:
        for _ in range(3):
            m = random_mapping(rng, HW4, layer, order=order)
            for out in ("int32", "int8"):
                c = compile_layer(HW4, m, layer, out=out)
                assert c.image._next <= need
                assert c.image._next <= dram_bytes_needed(layer, out=out)
    # hand count for one layer: base 4096 + input 1*(5+2)*(5+2)*3 = 147 -> 192
    # + weights 4*3*3*3 = 108 -> 128 + outputs 1*5*5*4 = 100 int32 = 400 -> 448 + psums 448
    one = Layer(name="hand", n=1, k=4, c=3, p=5, q=5, r=3, s=3, stride=1, padding=1)
    assert dram_bytes_needed(one) == 4096 + 192 + 128 + 448 + 448
    assert dram_mb_for([one]) == 1 and dram_mb_for([one], least=16) == 16
    big = Layer.gemm("big", 4096, 1024, 1024)     # 4 MB + 1 MB + 16 MB + 16 MB of psums
    assert dram_mb_for([one, big]) == 64
