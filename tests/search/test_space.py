"""search.space: hardware space, mapping space (choices, encoding, fit rule, size,
sampling) and the joint co-design unit cube, checked against brute-force references."""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings

import numpy as np
import pytest
from scipy.stats import qmc

from hw.config import HardwareConfig
from hw.layer import LOOPS, Layer
from hw.mapping import LEVELS, Mapping, default_mapping
from search.space import (
    CODESIGN_UNIT_DIMS,
    DIMS,
    ENCODING_NAMES,
    MEM_KB,
    UNIT_DIMS,
    CoDesignSpace,
    HardwareSpace,
    MappingSpace,
    SpaceError,
    SpaceSize,
    order_from_index,
    order_index,
)

# Layers covering the shapes the space must handle (per-group dims for grouped convs).
CONV3_S2 = Layer.conv("conv3s2", n=2, k=48, c=32, r=3, h=28, stride=2, padding=1)  # p = q = 14
CONV1 = Layer.conv("conv1x1", k=128, c=64, r=1, p=14)
DEPTHWISE = Layer.conv("dw", k=96, c=96, r=3, h=28, padding=1, groups=96)         # C = K = 1 per group
GEMM = Layer.gemm("gemm", m=96, k=256, n=48)
LAYERS = (CONV3_S2, CONV1, DEPTHWISE, GEMM)

HWS = (HardwareConfig(dim=4, sp_kb=8, acc_kb=8), HardwareConfig(dim=4, sp_kb=256, acc_kb=256),
       HardwareConfig(dim=32, sp_kb=8, acc_kb=8), HardwareConfig(dim=32, sp_kb=256, acc_kb=256))


def _brute_choices(d: int, loop: str, dim: int) -> list[tuple[int, int]]:
    """(spad, array) pairs by trying every pair of integers up to d."""
    out = []
    for spad in range(1, d + 1):
        for array in range(1, d + 1):
            if d % (spad * array):
                continue
            if loop in ("C", "K"):
                if array > dim:
                    continue
            elif array != 1:
                continue
            out.append((spad, array))
    return sorted(out, key=lambda sa: (sa[1], sa[0]))


def _random_mappings(ms: MappingSpace, n: int, seed: int) -> list[Mapping]:
    return ms.sample(n, seed=seed, feasible_only=False)


# ---- hardware space ----------------------------------------------------------------------
class TestHardwareSpace:
    def test_enumeration(self):
        hs = HardwareSpace()
        configs = hs.enumerate()
        assert hs.size == len(hs) == len(configs) == 4096 == len(DIMS) * len(MEM_KB) ** 2
        assert len(set(configs)) == 4096
        assert {c.dim for c in configs} == {4, 8, 16, 32}
        assert {c.acc_kb for c in configs} == {c.sp_kb for c in configs} == set(range(8, 257, 8))
        # order: dim, then acc_kb, then sp_kb (fastest)
        assert [(c.dim, c.acc_kb, c.sp_kb) for c in configs] == sorted((c.dim, c.acc_kb, c.sp_kb) for c in configs)
        assert (configs[1].sp_kb, configs[32].acc_kb, configs[1024].dim) == (16, 16, 8)
        for i, c in enumerate(configs):
            assert hs.index(c) == i and hs.config(i) == c

    def test_base_fields_kept(self):
        base = HardwareConfig(dram_latency=100, sp_banks=2, dma_bus_bytes=8)
        hs = HardwareSpace(base)
        for c in hs.enumerate()[::97]:
            assert dataclasses.replace(c, dim=base.dim, sp_kb=base.sp_kb, acc_kb=base.acc_kb) == base
        with pytest.raises(SpaceError, match=r"^configuration not in this hardware space: fixed field\(s\) differ "
                                             r"from its base: dram_latency=40 \(base 100\)$"):
            hs.index(dataclasses.replace(base, dim=8, dram_latency=40))

    def test_encode_values(self):
        hs = HardwareSpace()
        np.testing.assert_array_equal(hs.encode(HardwareConfig(dim=4, acc_kb=8, sp_kb=8)), [0, 0, 0])
        np.testing.assert_array_equal(hs.encode(HardwareConfig(dim=32, acc_kb=256, sp_kb=256)), [1, 1, 1])
        np.testing.assert_allclose(hs.encode(HardwareConfig(dim=8, acc_kb=128, sp_kb=16)),
                                   [1 / 3, 120 / 248, 8 / 248])

    def test_encode_decode_round_trip_all(self):
        hs = HardwareSpace()
        configs = hs.enumerate()
        x = hs.encode_many(configs)
        assert x.shape == (4096, 3) and x.min() == 0.0 and x.max() == 1.0
        assert len({tuple(r) for r in x}) == 4096
        for c, row in zip(configs, x):
            assert hs.decode(row) == c

    def test_decode_is_l1_nearest(self):
        hs = HardwareSpace()
        configs = hs.enumerate()
        grid = hs.encode_many(configs)
        rng = np.random.default_rng(5)
        points = np.concatenate([rng.uniform(-0.3, 1.3, size=(300, 3)),
                                 grid[rng.integers(0, 4096, 200)] + rng.normal(0, 0.02, size=(200, 3))])
        for p in points:
            dist = np.abs(grid - p).sum(axis=1)
            got = hs.decode(p)
            assert np.abs(hs.encode(got) - p).sum() == pytest.approx(dist.min(), abs=1e-12)
            assert got == configs[int(np.argmin(dist))]  # ties have probability zero here

    def test_from_unit_and_sample(self):
        hs = HardwareSpace()
        assert hs.from_unit([0, 0, 0]) == HardwareConfig(dim=4, acc_kb=8, sp_kb=8)
        assert hs.from_unit([1, 1, 1]) == HardwareConfig(dim=32, acc_kb=256, sp_kb=256)
        assert hs.from_unit([0.5, 0.99, 0.0]) == HardwareConfig(dim=16, acc_kb=256, sp_kb=8)
        for method in ("uniform", "sobol"):
            a = hs.sample(64, seed=3, method=method)
            assert a == hs.sample(64, seed=3, method=method)
            assert a != hs.sample(64, seed=4, method=method)
        # 64 scrambled Sobol points stratify each axis: every dim exactly 16 times.
        dims = [c.dim for c in hs.sample(64, seed=9, method="sobol")]
        assert sorted(dims.count(d) for d in DIMS) == [16] * 4

    def test_errors(self):
        hs = HardwareSpace()
        with pytest.raises(SpaceError, match=r"^hardware index must be an integer from 0 to 4095; got 4096$"):
            hs.config(4096)
        with pytest.raises(SpaceError, match=r"hardware point must be finite; got \[nan, 0.0, 0.0\]"):
            hs.decode([float("nan"), 0, 0])
        with pytest.raises(SpaceError, match=r"hardware point must be a real vector of length 3; got shape \(2,\)"):
            hs.decode([0, 0])
        with pytest.raises(SpaceError, match=r"hardware unit point entries must be in \[0, 1\]; got 1.5"):
            hs.from_unit([0, 1.5, 0])
        with pytest.raises(SpaceError, match=r"method must be 'uniform' or 'sobol'; got 'grid'"):
            hs.sample(4, method="grid")
        with pytest.raises(SpaceError, match=r"expected a HardwareConfig; got str"):
            hs.index("dim16")
        with pytest.raises(SpaceError, match=r"HardwareSpace.base must be a HardwareConfig; got dict"):
            HardwareSpace({})


# ---- loop orders --------------------------------------------------------------------------
def test_order_lehmer_code():
    perms = list(itertools.permutations(LOOPS))  # lexicographic in LOOPS order
    assert [order_from_index(i) for i in range(5040)] == perms
    assert all(order_index(p) == i for i, p in enumerate(perms))
    assert order_from_index(0) == LOOPS and order_from_index(5039) == LOOPS[::-1]
    assert MappingSpace.order_index(("K", "N", "C", "P", "Q", "R", "S")) == math.factorial(6)
    with pytest.raises(SpaceError, match=r"order index must be an integer from 0 to 5039; got 5040"):
        order_from_index(5040)
    with pytest.raises(SpaceError, match=r"order must be a permutation of N, K, C, P, Q, R, S; got \('N', 'N'"):
        order_index(("N", "N", "C", "P", "Q", "R", "S"))


# ---- mapping space: structure -------------------------------------------------------------
@pytest.mark.parametrize("layer", LAYERS, ids=lambda la: la.name)
@pytest.mark.parametrize("dim", (4, 16, 32))
def test_choices_vs_brute_force(layer, dim):
    ms = MappingSpace(HardwareConfig(dim=dim), layer)
    for lp in LOOPS:
        assert ms.choices(lp) == _brute_choices(layer.dims[lp], lp, dim)
    assert ms.choice_counts == tuple(len(ms.choices(lp)) for lp in LOOPS)
    assert ms.raw_size == math.prod(ms.choice_counts) * 5040


def test_depthwise_dims_are_per_group():
    ms = MappingSpace(HardwareConfig(), DEPTHWISE)
    assert ms.choices("C") == ms.choices("K") == [(1, 1)]
    assert ms.choices("P") == ms.choices("Q") == [(d, 1) for d in (1, 2, 4, 7, 14, 28)]


def test_from_unit_corners_and_orders():
    ms = MappingSpace(HardwareConfig(dim=16), CONV3_S2)
    first = ms.from_unit([0.0] * UNIT_DIMS)
    assert first.order == LOOPS
    assert first.level("spad") == {lp: 1 for lp in LOOPS} == first.level("array")
    last = ms.from_unit([1.0] * UNIT_DIMS)
    assert last.order == LOOPS[::-1]
    assert last.level("spad") == {lp: ms.choices(lp)[-1][0] for lp in LOOPS}
    assert last.level("array") == {lp: ms.choices(lp)[-1][1] for lp in LOOPS}
    # u[7] picks order index floor(u * 5040)
    u = np.zeros((5040, UNIT_DIMS))
    u[:, 7] = (np.arange(5040) + 0.5) / 5040
    _, order = ms.from_unit_arrays(u)
    assert [tuple(LOOPS[j] for j in row) for row in order] == list(itertools.permutations(LOOPS))


@pytest.mark.parametrize("layer", LAYERS, ids=lambda la: la.name)
def test_array_layout(layer):
    hw = HardwareConfig(dim=16)
    ms = MappingSpace(hw, layer)
    m = default_mapping(hw, layer)
    factors, order = ms.arrays_from_mapping(m)
    assert factors.shape == (3, 7) and order.shape == (7,) and factors.dtype == order.dtype == np.int64
    for lv, level in enumerate(LEVELS):
        for lp, loop in enumerate(LOOPS):
            assert factors[lv, lp] == m.factor(level, loop)
    assert tuple(LOOPS[i] for i in order) == m.order
    assert ms.mapping_from_arrays(factors, order) == m
    f, o = ms.from_unit_arrays(np.random.default_rng(0).random((500, UNIT_DIMS)))
    assert f.shape == (500, 3, 7) and o.shape == (500, 7)
    np.testing.assert_array_equal(f.prod(axis=1), np.broadcast_to([layer.dims[lp] for lp in LOOPS], (500, 7)))
    np.testing.assert_array_equal(np.sort(o, axis=1), np.broadcast_to(np.arange(7), (500, 7)))


# ---- the fit rule ---------------------------------------------------------------------------
@pytest.mark.parametrize("hw", HWS, ids=lambda h: f"dim{h.dim}-sp{h.sp_kb}-acc{h.acc_kb}")
@pytest.mark.parametrize("layer", LAYERS, ids=lambda la: la.name)
def test_fits_arrays_matches_mapping_check(layer, hw):
    ms = MappingSpace(hw, layer)
    rng = np.random.default_rng(10 * LAYERS.index(layer) + HWS.index(hw))
    factors, order = ms.from_unit_arrays(rng.random((1500, UNIT_DIMS)))
    rows = np.arange(100)
    # Structurally broken rows: a factor doubled (product != dim) ...
    doubled = factors[:100].copy()
    doubled[rows, rng.integers(0, 3, 100), rng.integers(0, 7, 100)] *= 2
    # ... or a DRAM factor moved to the array level of a loop other than C and K.
    moved = factors[100:200].copy()
    loop = rng.choice([i for i, lp in enumerate(LOOPS) if lp not in ("C", "K")], 100)
    moved[rows, 2, loop] *= moved[rows, 0, loop]
    moved[rows, 0, loop] = 1
    # ... and valid-looking rows with the whole C or K bound on the array (some exceed dim).
    wide = factors[200:300].copy()
    loop = rng.choice([LOOPS.index("C"), LOOPS.index("K")], 100)
    wide[rows, 2, loop] *= wide[rows, 0, loop] * wide[rows, 1, loop]
    wide[rows, 0, loop] = wide[rows, 1, loop] = 1
    factors = np.concatenate([factors, doubled, moved, wide])
    order = np.concatenate([order, order[:300]])
    got = ms.fits_arrays(factors)
    want = np.array([bool(ms.mapping_from_arrays(f, o).check(hw, layer)) for f, o in zip(factors, order)])
    np.testing.assert_array_equal(got, want)
    assert not got[1500:1600].any()
    moved_real = np.prod(factors[1600:1700, 2, :], axis=1) > factors[1600:1700, 2, 1] * factors[1600:1700, 2, 2]
    assert not got[1600:1700][moved_real].any()


def test_fit_rule_sees_both_outcomes():
    outcomes = set()
    for layer in LAYERS:
        for hw in HWS:
            ms = MappingSpace(hw, layer)
            f, _ = ms.from_unit_arrays(np.random.default_rng(1).random((1000, UNIT_DIMS)))
            outcomes |= set(ms.fits_arrays(f).tolist())
    assert outcomes == {True, False}


def test_fits_arrays_shape_error():
    ms = MappingSpace(HardwareConfig(), GEMM)
    with pytest.raises(SpaceError,
                       match=r"factors must be an integer array of shape \(B, 3, 7\); got float64 \(3, 7\)"):
        ms.fits_arrays(np.ones((3, 7)))


# ---- size ------------------------------------------------------------------------------------
TINY = Layer.conv("tiny", n=2, k=8, c=4, r=3, p=6, padding=1)
TINY_HW = HardwareConfig(dim=32, sp_kb=8, acc_kb=8)  # 256 scratchpad rows, 64 accumulator rows


def test_exact_size_vs_brute_force():
    ms = MappingSpace(TINY_HW, TINY)
    choices = [_brute_choices(TINY.dims[lp], lp, TINY_HW.dim) for lp in LOOPS]
    fitting = 0
    rng = np.random.default_rng(0)
    for combo in itertools.product(*choices):
        order = order_from_index(int(rng.integers(5040)))  # the order never matters
        m = Mapping.for_layer(TINY, spad={lp: sa[0] for lp, sa in zip(LOOPS, combo)},
                              array={lp: sa[1] for lp, sa in zip(LOOPS, combo)}, order=order)
        fitting += bool(m.check(TINY_HW, TINY))
    size = ms.size()
    assert size == SpaceSize(count=float(fitting * 5040), exact=True, stderr=0.0)
    assert 0 < size.count < ms.raw_size


def test_monte_carlo_size_within_4_stderr():
    layer = Layer.conv("mid", k=64, c=64, r=3, p=28, padding=1)
    hw = HardwareConfig(dim=8, sp_kb=32, acc_kb=16)
    ms = MappingSpace(hw, layer)
    exact = ms.size()
    assert exact.exact and 0.05 < exact.count / ms.raw_size < 0.95
    for seed in (0, 1):
        est = ms.size(exact_limit=0, samples=20_000, seed=seed)
        assert not est.exact and est.stderr > 0
        assert abs(est.count - exact.count) <= 4 * est.stderr
    assert ms.size(exact_limit=0, samples=5000, seed=3) == ms.size(exact_limit=0, samples=5000, seed=3)


# ---- encoding --------------------------------------------------------------------------------
def test_encoding_names():
    assert len(ENCODING_NAMES) == 28 == 7 * 3 + 7
    assert ENCODING_NAMES[:4] == ("dram_N", "spad_N", "array_N", "dram_K")
    assert ENCODING_NAMES[21:] == tuple(f"order_{lp}" for lp in LOOPS)


def test_encode_values():
    layer = Layer.gemm("g", m=64, k=32, n=16)  # P = 64, C = 32, K = 16
    ms = MappingSpace(HardwareConfig(dim=16), layer)
    m = Mapping.for_layer(layer, spad={"P": 8, "C": 2}, array={"C": 16, "K": 4},
                          order=("P", "K", "C", "N", "Q", "R", "S"))
    x = dict(zip(ENCODING_NAMES, ms.encode(m)))
    assert x["spad_P"] == pytest.approx(0.5) and x["dram_P"] == pytest.approx(0.5)
    assert x["array_C"] == pytest.approx(0.8) and x["spad_C"] == pytest.approx(0.2) and x["dram_C"] == 0
    assert x["array_K"] == pytest.approx(0.5) and x["dram_K"] == pytest.approx(0.5)
    assert x["dram_N"] == x["spad_N"] == x["array_N"] == 0  # dims 1 -> 0
    assert [x[f"order_{lp}"] for lp in ("P", "K", "C", "N", "Q", "R", "S")] == pytest.approx(np.arange(7) / 6)


@pytest.mark.parametrize("layer", LAYERS, ids=lambda la: la.name)
def test_encode_decode_round_trip(layer):
    ms = MappingSpace(HardwareConfig(dim=8, sp_kb=64, acc_kb=32), layer)
    mappings = _random_mappings(ms, 400, seed=2)
    x = ms.encode_many(mappings)
    assert x.shape == (400, 28) and x.min() >= 0 and x.max() <= 1
    for m, row in zip(mappings, x):
        np.testing.assert_array_equal(ms.encode(m), row)
        assert ms.decode(row) == m
        # small noise (below half the smallest gap between encoded choices) changes nothing
        noisy = row + np.random.default_rng(0).uniform(-1e-3, 1e-3, 28)
        assert ms.decode(noisy) == m


def test_decode_nearest_and_ties():
    ms = MappingSpace(HardwareConfig(dim=16), CONV1)
    rng = np.random.default_rng(4)
    for _ in range(200):
        x = rng.uniform(-0.2, 1.2, 28)
        m = ms.decode(x)
        f, _ = ms.arrays_from_mapping(m)
        for i, lp in enumerate(LOOPS):
            d = CONV1.dims[lp]
            enc = [(0.0, 0.0) if d == 1 else (math.log(s) / math.log(d), math.log(a) / math.log(d))
                   for s, a in ms.choices(lp)]
            dist = [abs(es - x[3 * i + 1]) + abs(ea - x[3 * i + 2]) for es, ea in enc]
            j = ms.choices(lp).index((int(f[1, i]), int(f[2, i])))
            assert dist[j] == pytest.approx(min(dist), abs=1e-12)
        assert m.order == tuple(sorted(LOOPS, key=lambda lp: x[21 + LOOPS.index(lp)]))
    assert ms.decode(np.zeros(28)).order == LOOPS  # ties in LOOPS order
    assert ms.decode(np.zeros(28)) == ms.from_unit([0.0] * UNIT_DIMS)


def test_encode_rejects_mappings_outside_the_space():
    layer = Layer.gemm("g", m=64, k=32, n=64)
    ms = MappingSpace(HardwareConfig(dim=16), layer)
    too_wide = Mapping.for_layer(layer, array={"K": 32})
    with pytest.raises(SpaceError, match=r"^mapping not in the space of layer 'g': loop K: dram 2 x spad 1 x array 32 "
                                         r"is not a choice for bound 64 \(product = bound; array factor 1, or for C "
                                         r"and K <= dim 16\)$"):
        ms.encode(too_wide)
    with pytest.raises(SpaceError, match=r"expected a Mapping; got dict"):
        ms.arrays_from_mapping({"factors": {}})
    bad_order = Mapping.for_layer(layer, order=("N", "K", "C"))
    with pytest.raises(SpaceError, match=r"is not a permutation of N, K, C, P, Q, R, S"):
        ms.encode(bad_order)
    with pytest.raises(SpaceError, match=r"mapping encoding must be a real vector of length 28; got shape \(27,\)"):
        ms.decode(np.zeros(27))


# ---- sampling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ("uniform", "sobol"))
def test_sample_feasible_and_reproducible(method):
    hw = HardwareConfig(dim=16, sp_kb=16, acc_kb=8)
    ms = MappingSpace(hw, CONV3_S2)
    a = ms.sample(300, seed=7, method=method)
    assert len(a) == 300 and all(m.check(hw, CONV3_S2) for m in a)
    assert a == ms.sample(300, seed=7, method=method)
    assert a != ms.sample(300, seed=8, method=method)
    raw = ms.sample(300, seed=7, method=method, feasible_only=False)
    assert not all(m.check(hw, CONV3_S2) for m in raw)  # this hardware rejects some


def test_sobol_sample_is_the_filtered_sobol_sequence():
    hw = HardwareConfig(dim=8, sp_kb=16, acc_kb=8)
    ms = MappingSpace(hw, CONV3_S2)
    ref = [ms.from_unit(u) for u in qmc.Sobol(d=8, scramble=True, seed=11).random(4096)]
    assert ms.sample(100, seed=11, method="sobol", feasible_only=False) == ref[:100]
    fitting = [m for m in ref if m.check(hw, CONV3_S2)]
    assert len(fitting) > 150
    assert ms.sample(150, seed=11, method="sobol") == fitting[:150]


def test_sample_errors():
    big = Layer.gemm("big", m=4096, k=4096, n=4096)
    ms = MappingSpace(HardwareConfig(dim=32, sp_kb=8, acc_kb=8), big)
    with pytest.raises(SpaceError, match=r"^only \d+ of 1000 sampled mappings of layer 'big' fit dim=32, sp_kb=8, "
                                         r"acc_kb=8 after 2000 draws \(max_tries\)"):
        ms.sample(1000, max_tries=2000)
    with pytest.raises(SpaceError, match=r"^n must be an integer >= 0; got -1$"):
        ms.sample(-1)
    with pytest.raises(SpaceError, match=r"method must be 'uniform' or 'sobol'; got 'lhs'"):
        ms.sample(3, method="lhs")
    with pytest.raises(SpaceError, match=r"^MappingSpace.layer must be a Layer; got str$"):
        MappingSpace(HardwareConfig(), "conv1")
    with pytest.raises(SpaceError, match=r"^MappingSpace.hw must be a HardwareConfig; got NoneType$"):
        MappingSpace(None, GEMM)
    with pytest.raises(SpaceError, match=r"loop must be one of N, K, C, P, Q, R, S; got 'G'"):
        ms.choices("G")
    with pytest.raises(SpaceError, match=r"mapping unit points entries must be in \[0, 1\]; got -0.5"):
        ms.from_unit_arrays([[-0.5] + [0] * 7])


# ---- joint space -------------------------------------------------------------------------------
def test_codesign_sobol_skip_and_no_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        whole = CoDesignSpace.sobol(100, seed=3)
        head = CoDesignSpace.sobol(50, seed=3)
        tail = CoDesignSpace.sobol(50, seed=3, skip=50)
    assert not caught
    assert whole.shape == (100, CODESIGN_UNIT_DIMS) == (100, 12)
    np.testing.assert_array_equal(whole, np.concatenate([head, tail]))
    assert not np.array_equal(whole, CoDesignSpace.sobol(100, seed=4))


def test_codesign_point():
    layers = [CONV3_S2, CONV1, GEMM]
    space = CoDesignSpace(layers)
    assert space.layers == tuple(layers) and space.unit_dims == 12
    for u in CoDesignSpace.sobol(64, seed=1):
        li, hw, m = space.point(u)
        assert li == int(u[0] * 3)
        assert (hw.dim, hw.acc_kb, hw.sp_kb) == (DIMS[int(u[1] * 4)], MEM_KB[int(u[2] * 32)], MEM_KB[int(u[3] * 32)])
        assert m == MappingSpace(hw, layers[li]).from_unit(u[4:])
        assert space.mapping_space(li, hw) == MappingSpace(hw, layers[li])
    li, hw, m = space.point(np.ones(12))
    assert li == 2 and (hw.dim, hw.acc_kb, hw.sp_kb) == (32, 256, 256) and m.order == LOOPS[::-1]


def test_codesign_errors():
    with pytest.raises(SpaceError, match=r"^CoDesignSpace.layers must hold at least one Layer; got none$"):
        CoDesignSpace([])
    with pytest.raises(SpaceError, match=r"^CoDesignSpace.layers\[1\] must be a Layer; got int$"):
        CoDesignSpace([GEMM, 3])
    with pytest.raises(SpaceError, match=r"co-design unit point must be a real vector of length 12; got shape \(8,\)"):
        CoDesignSpace([GEMM]).point(np.zeros(8))
    with pytest.raises(SpaceError, match=r"^skip must be an integer >= 0; got -2$"):
        CoDesignSpace.sobol(4, skip=-2)
