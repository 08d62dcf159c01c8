"""The pure helpers of scripts/bench_mapping.py (no RTL, no model), on hand-computed cases."""

import importlib.util
from pathlib import Path

import pytest

from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import default_mapping

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "bench_mapping.py"
_spec = importlib.util.spec_from_file_location("bench_mapping", _PATH)
bm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bm)


def test_network_totals_and_checks_by_hand():
    rows = [{"count": 2, "default": {"cycles": 100, "energy_pj": 10.0}, "best": {"cycles": 80, "energy_pj": 10.0}},
            {"count": 1, "default": {"cycles": 50, "energy_pj": 4.0}, "best": {"cycles": 53, "energy_pj": 4.0}}]
    d, b = bm.network_totals(rows, "default"), bm.network_totals(rows, "best")
    # default: cycles 2*100 + 50 = 250, energy 2*10 + 4 = 24; best: 213, 24
    assert d == {"cycles": 250, "energy_pj": 24.0, "edp": 6000.0}
    assert b == {"cycles": 213, "energy_pj": 24.0, "edp": 5112.0}
    layer_ratios = [bm.metric(80, 10.0, "edp") / bm.metric(100, 10.0, "edp"),   # 0.8
                    bm.metric(53, 4.0, "edp") / bm.metric(50, 4.0, "edp")]      # 1.06
    c = bm.checks(layer_ratios, b["edp"] / d["edp"])
    assert c["network_lower"] and not c["layers_within"]
    assert c["worst_layer"] == 1 and c["worst_ratio"] == pytest.approx(1.06) and c["layers_over"] == [1]
    assert bm.checks(layer_ratios, 1.0, tolerance=0.1)["layers_within"]
    assert not bm.checks([1.0], 1.0)["network_lower"]          # equal is not lower


def test_metric_per_objective():
    assert bm.metric(10, 3.0, "edp") == 30.0
    assert bm.metric(10, 3.0, "cycles") == 10.0
    assert bm.metric(10, 3.0, "energy") == 3.0


def test_plan_unique_simulates_each_triple_once():
    hw16, hw32 = HardwareConfig(dim=16), HardwareConfig(dim=32)
    a = Layer(name="a", n=1, k=32, c=32, p=8, q=8, r=3, s=3, padding=1)
    a_twin = Layer(name="a_twin", n=1, k=32, c=32, p=8, q=8, r=3, s=3, padding=1, count=4)   # same shape
    b = Layer(name="b", n=1, k=64, c=32, p=8, q=8, r=1, s=1)
    m = default_mapping(hw16, a)
    mb = default_mapping(hw16, b)
    triples = [(hw16, m, a), (hw16, m, a),          # best == default
               (hw16, m, a_twin),                   # same shape, other name and count
               (hw32, m, a),                        # other hardware
               (HardwareConfig(dim=16), m, a),      # the same design again
               (hw16, mb, b)]
    unique, where = bm.plan_unique(triples)
    assert where == [0, 0, 0, 1, 0, 2]
    assert [(t[0].dim, t[2].name) for t in unique] == [(16, "a"), (32, "a"), (16, "b")]


def test_parse_dims():
    assert bm.parse_dims("16,32") == [16, 32]
    assert bm.parse_dims("32, 16,32") == [32, 16]
    for bad in ("", "16,x", "16,,32", "-4"):
        with pytest.raises(ValueError):
            bm.parse_dims(bad)
