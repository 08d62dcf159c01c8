"""Tests of the shared vocabulary: hw.layer.Layer, hw.mapping.Mapping, hw.result.Result."""

from __future__ import annotations

import dataclasses
import json
import types

import numpy as np
import pytest

from hw.config import HardwareConfig
from hw.layer import Layer, LayerError
from hw.mapping import (
    DEFAULT_ORDER,
    LEVELS,
    LOOPS,
    Check,
    Footprint,
    Mapping,
    MappingError,
    default_mapping,
    divisors,
)
from hw.result import COUNT_KEYS, Result, ResultError

# --------------------------------------------------------------------------------------
# Layer
# --------------------------------------------------------------------------------------

CONV1 = Layer(name="conv1", n=1, k=64, c=3, p=112, q=112, r=7, s=7, stride=2, padding=3)
CONV3 = Layer.conv("res2_3x3", k=64, c=64, p=56, r=3, padding=1, count=3)


def test_resnet_conv1_sizes():
    # h is the smallest input consistent with p: (112-1)*2 + 7 - 2*3 = 223 (nominal 224)
    assert (CONV1.h, CONV1.w) == (223, 223)
    assert CONV1.macs == 112 * 112 * 64 * 3 * 7 * 7 == 118_013_952
    assert CONV1.weight_elems == 64 * 3 * 49
    assert CONV1.output_elems == 64 * 112 * 112
    assert CONV1.input_elems == 3 * 223 * 223
    assert CONV1.dims == {"N": 1, "K": 64, "C": 3, "P": 112, "Q": 112, "R": 7, "S": 7}
    assert not CONV1.is_gemm
    # the conv helper from the nominal input size gives the same layer
    assert Layer.conv("conv1", k=64, c=3, h=224, r=7, stride=2, padding=3) == CONV1


def test_3x3_macs_and_count():
    assert CONV3.macs == 56 * 56 * 64 * 64 * 9 == 115_605_504
    assert CONV3.total_macs == 3 * 115_605_504
    assert (CONV3.h, CONV3.w, CONV3.s, CONV3.q) == (56, 56, 3, 56)


def test_depthwise():
    dw = Layer.conv("dw", k=32, c=32, p=112, r=3, padding=1, groups=32)
    assert dw.macs == 112 * 112 * 32 * 1 * 9
    assert (dw.c_per_group, dw.k_per_group) == (1, 1)
    assert dw.weight_elems == 32 * 9
    assert dw.dims == {"N": 1, "K": 1, "C": 1, "P": 112, "Q": 112, "R": 3, "S": 3}


def test_gemm_helper():
    g = Layer.gemm("qkv", m=128, k=768, n=2304, count=12)
    # GEMM M -> p, GEMM K (reduction) -> c, GEMM N -> k (output channels)
    assert (g.p, g.q, g.c, g.k, g.n, g.r, g.s) == (128, 1, 768, 2304, 1, 1, 1)
    assert g.dims == {"N": 1, "K": 2304, "C": 768, "P": 128, "Q": 1, "R": 1, "S": 1}
    assert g.macs == 128 * 768 * 2304
    assert g.is_gemm and g.gemm_shape == (128, 768, 2304)
    assert g.count == 12
    with pytest.raises(LayerError, match="is not a GEMM"):
        _ = CONV3.gemm_shape


def test_conv_helper_rectangular_and_stride():
    l = Layer.conv("x", k=8, c=4, h=10, w=7, r=3, s=1, stride=2)
    assert (l.p, l.q) == (4, 4)  # (10-3)//2+1, (7-1)//2+1
    assert (l.h, l.w) == (9, 7)


def test_layer_json_round_trip():
    for layer in (CONV1, CONV3, Layer.gemm("g", 4, 5, 6)):
        assert Layer.from_json(layer.to_json()) == layer
        assert Layer.from_dict(layer.to_dict()) == layer
    with pytest.raises(LayerError) as e:
        Layer.from_dict({**CONV1.to_dict(), "dilation": 2})
    assert str(e.value).startswith("unknown Layer field(s) ['dilation']")
    with pytest.raises(LayerError, match=r"missing Layer field\(s\) \['q'\]"):
        d = CONV1.to_dict()
        del d["q"]
        Layer.from_dict(d)


def test_numpy_ints_accepted():
    l = Layer.gemm("g", np.int64(4), np.int32(8), np.int64(16))
    assert type(l.p) is int and json.loads(l.to_json())["c"] == 8


BAD_LAYERS = [
    ({"k": 0}, "Layer 'bad': k must be an integer >= 1; got 0"),
    ({"c": 2.0}, "Layer 'bad': c must be an integer; got 2.0"),
    ({"n": True}, "Layer 'bad': n must be an integer; got True"),
    ({"stride": 17}, "Layer 'bad': stride must be an integer from 1 to 16; got 17"),
    ({"stride": 0}, "Layer 'bad': stride must be an integer from 1 to 16; got 0"),
    ({"padding": 3}, "Layer 'bad': padding must be an integer from 0 to min(r, s) - 1 = 2; got 3"),
    ({"padding": -1}, "Layer 'bad': padding must be an integer from 0 to min(r, s) - 1 = 2; got -1"),
    ({"groups": 3}, "Layer 'bad': groups must divide both c (8) and k (16); got 3"),
    ({"groups": 0}, "Layer 'bad': groups must be an integer >= 1; got 0"),
    ({"count": 0}, "Layer 'bad': count must be an integer >= 1; got 0"),
    ({"p": 1, "padding": 2}, "Layer 'bad': input h = (p - 1) * stride + r - 2 * padding must be >= 1; got -1"),
    ({"name": ""}, "Layer.name must be a non-empty string; got ''"),
]


@pytest.mark.parametrize("kw,msg", BAD_LAYERS)
def test_invalid_layers(kw, msg):
    base = {"name": "bad", "n": 1, "k": 16, "c": 8, "p": 4, "q": 4, "r": 3, "s": 3}
    with pytest.raises(LayerError) as e:
        Layer(**{**base, **kw})
    assert str(e.value) == msg
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------------------
# Mapping: footprint and check
# --------------------------------------------------------------------------------------

HW16 = HardwareConfig(dim=16)  # sp_rows 16384, acc_rows 1024


def test_divisors():
    assert divisors(1) == [1]
    assert divisors(12) == [1, 2, 3, 4, 6, 12]
    assert divisors(49) == [1, 7, 49]
    with pytest.raises(ValueError):
        divisors(0)


def _hand_mapping() -> Mapping:
    # CONV3 (K=C=64, P=Q=56, R=S=3): T = N1 K32 C16 P7 Q8 R3 S3
    return Mapping(factors={
        "dram": {"N": 1, "K": 2, "C": 4, "P": 8, "Q": 7, "R": 1, "S": 1},
        "spad": {"N": 1, "K": 2, "C": 1, "P": 7, "Q": 8, "R": 3, "S": 3},
        "array": {"N": 1, "K": 16, "C": 16, "P": 1, "Q": 1, "R": 1, "S": 1},
    }, order=("N", "K", "P", "Q", "C", "R", "S"))


def test_footprint_hand_worked():
    m = _hand_mapping()
    assert m.tiles() == {"N": 1, "K": 32, "C": 16, "P": 7, "Q": 8, "R": 3, "S": 3}
    assert m.tile("K") == 32 and m.factor("dram", "C") == 4
    fp = m.footprint(HW16, CONV3)
    # cb = 1, kb = 2, in_h = 6*1+3 = 9, in_w = 7*1+3 = 10
    assert fp == Footprint(input_rows=1 * 9 * 10 * 1, weight_rows=3 * 3 * 2 * 16, output_rows=1 * 7 * 8 * 2)
    assert (fp.sp_rows_needed, fp.acc_rows_needed) == (2 * (90 + 288), 224)
    assert m.check(HW16, CONV3) == Check(True, None) and bool(m.check(HW16, CONV3))
    assert m.dram_iterations == 2 * 4 * 8 * 7
    assert m == Mapping.for_layer(CONV3, spad={"K": 2, "P": 7, "Q": 8, "R": 3, "S": 3},
                                  array={"C": 16, "K": 16})


def test_footprint_stride_and_partial_blocks():
    # stride 2, T_C = 24 on dim 16 -> cb = 2; T_K = 8 -> kb = 1
    layer = Layer.conv("s2", k=8, c=24, p=8, r=3, stride=2, padding=1)
    m = Mapping.for_layer(layer, spad={"C": 3, "P": 4, "Q": 2, "R": 3}, array={"C": 8, "K": 8})
    fp = m.footprint(HW16, layer)
    in_h, in_w = (4 - 1) * 2 + 3, (2 - 1) * 2 + 1
    assert fp == Footprint(input_rows=in_h * in_w * 2, weight_rows=3 * 1 * 1 * 24, output_rows=4 * 2 * 1)
    assert m.check(HW16, layer)


def _with(m: Mapping, level: str, loop: str, value) -> Mapping:
    f = m.factors_dict()
    f[level][loop] = value
    return Mapping(factors=f, order=m.order)


def test_check_reasons():
    m = _hand_mapping()
    f = m.factors_dict()
    del f["spad"]["S"]
    cases = [
        (Mapping(factors={k: v for k, v in m.factors_dict().items() if k != "array"}, order=m.order),
         "factor levels ['dram', 'spad'] must be exactly ['dram', 'spad', 'array']"),
        (Mapping(factors=f, order=m.order),
         "spad factors cover loops ['N', 'K', 'C', 'P', 'Q', 'R']; need each of N, K, C, P, Q, R, S once"),
        (Mapping(factors=m.factors, order=("N", "K", "P", "Q", "C", "R", "R")),
         "order ['N', 'K', 'P', 'Q', 'C', 'R', 'R'] is not a permutation of N, K, C, P, Q, R, S"),
        (_with(m, "spad", "P", 0), "spad factor of P is 0; factors must be integers >= 1"),
        (_with(m, "dram", "Q", 3.5), "dram factor of Q is 3.5; factors must be integers >= 1"),
        (_with(m, "dram", "C", 2), "loop C: dram 2 x spad 1 x array 16 = 32 != layer dim 64"),
    ]
    # array factor of P != 1 (products still right: dram P 8 -> 4)
    f = m.factors_dict()
    f["dram"]["P"], f["array"]["P"] = 4, 2
    cases.append((Mapping(factors=f, order=m.order),
                  "array factor of P is 2; only C and K are unrolled on the array, others must be 1"))
    # array C 32 > dim 16
    f = m.factors_dict()
    f["dram"]["C"], f["array"]["C"] = 2, 32
    cases.append((Mapping(factors=f, order=m.order), "array C factor 32 exceeds array dim 16"))
    # scratchpad overflow on a small config: dim 16, sp_kb 8 -> 512 rows
    small_sp = HardwareConfig(dim=16, sp_kb=8, acc_kb=64)
    # accumulator overflow: acc_kb 8 -> 8192 / 64 = 128 rows; output tile 112 rows -> 224
    small_acc = HardwareConfig(dim=16, sp_kb=256, acc_kb=8)
    for mapping, reason in cases:
        c = mapping.check(HW16, CONV3)
        assert not c and c == Check(False, reason)
        with pytest.raises(MappingError, match="mapping invalid for layer 'res2_3x3'"):
            mapping.validate(HW16, CONV3)
    c = m.check(small_sp, CONV3)
    assert c.reason == "input + weight tiles need 756 scratchpad rows double-buffered, capacity 512"
    c = m.check(small_acc, CONV3)
    assert c.reason == "output tile needs 224 accumulator rows double-buffered, capacity 128"
    assert m.validate(HW16, CONV3) is m


def test_mapping_hashable_canonical_and_json():
    m = _hand_mapping()
    shuffled = Mapping(factors={"array": dict(reversed(list(m.level("array").items()))),
                                "spad": m.level("spad"), "dram": m.level("dram")},
                       order=list(m.order))
    assert shuffled == m and hash(shuffled) == hash(m)
    assert len({m, shuffled}) == 1
    assert Mapping.from_json(m.to_json()) == m
    assert Mapping.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert dataclasses.replace(m, order=DEFAULT_ORDER) == m
    with pytest.raises(MappingError) as e:
        Mapping.from_dict({**m.to_dict(), "levels": 3})
    assert str(e.value) == "unknown Mapping field(s) ['levels']; allowed: ['buffers', 'factors', 'order']"
    text = str(m)
    assert "dram order N > K > P > Q > C > R > S" in text
    assert all(lv in text for lv in LEVELS) and all(lp in text for lp in LOOPS)


def test_for_layer_rejects_remainder():
    with pytest.raises(MappingError) as e:
        Mapping.for_layer(CONV3, spad={"P": 5})
    assert str(e.value) == "loop P: spad 5 x array 1 = 5 does not divide layer dim 56"


# --------------------------------------------------------------------------------------
# default_mapping
# --------------------------------------------------------------------------------------

DEFAULT_LAYERS = [
    Layer.conv("1x1", k=256, c=64, p=56, r=1),
    Layer.conv("1x1_s2", k=512, c=256, p=28, r=1, stride=2),
    Layer.conv("3x3_s2", k=128, c=128, p=28, r=3, stride=2, padding=1),
    CONV1,
    CONV3,
    Layer.conv("dw", k=144, c=144, p=56, r=3, padding=1, groups=144),
    Layer.gemm("gemm", 512, 768, 768),
    Layer.conv("batch", n=4, k=24, c=40, p=7, q=5, r=5, s=3, padding=1),
]

CONFIGS = ([HardwareConfig(dim=d) for d in (4, 8, 16, 32)]
           + [HardwareConfig(dim=d, sp_kb=8, acc_kb=8) for d in (4, 8, 16, 32)])


@pytest.mark.parametrize("hw", CONFIGS, ids=lambda h: f"d{h.dim}_sp{h.sp_kb}_acc{h.acc_kb}")
def test_default_mapping_passes_check(hw):
    for layer in DEFAULT_LAYERS:
        m = default_mapping(hw, layer)
        c = m.check(hw, layer)
        assert c, (layer.name, c.reason)
        assert m.order == DEFAULT_ORDER
        # array factors are the largest divisors <= dim
        assert m.factor("array", "C") == max(d for d in divisors(layer.dims["C"]) if d <= hw.dim)
        assert m.factor("array", "K") == max(d for d in divisors(layer.dims["K"]) if d <= hw.dim)
        # greedy is maximal: no single spad factor can grow to its next divisor and still fit
        for lp in LOOPS:
            cur = m.factor("spad", lp)
            bigger = [d for d in divisors(layer.dims[lp] // m.factor("array", lp)) if d > cur]
            if bigger:
                f = m.factors_dict()
                f["spad"][lp] = bigger[0]
                f["dram"][lp] = layer.dims[lp] // (bigger[0] * f["array"][lp])
                assert not Mapping(factors=f, order=m.order).check(hw, layer), (layer.name, lp)


def test_default_mapping_hand_case():
    # GEMM 64x64x64 on dim 16 with defaults: everything fits, one tile holds the whole layer
    g = Layer.gemm("g", 64, 64, 64)
    m = default_mapping(HW16, g)
    assert m.tiles() == {"N": 1, "K": 64, "C": 64, "P": 64, "Q": 1, "R": 1, "S": 1}
    assert m.dram_iterations == 1


def test_default_mapping_impossible():
    tiny = types.SimpleNamespace(dim=4, sp_rows=2, acc_rows=2, sp_kb=0, acc_kb=0)
    with pytest.raises(MappingError) as e:
        default_mapping(tiny, CONV3)
    assert str(e.value).startswith("no mapping of layer 'res2_3x3' fits dim=4, sp_kb=0, acc_kb=0")


# --------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------

def _result(**kw) -> Result:
    base = {"cycles": 1000, "busy": {"load": 400, "exec": 900, "store": 100},
                "counts": {k: i + 1 for i, k in enumerate(COUNT_KEYS)}, "utilisation": 0.5,
                "feasible": True, "reason": None, "verified": True, "fidelity": "rtl",
                "energy_pj": 2.5e6, "area_mm2": 1.25, "extra": {"wall_s": 3.2}}
    base.update(kw)
    return Result(**base)


def test_result_basics_and_json():
    r = _result()
    assert r.edp == 2.5e9
    assert _result(energy_pj=None).edp is None
    assert Result.from_json(r.to_json()) == r
    assert Result.from_dict(r.to_dict()) == r
    assert Result.utilisation_of(8000, 4, 1000) == 0.5
    r2 = _result(cycles=np.int64(7), counts={k: np.int64(1) for k in COUNT_KEYS}, utilisation=np.float64(0.25))
    assert type(r2.cycles) is int and json.loads(r2.to_json())["counts"]["macs"] == 1


def test_result_infeasible():
    r = Result.infeasible("output tile needs 224 accumulator rows double-buffered, capacity 128", "analytical")
    assert not r.feasible and r.cycles is None and r.edp is None and r.utilisation is None
    assert r.counts == {k: 0 for k in COUNT_KEYS}
    assert Result.from_json(r.to_json()) == r


BAD_RESULTS = [
    ({"fidelity": "spice"}, "Result.fidelity must be one of rtl, analytical; got 'spice'"),
    ({"counts": {"macs": 1}}, None),
    ({"busy": {"load": 1, "exec": 2}}, ("Result.busy must have exactly the keys ['load', 'exec', 'store']; "
                                        "missing ['store'], unknown []")),
    ({"cycles": 1.5}, "Result.cycles must be an integer; got 1.5"),
    ({"feasible": False, "reason": None}, "Result.reason must say why when feasible is False"),
    ({"verified": 1}, "Result.verified must be a bool; got 1"),
]


@pytest.mark.parametrize("kw,msg", BAD_RESULTS)
def test_result_invalid(kw, msg):
    with pytest.raises(ResultError) as e:
        _result(**kw)
    assert "\n" not in str(e.value)
    if msg is not None:
        assert str(e.value) == msg


def test_result_from_dict_keys():
    d = _result().to_dict()
    with pytest.raises(ResultError) as e:
        Result.from_dict({**d, "power": 1})
    assert str(e.value).startswith("unknown Result field(s) ['power']")
    del d["fidelity"]
    with pytest.raises(ResultError) as e:
        Result.from_dict(d)
    assert str(e.value) == "missing Result field(s) ['fidelity']"
    d = _result().to_dict()
    del d["extra"], d["energy_pj"]
    assert Result.from_dict(d).extra == {}
