"""The dataset store: one SQLite file per collection (the store of record), Parquet export.

A collection (`search.collect`) writes ``DIR/dataset.sqlite`` in WAL mode. Only one
process writes (the collector's main process), one transaction per batch of samples,
so a batch is either wholly in the file or not at all: a collector killed at any moment
leaves a consistent file, and the next run computes the missing indices (`done_indices`)
and evaluates only those. Readers (``--summary``, `load`) may read while it runs.

Tables
------
``meta(key TEXT PRIMARY KEY, value TEXT)``, every value JSON:

    schema          SCHEMA (the layout version of this module)
    fidelity        "analytical" or "rtl"
    workloads       list of workload names (or files), in the order given
    n               number of samples asked for (grows when a collection is extended)
    seed            seed of the scrambled Sobol sequence (`CoDesignSpace.sobol`)
    layers          the co-design space's layers, ``[{"index", "layer", "workloads"}]``
                    (`search.collect.space_layers`); ``layer_index`` points into it
    hw_base         the `HardwareSpace` base configuration (fields not searched)
    encoding_version  the mapping encoding version (`search.space.ENCODING_VERSIONS`): 1,
                    every tile double-buffered; 2, with the per-operand buffering
                    (`Mapping.buffers`) sampled and encoded. Absent in datasets made
                    before versions existed: those are version 1 (`Store.encoding_version`)
    encoding_names  names of the numbers of column ``encoding`` (`encoding_names`: 31 in
                    version 1, 34 in version 2)
    unit_names      names of the numbers of column ``u`` (`unit_names`: 12 in version 1,
                    15 in version 2); absent before versions existed
    rtl             RTL settings (harness, output type, input seed rule), rtl only
    versions        package versions and a fingerprint of the code that made the data
    created         creation time (UTC, ISO 8601)

``layers(workload, layer_index, name, count, layer)``: for every listed workload and
each of its unique layer shapes (`search.workloads.unique_layers`), the index of the
shape in the space, its name in that workload and its repeat count there (network
totals weight a layer's result by it). Primary key (workload, layer_index).

``points(start, count, u)``: the unit points of the collection in blocks (``u`` is
``count`` x 12, or x 15 in version 2, little-endian float64), written when the collection is created or
extended, so that a resumed run needs neither scipy nor the same scipy version to find
the points of its missing samples.

``samples``: one row per sample, ``idx INTEGER PRIMARY KEY`` (the Sobol index), columns
`SAMPLE_COLUMNS`:

    idx              sample index i: point i of the seeded Sobol sequence
    u                the unit point, JSON list of 12 floats, 15 in version 2
                     (`CoDesignSpace.point` of that version)
    layer_index      index into meta ``layers``
    workloads        the workload(s) that hold this layer shape, comma-separated
    layer_name       the shape's name in the first of them
    layer            `Layer.to_json` (the shape as in meta ``layers``; its ``count`` is
                     the repeat count in the first workload: see table ``layers``)
    hw               `HardwareConfig.to_json`
    mapping          `Mapping.to_json` (with ``"buffers"`` when some operand is
                     single-buffered: version 2 only)
    dim, sp_kb, acc_kb   the searched hardware parameters
    encoding         JSON list of 31 floats (34 in version 2): `HardwareSpace.encode`
                     (3) then `MappingSpace.encode` of the version (28, or 31 with the
                     buffering), named by meta ``encoding_names``
    result           `Result.to_json` (the whole record, fidelity included)
    feasible         0 / 1
    reason           why infeasible (`Mapping.check`'s reason, or "error: ..." when the
                     RTL evaluation raised); NULL when feasible
    cycles, energy_pj, area_mm2, edp, utilisation
                     from the Result (edp = energy_pj * cycles); NULL when absent (an
                     infeasible analytical Result has no area; an RTL one has it, from
                     `cost.price`)
    sp_reads ... weight_loads   the counters of `hw.result.COUNT_KEYS`
    busy_load, busy_exec, busy_store   `Result.busy`

API
---
`Store.create` / `Store.open` / `Store.open_or_create` (or `open_store`, read-only),
`Store.insert` (one transaction), `Store.done_indices`, `Store.meta`, `Store.set_meta`,
`Store.put_points` / `Store.get_points`; `load` (dict of columns, pandas-free),
`load_records`, `load_arrays` (numpy), `decode_record` (back to Layer, HardwareConfig,
Mapping, Result); `summary` / `format_summary`; `export_parquet`, and its inverse
`import_parquet` (a new store from an export: meta, layers and every sample row; the
points table is left empty, the collector draws the points again from seed and n),
with `read_parquet_meta` (an export's metadata, checked). Every reader takes
datasets of both encoding versions (`Store.encoding_version`; `load_arrays` returns it
with the arrays, `export_parquet` sizes the list columns by it and records it).
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import numpy as np

from hw.result import BUSY_KEYS, COUNT_KEYS
from search.space import BUFFER_ENCODING_NAMES, CODESIGN_UNIT_DIMS_BY_VERSION, ENCODING_VERSIONS, HW_ENCODING_NAMES
from search.space import ENCODING_NAMES as MAPPING_ENCODING_NAMES

__all__ = [
    "DB_NAME",
    "ENCODING_NAMES",
    "HW_ENCODING_NAMES",
    "PARQUET_NAME",
    "SAMPLE_COLUMNS",
    "SCHEMA",
    "UNIT_NAMES",
    "DatasetError",
    "Store",
    "decode_record",
    "encoding_names",
    "export_parquet",
    "format_summary",
    "import_parquet",
    "load",
    "load_arrays",
    "load_records",
    "open_store",
    "read_parquet_meta",
    "reason_kind",
    "summary",
    "unit_names",
]

SCHEMA = "accelsim.dataset/1"
DB_NAME = "dataset.sqlite"
PARQUET_NAME = "dataset.parquet"
#: Names of column ``encoding`` and of column ``u`` in encoding version 1 (`encoding_names`,
#: `unit_names` of any version).
ENCODING_NAMES = HW_ENCODING_NAMES + tuple(MAPPING_ENCODING_NAMES)
_ENCODING_NAMES = {1: ENCODING_NAMES, 2: ENCODING_NAMES + BUFFER_ENCODING_NAMES}
_UNIT_HEAD = ("u_layer", "u_dim", "u_acc_kb", "u_sp_kb")
_UNIT_NAMES = {v: _UNIT_HEAD + tuple(f"u_map{i}" for i in range(d - len(_UNIT_HEAD)))
               for v, d in CODESIGN_UNIT_DIMS_BY_VERSION.items()}
UNIT_NAMES = _UNIT_NAMES[1]
assert set(_ENCODING_NAMES) == set(ENCODING_VERSIONS) == set(_UNIT_NAMES)

# (name, SQL type) of the samples table, in row order.
SAMPLE_COLUMNS = (
    ("idx", "INTEGER PRIMARY KEY"),
    ("u", "TEXT NOT NULL"),
    ("layer_index", "INTEGER NOT NULL"),
    ("workloads", "TEXT NOT NULL"),
    ("layer_name", "TEXT NOT NULL"),
    ("layer", "TEXT NOT NULL"),
    ("hw", "TEXT NOT NULL"),
    ("mapping", "TEXT NOT NULL"),
    ("dim", "INTEGER NOT NULL"),
    ("sp_kb", "INTEGER NOT NULL"),
    ("acc_kb", "INTEGER NOT NULL"),
    ("encoding", "TEXT NOT NULL"),
    ("result", "TEXT NOT NULL"),
    ("feasible", "INTEGER NOT NULL"),
    ("reason", "TEXT"),
    ("cycles", "INTEGER"),
    ("energy_pj", "REAL"),
    ("area_mm2", "REAL"),
    ("edp", "REAL"),
    ("utilisation", "REAL"),
    *((k, "INTEGER NOT NULL") for k in COUNT_KEYS),
    *((f"busy_{k}", "INTEGER NOT NULL") for k in BUSY_KEYS),
)
COLUMN_NAMES = tuple(c for c, _ in SAMPLE_COLUMNS)
_JSON_LIST_COLUMNS = ("u", "encoding")
_INT_COLUMNS = {c for c, t in SAMPLE_COLUMNS if t.startswith("INTEGER")} - {"feasible"}
_REAL_COLUMNS = {c for c, t in SAMPLE_COLUMNS if t.startswith("REAL")}


class DatasetError(ValueError):
    """The store is missing, is not a dataset, or does not match a request (one line)."""


def _check_version(version) -> int:
    if isinstance(version, bool) or version not in ENCODING_VERSIONS:
        raise DatasetError(f"encoding version must be one of {', '.join(map(str, ENCODING_VERSIONS))}; "
                           f"got {version!r}")
    return int(version)


def encoding_names(version: int = 1) -> tuple[str, ...]:
    """Names of the numbers of column ``encoding`` in encoding ``version``: the hardware's
    3 then the mapping's (`MappingSpace.encoding_names`), 31 in version 1, 34 in version 2."""
    return _ENCODING_NAMES[_check_version(version)]


def unit_names(version: int = 1) -> tuple[str, ...]:
    """Names of the numbers of column ``u`` in encoding ``version``: layer, the 3 hardware
    numbers, then the mapping's (``u_map0`` ...), 12 in version 1, 15 in version 2."""
    return _UNIT_NAMES[_check_version(version)]


def _list_widths(version: int) -> dict[str, int]:
    """Length of each JSON list column in encoding ``version``."""
    return {"u": len(unit_names(version)), "encoding": len(encoding_names(version))}


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: this module opens and closes every transaction itself.
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=60.0)
    conn.execute("PRAGMA busy_timeout = 60000")
    return conn


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _db_path(path) -> Path:
    """A dataset directory or its dataset.sqlite -> the dataset.sqlite path."""
    p = Path(path)
    return p / DB_NAME if p.is_dir() else p


@contextmanager
def immediate_transaction(conn: sqlite3.Connection):
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the body raises (one writer's batch:
    after a kill, all of it is stored or none). Shared with `search.runs`."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Store:
    """An open dataset file (see the module docstring). Use as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    # ---- opening ------------------------------------------------------------------------
    @classmethod
    def open(cls, path, *, readonly: bool = False) -> Store:
        """Open an existing dataset (a directory or its dataset.sqlite); DatasetError if
        there is none or the file is not one."""
        p = _db_path(path)
        if not p.is_file():
            raise DatasetError(f"no dataset at {path} (expected {p})")
        try:
            if readonly:
                conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, isolation_level=None, timeout=60.0)
            else:
                conn = _connect(p)
            tables = _tables(conn)
        except sqlite3.DatabaseError as e:
            raise DatasetError(f"{p} is not a readable SQLite dataset: {e}") from None
        if not {"meta", "samples", "layers", "points"} <= tables:
            conn.close()
            raise DatasetError(f"{p} is not an accelsim dataset (tables {sorted(tables)})")
        store = cls(conn, p)
        meta = store.meta
        schema = meta.get("schema")
        if schema != SCHEMA:
            conn.close()
            raise DatasetError(f"{p} has dataset schema {schema!r}; this version reads {SCHEMA!r}")
        version = meta.get("encoding_version", 1)
        if isinstance(version, bool) or version not in ENCODING_VERSIONS:
            conn.close()
            raise DatasetError(f"{p} has encoding version {version!r}; this version reads "
                               f"{', '.join(map(str, ENCODING_VERSIONS))}")
        return store

    @classmethod
    def create(cls, path, meta: dict, layer_rows: Iterable[tuple], samples: Iterable[tuple] = ()) -> Store:
        """Create the tables, the meta and the layers table in one transaction (a file
        that exists but holds no table counts as absent: a creation that was killed).

        ``layer_rows``: (workload, layer_index, name, count, layer JSON) tuples;
        ``samples``: sample rows (`SAMPLE_COLUMNS` order) written in the same transaction
        (`import_parquet`), any iterable: an exception it raises undoes the creation."""
        p = _db_path(path)
        if "encoding_version" in meta:
            _check_version(meta["encoding_version"])
        conn = _connect(p)
        try:
            if _tables(conn):
                raise DatasetError(f"{p} already holds tables; open it instead")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("CREATE TABLE layers (workload TEXT NOT NULL, layer_index INTEGER NOT NULL, "
                         "name TEXT NOT NULL, count INTEGER NOT NULL, layer TEXT NOT NULL, "
                         "PRIMARY KEY (workload, layer_index))")
            cols = ", ".join(f"{c} {t}" for c, t in SAMPLE_COLUMNS)
            conn.execute(f"CREATE TABLE samples ({cols})")
            conn.execute("CREATE TABLE points (start INTEGER PRIMARY KEY, count INTEGER NOT NULL, "
                         "u BLOB NOT NULL)")
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [(k, json.dumps(v, sort_keys=True)) for k, v in {**meta, "schema": SCHEMA}.items()])
            conn.executemany("INSERT INTO layers VALUES (?, ?, ?, ?, ?)", list(layer_rows))
            marks = ", ".join("?" * len(SAMPLE_COLUMNS))
            conn.executemany(f"INSERT INTO samples VALUES ({marks})", samples)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            raise
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: a kill loses nothing committed
        return cls(conn, p)

    @classmethod
    def open_or_create(cls, path, meta: dict, layer_rows: Iterable[tuple]) -> tuple[Store, bool]:
        """(store, created): `open` when the file holds tables, else `create`."""
        p = _db_path(path)
        if p.is_file() and p.stat().st_size > 0:
            try:
                conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
                try:
                    has_tables = bool(_tables(conn))
                finally:
                    conn.close()
            except sqlite3.DatabaseError as e:
                raise DatasetError(f"{p} is not a readable SQLite dataset: {e}") from None
            if has_tables:
                return cls.open(p), False
        return cls.create(p, meta, layer_rows), True

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- meta ---------------------------------------------------------------------------
    @property
    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    @property
    def encoding_version(self) -> int:
        """The dataset's encoding version: meta ``encoding_version``, 1 when absent (a
        dataset made before versions existed)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'encoding_version'").fetchone()
        return 1 if row is None else json.loads(row[0])

    def set_meta(self, **items) -> None:
        """Replace meta entries, in one transaction."""
        with self._transaction():
            self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                  [(k, json.dumps(v, sort_keys=True)) for k, v in items.items()])

    def layer_table(self) -> list[dict]:
        cur = self.conn.execute("SELECT workload, layer_index, name, count, layer FROM layers "
                                "ORDER BY rowid")
        return [{"workload": w, "layer_index": i, "name": n, "count": c, "layer": json.loads(lj)}
                for w, i, n, c, lj in cur]

    # ---- samples ------------------------------------------------------------------------
    def _transaction(self):
        return immediate_transaction(self.conn)

    def insert(self, rows: Sequence[tuple]) -> None:
        """Insert sample rows (tuples in `SAMPLE_COLUMNS` order) in one transaction.
        An index already present is an error (sqlite3.IntegrityError), nothing is written."""
        if not rows:
            return
        marks = ", ".join("?" * len(SAMPLE_COLUMNS))
        with self._transaction():
            self.conn.executemany(f"INSERT INTO samples VALUES ({marks})", rows)

    def done_indices(self) -> np.ndarray:
        """Sorted int64 array of the sample indices present."""
        cur = self.conn.execute("SELECT idx FROM samples ORDER BY idx")
        return np.fromiter((r[0] for r in cur), dtype=np.int64)

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def delete_errors(self) -> int:
        """Remove the samples whose evaluation raised (reason "error: ..."); their count."""
        with self._transaction():
            cur = self.conn.execute("DELETE FROM samples WHERE reason LIKE 'error:%'")
        return cur.rowcount

    # ---- unit points -------------------------------------------------------------------
    def point_blocks(self) -> dict[int, int]:
        """{start: count} of the stored blocks of unit points."""
        return dict(self.conn.execute("SELECT start, count FROM points"))

    def put_points(self, start: int, u: np.ndarray) -> None:
        """Store (replace) the block of unit points of indices start .. start + len(u) - 1."""
        u = np.ascontiguousarray(u, dtype="<f8")
        with self._transaction():
            self.conn.execute("INSERT OR REPLACE INTO points VALUES (?, ?, ?)",
                              (int(start), len(u), u.tobytes()))

    def get_points(self, start: int, stop: int) -> np.ndarray:
        """Unit points (stop - start, d) of indices start .. stop - 1 from the stored
        blocks; DatasetError if some are missing."""
        out, covered = [], start
        cur = self.conn.execute("SELECT start, count, u FROM points WHERE start < ? AND start + count > ? "
                                "ORDER BY start", (stop, start))
        for b0, k, blob in cur:
            if b0 > covered:
                break
            a = np.frombuffer(blob, dtype="<f8").reshape(k, -1)
            out.append(a[covered - b0:min(stop, b0 + k) - b0])
            covered = min(stop, b0 + k)
        if covered < stop:
            raise DatasetError(f"{self.path}: unit points {covered} .. {stop - 1} are not stored")
        return np.concatenate(out).astype(np.float64) if len(out) != 1 else out[0].astype(np.float64)

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the main file."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def rows(self, columns: Sequence[str] | None = None, where: str = "", params=()) -> sqlite3.Cursor:
        cols = _check_columns(columns)
        return self.conn.execute(f"SELECT {', '.join(cols)} FROM samples {where} ORDER BY idx", params)


def open_store(path, *, readonly: bool = True) -> Store:
    """`Store.open` (read-only by default)."""
    return Store.open(path, readonly=readonly)


def _check_columns(columns) -> tuple[str, ...]:
    if columns is None:
        return COLUMN_NAMES
    cols = tuple(columns)
    bad = [c for c in cols if c not in COLUMN_NAMES]
    if bad:
        raise DatasetError(f"unknown column(s) {bad}; columns are {list(COLUMN_NAMES)}")
    return cols


# ---- reading ----------------------------------------------------------------------------
def load(db, columns: Sequence[str] | None = None) -> dict[str, list]:
    """Columns of the samples table as ``{name: list}`` in index order (values as stored:
    JSON columns are strings, ``feasible`` 0/1, NULL is None). ``db`` is a dataset
    directory, its dataset.sqlite, or an open `Store`."""
    cols = _check_columns(columns)
    with _reader(db) as store:
        data = store.rows(cols).fetchall()
    return {c: [r[i] for r in data] for i, c in enumerate(cols)}


def load_records(db, columns: Sequence[str] | None = None) -> list[dict]:
    """The samples as a list of dicts (values as in `load`), in index order."""
    cols = _check_columns(columns)
    with _reader(db) as store:
        return [dict(zip(cols, r)) for r in store.rows(cols)]


def load_arrays(db) -> dict:
    """Numeric view for surrogates: ``u`` (n, 12), ``encoding`` (n, 31) (15 and 34 in
    encoding version 2; named by `unit_names` / `encoding_names` of the version),
    ``feasible`` (bool), ``idx``/``layer_index``/``dim``/``sp_kb``/``acc_kb`` (int64),
    and cycles, energy_pj, area_mm2, edp, utilisation, the counters and busy cycles as
    float64 with NaN where NULL; and ``encoding_version``, the int that says what the
    columns of ``u`` and ``encoding`` mean."""
    names = ["idx", "u", "encoding", "feasible", "layer_index", "dim", "sp_kb", "acc_kb", "cycles",
             "energy_pj", "area_mm2", "edp", "utilisation", *COUNT_KEYS, *(f"busy_{k}" for k in BUSY_KEYS)]
    with _reader(db) as store:
        version = store.encoding_version
        cols = load(store, names)
        path = store.path
    widths = _list_widths(version)
    out: dict = {}
    for name in names:
        v = cols[name]
        if name in _JSON_LIST_COLUMNS:
            k = widths[name]
            rows = [json.loads(s) for s in v]
            bad = next((i for i, r in enumerate(rows) if len(r) != k), None)
            if bad is not None:
                raise DatasetError(f"{path}: sample {cols['idx'][bad]} has {len(rows[bad])} numbers in column "
                                   f"{name}; encoding version {version} has {k}")
            out[name] = np.array(rows, dtype=np.float64).reshape(len(rows), k)
        elif name == "feasible":
            out[name] = np.array(v, dtype=bool)
        elif name in ("idx", "layer_index", "dim", "sp_kb", "acc_kb"):
            out[name] = np.array(v, dtype=np.int64)
        else:
            out[name] = np.array([np.nan if x is None else x for x in v], dtype=np.float64)
    out["encoding_version"] = version
    return out


def decode_record(record: dict):
    """(Layer, HardwareConfig, Mapping, Result) of one record from `load_records` (of
    either encoding version: the Mapping carries its stored buffering, all double
    when its JSON has no ``buffers``)."""
    from hw.config import HardwareConfig
    from hw.layer import Layer
    from hw.mapping import Mapping
    from hw.result import Result
    return (Layer.from_json(record["layer"]), HardwareConfig.from_json(record["hw"]),
            Mapping.from_json(record["mapping"]), Result.from_json(record["result"]))


class _reader:
    """Context manager: an open Store as is, or a path opened read-only and closed after."""

    def __init__(self, db):
        self.db = db
        self.own = not isinstance(db, Store)

    def __enter__(self) -> Store:
        self.store = open_store(self.db) if self.own else self.db
        return self.store

    def __exit__(self, *exc):
        if self.own:
            self.store.close()


# ---- summary ----------------------------------------------------------------------------
_NUMBER = re.compile(r"\d+(?:,\d{3})*")   # 1,234,567 is one number


def reason_kind(reason: str) -> str:
    """A reason with its numbers (thousands separators included) replaced by '#', so equal
    kinds of failure count together."""
    return _NUMBER.sub("#", reason)


def _stats(values) -> dict | None:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(a):
        return None
    return {"min": float(a.min()), "median": float(np.median(a)), "max": float(a.max())}


def summary(db) -> dict:
    """Counts and ranges of a dataset: encoding version, total, feasible, infeasible
    reasons (kinds, most frequent first), min / median / max of cycles and EDP over the
    feasible samples."""
    with _reader(db) as store:
        meta = store.meta
        version = store.encoding_version
        total = store.count()
        reasons = Counter()
        for reason, k in store.conn.execute(
                "SELECT reason, COUNT(*) FROM samples WHERE feasible = 0 GROUP BY reason"):
            reasons[reason_kind(reason or "?")] += k
        cyc, edp = [], []
        for c, e in store.conn.execute("SELECT cycles, edp FROM samples WHERE feasible = 1"):
            cyc.append(c)
            edp.append(e)
    feasible = len(cyc)
    return {"path": str(store.path), "fidelity": meta.get("fidelity"), "workloads": meta.get("workloads"),
            "n": meta.get("n"), "seed": meta.get("seed"), "layers": len(meta.get("layers", [])),
            "encoding_version": version,
            "total": total, "feasible": feasible, "infeasible": total - feasible,
            "reasons": reasons.most_common(), "cycles": _stats(cyc), "edp": _stats(edp)}


def _num(x: float) -> str:
    if x is None or not math.isfinite(x):
        return str(x)
    return f"{x:,.0f}" if abs(x) < 1e9 else f"{x:.4g}"


def format_summary(s: dict, *, wall_s: float | None = None, evaluated: int | None = None,
                   top: int = 5) -> str:
    """Readable text of a `summary` (plus this run's wall time and rate when given)."""
    total = s["total"]
    pct = (100.0 * s["feasible"] / total) if total else 0.0
    lines = [f"dataset   {s['path']}",
             (f"          fidelity {s['fidelity']}, workloads {','.join(s['workloads'] or [])}, "
              f"{s['layers']} layer shapes, seed {s['seed']}, encoding version {s.get('encoding_version', 1)}"),
             f"samples   {total:,} of n = {s['n']:,}" + ("" if total == s["n"] else "  (incomplete)"),
             f"feasible  {s['feasible']:,} ({pct:.1f}%)   infeasible {s['infeasible']:,}"]
    for kind, k in s["reasons"][:top]:
        lines.append(f"  {k:>9,}  {kind}")
    if len(s["reasons"]) > top:
        rest = sum(k for _, k in s["reasons"][top:])
        lines.append(f"  {rest:>9,}  ({len(s['reasons']) - top} other reasons)")
    for name in ("cycles", "edp"):
        st = s[name]
        label = "EDP (pJ x cycles)" if name == "edp" else "cycles"
        if st:
            lines.append(f"{label:<18}min {_num(st['min'])}   median {_num(st['median'])}   "
                         f"max {_num(st['max'])}")
    if wall_s is not None and not evaluated:
        lines.append(f"this run  nothing to evaluate ({wall_s:.1f} s)")
    elif wall_s is not None:
        rate = (evaluated or 0) / wall_s if wall_s > 0 else float("nan")
        per_s = f"{rate:,.1f}" if rate >= 10 else f"{rate:.3g}"
        lines.append(f"this run  {evaluated:,} samples in {wall_s:.1f} s ({per_s} samples/s, "
                     f"{rate * 3600:,.0f} samples/hour)")
    return "\n".join(lines)


# ---- Parquet ------------------------------------------------------------------------------
def _arrow_schema(pa, version: int = 1):
    widths = _list_widths(version)
    fields = []
    for name, sqltype in SAMPLE_COLUMNS:
        if name in _JSON_LIST_COLUMNS:
            t = pa.list_(pa.float64(), widths[name])
        elif name == "feasible":
            t = pa.bool_()
        elif name in _INT_COLUMNS:
            t = pa.int64()
        elif name in _REAL_COLUMNS:
            t = pa.float64()
        else:
            t = pa.string()
        fields.append(pa.field(name, t, nullable="NOT NULL" not in sqltype and "PRIMARY" not in sqltype))
    return pa.schema(fields)


def export_parquet(db_path, out_path, *, rows_per_group: int = 16384) -> int:
    """Write the samples table to Parquet (pyarrow), in index order; return the row count.
    ``db_path`` is a dataset directory, its dataset.sqlite, or an open `Store`.

    Column types: integers int64, reals float64, ``feasible`` bool, ``u`` and
    ``encoding`` fixed-size lists of float64 (12 and 31 in encoding version 1, 15 and
    34 in version 2), the JSON columns strings. The file's key-value metadata holds
    ``accelsim.meta`` (the meta table as one JSON object), ``accelsim.layers`` (the
    layers table) and ``accelsim.encoding_version`` (the version, also for datasets
    whose meta predates it). Written to a temporary name and renamed, so a reader never
    sees half a file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_path = Path(out_path)
    with _reader(db_path) as store:
        meta = store.meta
        version = store.encoding_version
        layers = store.layer_table()
        schema = _arrow_schema(pa, version).with_metadata({
            b"accelsim.meta": json.dumps(meta, sort_keys=True).encode(),
            b"accelsim.layers": json.dumps(layers).encode(),
            b"accelsim.encoding_version": str(version).encode()})
        tmp = out_path.with_name(out_path.name + ".tmp")
        n = 0
        cur = store.rows()
        with pq.ParquetWriter(str(tmp), schema, compression="zstd") as writer:
            while True:
                chunk = cur.fetchmany(rows_per_group)
                if not chunk:
                    break
                cols = list(zip(*chunk))
                arrays = []
                for i, (name, _) in enumerate(SAMPLE_COLUMNS):
                    v = cols[i]
                    if name in _JSON_LIST_COLUMNS:
                        v = [json.loads(s) for s in v]
                    elif name == "feasible":
                        v = [bool(x) for x in v]
                    arrays.append(pa.array(v, type=schema.field(name).type))
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                n += len(chunk)
    os.replace(tmp, out_path)
    return n


_PARQUET_KEYS = ("accelsim.meta", "accelsim.layers", "accelsim.encoding_version")
_LAYER_KEYS = ("workload", "layer_index", "name", "count", "layer")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _parquet_file(path):
    """(pyarrow ParquetFile, header dict of `read_parquet_meta`) of an export; DatasetError
    (one line, naming the file) when it is not one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = Path(path)
    if not src.exists():
        raise DatasetError(f"no Parquet file at {src}")
    if not src.is_file():
        raise DatasetError(f"{src} is not a file")
    try:
        pf = pq.ParquetFile(str(src))
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{src} is not a readable Parquet file: {_first_line(e)}") from None
    kv = schema.metadata or {}
    missing = [k for k in _PARQUET_KEYS if k.encode() not in kv]
    if missing:
        raise DatasetError(f"{src} is not an accelsim dataset export: its metadata has no {', '.join(missing)} "
                           f"(write it with search.dataset.export_parquet)")
    try:
        meta = json.loads(kv[b"accelsim.meta"])
        layers = json.loads(kv[b"accelsim.layers"])
        version = json.loads(kv[b"accelsim.encoding_version"])
    except ValueError as e:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DatasetError(f"{src}: unreadable accelsim metadata: {_first_line(e)}") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{src}: accelsim.meta is not a JSON object")
    if meta.get("schema") != SCHEMA:
        raise DatasetError(f"{src} has dataset schema {meta.get('schema')!r}; this version reads {SCHEMA!r}")
    if isinstance(version, bool) or version not in ENCODING_VERSIONS:
        raise DatasetError(f"{src} has encoding version {version!r}; this version reads "
                           f"{', '.join(map(str, ENCODING_VERSIONS))}")
    if meta.get("encoding_version", 1) != version:
        raise DatasetError(f"{src}: accelsim.encoding_version {version} differs from the meta's "
                           f"encoding_version {meta.get('encoding_version', 1)!r}")
    if not isinstance(layers, list) or not all(isinstance(r, dict) and set(r) == set(_LAYER_KEYS)
                                               for r in layers):
        raise DatasetError(f"{src}: accelsim.layers is not a list of {{{', '.join(_LAYER_KEYS)}}} objects")
    want = _arrow_schema(pa, version)
    names = schema.names
    if names != list(COLUMN_NAMES):
        lack = [c for c in COLUMN_NAMES if c not in names]
        extra = [c for c in names if c not in COLUMN_NAMES]
        what = (f"it lacks column(s) {', '.join(lack)}" if lack else
                f"it has unknown column(s) {', '.join(extra)}" if extra else "its columns are in another order")
        raise DatasetError(f"{src} does not have the columns of an accelsim dataset export: {what}")
    for field in want:
        got = schema.field(field.name).type
        if not got.equals(field.type):
            raise DatasetError(f"{src}: column {field.name} has type {got}; an export of encoding version "
                               f"{version} has {field.type}")
    return pf, {"meta": meta, "layers": layers, "encoding_version": version, "rows": pf.metadata.num_rows}


def read_parquet_meta(path) -> dict:
    """The header of a Parquet file written by `export_parquet`, checked: ``{"meta"`` (the
    meta table), ``"layers"`` (the layers table, as `Store.layer_table`),
    ``"encoding_version"``, ``"rows"}``. DatasetError (one line, naming the file) when it
    is missing, not a file, not readable Parquet, lacks the accelsim metadata or has not
    the columns of an export of its encoding version."""
    return _parquet_file(path)[1]


def import_parquet(parquet_path, dir_or_db, *, rows_per_batch: int = 16384) -> int:
    """Recreate a dataset store from a Parquet file written by `export_parquet` (its
    inverse); return the number of sample rows imported.

    ``dir_or_db``: a dataset directory (created when missing) or a ``.sqlite`` path. The
    meta (``accelsim.meta``: its ``created`` and ``versions`` are the original's), the
    layers table (``accelsim.layers``) and every sample row (``u`` and ``encoding`` back
    to the JSON text the store keeps, ``feasible`` to 0 / 1, NULLs kept) are written by
    `Store.create` in one transaction: a killed or failed import leaves no dataset.
    The points table stays empty: `search.collect` draws the Sobol points again from
    the seed and n (and, resuming from the file, checks them against column ``u``).

    DatasetError (one line) when the file is not such an export (`read_parquet_meta`),
    when ``dir_or_db`` already holds a dataset, or when a row breaks the store's
    constraints (a NULL where none may be, an index twice)."""
    import pyarrow as pa

    pf, head = _parquet_file(parquet_path)
    src = Path(parquet_path)
    target = Path(dir_or_db)
    if not target.exists() and target.suffix != ".sqlite":
        try:
            target.mkdir(parents=True)
        except OSError as e:
            raise DatasetError(f"cannot create the dataset directory {target}: {e.strerror or e}") from None
    db = _db_path(target)
    existed = db.exists()
    layer_rows = [(r["workload"], r["layer_index"], r["name"], r["count"], json.dumps(r["layer"], sort_keys=True))
                  for r in head["layers"]]
    count = [0]

    def samples():
        try:
            for batch in pf.iter_batches(batch_size=rows_per_batch, columns=list(COLUMN_NAMES)):
                cols = []
                for name in COLUMN_NAMES:
                    v = batch.column(name).to_pylist()
                    if name in _JSON_LIST_COLUMNS:
                        v = [None if x is None else json.dumps(x) for x in v]
                    elif name == "feasible":
                        v = [None if x is None else int(x) for x in v]
                    cols.append(v)
                rows = list(zip(*cols))
                count[0] += len(rows)
                yield from rows
        except (pa.ArrowException, OSError) as e:
            raise DatasetError(f"{src}: reading its rows failed: {_first_line(e)}") from None

    try:
        store = Store.create(db, head["meta"], layer_rows, samples())
    except sqlite3.IntegrityError as e:
        _discard_empty(db, existed)
        raise DatasetError(f"{src}: a row breaks the dataset's constraints ({_first_line(e)}); nothing was "
                           f"imported") from None
    except sqlite3.Error as e:
        _discard_empty(db, existed)
        raise DatasetError(f"cannot write the dataset {db}: {_first_line(e)}") from None
    except DatasetError:
        _discard_empty(db, existed)
        raise
    store.close()
    return count[0]


def _discard_empty(db: Path, existed: bool) -> None:
    """Remove the (table-less) file a failed import created."""
    if existed:
        return
    for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        try:
            p.unlink()
        except OSError:
            pass
