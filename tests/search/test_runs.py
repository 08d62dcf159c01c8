"""search.runs: the run directory (run.json, options check on resume, the evaluations and
hardware tables, atomic batches under kill -9, atomic JSON files)."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import cost
from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import LOOPS, Mapping, default_mapping
from hw.result import Result
from search.runs import DB_NAME, LOCK_FILE, RUN_FILE, RunDir, RunError, evaluation_key

REPO = Path(__file__).resolve().parents[2]
OPTIONS = {"hw_iters": 10, "sw_iters": 4, "variant": "spotlight", "workloads": ["bert"]}
SEEDS = {"seed": 3}
HW = HardwareConfig(dim=8)
LAYER = Layer.gemm("g", 8, 8, 8)


@pytest.fixture(scope="module")
def real():
    """(hw, layer, mapping, Result from the analytical model)."""
    m = default_mapping(HW, LAYER)
    return HW, LAYER, m, cost.evaluate(HW, m, LAYER)


def _variants(base: Mapping, n: int) -> list[Mapping]:
    """n distinct mappings: the base tiling with other DRAM loop orders."""
    import itertools
    orders = itertools.permutations(LOOPS)
    return [Mapping(base.factors, next(orders), base.buffers) for _ in range(n)]


# ---- creating and reopening ------------------------------------------------------------------
def test_create_writes_run_json_with_versions_and_command(tmp_path):
    p = tmp_path / "runs" / "a"           # parents created too
    with RunDir.open(p, OPTIONS, seeds=SEEDS, command="python -m search.spotlight --hw-iters 10") as run:
        assert run.path == p and run.notes == ""
        assert run.options == OPTIONS and run.seeds == SEEDS
    info = json.loads((p / RUN_FILE).read_text())
    assert info["options"] == OPTIONS and info["seeds"] == SEEDS
    assert info["command"] == "python -m search.spotlight --hw-iters 10"
    assert info["created"].endswith("+00:00") and info["resumes"] == []
    v = info["versions"]
    assert {"python", "numpy", "sqlite", "accelsim", "code"} <= set(v)
    for pkg in ("torch", "gpytorch", "botorch"):
        if importlib.util.find_spec(pkg) is not None:
            assert v[pkg], pkg
    assert v["numpy"] == __import__("numpy").__version__
    assert (p / DB_NAME).is_file()
    mode = sqlite3.connect(p / DB_NAME).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_reopen_with_same_options_resumes(tmp_path, real):
    hw, layer, m, r = real
    p = tmp_path / "r"
    with RunDir.open(p, OPTIONS, seeds=SEEDS, command="first") as run:
        run.record_many("analytical", hw, layer, [m], [r], iteration=0, phase="warmup", layer_index=0)
    # same options in another key order, tuples for lists: equal as JSON
    opts = dict(reversed(list({**OPTIONS, "workloads": ("bert",)}.items())))
    with RunDir.open(p, opts, seeds=SEEDS, command="second") as run:
        assert run.notes == ""
        assert run.lookup("analytical", hw, layer, m) == r
    info = json.loads((p / RUN_FILE).read_text())
    assert info["command"] == "first"
    assert [e["command"] for e in info["resumes"]] == ["second"]


def test_differing_options_error_wording(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    RunDir.open("runs/x", OPTIONS, seeds=SEEDS).close()
    with pytest.raises(RunError) as e:
        RunDir.open("runs/x", {**OPTIONS, "hw_iters": 20}, seeds=SEEDS)
    assert str(e.value) == ("runs/x was started with --hw-iters 10; this command has 20 "
                            "(use another --name, or the same options to resume)")
    with pytest.raises(RunError, match=r"^runs/x was started with --variant spotlight; this command has v "):
        RunDir.open("runs/x", {**OPTIONS, "variant": "v"}, seeds=SEEDS)
    with pytest.raises(RunError, match=r"^runs/x was started with --seed 3; this command has 4 "):
        RunDir.open("runs/x", OPTIONS, seeds={"seed": 4})
    with pytest.raises(RunError, match=r"^runs/x was started without --area-budget; this command has 2\.5 "):
        RunDir.open("runs/x", {**OPTIONS, "area_budget": 2.5}, seeds=SEEDS)
    smaller = {k: v for k, v in OPTIONS.items() if k != "sw_iters"}
    with pytest.raises(RunError, match=r"^runs/x was started with --sw-iters 4; this command has none "):
        RunDir.open("runs/x", smaller, seeds=SEEDS)
    # nothing was changed by the refused opens
    assert json.loads(Path("runs/x/run.json").read_text())["resumes"] == []


def test_a_file_where_the_directory_should_be(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()
    Path("runs/f").write_text("not a run")
    with pytest.raises(RunError) as e:
        RunDir.open("runs/f", OPTIONS, seeds=SEEDS)
    assert str(e.value) == "run directory runs/f is a file, not a directory (use another --name)"
    with pytest.raises(RunError, match=r"^cannot create run directory runs/f/sub: ") as e:
        RunDir.open("runs/f/sub", OPTIONS, seeds=SEEDS)      # a parent is a file
    assert "\n" not in str(e.value)


def test_non_empty_directory_that_is_not_a_run(tmp_path):
    d = tmp_path / "other"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"is not empty and holds no run \(no run.json; it has 'notes.txt'\)"):
        RunDir.open(d, OPTIONS, seeds=SEEDS)
    assert (d / "notes.txt").read_text() == "mine" and sorted(x.name for x in d.iterdir()) == ["notes.txt"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / RUN_FILE).write_text("{not json")
    with pytest.raises(RunError, match=r"run.json is not valid JSON"):
        RunDir.open(bad, OPTIONS, seeds=SEEDS)
    # an empty directory, or one holding only a left-over temp file, is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".accelsim-tmp-run.json.abc.tmp").write_text("{")
    RunDir.open(empty, OPTIONS, seeds=SEEDS).close()
    assert (empty / RUN_FILE).is_file() and not (empty / ".accelsim-tmp-run.json.abc.tmp").exists()


def test_a_run_open_to_write_is_locked_against_other_processes(tmp_path):
    d = tmp_path / "run"
    other = textwrap.dedent(f"""
        import sys
        from search.runs import RunDir, RunError
        try:
            RunDir.open({str(d)!r}, {OPTIONS!r}, seeds={SEEDS!r}).close()
            print("opened")
        except RunError as e:
            print(e)
    """)

    def try_other() -> str:
        return subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[2]).stdout.strip()

    with RunDir.open(d, OPTIONS, seeds=SEEDS):
        assert try_other() == (f"run directory {d} is in use by another process (pid {os.getpid()}); wait for it "
                               f"to finish or stop it")
        with RunDir.open_existing(d) as reader:          # reading needs no lock
            assert reader.options == OPTIONS
    assert try_other() == "opened"                       # released by close
    RunDir.open(d, OPTIONS, seeds=SEEDS).close()         # and a process that died holds nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_directory(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(RunError, match=r"^run directory .* is not writable$"):
            RunDir.open(d, OPTIONS, seeds=SEEDS)
    finally:
        d.chmod(0o700)


def test_version_change_is_a_note(tmp_path):
    p = tmp_path / "v"
    RunDir.open(p, OPTIONS, seeds=SEEDS).close()
    info = json.loads((p / RUN_FILE).read_text())
    info["versions"]["numpy"] = "0.0.1"
    (p / RUN_FILE).write_text(json.dumps(info))
    with RunDir.open(p, OPTIONS, seeds=SEEDS) as run:
        assert run.notes.startswith("warning: package versions changed since ")
        assert "numpy 0.0.1 -> " in run.notes and "\n" not in run.notes


# ---- evaluations -----------------------------------------------------------------------------
def test_record_and_lookup_round_trip(tmp_path, real):
    hw, layer, m, r = real
    with RunDir.open(tmp_path / "e", OPTIONS, seeds=SEEDS) as run:
        assert run.lookup("analytical", hw, layer, m) is None
        assert run.record_many("analytical", hw, layer, [m], [r], iteration=2, phase="bo", layer_index=1) == 1
        got = run.lookup("analytical", hw, layer, m)
        assert got == r and got.to_dict() == r.to_dict()
        assert run.lookup("rtl", hw, layer, m) is None                    # fidelity is part of the key
        assert run.lookup("analytical", hw, Layer.gemm("h", 8, 8, 8), m) is None
        assert run.lookup("analytical", HardwareConfig(dim=16), layer, m) is None
        # recording again keeps the first row (and its context)
        assert run.record_many("analytical", hw, layer, [m], [r], iteration=5, phase="warmup", layer_index=0) == 0
        (rec,) = run.evaluations()
        assert (rec.seq, rec.iteration, rec.phase, rec.layer_index) == (0, 2, "bo", 1)
        assert (rec.hw, rec.layer, rec.mapping, rec.result, rec.fidelity) == (hw, layer, m, r, "analytical")
        assert rec.key == evaluation_key("analytical", hw, layer, m) and len(rec.key) == 64
        with pytest.raises(RunError, match="a analytical Result recorded as fidelity rtl"):
            run.record_many("rtl", hw, layer, [m], [r], iteration=0, phase="bo", layer_index=0)
        with pytest.raises(ValueError, match="1 results for 2 mappings"):
            run.record_many("analytical", hw, layer, [m, m], [r], iteration=0, phase="bo", layer_index=0)
    with RunDir.open(tmp_path / "e", OPTIONS, seeds=SEEDS) as run:      # persisted
        assert run.lookup("analytical", hw, layer, m) == r


def test_lookup_many_hits_and_misses_in_order(tmp_path, real):
    hw, layer, m, r = real
    maps = _variants(m, 12)
    results = [cost.evaluate(hw, x, layer) for x in maps[:6]]
    infeasible = Result.infeasible("spad overflow", "analytical")
    with RunDir.open(tmp_path / "m", OPTIONS, seeds=SEEDS) as run:
        run.record_many("analytical", hw, layer, maps[0:6:2], results[0:6:2], iteration=0, phase="warmup",
                        layer_index=0)
        run.record_many("analytical", hw, layer, [maps[1], maps[3], maps[7]], [results[1], results[3], infeasible],
                        iteration=1, phase="bo", layer_index=0)
        query = [maps[7], maps[11], maps[0], maps[0], maps[5], maps[3], maps[1], maps[2]]
        got = run.lookup_many("analytical", hw, layer, query)
        assert got == [infeasible, None, results[0], results[0], None, results[3], results[1], results[2]]
        assert run.lookup_many("analytical", hw, layer, []) == []
        # a pool of 1,000, one query
        pool = _variants(m, 1000)
        got = run.lookup_many("analytical", hw, layer, pool)
        assert len(got) == 1000 and sum(g is not None for g in got) == 6
        evs = run.evaluations()
        assert [e.seq for e in evs] == list(range(6))
        assert [e.mapping for e in evs] == [maps[0], maps[2], maps[4], maps[1], maps[3], maps[7]]
        assert [e.phase for e in evs] == ["warmup"] * 3 + ["bo"] * 3
        assert run.evaluations("rtl") == [] and run.count() == 6 and run.count("analytical") == 6


# ---- hardware table --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Point:                   # the fields of a Spotlight HardwarePoint that the store reads
    iteration: int
    hw: HardwareConfig
    phase: str
    mappings: tuple
    results: tuple
    cost: object
    objective: float
    area_mm2: float
    evaluations: int


def test_hardware_history_and_divergence(tmp_path, real):
    hw, layer, m, r = real
    nc = cost.network_edp([r], [layer])
    p0 = _Point(0, hw, "warmup", (m,), (r,), nc, nc.edp, 1.07, 4)
    bad = Result.infeasible("no fit", "analytical")
    p1 = _Point(1, HardwareConfig(dim=16), "bo", (None,), (bad,), cost.network_edp([bad], [layer]),
                float("inf"), 2.0, 4)
    with RunDir.open(tmp_path / "h", OPTIONS, seeds=SEEDS) as run:
        assert run.record_hardware(p0) is True
        assert run.record_hardware(p1) is True
        assert run.record_hardware(p0) is False          # replayed by a resumed run: no-op
        assert run.record_hardware(p1) is False          # NaN costs compare equal as stored
        h = run.hardware_history()
        assert [x.iteration for x in h] == [0, 1]
        assert h[0].hw == hw and h[0].mappings == (m,) and h[0].results == (r,) and h[0].phase == "warmup"
        assert {"energy_pj", "cycles", "edp", "feasible", "reason"} <= set(h[0].cost)
        assert h[0].cost["edp"] == nc.edp and h[0].cost["reason"] is None and h[0].cost["feasible"] is True
        assert h[1].cost["feasible"] is False and h[1].cost["reason"] == "no fit" and h[1].mappings == (None,)
        assert h[0].extra == {"objective": nc.edp, "area_mm2": 1.07, "evaluations": 4}
        with pytest.raises(RunError) as e:
            run.record_hardware(_Point(0, HardwareConfig(dim=4), "warmup", (m,), (r,), nc, nc.edp, 1.07, 4))
        msg = str(e.value)
        assert "hardware iteration 0 is stored with another hw" in msg and "diverged" in msg and "\n" not in msg
        with pytest.raises(RunError, match="another phase"):
            run.record_hardware(iteration=1, hw=p1.hw, cost=p1.cost, mappings=p1.mappings, results=p1.results,
                                phase="random", extra={"objective": p1.objective, "area_mm2": 2.0,
                                                       "evaluations": 4})
        # keywords only
        assert run.record_hardware(iteration=2, hw=hw, cost={"energy_pj": 1.0, "cycles": 2.0, "edp": 2.0,
                                                             "feasible": True}, mappings=[m], phase="bo")
        assert run.hardware_history()[2].results is None
    with RunDir.open(tmp_path / "h", OPTIONS, seeds=SEEDS) as run:
        assert len(run.hardware_history()) == 3


def test_write_json_atomic(tmp_path):
    with RunDir.open(tmp_path / "w", OPTIONS, seeds=SEEDS) as run:
        out = run.write_json("best.json", {"edp": 1.5, "hw": HW})
        assert out == tmp_path / "w" / "best.json"
        assert json.loads(out.read_text()) == {"edp": 1.5, "hw": HW.to_dict()}
        run.write_json("best.json", {"edp": 1.0})
        assert json.loads(out.read_text()) == {"edp": 1.0}
        assert sorted(os.listdir(run.path)) == sorted(["best.json", RUN_FILE, DB_NAME, DB_NAME + "-wal",
                                                       DB_NAME + "-shm", LOCK_FILE])
        for name in ("../x.json", "a/b.json", "", RUN_FILE, DB_NAME):
            with pytest.raises(RunError):
                run.write_json(name, {})


# ---- atomicity under kill -9 -----------------------------------------------------------------
# The child records N_BATCHES batches of BATCH evaluations (an optimiser's flow: look the
# batch up, evaluate the misses, record them); batch b is hardware iteration b // 4, and
# after every 4th batch the iteration's row goes into the hardware table.
N_BATCHES, BATCH = 96, 40
CHILD = textwrap.dedent('''
    import itertools, sys
    from hw.config import HardwareConfig
    from hw.layer import Layer
    from hw.mapping import LOOPS, Mapping, default_mapping
    from hw.result import BUSY_KEYS, COUNT_KEYS, Result
    from search.runs import RunDir

    def work(path, n_batches, batch, options, seeds, say=lambda s: None):
        hw, layer = HardwareConfig(dim=8), Layer.gemm("g", 8, 8, 8)
        base = default_mapping(hw, layer)
        orders = list(itertools.permutations(LOOPS))
        buffers = list(itertools.product((1, 2), repeat=3))

        def mapping(i):
            return Mapping(base.factors, orders[i % len(orders)], buffers[i // len(orders)])

        def result(i):
            return Result(cycles=i + 1, busy={k: i % 3 for k in BUSY_KEYS}, counts={k: i % 5 for k in COUNT_KEYS},
                          utilisation=0.5, feasible=True, reason=None, verified=False, fidelity="analytical",
                          energy_pj=float(i) + 0.25)

        with RunDir.open(path, options, seeds=seeds, command="child") as run:
            say("ready")
            for b in range(n_batches):
                ids = list(range(b * batch, (b + 1) * batch)) + ([b * batch - 1] if b else [])
                maps = [mapping(i) for i in ids]
                cached = run.lookup_many("analytical", hw, layer, maps)
                miss = [j for j, r in enumerate(cached) if r is None]
                run.record_many("analytical", hw, layer, [maps[j] for j in miss], [result(ids[j]) for j in miss],
                                iteration=b // 4, phase="bo" if b % 2 else "warmup", layer_index=b % 3)
                if b % 4 == 3:
                    run.record_hardware(iteration=b // 4, hw=hw, cost={"energy_pj": float(b), "cycles": b,
                                        "edp": float(b * b), "feasible": True}, mappings=[maps[0]], phase="bo")

    if __name__ == "__main__":
        import json
        work(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5]),
             say=lambda s: print(s, flush=True))
''')


def _contents(run: RunDir):
    ev = [(e.seq, e.key, e.result.to_json(), e.iteration, e.phase, e.layer_index) for e in run.evaluations()]
    hw = [(h.iteration, h.hw, h.cost, h.mappings, h.phase) for h in run.hardware_history()]
    return ev, hw


def _check_consistent(run: RunDir) -> int:
    """Every batch complete or absent, the complete ones a prefix; returns how many."""
    assert run.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    per_batch: dict[int, int] = {}
    seqs = []
    for seq, cycles in run.conn.execute("SELECT seq, cycles FROM evaluations ORDER BY seq"):
        i = cycles - 1                              # the id of the evaluation (see the child's result)
        per_batch[i // BATCH] = per_batch.get(i // BATCH, 0) + 1
        seqs.append(seq)
    done = len(per_batch)
    assert sorted(per_batch) == list(range(done)), per_batch
    assert all(k == BATCH for k in per_batch.values()), per_batch
    assert seqs == list(range(len(seqs)))
    its = [h.iteration for h in run.hardware_history()]
    assert its == list(range(len(its))) and all(4 * (h + 1) <= done for h in its)
    return done


def test_atomic_batches_under_kill_9(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ns: dict = {"__name__": "child"}
    exec(compile(CHILD, str(script), "exec"), ns)
    t0 = time.perf_counter()
    ns["work"](tmp_path / "reference", N_BATCHES, BATCH, OPTIONS, SEEDS)        # uninterrupted, in-process
    span = time.perf_counter() - t0
    with RunDir.open(tmp_path / "reference", OPTIONS, seeds=SEEDS) as run:
        reference = _contents(run)
    assert len(reference[0]) == N_BATCHES * BATCH and len(reference[1]) == N_BATCHES // 4

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, str(script), str(tmp_path / "killed"), str(N_BATCHES), str(BATCH),
            json.dumps(OPTIONS), json.dumps(SEEDS)]
    rng = random.Random(20240601)
    kills, progress = 0, []
    for _ in range(6):
        child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
        assert child.stdout.readline() == b"ready\n", child.stderr.read().decode()
        time.sleep(rng.uniform(0.0, span / 6))
        child.send_signal(signal.SIGKILL)
        rc = child.wait()
        child.stdout.close()
        child.stderr.close()
        kills += rc == -signal.SIGKILL
        with RunDir.open(tmp_path / "killed", OPTIONS, seeds=SEEDS) as run:
            progress.append(_check_consistent(run))
    assert kills >= 4, progress                       # most kills landed while it was writing
    assert progress == sorted(progress), progress
    done = subprocess.run(args, capture_output=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    with RunDir.open(tmp_path / "killed", OPTIONS, seeds=SEEDS) as run:
        assert _check_consistent(run) == N_BATCHES
        assert _contents(run) == reference
