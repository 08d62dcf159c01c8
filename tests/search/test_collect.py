"""search.collect: the samples are the co-design space's Sobol points, the records equal
the evaluators' own results, collections are deterministic and resumable (the kill test),
extensible, exportable, importable and resumable from the export (--resume-from), in
either encoding version (a DIR keeps its own; version 2 varies the buffering), and the
CLI fails with one line."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cost
from hw.mapping import DEFAULT_BUFFERS, Mapping
from hw.result import Result
from search.collect import (
    CollectError,
    Spec,
    VerificationStop,
    collect,
    decode_units,
    evaluate_chunk,
    input_seed,
    main,
    mapping_json,
    space_layers,
)
from search.dataset import (COLUMN_NAMES, DB_NAME, PARQUET_NAME, DatasetError, Store, decode_record, encoding_names,
                            export_parquet, import_parquet, load, load_arrays, load_records, unit_names)
from search.space import CoDesignSpace, HardwareSpace, MappingSpace

ROOT = Path(__file__).resolve().parents[2]
FOUR = ["resnet50", "bert", "unet", "retinanet"]


def _spec(workloads=FOUR, fidelity="analytical", seed=0, version=2) -> Spec:
    """The Spec of a collection (version 2, a new DIR's default, unless told)."""
    layers, entries, _ = space_layers(workloads)
    return Spec(fidelity, tuple(layers), tuple(",".join(e["workloads"]) for e in entries), seed, version=version)


def _run(out, **kw):
    args = {"fidelity": "analytical", "workloads": "bert", "n": 200, "seed": 0, "workers": 1,
            "stream": io.StringIO()}
    args.update(kw)
    return collect(out, **args)


def _rows(out) -> list[dict]:
    return load_records(out)


# ---- samples and records ------------------------------------------------------------
def test_space_layers_dedupe_across_workloads():
    layers, _, _ = space_layers(["resnet50", "bert"])
    assert len(layers) == 24 + 5 and len({l.shape() for l in layers}) == len(layers)
    # A shape shared by two workloads is one layer of the space, named in both.
    twice, entries2, rows2 = space_layers(["bert", "transformer"])
    shared = [e for e in entries2 if len(e["workloads"]) == 2]
    assert len(twice) < 5 + 5 and shared
    assert {r[0] for r in rows2 if r[1] == shared[0]["index"]} == {"bert", "transformer"}
    assert sum(r[3] for r in rows2 if r[0] == "bert") == 360          # bert's repeat counts kept


@pytest.mark.parametrize("version", [1, 2])
def test_decoding_is_codesign_point_and_encodings(version):
    spec = _spec(version=version)
    space = spec.space
    u = space.sobol(120, seed=3)
    assert u.shape == (120, {1: 12, 2: 15}[version]) and space.unit_dims == u.shape[1]
    if version == 1:   # version 1's points are the class's (those of every dataset made before versions)
        np.testing.assert_array_equal(u, CoDesignSpace.sobol(120, seed=3))
    dec = decode_units(spec, u)
    assert dec["encoding"].shape == (120, len(encoding_names(version))) == (120, {1: 31, 2: 34}[version])
    for i in range(len(u)):
        li, hw, m = space.point(u[i])
        assert (li, hw.dim, hw.sp_kb, hw.acc_kb) == (dec["layer"][i], dec["dim"][i], dec["sp_kb"][i],
                                                     dec["acc_kb"][i])
        ms = MappingSpace(hw, spec.layers[li], version)
        assert MappingSpace.mapping_from_arrays(dec["factors"][i], dec["order"][i]) == Mapping(m.factors, m.order)
        assert tuple(dec["buffers"][i]) == m.buffers
        enc = np.concatenate([HardwareSpace().encode(hw), ms.encode(m)])
        assert np.array_equal(dec["encoding"][i], enc)
        assert mapping_json(dec["factors"][i].ravel().tolist(), dec["order"][i].tolist(),
                            dec["buffers"][i].tolist()) == m.to_json()
    if version == 1:
        assert (dec["buffers"] == 2).all()
    else:
        assert len({tuple(b) for b in dec["buffers"].tolist()}) == 8


@pytest.mark.parametrize("version", [1, 2])
def test_analytical_records_equal_cost_evaluate(version):
    spec = _spec(version=version)
    u = spec.space.sobol(128, seed=1)
    rows, fatal = evaluate_chunk(spec, np.arange(128), u)
    assert fatal is None
    kinds = set()
    for i, row in enumerate(rows):
        rec = dict(zip(COLUMN_NAMES, row))
        li, hw, m = spec.space.point(u[i])
        r = cost.evaluate(hw, m, spec.layers[li])        # the Result API, one sample at a time
        assert rec["result"] == r.to_json()
        assert (rec["feasible"], rec["reason"], rec["cycles"], rec["edp"]) == (int(r.feasible), r.reason, r.cycles,
                                                                               r.edp)
        assert rec["layer"] == spec.layers[li].to_json() and rec["hw"] == hw.to_json()
        assert rec["mapping"] == m.to_json() and json.loads(rec["u"]) == u[i].tolist()
        assert rec["workloads"] == spec.workloads_of[li] and rec["layer_name"] == spec.layers[li].name
        kinds.add(r.feasible)
    assert kinds == {True, False}


# ---- determinism, extension, mismatch --------------------------------------------------
def test_same_seed_same_dataset_any_batch_or_workers(tmp_path):
    _run(tmp_path / "a", n=300, batch=64)
    _run(tmp_path / "b", n=300, batch=300)
    _run(tmp_path / "c", n=300, batch=50, workers=2)       # a process pool
    a = _rows(tmp_path / "a")
    assert [r["idx"] for r in a] == list(range(300))
    assert a == _rows(tmp_path / "b") == _rows(tmp_path / "c")
    _run(tmp_path / "d", n=300, seed=1)
    assert [r["u"] for r in _rows(tmp_path / "d")] != [r["u"] for r in a]


def test_larger_n_extends(tmp_path):
    _run(tmp_path / "ext", n=100, batch=64)
    report = _run(tmp_path / "ext", n=260, batch=64)
    assert report["evaluated"] == 160
    with Store.open(tmp_path / "ext") as s:
        assert s.meta["n"] == 260
    _run(tmp_path / "direct", n=260)
    assert _rows(tmp_path / "ext") == _rows(tmp_path / "direct")
    assert _run(tmp_path / "ext", n=260)["evaluated"] == 0            # nothing left to do


@pytest.mark.parametrize("change, message", [
    ({"seed": 5}, "with seed=0; this run asks seed=5"),
    ({"workloads": "bert,unet"}, "with workloads=bert; this run asks workloads=bert,unet"),
    ({"fidelity": "rtl"}, "with fidelity=analytical; this run asks fidelity=rtl"),
    ({"n": 10}, "n=50; --n 10 is smaller"),
])
def test_changed_parameters_are_an_error(tmp_path, capsys, change, message):
    _run(tmp_path, n=50)
    with pytest.raises(CollectError, match=message.replace("(", r"\(")):
        _run(tmp_path, **{"n": 50, **change})
    argv = {"--fidelity": "analytical", "--workloads": "bert", "--n": "50", "--seed": "0"}
    argv.update({f"--{k}": str(v) for k, v in change.items()})
    assert main([*sum(argv.items(), ()), "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_parquet_export_of_a_collection(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    assert main(["--fidelity", "analytical", "--workloads", "bert", "--n", "120", "--out", str(tmp_path),
                 "--workers", "1", "--quiet", "--parquet"]) == 0
    table = pq.read_table(tmp_path / PARQUET_NAME)
    cols = load(tmp_path)
    assert table.num_rows == 120
    for name in ("idx", "cycles", "edp", "reason", "mapping", "result"):
        assert table.column(name).to_pylist() == cols[name]
    assert table.column("encoding").to_pylist()[7] == json.loads(cols["encoding"][7])


def test_summary_cli(tmp_path, capsys):
    _run(tmp_path, n=80)
    assert main(["--summary", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "samples   80 of n = 80" in out and "feasible" in out and "cycles" in out


# ---- encoding versions -------------------------------------------------------------------
@pytest.mark.parametrize("version", [1, 2])
def test_each_version_created_resumed_extended_and_read_back(tmp_path, capsys, version):
    out, ref = tmp_path / "v", tmp_path / "ref"
    _run(out, n=150, batch=64, encoding=version)
    with Store.open(out) as s:
        meta = s.meta
        assert s.encoding_version == meta["encoding_version"] == version
    assert meta["encoding_names"] == list(encoding_names(version))
    assert meta["unit_names"] == list(unit_names(version))
    # resumed and extended without --encoding: the DIR's version
    assert _run(out, n=300, batch=64)["evaluated"] == 150
    assert main(["--fidelity", "analytical", "--workloads", "bert", "--n", "300", "--seed", "0", "--out", str(out),
                 "--workers", "1", "--quiet", "--encoding", str(version)]) == 0   # its own version: nothing to do
    assert "nothing to evaluate" in capsys.readouterr().out
    _run(ref, n=300, batch=300, encoding=version)
    recs = _rows(out)
    assert [r["idx"] for r in recs] == list(range(300)) and recs == _rows(ref)
    arr = load_arrays(out)
    width_u, width_enc = {1: (12, 31), 2: (15, 34)}[version]
    assert arr["encoding_version"] == version
    assert arr["u"].shape == (300, width_u) and arr["encoding"].shape == (300, width_enc)
    np.testing.assert_array_equal(arr["u"], CoDesignSpace.sobol(300, seed=0, version=version))
    buffers = {decode_record(r)[2].buffers for r in recs}
    assert (buffers == {DEFAULT_BUFFERS}) if version == 1 else (len(buffers) == 8)
    assert all(('"buffers"' in r["mapping"]) == (decode_record(r)[2].buffers != DEFAULT_BUFFERS) for r in recs)
    if version == 2:
        np.testing.assert_array_equal(arr["encoding"][:, 31:] + 1,
                                      [decode_record(r)[2].buffers for r in recs])
    assert main(["--summary", str(out)]) == 0
    assert f"encoding version {version}" in capsys.readouterr().out


def test_version_2_varies_the_buffering_and_records_equal_cost_evaluate(tmp_path):
    """Every record of a version-2 collection is `cost.evaluate` of its decoded Mapping
    objects (an independent path: no arrays), with the buffering its unit point picks."""
    out = tmp_path / "v2"
    _run(out, n=400, encoding=2)
    spec = _spec(["bert"])
    patterns, feasible_single = set(), 0
    for rec in _rows(out):
        layer, hw, m, res = decode_record(rec)
        u = json.loads(rec["u"])
        li = int(u[0] * len(spec.layers))
        assert layer == spec.layers[li] and len(u) == 15
        ms = MappingSpace(hw, layer, version=2)
        assert m.buffers == tuple(ms.buffers_from_unit(np.array([u[4:]]))[0].tolist())
        r = cost.evaluate(hw, m, layer)
        assert res == r and rec["result"] == r.to_json()
        assert (rec["feasible"], rec["reason"], rec["cycles"]) == (int(r.feasible), r.reason, r.cycles)
        patterns.add(m.buffers)
        feasible_single += r.feasible and m.buffers != DEFAULT_BUFFERS
    assert patterns == {(a, b, c) for a in (1, 2) for b in (1, 2) for c in (1, 2)}
    assert feasible_single > 0


def test_a_dataset_from_before_versions_resumes_as_version_1(tmp_path, capsys):
    """A DIR whose meta has no encoding_version (every dataset made before this change) is
    version 1: it resumes and extends as such, reads back as such, and refuses --encoding 2."""
    old, ref = tmp_path / "old", tmp_path / "ref"
    _run(old, n=100, batch=64, encoding=1)
    with Store.open(old) as s:                     # the meta an old collector wrote
        with s._transaction():
            s.conn.execute("DELETE FROM meta WHERE key IN ('encoding_version', 'unit_names')")
        assert "encoding_version" not in s.meta and s.encoding_version == 1
    assert load_arrays(old)["encoding_version"] == 1
    assert _run(old, n=200, batch=64)["evaluated"] == 100
    _run(ref, n=200, encoding=1)
    assert _rows(old) == _rows(ref)
    assert load_arrays(old)["u"].shape == (200, 12)
    message = f"{old} holds a collection with --encoding 1; this run asks --encoding 2"
    with pytest.raises(CollectError, match=message):
        _run(old, n=200, encoding=2)
    assert main(["--fidelity", "analytical", "--workloads", "bert", "--n", "200", "--out", str(old), "--quiet",
                 "--encoding", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert _count(old) == 200


def test_parquet_export_of_a_version_2_collection(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    assert main(["--fidelity", "analytical", "--workloads", "bert", "--n", "64", "--out", str(tmp_path),
                 "--workers", "1", "--quiet", "--parquet", "--encoding", "2"]) == 0
    table = pq.read_table(tmp_path / PARQUET_NAME)
    assert table.schema.field("u").type == pa.list_(pa.float64(), 1 + 3 + 11)
    assert table.schema.field("encoding").type == pa.list_(pa.float64(), 3 + 31)
    assert table.schema.metadata[b"accelsim.encoding_version"] == b"2"
    assert json.loads(table.schema.metadata[b"accelsim.meta"])["encoding_version"] == 2
    arr = load_arrays(tmp_path)
    np.testing.assert_array_equal(np.array(table.column("u").to_pylist()), arr["u"])
    np.testing.assert_array_equal(np.array(table.column("encoding").to_pylist()), arr["encoding"])


# ---- Parquet import and --resume-from ----------------------------------------------------
def _table(out: Path, table: str) -> list[tuple]:
    """Every row of a table of the store in ``out``, as stored."""
    with Store.open(out, readonly=True) as s:
        return s.conn.execute(f"SELECT * FROM {table} ORDER BY {'key' if table == 'meta' else 'rowid'}").fetchall()


def _meta_but_provenance(out: Path) -> dict:
    with Store.open(out, readonly=True) as s:
        return {k: v for k, v in s.meta.items() if k not in ("created", "versions")}


def _resume_argv(out: Path, parquet: Path, n: int, *extra: str) -> list[str]:
    return ["--fidelity", "analytical", "--workloads", "bert", "--n", str(n), "--out", str(out), "--workers", "1",
            "--quiet", "--resume-from", str(parquet), *extra]


@pytest.mark.parametrize("version", [1, 2])
def test_import_of_an_exported_collection_equals_it(tmp_path, version):
    pytest.importorskip("pyarrow")
    src, copy = tmp_path / "src", tmp_path / "copy"
    _run(src, n=64, batch=32, encoding=version, parquet=True)
    assert import_parquet(src / PARQUET_NAME, copy) == 64
    assert load_records(copy) == load_records(src) and [r["idx"] for r in load_records(copy)] == list(range(64))
    for table in ("meta", "layers", "samples"):
        assert _table(copy, table) == _table(src, table), table
    with Store.open(src, readonly=True) as a, Store.open(copy) as b:
        assert b.meta == a.meta and b.layer_table() == a.layer_table() and b.encoding_version == version
        assert b.point_blocks() == {}
        # the points the collector draws again from seed and n (`_ensure_points`) are the original's
        from search.collect import _ensure_points
        _ensure_points(b, 64, a.meta["seed"], version=version)
        np.testing.assert_array_equal(b.get_points(0, 64), a.get_points(0, 64))
        np.testing.assert_array_equal(b.get_points(0, 64), [json.loads(r["u"]) for r in load_records(src)])
    assert _run(copy, n=64, encoding=version)["evaluated"] == 0      # the copy resumes as the original


@pytest.mark.parametrize("version", [1, 2])
def test_resume_from_parquet_equals_a_straight_collection(tmp_path, capsys, monkeypatch, version):
    """Collect n=100 (with holes, as a collection stopped midway), export, resume from the
    export into a new DIR with n=260: the same dataset, row by row, as a straight n=260
    collection (meta but its provenance too), with the same Sobol points (in blocks of
    32 here, so several); the new DIR then resumes without --resume-from."""
    pytest.importorskip("pyarrow")
    import search.collect
    monkeypatch.setattr(search.collect, "POINT_BLOCK", 32)
    first, resumed, straight = tmp_path / "first", tmp_path / "resumed", tmp_path / "straight"
    _run(first, n=100, batch=64, encoding=version)
    holes = [0, 31, 32, 57, 99]
    with Store.open(first) as s, s._transaction():
        s.conn.executemany("DELETE FROM samples WHERE idx = ?", [(i,) for i in holes])
    exported = tmp_path / "moved" / "first.parquet"        # the file that travels
    exported.parent.mkdir()
    assert export_parquet(first, exported) == 100 - len(holes)
    report = _run(resumed, n=260, batch=64, resume_from=exported)        # --encoding: the file's own
    assert report["evaluated"] == 160 + len(holes) and report["summary"]["total"] == 260
    _run(straight, n=260, encoding=version)
    assert _rows(resumed) == _rows(straight) and [r["idx"] for r in _rows(resumed)] == list(range(260))
    assert _table(resumed, "samples") == _table(straight, "samples")
    assert _table(resumed, "layers") == _table(straight, "layers")
    assert _meta_but_provenance(resumed) == _meta_but_provenance(straight)
    with Store.open(first, readonly=True) as f, Store.open(resumed, readonly=True) as r, \
            Store.open(straight, readonly=True) as s:
        assert r.meta["created"] == f.meta["created"] and r.meta["n"] == 260     # the collection's own start
        assert r.point_blocks() == s.point_blocks() == {b: min(32, 260 - b) for b in range(0, 260, 32)}
        np.testing.assert_array_equal(r.get_points(0, 260), s.get_points(0, 260))
        np.testing.assert_array_equal(r.get_points(0, 100), f.get_points(0, 100))
    assert _run(resumed, n=260)["evaluated"] == 0
    # the same through the CLI, with n unchanged: only the import, nothing to evaluate
    assert main(_resume_argv(tmp_path / "cli", exported, 100, "--encoding", str(version))) == 0
    assert "this run  5 samples in" in capsys.readouterr().out                # the holes only
    assert _rows(tmp_path / "cli") == _rows(straight)[:100]


def _one_line(capsys, argv, message):
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    return err


def test_resume_from_a_bad_file_is_one_line(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(os.urandom(4096))
    plain = tmp_path / "plain.parquet"                     # a Parquet file, but not an export
    pq.write_table(pa.table({"idx": [0, 1], "u": ["[0.5]", "[0.25]"]}), plain)
    _run(tmp_path / "src", n=40, parquet=True)
    stripped = tmp_path / "stripped.parquet"               # an export without its metadata
    pq.write_table(pq.read_table(tmp_path / "src" / PARQUET_NAME).replace_schema_metadata(None), stripped)
    out = tmp_path / "out"
    for path, message in [(junk, f"--resume-from: {junk} is not a readable Parquet file"),
                          (plain, f"--resume-from: {plain} is not an accelsim dataset export: its metadata has no "
                                  "accelsim.meta"),
                          (stripped, f"--resume-from: {stripped} is not an accelsim dataset export"),
                          (tmp_path, f"--resume-from: {tmp_path} is not a file"),
                          (tmp_path / "absent.parquet",
                           f"--resume-from: no Parquet file at {tmp_path / 'absent.parquet'}")]:
        _one_line(capsys, _resume_argv(out, path, 40), message)
        assert not out.exists()                            # checked before anything is written


def test_resume_from_into_a_dir_that_holds_a_dataset_is_one_line(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    _run(tmp_path / "src", n=40, parquet=True)
    out = tmp_path / "out"
    _run(out, n=50)
    before = _table(out, "samples")
    _one_line(capsys, _resume_argv(out, tmp_path / "src" / PARQUET_NAME, 60),
              f"error: --resume-from: {out} already holds a dataset; resume it without --resume-from")
    assert _table(out, "samples") == before and Store.open(out, readonly=True).meta["n"] == 50
    # the source DIR itself holds its dataset too
    _one_line(capsys, _resume_argv(tmp_path / "src", tmp_path / "src" / PARQUET_NAME, 40),
              "already holds a dataset; resume it without --resume-from")


@pytest.mark.parametrize("extra, message", [
    (["--seed", "5"], "with seed=0; this run asks seed=5"),
    (["--workloads", "unet"], "with workloads=bert; this run asks workloads=unet"),
    (["--encoding", "1"], "holds a collection with --encoding 2; this run asks --encoding 1"),
    (["--n", "30"], "n=40; --n 30 is smaller"),
])
def test_resume_from_another_collection_is_rejected_and_undone(tmp_path, capsys, extra, message):
    """A Parquet file of another collection fails the resume's meta check (one line), and
    the import is undone: the DIR holds no dataset, so the right command then works."""
    pytest.importorskip("pyarrow")
    _run(tmp_path / "src", n=40, encoding=2, parquet=True)
    exported = tmp_path / "src" / PARQUET_NAME
    out = tmp_path / "out"
    argv = _resume_argv(out, exported, 40)
    # the later options win in argparse: the changed value replaces the matching one
    _one_line(capsys, argv + extra, message)
    assert not (out / DB_NAME).exists()
    assert main(argv) == 0
    assert _rows(out) == _rows(tmp_path / "src")


def test_resume_from_refuses_sobol_points_that_differ(tmp_path, capsys, monkeypatch):
    """Points drawn here that differ from column ``u`` of the file (another scipy) stop the
    resume before any evaluation, and the import is undone."""
    pytest.importorskip("pyarrow")
    import search.collect
    _run(tmp_path / "src", n=40, parquet=True)
    real = search.collect._ensure_points

    def other_scipy(store, n, seed, quiet=True, err=None, version=1):
        real(store, n, seed, quiet, err, version)
        u = store.get_points(0, n)
        u[17, 3] = np.nextafter(u[17, 3], 1.0)
        store.put_points(0, u)

    monkeypatch.setattr(search.collect, "_ensure_points", other_scipy)
    out = tmp_path / "out"
    err = _one_line(capsys, _resume_argv(out, tmp_path / "src" / PARQUET_NAME, 64),
                    "--resume-from: the Sobol points drawn here")
    assert f"differ from those of {tmp_path / 'src' / PARQUET_NAME}" in err and "at sample 17" in err
    assert not (out / DB_NAME).exists()


# ---- the kill test ---------------------------------------------------------------------
def _count(out: Path) -> int:
    if not (out / DB_NAME).exists():
        return 0
    try:
        with Store.open(out, readonly=True) as s:
            return s.count()
    except (DatasetError, sqlite3.Error):   # killed before its tables were committed
        return 0


# Small layers: cheap evaluations, so a run commits a batch every few tens of ms.
SMALL = [{"name": "gemm", "gemm": {"m": 64, "k": 96, "n": 48}},
         {"name": "conv", "k": 32, "c": 16, "p": 12, "r": 3, "pad": 1},
         {"name": "dw", "k": 24, "c": 24, "p": 14, "r": 3, "pad": 1, "groups": 24},
         {"name": "proj", "gemm": {"m": 196, "k": 24, "n": 64}}]


@pytest.mark.parametrize("version, kills, seconds, least_mid_run", [(2, 20, 12, 8), (1, 6, 4, 2)],
                         ids=["version2-20-kills", "version1-6-kills"])
def test_kill_9_then_finish_equals_uninterrupted(tmp_path, version, kills, seconds, least_mid_run):
    """SIGKILL the collector ``kills`` times at random moments (``--encoding version``),
    then let it finish: the dataset is the uninterrupted one (indices 0..n-1 once each,
    every column equal). The version-1 collection is finished without ``--encoding``: a
    resumed DIR keeps its own version."""
    wl = tmp_path / "small.json"
    wl.write_text(json.dumps(SMALL))
    batch = 8
    # Calibrate n so that an uninterrupted run lasts about ``seconds`` on this machine: the
    # kills (0.05 .. 1 s after a run starts, about 8 s of progress for 20) then land in the
    # middle of it, and the last run finishes it.
    # Two calibration runs, so that the fixed start-up cost cancels out of the rate.
    CoDesignSpace.sobol(1)                                  # imports done before timing
    _run(tmp_path / "warm", workloads=str(wl), n=64, batch=batch, encoding=version)   # compiled model loaded
    times = []
    for size in (320, 2560):
        t0 = time.perf_counter()
        _run(tmp_path / f"calibrate{size}", workloads=str(wl), n=size, batch=batch, encoding=version)
        times.append(time.perf_counter() - t0)
    rate = (2560 - 320) / max(times[1] - times[0], 1e-3)
    n = int(min(1 << 20, max(1024, rate * seconds)) // batch * batch)

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "search.collect", "--fidelity", "analytical", "--workloads", str(wl),
           "--n", str(n), "--seed", "11", "--batch", str(batch), "--workers", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    rng = random.Random(1234)
    mid_run = 0
    progress = []
    for k in range(kills):
        before = _count(out)
        err = tmp_path / f"stderr{k}"
        with open(err, "wb") as fh:
            p = subprocess.Popen(cmd + ["--encoding", str(version)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                 stderr=fh)
        # Three times in four, wait for the run to start (its progress bar appears once the
        # store is open); otherwise kill at a moment counted from launch (imports, creation).
        started = False
        if k % 4:
            deadline = time.monotonic() + 60
            while p.poll() is None and err.stat().st_size == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            started = err.stat().st_size > 0
        time.sleep(rng.uniform(0.05, 1.0))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            assert p.wait() == -signal.SIGKILL
            after = _count(out)
            mid_run += started and before < after < n
            progress.append((k, started, before, after))
        else:
            assert p.returncode == 0, err.read_text()
    assert mid_run >= least_mid_run, f"only {mid_run} kills landed mid-run (n={n}, rate {rate:.0f}/s): {progress}"
    assert 0 < _count(out) < n

    finish = cmd + ["--quiet"] + (["--encoding", "2"] if version == 2 else [])   # version 1: the DIR's own
    done = subprocess.run(finish, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr

    _run(tmp_path / "reference", workloads=str(wl), n=n, seed=11, batch=n, encoding=version)
    killed, reference = _rows(out), _rows(tmp_path / "reference")
    assert [r["idx"] for r in killed] == list(range(n))
    assert killed == reference
    assert load_arrays(out)["encoding_version"] == version
    assert len(json.loads(killed[0]["u"])) == {1: 12, 2: 15}[version]


# ---- RTL path (the simulator replaced by a stand-in; the real one is in the slow test) ----------
def _fake_rtl(calls, raise_at=None, exc=None):
    exc = exc or RuntimeError("simulator exploded")

    def evaluate(hw, mapping, layer, *, seed, cache_dir=None, timeout_s=600.0, workdir=None, **kw):
        fits = mapping.check(hw, layer)
        if not fits:
            return Result.infeasible(fits.reason, "rtl")
        calls.append(seed)
        if raise_at is not None and len(calls) == raise_at:
            raise exc
        r = cost.evaluate(hw, mapping, layer)
        return Result.from_dict({**r.to_dict(), "fidelity": "rtl", "verified": True, "energy_pj": None,
                                 "area_mm2": None, "extra": {"seed": seed}})
    return evaluate


@pytest.fixture
def no_builds(monkeypatch):
    """The stand-in RTL needs no Verilator model: record the family builds asked for."""
    import search.collect
    asked: list = []
    monkeypatch.setattr(search.collect, "_build_families", lambda spec, dims, quiet, err: asked.append(dims))
    return asked


def test_rtl_records_priced_seeded_and_errors_kept(tmp_path, monkeypatch, no_builds):
    import sim.evaluate
    calls: list = []
    monkeypatch.setattr(sim.evaluate, "evaluate", _fake_rtl(calls, raise_at=2))
    _run(tmp_path, fidelity="rtl", n=40, seed=3)
    recs = _rows(tmp_path)
    assert [r["idx"] for r in recs] == list(range(40))
    errors = [r for r in recs if (r["reason"] or "").startswith("error:")]
    assert [r["reason"] for r in errors] == ["error: RuntimeError: simulator exploded"]
    feasible = [r for r in recs if r["feasible"]]
    assert feasible and len(calls) == len(feasible) + 1
    for r in feasible:
        res = Result.from_json(r["result"])
        _, hw, _ = _spec(["bert"], seed=3).space.point(json.loads(r["u"]))
        assert res.fidelity == "rtl" and res.extra["seed"] == input_seed(3, r["idx"])
        assert res.energy_pj == cost.price(res, hw).energy_pj and res.energy_pj is not None
        assert r["energy_pj"] == res.energy_pj and r["edp"] == res.edp
    # --retry-errors evaluates the failed sample again (the stand-in no longer raises)
    monkeypatch.setattr(sim.evaluate, "evaluate", _fake_rtl([]))
    assert _run(tmp_path, fidelity="rtl", n=40, seed=3, retry_errors=True)["evaluated"] == 1
    assert not any((r["reason"] or "").startswith("error:") for r in _rows(tmp_path))


def test_rtl_verification_error_stops_the_collection(tmp_path, monkeypatch, capsys, no_builds):
    import sim.evaluate
    calls: list = []
    monkeypatch.setattr(sim.evaluate, "evaluate",
                        _fake_rtl(calls, raise_at=3, exc=sim.evaluate.VerificationError("RTL output differs")))
    with pytest.raises(VerificationStop, match="RTL verification failed at sample .*: RTL output differs"):
        _run(tmp_path, fidelity="rtl", n=40)
    kept = _count(tmp_path)
    assert 0 < kept < 40          # what was evaluated before the failure is stored
    calls.clear()
    assert main(["--fidelity", "rtl", "--workloads", "bert", "--n", "40", "--out", str(tmp_path),
                 "--workers", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: RTL verification failed") and err.count("\n") == 1


def test_rtl_over_budget_samples_are_stored_unsimulated(tmp_path, monkeypatch, no_builds):
    import sim.evaluate
    calls: list = []
    monkeypatch.setattr(sim.evaluate, "evaluate", _fake_rtl(calls))
    limit = 20_000
    _run(tmp_path / "capped", fidelity="rtl", n=60, seed=1, max_cycles=limit)
    spec = _spec(["bert"], fidelity="rtl", seed=1)
    skipped = simulated = 0
    for r in _rows(tmp_path / "capped"):
        li, hw, m = spec.space.point(json.loads(r["u"]))
        layer = spec.layers[li]
        if not m.check(hw, layer):
            continue
        est = cost.evaluate(hw, m, layer).cycles       # the independent estimate
        res = Result.from_json(r["result"])
        if est > limit:
            skipped += 1
            assert not res.feasible and res.extra["estimated_cycles"] == est
            assert res.reason == (f"not simulated: the analytical model estimates {est:,} cycles, "
                                  f"above --max-cycles {limit:,}")
            assert res.area_mm2 == cost.price(res, hw).area_mm2
        else:
            simulated += 1
            assert res.feasible and res.cycles == est
    assert skipped and simulated and len(calls) == simulated
    calls.clear()                                      # 0: no limit, every fitting sample simulated
    _run(tmp_path / "all", fidelity="rtl", n=60, seed=1, max_cycles=0)
    assert len(calls) == skipped + simulated


def test_rtl_models_and_dram_size_recorded(tmp_path, monkeypatch, no_builds):
    import sim.evaluate
    from sim.compiler import dram_mb_for
    seen: list = []
    fake = _fake_rtl([])
    monkeypatch.setattr(sim.evaluate, "evaluate", lambda *a, **kw: seen.append(kw["superset"]) or fake(*a, **kw))
    _run(tmp_path / "fam", fidelity="rtl", workloads="unet", n=40, max_cycles=0)
    meta = Store.open(tmp_path / "fam" / DB_NAME).meta
    layers, _, _ = space_layers(["unet"])
    assert meta["rtl"]["models"] == "family" and meta["rtl"]["max_cycles"] == 0
    # the simulation-only DRAM holds U-Net's largest layer (about 40 MB: 64 MB, not the default 16)
    assert meta["hw_base"]["dram_mb"] == dram_mb_for(layers, least=16) == 64
    assert all(json.loads(r["hw"])["dram_mb"] == 64 for r in _rows(tmp_path / "fam"))
    assert seen and all(seen)
    spec = _spec(["unet"], fidelity="rtl")
    fitting_dims = set()
    for r in _rows(tmp_path / "fam"):
        li, hw, m = spec.space.point(json.loads(r["u"]))
        if m.check(hw, spec.layers[li]):
            fitting_dims.add(hw.dim)
    assert no_builds == [sorted(fitting_dims, reverse=True)]   # each array size in use, once, largest first
    seen.clear()
    _run(tmp_path / "exact", fidelity="rtl", workloads="unet", n=40, max_cycles=0, models="exact")
    assert seen and not any(seen) and Store.open(tmp_path / "exact" / DB_NAME).meta["rtl"]["models"] == "exact"
    with pytest.raises(CollectError, match="holds a collection whose RTL settings differ"):
        _run(tmp_path / "fam", fidelity="rtl", workloads="unet", n=40, max_cycles=5)


# ---- CLI errors ---------------------------------------------------------------------------
def test_cli_errors_are_one_line(tmp_path, capsys):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    base = ["--fidelity", "analytical", "--workloads", "bert", "--n", "10"]
    cases = [
        (["--fidelity", "analytical", "--workloads", "nonet", "--n", "10", "--out", str(tmp_path / "o")],
         "unknown workload 'nonet'"),
        (["--fidelity", "analytical", "--workloads", "bert", "--n", "0", "--out", str(tmp_path / "o")],
         "--n must be an integer >= 1"),
        (["--fidelity", "timeloop", "--workloads", "bert", "--n", "10", "--out", str(tmp_path / "o")],
         "invalid choice: 'timeloop'"),
        ([*base, "--out", str(afile / "sub")], "cannot create the output directory"),
        ([*base, "--out", str(tmp_path / "o"), "--workers", "0"], "--workers must be an integer >= 1"),
        ([*base, "--out", str(tmp_path / "o"), "--seed", "-1"], "--seed must be an integer >= 0"),
        (["--fidelity", "analytical", "--workloads", "bert,bert", "--n", "10", "--out", str(tmp_path / "o")],
         "lists bert more than once"),
        (["--workloads", "bert", "--n", "10"], "required: --fidelity, --out"),
        (["--n", "ten"], "invalid int value: 'ten'"),
        (["--summary", str(tmp_path / "nothing")], "no dataset at"),
        (["--summary", str(tmp_path), "--n", "3"], "--summary takes no other option"),
        ([*base, "--out", str(tmp_path / "o"), "--max-cycles", "-5"], "--max-cycles must be an integer >= 0"),
        ([*base, "--out", str(tmp_path / "o"), "--models", "one"], "invalid choice: 'one'"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (argv, err)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_error_from_the_module_entry_point(tmp_path):
    p = subprocess.run([sys.executable, "-m", "search.collect", "--fidelity", "analytical", "--workloads",
                        "resnet5", "--n", "4", "--out", str(tmp_path / "o")], cwd=ROOT, capture_output=True,
                       text=True, check=False)
    assert p.returncode == 2
    assert p.stderr.startswith("error: unknown workload 'resnet5'") and p.stderr.count("\n") == 1
    assert "Traceback" not in p.stderr


# ---- slow: Ray, real RTL --------------------------------------------------------------------
@pytest.mark.slow
def test_ray_local_equals_local_pool(tmp_path):
    pytest.importorskip("ray")
    _run(tmp_path / "pool", n=200, batch=50, workers=2)
    _run(tmp_path / "ray", n=200, batch=50, workers=2, ray="local")
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "pool")


@pytest.mark.slow
def test_rtl_collection_end_to_end(tmp_path, sim_cache_dir):
    # A one-GEMM workload keeps the simulations short; each sampled configuration is built
    # once (cached in the session's build cache).
    wl = tmp_path / "tiny.json"
    wl.write_text(json.dumps([{"name": "g", "gemm": {"m": 16, "k": 32, "n": 16}}]))
    out = tmp_path / "rtl"
    args = {"fidelity": "rtl", "workloads": str(wl), "n": 3, "seed": 2, "workers": 2, "cache_dir": sim_cache_dir}
    _run(out, **args)
    recs = _rows(out)
    assert [r["idx"] for r in recs] == [0, 1, 2]
    spec = _spec([str(wl)], fidelity="rtl", seed=2)
    for r in recs:
        res = Result.from_json(r["result"])
        _, hw, m = spec.space.point(json.loads(r["u"]))
        assert res.fidelity == "rtl" and r["mapping"] == m.to_json()
        if res.feasible:
            assert res.verified and res.extra["seed"] == input_seed(2, r["idx"])
            assert res.energy_pj == cost.price(res, hw).energy_pj
        else:
            assert res.reason == m.check(hw, spec.layers[0]).reason
    assert _run(out, **args)["evaluated"] == 0        # resumed: nothing left


def test_ray_is_imported_only_with_ray_option():
    code = "import sys, search.collect; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0
