"""The analytical model (cost/): exact counts, hand-computed latencies, monotonicity,
the vectorised path against the scalar one, and energy / area arithmetic.

Agreement with the RTL itself is in test_rtl_agreement.py.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import cost
from cost.energy import EnergyError, EnergyTable
from cost.kernel import block_runs, compute_blocks
from cost.model import evaluate_arrays
from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import Mapping, default_mapping
from search.space import MappingSpace
from search.workloads import get_workload, unique_layers

# DIM 4 with Gemmini's memory system: 16 B bus, 64 B requests, 16 in flight, latency 40,
# 8 B/cycle, so one beat moves every 2 cycles.
HW4 = HardwareConfig(dim=4, sp_kb=64, acc_kb=32, dram_mb=1)
HW16 = HardwareConfig(dim=16, dram_mb=4, imem_depth=16384)   # tests/hw/rtl_common.CFG16


# ---------------------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------------------

def test_single_block_by_hand():
    """A 4x4x4 GEMM in one tile on a 4x4 array: one step, one weight block. (The RTL of
    this configuration: 141 cycles.)"""
    layer = Layer.gemm("g", m=4, k=4, n=4)
    m = Mapping.for_layer(layer, spad={"P": 4}, array={"C": 4, "K": 4})
    r = cost.evaluate(HW4, m, layer)
    # Counts: A and B are 16 bytes each, read once; C is 16 int32 written once.
    assert r.counts == {
        "macs": 64, "dram_bytes_read": 32, "dram_bytes_written": 64,
        "sp_writes": 8,        # 4 input rows + 4 weight rows
        "sp_reads": 8,         # 4 A rows streamed + 4 B rows preloaded
        "acc_writes": 4,       # one per A row
        "acc_reads": 4,        # no read-modify-write (first block), 4 rows stored
        "weight_loads": 4,
    }
    # Latency, mechanism by mechanism:
    # prologue: 8 rows of 4 B, one 16 B beat and one request each: issued in 8 cycles,
    #   8 beats at 8 B/cycle take 16 cycles, the last arrives one latency (40) later;
    #   the 16 rows in flight allow far more. Plus 11 cycles of configuration and of
    #   the load pipeline before the first row enters the array.
    prologue = max(8, 8 * 16 / 8) + 40 + 11
    # the step: one run of 4 rows, but a weight block costs at least dim + 2 cycles.
    step = max(4, 4 + 2)
    # epilogue: drain 2*4 + 2, store 4 rows of 16 B (4 beats, 8 cycles), the last
    # acknowledgement 40 cycles later, 11 cycles of store pipeline and HALT.
    epilogue = (2 * 4 + 2) + max(4, 4 * 16 / 8) + 40 + 11
    assert r.cycles == math.ceil(prologue + step + epilogue)
    assert r.fidelity == "analytical" and r.feasible and not r.verified


def test_dma_bound_layer_by_hand():
    """One output pixel, 256x256 weights used once: the DMA bounds the layer. Not its
    bandwidth (8 B/cycle) but its rows in flight: 16 rows of 16 B, each held for the
    40-cycle latency + 3 + one 2-cycle beat, move 5.7 B/cycle. (The RTL: 11,470 cycles.)"""
    layer = Layer.gemm("fc", m=1, k=256, n=256)
    m = Mapping.for_layer(layer, spad={"C": 16}, array={"C": 16, "K": 16})  # 16 steps over K
    r = cost.evaluate(HW16, m, layer)
    weight_bytes, input_bytes = 256 * 256, 256
    assert r.counts["dram_bytes_read"] == weight_bytes + input_bytes   # input loaded once
    assert r.counts["dram_bytes_written"] == 256 * 4
    steps, rows_per_step = 16, 256
    rows_in_flight_bound = steps * rows_per_step * (40 + 3 + 2) / 16
    # the execute unit needs 16 blocks x (16 + 2) cycles per step, far less than that
    assert rows_in_flight_bound > weight_bytes / HW16.dram_bytes_per_cycle
    assert rows_in_flight_bound <= r.cycles <= 1.1 * rows_in_flight_bound
    assert r.busy["load"] >= 0.9 * r.cycles


def test_preload_bound_layer_by_hand():
    """One pixel per step against four stationary 16x16 weight blocks: every block costs
    the weight loader's dim + 2 cycles, not the single row it streams. (The RTL: 5,114.)"""
    layer = Layer.conv("pw", n=1, k=32, c=32, r=1, h=64, w=1)      # 64 x 1 output pixels
    m = Mapping.for_layer(layer, spad={"C": 2, "K": 2}, array={"C": 16, "K": 16},
                          order=("N", "K", "C", "R", "S", "Q", "P"))
    assert m.factor("dram", "P") == 64
    r = cost.evaluate(HW16, m, layer)
    assert r.counts["dram_bytes_read"] == 32 * 32 + 64 * 32    # weights once, inputs once
    steps, blocks = 64, 4
    preload_bound = steps * blocks * (16 + 2)
    assert preload_bound <= r.cycles <= 1.1 * preload_bound


def test_compute_blocks_match_the_compiler():
    """The kernel's COMPUTE_BLOCKs per weight block equal the compiler's own count, and its
    compiled copy of `hw.blocks.compute_blocks` equals the original on many shapes."""
    from itertools import product

    from hw.blocks import compute_blocks as original
    from sim.compiler import compile_layer
    for layer, spad in [
        (Layer.conv("a", n=1, k=8, c=8, r=3, h=6, stride=1, padding=1), {"P": 6, "Q": 6}),
        (Layer.conv("b", n=1, k=8, c=8, r=1, h=8, stride=2), {"P": 4, "Q": 2}),
        (Layer.conv("d", n=2, k=8, c=8, r=3, h=6, stride=1, padding=1), {"P": 6, "Q": 6, "N": 2}),
        (Layer.gemm("c", m=20, k=8, n=8), {"P": 20}),
    ]:
        m = Mapping.for_layer(layer, spad=spad, array={"C": 8, "K": 8})
        compiled = compile_layer(HardwareConfig(dim=8, sp_kb=64, acc_kb=32, dram_mb=1), m, layer)
        T = m.tiles()
        in_h = (T["P"] - 1) * layer.stride + T["R"]
        in_w = (T["Q"] - 1) * layer.stride + T["S"]
        blocks, cfg, cycles = block_runs(T["N"], T["P"], T["Q"], layer.stride, in_h, in_w, 18.0)
        assert blocks == compiled.stats["pixel_runs_per_block"] and cfg == 0
        # every pixel streams once; a block costs at least 2 cycles
        assert max(T["N"] * T["P"] * T["Q"], 2 * blocks) <= cycles
    for tn, tp, tq, st, r, s in product((1, 2, 3), (1, 2, 5), (1, 3, 4, 7), (1, 2, 3), (1, 2, 3), (1, 3)):
        args = (tn, tp, tq, st, (tp - 1) * st + r, (tq - 1) * st + s)
        assert tuple(compute_blocks(*args)) == original(*args), args


# ---------------------------------------------------------------------------------------
# exact counts against the compiler's own statistics (an independent derivation)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_dram_bytes_equal_the_compiled_program(seed):
    """DRAM bytes of the model equal the bytes the compiled program moves, for random
    mappings and loop orders (partial-sum spills included)."""
    from sim.compiler import compile_layer
    rng = np.random.default_rng(seed)
    hw = HardwareConfig(dim=8, sp_kb=32, acc_kb=16, dram_mb=2)
    layer = Layer.conv("c", n=1, k=24, c=16, r=3, h=6, stride=1, padding=1)
    space = MappingSpace(hw, layer)
    for m in space.sample(6, seed=int(rng.integers(1 << 30))):
        st = compile_layer(hw, m, layer).stats
        r = cost.evaluate(hw, m, layer)
        assert r.counts["dram_bytes_read"] == (st["input_bytes_loaded"] + st["weight_bytes_loaded"]
                                               + st["psum_bytes_loaded"])
        assert r.counts["dram_bytes_written"] == st["output_bytes_stored"] + st["psum_bytes_stored"]
        assert r.counts["macs"] == layer.macs
        assert r.extra["instructions"] == pytest.approx(st["instructions"], rel=0.03)


# ---------------------------------------------------------------------------------------
# monotonicity
# ---------------------------------------------------------------------------------------

def _random_batch(hw, layer, n, seed):
    space = MappingSpace(hw, layer)
    return space.from_unit_arrays(np.random.default_rng(seed).random((n, 8)))


LAYERS = unique_layers(get_workload("resnet50"))[::3] + [Layer.gemm("qkv", m=128, k=768, n=768)]


@pytest.mark.parametrize("change", [
    {"dram_bytes_per_cycle": 16}, {"dma_max_inflight": 32}, {"dram_latency": 20},
    {"dram_bytes_per_cycle": 16, "dma_bus_bytes": 32, "dma_max_req_bytes": 128},
])
def test_more_bandwidth_is_never_slower(change):
    for i, layer in enumerate(LAYERS):
        hw = HardwareConfig(dim=16, sp_kb=128, acc_kb=64)
        f, o = _random_batch(hw, layer, 2000, i)
        base = evaluate_arrays(layer, hw, f, o)
        more = evaluate_arrays(layer, dataclasses.replace(hw, **change), f, o)
        ok = base["feasible"]
        assert ok.sum() > 100
        assert np.all(more["cycles"][ok] <= base["cycles"][ok] * (1 + 1e-12)), layer.name


@pytest.mark.parametrize("small,big", [(4, 8), (8, 16), (16, 32)])
def test_bigger_array_is_never_slower_for_compute_bound_tiles(small, big):
    """Same mapping, bigger array: never slower when the run is compute-bound on the
    smaller array (execute busy >= 90 % of the cycles), the tile has at least `big`
    input and output channels (so the bigger array runs fewer weight blocks) and every
    block streams at least 2 x big rows. Without those conditions a bigger array CAN be
    slower, in the RTL too: its weight blocks cost dim + 2 cycles each and its pipeline
    drains in 2 dim (test_rtl_agreement.py::test_bigger_array_can_be_slower)."""
    checked = 0
    for i, layer in enumerate(LAYERS):
        hw = HardwareConfig(dim=small, sp_kb=256, acc_kb=256)
        f, o = _random_batch(hw, layer, 4000, 10 + i)
        T = f[:, 1] * f[:, 2]
        pixels = T[:, 0] * T[:, 3] * T[:, 4]
        a = evaluate_arrays(layer, hw, f, o)
        b = evaluate_arrays(layer, dataclasses.replace(hw, dim=big), f, o)
        sel = (a["feasible"] & b["feasible"] & (T[:, 1] >= big) & (T[:, 2] >= big)
               & (pixels >= 2 * big) & (a["busy_exec"] >= 0.9 * a["cycles"]))
        checked += sel.sum()
        assert np.all(b["cycles"][sel] <= a["cycles"][sel] * (1 + 1e-12)), layer.name
    assert checked > 50


# ---------------------------------------------------------------------------------------
# vectorised == scalar, infeasible handling
# ---------------------------------------------------------------------------------------

def test_batch_equals_one_at_a_time():
    layer = Layer.conv("c", n=1, k=64, c=32, r=3, h=14, stride=2, padding=1)
    hws = [HardwareConfig(dim=d, sp_kb=kb, acc_kb=a) for d, kb, a in
           [(4, 16, 8), (8, 64, 32), (16, 256, 64), (32, 128, 128)]]
    pairs = []
    for i, hw in enumerate(hws):
        pairs += [(hw, m) for m in MappingSpace(hw, layer).sample(5, seed=i, feasible_only=False)]
    batch = cost.evaluate_many([h for h, _ in pairs], [m for _, m in pairs], layer)
    for (hw, m), rb in zip(pairs, batch):
        rs = cost.evaluate(hw, m, layer)
        assert rb == rs
        if not rs.feasible:
            assert rs.reason == m.check(hw, layer).reason


def test_infeasible_mappings_are_flagged_with_the_reason():
    layer = Layer.gemm("g", m=64, k=64, n=64)
    hw = HardwareConfig(dim=4, sp_kb=8, acc_kb=8)
    big = Mapping.for_layer(layer, spad={"P": 64, "C": 16, "K": 16}, array={"C": 4, "K": 4})
    r = cost.evaluate(hw, big, layer)
    assert not r.feasible and r.cycles is None and "scratchpad" in r.reason
    assert r.reason == big.check(hw, layer).reason


def test_default_mapping_of_every_resnet_layer_is_feasible_and_sane():
    for layer in unique_layers(get_workload("resnet50")):
        r = cost.evaluate(HW16, default_mapping(HW16, layer), layer)
        assert r.feasible
        assert 0 < r.utilisation <= 1.0
        assert r.cycles >= layer.macs / 256


# ---------------------------------------------------------------------------------------
# energy and area
# ---------------------------------------------------------------------------------------

def test_energy_is_counts_times_energy_per_access():
    layer = Layer.gemm("g", m=64, k=64, n=64)
    hw = HW16
    r = cost.evaluate(hw, default_mapping(hw, layer), layer)
    c = r.counts
    t = EnergyTable()
    sp_byte = 0.02513 * hw.sp_kb + 0.49
    acc_word = 0.1005 * (hw.acc_kb / hw.dim) + 1.94
    expected = (c["macs"] * 0.561 + c["weight_loads"] * hw.dim * 0.487
                + (c["sp_reads"] + c["sp_writes"]) * hw.dim * sp_byte
                + (c["acc_reads"] + c["acc_writes"]) * hw.dim * acc_word
                + (c["dram_bytes_read"] + c["dram_bytes_written"]) * 100.0)
    assert r.energy_pj == pytest.approx(expected, rel=1e-12)
    assert r.area_mm2 == pytest.approx(4.045e-4 * 256 + 5.550e-3 * 64 + 2.604e-3 * 256
                                       + 1.088e-3 * 16 + 0.0138, rel=1e-12)
    assert r.edp == pytest.approx(r.energy_pj * r.cycles)
    assert t.dram_pj_per_byte == 100.0


def test_price_gives_rtl_results_energy_from_their_counters():
    layer = Layer.gemm("g", m=32, k=32, n=32)
    r = cost.evaluate(HW16, default_mapping(HW16, layer), layer)
    bare = dataclasses.replace(r, energy_pj=None, area_mm2=None)
    priced = cost.price(bare, HW16)
    assert priced.energy_pj == pytest.approx(r.energy_pj) and priced.area_mm2 == pytest.approx(r.area_mm2)
    assert priced.cycles == r.cycles


def test_energy_table_overrides_from_a_file(tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text("dram_pj_per_byte: 64\nmac_pj: 0.5\n")
    t = EnergyTable.from_file(f)
    assert t.dram_pj_per_byte == 64 and t.mac_pj == 0.5 and t.weight_reg_pj == 0.487
    layer = Layer.gemm("g", m=32, k=32, n=32)
    m = default_mapping(HW16, layer)
    a, b = cost.evaluate(HW16, m, layer), cost.evaluate(HW16, m, layer, table=t)
    dram = a.counts["dram_bytes_read"] + a.counts["dram_bytes_written"]
    assert a.energy_pj - b.energy_pj == pytest.approx(dram * 36 + a.counts["macs"] * 0.061)
    bad = tmp_path / "bad.json"
    bad.write_text('{"dram_pj": 3}')
    with pytest.raises(EnergyError, match=r"unknown energy table key\(s\) \['dram_pj'\]"):
        EnergyTable.from_file(bad)
    with pytest.raises(EnergyError, match="must be a finite number >= 0; got -1"):
        EnergyTable(mac_pj=-1)


def test_network_edp_sums_and_products():
    layers = [Layer.gemm("a", m=32, k=32, n=32, count=2), Layer.gemm("b", m=16, k=64, n=32)]
    res = [cost.evaluate(HW16, default_mapping(HW16, L), L) for L in layers]
    net = cost.network_edp(res, layers)
    e = 2 * res[0].energy_pj + res[1].energy_pj
    c = 2 * res[0].cycles + res[1].cycles
    assert net.energy_pj == pytest.approx(e) and net.cycles == c
    assert net.edp == pytest.approx(e * c)
    assert net.edp_layerwise == pytest.approx(2 * res[0].edp + res[1].edp)
