"""The constrained software space (search.software) and the best-of-N mapper."""

import itertools
import json

import numpy as np
import pytest

import cost
from hw.config import HardwareConfig
from hw.layer import LOOPS, Layer
from hw.mapping import Mapping, MappingError, default_mapping, divisors
from search.software import MappingBatch, SoftwareSpace, best_mapping, canonical_orders

HW8 = HardwareConfig(dim=8, sp_kb=32, acc_kb=16)


def test_array_factors_are_the_largest_divisors_up_to_dim():
    # C = 24 on a 16-wide array: divisors 1, 2, 3, 4, 6, 8, 12, 24 -> 12; K = 64 -> 16
    layer = Layer.conv("c", n=1, k=64, c=24, p=7, q=7, r=3, s=3, padding=1)
    sp = SoftwareSpace(HardwareConfig(dim=16), layer)
    assert sp.array_factors == {"C": 12, "K": 16}
    # spad choices: divisors of what the array leaves (C: 24/12 = 2 -> 1, 2; K: 64/16 = 4 -> 1, 2, 4)
    counts = dict(zip(LOOPS, sp.choice_counts))
    assert counts["C"] == 2 and counts["K"] == 3 and counts["P"] == 2 and counts["R"] == 2 and counts["N"] == 1


def test_canonical_orders_keep_the_schedule():
    layer = Layer.conv("c", n=1, k=32, c=16, p=6, q=6, r=3, s=3, padding=1)
    ms = SoftwareSpace(HW8, layer).pool(200, seed=3).mappings()
    rng = np.random.default_rng(0)
    for m in ms[:40]:
        # any permutation of the non-iterating loops' positions gives the same cycles
        f, o = m.to_arrays()
        shuffled = list(rng.permutation(7))
        canon = canonical_orders(f[None], np.array([shuffled]))[0]
        a = cost.evaluate(HW8, Mapping.from_arrays(f, np.array(shuffled), m.buffers), layer)
        b = cost.evaluate(HW8, Mapping.from_arrays(f, canon, m.buffers), layer)
        assert a.cycles == b.cycles and a.counts == b.counts
        # loops with DRAM factor > 1 come first, in their given order
        it = [lp for lp in canon if f[0, lp] > 1]
        assert list(canon[:len(it)]) == [lp for lp in shuffled if f[0, lp] > 1]


def test_pool_fitting_distinct_reproducible_and_buffered():
    layer = Layer.conv("c", n=1, k=64, c=32, p=8, q=8, r=3, s=3, padding=1)
    sp = SoftwareSpace(HW8, layer)
    pool = sp.pool(500, seed=7)
    assert len(pool) == 500
    keys = {bytes(k) for k in pool.keys()}
    assert len(keys) == 500
    assert {tuple(b) for b in pool.buffers} == set(itertools.product((1, 2), repeat=3))
    for m in pool.mappings():                      # the Mapping object's own check
        assert m.check(HW8, layer)
        assert m.factor("array", "C") == 8 and m.factor("array", "K") == 8
    again = sp.pool(500, seed=7)
    assert np.array_equal(again.keys(), pool.keys())
    assert not np.array_equal(sp.pool(500, seed=8).keys(), pool.keys())
    double = SoftwareSpace(HW8, layer, buffering=False).pool(100, seed=7)
    assert (double.buffers == 2).all()


def _all_constrained(hw, layer, buffering=True):
    """Brute force: every fitting mapping of the constrained space, canonical orders."""
    dims = layer.dims
    arr = {lp: (max(d for d in divisors(dims[lp]) if d <= hw.dim) if lp in "CK" else 1) for lp in LOOPS}
    out = set()
    spads = [divisors(dims[lp] // arr[lp]) for lp in LOOPS]
    bufs = list(itertools.product((1, 2), repeat=3)) if buffering else [(2, 2, 2)]
    perms = np.array(list(itertools.permutations(range(7))), dtype=np.int64)
    for sp in itertools.product(*spads):
        for b in bufs:
            # the fit never depends on the order (hw.mapping): check once, with the default order
            m = Mapping.for_layer(layer, spad=dict(zip(LOOPS, sp)), array=arr, buffers=b)
            if m.check(hw, layer):
                f, _ = m.to_arrays()
                for o in canonical_orders(np.broadcast_to(f, (len(perms), 3, 7)), perms):
                    out.add(bytes(np.concatenate([f.ravel(), o, b]).astype(np.int64)))
    return out


def test_pool_covers_a_tiny_space_exactly():
    layer = Layer.gemm("g", m=4, k=8, n=4)
    hw = HardwareConfig(dim=4, sp_kb=8, acc_kb=8)
    want = _all_constrained(hw, layer)
    got = SoftwareSpace(hw, layer).pool(10_000, seed=0)
    assert {bytes(k) for k in got.keys()} == want


def test_best_mapping_is_the_argmin_of_its_pool_and_beats_default():
    layer = Layer.conv("c", n=1, k=32, c=16, p=6, q=6, r=3, s=3, padding=1)
    m, r = best_mapping(HW8, layer, samples=300, seed=1)
    # independent path: Mapping objects through cost.evaluate, one at a time
    pool = [default_mapping(HW8, layer)] + SoftwareSpace(HW8, layer).pool(300, seed=1).mappings()
    edps = [(x.energy_pj * x.cycles) for x in (cost.evaluate(HW8, p, layer) for p in pool)]
    assert r.energy_pj * r.cycles == pytest.approx(min(edps), rel=1e-12)
    assert r.energy_pj * r.cycles <= edps[0]
    assert cost.evaluate(HW8, m, layer).cycles == r.cycles
    mc, rc = best_mapping(HW8, layer, samples=300, seed=1, objective="cycles")
    assert rc.cycles <= r.cycles
    assert rc.cycles == min(cost.evaluate(HW8, p, layer).cycles for p in pool)


def test_bad_arguments():
    layer = Layer.gemm("g", m=4, k=8, n=4)
    with pytest.raises(ValueError, match=r"samples must be an integer in 1\.\.1,048,576; got 0"):
        best_mapping(HW8, layer, samples=0)
    with pytest.raises(ValueError, match="objective must be one of edp, cycles, energy; got 'speed'"):
        best_mapping(HW8, layer, objective="speed")
    with pytest.raises(ValueError, match=r"software unit points must have shape \(B, 11\)"):
        SoftwareSpace(HW8, layer).from_unit_arrays(np.zeros((2, 8)))
    with pytest.raises(ValueError, match="MappingBatch.factors must have shape"):
        MappingBatch(np.zeros((2, 7)), np.zeros((2, 7)), np.zeros((2, 3)))
    big = Layer.conv("big", n=1, k=512, c=512, p=7, q=7, r=7, s=7, padding=3)
    tiny = HardwareConfig(dim=32, sp_kb=8, acc_kb=8)
    try:
        default_mapping(tiny, big)
    except MappingError:
        with pytest.raises(MappingError, match="no"):
            best_mapping(tiny, big, samples=64)


def test_cost_run_mapping_best_json(capsys):
    from cost.run import main

    assert main(["--dim", "8", "--sp-kb", "32", "--acc-kb", "16", "--conv", "1", "32", "16", "6", "6", "3", "3",
                 "--pad", "1", "--mapping", "best", "--samples", "300", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    layer = Layer.conv("conv_1x32x16x6x6x3x3", n=1, k=32, c=16, p=6, q=6, r=3, s=3, padding=1)
    m, r = best_mapping(HW8, layer, samples=300)
    assert doc["cycles"] == r.cycles
