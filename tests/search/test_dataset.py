"""search.dataset: the SQLite store (creation, atomic batches, done indices, unit points,
meta), the readers, the summary, the Parquet export and its inverse (the import), for
datasets of both encoding versions and those made before versions existed (no
``encoding_version``: version 1)."""

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
    UNIT_NAMES,
    DatasetError,
    Store,
    decode_record,
    encoding_names,
    export_parquet,
    format_summary,
    import_parquet,
    load,
    load_arrays,
    load_records,
    read_parquet_meta,
    reason_kind,
    summary,
    unit_names,
)
from search.space import BUFFER_ENCODING_NAMES
from search.space import ENCODING_NAMES as MAPPING_ENCODING_NAMES

LAYER = Layer.gemm("fc", m=8, k=16, n=4)
HW = HardwareConfig(dim=4, sp_kb=8, acc_kb=8)
MAPPING = Mapping.for_layer(LAYER, array={"C": 4, "K": 4})
META = {"fidelity": "analytical", "workloads": ["toy"], "n": 4, "seed": 0,
        "layers": [{"index": 0, "layer": LAYER.to_dict(), "workloads": {"toy": {"name": "fc", "count": 1}}}]}
LAYER_ROWS = [("toy", 0, "fc", 1, LAYER.to_json())]
# Version 2: a single-buffered input tile (the mapping JSON then names its buffers).
META_V2 = {**META, "encoding_version": 2, "encoding_names": list(encoding_names(2)), "unit_names": list(unit_names(2))}
MAPPING_V2 = Mapping.for_layer(LAYER, array={"C": 4, "K": 4}, buffers=(1, 2, 2))


def _row(i: int, r: Result, version: int = 1, width: tuple | None = None) -> tuple:
    """A samples row built by hand (the collector builds the same from its evaluators);
    ``width``: (u, encoding) lengths other than the version's."""
    nu, ne = width or (len(unit_names(version)), len(encoding_names(version)))
    u = [i / 10] * nu
    enc = [0.5] * ne
    mapping = MAPPING if version == 1 else MAPPING_V2
    return (i, json.dumps(u), 0, "toy", "fc", LAYER.to_json(), HW.to_json(), mapping.to_json(), HW.dim,
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
    """A dataset whose meta has no encoding_version (as every one made before versions)."""
    with Store.create(tmp_path, META, LAYER_ROWS) as s:
        yield s


@pytest.fixture
def store_v2(tmp_path):
    with Store.create(tmp_path, META_V2, LAYER_ROWS) as s:
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
    assert encoding_names() == encoding_names(1) == ENCODING_NAMES
    assert encoding_names(2) == ENCODING_NAMES + BUFFER_ENCODING_NAMES and len(encoding_names(2)) == 3 + 31
    assert unit_names(1) == UNIT_NAMES and len(UNIT_NAMES) == 12 and UNIT_NAMES[-1] == "u_map7"
    assert unit_names(2) == UNIT_NAMES + ("u_map8", "u_map9", "u_map10") and len(unit_names(2)) == 1 + 3 + 11
    with pytest.raises(DatasetError, match=r"^encoding version must be one of 1, 2; got 3$"):
        encoding_names(3)
    with pytest.raises(DatasetError, match=r"^encoding version must be one of 1, 2; got True$"):
        unit_names(True)


# ---- encoding versions ------------------------------------------------------------------
def test_a_dataset_without_encoding_version_reads_as_version_1(store, tmp_path):
    store.insert(ROWS)
    assert "encoding_version" not in store.meta and store.encoding_version == 1
    arr = load_arrays(tmp_path)
    assert arr["encoding_version"] == 1 and arr["u"].shape == (4, 12) and arr["encoding"].shape == (4, 31)
    assert summary(tmp_path)["encoding_version"] == 1
    assert decode_record(load_records(tmp_path)[0])[2].buffers == (2, 2, 2)
    # a version-1 row with a version-2 width is not silently read
    store.insert([_row(4, _ok(5), width=(15, 34))])
    with pytest.raises(DatasetError, match=r"sample 4 has 15 numbers in column u; encoding version 1 has 12"):
        load_arrays(store)


def test_version_2_store_and_readers(store_v2, tmp_path):
    rows = [_row(i, res, 2) for i, res in enumerate([_ok(100), _bad("x"), _ok(300)])]
    store_v2.insert(rows)
    with Store.open(tmp_path, readonly=True) as again:
        assert again.encoding_version == 2 and again.meta["encoding_names"] == list(encoding_names(2))
    arr = load_arrays(tmp_path)
    assert arr["encoding_version"] == 2
    assert arr["u"].shape == (3, 15) and arr["encoding"].shape == (3, 34)
    assert arr["cycles"][0] == 100.0 and arr["feasible"].tolist() == [True, False, True]
    cols = load(tmp_path, ["idx", "mapping"])
    assert cols["idx"] == [0, 1, 2] and all('"buffers": {"input": 1' in m for m in cols["mapping"])
    layer, hw, mapping, result = decode_record(load_records(tmp_path)[2])
    assert (layer, hw, mapping, result) == (LAYER, HW, MAPPING_V2, _ok(300)) and mapping.buffers == (1, 2, 2)
    s = summary(tmp_path)
    assert s["encoding_version"] == 2 and (s["total"], s["feasible"]) == (3, 2)
    assert "encoding version 2" in format_summary(s)
    store_v2.insert([_row(3, _ok(5), width=(12, 31))])          # a version-1 row in a version-2 dataset
    with pytest.raises(DatasetError, match=r"sample 3 has 12 numbers in column u; encoding version 2 has 15"):
        load_arrays(tmp_path)


def test_unknown_encoding_versions_are_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"^encoding version must be one of 1, 2; got 3$"):
        Store.create(tmp_path, {**META, "encoding_version": 3}, LAYER_ROWS)
    with Store.create(tmp_path, META, LAYER_ROWS) as s:
        s.set_meta(encoding_version=7)               # a dataset from a later toolkit
    with pytest.raises(DatasetError, match=r"has encoding version 7; this version reads 1, 2"):
        Store.open(tmp_path)


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
    # a dataset without encoding_version: version 1's widths, and the version recorded
    import pyarrow as pa
    assert table.schema.field("u").type == pa.list_(pa.float64(), 12)
    assert table.schema.field("encoding").type == pa.list_(pa.float64(), 31)
    assert table.schema.metadata[b"accelsim.encoding_version"] == b"1"


def test_export_parquet_of_version_2(store_v2, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    store_v2.insert([_row(i, _ok(100 + i), 2) for i in range(3)])
    path = tmp_path / "v2.parquet"
    assert export_parquet(store_v2, path) == 3
    table = pq.read_table(path)
    assert table.schema.field("u").type == pa.list_(pa.float64(), 1 + 3 + 11)
    assert table.schema.field("encoding").type == pa.list_(pa.float64(), 3 + 31)
    assert table.schema.metadata[b"accelsim.encoding_version"] == b"2"
    assert json.loads(table.schema.metadata[b"accelsim.meta"])["encoding_version"] == 2
    assert table.column("encoding").to_pylist() == [[0.5] * 34] * 3
    assert table.column("mapping").to_pylist() == [MAPPING_V2.to_json()] * 3


# ---- Parquet import (the inverse of the export) ---------------------------------------------
def _raw(db, table: str) -> list[tuple]:
    """Every row of a table as stored (the text of the JSON columns included)."""
    with Store.open(db, readonly=True) as s:
        order = "key" if table == "meta" else "rowid"
        return s.conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()


@pytest.mark.parametrize("version", [None, 1, 2])
def test_import_parquet_recreates_the_store(tmp_path, version):
    """Export then import: the same meta, layers and sample rows, byte for byte (NULLs,
    0 / 1, the JSON text of u and encoding), for a dataset from before versions (None)
    and both versions; several row groups; the points table left empty."""
    pytest.importorskip("pyarrow")
    meta = {None: META, 1: {**META, "encoding_version": 1}, 2: META_V2}[version]
    layer_rows = LAYER_ROWS + [("other", 0, "fc2", 3, LAYER.to_json())]
    src = tmp_path / "src"
    src.mkdir()
    rows = [_row(i, res, version or 1) for i, res in
            enumerate([_ok(100), _bad("x y"), _ok(300), _bad("output tile needs 9 rows"), _ok(7)])]
    with Store.create(src, meta, layer_rows) as s:
        s.insert(rows)
        s.put_points(0, np.zeros((5, len(unit_names(version or 1)))))
    path = tmp_path / "d.parquet"
    assert export_parquet(src, path, rows_per_group=2) == 5              # three row groups
    assert import_parquet(path, tmp_path / "new" / "dir") == 5           # the directory is created
    copy = tmp_path / "new" / "dir"
    for table in ("meta", "layers", "samples"):
        assert _raw(copy, table) == _raw(src, table), table
    assert _raw(copy, "samples") == rows                                # the rows as built, NULLs included
    assert load(copy) == load(src) and load_records(copy) == load_records(src)
    with Store.open(copy, readonly=True) as s:
        assert s.point_blocks() == {} and s.encoding_version == (version or 1)
        assert s.meta == {**meta, "schema": "accelsim.dataset/1"}
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for a, b in zip(load_arrays(copy).values(), load_arrays(src).values()):
        np.testing.assert_array_equal(a, b)
    # into a .sqlite path, and an empty dataset
    empty = tmp_path / "empty"
    empty.mkdir()
    with Store.create(empty, meta, layer_rows):
        pass
    export_parquet(empty, tmp_path / "e.parquet")
    assert import_parquet(tmp_path / "e.parquet", tmp_path / "e.sqlite") == 0
    assert _raw(tmp_path / "e.sqlite", "meta") == _raw(empty, "meta") and load(tmp_path / "e.sqlite")["idx"] == []
    head = read_parquet_meta(path)
    assert head["rows"] == 5 and head["encoding_version"] == (version or 1)
    assert head["layers"] == Store.open(src, readonly=True).layer_table()


def test_import_parquet_into_a_dataset_is_an_error(store, tmp_path):
    pytest.importorskip("pyarrow")
    store.insert(ROWS[:2])
    export_parquet(store, tmp_path / "d.parquet")
    with pytest.raises(DatasetError, match="already holds tables") as e:
        import_parquet(tmp_path / "d.parquet", tmp_path)
    assert "\n" not in str(e.value)
    assert store.count() == 2


def _export_table(store, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    store.insert(ROWS)
    export_parquet(store, tmp_path / "good.parquet")
    return pq.read_table(tmp_path / "good.parquet")


def _bad_parquet(tmp_path, table, kind: str):
    """A file that is not an export of `export_parquet`, of kind ``kind``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / f"{kind}.parquet"
    md = table.schema.metadata
    if kind == "missing":
        return tmp_path / "nothing.parquet"
    if kind == "directory":
        path.mkdir()
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "no-metadata":
        pq.write_table(table.replace_schema_metadata(None), path)
    elif kind == "no-layers":
        pq.write_table(table.replace_schema_metadata({k: v for k, v in md.items() if k != b"accelsim.layers"}), path)
    elif kind == "bad-json":
        pq.write_table(table.replace_schema_metadata({**md, b"accelsim.meta": b"{not json"}), path)
    elif kind == "other-schema":
        meta = {**json.loads(md[b"accelsim.meta"]), "schema": "accelsim.dataset/0"}
        pq.write_table(table.replace_schema_metadata({**md, b"accelsim.meta": json.dumps(meta).encode()}), path)
    elif kind == "version-mismatch":
        pq.write_table(table.replace_schema_metadata({**md, b"accelsim.encoding_version": b"2"}), path)
    elif kind == "missing-column":
        pq.write_table(table.drop_columns(["edp"]), path)
    elif kind == "wrong-type":
        i = table.schema.get_field_index("cycles")
        pq.write_table(table.set_column(i, pa.field("cycles", pa.float64()), table.column("cycles").cast(pa.float64())),
                       path)
    elif kind == "duplicate-index":
        pq.write_table(pa.concat_tables([table, table.slice(1, 1)]), path)
    return path


@pytest.mark.parametrize("kind, message", [
    ("missing", "no Parquet file at {path}"),
    ("directory", "{path} is not a file"),
    ("random-bytes", "{path} is not a readable Parquet file: "),
    ("no-metadata", "{path} is not an accelsim dataset export: its metadata has no accelsim.meta, "
                    "accelsim.layers, accelsim.encoding_version"),
    ("no-layers", "{path} is not an accelsim dataset export: its metadata has no accelsim.layers "),
    ("bad-json", "{path}: unreadable accelsim metadata: "),
    ("other-schema", "{path} has dataset schema 'accelsim.dataset/0'; this version reads 'accelsim.dataset/1'"),
    ("version-mismatch", "{path}: accelsim.encoding_version 2 differs from the meta's encoding_version 1"),
    ("missing-column", "{path} does not have the columns of an accelsim dataset export: it lacks column(s) edp"),
    ("wrong-type", "{path}: column cycles has type double; an export of encoding version 1 has int64"),
    ("duplicate-index", "{path}: a row breaks the dataset's constraints (UNIQUE constraint failed: samples.idx); "
                        "nothing was imported"),
])
def test_import_parquet_of_a_bad_file_is_one_line(store, tmp_path, kind, message):
    table = _export_table(store, tmp_path)
    path = _bad_parquet(tmp_path, table, kind)
    target = tmp_path / "copy"
    with pytest.raises(DatasetError) as e:
        import_parquet(path, target)
    text = str(e.value)
    assert "\n" not in text and text.startswith(message.format(path=path)), text
    # nothing is left behind: no dataset file (a failed import removes the one it began)
    assert not (target / DB_NAME).exists() and not any(p.name.startswith(DB_NAME) for p in target.glob("*"))
    if kind != "duplicate-index":
        with pytest.raises(DatasetError) as e2:
            read_parquet_meta(path)
        assert str(e2.value) == text
