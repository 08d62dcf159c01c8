"""The run directory of an optimiser run (``runs/NAME/``): its options, and every evaluation.

An optimiser (`search.optimizers.spotlight`: hardware iterations, and per hardware a
software loop per layer) writes every evaluation it makes here, and a run killed at any
moment (kill -9 included) is resumed by rerunning the same command: the optimiser replays
its deterministic decisions and looks each evaluation it wants up in the store first
(`RunDir.lookup_many`), so an evaluation already stored is never made again.

Files
-----
``run.json``           written once when the run is created (atomically: temp file +
                       ``os.replace``), and again, with one more entry in ``resumes``, each
                       time the run is reopened:

    schema      RUN_SCHEMA
    options     the optimiser's options (JSON), compared on every reopen
    seeds       the seeds (JSON), compared on every reopen
    command     the command line that started the run
    created     creation time (UTC, ISO 8601)
    versions    python, numpy, torch, gpytorch, botorch (when installed), sqlite, accelsim
                (`importlib.metadata`), and ``code``, a fingerprint of the sources of hw/,
                cost/, sim/ and search/ (`package_versions`)
    resumes     ``[{"time", "command", "versions"}]``, one per reopen

``evaluations.sqlite``  SQLite in WAL mode, tables:

``meta(key, value)``: ``schema`` (DB_SCHEMA), JSON values.

``evaluations``: one row per unique (fidelity, hardware, layer, mapping), primary key
``key`` = sha256 of the canonical JSON (sorted keys, no spaces) of
``{"fidelity", "hw", "layer", "mapping"}`` (each its ``to_dict``; `evaluation_key`),
with ``hw``, ``layer``, ``mapping`` (canonical JSON), ``result`` (`Result.to_json`),
``feasible``, ``cycles``, ``energy_pj`` (for quick queries), and the context of the
evaluation's FIRST request: ``iteration`` (hardware iteration), ``phase`` (e.g.
"warmup", "bo", "random"), ``layer_index``, ``seq`` (0, 1, 2, ... over the whole run, in
recording order; unique) and ``wall`` (Unix time of the recording). Recording a key again
keeps the first row as it is.

``hardware``: one row per hardware iteration (primary key ``iteration``): ``hw``,
``cost`` (JSON dict: energy_pj, cycles, edp, feasible, reason, plus whatever else the
network cost holds), ``mappings`` (JSON list: per layer the best mapping's dict or null),
``results`` (JSON list of per-layer `Result` dicts, or null), ``phase``, ``extra`` (JSON
dict: objective, area_mm2, evaluations when the recorded point has them), ``wall``.
Recording an iteration again with the same content is a no-op; with other content it is
a `RunError` (the resumed run diverged from the first).

``.lock``               the write lock: `RunDir.open` holds an exclusive ``flock`` on it
                       (the holder's pid inside) until `RunDir.close` or the process ends,
                       so two processes never run one run directory at once (the second
                       gets a RunError naming the first's pid); a kill -9 releases it.
                       `RunDir.open_existing` (reading) takes no lock.

Durability
----------
Every `RunDir.record_many` / `RunDir.record_hardware` is ONE ``BEGIN IMMEDIATE`` ...
``COMMIT`` transaction, so after a kill -9 at any moment either all rows of a call are in
the store or none are. The journal is WAL with ``synchronous = NORMAL``: a commit appends
to the write-ahead log without an fsync. That loses nothing when the *process* dies (the
log is in the operating system's page cache, and a kill -9 cannot stop the kernel from
writing it); only a power cut or an operating-system crash can lose the last commits, and
then, because WAL frames are checksummed and replayed in order, the store holds a *prefix*
of the run's history, still consistent, whose missing tail a rerun recomputes. FULL would
add an fsync per batch (milliseconds each, thousands of batches per run) to protect
against that rarer case only, for work that is cheap to redo; NORMAL is the better trade.

API
---
`RunDir.open` (create or resume, options checked), `RunDir.open_existing` (read an
existing run without options), `RunDir.lookup` / `RunDir.lookup_many` /
`RunDir.record_many` / `RunDir.evaluations` / `RunDir.count`, `RunDir.record_hardware` /
`RunDir.hardware_history`, `RunDir.write_json`, `RunDir.path` / `.options` / `.seeds` /
`.info` / `.notes` (version-change warnings, "" when none), `RunDir.close` (or use it as
a context manager). Records are frozen dataclasses: `EvaluationRecord`, `HardwareRecord`.
Every error about the directory or its contents is a one-line `RunError` (a ValueError).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata as md
import importlib.util
import json
import numbers
import os
import platform
import shlex
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import Mapping
from hw.result import Result

__all__ = [
    "DB_NAME",
    "DB_SCHEMA",
    "RUN_FILE",
    "RUN_SCHEMA",
    "EvaluationRecord",
    "HardwareRecord",
    "RunDir",
    "RunError",
    "evaluation_key",
    "package_versions",
]

RUN_SCHEMA = "accelsim.run/1"
DB_SCHEMA = "accelsim.run-evaluations/1"
RUN_FILE = "run.json"
DB_NAME = "evaluations.sqlite"
LOCK_FILE = ".lock"           # held (flock) by the one process that has the run open to write
_RESERVED = {RUN_FILE, DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", DB_NAME + "-journal"}
_TMP_PREFIX = ".accelsim-tmp-"   # temp files of the atomic writes: .accelsim-tmp-NAME.XXXX.tmp
_TMP_SUFFIX = ".tmp"
_ROOT = Path(__file__).resolve().parents[1]
_VERSION_PACKAGES = ("numpy", "torch", "gpytorch", "botorch")
_CHUNK = 500                # keys per IN (...) query when SQLite has no json_each


class RunError(ValueError):
    """The run directory cannot be used as asked, or a resumed run diverged (one line)."""


# ---- canonical JSON and keys -----------------------------------------------------------------
def _default(o):
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if hasattr(o, "tolist"):                 # numpy scalars and arrays
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _canon(obj) -> str:
    """Canonical JSON: sorted keys, no spaces (NaN / inf as JSON's NaN / Infinity)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_default)


def _as_dict(obj, cls, what: str) -> dict:
    if isinstance(obj, cls):
        return obj.to_dict()
    if isinstance(obj, dict):
        return cls.from_dict(obj).to_dict()
    raise TypeError(f"{what} must be a {cls.__name__} (or its dict); got {type(obj).__name__}")


def _key(fidelity: str, hw_c: str, layer_c: str, mapping_c: str) -> str:
    text = f'{{"fidelity":{json.dumps(fidelity)},"hw":{hw_c},"layer":{layer_c},"mapping":{mapping_c}}}'
    return hashlib.sha256(text.encode()).hexdigest()


def evaluation_key(fidelity: str, hw: HardwareConfig, layer: Layer, mapping: Mapping) -> str:
    """The primary key of an evaluation: sha256 (hex) of the canonical JSON of
    ``{"fidelity", "hw", "layer", "mapping"}`` (each its ``to_dict``)."""
    return _key(fidelity, _canon(_as_dict(hw, HardwareConfig, "hw")), _canon(_as_dict(layer, Layer, "layer")),
                _canon(_as_dict(mapping, Mapping, "mapping")))


# ---- versions --------------------------------------------------------------------------------
def _dist_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _code_fingerprint() -> str:
    files = sorted(f for d in ("hw", "cost", "sim", "search") for f in (_ROOT / d).rglob("*.py")
                   if "__pycache__" not in f.parts)
    h = hashlib.sha256()
    for f in files:
        try:
            data = f.read_bytes()
        except OSError:
            continue
        h.update(f.relative_to(_ROOT).as_posix().encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16]


def package_versions() -> dict:
    """Versions that may change a run's numbers: python, numpy, torch, gpytorch, botorch
    (those installed; found without importing them, so torch costs nothing here), sqlite,
    accelsim (`importlib.metadata`) and ``code``, a fingerprint of the project's sources."""
    out: dict[str, Any] = {"python": platform.python_version()}
    for name in _VERSION_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            v = _dist_version(name)
            if v is None and name in sys.modules:
                v = getattr(sys.modules[name], "__version__", None)
            if v is not None:
                out[name] = v
    out["sqlite"] = sqlite3.sqlite_version
    out["accelsim"] = _dist_version("accelsim")
    out["code"] = _code_fingerprint()
    return out


def _version_notes(path: str, old: dict, new: dict) -> str:
    changed = [f"{k} {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new))
               if old.get(k) != new.get(k)]
    if not changed:
        return ""
    return (f"warning: package versions changed since {path} was started ({'; '.join(changed)}); "
            f"its evaluations come from both")


# ---- records ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvaluationRecord:
    """One stored evaluation and the context of its first request."""

    seq: int
    fidelity: str
    hw: HardwareConfig
    layer: Layer
    mapping: Mapping
    result: Result
    iteration: int
    phase: str
    layer_index: int
    wall: float                 # Unix time of the recording
    key: str


@dataclass(frozen=True)
class HardwareRecord:
    """One hardware iteration: the design, the network cost, the per-layer best mappings."""

    iteration: int
    hw: HardwareConfig
    cost: dict                  # energy_pj, cycles, edp, feasible, reason (and any others)
    mappings: tuple             # per layer: Mapping or None
    results: tuple | None       # per layer: Result or None; None when not recorded
    phase: str
    extra: dict                 # objective, area_mm2, evaluations when recorded
    wall: float


# ---- the run directory -----------------------------------------------------------------------
def _fmt_value(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=_default)


def _flag(key: str) -> str:
    return "--" + str(key).replace("_", "-")


_MISSING = object()


def _first_difference(stored: dict, given: dict):
    """(key, stored value or _MISSING, given value or _MISSING) of the first differing key
    (the given dict's order, then the keys only stored), or None."""
    for k in [*given, *(k for k in stored if k not in given)]:
        a, b = stored.get(k, _MISSING), given.get(k, _MISSING)
        if a is _MISSING or b is _MISSING or _canon(a) != _canon(b):
            return k, a, b
    return None


def _normalise(d, what: str) -> dict:
    if not isinstance(d, dict):
        raise TypeError(f"{what} must be a dict; got {type(d).__name__}")
    try:
        return json.loads(_canon(d))
    except (TypeError, ValueError) as e:
        raise RunError(f"{what} must be JSON serialisable: {e}") from None


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` through a temp file in its directory and os.replace (fsynced)."""
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX + path.name + ".", suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _as_index(name: str, v) -> int:
    """An int (numpy integers too), not a bool."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {v!r}")
    return int(v)


def _is_tmp(name: str) -> bool:
    return name.startswith(_TMP_PREFIX) and name.endswith(_TMP_SUFFIX)


def _lock(p: Path, display: str):
    """Take the run's write lock (an exclusive flock on ``LOCK_FILE``, released when the
    returned file is closed or the process dies); a RunError naming the holder's pid when
    another process has it. Where flock does not exist (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:                  # pragma: no cover - not POSIX
        return open(os.devnull, "a")
    try:
        f = open(p / LOCK_FILE, "a+")
    except OSError as e:
        raise RunError(f"cannot write run directory {display}: {_os_reason(e)}") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise RunError(f"run directory {display} is in use by another process (pid {holder}); wait for it to "
                       f"finish or stop it") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _os_reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


class RunDir:
    """An open run directory (see the module docstring). Use as a context manager."""

    def __init__(self, path: Path, display: str, conn: sqlite3.Connection, info: dict, notes: str = "",
                 lock=None):
        self._lock = lock
        self._path = path
        self._display = display
        self.conn = conn
        self.info = info
        self.notes = notes
        self._json_each = _has_json_each(conn)

    # ---- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, path, options: dict, *, seeds: dict, command: str | None = None) -> RunDir:
        """Create the run directory ``path`` (parents too) or reopen the run in it.

        A new run: ``run.json`` (options, seeds, ``command`` (default: this process's
        command line), creation time, `package_versions`) and ``evaluations.sqlite``. An
        existing run: its options and seeds must equal these (compared as JSON), else a
        RunError naming the first differing key; package-version changes are a warning in
        `notes`. A path that is a file, or a directory that is neither empty nor a run,
        or that cannot be written, is a RunError."""
        display = str(path)
        p = Path(path)
        options = _normalise(options, "options")
        seeds = _normalise(seeds, "seeds")
        if command is None:
            command = shlex.join(sys.argv)
        if p.exists() and not p.is_dir():
            raise RunError(f"run directory {display} is a file, not a directory (use another --name)")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise RunError(f"cannot create run directory {display}: a part of the path is a file") from None
        except OSError as e:
            raise RunError(f"cannot create run directory {display}: {_os_reason(e)}") from None
        if not os.access(p, os.W_OK | os.X_OK):
            raise RunError(f"run directory {display} is not writable")
        lock = _lock(p, display)
        try:
            return cls._open_locked(p, display, options, seeds, command, lock)
        except BaseException:
            if not (p / RUN_FILE).exists():      # not a run: leave the directory as it was
                (p / LOCK_FILE).unlink(missing_ok=True)
            lock.close()
            raise

    @classmethod
    def _open_locked(cls, p: Path, display: str, options: dict, seeds: dict, command: str, lock) -> RunDir:
        run_file = p / RUN_FILE
        versions = package_versions()
        now = datetime.now(UTC).isoformat(timespec="seconds")
        notes = ""
        if run_file.exists():
            info = _read_info(run_file, display)
            for what, stored, given in (("options", info.get("options"), options), ("seeds", info.get("seeds"), seeds)):
                if not isinstance(stored, dict):
                    raise RunError(f"{display}/{RUN_FILE} has no {what} (not a run file of this version)")
                diff = _first_difference(stored, given)
                if diff is not None:
                    k, a, b = diff
                    was = f"with {_flag(k)} {_fmt_value(a)}" if a is not _MISSING else f"without {_flag(k)}"
                    has = _fmt_value(b) if b is not _MISSING else "none"
                    raise RunError(f"{display} was started {was}; this command has {has} "
                                   f"(use another --name, or the same options to resume)")
            notes = _version_notes(display, info.get("versions") or {}, versions)
            info = {**info, "resumes": [*info.get("resumes", []),
                                        {"time": now, "command": command, "versions": versions}]}
        else:
            try:
                entries = [e.name for e in os.scandir(p)]
            except OSError as e:
                raise RunError(f"cannot read run directory {display}: {_os_reason(e)}") from None
            # run.json is written first, so a creation killed early leaves at most a temp
            # file of it: that is not a foreign directory. Anything else (even an
            # evaluations.sqlite whose run.json was deleted) is left alone.
            foreign = [n for n in entries if not _is_tmp(n) and n != LOCK_FILE]
            if foreign:
                raise RunError(f"{display} is not empty and holds no run (no {RUN_FILE}; it has "
                               f"{sorted(foreign)[0]!r}); use another --name or an empty directory")
            for n in entries:
                if n == LOCK_FILE:
                    continue
                try:
                    (p / n).unlink()
                except OSError:
                    pass
            info = {"schema": RUN_SCHEMA, "options": options, "seeds": seeds, "command": command,
                    "created": now, "versions": versions, "resumes": []}
        try:
            # run.json first: a creation killed after it resumes normally (the tables are
            # created below when absent).
            _write_atomic(run_file, json.dumps(info, indent=2, sort_keys=True, default=_default) + "\n")
            conn = _open_db(p / DB_NAME, display)
        except OSError as e:
            raise RunError(f"cannot write run directory {display}: {_os_reason(e)}") from None
        return cls(p, display, conn, info, notes, lock)

    @classmethod
    def open_existing(cls, path) -> RunDir:
        """Open the run in ``path`` to read it (or continue it) without comparing options."""
        display = str(path)
        p = Path(path)
        run_file = p / RUN_FILE
        if not run_file.is_file():
            raise RunError(f"no run in {display} (no {RUN_FILE})")
        info = _read_info(run_file, display)
        if not (p / DB_NAME).is_file():
            raise RunError(f"no run in {display} (no {DB_NAME})")
        return cls(p, display, _open_db(p / DB_NAME, display), info)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def options(self) -> dict:
        return self.info["options"]

    @property
    def seeds(self) -> dict:
        return self.info["seeds"]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self._lock is not None:
            self._lock.close()          # releases the flock
            self._lock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunDir({self._display!r})"

    def _transaction(self):
        from .dataset import immediate_transaction
        return immediate_transaction(self.conn)

    # ---- evaluations ------------------------------------------------------------------------
    def _keys(self, fidelity: str, hw, layer, mappings) -> tuple[str, str, list[str], list[str]]:
        if not isinstance(fidelity, str) or not fidelity:
            raise TypeError(f"fidelity must be a non-empty string; got {fidelity!r}")
        hw_c = _canon(_as_dict(hw, HardwareConfig, "hw"))
        layer_c = _canon(_as_dict(layer, Layer, "layer"))
        maps_c = [_canon(_as_dict(m, Mapping, "mapping")) for m in mappings]
        return hw_c, layer_c, maps_c, [_key(fidelity, hw_c, layer_c, m) for m in maps_c]

    def _fetch(self, columns: str, keys: Sequence[str]) -> dict[str, tuple]:
        """{key: row of ``columns``} of the stored keys among ``keys`` (one query)."""
        if not keys:
            return {}
        if self._json_each:
            cur = self.conn.execute(f"SELECT key, {columns} FROM evaluations "
                                    f"WHERE key IN (SELECT value FROM json_each(?))", (json.dumps(list(keys)),))
            return {r[0]: r[1:] for r in cur}
        out = {}
        for i in range(0, len(keys), _CHUNK):
            part = keys[i:i + _CHUNK]
            cur = self.conn.execute(f"SELECT key, {columns} FROM evaluations WHERE key IN "
                                    f"({', '.join('?' * len(part))})", part)
            out.update((r[0], r[1:]) for r in cur)
        return out

    def lookup(self, fidelity: str, hw: HardwareConfig, layer: Layer, mapping: Mapping) -> Result | None:
        """The stored Result of this evaluation, or None."""
        return self.lookup_many(fidelity, hw, layer, [mapping])[0]

    def lookup_many(self, fidelity: str, hw: HardwareConfig, layer: Layer, mappings) -> list[Result | None]:
        """The stored Results of these mappings (None where not stored), in their order;
        one query per call."""
        *_, keys = self._keys(fidelity, hw, layer, list(mappings))
        found = self._fetch("result", keys)
        cache: dict[str, Result] = {}
        out = []
        for k in keys:
            row = found.get(k)
            if row is None:
                out.append(None)
            else:
                if k not in cache:
                    cache[k] = Result.from_json(row[0])
                out.append(cache[k])
        return out

    def record_many(self, fidelity: str, hw: HardwareConfig, layer: Layer, mappings, results, *,
                    iteration: int, phase: str, layer_index: int) -> int:
        """Store the results of these mappings in ONE transaction (all rows or none after
        a kill), with their context; those already stored (and repeats within the call)
        keep their first row. Returns the number of rows added."""
        mappings, results = list(mappings), list(results)
        if len(mappings) != len(results):
            raise ValueError(f"{len(results)} results for {len(mappings)} mappings")
        iteration, layer_index = _as_index("iteration", iteration), _as_index("layer_index", layer_index)
        if not isinstance(phase, str):
            raise TypeError(f"phase must be a string; got {phase!r}")
        for r in results:
            if not isinstance(r, Result):
                raise TypeError(f"results must be Result objects; got {type(r).__name__}")
            if r.fidelity != fidelity:
                raise RunError(f"a {r.fidelity} Result recorded as fidelity {fidelity}")
        if not mappings:
            return 0
        hw_c, layer_c, maps_c, keys = self._keys(fidelity, hw, layer, mappings)
        wall = time.time()
        with self._transaction():
            present = set(self._fetch("seq", keys))
            seq = self.conn.execute("SELECT COALESCE(MAX(seq), -1) FROM evaluations").fetchone()[0] + 1
            rows = []
            for k, m_c, r in zip(keys, maps_c, results):
                if k in present:
                    continue
                present.add(k)
                rows.append((k, seq, fidelity, hw_c, layer_c, m_c, r.to_json(), int(r.feasible), r.cycles,
                             r.energy_pj, iteration, phase, layer_index, wall))
                seq += 1
            self.conn.executemany(f"INSERT INTO evaluations ({_EVAL_COLUMNS}) VALUES "
                                  f"({', '.join('?' * _N_EVAL)})", rows)
        return len(rows)

    def count(self, fidelity: str | None = None) -> int:
        if fidelity is None:
            return self.conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM evaluations WHERE fidelity = ?", (fidelity,)).fetchone()[0]

    def evaluations(self, fidelity: str | None = None) -> list[EvaluationRecord]:
        """Every stored evaluation (of one fidelity when given), in recording order."""
        cols = "seq, fidelity, hw, layer, mapping, result, iteration, phase, layer_index, wall, key"
        if fidelity is None:
            cur = self.conn.execute(f"SELECT {cols} FROM evaluations ORDER BY seq")
        else:
            cur = self.conn.execute(f"SELECT {cols} FROM evaluations WHERE fidelity = ? ORDER BY seq", (fidelity,))
        hws: dict[str, HardwareConfig] = {}
        layers: dict[str, Layer] = {}
        out = []
        for seq, fid, hw_j, layer_j, map_j, res_j, it, phase, li, wall, key in cur:
            hw = hws.get(hw_j) or hws.setdefault(hw_j, HardwareConfig.from_json(hw_j))
            lay = layers.get(layer_j) or layers.setdefault(layer_j, Layer.from_json(layer_j))
            out.append(EvaluationRecord(seq, fid, hw, lay, Mapping.from_json(map_j), Result.from_json(res_j),
                                        it, phase, li, wall, key))
        return out

    # ---- hardware iterations ----------------------------------------------------------------
    def record_hardware(self, point=None, /, *, iteration: int | None = None, hw: HardwareConfig | None = None,
                        cost=None, mappings=None, results=None, phase: str | None = None,
                        extra: dict | None = None) -> bool:
        """Store one hardware iteration, from ``point`` (an object with ``iteration``,
        ``hw``, ``cost``, ``mappings``, ``phase`` and optionally ``results``,
        ``objective``, ``area_mm2``, ``evaluations``, e.g. a Spotlight HardwarePoint) or
        from the keywords (which override the point's). ``cost``: a dict or an object
        with ``to_dict`` (energy_pj, cycles, edp, feasible; ``reason`` is added when
        missing: None when feasible, else the first infeasible layer's reason).

        True when written; False when the iteration is stored with the same content (a
        resumed run replaying it); RunError when stored with other content."""
        if point is not None:
            iteration = point.iteration if iteration is None else iteration
            hw = point.hw if hw is None else hw
            cost = point.cost if cost is None else cost
            mappings = point.mappings if mappings is None else mappings
            results = getattr(point, "results", None) if results is None else results
            phase = point.phase if phase is None else phase
            if extra is None:
                extra = {k: getattr(point, k) for k in ("objective", "area_mm2", "evaluations") if hasattr(point, k)}
        iteration = _as_index("iteration", iteration)
        if hw is None or cost is None or mappings is None or phase is None:
            raise TypeError("record_hardware needs iteration, hw, cost, mappings and phase")
        cost_d = json.loads(_canon(cost.to_dict() if hasattr(cost, "to_dict") else dict(cost)))
        results = None if results is None else list(results)
        if "reason" not in cost_d:
            reason = None
            if not cost_d.get("feasible", True):
                reason = next((r.reason for r in results or () if r is not None and not r.feasible), None) \
                    or "infeasible"
            cost_d["reason"] = reason
        content = {
            "hw": _canon(_as_dict(hw, HardwareConfig, "hw")),
            "cost": _canon(cost_d),
            "mappings": _canon([None if m is None else _as_dict(m, Mapping, "mapping") for m in mappings]),
            "results": None if results is None else _canon([None if r is None else r.to_dict() for r in results]),
            "phase": str(phase),
            "extra": _canon(extra or {}),
        }
        names = tuple(content)
        with self._transaction():
            row = self.conn.execute(f"SELECT {', '.join(names)} FROM hardware WHERE iteration = ?",
                                    (iteration,)).fetchone()
            if row is None:
                self.conn.execute(f"INSERT INTO hardware (iteration, {', '.join(names)}, wall) VALUES "
                                  f"(?, {', '.join('?' * len(names))}, ?)",
                                  (iteration, *content.values(), time.time()))
                return True
        for name, old in zip(names, row):
            if old != content[name]:
                raise RunError(f"{self._display}: hardware iteration {iteration} is stored with another {name} "
                               f"({_short(old)}) than this run's ({_short(content[name])}): the resumed run "
                               f"diverged from the first (code or package versions changed?); use another --name")
        return False

    def hardware_history(self) -> list[HardwareRecord]:
        """The stored hardware iterations, in iteration order."""
        out = []
        for it, hw_j, cost_j, maps_j, res_j, phase, extra_j, wall in self.conn.execute(
                "SELECT iteration, hw, cost, mappings, results, phase, extra, wall FROM hardware ORDER BY iteration"):
            maps = tuple(None if m is None else Mapping.from_dict(m) for m in json.loads(maps_j))
            res = None if res_j is None else tuple(None if r is None else Result.from_dict(r)
                                                   for r in json.loads(res_j))
            out.append(HardwareRecord(it, HardwareConfig.from_json(hw_j), json.loads(cost_j), maps, res, phase,
                                      json.loads(extra_j), wall))
        return out

    # ---- files ------------------------------------------------------------------------------
    def write_json(self, name: str, obj, *, indent: int | None = 2) -> Path:
        """Write ``obj`` as JSON to ``NAME`` in the run directory atomically (temp file +
        os.replace); ``name`` is a plain file name, not one of the run's own files."""
        if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or os.sep in name
                or (os.altsep and os.altsep in name) or "\0" in name):
            raise RunError(f"write_json needs a plain file name; got {name!r}")
        if name in _RESERVED or _is_tmp(name):
            raise RunError(f"write_json: {name!r} is a name the run directory uses itself")
        target = self._path / name
        text = json.dumps(obj, indent=indent, sort_keys=False, default=_default) + "\n"
        try:
            _write_atomic(target, text)
        except OSError as e:
            raise RunError(f"cannot write {self._display}/{name}: {_os_reason(e)}") from None
        return target


# ---- the SQLite file -------------------------------------------------------------------------
_EVAL_SCHEMA = (
    ("key", "TEXT PRIMARY KEY"),
    ("seq", "INTEGER NOT NULL UNIQUE"),
    ("fidelity", "TEXT NOT NULL"),
    ("hw", "TEXT NOT NULL"),
    ("layer", "TEXT NOT NULL"),
    ("mapping", "TEXT NOT NULL"),
    ("result", "TEXT NOT NULL"),
    ("feasible", "INTEGER NOT NULL"),
    ("cycles", "INTEGER"),
    ("energy_pj", "REAL"),
    ("iteration", "INTEGER NOT NULL"),
    ("phase", "TEXT NOT NULL"),
    ("layer_index", "INTEGER NOT NULL"),
    ("wall", "REAL NOT NULL"),
)
_EVAL_COLUMNS = ", ".join(c for c, _ in _EVAL_SCHEMA)
_N_EVAL = len(_EVAL_SCHEMA)


def _open_db(path: Path, display: str) -> sqlite3.Connection:
    """Open (creating the tables when absent, in one transaction) the evaluations store."""
    try:
        # Autocommit mode: the transactions are opened and closed explicitly.
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=60.0)
        conn.execute("PRAGMA busy_timeout = 60000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise RunError(f"{display}/{DB_NAME}: cannot use WAL mode (journal mode {mode}); "
                           f"put the run on a local file system")
        conn.execute("PRAGMA synchronous = NORMAL")   # see the module docstring
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute(f"CREATE TABLE IF NOT EXISTS evaluations "
                         f"({', '.join(f'{c} {t}' for c, t in _EVAL_SCHEMA)})")
            conn.execute("CREATE TABLE IF NOT EXISTS hardware (iteration INTEGER PRIMARY KEY, hw TEXT NOT NULL, "
                         "cost TEXT NOT NULL, mappings TEXT NOT NULL, results TEXT, phase TEXT NOT NULL, "
                         "extra TEXT NOT NULL, wall REAL NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (json.dumps(DB_SCHEMA),))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        schema = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0])
    except sqlite3.DatabaseError as e:
        raise RunError(f"{display}/{DB_NAME} is not a usable run store: {e}") from None
    if schema != DB_SCHEMA:
        conn.close()
        raise RunError(f"{display}/{DB_NAME} has schema {schema!r}; this version reads {DB_SCHEMA!r}")
    return conn


def _has_json_each(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT value FROM json_each('[1]')").fetchall()
        return True
    except sqlite3.OperationalError:
        return False


def _read_info(run_file: Path, display: str) -> dict:
    try:
        info = json.loads(run_file.read_text(encoding="utf-8"))
    except OSError as e:
        raise RunError(f"cannot read {display}/{RUN_FILE}: {_os_reason(e)}") from None
    except ValueError as e:
        raise RunError(f"{display}/{RUN_FILE} is not valid JSON ({e}); not a run directory") from None
    if not isinstance(info, dict) or info.get("schema") != RUN_SCHEMA:
        schema = info.get("schema") if isinstance(info, dict) else None
        raise RunError(f"{display}/{RUN_FILE} is not a run file of this version (schema {schema!r}; "
                       f"this version reads {RUN_SCHEMA!r})")
    return info


def _short(text: str | None, n: int = 80) -> str:
    s = "null" if text is None else str(text)
    return s if len(s) <= n else s[:n - 3] + "..."

