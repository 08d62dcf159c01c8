"""Single- and double-buffered tiles on the RTL: random mappings with random buffering
(random loop orders, so partial-sum spills too) are bit-exact against numpy through the
lean harness, and two per array size also through cocotb with identical cycles and
counters; a 16x16 mapping
that fills over 90 % of a 256 KB scratchpad with one single-buffered tile runs and
verifies. The sequential semantics of the same programs are in tests/sim/test_buffers.py.
"""

from __future__ import annotations

import itertools
import random

import pytest

from hw.layer import Layer
from hw.mapping import Mapping
from sim.evaluate import evaluate
from tests.hw.rtl_common import CONFIGS
from tests.sim.test_buffers import random_buffered_mapping

LAYERS = [
    Layer(name="c3x3", n=1, k=12, c=10, p=6, q=6, r=3, s=3, stride=1, padding=1),
    Layer.gemm("gemm", 24, 20, 12),
]
BUFFERINGS = [b for b in itertools.product((1, 2), repeat=3) if b != (2, 2, 2)]


def _check_harnesses(hw, mapping, layer, cache, seed, cocotb: bool):
    lean = evaluate(hw, mapping, layer, seed=seed, cache_dir=cache, harness="lean")
    assert lean.feasible and lean.verified, mapping.to_json()
    if cocotb:   # the verification harness, cycle for cycle
        coco = evaluate(hw, mapping, layer, seed=seed, cache_dir=cache, harness="cocotb")
        assert coco.verified and lean.cycles == coco.cycles, mapping.to_json()
        assert lean.counts == coco.counts and lean.busy == coco.busy
    return lean


@pytest.mark.parametrize("dim", [4, 8, 16, pytest.param(32, marks=pytest.mark.slow)])
def test_random_buffering_bit_exact_lean_and_cocotb(dim, sim_cache_dir):
    hw = CONFIGS[dim]
    rng = random.Random(f"rtl-buf-{dim}")
    for i, (layer, buffers) in enumerate(zip(itertools.cycle(LAYERS), rng.sample(BUFFERINGS, 4))):
        m = random_buffered_mapping(rng, hw, layer, buffers)
        r = _check_harnesses(hw, m, layer, sim_cache_dir, seed=i, cocotb=i < 2)   # one of each layer
        # the same factors double-buffered, where they fit, run the same counts (only timing differs)
        double = Mapping(factors=m.factors, order=m.order)
        if double.check(hw, layer):
            d = evaluate(hw, double, layer, seed=i, cache_dir=sim_cache_dir)
            assert d.verified and d.counts == r.counts


def test_single_buffered_tile_fills_90_percent_of_the_scratchpad(sim_cache_dir):
    hw = CONFIGS[16]                       # 256 KB scratchpad = 16,384 rows, 64 KB accumulator
    layer = Layer.gemm("fill", 1024, 224, 16)
    m = Mapping.for_layer(layer, spad={"P": 1024, "C": 14}, array={"C": 16, "K": 16},
                          buffers={"input": 1, "weight": 2, "output": 1})
    fp = m.footprint(hw, layer)
    # input: 1,024 pixels x 14 channel blocks; weights 224 rows, twice; output 1,024 rows once
    assert (fp.input_rows, fp.weight_rows, fp.output_rows) == (14336, 224, 1024)
    assert fp.sp_rows_needed / hw.sp_rows >= 0.90 and fp.acc_rows_needed == hw.acc_rows
    double = Mapping(factors=m.factors, order=m.order).check(hw, layer)
    assert not double and "double-buffered" in double.reason
    r = evaluate(hw, m, layer, seed=3, cache_dir=sim_cache_dir)
    assert r.feasible and r.verified and r.counts["macs"] == layer.macs
