"""search.surrogate_data and search.surrogate_metrics: the surrogate's input rows of an
RTL Parquet export (version-1 encoding) and of a small analytical collection against
independent reads (pyarrow, the decoded sample key, cost.model.evaluate_arrays), the
held-out split as a function of the key alone, de-duplication, one-line errors, and the
metrics on hand-computed cases."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import norm

from cost.model import evaluate_arrays
from hw.config import HardwareConfig
from hw.layer import MAX_DIM, MAX_STRIDE, Layer
from hw.mapping import LEVELS, LOOPS, Mapping
from search.dataset import DatasetError
from search.surrogate_data import (BASE_DIMS, TEST_FRACTION, analytical_columns, candidate_inputs,
                                   input_names, load_dataset, load_datasets, sample_key)
from search.surrogate_data import test_mask as split_mask
from search.surrogate_metrics import METRIC_NAMES, Z90, metrics

REPO = Path(__file__).resolve().parents[2]
RTL = REPO / "docs" / "datasets" / "rtl_seed0_n1280.parquet"
NAMES = input_names()



@pytest.fixture(scope="session")
def analytical_dir(starlight_analytical_dir):
    return starlight_analytical_dir


@pytest.fixture(scope="module")
def rtl():
    return load_dataset(RTL)


@pytest.fixture(scope="module")
def rtl_raw():
    """The feasible rows of the Parquet file, read with pyarrow alone."""
    rows = pq.read_table(RTL).to_pylist()
    return [r for r in rows if r["feasible"] and r["cycles"] is not None and r["energy_pj"] is not None]


def _decode_key(key: str):
    """(Layer, HardwareConfig, Mapping) of a sample key, by hand from its JSON."""
    shape, (dim, sp_kb, acc_kb), mapping = json.loads(key)
    return (Layer.from_dict({**shape, "name": "decoded"}), HardwareConfig(dim=dim, sp_kb=sp_kb, acc_kb=acc_kb),
            Mapping.from_dict(mapping))


def _col(name: str) -> int:
    return NAMES.index(name)


# ---- layout -------------------------------------------------------------------------------

def test_input_layout():
    assert len(NAMES) == BASE_DIMS + 2 == 66
    assert NAMES[BASE_DIMS:] == ("analytical_log_cycles", "analytical_log_energy")
    assert len(set(NAMES)) == len(NAMES)
    assert [n for n in NAMES if n.startswith("buffers_")] == ["buffers_input", "buffers_weight", "buffers_output"]
    assert NAMES[:3] == ("hw_dim", "hw_acc_kb", "hw_sp_kb")


def test_rtl_parquet_rows_match_an_independent_read(rtl, rtl_raw):
    X = rtl.X
    assert X.shape == (len(rtl), len(NAMES))
    assert not np.isnan(X).any()
    assert len(rtl) == 549 and rtl.fidelity == "rtl" and rtl.sources == (str(RTL),)
    # no repeated triple in this file: the rows are the raw feasible rows, in order
    assert len(rtl_raw) == 549
    raw_keys = [sample_key(Layer.from_json(r["layer"]), HardwareConfig.from_json(r["hw"]),
                           Mapping.from_json(r["mapping"])) for r in rtl_raw]
    assert list(rtl.keys) == raw_keys
    cycles = np.array([r["cycles"] for r in rtl_raw], dtype=np.float64)
    energy = np.array([r["energy_pj"] for r in rtl_raw], dtype=np.float64)
    np.testing.assert_array_equal(rtl.cycles, cycles)
    np.testing.assert_array_equal(rtl.energy_pj, energy)
    np.testing.assert_allclose(rtl.y, np.log(energy * cycles), rtol=1e-13)
    np.testing.assert_array_equal(rtl.dim, [r["dim"] for r in rtl_raw])
    np.testing.assert_array_equal(rtl.layer_index, [r["layer_index"] for r in rtl_raw])
    # version 1: the stored 31 numbers, then buffers - 1 = 1 for every operand (double-buffered)
    enc = np.array([json.loads(r["encoding"]) if isinstance(r["encoding"], str) else r["encoding"]
                    for r in rtl_raw])
    assert enc.shape == (549, 31)
    np.testing.assert_array_equal(X[:, :31], enc)
    for name in ("buffers_input", "buffers_weight", "buffers_output"):
        assert (X[:, _col(name)] == 1.0).all()
    # network columns are in [0, 1]
    assert X[:, :BASE_DIMS].min() >= 0.0 and X[:, :BASE_DIMS].max() <= 1.0 + 1e-12


def test_layer_and_factor_columns_by_hand(rtl):
    for i in (0, 17, 200, 548):
        layer, hw, mapping = _decode_key(rtl.keys[i])
        dims = layer.dims
        for lp in LOOPS:
            assert rtl.X[i, _col(f"layer_{lp}")] == pytest.approx(math.log2(dims[lp]) / math.log2(MAX_DIM),
                                                                  abs=1e-15)
            for lv in LEVELS:
                want = math.log2(mapping.factor(lv, lp)) / math.log2(MAX_DIM)
                assert rtl.X[i, _col(f"log2_{lv}_{lp}")] == pytest.approx(want, abs=1e-12)
        assert rtl.X[i, _col("layer_groups")] == pytest.approx(math.log2(layer.groups) / math.log2(MAX_DIM))
        assert rtl.X[i, _col("layer_stride")] == pytest.approx(math.log2(layer.stride) / math.log2(MAX_STRIDE))


@pytest.mark.parametrize("which", ["rtl", "analytical"])
def test_analytical_columns_and_candidate_inputs_match_the_decoded_triple(which, rtl, analytical_dir):
    data = rtl if which == "rtl" else load_dataset(analytical_dir)
    assert not np.isnan(data.X).any()
    for i in np.linspace(0, len(data) - 1, 6).astype(int):
        layer, hw, mapping = _decode_key(data.keys[i])
        factors, order = mapping.to_arrays()
        res = evaluate_arrays(layer, hw, factors[None], order[None], np.array([mapping.buffers]))
        assert bool(res["feasible"][0])
        want = np.array([math.log(res["cycles"][0]), math.log(res["energy_pj"][0])])
        np.testing.assert_allclose(data.X[i, BASE_DIMS:], want, rtol=1e-12)
        np.testing.assert_allclose(data.analytical_log_edp()[i], want.sum(), rtol=1e-12)
        # the candidates' path builds the same row, exactly
        cand = candidate_inputs(layer, hw, factors[None], order[None], np.array([mapping.buffers]))
        assert cand.shape == (1, len(NAMES))
        np.testing.assert_array_equal(cand[0], data.X[i])
        # and without the analytical model: the network columns only
        cand = candidate_inputs(layer, [hw], factors[None], order[None], mapping.buffers, analytical=False)
        np.testing.assert_array_equal(cand[0, :BASE_DIMS], data.X[i, :BASE_DIMS])
        assert np.isnan(cand[0, BASE_DIMS:]).all()
        np.testing.assert_array_equal(
            analytical_columns([layer], [hw], factors[None], order[None], [mapping.buffers])[0], data.X[i, BASE_DIMS:])


def test_analytical_false_leaves_the_analytical_columns_nan(rtl):
    d = load_dataset(RTL, analytical=False)
    assert np.isnan(d.X[:, BASE_DIMS:]).all()
    np.testing.assert_array_equal(d.X[:, :BASE_DIMS], rtl.X[:, :BASE_DIMS])
    np.testing.assert_array_equal(d.y, rtl.y)


def test_candidate_inputs_of_several_rows_and_empty(rtl):
    # rows of one layer and one hardware in one call = the dataset's rows
    layer0, hw0, _ = _decode_key(rtl.keys[0])
    same = [i for i in range(len(rtl)) if _decode_key(rtl.keys[i])[:2] == (layer0, hw0)]
    maps = [_decode_key(rtl.keys[i])[2] for i in same]
    arrs = [m.to_arrays() for m in maps]
    X = candidate_inputs(layer0, hw0, np.stack([a[0] for a in arrs]), np.stack([a[1] for a in arrs]))
    np.testing.assert_array_equal(X, rtl.X[same])
    empty = candidate_inputs(layer0, hw0, np.zeros((0, 3, 7)), np.zeros((0, 7)))
    assert empty.shape == (0, len(NAMES))


# ---- the held-out split -------------------------------------------------------------------

def test_test_mask_is_a_function_of_the_key(rtl):
    keys = list(rtl.keys)
    # independent: the first 8 bytes of the SHA-256 as a fraction of 2**64
    want = np.array([int(hashlib.sha256(k.encode()).hexdigest()[:16], 16) / 2.0**64 < TEST_FRACTION for k in keys])
    np.testing.assert_array_equal(rtl.test, want)
    np.testing.assert_array_equal(split_mask(keys), want)
    # order does not matter, and a key alone gets its own split
    perm = np.random.default_rng(3).permutation(len(keys))
    np.testing.assert_array_equal(split_mask([keys[i] for i in perm]), want[perm])
    assert [bool(split_mask([k])[0]) for k in keys[:20]] == want[:20].tolist()
    frac = rtl.test.mean()
    assert 0.15 <= frac <= 0.25
    assert len(rtl.train) + len(rtl.held_out) == len(rtl)
    assert not set(rtl.train.keys) & set(rtl.held_out.keys)
    assert (rtl.held_out.test).all() and not rtl.train.test.any()
    # the split survives subsets (a grown or shrunk collection moves no sample)
    sub = rtl.subset(np.arange(0, len(rtl), 3))
    np.testing.assert_array_equal(sub.test, want[::3])
    np.testing.assert_array_equal(sub.X, rtl.X[::3])


def test_sample_key_ignores_name_and_count():
    a = Layer.conv("a", n=1, k=32, c=16, p=8, q=8, r=3, s=3, padding=1, count=2)
    b = Layer.conv("b", n=1, k=32, c=16, p=8, q=8, r=3, s=3, padding=1, count=5)
    c = Layer.conv("a", n=1, k=32, c=16, p=8, q=8, r=1, s=1, padding=0, count=2)
    hw = HardwareConfig()
    m = Mapping.for_layer(a)
    assert sample_key(a, hw, m) == sample_key(b, hw, m)
    assert sample_key(a, hw, m) != sample_key(c, hw, Mapping.for_layer(c))
    m1 = Mapping.for_layer(a, buffers=(1, 2, 2))
    assert sample_key(a, hw, m) != sample_key(a, hw, m1)


def test_load_datasets_dedupes(rtl, analytical_dir):
    twice = load_datasets([RTL, RTL])
    assert len(twice) == len(rtl)
    assert twice.keys == rtl.keys
    np.testing.assert_array_equal(twice.X, rtl.X)
    np.testing.assert_array_equal(twice.y, rtl.y)
    np.testing.assert_array_equal(twice.test, rtl.test)
    assert twice.sources == (str(RTL), str(RTL))
    # a collection directory and its sqlite file are the same rows
    a = load_dataset(analytical_dir)
    b = load_datasets([analytical_dir, analytical_dir / "dataset.sqlite"])
    assert a.fidelity == "analytical" and b.keys == a.keys
    np.testing.assert_array_equal(a.X, b.X)
    assert len(set(a.keys)) == len(a)
    # feasible rows of the collection, read with sqlite alone
    import sqlite3

    con = sqlite3.connect(analytical_dir / "dataset.sqlite")
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        table = next(t for t in tables if "feasible" in [c[1] for c in con.execute(f"pragma table_info({t})")])
        n_feasible = con.execute(f"select count(*) from {table} where feasible and cycles is not null").fetchone()[0]
    finally:
        con.close()
    assert len(a) == n_feasible


def test_datasets_of_two_fidelities_are_an_error(analytical_dir):
    with pytest.raises(DatasetError, match="different fidelities"):
        load_datasets([RTL, analytical_dir])
    with pytest.raises(DatasetError):
        load_datasets([])


def test_missing_and_empty_paths_are_one_line_errors(tmp_path):
    for path in (tmp_path / "nope.parquet", tmp_path / "nope", tmp_path):
        with pytest.raises(DatasetError) as e:
            load_dataset(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DatasetError) as e:
        load_dataset(bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)


# ---- metrics ------------------------------------------------------------------------------

def test_metrics_rho_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert metrics(y, y + 0.1)["rho"] == pytest.approx(1.0)
    assert metrics(y, 10 - 3 * y)["rho"] == pytest.approx(-1.0)
    # ranks differ by d = (1, -1, 1, -1, 0): rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert metrics(y, [2.0, 1.0, 4.0, 3.0, 5.0])["rho"] == pytest.approx(0.8)
    # monotone transforms of the prediction do not change rho
    assert metrics(y, np.exp(y))["rho"] == pytest.approx(1.0)
    # a constant prediction ranks nothing: rho 0 (scipy gives NaN, which JSON cannot hold)
    m = metrics(y, np.full(5, 2.0))
    assert m["rho"] == 0.0 and json.loads(json.dumps(m))["rho"] == 0.0


def test_metrics_errors_by_hand():
    y = np.arange(5.0)
    m = metrics(y, y + [0.0, -1.0, 2.0, -3.0, 4.0])
    assert m["n"] == 5
    assert m["median_abs_log"] == pytest.approx(2.0)
    assert m["p95_abs_log"] == pytest.approx(3.8)       # linear interpolation: 3 + 0.8 * (4 - 3)
    assert m["coverage90"] is None
    assert set(METRIC_NAMES) <= set(m)
    m = metrics([1.0, 2.0, 3.0, 4.0], [1.5, 2.5, 3.0, 5.0])
    assert m["median_abs_log"] == pytest.approx(0.5)


def test_metrics_coverage_by_hand():
    assert Z90 == pytest.approx(norm.ppf(0.95)) and Z90 == pytest.approx(1.6448536, abs=1e-6)
    y = np.array([0.0, 1.0, 2.0, 3.0])
    mean = y + [0.5, -2.0, 1.0, 1.7]
    assert metrics(y, mean, np.full(4, 1e6))["coverage90"] == 1.0
    assert metrics(y, mean, np.full(4, 1e-9))["coverage90"] == 0.0
    # std 1: |err| <= 1.645 for 0.5 and 1.0, not for 2.0 and 1.7
    assert metrics(y, mean, np.ones(4))["coverage90"] == pytest.approx(0.5)
    assert metrics(y, mean, [1.0, 2.0, 1.0, 1.0])["coverage90"] == pytest.approx(0.75)


def test_metrics_top10_recall_by_hand():
    y = np.arange(20, dtype=float)                      # best two: rows 0 and 1 (k = ceil(2.0) = 2)
    mean = y.copy()
    assert metrics(y, mean)["top10_recall"] == 1.0
    mean[1] = 100.0                                     # predicted best two: rows 0 and 2
    assert metrics(y, mean)["top10_recall"] == 0.5
    assert metrics(y, -y)["top10_recall"] == 0.0
    y11 = np.arange(11, dtype=float)                    # k = ceil(1.1) = 2
    p = np.array([0.0, 50.0, 1.0] + [10.0 + i for i in range(8)])
    assert metrics(y11, p)["top10_recall"] == 0.5
    y5 = np.array([3.0, 1.0, 2.0, 5.0, 4.0])            # k = 1: row 1
    assert metrics(y5, [3.0, 0.5, 2.0, 5.0, 4.0])["top10_recall"] == 1.0
    assert metrics(y5, [3.0, 2.5, 2.0, 5.0, 4.0])["top10_recall"] == 0.0


def test_metrics_bad_shapes():
    with pytest.raises(ValueError):
        metrics([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        metrics([1.0], [1.0])
