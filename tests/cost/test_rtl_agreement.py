"""The analytical model against the RTL on a small fixed corpus.

Every counter the mapping determines must equal the RTL's exactly; cycles must agree
within the error measured by scripts/validate_cost.py on 300 random triples (median
|error| about 3.5 %, p95 about 18 %: BENCHMARKS.md). Uses the DIM 4 / 8 / 16
configurations the RTL tests build anyway (tests/hw/rtl_common.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import cost
from hw.layer import Layer
from hw.mapping import Mapping
from hw.result import COUNT_KEYS
from search.space import MappingSpace
from sim.evaluate import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hw"))
from rtl_common import CFG4, CFG8, CFG16

CASE_ERROR = 0.30     # per case (validate_cost.py: p95 |error| ~18 %, worst ~40 %)
MEDIAN_ERROR = 0.08   # over the corpus (validate_cost.py: median ~3.5 %)


def _corpus():
    cases = [
        # hand-computed cases of test_model.py, on the test configurations
        (CFG4, Mapping.for_layer(Layer.gemm("g", m=4, k=4, n=4), spad={"P": 4}, array={"C": 4, "K": 4}),
         Layer.gemm("g", m=4, k=4, n=4)),
        (CFG16, Mapping.for_layer(Layer.gemm("fc", m=1, k=256, n=256), spad={"C": 16},
                                  array={"C": 16, "K": 16}), Layer.gemm("fc", m=1, k=256, n=256)),
        (CFG16, Mapping.for_layer(Layer.conv("pw", n=1, k=32, c=32, r=1, h=64, w=1), spad={"C": 2, "K": 2},
                                  array={"C": 16, "K": 16}, order=("N", "K", "C", "R", "S", "Q", "P")),
         Layer.conv("pw", n=1, k=32, c=32, r=1, h=64, w=1)),
    ]
    layers = [Layer.conv("c3", n=1, k=24, c=16, r=3, h=6, stride=1, padding=1),
              Layer.conv("s2", n=1, k=32, c=16, r=1, h=8, stride=2),
              Layer.conv("dw", n=1, k=16, c=16, r=3, h=5, padding=1, groups=16),
              Layer.gemm("gemm", m=24, k=48, n=40)]
    rng = np.random.default_rng(2026)
    for hw in (CFG4, CFG8, CFG16):
        for layer in layers:
            m = MappingSpace(hw, layer).sample(1, seed=int(rng.integers(1 << 30)))[0]
            cases.append((hw, m, layer))
    return cases


CORPUS = _corpus()


@pytest.fixture(scope="module")
def pairs(sim_cache_dir):
    return [(evaluate(hw, m, layer, cache_dir=sim_cache_dir), cost.evaluate(hw, m, layer))
            for hw, m, layer in CORPUS]


def test_counters_equal_the_rtl_exactly(pairs):
    for (hw, m, layer), (rtl, ana) in zip(CORPUS, pairs):
        assert rtl.feasible and rtl.verified
        for k in COUNT_KEYS:
            assert ana.counts[k] == rtl.counts[k], (layer.name, hw.dim, k)


def test_cycles_agree_within_the_measured_error(pairs):
    errors = []
    for (hw, m, layer), (rtl, ana) in zip(CORPUS, pairs):
        err = ana.cycles / rtl.cycles - 1
        errors.append(abs(err))
        assert abs(err) <= CASE_ERROR, (layer.name, hw.dim, rtl.cycles, ana.cycles)
    assert np.median(errors) <= MEDIAN_ERROR
    # and the ranking: Spearman's rho over the corpus
    from scipy.stats import spearmanr
    assert spearmanr([p[0].cycles for p in pairs], [p[1].cycles for p in pairs])[0] >= 0.95


def test_rtl_energy_prices_the_measured_counters(pairs):
    """A high-fidelity sample: cycles from the RTL, energy from its measured counts; with
    exact counters it equals the analytical energy."""
    for (hw, m, layer), (rtl, ana) in zip(CORPUS[:4], pairs[:4]):
        priced = cost.price(rtl, hw)
        assert priced.cycles == rtl.cycles and priced.fidelity == "rtl"
        assert priced.energy_pj == pytest.approx(ana.energy_pj, rel=1e-12)
        assert priced.edp == pytest.approx(priced.energy_pj * rtl.cycles)


def test_bigger_array_can_be_slower(sim_cache_dir):
    """The same small-tile mapping on 8x8 and 16x16 arrays: every weight block costs the
    loader dim + 2 cycles and the pipeline drains in 2 dim, so the bigger array is
    slower, in the RTL and in the model alike (why the monotonicity test of
    test_model.py is conditional)."""
    layer = Layer.conv("c", n=1, k=16, c=8, r=3, h=6, stride=1, padding=1)
    m = Mapping.for_layer(layer, spad={"Q": 2, "R": 3, "S": 3}, array={"C": 2, "K": 8})
    rtl8, rtl16 = (evaluate(hw, m, layer, cache_dir=sim_cache_dir) for hw in (CFG8, CFG16))
    ana8, ana16 = (cost.evaluate(hw, m, layer) for hw in (CFG8, CFG16))
    assert rtl16.cycles > 1.4 * rtl8.cycles
    assert ana16.cycles > 1.4 * ana8.cycles
