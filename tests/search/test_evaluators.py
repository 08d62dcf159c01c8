"""search.evaluators: the analytical evaluator against per-layer cost.evaluate and a
hand-summed network EDP; the RTL evaluator on a tiny layer (verified, priced)."""

import math

import pytest

import cost
from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import default_mapping
from search.evaluators import (AnalyticalEvaluator, RTLEvaluator, layer_objective, make_evaluator,
                               network_objective)
from search.software import SoftwareSpace

HW = HardwareConfig(dim=8, sp_kb=32, acc_kb=16)
LAYERS = [Layer.conv("conv", n=1, k=16, c=8, p=4, q=4, r=3, s=3, padding=1, count=3), Layer.gemm("fc", m=8, k=16, n=8)]


def test_analytical_network_cost_is_the_product_of_count_weighted_sums():
    maps = [default_mapping(HW, lay) for lay in LAYERS]
    ev = AnalyticalEvaluator().evaluate(HW, LAYERS, maps)
    ref = [cost.evaluate(HW, m, lay) for m, lay in zip(maps, LAYERS)]
    assert [r.cycles for r in ev.results] == [r.cycles for r in ref]
    e = 3 * ref[0].energy_pj + ref[1].energy_pj
    c = 3 * ref[0].cycles + ref[1].cycles
    assert ev.cost.edp == pytest.approx(e * c, rel=1e-12)
    assert network_objective(ev.cost, "cycles") == c
    assert layer_objective(ref[1], "edp") == pytest.approx(ref[1].energy_pj * ref[1].cycles)


def test_analytical_batch_matches_single_evaluations():
    batch = SoftwareSpace(HW, LAYERS[0]).pool(50, seed=2)
    res = AnalyticalEvaluator().results(HW, LAYERS[0], batch)
    for i in range(0, 50, 7):
        r = cost.evaluate(HW, batch.mapping(i), LAYERS[0])
        assert res[i].cycles == r.cycles and res[i].energy_pj == pytest.approx(r.energy_pj)


def test_rtl_evaluator_verifies_and_prices(sim_cache_dir):
    from tests.hw.rtl_common import CFG4

    lay = Layer.gemm("g", m=8, k=8, n=8)
    ev = RTLEvaluator(workers=1, cache_dir=sim_cache_dir).evaluate(CFG4, [lay], [default_mapping(CFG4, lay)])
    r = ev.results[0]
    assert r.fidelity == "rtl" and r.verified and r.counts["macs"] == lay.macs
    assert r.energy_pj == pytest.approx(float(cost.energy_pj(r.counts, CFG4.dim, CFG4.sp_kb, CFG4.acc_kb)))
    assert ev.cost.edp == pytest.approx(r.energy_pj * r.cycles)


def test_bad_arguments():
    with pytest.raises(ValueError, match="fidelity must be analytical or rtl; got 'fpga'"):
        make_evaluator("fpga")
    with pytest.raises(ValueError, match="objective must be one of edp, cycles, energy"):
        layer_objective(cost.evaluate(HW, default_mapping(HW, LAYERS[1]), LAYERS[1]), "area")
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        RTLEvaluator(workers=0)
    assert math.isinf(network_objective(cost.NetworkCost(math.nan, math.nan, math.nan, math.nan, False, 1)))
