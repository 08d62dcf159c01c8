"""Single- and double-buffered tiles per operand (`Mapping.buffers`) through the compiler.

Sequential semantics: every buffering of random mappings (all loop orders, partial-sum
spills, grouped / depthwise, batched) computes exactly the numpy reference under the ISA
interpreter; the placement uses one region for a single-buffered operand; and a
mapping that only fits single-buffered is refused double-buffered, per operand. The RTL
runs of the same programs are in tests/sim/test_buffers_rtl.py.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from hw.config import HardwareConfig
from hw.layer import LOOPS, Layer
from hw.mapping import OPERANDS, Mapping, divisors
from sim.compiler import compile_layer
from sim.reference import conv_reference
from tests.sim.test_compiler import LAYERS, run_compiled

HW4 = HardwareConfig(dim=4, sp_kb=8, acc_kb=8, dma_bus_bytes=8, dma_max_req_bytes=16, dram_mb=1)
HW8 = HardwareConfig(dim=8, sp_kb=8, acc_kb=8, dram_mb=1)
BUFFERINGS = list(itertools.product((1, 2), repeat=3))


def random_buffered_mapping(rng: random.Random, hw: HardwareConfig, layer: Layer, buffers,
                            tries: int = 2000, prefer_large: bool = True) -> Mapping:
    """A random fitting mapping with the given buffering; with ``prefer_large`` the
    largest-tile one of a few fitting draws (single buffering is there to allow big tiles)."""
    dims = layer.dims
    found = []
    for _ in range(tries):
        array = {lp: 1 for lp in LOOPS}
        for lp in ("C", "K"):
            array[lp] = rng.choice([v for v in divisors(dims[lp]) if v <= hw.dim])
        spad = {lp: rng.choice(divisors(dims[lp] // array[lp])) for lp in LOOPS}
        m = Mapping.for_layer(layer, spad=spad, array=array, order=tuple(rng.sample(LOOPS, 7)),
                              buffers=buffers)
        if m.check(hw, layer):
            found.append(m)
            if not prefer_large or len(found) == 6:
                break
    assert found, f"no fitting mapping with buffers {buffers} for {layer}"
    return max(found, key=lambda m: np.prod(list(m.tiles().values())))


@pytest.mark.parametrize("hw", [HW4, HW8], ids=["dim4", "dim8"])
@pytest.mark.parametrize("layer", LAYERS, ids=[L.name for L in LAYERS])
def test_every_buffering_matches_the_reference(hw, layer):
    rng = random.Random(f"buf-{hw.dim}-{layer.name}")
    np_rng = np.random.default_rng(rng.randrange(1 << 30))
    for i, buffers in enumerate(BUFFERINGS):
        m = random_buffered_mapping(rng, hw, layer, buffers)
        out = "int32" if i % 2 == 0 else "int8"
        c = compile_layer(hw, m, layer, out=out, relu=i % 4 == 1, shift=i % 5 if out == "int8" else 0)
        x = np_rng.integers(-128, 128, (layer.n, layer.c, layer.h, layer.w), dtype=np.int8)
        w = np_rng.integers(-128, 128, (layer.k, layer.c_per_group, layer.r, layer.s), dtype=np.int8)
        want = conv_reference(x, w, layer, out=out, relu=i % 4 == 1, shift=i % 5 if out == "int8" else 0)
        np.testing.assert_array_equal(run_compiled(c, x, w), want, err_msg=f"{layer}\n{m}")
        if i < 2:
            c.validate()
        fp = m.footprint(hw, layer)
        assert c.stats["sp_rows_used"] == fp.sp_rows_needed <= hw.sp_rows
        assert c.stats["acc_rows_used"] == fp.acc_rows_needed <= hw.acc_rows


def test_single_buffered_spills_and_reloads_partial_sums():
    """Reduction loops outside the output loops with a single-buffered output: each
    spill must be stored before the next tile's partial sums are reloaded into the one
    accumulator buffer (a program-order bug here gives wrong sums)."""
    layer = Layer.conv("c3", k=8, c=8, r=3, p=4, padding=1)
    rng = random.Random(5)
    np_rng = np.random.default_rng(5)
    seen = 0
    for _ in range(300):
        m = random_buffered_mapping(rng, HW4, layer, (rng.choice((1, 2)), rng.choice((1, 2)), 1),
                                    prefer_large=False)
        m = Mapping(factors=m.factors, order=("C", "R", "S", "N", "K", "P", "Q"), buffers=m.buffers)
        dram = m.level("dram")
        if not (any(dram[lp] > 1 for lp in "CRS") and any(dram[lp] > 1 for lp in "KPQ")):
            continue
        c = compile_layer(HW4, m, layer)
        assert c.stats["psum_spills"] > 0 and c.stats["psum_reloads"] > 0
        x = np_rng.integers(-128, 128, (1, 8, 4, 4), dtype=np.int8)
        w = np_rng.integers(-128, 128, (8, 8, 3, 3), dtype=np.int8)
        np.testing.assert_array_equal(run_compiled(c, x, w), conv_reference(x, w, layer))
        seen += 1
        if seen == 3:
            break
    assert seen == 3


def test_single_buffer_placement_and_json():
    hw = HardwareConfig(dim=16, sp_kb=256, acc_kb=256)
    layer = Layer.conv("c", k=64, c=64, r=3, p=56, padding=1)
    m = Mapping.for_layer(layer, spad={"P": 28, "Q": 28, "K": 4, "R": 3, "S": 3}, array={"C": 16, "K": 16},
                          buffers={"input": 1, "weight": 2, "output": 1})
    fp = m.footprint(hw, layer)
    # input tile 30 x 30 pixels x 1 channel block = 900 rows; weights 3*3 x 4 blocks x 16 = 576;
    # output 28 x 28 pixels x 4 blocks = 3136 rows of the 256 KB / (4 * 16) = 4096
    assert (fp.input_rows, fp.weight_rows, fp.output_rows) == (900, 576, 3136)
    assert fp.sp_rows_needed == 900 + 2 * 576 and fp.acc_rows_needed == 3136 and hw.acc_rows == 4096
    assert m.check(hw, layer)
    c2 = Mapping(factors=m.factors, order=m.order).check(hw, layer)   # double-buffered: 6272 rows
    assert c2.reason == "output tile needs 6272 accumulator rows double-buffered, capacity 4096"
    assert Mapping.from_json(m.to_json()) == m
    assert m.to_dict()["buffers"] == {"input": 1, "weight": 2, "output": 1}
    assert "buffers" not in Mapping(factors=m.factors, order=m.order).to_dict()
    c = compile_layer(hw, m, layer)
    assert c.stats["sp_rows_used"] == 900 + 2 * 576 and c.stats["acc_rows_used"] == 3136


def test_refusals_name_the_operand():
    hw = HardwareConfig(dim=16, sp_kb=64, acc_kb=16)
    layer = Layer.conv("c", k=64, c=64, r=3, p=28, padding=1)
    m = Mapping.for_layer(layer, spad={"P": 14, "Q": 14, "K": 4}, array={"C": 16, "K": 16},
                          buffers={"input": 1, "weight": 1, "output": 1})
    c = m.check(hw, layer)
    assert not c and c.reason == "output tile needs 784 accumulator rows single-buffered, capacity 256"
    # input 16 x 16 pixels = 256 rows once, weights 3*3 x 16 = 144 rows twice: 544 > 512
    m2 = Mapping.for_layer(layer, spad={"P": 14, "Q": 14, "R": 3, "S": 3}, array={"C": 16, "K": 16},
                           buffers={"input": 1, "weight": 2, "output": 1})
    c2 = m2.check(HardwareConfig(dim=16, sp_kb=8, acc_kb=16), layer)
    assert c2.code == 4 and c2.reason == ("input tile 256 rows single-buffered + weight tile 144 rows "
                                          "double-buffered need 544 scratchpad rows, capacity 512")
    bad = Mapping(factors=m.factors, order=m.order, buffers=(2, 3, 2))
    assert bad.check(hw, layer).reason == "weight buffers is 3; a tile is single- (1) or double-buffered (2)"
    assert OPERANDS == ("input", "weight", "output")


def test_default_mapping_with_single_buffering_takes_larger_tiles():
    """With an operand single-buffered the greedy tiler may grow the tile into the room
    freed; every result fits with its own buffering, and all-double is today's mapping."""
    from hw.mapping import default_mapping
    from search.workloads import get_workload, unique_layers

    hw = HardwareConfig(dim=16, sp_kb=64, acc_kb=64)
    grew = 0
    for layer in unique_layers(get_workload("resnet50")):
        double = default_mapping(hw, layer)
        assert double == default_mapping(hw, layer, (2, 2, 2)) and double.buffers == (2, 2, 2)
        single = default_mapping(hw, layer, {"input": 1, "weight": 1, "output": 1})
        assert single.buffers == (1, 1, 1) and single.check(hw, layer)
        macs = [int(np.prod(list(m.tiles().values()))) for m in (double, single)]
        assert macs[1] >= macs[0]
        grew += macs[1] > macs[0]
    assert grew >= 12      # most of the 24 layers get a larger tile
    with pytest.raises(Exception, match="buffers must be 1 or 2"):
        default_mapping(hw, unique_layers(get_workload("resnet50"))[0], (2, 0, 2))
