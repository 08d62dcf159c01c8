"""Collect a dataset: Sobol samples of the co-design space, evaluated and stored.

    python -m search.collect --fidelity {analytical,rtl} --workloads resnet50,bert,unet,retinanet \\
        --n 65536 --seed S --out DIR [--encoding {1,2}] [--workers W] [--ray ADDRESS] [--batch B] \\
        [--parquet] [--quiet] [--cache-dir DIR] [--timeout SECONDS] [--retry-errors] \\
        [--models {family,exact}] [--max-cycles N] [--resume-from FILE.parquet]
    python -m search.collect --summary DIR

Samples. The space's layers are the unique layer shapes (`search.workloads.unique_layers`)
of the listed workloads, concatenated in the order given, shapes shared by two workloads
kept once (the record names every workload that holds it; the ``layers`` table keeps each
workload's name and repeat count). Sample i is point i of the scrambled Sobol sequence
``CoDesignSpace(layers, version=V).sobol(n, seed)``; `CoDesignSpace.point` turns it into
(layer, HardwareConfig, Mapping). Mappings that do not fit are kept, infeasible, with
`Mapping.check`'s reason.

Encoding version (``--encoding``, `search.space.ENCODING_VERSIONS`). Version 2 (the
default of a new DIR) samples each operand's buffering too (`Mapping.buffers`: single or
double, three more unit-cube numbers, 15 in all, and three more encoding inputs, 34);
version 1 double-buffers every tile (12 unit numbers, 31 inputs), as every dataset made
before versions existed. A DIR keeps its version: resuming or extending it uses the
version in its meta (absent: 1), and an ``--encoding`` that differs from it is an error.

What a record holds (`search.dataset` has every column): the unit point ``u``, the
layer, the HardwareConfig, the Mapping (its JSON carries ``"buffers"`` when some operand
is single-buffered), the encoding (`HardwareSpace.encode` then `MappingSpace.encode` of
the version, named by meta ``encoding_names``) and the evaluator's Result.

Fidelities. ``analytical``: `cost.model.evaluate_arrays`, one vectorised call per layer
and batch, straight from the unit points (factors, order and buffering as arrays; no
per-sample Mapping except to word the reason of an infeasible one). ``rtl``:
`sim.evaluate.evaluate` (Verilator, lean harness, output verified, the Mapping with
its buffering), inputs seeded with ``seed * 2**32 + i``, energy and area from
`cost.price` (RTL cycles, energy of the RTL's own counters). An RTL evaluation that
raises is stored infeasible with reason ``error: ...`` (``--retry-errors`` evaluates those
again), except a `VerificationError` (the RTL disagrees with the reference: a bug),
which stops the collection with exit status 1.

RTL cost controls. ``--models family`` (default) simulates every scratchpad and
accumulator size of an array size on one Verilator model (`sim.evaluate`'s
``superset``: the largest memories with the configuration's bank boundaries set through
ports, cycle for cycle the configuration's own model, tests/sim/test_superset.py), so a
collection builds four models instead of one per sample; ``--models exact`` builds each
configuration. A fitting sample whose analytical estimate (`cost.evaluate`) exceeds
``--max-cycles`` (default 20,000,000; 0: no limit) is stored unsimulated, infeasible with
reason ``not simulated: ...`` and the estimate in ``extra.estimated_cycles``. The
simulation-only DRAM model is sized to the largest layer of the space
(`sim.compiler.dram_mb_for`, at least the default 16 MB; recorded in ``hw_base``).

Store and resumption. `search.dataset` (SQLite, WAL). Every batch of results is one
transaction, written by this process only; a run killed at any moment loses at most the
batches in flight, and the same command continues with the missing indices. A sample's
result does not depend on the batching or on the number of workers. Rerunning into a
DIR with other parameters is an error, except a larger ``--n``, which extends it.

Resuming on another machine. DIR stays where it was made; its Parquet export travels
(``--parquet``, committed). ``--resume-from FILE.parquet`` into a DIR that holds no
dataset first imports FILE there (`search.dataset.import_parquet`: meta, layers and
every sample, one transaction), then runs exactly as a resume of that collection: the
command line must match FILE's collection (fidelity, workloads, seed, encoding, RTL
settings; ``--n`` may grow), and only the missing indices are evaluated. The Sobol
points are drawn again from seed and n and must equal column ``u`` of every imported
sample (another scipy could draw others). When any of these checks fails, the import
is undone (one ``error:`` line, exit 2); once it has passed, DIR holds the collection,
and later runs resume it without ``--resume-from``. Into a DIR that already holds a
dataset, ``--resume-from`` is an error.

Scheduling. Analytical: batches of ``--batch`` consecutive indices (default 4096). RTL
with family models: the models of the array sizes in use are built (or found in the
cache under ``--cache-dir``) first, one after another; then one task holds every sample
whose mapping does not fit, and each fitting sample is a task, largest array first.
With exact models: one task per hardware configuration (all its pending samples), so a
configuration's model is never built by two workers at once. Tasks
run in a local process pool (``--workers``, default the CPU count; 1 runs them in this
process) or, with ``--ray ADDRESS``, as Ray tasks (``local`` starts a local Ray
instance; ``auto`` or ``ray://host:port`` join a cluster whose Python can import this
package). Ray is optional and imported only then.

Bounds (one ``error:`` line, exit 2, before anything is written): ``--n`` 1..`MAX_N`
(2**24 analytical, 2**17 RTL) and no more samples than the free disk holds (about
`SAMPLE_BYTES` each); ``--seed`` 0..2**32-1 (so every input seed fits 64 bits);
``--workers`` 1..4 x the CPU count; ``--batch`` 1..`MAX_BATCH`; ``--encoding`` 1 or 2
(and the DIR's own, when it holds a collection); ``--timeout`` up to a day;
``--max-cycles`` 0..10**12; a layer of an RTL collection must fit the largest
simulation DRAM (256 MB). An option that has no effect in the run is an error: the RTL
options (``--cache-dir``, ``--timeout``, ``--models``, ``--max-cycles``) with
``--fidelity analytical``, ``--batch`` with ``--fidelity rtl``, anything with
``--summary``.

Output: a progress bar (stderr; ``--quiet`` hides it and the notices of long phases:
the analytical kernel compiling, drawing many Sobol points, a Verilator build, the
summary of a large dataset, the Parquet export), then a summary (stdout): counts,
feasible share, the most frequent kinds of infeasibility, min / median / max cycles and
EDP of the feasible samples, wall time and rate. ``--parquet`` also writes
DIR/dataset.parquet (`search.dataset.export_parquet`). Bad arguments print one
``error:`` line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np

from hw.config import HardwareConfig
from hw.layer import LOOPS, Layer
from hw.mapping import LEVELS, Mapping, arrays_json, reason_text
from hw.result import BUSY_KEYS, COUNT_KEYS, Result
from hw.cli import OneLineParser, UsageError, first_line
from search.dataset import (
    COLUMN_NAMES,
    DB_NAME,
    PARQUET_NAME,
    DatasetError,
    Store,
    encoding_names,
    export_parquet,
    format_summary,
    import_parquet,
    read_parquet_meta,
    summary,
    unit_names,
)
from search.space import (CODESIGN_UNIT_DIMS_BY_VERSION, ENCODING_VERSIONS, HW_UNIT_DIMS, CoDesignSpace,
                          HardwareSpace, MappingSpace, unit_index)
from search.workloads import WorkloadError, get_workload, unique_layers

__all__ = ["CollectError", "CollectFailure", "Spec", "VerificationStop", "collect", "decode_units",
           "evaluate_chunk", "export_parquet", "input_seed", "main", "mapping_json", "space_layers"]

FIDELITIES = ("analytical", "rtl")
MODELS = ("family", "exact")
DEFAULT_BATCH = 4096
#: Encoding version of a new collection (a DIR that holds one keeps its own).
DEFAULT_ENCODING = 2
DEFAULT_MAX_CYCLES = 20_000_000
#: Most samples of one collection, per fidelity (analytical: about 36 GB and an hour per
#: core; RTL: weeks of simulation).
MAX_N = {"analytical": 1 << 24, "rtl": 1 << 17}
#: Most samples per analytical task and transaction.
MAX_BATCH = 1 << 16
#: Largest --seed (input seeds are seed * 2**32 + idx: 64 bits).
MAX_SEED = 2**32 - 1
#: Largest --max-cycles.
MAX_MAX_CYCLES = 10**12
#: Disk bytes per stored sample, for the free-space check (measured: 2.2 KB a ResNet-50 sample,
#: 2.8 KB a BERT sample, with the Sobol points).
SAMPLE_BYTES = 3000
#: Above this many new Sobol points or stored samples, drawing / summarising them is announced.
_SAY_ROWS = 1 << 20


def max_workers() -> int:
    """Largest --workers: 4 x the CPU count."""
    return 4 * max(1, os.cpu_count() or 1)


_ROOT = Path(__file__).resolve().parents[1]
_FEASIBLE = COLUMN_NAMES.index("feasible")
# Meta entries that must match for a run to continue a collection (n may grow).
_MATCH_KEYS = ("fidelity", "workloads", "seed", "layers", "hw_base", "rtl")


class CollectError(ValueError):
    """Bad arguments or a collection that does not match them (one line, exit status 2)."""


class CollectFailure(RuntimeError):
    """The collection stopped before its end (exit status 1); what was stored is kept."""


class VerificationStop(CollectFailure):
    """An RTL output differed from the reference: the collection stops (exit status 1)."""


# ---- the space --------------------------------------------------------------------------
def space_layers(workloads: Sequence[str]) -> tuple[list[Layer], list[dict], list[tuple]]:
    """The co-design space's layers for ``workloads`` (unique shapes, concatenated in order,
    deduplicated across workloads), their meta entries ``{"index", "layer", "workloads":
    {w: {"name", "count"}}}`` and the rows of the store's ``layers`` table."""
    index: dict[tuple, int] = {}
    layers: list[Layer] = []
    entries: list[dict] = []
    rows: list[tuple] = []
    for w in workloads:
        for layer in unique_layers(get_workload(w)):
            i = index.get(layer.shape())
            if i is None:
                i = index[layer.shape()] = len(layers)
                layers.append(layer)
                entries.append({"index": i, "layer": layer.to_dict(), "workloads": {}})
            entries[i]["workloads"][w] = {"name": layer.name, "count": layer.count}
            rows.append((w, i, layer.name, layer.count, layer.to_json()))
    return layers, entries, rows


def input_seed(seed: int, idx: int) -> int:
    """Seed of the RTL inputs of sample ``idx`` of a collection seeded ``seed``."""
    return int(seed) * 2**32 + int(idx)


@dataclass(frozen=True)
class Spec:
    """What a worker needs to evaluate samples (picklable, sent once per worker)."""

    fidelity: str
    layers: tuple
    workloads_of: tuple          # per layer: "w1,w2" (the workloads that hold the shape)
    seed: int
    hw_base: HardwareConfig = dataclasses.field(default_factory=HardwareConfig)
    cache_dir: str | None = None
    timeout_s: float = 600.0
    models: str = "family"       # RTL: one model per array size ("family") or per configuration
    max_cycles: int = DEFAULT_MAX_CYCLES   # RTL: simulate only below this analytical estimate; 0: all
    version: int = 1             # encoding version (`search.space.ENCODING_VERSIONS`)

    @property
    def space(self) -> CoDesignSpace:
        return CoDesignSpace(self.layers, HardwareSpace(self.hw_base), self.version)


@lru_cache(maxsize=4096)
def _mapping_space(layer: Layer, hw: HardwareConfig, version: int = 1) -> MappingSpace:
    return MappingSpace(hw, layer, version)


@lru_cache(maxsize=8192)
def _hw(base: HardwareConfig, dim: int, sp_kb: int, acc_kb: int) -> HardwareConfig:
    return dataclasses.replace(base, dim=dim, sp_kb=sp_kb, acc_kb=acc_kb)


@lru_cache(maxsize=8192)
def _hw_json(base: HardwareConfig, dim: int, sp_kb: int, acc_kb: int) -> str:
    return _hw(base, dim, sp_kb, acc_kb).to_json()


def decode_units(spec: Spec, u: np.ndarray) -> dict:
    """`CoDesignSpace.point` (of ``spec.version``) for a batch (B, 12 or 15), as arrays:
    ``layer`` (B,), ``dim``, ``sp_kb``, ``acc_kb`` (B,), ``factors`` (B, 3, 7), ``order``
    (B, 7) in the layout of `search.space`, ``buffers`` (B, 3) (all 2 in version 1), and
    ``encoding`` (B, 31 or 34): `HardwareSpace.encode` then `MappingSpace.encode_arrays`."""
    u = np.asarray(u, dtype=np.float64).reshape(-1, CODESIGN_UNIT_DIMS_BY_VERSION[spec.version])
    b = len(u)
    li = unit_index(u[:, 0], len(spec.layers))
    grid = HardwareSpace.from_unit_arrays(u[:, 1:1 + HW_UNIT_DIMS])
    dim, acc, sp = grid["dim"], grid["acc_kb"], grid["sp_kb"]
    factors = np.empty((b, len(LEVELS), len(LOOPS)), dtype=np.int64)
    order = np.empty((b, len(LOOPS)), dtype=np.int64)
    buffers = np.empty((b, 3), dtype=np.int64)
    enc = np.empty((b, len(encoding_names(spec.version))), dtype=np.float64)
    enc[:, :HW_UNIT_DIMS] = HardwareSpace.encode_arrays(dim, acc, sp)
    for l, d in {(int(a), int(c)) for a, c in zip(li, dim)}:
        sel = np.flatnonzero((li == l) & (dim == d))
        ms = _mapping_space(spec.layers[l], _hw(spec.hw_base, d, spec.hw_base.sp_kb, spec.hw_base.acc_kb),
                            spec.version)
        um = u[sel, 1 + HW_UNIT_DIMS:]
        f, o = ms.from_unit_arrays(um)
        bf = ms.buffers_from_unit(um)
        factors[sel], order[sel], buffers[sel] = f, o, bf
        enc[sel, HW_UNIT_DIMS:] = ms.encode_arrays(f, o, bf)
    return {"layer": li, "dim": dim, "sp_kb": sp, "acc_kb": acc, "factors": factors, "order": order,
            "buffers": buffers, "encoding": enc}


# ---- records ----------------------------------------------------------------------------
mapping_json = arrays_json   # the dataset's mapping column: `Mapping.to_json` from the array form


def _row(idx: int, u_json: str, li: int, layer_name: str, workloads: str, layer_json: str, hw_json: str,
         map_json: str, dim: int, sp: int, acc: int, enc_json: str, r: Result) -> tuple:
    """One samples row (`search.dataset.SAMPLE_COLUMNS` order)."""
    return (idx, u_json, li, workloads, layer_name, layer_json, hw_json, map_json, dim, sp, acc, enc_json,
            r.to_json(), int(r.feasible), r.reason, r.cycles, r.energy_pj, r.area_mm2, r.edp, r.utilisation,
            *(r.counts[k] for k in COUNT_KEYS), *(r.busy[k] for k in BUSY_KEYS))


def evaluate_chunk(spec: Spec, idx: np.ndarray, u: np.ndarray) -> tuple[list[tuple], str | None]:
    """Evaluate samples ``idx`` with unit points ``u`` (B, 12 or 15): (rows, fatal), where
    ``fatal`` is the message of an RTL verification failure (rows then hold the samples
    evaluated before it) or None."""
    idx = np.asarray(idx, dtype=np.int64)
    dec = decode_units(spec, u)
    b = len(idx)
    u_json = [json.dumps(r) for r in np.asarray(u, dtype=np.float64).tolist()]
    enc_json = [json.dumps(r) for r in dec["encoding"].tolist()]
    f21 = dec["factors"].reshape(b, -1).tolist()
    o7 = dec["order"].tolist()
    b3 = dec["buffers"].tolist()
    li, dim, sp, acc = (dec[k].tolist() for k in ("layer", "dim", "sp_kb", "acc_kb"))
    layer_json = [layer.to_json() for layer in spec.layers]

    def row(j: int, r: Result) -> tuple:
        lj = li[j]
        return _row(int(idx[j]), u_json[j], lj, spec.layers[lj].name, spec.workloads_of[lj], layer_json[lj],
                    _hw_json(spec.hw_base, dim[j], sp[j], acc[j]), mapping_json(f21[j], o7[j], b3[j]),
                    dim[j], sp[j], acc[j], enc_json[j], r)

    if spec.fidelity == "analytical":
        return _analytical(spec, dec, row), None
    return _rtl(spec, idx, dec, row)


def _analytical(spec: Spec, dec: dict, row: Callable[[int, Result], tuple]) -> list[tuple]:
    from cost.evaluate import result_from_arrays
    from cost.model import evaluate_arrays

    rows: list = [None] * len(dec["layer"])
    base = spec.hw_base.to_dict()
    for l in np.unique(dec["layer"]).tolist():
        sel = np.flatnonzero(dec["layer"] == l)
        layer = spec.layers[l]
        hw = {**base, "dim": dec["dim"][sel], "sp_kb": dec["sp_kb"][sel], "acc_kb": dec["acc_kb"][sel]}
        arrays = evaluate_arrays(layer, hw, dec["factors"][sel], dec["order"][sel], dec["buffers"][sel])
        feasible = arrays["feasible"].tolist()
        dims = [layer.dims[lp] for lp in LOOPS]
        for j, i in enumerate(sel.tolist()):
            reason = None
            if not feasible[j]:  # worded as the RTL path words it (Mapping.check: hw.mapping.reason_text)
                hwc = _hw(spec.hw_base, int(dec["dim"][i]), int(dec["sp_kb"][i]), int(dec["acc_kb"][i]))
                reason = reason_text(arrays["reason"][j], dims, layer.stride, dec["factors"][i], dec["order"][i],
                                     hwc.dim, hwc.sp_rows, hwc.acc_rows, dec["buffers"][i])
            rows[i] = row(i, result_from_arrays(arrays, j, reason_text=reason))
    return rows


def over_budget(spec: Spec, hw: HardwareConfig, mapping, layer: Layer) -> Result | None:
    """The stored result of a fitting sample not simulated because the analytical model
    estimates more than ``spec.max_cycles`` cycles (None: simulate it)."""
    if not spec.max_cycles or not mapping.check(hw, layer):
        return None
    from cost.evaluate import evaluate as estimate

    est = estimate(hw, mapping, layer)
    if est.feasible and est.cycles > spec.max_cycles:
        return Result.infeasible(f"not simulated: the analytical model estimates {est.cycles:,} cycles, "
                                 f"above --max-cycles {spec.max_cycles:,}", "rtl",
                                 estimated_cycles=int(est.cycles))
    return None


def _rtl(spec: Spec, idx: np.ndarray, dec: dict, row) -> tuple[list[tuple], str | None]:
    from cost.evaluate import price
    from sim.evaluate import VerificationError, evaluate

    rows = []
    for j, i in enumerate(idx.tolist()):
        layer = spec.layers[int(dec["layer"][j])]
        hwc = _hw(spec.hw_base, int(dec["dim"][j]), int(dec["sp_kb"][j]), int(dec["acc_kb"][j]))
        m = Mapping.from_arrays(dec["factors"][j], dec["order"][j], dec["buffers"][j])
        skipped = over_budget(spec, hwc, m, layer)
        if skipped is not None:
            rows.append(row(j, price(skipped, hwc)))
            continue
        try:
            with tempfile.TemporaryDirectory(prefix="accel-collect-") as wd:
                r = evaluate(hwc, m, layer, seed=input_seed(spec.seed, i), cache_dir=spec.cache_dir,
                             timeout_s=spec.timeout_s, workdir=wd, superset=spec.models == "family")
        except VerificationError as e:
            return rows, f"sample {i}: {first_line(e)}"
        except Exception as e:  # noqa: BLE001  (a build or simulator failure: stored, retried on request)
            r = Result.infeasible(f"error: {type(e).__name__}: {first_line(e)}", "rtl")
        rows.append(row(j, price(r, hwc)))
    return rows, None


# ---- tasks ------------------------------------------------------------------------------
POINT_BLOCK = 4096


def _ensure_points(store: Store, n: int, seed: int, quiet: bool = True, err=None, version: int = 1) -> None:
    """Store the Sobol points 0 .. n - 1 of encoding ``version``'s unit cube in blocks of
    POINT_BLOCK (the missing blocks only; a progress bar when there are many and not
    ``quiet``)."""
    from tqdm import tqdm

    have = store.point_blocks()
    todo = [start for start in range(0, n, POINT_BLOCK)
            if have.get(start, 0) < min(start + POINT_BLOCK, n) - start]
    bar = tqdm(total=len(todo) * POINT_BLOCK, unit="point", desc="Sobol points", file=err or sys.stderr,
               disable=quiet or len(todo) * POINT_BLOCK < _SAY_ROWS, dynamic_ncols=True, leave=False)
    with bar:
        for start in todo:
            stop = min(start + POINT_BLOCK, n)
            store.put_points(start, CoDesignSpace.sobol(stop - start, seed=seed, skip=start, version=version))
            bar.update(POINT_BLOCK)


def _analytical_tasks(store: Store, pending: np.ndarray, n: int, batch: int) -> Iterator[tuple]:
    """(indices, unit points) per batch of consecutive indices that has pending ones."""
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        lo, hi = np.searchsorted(pending, [start, stop])
        if lo == hi:
            continue
        sel = pending[lo:hi]
        yield sel, store.get_points(start, stop)[sel - start]


def _fitting(spec: Spec, dec: dict) -> np.ndarray:
    """Per decoded sample: does its mapping fit its hardware (`Mapping.check`'s rules)?"""
    out = np.zeros(len(dec["layer"]), dtype=bool)
    for j in range(len(out)):
        hwc = _hw(spec.hw_base, int(dec["dim"][j]), int(dec["sp_kb"][j]), int(dec["acc_kb"][j]))
        ms = _mapping_space(spec.layers[int(dec["layer"][j])], hwc, spec.version)
        out[j] = bool(ms.fits_arrays(dec["factors"][j:j + 1], dec["buffers"][j:j + 1])[0])
    return out


def _rtl_tasks(spec: Spec, store: Store, pending: np.ndarray, n: int) -> tuple[list[tuple], list[int]]:
    """Tasks of RTL samples. Family models: one task holding every sample whose mapping
    does not fit (no simulation), then one task per fitting sample, largest array first.
    Exact models: one task per hardware configuration (so a configuration is never
    built by two workers at once), configurations with no fitting sample first, then the
    rest largest array first. Also returns the array sizes of the fitting samples, largest
    first (the models to build)."""
    u = store.get_points(0, n)[pending]
    dec = decode_units(spec, u)
    fits = _fitting(spec, dec)
    dims = sorted(set(dec["dim"][fits].tolist()), reverse=True)
    if spec.models == "family":
        tasks = [np.flatnonzero(~fits)] if (~fits).any() else []
        yes = np.flatnonzero(fits)
        tasks += [np.array([j]) for j in yes[np.argsort(-dec["dim"][yes], kind="stable")]]
        return [(pending[js], u[js]) for js in tasks], dims
    groups: dict[tuple, list[int]] = {}
    for j, key in enumerate(zip(dec["dim"].tolist(), dec["sp_kb"].tolist(), dec["acc_kb"].tolist())):
        groups.setdefault(key, []).append(j)
    tasks = []
    for key, js in groups.items():
        k = int(fits[js].sum())
        tasks.append(((k > 0, -key[0] if k else 0, -k, min(js)), np.array(js)))
    tasks.sort(key=lambda t: t[0])
    return [(pending[js], u[js]) for _, js in tasks], dims


# ---- executors ----------------------------------------------------------------------------
_SPEC: Spec | None = None


def _watch_parent(ppid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:   # the collector died (kill -9): do not linger
            os._exit(1)


def _init_worker(spec: Spec, ppid: int) -> None:
    global _SPEC
    _SPEC = spec
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the collector's to handle
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    if spec.fidelity == "analytical":
        from cost.model import warm_up
        warm_up()


def _pool_task(idx, u):
    return evaluate_chunk(_SPEC, idx, u)


def _run_local(spec: Spec, tasks, workers: int, sink: Callable) -> None:
    if workers == 1:
        for idx, u in tasks:
            sink(*evaluate_chunk(spec, idx, u))
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(spec, os.getpid()))
    try:
        it = iter(tasks)
        inflight = set()
        while True:
            while len(inflight) < 2 * workers:
                nxt = next(it, None)
                if nxt is None:
                    break
                inflight.add(pool.submit(_pool_task, *nxt))
            if not inflight:
                break
            done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
            for fut in done:
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    raise CollectFailure("a worker process died (killed, or out of memory?); the samples "
                                         "stored so far are kept: rerun the same command to continue") from None
                sink(*result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _ray_task(spec: Spec, idx, u):
    return evaluate_chunk(spec, idx, u)


def _run_ray(spec: Spec, tasks, address: str, workers: int, sink: Callable) -> None:
    import ray

    if address == "local":
        path = os.pathsep.join([str(_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    else:
        ray.init(address=address, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(_ray_task)
        spec_ref = ray.put(spec)
        slots = 2 * max(1, int(ray.cluster_resources().get("CPU", workers)))
        it = iter(tasks)
        inflight: list = []
        while True:
            while len(inflight) < slots:
                nxt = next(it, None)
                if nxt is None:
                    break
                inflight.append(remote.remote(spec_ref, *nxt))
            if not inflight:
                break
            done, inflight = ray.wait(inflight, num_returns=1)
            for ref in done:
                sink(*ray.get(ref))
    finally:
        ray.shutdown()


# ---- the collection -------------------------------------------------------------------------
def _versions(fidelity: str) -> dict:
    import importlib.metadata as md
    import platform

    def version(dist):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    files = sorted([*(_ROOT / "hw").glob("*.py"), *(_ROOT / "cost").glob("*.py"),
                    _ROOT / "search" / "space.py", _ROOT / "search" / "workloads.py",
                    *((_ROOT / "sim").glob("*.py") if fidelity == "rtl" else ())])
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(_ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    return {"accelsim": version("accelsim"), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": version("scipy"), "sqlite": sqlite3.sqlite_version,
            "code": h.hexdigest()[:16]}


def _meta(spec: Spec, workloads: list[str], n: int, entries: list[dict]) -> dict:
    meta = {"fidelity": spec.fidelity, "workloads": list(workloads), "n": n, "seed": spec.seed,
            "layers": entries, "hw_base": spec.hw_base.to_dict(), "encoding_version": spec.version,
            "encoding_names": list(encoding_names(spec.version)), "unit_names": list(unit_names(spec.version)),
            "rtl": None, "versions": _versions(spec.fidelity),
            "created": datetime.now(UTC).isoformat(timespec="seconds")}
    if spec.fidelity == "rtl":
        meta["rtl"] = {"harness": "lean", "out": "int32", "verify": True,
                       "input_seed": "seed * 2**32 + idx", "energy": "cost.price",
                       "models": spec.models, "max_cycles": spec.max_cycles}
    return meta


def _text(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


_WHAT = {"layers": "layer shapes (the workload definitions changed?)",
         "hw_base": "fixed hardware fields", "rtl": "RTL settings"}


def _open(out: Path, meta: dict, layer_rows: list[tuple], warn: Callable[[str], None]) -> Store:
    """Create the store, or open it and check that it is this collection (n may grow)."""
    db = out / DB_NAME
    try:
        store, created = Store.open_or_create(db, meta, layer_rows)
    except DatasetError as e:
        raise CollectError(str(e)) from None
    except (OSError, sqlite3.Error) as e:
        raise CollectError(f"cannot write the dataset {db}: {first_line(e)}") from None
    if created:
        return store
    old = store.meta
    have, want = old.get("encoding_version", 1), meta.get("encoding_version", 1)
    if have != want:
        store.close()
        raise CollectError(f"{out} holds a collection with --encoding {have}; this run asks --encoding {want} "
                           f"(omit --encoding to resume it, or use another --out)")
    for key in _MATCH_KEYS:
        if old.get(key) != meta.get(key):
            store.close()
            if key in _WHAT:
                raise CollectError(f"{out} holds a collection whose {_WHAT[key]} differ from this run's; "
                                   f"use another --out")
            raise CollectError(f"{out} holds a collection with {key}={_text(old.get(key))}; this run asks "
                               f"{key}={_text(meta.get(key))} (rerun with the same parameters to resume, "
                               f"or use another --out)")
    if meta["n"] < old["n"]:
        store.close()
        raise CollectError(f"{out} holds a collection of n={old['n']}; --n {meta['n']} is smaller "
                           f"(--n may only grow; --summary {out} shows it)")
    if meta["n"] > old["n"]:
        store.set_meta(n=meta["n"])
    code = old.get("versions", {}).get("code")
    if code != meta["versions"]["code"]:
        warn(f"warning: the code changed since {out} was started ({code} -> {meta['versions']['code']}); "
             f"its samples come from both versions")
    return store


def _encoding_version(out: Path, asked: int | None) -> int:
    """The encoding version of the collection in ``out``: the stored one when it holds a
    collection (CollectError when ``asked`` differs), else ``asked`` or `DEFAULT_ENCODING`."""
    db = out / DB_NAME
    stored = None
    if db.is_file() and db.stat().st_size > 0:
        try:
            with Store.open(db, readonly=True) as s:
                stored = s.encoding_version
        except (DatasetError, sqlite3.Error):
            pass   # not (yet) a dataset: `_open` creates it or says what is wrong
    if stored is None:
        return DEFAULT_ENCODING if asked is None else int(asked)
    if asked is not None and asked != stored:
        raise CollectError(f"{out} holds a collection with --encoding {stored}; this run asks --encoding {asked} "
                           f"(omit --encoding to resume it, or use another --out)")
    return stored


def _holds_dataset(db: Path) -> bool:
    """Does ``db`` hold tables (a file with none is a creation that was killed: absent)?"""
    if not db.is_file() or db.stat().st_size == 0:
        return False
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return bool(conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall())
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise CollectError(f"{db} is not a readable SQLite dataset: {first_line(e)}") from None


def _import(out: Path, parquet: Path, quiet: bool, err) -> bool:
    """Import ``parquet`` into ``out`` (which must hold no dataset) for --resume-from."""
    if _holds_dataset(out / DB_NAME):
        raise CollectError(f"--resume-from: {out} already holds a dataset; resume it without --resume-from")
    if not quiet:
        print(f"importing {parquet} into {out / DB_NAME}...", file=err, flush=True)
    try:
        import_parquet(parquet, out / DB_NAME)
    except DatasetError as e:
        raise CollectError(f"--resume-from: {first_line(e)}") from None
    return True


def _discard(out: Path) -> None:
    """Undo an import of --resume-from (its store closed): remove DIR/dataset.sqlite."""
    db = out / DB_NAME
    for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        p.unlink(missing_ok=True)


def _check_imported_points(store: Store, n: int, parquet: Path, out: Path) -> None:
    """The Sobol points drawn here must be column ``u`` of every imported sample (another
    scipy may draw other points); else the import is undone and CollectError."""
    for start in range(0, n, POINT_BLOCK):
        stop = min(start + POINT_BLOCK, n)
        rows = store.rows(["idx", "u"], "WHERE idx >= ? AND idx < ?", (start, stop)).fetchall()
        if not rows:
            continue
        points = store.get_points(start, stop)
        bad = next((i for i, u in rows if json.loads(u) != points[i - start].tolist()), None)
        if bad is not None:
            there = store.meta.get("versions", {}).get("scipy")
            here = _versions(store.meta["fidelity"])["scipy"]
            store.close()
            _discard(out)
            raise CollectError(f"--resume-from: the Sobol points drawn here (scipy {here}) differ from those of "
                               f"{parquet} (scipy {there}) at sample {bad}; nothing was imported into {out}")


def collect(out, *, fidelity: str, workloads: Sequence[str], n: int, seed: int = 0,
            workers: int | None = None, ray: str | None = None, batch: int | None = None,
            parquet: bool = False, quiet: bool = True, cache_dir=None, timeout_s: float = 600.0,
            retry_errors: bool = False, models: str = "family", max_cycles: int = DEFAULT_MAX_CYCLES,
            encoding: int | None = None, resume_from=None, stream=None, err=None) -> dict:
    """Run (or continue) a collection into directory ``out``; see the module docstring.

    ``encoding``: the encoding version of a new collection (None: `DEFAULT_ENCODING`); a
    collection that exists keeps its own, and an ``encoding`` that differs is an error.

    ``resume_from``: a Parquet export (`search.dataset.export_parquet`) of this
    collection, imported into ``out`` first, which must hold no dataset; the import is
    undone when the collection does not match (see the module docstring).

    Returns ``{"evaluated", "wall_s", "summary"}``. Raises `CollectError` for bad
    arguments or a mismatching collection, `CollectFailure` when it stops early (a worker
    died; `VerificationStop`: an RTL output is wrong); the samples stored are kept."""
    stream = stream or sys.stdout
    err = err or sys.stderr
    t0 = time.perf_counter()
    workloads = _check_args(fidelity, workloads, n, seed, workers, batch, timeout_s, models, max_cycles)
    if encoding is not None and (isinstance(encoding, bool) or encoding not in ENCODING_VERSIONS):
        raise CollectError(f"--encoding must be one of {', '.join(map(str, ENCODING_VERSIONS))}; got {encoding!r}")
    workers = workers or max(1, os.cpu_count() or 1)
    batch = batch or DEFAULT_BATCH
    try:
        layers, entries, layer_rows = space_layers(workloads)
    except WorkloadError as e:
        raise CollectError(first_line(e)) from None
    hw_base = HardwareConfig()
    if fidelity == "rtl":  # the simulation-only DRAM model holds the largest layer
        from hw.config import param_spec
        from sim.compiler import dram_bytes_needed, dram_mb_for
        top = param_spec("dram_mb").hi
        need, big = max((dram_bytes_needed(L), L.name) for L in layers)
        if need > top << 20:
            raise CollectError(f"layer {big!r} needs {need:,} bytes of simulation DRAM, more than the largest "
                               f"simulation DRAM ({top} MB): collect it with --fidelity analytical")
        hw_base = dataclasses.replace(hw_base, dram_mb=dram_mb_for(layers, least=hw_base.dram_mb))
    spec = Spec(fidelity=fidelity, layers=tuple(layers),
                workloads_of=tuple(",".join(e["workloads"]) for e in entries), seed=int(seed),
                hw_base=hw_base, cache_dir=None if cache_dir is None else str(cache_dir),
                timeout_s=float(timeout_s), models=models, max_cycles=int(max_cycles))
    if fidelity == "rtl":   # the Verilator build cache must be writable: now, not after the analysis
        from hw.cli import check_output_dir
        from sim.build import default_cache_dir
        try:
            check_output_dir(Path(cache_dir) if cache_dir is not None else default_cache_dir(),
                             "--cache-dir" if cache_dir is not None else "the Verilator build cache")
        except ValueError as e:
            raise CollectError(first_line(e)) from None
    if ray is not None:
        try:
            import ray as _ray  # noqa: F401  (optional: only with --ray)
        except ImportError:
            raise CollectError("--ray needs the ray package (pip install 'accelsim[ray]')") from None

    out = Path(out)
    _check_disk(out, n)
    if parquet:   # checked now: the export comes after the whole collection
        from hw.cli import check_output_file
        try:
            check_output_file(out / PARQUET_NAME, "--parquet")
        except ValueError as e:
            raise CollectError(first_line(e)) from None
    if resume_from is not None:   # the file checked now, before anything is written
        resume_from = Path(resume_from)
        try:
            read_parquet_meta(resume_from)
        except DatasetError as e:
            raise CollectError(f"--resume-from: {first_line(e)}") from None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CollectError(f"cannot create the output directory {out}: {e.strerror or e}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise CollectError(f"the output directory {out} is not writable")
    from filelock import FileLock, Timeout
    lock = FileLock(str(out / "dataset.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise CollectError(f"another collection is writing into {out}") from None
    except OSError as e:
        raise CollectError(f"cannot write into {out}: {e.strerror or e}") from None
    try:
        imported = resume_from is not None and _import(out, resume_from, quiet, err)
        try:
            spec = dataclasses.replace(spec, version=_encoding_version(out, encoding))
            store = _open(out, _meta(spec, workloads, n, entries), layer_rows, lambda s: print(s, file=err))
        except CollectError:
            if imported:
                _discard(out)
            raise
        with store:
            if retry_errors:
                store.delete_errors()
            _ensure_points(store, n, spec.seed, quiet, err, spec.version)
            if imported:
                _check_imported_points(store, n, resume_from, out)
            done = store.done_indices()
            pending = np.setdiff1d(np.arange(n, dtype=np.int64), done, assume_unique=True)
            evaluated = _run(spec, store, pending, n, workers, ray, batch, quiet, err, len(done))
            store.checkpoint()
            wall = time.perf_counter() - t0
            if not quiet and n >= _SAY_ROWS:
                print(f"summarising {n:,} samples...", file=err, flush=True)
            stats = summary(store)
            print(format_summary(stats, wall_s=wall, evaluated=evaluated), file=stream)
            if parquet:
                path = out / PARQUET_NAME
                if not quiet:
                    print(f"writing {path} ({n:,} rows)...", file=err, flush=True)
                try:
                    rows = export_parquet(store, path)
                except OSError as e:
                    raise CollectFailure(f"writing {path} failed: {e.strerror or first_line(e)}; the samples are "
                                         f"stored in {out / DB_NAME}") from None
                print(f"parquet   {path} ({rows:,} rows)", file=stream)
    finally:
        lock.release()
    return {"evaluated": evaluated, "wall_s": wall, "summary": stats}


def _run(spec, store, pending, n, workers, ray, batch, quiet, err, already) -> int:
    from tqdm import tqdm

    if spec.fidelity == "analytical":
        tasks = _analytical_tasks(store, pending, n, batch)
        if len(pending) and ray is None:
            from cost.model import warm_up
            from hw.cli import ANALYTICAL_COMPILE_NOTICE, slow_notice
            # the compiled model is loaded (compiled and cached, on a cold cache: then the
            # workers load it) before the progress bar starts
            with slow_notice(ANALYTICAL_COMPILE_NOTICE, stream=err, enabled=not quiet):
                warm_up()
    else:
        if not quiet and len(pending) >= 10_000:   # about 3,000 samples a second
            print(f"sorting {len(pending):,} samples into tasks (which mappings fit; about "
                  f"{len(pending) / 3000:.0f} s)...", file=err, flush=True)
        tasks, dims = _rtl_tasks(spec, store, pending, n) if len(pending) else ([], [])
        if spec.models == "family":
            _build_families(spec, dims, quiet, err)
    bar = tqdm(total=n, initial=already, unit="sample", disable=quiet, file=err, dynamic_ncols=True,
               smoothing=0.1)
    count = {"done": 0, "feasible": 0}

    def sink(rows, fatal):
        store.insert(rows)
        count["done"] += len(rows)
        count["feasible"] += sum(r[_FEASIBLE] for r in rows)
        bar.update(len(rows))
        if count["done"]:
            bar.set_postfix(feasible=f"{100 * count['feasible'] / count['done']:.0f}%", refresh=False)
        if fatal:
            raise VerificationStop(f"RTL verification failed at {fatal} (a compiler or RTL bug; "
                                   f"{store.count():,} samples are stored)")

    try:
        if not len(pending):
            return 0
        if ray is not None:
            _run_ray(spec, tasks, ray, workers, sink)
        else:
            _run_local(spec, tasks, workers, sink)
    finally:
        bar.close()
    return count["done"]


def _build_families(spec: Spec, dims: Sequence[int], quiet: bool, err) -> None:
    """Build (or find in the cache) the family model of each array size in ``dims``, here
    and one after another, before the workers start."""
    from sim.build import BuildError, build_lean_model
    from sim.evaluate import build_notice

    for d in dims:
        hw = dataclasses.replace(spec.hw_base, dim=d)
        t0 = time.perf_counter()
        notice = None if quiet else build_notice(hw, cache_dir=spec.cache_dir, superset=True)
        if notice:
            print(notice, file=err, flush=True)
        try:
            model = build_lean_model(hw, cache_dir=spec.cache_dir, capacity_ports=True)
        except BuildError as e:
            raise CollectFailure(f"building the DIM {d} simulation model failed: {first_line(e)}") from None
        if not quiet and model.build_s is not None:
            print(f"built the DIM {d} simulation model (every memory size) in {time.perf_counter() - t0:.0f} s",
                  file=err)


# ---- CLI --------------------------------------------------------------------------------
def _check_args(fidelity, workloads, n, seed, workers, batch, timeout_s, models="family",
                max_cycles=DEFAULT_MAX_CYCLES) -> list[str]:
    if fidelity not in FIDELITIES:
        raise CollectError(f"--fidelity must be one of {', '.join(FIDELITIES)}; got {fidelity!r}")
    if isinstance(workloads, str):
        workloads = workloads.split(",")
    workloads = [w.strip() for w in workloads]
    if not workloads or any(not w for w in workloads):
        raise CollectError("--workloads must be a comma-separated list of workload names or files")
    dup = sorted({w for w in workloads if workloads.count(w) > 1})
    if dup:
        raise CollectError(f"--workloads lists {', '.join(dup)} more than once")
    n_max = MAX_N[fidelity]
    for name, v, lo, hi, why in (("--n", n, 1, n_max, f" for --fidelity {fidelity}"),
                                 ("--seed", seed, 0, MAX_SEED, " (2**32 - 1)"),
                                 ("--workers", workers, 1, max_workers(), " (4 x the CPU count)"),
                                 ("--batch", batch, 1, MAX_BATCH, "")):
        if v is None and name in ("--workers", "--batch"):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise CollectError(f"{name} must be an integer >= {lo}; got {v!r}")
        if v > hi:
            raise CollectError(f"{name} must be an integer >= {lo} and <= {hi:,}{why}; got {v:,}")
    from hw.cli import TIMEOUT_MAX_S
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= TIMEOUT_MAX_S:
        raise CollectError(f"--timeout must be a number of seconds > 0 and <= {TIMEOUT_MAX_S:g}; got {timeout_s!r}")
    if models not in MODELS:
        raise CollectError(f"--models must be one of {', '.join(MODELS)}; got {models!r}")
    if isinstance(max_cycles, bool) or not isinstance(max_cycles, (int, np.integer)) or max_cycles < 0:
        raise CollectError(f"--max-cycles must be an integer >= 0 (0: no limit); got {max_cycles!r}")
    if max_cycles > MAX_MAX_CYCLES:
        raise CollectError(f"--max-cycles must be an integer >= 0 and <= {MAX_MAX_CYCLES:,} (0: no limit); "
                           f"got {max_cycles:,}")
    return workloads


def _check_disk(out: Path, n: int) -> None:
    """CollectError when the free disk under ``out`` cannot hold ``n`` samples (minus what
    its dataset already holds), at about SAMPLE_BYTES each."""
    import shutil

    base = out.absolute()
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        return  # not a directory: the mkdir below says so
    from hw.cli import human_bytes

    try:
        usage = shutil.disk_usage(base)
        have = (out / DB_NAME).stat().st_size if (out / DB_NAME).is_file() else 0
    except OSError:
        return
    if not usage.total:   # not a disk (/proc, ...): creating the directory fails and says so
        return
    need = n * SAMPLE_BYTES - have
    if need > usage.free:
        raise CollectError(f"--n {n:,} needs about {human_bytes(need)} in {out} (about {SAMPLE_BYTES:,} bytes a "
                           f"sample); only {human_bytes(usage.free)} are free there")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m search.collect", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fidelity", choices=FIDELITIES, help="evaluator: analytical model or RTL simulation")
    p.add_argument("--workloads", help="comma-separated workload names or files, e.g. resnet50,bert,unet,retinanet")
    p.add_argument("--n", type=int, help=f"number of samples, up to {MAX_N['analytical']:,} (analytical) or "
                   f"{MAX_N['rtl']:,} (RTL), and what the free disk holds (about {SAMPLE_BYTES:,} bytes each); "
                   "a larger --n extends an existing DIR")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the scrambled Sobol sequence, 0..2**32-1 (default 0)")
    p.add_argument("--out", type=Path, metavar="DIR", help="dataset directory (DIR/dataset.sqlite)")
    p.add_argument("--encoding", type=int, choices=ENCODING_VERSIONS, default=None,
                   help=f"encoding version of a new DIR: 2 samples and encodes each operand's single / double "
                   f"buffering, 1 double-buffers every tile (default {DEFAULT_ENCODING}; a DIR that holds a "
                   "collection keeps its own)")
    p.add_argument("--workers", type=int, help="local worker processes, 1..4 x the CPU count (default: the CPU "
                   "count; 1: no pool)")
    p.add_argument("--ray", metavar="ADDRESS", help="run the tasks on Ray: local, auto or ray://host:port")
    p.add_argument("--batch", type=int, help=f"analytical: samples per task and transaction, 1..{MAX_BATCH:,} "
                   f"(default {DEFAULT_BATCH})")
    p.add_argument("--parquet", action="store_true", help="also write DIR/dataset.parquet at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no notices of long phases")
    p.add_argument("--cache-dir", type=Path, metavar="DIR", help="RTL: Verilator model cache (default $ACCEL_CACHE_DIR "
                   "or ~/.cache/accelsim/builds)")
    p.add_argument("--timeout", type=float, default=None, help="RTL: wall-clock limit per sample in seconds, "
                   "up to 86400 (default 600)")
    p.add_argument("--models", choices=MODELS, default=None,
                   help="RTL: 'family' (default) simulates every memory size of an array size on one "
                   "Verilator model (cycle-identical, tests/sim/test_superset.py); 'exact' builds one per "
                   "configuration")
    p.add_argument("--max-cycles", type=int, default=None,
                   help="RTL: store a fitting sample unsimulated (infeasible, with the estimate) when the "
                   f"analytical model estimates more cycles than this, 0..10**12 (default {DEFAULT_MAX_CYCLES:,}; "
                   "0: no limit)")
    p.add_argument("--retry-errors", action="store_true", help="evaluate again the samples stored with "
                   "reason 'error: ...'")
    p.add_argument("--resume-from", type=Path, metavar="FILE.parquet",
                   help="continue the collection exported to FILE (--parquet) in a DIR that holds no dataset "
                   "yet: FILE is imported into DIR first, then the run resumes it (the arguments must be "
                   "FILE's collection's; --n may grow)")
    p.add_argument("--summary", type=Path, metavar="DIR", help="print the summary of an existing dataset and exit")
    return p


#: Destinations of the options that only an RTL collection reads.
_RTL_OPTIONS = ("cache_dir", "timeout", "models", "max_cycles")


def _given(args) -> list[str]:
    """The options on the command line besides --summary (as flags)."""
    return [f"--{k.replace('_', '-')}" for k, v in vars(args).items()
            if k != "summary" and v is not None and v is not False]


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except UsageError as e:
        print(f"error: {first_line(e)}", file=sys.stderr)
        return 2
    if args.summary is not None:
        others = _given(args)
        try:
            if others:
                raise CollectError(f"--summary takes no other option; got {', '.join(others)}")
            print(format_summary(summary(args.summary)))
        except (CollectError, DatasetError) as e:
            print(f"error: {first_line(e)}", file=sys.stderr)
            return 2
        return 0
    missing = [f"--{k}" for k in ("fidelity", "workloads", "n", "out") if getattr(args, k) is None]
    if missing:
        print(f"error: the following arguments are required: {', '.join(missing)} (or --summary DIR)",
              file=sys.stderr)
        return 2
    opts = dict(seed=0 if args.seed is None else args.seed,
                timeout_s=600.0 if args.timeout is None else args.timeout,
                models=args.models or "family",
                max_cycles=DEFAULT_MAX_CYCLES if args.max_cycles is None else args.max_cycles)
    try:
        _check_args(args.fidelity, args.workloads, args.n, opts["seed"], args.workers, args.batch,
                    opts["timeout_s"], opts["models"], opts["max_cycles"])
        rtl_only = [f"--{k.replace('_', '-')}" for k in _RTL_OPTIONS if getattr(args, k) is not None]
        if args.fidelity == "analytical" and rtl_only:
            raise CollectError(f"{' and '.join(rtl_only)} {'applies' if len(rtl_only) == 1 else 'apply'} to "
                               "--fidelity rtl only")
        if args.fidelity == "rtl" and args.batch is not None:
            raise CollectError("--batch applies to --fidelity analytical only (an RTL task is one sample, or one "
                               "configuration with --models exact)")
        collect(args.out, fidelity=args.fidelity, workloads=args.workloads, n=args.n, workers=args.workers,
                ray=args.ray, batch=args.batch, parquet=args.parquet, quiet=args.quiet, cache_dir=args.cache_dir,
                retry_errors=args.retry_errors, encoding=args.encoding, resume_from=args.resume_from, **opts)
    except CollectError as e:
        print(f"error: {first_line(e)}", file=sys.stderr)
        return 2
    except CollectFailure as e:
        print(f"error: {first_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the samples stored so far are kept; rerun the same command to continue",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    # Run the importable module, so that pool and Ray workers unpickle search.collect.*
    from hw.cli import run_main
    from search.collect import main as _main
    run_main(_main)
