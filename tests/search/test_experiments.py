"""python -m search.experiments codesign: the budget each method gets, the cells, one
analytical experiment of every method end to end (samples counted from the run stores,
the area budget, the summary's figures against the stores' own scores), resumption,
and one-line errors."""

import json
import math
import statistics
from pathlib import Path

import pytest

from cost.energy import area_mm2
from search.compare_runs import convergence, score_run
from search.experiments import (DEFAULT_METHODS, METHODS, CodesignExperiment, cell_state, cells, main,
                                parse_setting, stale_option, summarise)
from search.runs import RunDir

WORKLOAD = [{"name": "conv", "k": 32, "c": 16, "p": 8, "r": 3, "pad": 1, "count": 2},
            {"name": "fc", "gemm": {"m": 16, "k": 64, "n": 32}}]
TINY = ["--set", "polaris.sw_pool=32", "--set", "polaris.hw_candidates=8", "--set", "polaris.hw_refine=4",
        "--set", "polaris.update_iters=2", "--set", "spotlight.sw_pool=64", "--set", "random.sw_pool=64",
        "--set", "vanilla-bo.sw_pool=64", "--set", "oracle.sw_samples=64", "--set", "offline.starts=4",
        "--set", "offline.steps=20", "--set", "dosa.starts=2", "--set", "dosa.steps=40",
        "--set", "dosa.round_every=20"]
BUDGET, M, AREA = 4, 2, 1.5

pytestmark = pytest.mark.usefixtures("module_torch_thread")


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


# ---- options ------------------------------------------------------------------------------------
def test_parse_setting_types():
    assert parse_setting("dosa.steps=600") == ("dosa", "steps", 600)
    assert parse_setting("dosa.lr=1e-4") == ("dosa", "lr", 1e-4)
    assert parse_setting("polaris.acquisition=ei") == ("polaris", "acquisition", "ei")
    assert parse_setting("vanilla-bo.buffering=false") == ("vanilla-bo", "buffering", False)
    assert parse_setting("dosa.array-dim=none") == ("dosa", "array_dim", None)


@pytest.mark.parametrize("text, words", [
    ("dosa.steps", "METHOD.FIELD=VALUE"), ("steps=3", "METHOD.FIELD=VALUE"),
    ("nosuch.steps=3", "unknown method 'nosuch'"), ("dosa.nosuch=3", "dosa has no option 'nosuch'"),
    ("polaris.hw_iters=3", "set by the experiment"), ("oracle.sample_budget=9", "set by the experiment")])
def test_parse_setting_errors(text, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        parse_setting(text)


@pytest.mark.parametrize("budget, m", [(48, 6), (12, 3), (8, 8)])
def test_every_method_gets_the_budget(budget, m):
    exp = CodesignExperiment(("bert",), tuple(METHODS), budget=budget, sw_iters=m, area_budget_mm2=2.0)
    for name in METHODS:
        o = exp.method_options(name, seed=5)
        assert o.seed == 5 and o.area_budget_mm2 == 2.0
        if name in ("polaris", "spotlight", "random", "vanilla-bo"):
            assert (o.hw_iters * o.sw_iters, o.sw_iters) == (budget, m)
        elif name == "oracle":
            assert o.sample_budget == budget and o.designs * o.per_design <= budget
            assert o.designs * o.per_design > budget - o.per_design
        else:
            assert o.sample_budget == budget
    assert exp.method_options("random", 0).variant == "r"
    sp = exp.method_options("spotlight", 0)
    assert (sp.variant, sp.hw_warmup, sp.sw_warmup, sp.sw_batch) == ("spotlight", 2, 2, 1)
    assert exp.method_options("dosa-16", 0).array_dim == 16 and exp.method_options("dosa", 0).array_dim is None


def test_settings_reach_the_options_and_are_validated():
    exp = CodesignExperiment(("bert",), ("dosa", "polaris"), settings=(("dosa", "steps", 7),))
    assert exp.method_options("dosa", 0).steps == 7
    with pytest.raises(ValueError, match="dosa: .*steps"):
        CodesignExperiment(("bert",), ("dosa",), settings=(("dosa", "steps", -1),)).method_options("dosa", 0)
    with pytest.raises(ValueError, match="oracle is not among --methods"):
        CodesignExperiment(("bert",), ("dosa",), settings=(("oracle", "sw_samples", 7),))


@pytest.mark.parametrize("kw, words", [
    (dict(budget=50), "--budget 50 must be a multiple of --sw-iters 6"),
    (dict(methods=("polaris", "nosuch")), "unknown method 'nosuch'"),
    (dict(methods=("dosa", "dosa")), "names 'dosa' twice"),
    (dict(trials=0), "trials"), (dict(fidelity="fpga"), "fidelity"),
    (dict(area_budget_mm2=-1.0), "area")])
def test_experiment_validation(kw, words):
    with pytest.raises(ValueError, match=words):
        CodesignExperiment(("bert",), **kw)


def test_cells_names_and_order(tmp_path):
    exp = CodesignExperiment(("resnet50", "dir/my.json"), ("polaris", "dosa"), trials=2)
    cs = cells(exp, tmp_path)
    assert [(c.trial, c.workload, c.method) for c in cs] == [
        (t, w, m) for t in range(2) for w in ("resnet50", "dir/my.json") for m in ("polaris", "dosa")]
    assert cs[0].path == tmp_path / "polaris-resnet50-rtl-s0"          # the name search.polaris gives it
    assert cs[3].path == tmp_path / "dosa-my-rtl-s0"
    odd = CodesignExperiment(("bert",), ("random",), budget=12, sw_iters=3, fidelity="analytical",
                             area_budget_mm2=1.5)
    assert cells(odd, tmp_path)[0].path.name == "random-bert-analytical-s0-b12-m3-a1.5"
    assert cell_state(cs[0]) == "new"


# ---- one experiment, every method -------------------------------------------------------------
@pytest.fixture(scope="module")
def experiment(tmp_path_factory, surrogate_file):
    root = tmp_path_factory.mktemp("experiment")
    wl = root / "wl.json"
    wl.write_text(json.dumps(WORKLOAD))
    argv = ["codesign", "--workloads", str(wl), "--methods", "all", "--trials", "1", "--budget", str(BUDGET),
            "--sw-iters", str(M), "--fidelity", "analytical", "--area-budget", str(AREA), "--surrogate",
            str(surrogate_file), "--out", str(root / "out"), "--summary", str(root / "summary"), "--quiet", *TINY]
    rc = main(argv)
    exp = CodesignExperiment((str(wl),), DEFAULT_METHODS, 1, BUDGET, M, "analytical", AREA,
                             tuple(parse_setting(s) for s in TINY[1::2]), str(surrogate_file))
    return {"rc": rc, "root": root, "argv": argv, "exp": exp, "cells": cells(exp, root / "out")}


def test_every_cell_finishes_within_the_sample_and_area_budgets(experiment):
    assert experiment["rc"] == 0
    assert len(experiment["cells"]) == len(DEFAULT_METHODS)
    for c in experiment["cells"]:
        assert cell_state(c) == "finished", c
        s = score_run(c.path)
        assert 1 <= s.samples <= BUDGET, (c.method, s.samples)
        assert math.isfinite(s.best_edp)
        with RunDir.open_existing(c.path) as run:
            hws = {r.hw for r in run.evaluations()}
        assert hws and all(area_mm2(h.dim, h.sp_kb, h.acc_kb) <= AREA + 1e-9 for h in hws), c.method
        best = json.loads((c.path / "best.json").read_text())
        assert best["cost"]["edp"] >= s.best_edp * (1 - 1e-9)     # the store's exact best combination


def test_summary_matches_the_stores(experiment):
    exp, root = experiment["exp"], experiment["root"]
    doc = json.loads((root / "summary" / "summary.json").read_text())
    scores = {c.method: score_run(c.path).best_edp for c in experiment["cells"]}
    rows = {r["method"]: r for r in doc["rows"]}
    assert set(rows) == set(DEFAULT_METHODS)
    for m, v in scores.items():
        assert rows[m]["median_edp"] == pytest.approx(v, rel=1e-12)
        assert rows[m]["vs_polaris_pct"] == pytest.approx(100 * (v / scores["polaris"] - 1), rel=1e-9, abs=1e-9)
    (wl,) = exp.workloads
    best = min(scores.values())
    assert doc["best_known"][wl]["edp"] == pytest.approx(best, rel=1e-12)
    assert scores[doc["best_known"][wl]["method"]] == pytest.approx(best, rel=1e-12)
    assert min(r["vs_best_known_pct"] for r in rows.values()) == pytest.approx(0.0, abs=1e-9)
    for p in ("summary.md", "edp.png", "convergence.png"):
        assert (root / "summary" / p).stat().st_size > 0
    md = (root / "summary" / "summary.md").read_text()
    assert "| wl | polaris | 1/1 |" in md and "Best-known design" in md
    again = summarise(exp, root / "out")           # read only: the same figures again
    assert [r["median_edp"] for r in again["rows"]] == [r["median_edp"] for r in doc["rows"]]


def test_convergence_ends_at_the_score(experiment):
    for c in experiment["cells"]:
        curve = convergence(c.path)
        s = score_run(c.path)
        assert [n for n, _ in curve] == list(range(1, s.samples + 1))
        vals = [v for _, v in curve]
        assert all(a >= b for a, b in zip(vals, vals[1:]))           # a best so far never rises
        assert vals[-1] == pytest.approx(s.best_edp, rel=1e-12)


def test_rerun_runs_nothing(experiment, capsys):
    before = {c.path: json.loads((c.path / "run.json").read_text()).get("resumes", []) for c in experiment["cells"]}
    capsys.readouterr()
    assert main(experiment["argv"]) == 0
    assert f"{len(experiment['cells'])} cells, {len(experiment['cells'])} finished, 0 to run" in capsys.readouterr().err
    for c in experiment["cells"]:
        assert json.loads((c.path / "run.json").read_text()).get("resumes", []) == before[c.path]


@pytest.mark.parametrize("every, writes", [(0.0, 3), (1e9, 1)])
def test_summary_is_rewritten_between_cells_at_most_every_summary_every_s(tmp_path, monkeypatch, every, writes):
    """Three random cells: with SUMMARY_EVERY_S 0 the summary follows cells 1 and 2 and the
    end; with a long period only the end."""
    import search.experiments as se

    wl = tmp_path / "wl.json"
    wl.write_text(json.dumps(WORKLOAD))
    calls = []
    real = se.write_summary
    monkeypatch.setattr(se, "SUMMARY_EVERY_S", every)
    monkeypatch.setattr(se, "write_summary", lambda summary, d: calls.append(d) or real(summary, d))
    argv = ["codesign", "--workloads", str(wl), "--methods", "random", "--trials", "3", "--budget", str(BUDGET),
            "--sw-iters", str(M), "--fidelity", "analytical", "--out", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 0
    assert len(calls) == writes and (tmp_path / "out" / "codesign-analytical" / "summary.json").is_file()


def test_cells_made_with_other_options_are_stale_and_left_alone(experiment, capsys):
    exp = experiment["exp"]
    other = CodesignExperiment(exp.workloads, exp.methods, exp.trials, exp.budget, exp.sw_iters, exp.fidelity,
                               exp.area_budget_mm2, tuple((m, f, 41 if (m, f) == ("dosa", "steps") else v)
                                                         for m, f, v in exp.settings), exp.surrogate)
    states = {c.method: cell_state(c, other) for c in cells(other, experiment["root"] / "out")}
    assert states.pop("dosa") == "stale" and set(states.values()) == {"finished"}
    dosa = next(c for c in experiment["cells"] if c.method == "dosa")
    assert stale_option(other, dosa) == ("steps", 40, 41) and stale_option(exp, dosa) is None
    argv = list(experiment["argv"])
    argv[argv.index("dosa.steps=40")] = "dosa.steps=41"
    before = (dosa.path / "run.json").read_text()
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"error: {dosa.path} was made with steps 40, this experiment gives 41" in err and "0 to run" in err
    assert (dosa.path / "run.json").read_text() == before
    rows = {r["method"]: r for r in summarise(other, experiment["root"] / "out")["rows"]}
    assert rows["dosa"]["trials"] == 0 and rows["polaris"]["trials"] == 1     # never mixed into the table


def test_status_lists_every_cell(experiment, capsys):
    argv = [a for a in experiment["argv"] if a != "--quiet"] + ["--status"]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("finished  ") == len(experiment["cells"])


def test_help_names_every_method_and_default(capsys):
    assert main(["codesign", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for words in ("default 3", "default 48", "default 6", "default rtl", "default none", "default runs",
                  "default all cores", "dosa.steps=600", *DEFAULT_METHODS[1:], "dosa-16"):
        assert words in out.replace("vanilla- bo", "vanilla-bo"), words


# ---- errors before any work ---------------------------------------------------------------------
@pytest.mark.parametrize("extra, words", [
    (["--workloads", "nosuchnet"], "nosuchnet"),
    (["--workloads", "bert", "--methods", "polaris,nosuch"], "unknown method 'nosuch'"),
    (["--workloads", "bert", "--budget", "50"], "multiple of --sw-iters"),
    (["--workloads", "bert", "--trials", "0"], "trials"),
    (["--workloads", "bert", "--set", "dosa.bogus=1"], "dosa has no option 'bogus'"),
    (["--workloads", "bert", "--area-budget", "0.01"], "below the smallest design"),
    (["--workloads", "bert", "--fidelity", "analytical", "--workers", "2"], "--workers applies to --fidelity rtl"),
    (["--workloads", "bert", "--set", "oracle.designs=4"], "set by the experiment")])
def test_bad_input_is_one_line_before_any_work(tmp_path, capsys, extra, words):
    out = tmp_path / "out"
    assert main(["codesign", *extra, "--out", str(out)]) == 2
    assert words in _err_line(capsys)
    assert not out.exists() or not any(out.iterdir())


def test_layer_too_big_for_the_simulation_dram_is_one_line_at_rtl(tmp_path, capsys):
    wl = tmp_path / "huge.json"
    wl.write_text('[{"name": "huge", "gemm": {"m": 16384, "k": 1024, "n": 2048}}]')
    out = tmp_path / "out"
    assert main(["codesign", "--workloads", str(wl), "--out", str(out)]) == 2
    assert "layer 'huge' needs 287,313,920 bytes of simulation DRAM" in _err_line(capsys)
    assert not out.exists()


# ---- software DSE on another method's design ---------------------------------------------------
def _swdse_argv(experiment, *extra):
    a = experiment["argv"]
    keep = {k: a[a.index(k) + 1] for k in ("--workloads", "--budget", "--fidelity", "--area-budget", "--surrogate",
                                           "--out")}
    return ["swdse", *[x for kv in keep.items() for x in kv], "--codesign-sw-iters", str(M), "--quiet", *extra]


def test_swdse_on_dosas_design(experiment, tmp_path):
    out = tmp_path / "swdse"
    assert main(_swdse_argv(experiment, "--on", "dosa", "--sw-iters", "2", "--summary", str(out))) == 0
    doc = json.loads((out / "summary.json").read_text())
    (row,) = doc["rows"]
    src = next(c for c in experiment["cells"] if c.method == "dosa")
    assert row["hw"] == json.loads((src.path / "best.json").read_text())["hw"]
    assert row["dosa_edp"] == pytest.approx(score_run(src.path).best_edp, rel=1e-12)
    run = Path(row["run"])
    with RunDir.open_existing(run) as r:
        assert r.options["hardware"] == row["hw"] and r.options["sw_iters"] == 2
        assert {e.hw.to_dict()["dim"] for e in r.evaluations()} == {row["hw"]["dim"]}
    assert row["polaris_edp"] == pytest.approx(score_run(run).best_edp, rel=1e-12)
    base = {b["name"]: b["objective"] for b in json.loads((run / "baselines.json").read_text())}
    assert row["default_mapping_edp"] == pytest.approx(base["default"]) and \
        row["best_mapping_edp"] == pytest.approx(base["best"])
    assert row["dosa_vs_polaris"] == pytest.approx(row["dosa_edp"] / row["polaris_edp"])
    assert (out / "swdse.png").stat().st_size > 0 and "| wl | dim" in (out / "summary.md").read_text()


def test_swdse_without_the_codesign_cell_is_one_line(experiment, capsys):
    capsys.readouterr()
    assert main(_swdse_argv(experiment, "--on", "dosa-16")) == 2
    assert "no finished dosa-16 codesign cell" in _err_line(capsys)
