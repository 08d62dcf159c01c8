"""python -m search.starlight (search.starlight.main): train-low, train, evaluate and a
tiny resumable Fig 5.7 experiment against second, in-process paths (train_low,
fit_starlight, metrics), and bad input as one 'error:' line with exit status 2."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from search.models.dkl import DKLOptions, fit_starlight
from search.models.model_file import load_low, load_starlight
from search.models.vae import LowOptions, train_low
from search.starlight import main
from search.starlight_experiment import METHODS
from search.surrogate_data import BASE_DIMS, load_dataset
from search.surrogate_metrics import METRIC_NAMES, metrics

REPO = Path(__file__).resolve().parents[2]
RTL = REPO / "docs" / "datasets" / "rtl_seed0_n1280.parquet"
EXP_METHODS = ("starlight", "starlight-residual", "low-zero-shot", "analytical", "plain-gp", "encoder-nn")
SIZES = (16, 32)
TRIALS = 2



@pytest.fixture(scope="module", autouse=True)
def _one_thread(module_torch_thread):
    """One torch thread for the module (conftest's `module_torch_thread`)."""


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("starlight_cli")


@pytest.fixture(scope="module")
def analytical_dir(_one_thread, starlight_analytical_dir):
    return starlight_analytical_dir


@pytest.fixture(scope="module")
def rtl(_one_thread):
    return load_dataset(RTL)


@pytest.fixture(scope="module")
def low_file(analytical_dir, workdir):
    path = workdir / "low.pt"
    code = main(["train-low", "--data", str(analytical_dir), "--out", str(path), "--epochs", "2", "--quiet"])
    assert code == 0
    return path


@pytest.fixture(scope="module")
def model_file(low_file, workdir):
    path = workdir / "model.pt"
    code = main(["train", "--low", str(low_file), "--rtl", str(RTL), "--n", "64", "--iters", "10",
                 "--out", str(path)])
    assert code == 0
    return path


def _experiment_argv(low_file, out):
    return ["experiment", "--low", low_file, "--rtl", RTL, "--out", out, "--sizes", ",".join(map(str, SIZES)),
            "--trials", TRIALS, "--methods", ",".join(EXP_METHODS), "--dkl-iters", 10, "--nn-epochs", 3, "--quiet"]


@pytest.fixture(scope="module")
def experiment(low_file, workdir):
    out = workdir / "exp"
    code = main([str(a) for a in _experiment_argv(low_file, out)])
    assert code == 0
    return out


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- train-low ------------------------------------------------------------------------------

def test_train_low_writes_the_model_train_low_would(analytical_dir, workdir, capsys):
    path = workdir / "low_again.pt"
    code, out, err = _run(["train-low", "--data", analytical_dir, "--out", path, "--epochs", 2, "--quiet"], capsys)
    assert code == 0 and path.is_file()
    assert f"wrote {path}" in out and "held-out" in out
    assert err == ""
    net, prov = load_low(path)
    data = load_dataset(analytical_dir, analytical=False)
    tr, te = data.train, data.held_out
    assert prov["rows"] == len(tr) and prov["held_out"] == len(te)
    assert prov["data"] == [str(analytical_dir)]
    assert net.options == LowOptions(epochs=2)
    # a second path: the library with the same options gives the same weights
    ref, log = train_low(tr.X[:, :BASE_DIMS], tr.y, LowOptions(epochs=2, alpha=1e-3, encoder=(24, 12), seed=0))
    assert prov["best_epoch"] == log.best_epoch
    sd, rd = net.state_dict(), ref.state_dict()
    assert sd.keys() == rd.keys() and all(torch.equal(sd[k], rd[k]) for k in sd)
    m = metrics(te.y, ref.predict(te.X[:, :BASE_DIMS]))
    assert prov["held_out_metrics"]["rho"] == pytest.approx(m["rho"], rel=1e-12)
    assert f"rho {m['rho']:.4f}" in out


def test_train_low_encoder_widths(analytical_dir, workdir, capsys):
    path = workdir / "low_8.pt"
    code, _, _ = _run(["train-low", "--data", analytical_dir, "--out", path, "--epochs", 1, "--quiet",
                       "--encoder", "8", "--seed", 4], capsys)
    assert code == 0
    net, _ = load_low(path)
    assert net.options.encoder == (8,) and net.options.seed == 4
    assert [m.out_features for m in net.encoder.trunk if isinstance(m, torch.nn.Linear)] == [8]


# ---- train ----------------------------------------------------------------------------------

def test_train_writes_the_model_fit_starlight_would(model_file, low_file, rtl, capsys):
    s = load_starlight(model_file)
    tr = rtl.train
    idx = np.random.default_rng(0).permutation(len(tr))[:64]
    sub = tr.subset(idx)
    assert s.train_X.shape == (64, BASE_DIMS + 2)
    np.testing.assert_array_equal(s.train_X, sub.X)
    np.testing.assert_allclose(s.train_y, sub.y, rtol=1e-12)
    # no held-out row is trained on
    held = {r.tobytes() for r in rtl.held_out.X}
    assert not any(r.tobytes() in held for r in s.train_X)
    assert s.options == DKLOptions(iters=10)
    assert len(s.losses) == 10
    p = s.provenance
    assert p["low_sha256"] == hashlib.sha256(Path(low_file).read_bytes()).hexdigest()
    assert p["low_file"] == str(low_file) and p["rows"] == 64 and p["data"] == [str(RTL)]
    # a second path: fit_starlight in-process on the same rows
    low, _ = load_low(low_file)
    ref = fit_starlight(low.encoder, sub.X, sub.y, DKLOptions(iters=10))
    te = rtl.held_out
    for a, b in zip(s.predict(te.X), ref.predict(te.X)):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_train_residual_and_joint(low_file, workdir, capsys):
    path = workdir / "res.pt"
    code, out, err = _run(["train", "--low", low_file, "--rtl", RTL, "--n", 32, "--iters", 5, "--residual", "--joint",
                           "--seed", 2, "--out", path], capsys)
    assert code == 0 and "(residual)" in out and f"wrote {path}" in out
    s = load_starlight(path)
    assert s.options == DKLOptions(residual=True, iters=5, seed=2, freeze_encoder=False)
    assert len(s.train_X) == 32


# ---- evaluate -------------------------------------------------------------------------------

def _table_row(out: str, name: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.split() and line.split()[0] == name)
    return line.split()[1:]


def test_evaluate_prints_the_metrics(model_file, rtl, workdir, capsys):
    js = workdir / "eval.json"
    code, out, err = _run(["evaluate", "--model", model_file, "--data", RTL, "--json", js], capsys)
    assert code == 0 and err == ""
    te = rtl.held_out
    s = load_starlight(model_file)
    mean, _ = s.predict(te.X)
    _, std = s.predict(te.X, observation_noise=True)
    want = metrics(te.y, mean, std)
    ana = metrics(te.y, te.analytical_log_edp())
    assert f"{len(te):,} rows" in out
    row = _table_row(out, "starlight")
    assert row == [f"{want['rho']:.5f}", f"{want['median_abs_log']:.4f}", f"{want['p95_abs_log']:.4f}",
                   f"{want['coverage90']:.2f}", f"{want['top10_recall']:.2f}"]
    row = _table_row(out, "analytical")
    assert row == [f"{ana['rho']:.5f}", f"{ana['median_abs_log']:.4f}", f"{ana['p95_abs_log']:.4f}", "-",
                   f"{ana['top10_recall']:.2f}"]
    d = json.loads(js.read_text())
    assert d["split"] == "test"
    for k in METRIC_NAMES:
        assert d["model"][k] == pytest.approx(want[k], rel=1e-9)
        if ana[k] is None:
            assert d["analytical"][k] is None
        else:
            assert d["analytical"][k] == pytest.approx(ana[k], rel=1e-12)


def test_evaluate_a_low_file_on_the_train_split(low_file, rtl, capsys):
    code, out, err = _run(["evaluate", "--model", low_file, "--data", RTL, "--split", "train"], capsys)
    assert code == 0
    tr = rtl.train
    low, _ = load_low(low_file)
    want = metrics(tr.y, low.predict(tr.X[:, :BASE_DIMS]))
    assert "(starlight-low)" in out and f"{len(tr):,} rows" in out
    row = _table_row(out, "starlight-low")
    assert row[0] == f"{want['rho']:.5f}" and row[3] == "-"


# ---- experiment -----------------------------------------------------------------------------

def test_experiment_writes_its_files(experiment, rtl):
    for name in ("results.jsonl", "summary.json", "table.md", "rho.png", "median_err.png", "data.json"):
        assert (experiment / name).is_file(), name
    assert (experiment / "rho.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = _lines(experiment / "results.jsonl")
    assert len(lines) == len(SIZES) * TRIALS * len(EXP_METHODS)
    assert {(r["method"], r["size"], r["trial"]) for r in lines} == {
        (m, n, t) for m in EXP_METHODS for n in SIZES for t in range(TRIALS)}
    te = rtl.held_out
    for r in lines:
        assert r["n"] == len(te)
        assert -1.0 <= r["rho"] <= 1.0 and r["median_abs_log"] >= 0 and 0 <= r["top10_recall"] <= 1
        gp = r["method"] in ("starlight", "starlight-residual", "plain-gp")
        assert (r["coverage90"] is not None) == gp
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["rtl_rows"] == len(rtl) and summary["held_out_rows"] == len(te)
    assert summary["train_rows"] == len(rtl.train)
    rows = summary["rows"]
    assert len(rows) == len(SIZES) * len(EXP_METHODS)
    assert [r["method"] for r in rows] == sorted((r["method"] for r in rows), key=METHODS.index)
    for row in rows:
        rhos = [r["rho"] for r in lines if r["method"] == row["method"] and r["size"] == row["size"]]
        assert row["trials"] == TRIALS
        assert row["rho"]["median"] == pytest.approx(float(np.median(rhos)))
        assert row["rho"]["min"] == pytest.approx(min(rhos)) and row["rho"]["max"] == pytest.approx(max(rhos))
    table = (experiment / "table.md").read_text().splitlines()
    assert len(table) == 2 + len(rows)
    assert all(re.match(r"\| [a-z-]+ \| \d+ \| ", line) for line in table[2:])
    data = json.loads((experiment / "data.json").read_text())
    assert data["rows"] == len(rtl) and data["dkl_iters"] == 10 and data["nn_epochs"] == 3
    assert data["keys_sha256"] == hashlib.sha256("\n".join(sorted(rtl.keys)).encode()).hexdigest()


def test_experiment_metrics_match_independent_computations(experiment, rtl, low_file):
    lines = _lines(experiment / "results.jsonl")
    te, tr = rtl.held_out, rtl.train
    ana = metrics(te.y, te.analytical_log_edp())
    low, _ = load_low(low_file)
    zero = metrics(te.y, low.predict(te.X[:, :BASE_DIMS]))
    for r in lines:
        if r["method"] in ("analytical", "low-zero-shot"):
            want = ana if r["method"] == "analytical" else zero
            for k in METRIC_NAMES:
                assert r[k] == (pytest.approx(want[k], rel=1e-12) if want[k] is not None else None), (r, k)
    # Starlight, size 16, trial 1: the subset of seed 1 and training seed 1, refitted here
    idx = np.random.default_rng(1).permutation(len(tr))[:16]
    sub = tr.subset(idx)
    for method, residual in (("starlight", False), ("starlight-residual", True)):
        s = fit_starlight(low.encoder, sub.X, sub.y, DKLOptions(residual=residual, iters=10, seed=1))
        want = metrics(te.y, s.predict(te.X)[0], s.predict(te.X, observation_noise=True)[1])
        r = next(r for r in lines if r["method"] == method and r["size"] == 16 and r["trial"] == 1)
        for k in METRIC_NAMES:
            assert r[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12), (method, k)
    # the residual variant starts from the analytical model: far better than plain Starlight here
    med = {m: np.median([r["rho"] for r in lines if r["method"] == m]) for m in EXP_METHODS}
    assert med["starlight-residual"] > 0.95 and med["analytical"] > 0.95


def test_experiment_resumes_without_new_lines(experiment, low_file, capsys):
    path = experiment / "results.jsonl"
    before = path.read_text()
    code, out, err = _run(_experiment_argv(low_file, experiment), capsys)
    assert code == 0
    assert path.read_text() == before
    assert "| analytical |" in out
    # other options into the same directory: an error, nothing appended
    text = path.read_text()
    argv = _experiment_argv(low_file, experiment)
    argv[argv.index("--dkl-iters") + 1] = 11
    code, out, err = _run(argv, capsys)
    assert code == 2 and err.startswith("error:") and len(err.splitlines()) == 1
    assert path.read_text() == text


# ---- errors ---------------------------------------------------------------------------------

def _bad_cases(tmp: Path, low_file, model_file, analytical_dir):
    text = tmp / "notes.txt"
    text.write_text("not a model\n")
    out = tmp / "out.pt"
    exp = tmp / "exp"
    return {
        "missing --data": ["train-low", "--data", tmp / "nope", "--out", out, "--quiet"],
        "empty --data dir": ["train-low", "--data", tmp, "--out", out, "--quiet"],
        "--encoder abc": ["train-low", "--data", analytical_dir, "--out", out, "--encoder", "abc", "--quiet"],
        "--encoder 0": ["train-low", "--data", analytical_dir, "--out", out, "--encoder", "0", "--quiet"],
        "--epochs 0": ["train-low", "--data", analytical_dir, "--out", out, "--epochs", 0, "--quiet"],
        "--alpha -1": ["train-low", "--data", analytical_dir, "--out", out, "--alpha", -1, "--quiet"],
        "--data a text file": ["train-low", "--data", text, "--out", out, "--quiet"],
        "--low text": ["train", "--low", text, "--rtl", RTL, "--out", out],
        "--low missing": ["train", "--low", tmp / "none.pt", "--rtl", RTL, "--out", out],
        "--low of the other kind": ["train", "--low", model_file, "--rtl", RTL, "--out", out],
        "--n 1": ["train", "--low", low_file, "--rtl", RTL, "--out", out, "--n", 1],
        "--n too many": ["train", "--low", low_file, "--rtl", RTL, "--out", out, "--n", 100000],
        "--iters -1": ["train", "--low", low_file, "--rtl", RTL, "--out", out, "--iters", -1],
        "missing --rtl": ["train", "--low", low_file, "--rtl", tmp / "no.parquet", "--out", out],
        "evaluate text": ["evaluate", "--model", text, "--data", RTL],
        "evaluate missing data": ["evaluate", "--model", low_file, "--data", tmp / "nope"],
        "--sizes 1": ["experiment", "--low", low_file, "--rtl", RTL, "--out", exp, "--sizes", "1", "--quiet"],
        "--sizes x": ["experiment", "--low", low_file, "--rtl", RTL, "--out", exp, "--sizes", "16,x", "--quiet"],
        "--methods bogus": ["experiment", "--low", low_file, "--rtl", RTL, "--out", exp, "--methods", "bogus",
                            "--quiet"],
        "--trials 0": ["experiment", "--low", low_file, "--rtl", RTL, "--out", exp, "--trials", 0, "--quiet"],
        "experiment --low text": ["experiment", "--low", text, "--rtl", RTL, "--out", exp, "--quiet"],
        "unknown command": ["fly"],
        "missing option": ["train", "--low", low_file],
        "bad int": ["train", "--low", low_file, "--rtl", RTL, "--out", out, "--iters", "many"],
    }


def test_bad_input_is_one_error_line(low_file, model_file, analytical_dir, tmp_path, capsys):
    cases = _bad_cases(tmp_path, low_file, model_file, analytical_dir)
    for name, argv in cases.items():
        code, out, err = _run(argv, capsys)
        assert code == 2, (name, code, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert not (tmp_path / "out.pt").exists(), name
        assert not (tmp_path / "exp" / "results.jsonl").exists(), name
    # the messages name what is wrong
    msg = {name: _run(argv, capsys)[2] for name, argv in cases.items()
           if name in ("missing --data", "--low text", "--methods bogus", "--encoder abc", "--sizes 1")}
    assert str(tmp_path / "nope") in msg["missing --data"]
    assert str(tmp_path / "notes.txt") in msg["--low text"]
    assert "bogus" in msg["--methods bogus"]
    assert "abc" in msg["--encoder abc"]
    assert "'1'" in msg["--sizes 1"]


def test_help_exits_zero(capsys):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0 and "train-low" in out


def test_experiment_redoes_a_line_cut_by_a_kill(experiment, low_file, tmp_path, capsys):
    """A kill in the middle of a write leaves a partial last line: one resume redoes that
    job and leaves a file of complete lines (the others kept as they were)."""
    import shutil

    exp = tmp_path / "exp"
    shutil.copytree(experiment, exp)
    path = exp / "results.jsonl"
    before = path.read_text()
    lines = before.splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:10])
    code, _, _ = _run(_experiment_argv(low_file, exp), capsys)
    assert code == 0
    after = path.read_text().splitlines()
    assert after[:len(lines) - 1] == [line.rstrip("\n") for line in lines[:-1]]
    parsed = []
    for line in after:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    # every job is in the file again, once, and the redone one is the cut one
    last = json.loads(lines[-1])
    keys = [(r["method"], r["size"], r["trial"]) for r in parsed]
    assert sorted(keys) == sorted((r["method"], r["size"], r["trial"]) for r in map(json.loads, lines))
    redone = parsed[-1]
    assert (redone["method"], redone["size"], redone["trial"]) == (last["method"], last["size"], last["trial"])
    assert {k: v for k, v in redone.items() if k != "fit_s"} == {k: v for k, v in last.items() if k != "fit_s"}
    # and a further rerun has nothing left to do
    text = path.read_text()
    code, _, _ = _run(_experiment_argv(low_file, exp), capsys)
    assert code == 0 and path.read_text() == text
