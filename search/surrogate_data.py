"""Training data of the learned surrogates (Starlight): datasets -> numeric arrays.

One job: turn collections (`search.collect`: ``DIR/dataset.sqlite`` or its Parquet
export) into the rows a surrogate learns from, and build the same rows for candidates
(`candidate_inputs`), so that training and prediction share one input layout.

Inputs (`input_names`, `INPUT_VERSION`)
---------------------------------------
Each row (hardware, mapping, layer) is

1. the collector's encoding, version 2 (`search.dataset.encoding_names(2)`, 34 numbers
   in [0, 1]): the hardware's 3 (`HardwareSpace.encode`), then the mapping's 31
   (`MappingSpace.encode`: per loop the log share of the layer bound at each level,
   the loop-order positions, each operand's ``buffers - 1``). A version-1 collection
   (every tile double-buffered) is the same point of version 2 with the buffering
   numbers 1: `load_dataset` appends them, so both versions train one model;
2. the layer's shape, 9 numbers in [0, 1] (`LAYER_FEATURE_NAMES`): ``log2(x) /
   log2(MAX_DIM)`` for each loop bound N K C P Q R S and for the groups,
   ``log2(stride) / log2(MAX_STRIDE)`` (`hw.layer`'s limits: a valid layer is inside the
   cube). The mapping's encoding is relative to the layer's bounds, so without these
   two layers with the same relative tiling would be the same input;
3. each tiling factor's ``log2(factor) / log2(MAX_DIM)`` (`FACTOR_FEATURE_NAMES`, 21
   numbers: the product of the encoding's log share and the layer's log bound), so that
   a network sees tile sizes and loop counts without having to learn a product;
4. the analytical model's prediction for the same triple (`ANALYTICAL_NAMES`): natural
   log of its cycles and of its energy in pJ (`cost.evaluate_arrays`; NaN where the model
   calls the triple infeasible, which never happens for a fitting mapping).

Starlight's networks read parts 1 to 3 (`BASE_DIMS` columns); the residual variant also
reads part 4. On an analytical collection part 4 is the target itself, so models of the
low-fidelity data never read it.

Target: natural log of EDP = energy (pJ) x delay (cycles); at RTL fidelity the cycles
are the simulation's and the energy its counters priced by the energy table
(`cost.price`, what the collector stores).

Held-out split
--------------
`test_mask` puts a row in the test split when the SHA-256 of its triple (layer shape,
searched hardware, mapping: `sample_key`) falls in the first `TEST_FRACTION` of the hash
range. The split is a property of the sample, not of the file: a sample is in the same
split in every collection, in every order, and growing a collection never moves a
sample between splits. Nothing that trains or selects a model reads the test rows.

`load_dataset` keeps the simulated (feasible) rows only and drops repeated triples
(the first occurrence stays), so that two collections that share a sample count it once.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw.config import HardwareConfig
from hw.layer import MAX_DIM, MAX_STRIDE, Layer
from hw.mapping import LOOPS, Mapping
from search.dataset import DB_NAME, DatasetError, encoding_names, load_records

__all__ = [
    "ANALYTICAL_NAMES",
    "BASE_DIMS",
    "FACTOR_FEATURE_NAMES",
    "INPUT_VERSION",
    "LAYER_FEATURE_NAMES",
    "TEST_FRACTION",
    "SurrogateData",
    "analytical_columns",
    "candidate_inputs",
    "input_names",
    "layer_features",
    "load_dataset",
    "load_datasets",
    "sample_key",
    "test_mask",
]

#: Version of the input layout below; a model file records it (with `input_names`).
INPUT_VERSION = 1
ENCODING_VERSION = 2
LAYER_FEATURE_NAMES = tuple(f"layer_{lp}" for lp in LOOPS) + ("layer_groups", "layer_stride")
FACTOR_FEATURE_NAMES = tuple(f"log2_{n}" for n in encoding_names(ENCODING_VERSION)[3:3 + 21])
ANALYTICAL_NAMES = ("analytical_log_cycles", "analytical_log_energy")
_ENC = len(encoding_names(ENCODING_VERSION))
_LAY = slice(_ENC, _ENC + len(LAYER_FEATURE_NAMES))
#: Columns the networks read: the encoding, the layer's shape and the tiling factors.
BASE_DIMS = _ENC + len(LAYER_FEATURE_NAMES) + len(FACTOR_FEATURE_NAMES)
TEST_FRACTION = 0.2
_LOG_MAX_DIM = math.log2(MAX_DIM)
_LOG_MAX_STRIDE = math.log2(MAX_STRIDE)


def input_names() -> tuple[str, ...]:
    """Names of the input columns, in order (`BASE_DIMS` + 2 of them)."""
    return encoding_names(ENCODING_VERSION) + LAYER_FEATURE_NAMES + FACTOR_FEATURE_NAMES + ANALYTICAL_NAMES


def _fill_factors(X: np.ndarray) -> None:
    """Part 3 of rows ``X`` from their parts 1 and 2, in place."""
    share = X[:, 3:24].reshape(-1, len(LOOPS), 3)               # per loop: dram, spad, array
    X[:, _LAY.stop:BASE_DIMS] = (share * X[:, _LAY.start:_LAY.start + len(LOOPS), None]).reshape(-1, 21)


def layer_features(layer: Layer) -> np.ndarray:
    """The layer's 9 shape numbers in [0, 1] (`LAYER_FEATURE_NAMES`)."""
    d = layer.dims
    v = [math.log2(d[lp]) / _LOG_MAX_DIM for lp in LOOPS]
    v += [math.log2(layer.groups) / _LOG_MAX_DIM, math.log2(layer.stride) / _LOG_MAX_STRIDE]
    return np.array(v, dtype=np.float64)


def sample_key(layer: Layer, hw: HardwareConfig, mapping: Mapping) -> str:
    """The identity of a triple: the layer's shape (not its name or count), the searched
    hardware and the mapping (tiling, order, buffering)."""
    shape = {k: v for k, v in layer.to_dict().items() if k not in ("name", "count")}
    return json.dumps([shape, [hw.dim, hw.sp_kb, hw.acc_kb], mapping.to_dict()], sort_keys=True)


def test_mask(keys) -> np.ndarray:
    """True for the keys in the held-out test split (see the module docstring)."""
    lim = int(TEST_FRACTION * 2**64)
    return np.array([int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "big") < lim for k in keys],
                    dtype=bool)


def analytical_columns(layers, hws, factors, order, buffers) -> np.ndarray:
    """(B, 2): ln cycles and ln energy (pJ) of the analytical model for each triple;
    ``layers`` and ``hws`` are lists of B objects (equal ones are evaluated as a group)."""
    from cost.model import evaluate_arrays

    factors = np.asarray(factors, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    buffers = np.asarray(buffers, dtype=np.int64)
    out = np.full((len(factors), 2), np.nan)
    groups: dict[Layer, list[int]] = {}
    for i, layer in enumerate(layers):
        groups.setdefault(layer, []).append(i)
    for layer, rows in groups.items():
        ix = np.array(rows)
        res = evaluate_arrays(layer, [hws[i] for i in rows], factors[ix], order[ix], buffers[ix])
        with np.errstate(divide="ignore", invalid="ignore"):
            out[ix, 0] = np.log(res["cycles"])
            out[ix, 1] = np.log(res["energy_pj"])
    return out


def candidate_inputs(layer: Layer, hw, factors, order, buffers=None, *, analytical: bool = True) -> np.ndarray:
    """Input rows (B, `BASE_DIMS` + 2) for B candidate mappings of one layer on one
    hardware configuration (or a list of B configurations), in array form
    (`hw.mapping`). ``analytical=False`` leaves the two analytical columns NaN (for
    models that do not read them; it saves the model's evaluation)."""
    from search.space import HardwareSpace, MappingSpace

    factors = np.asarray(factors, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    B = len(factors)
    buffers = np.broadcast_to(np.asarray((2, 2, 2) if buffers is None else buffers, dtype=np.int64), (B, 3))
    hws = list(hw) if isinstance(hw, (list, tuple)) else [hw] * B
    X = np.full((B, BASE_DIMS + 2), np.nan)
    if B == 0:
        return X
    groups: dict[HardwareConfig, list[int]] = {}
    for i, h in enumerate(hws):
        groups.setdefault(h, []).append(i)
    for h, rows in groups.items():
        ix = np.array(rows)
        X[ix, :3] = HardwareSpace.encode_arrays(h.dim, h.acc_kb, h.sp_kb)
        X[ix, 3:_ENC] = MappingSpace(h, layer, ENCODING_VERSION).encode_arrays(
            factors[ix], order[ix], buffers[ix])
    X[:, _LAY] = layer_features(layer)
    _fill_factors(X)
    if analytical:
        X[:, BASE_DIMS:] = analytical_columns([layer] * B, hws, factors, order, buffers)
    return X


@dataclass(frozen=True)
class SurrogateData:
    """Rows of one or more collections: ``X`` (n, `BASE_DIMS` + 2) as `input_names`,
    ``y`` (n,) ln EDP, ``cycles`` and ``energy_pj`` of the collection, ``dim`` and
    ``layer_index``, ``keys`` (`sample_key`), ``test`` (the held-out mask), and where
    they came from (``sources``, ``fidelity``)."""

    X: np.ndarray
    y: np.ndarray
    cycles: np.ndarray
    energy_pj: np.ndarray
    dim: np.ndarray
    layer_index: np.ndarray
    keys: tuple
    test: np.ndarray
    fidelity: str
    sources: tuple = field(default=())

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask_or_index) -> SurrogateData:
        ix = np.arange(len(self))[mask_or_index]
        return SurrogateData(self.X[ix], self.y[ix], self.cycles[ix], self.energy_pj[ix], self.dim[ix],
                             self.layer_index[ix], tuple(self.keys[i] for i in ix), self.test[ix],
                             self.fidelity, self.sources)

    @property
    def train(self) -> SurrogateData:
        """The rows outside the held-out split."""
        return self.subset(~self.test)

    @property
    def held_out(self) -> SurrogateData:
        """The held-out test split."""
        return self.subset(self.test)

    def analytical_log_edp(self) -> np.ndarray:
        """ln EDP of the analytical model's prediction of each row."""
        return self.X[:, BASE_DIMS] + self.X[:, BASE_DIMS + 1]


_COLUMNS = ("idx", "layer_index", "layer", "hw", "mapping", "encoding", "feasible", "cycles", "energy_pj")


def _read(path: Path) -> tuple[list[dict], dict]:
    """Records (the `_COLUMNS`) and the collection's meta of a dataset dir, sqlite file or
    Parquet file."""
    if path.is_dir():
        db = path / DB_NAME
        if not db.exists():
            pq = path / "dataset.parquet"
            if pq.exists():
                return _read(pq)
            raise DatasetError(f"{path}: no {DB_NAME} or dataset.parquet in this directory")
        path = db
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset (a collection directory, {DB_NAME} or a .parquet file)")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path, columns=list(_COLUMNS))
        except Exception as e:  # noqa: BLE001 - any unreadable file is one line
            raise DatasetError(f"{path}: not a dataset Parquet file ({type(e).__name__}: {e})") from None
        raw = (table.schema.metadata or {}).get(b"accelsim.meta")
        meta = json.loads(raw) if raw else {}
        return table.to_pylist(), meta
    from search.dataset import open_store

    with open_store(path) as store:
        meta = dict(store.meta)
        meta["encoding_version"] = store.encoding_version
    return load_records(path, _COLUMNS), meta


def load_dataset(path, *, analytical: bool = True) -> SurrogateData:
    """The feasible rows of one collection (directory, ``dataset.sqlite`` or Parquet);
    ``analytical=False`` leaves the analytical columns NaN (see `candidate_inputs`)."""
    path = Path(path)
    records, meta = _read(path)
    version = int(meta.get("encoding_version", 1))
    fidelity = meta.get("fidelity", "unknown")
    rows = [r for r in records if r["feasible"] and r["cycles"] is not None and r["energy_pj"] is not None]
    if not rows:
        raise DatasetError(f"{path}: no feasible (evaluated) samples")
    n = len(rows)
    enc = np.array([r["encoding"] if isinstance(r["encoding"], list) else json.loads(r["encoding"])
                    for r in rows], dtype=np.float64)
    width = len(encoding_names(version))
    if enc.shape[1] != width:
        raise DatasetError(f"{path}: column encoding has {enc.shape[1]} numbers; encoding version {version} "
                           f"has {width}")
    if version == 1:
        enc = np.concatenate([enc, np.ones((n, 3))], axis=1)   # version 1: every tile double-buffered
    layer_cache: dict[str, Layer] = {}
    layers, hws, maps = [], [], []
    for r in rows:
        lj = r["layer"]
        if lj not in layer_cache:
            layer_cache[lj] = Layer.from_json(lj)
        layers.append(layer_cache[lj])
        hws.append(HardwareConfig.from_json(r["hw"]))
        maps.append(Mapping.from_json(r["mapping"]))
    X = np.full((n, BASE_DIMS + 2), np.nan)
    X[:, :enc.shape[1]] = enc
    X[:, _LAY] = np.array([layer_features(la) for la in layers])
    _fill_factors(X)
    if analytical:
        arrs = [m.to_arrays() for m in maps]
        X[:, BASE_DIMS:] = analytical_columns(layers, hws, np.stack([a[0] for a in arrs]),
                                              np.stack([a[1] for a in arrs]),
                                              np.array([m.buffers for m in maps], dtype=np.int64))
    cycles = np.array([r["cycles"] for r in rows], dtype=np.float64)
    energy = np.array([r["energy_pj"] for r in rows], dtype=np.float64)
    keys = [sample_key(la, h, m) for la, h, m in zip(layers, hws, maps)]
    _, first = np.unique(np.array(keys, dtype=object), return_index=True)
    keep = np.sort(first)
    data = SurrogateData(X, np.log(energy) + np.log(cycles), cycles, energy,
                         np.array([h.dim for h in hws], dtype=np.int64),
                         np.array([r["layer_index"] for r in rows], dtype=np.int64), tuple(keys),
                         test_mask(keys), fidelity, (str(path),))
    return data.subset(keep)


def load_datasets(paths, *, analytical: bool = True) -> SurrogateData:
    """`load_dataset` of each path, concatenated (repeated triples counted once; all of
    one fidelity)."""
    parts = [load_dataset(p, analytical=analytical) for p in paths]
    if not parts:
        raise DatasetError("no dataset given")
    fids = {p.fidelity for p in parts}
    if len(fids) > 1:
        raise DatasetError(f"datasets of different fidelities: {', '.join(sorted(fids))}")
    cat = SurrogateData(
        np.concatenate([p.X for p in parts]), np.concatenate([p.y for p in parts]),
        np.concatenate([p.cycles for p in parts]), np.concatenate([p.energy_pj for p in parts]),
        np.concatenate([p.dim for p in parts]), np.concatenate([p.layer_index for p in parts]),
        tuple(k for p in parts for k in p.keys), np.concatenate([p.test for p in parts]),
        parts[0].fidelity, tuple(s for p in parts for s in p.sources))
    _, first = np.unique(np.array(cat.keys, dtype=object), return_index=True)
    return cat.subset(np.sort(first))
