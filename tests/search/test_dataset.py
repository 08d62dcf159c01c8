"""search.dataset: the SQLite store (creation, atomic batches, done indices, unit points,
meta), the readers, the summary and the Parquet export."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import Mapping
from hw.result import BUSY_KEYS, COUNT_KEYS, Result
from search.dataset import (
    COLUMN_NAMES,
    DB_NAME,
    ENCODING_NAMES,
    SAMPLE_COLUMNS,
    DatasetError,
    Store,
    decode_record,
    export_parquet,
    format_summary,
    load,
    load_arrays,
    load_records,
    reason_kind,
    summary,
)
from search.space import ENCODING_NAMES as MAPPING_ENCODING_NAMES

LAYER = Layer.gemm("fc", m=8, k=16, n=4)
HW = HardwareConfig(dim=4, sp_kb=8, acc_kb=8)
MAPPING = Mapping.for_layer(LAYER, array={"C": 4, "K": 4})
META = {"fidelity": "analytical", "workloads": ["toy"], "n": 4, "seed": 0,
        "layers": [{"index": 0, "layer": LAYER.to_dict(), "workloads": {"toy": {"name": "fc", "count": 1}}}]}
LAYER_ROWS = [("toy", 0, "fc", 1, LAYER.to_json())]


def _row(i: int, r: Result) -> tuple:
    """A samples row built by hand (the collector builds the same from its evaluators)."""
    u = [i / 10] * 12
    enc = [0.5] * len(ENCODING_NAMES)
    return (i, json.dumps(u), 0, "toy", "fc", LAYER.to_json(), HW.to_json(), MAPPING.to_json(), HW.dim,
            HW.sp_kb, HW.acc_kb, json.dumps(enc), r.to_json(), int(r.feasible), r.reason, r.cycles, r.energy_pj,
            r.area_mm2, r.edp, r.utilisation, *(r.counts[k] for k in COUNT_KEYS),
            *(r.busy[k] for k in BUSY_KEYS))


def _ok(cycles: int) -> Result:
    return Result(cycles=cycles, busy={"load": 1, "exec": 2, "store": 3},
                  counts={k: 10 for k in COUNT_KEYS}, utilisation=0.5, feasible=True, reason=None,
                  verified=False, fidelity="analytical", energy_pj=100.0, area_mm2=1.5)


def _bad(reason: str) -> Result:
    return Result.infeasible(reason, "analytical")


ROWS = [_row(0, _ok(100)), _row(1, _bad("output tile needs 40 accumulator rows double-buffered, capacity 32")),
        _row(2, _ok(300)), _row(3, _bad("output tile needs 64 accumulator rows double-buffered, capacity 32"))]


@pytest.fixture
def store(tmp_path):
    with Store.create(tmp_path, META, LAYER_ROWS) as s:
        yield s


# ---- the store ----------------------------------------------------------------------
def test_create_writes_meta_layers_and_wal(store, tmp_path):
    assert (tmp_path / DB_NAME).is_file()
    meta = store.meta
    assert meta["schema"] == "accelsim.dataset/1"
    assert {k: meta[k] for k in META} == META
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.layer_table() == [{"workload": "toy", "layer_index": 0, "name": "fc", "count": 1,
                                    "layer": LAYER.to_dict()}]
    assert store.count() == 0 and store.done_indices().tolist() == []


def test_insert_is_one_transaction_and_indices_are_unique(store):
    store.insert(ROWS[:2])
    assert store.done_indices().tolist() == [0, 1]
    # A batch with an index already present fails as a whole: nothing of it is written.
    with pytest.raises(sqlite3.IntegrityError):
        store.insert([ROWS[2], ROWS[1]])
    assert store.done_indices().tolist() == [0, 1]
    store.insert(ROWS[2:])
    assert store.done_indices().tolist() == [0, 1, 2, 3]


def test_reopen_sees_committed_rows(store, tmp_path):
    store.insert(ROWS)
    with Store.open(tmp_path) as again:
        assert again.count() == 4
        assert again.meta["n"] == 4


def test_set_meta_and_delete_errors(store):
    store.insert(ROWS[:2] + [_row(2, Result.infeasible("error: BuildError: verilator failed", "rtl"))])
    store.set_meta(n=10)
    assert store.meta["n"] == 10
    assert store.delete_errors() == 1
    assert store.done_indices().tolist() == [0, 1]


def test_points_blocks_round_trip(store):
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 12)), rng.random((3, 12))
    store.put_points(0, a)
    store.put_points(5, b)
    assert store.point_blocks() == {0: 5, 5: 3}
    assert np.array_equal(store.get_points(0, 8), np.concatenate([a, b]))
    assert np.array_equal(store.get_points(3, 7), np.concatenate([a, b])[3:7])
    with pytest.raises(DatasetError, match="not stored"):
        store.get_points(6, 9)


def test_open_errors(tmp_path):
    with pytest.raises(DatasetError, match="no dataset"):
        Store.open(tmp_path / "missing")
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(DatasetError, match="not an accelsim dataset"):
        Store.open(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(DatasetError, match="not a readable SQLite"):
        Store.open_or_create(junk, META, LAYER_ROWS)


def test_a_killed_creation_counts_as_absent(tmp_path):
    # A file with no tables (the creating process died before its first commit).
    sqlite3.connect(tmp_path / DB_NAME).close()
    store, created = Store.open_or_create(tmp_path, META, LAYER_ROWS)
    assert created
    store.close()
    store, created = Store.open_or_create(tmp_path, META, LAYER_ROWS)
    assert not created
    store.close()


# ---- readers --------------------------------------------------------------------------
def test_load_forms(store):
    store.insert(ROWS[::-1])            # any insertion order: readers return index order
    cols = load(store)
    assert list(cols) == list(COLUMN_NAMES)
    assert cols["idx"] == [0, 1, 2, 3]
    assert cols["feasible"] == [1, 0, 1, 0]
    assert cols["cycles"] == [100, None, 300, None]
    assert load(store, ["idx", "edp"]) == {"idx": [0, 1, 2, 3], "edp": [1e4, None, 3e4, None]}
    with pytest.raises(DatasetError, match="unknown column"):
        load(store, ["nope"])
    recs = load_records(store, ["idx", "reason"])
    assert recs[1] == {"idx": 1, "reason": "output tile needs 40 accumulator rows double-buffered, capacity 32"}
    arr = load_arrays(store)
    assert arr["u"].shape == (4, 12) and arr["encoding"].shape == (4, len(ENCODING_NAMES))
    assert arr["feasible"].tolist() == [True, False, True, False]
    assert np.isnan(arr["cycles"][1]) and arr["cycles"][2] == 300.0
    layer, hw, mapping, result = decode_record(load_records(store)[0])
    assert (layer, hw, mapping, result) == (LAYER, HW, MAPPING, _ok(100))


def test_encoding_names():
    assert ENCODING_NAMES[:3] == ("hw_dim", "hw_acc_kb", "hw_sp_kb")
    assert ENCODING_NAMES[3:] == tuple(MAPPING_ENCODING_NAMES) and len(ENCODING_NAMES) == 31


# ---- summary ----------------------------------------------------------------------------
def test_summary(store, tmp_path):
    store.insert(ROWS[:3])
    s = summary(tmp_path)
    assert (s["total"], s["feasible"], s["infeasible"], s["n"]) == (3, 2, 1, 4)
    assert s["reasons"] == [("output tile needs # accumulator rows double-buffered, capacity #", 1)]
    assert s["cycles"] == {"min": 100.0, "median": 200.0, "max": 300.0}
    assert s["edp"] == {"min": 1e4, "median": 2e4, "max": 3e4}
    text = format_summary(s, wall_s=2.0, evaluated=3)
    assert "3 of n = 4  (incomplete)" in text
    assert "feasible  2 (66.7%)" in text
    assert "1.5 samples/s" in text
    assert reason_kind("need 12 rows, capacity 8") == "need # rows, capacity #"
    assert (reason_kind("estimates 1,234,567 cycles, above 20,000,000") == reason_kind("estimates 21,000,000 cycles, above 20,000,000") == "estimates # cycles, above #")


# ---- Parquet ------------------------------------------------------------------------------
def test_export_parquet_round_trip(store, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    store.insert(ROWS)
    path = tmp_path / "out.parquet"
    assert export_parquet(tmp_path, path, rows_per_group=3) == 4   # two row groups
    table = pq.read_table(path)
    assert table.column_names == [c for c, _ in SAMPLE_COLUMNS]
    cols = load(store)
    assert table.num_rows == 4
    assert table.column("idx").to_pylist() == cols["idx"]
    assert table.column("cycles").to_pylist() == cols["cycles"]
    assert table.column("feasible").to_pylist() == [bool(x) for x in cols["feasible"]]
    assert table.column("result").to_pylist() == cols["result"]
    assert table.column("u").to_pylist() == [json.loads(s) for s in cols["u"]]
    meta = json.loads(table.schema.metadata[b"accelsim.meta"])
    assert meta["fidelity"] == "analytical" and meta["n"] == 4
    assert json.loads(table.schema.metadata[b"accelsim.layers"])[0]["name"] == "fc"
    assert not (tmp_path / "out.parquet.tmp").exists()
