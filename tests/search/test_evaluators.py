"""search.evaluators: the analytical evaluator against per-layer cost.evaluate and a
hand-summed network EDP; the RTL evaluator on a tiny layer (verified, priced)."""

import math

import pytest

import cost
from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import default_mapping
from search.evaluators import (AnalyticalEvaluator, RTLEvaluator, check_simulable, layer_objective,
                               make_evaluator, network_objective, simulation_hardware)
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


def test_rtl_evaluator_sizes_the_simulation_dram(sim_cache_dir):
    """A layer bigger than the design's 1 MB DRAM model runs on a 2 MB one; the small
    layer evaluated in the same call (so on the 2 MB model too) has the cycles and
    counters it has on the 1 MB model: the DRAM model's size is not timing."""
    from sim.compiler import dram_bytes_needed
    from tests.hw.rtl_common import CFG4

    small, big = Layer.gemm("g", m=8, k=8, n=8), Layer.gemm("big", m=512, k=64, n=256)
    assert CFG4.dram_mb == 1 and 1 << 20 < dram_bytes_needed(big) <= 2 << 20
    ev = RTLEvaluator(workers=2, cache_dir=sim_cache_dir)
    alone = ev.evaluate(CFG4, [small], [default_mapping(CFG4, small)]).results[0]
    both = ev.evaluate(CFG4, [small, big], [default_mapping(CFG4, lay) for lay in (small, big)]).results
    assert all(r.verified for r in both) and both[1].counts["macs"] == big.macs
    assert (both[0].cycles, both[0].counts, both[0].energy_pj) == (alone.cycles, alone.counts, alone.energy_pj)


def test_simulation_hardware_and_check_simulable():
    from sim.compiler import dram_bytes_needed, dram_mb_for
    from search.software import MappingBatch

    small, big = Layer.gemm("g", m=8, k=8, n=8), Layer.gemm("big", m=4096, k=1024, n=1024)
    hw2 = HardwareConfig(dim=16)
    one = MappingBatch.from_mappings([default_mapping(HW, small)])
    sized = simulation_hardware([(HW, small, one), (HW, big, one), (hw2, small, one)])
    assert sized == {HW: HardwareConfig(dim=8, sp_kb=32, acc_kb=16, dram_mb=dram_mb_for([big])), hw2: hw2}
    assert dram_mb_for([big]) == 64 and hw2.dram_mb == 16
    check_simulable([small, big])          # 37 MB: fits the 256 MB model
    huge = Layer.gemm("huge", m=16384, k=1024, n=2048)   # 16 MB in, 2 MB weights, 2 x 128 MB int32 out + psums
    assert dram_bytes_needed(huge) == 287_313_920 > 256 << 20
    with pytest.raises(ValueError, match=r"layer 'huge' needs 287,313,920 bytes of simulation DRAM, more "
                                         r"than the largest simulation DRAM model \(256 MB\): search it with "
                                         r"--fidelity analytical"):
        check_simulable([small, huge])


def test_bad_arguments():
    with pytest.raises(ValueError, match="fidelity must be analytical or rtl; got 'fpga'"):
        make_evaluator("fpga")
    with pytest.raises(ValueError, match="objective must be one of edp, cycles, energy"):
        layer_objective(cost.evaluate(HW, default_mapping(HW, LAYERS[1]), LAYERS[1]), "area")
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        RTLEvaluator(workers=0)
    assert math.isinf(network_objective(cost.NetworkCost(math.nan, math.nan, math.nan, math.nan, False, 1)))
