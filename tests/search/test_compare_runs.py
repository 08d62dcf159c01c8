"""search.compare_runs: a Polaris run and a random-search run (analytical, tiny) scored by
one rule; each score against a brute force over every combination of the store's
evaluations, and Polaris's against its own history."""

import itertools
import json
import math
import sqlite3
from pathlib import Path

import pytest

from hw.layer import Layer
from hw.result import Result
from search.compare_runs import convergence, group_scores, main, score_run

WORKLOAD = [{"name": "conv", "k": 32, "c": 16, "p": 8, "r": 3, "pad": 1, "count": 2},
            {"name": "fc", "gemm": {"m": 16, "k": 64, "n": 32}}]

pytestmark = pytest.mark.usefixtures("module_torch_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from search import polaris, spotlight
    from search.polaris_surrogate import SurrogateRecipe, default_surrogate

    root = tmp_path_factory.mktemp("cmp")
    wl = root / "wl.json"
    wl.write_text(json.dumps(WORKLOAD))
    rec = SurrogateRecipe(low_workloads=("resnet50", "bert"), low_n=2048, low_epochs=2, rtl_rows=64, dkl_iters=30)
    _, info = default_surrogate(rec, root=tmp_path_factory.getbasetemp() / "polaris-cache", log=lambda s: None,
                                progress=False)
    assert polaris.main(["--workload", str(wl), "--fidelity", "analytical", "--hw-iters", "2", "--sw-iters", "2",
                         "--sw-pool", "32", "--hw-candidates", "8", "--hw-refine", "4", "--update-iters", "1",
                         "--no-verilog", "--quiet", "--surrogate", info["path"], "--run-dir", str(root / "pol")]) == 0
    assert spotlight.main(["--workload", str(wl), "--fidelity", "analytical", "--variant", "r", "--hw-iters", "3",
                           "--sw-iters", "3", "--seed", "4", "--no-verilog", "--quiet",
                           "--run-dir", str(root / "rnd")]) == 0
    return root


def _brute(db: Path) -> tuple[float, int]:
    """(lowest network EDP over every design and combination, samples) from the raw rows."""
    rows = sqlite3.connect(db).execute("SELECT hw, layer, result, layer_index, phase FROM evaluations").fetchall()
    by = {}
    for hw, lay, res, li, phase in rows:
        by.setdefault(hw, {}).setdefault(li, []).append((Layer.from_json(lay), Result.from_json(res)))
    best, samples = math.inf, 0
    for layers in by.values():
        samples += max(len(v) for v in layers.values())
        opts = [[(lay.count, r.energy_pj, r.cycles) for lay, r in layers[li] if r.feasible]
                for li in sorted(layers)]
        for combo in itertools.product(*opts):
            best = min(best, sum(n * e for n, e, _ in combo) * sum(n * c for n, _, c in combo))
    return best, samples


def test_scores_against_brute_force_and_polaris_history(runs):
    pol, rnd = score_run(runs / "pol"), score_run(runs / "rnd")
    assert (pol.method, rnd.method) == ("polaris", "random")
    assert pol.seed == 0 and rnd.seed == 4 and pol.fidelity == rnd.fidelity == "analytical"
    for s, d in ((pol, "pol"), (rnd, "rnd")):
        b, n = _brute(runs / d / "evaluations.sqlite")
        assert s.best_edp == pytest.approx(b, rel=1e-12)
        assert s.samples == n and s.best_layerwise_edp >= s.best_edp * (1 - 1e-12)
    assert pol.samples == 4 and rnd.samples == 9
    hist = json.loads((runs / "pol" / "history.json").read_text())
    assert pol.best_edp == pytest.approx(min(h["objective"] for h in hist), rel=1e-12)
    rows = group_scores([pol, rnd])
    r = {x["method"]: x for x in rows}
    assert r["polaris"]["median_vs_polaris"] == 1.0
    assert r["random"]["median_vs_polaris"] == pytest.approx(rnd.best_edp / pol.best_edp)


def test_cli_tables_and_json(runs, tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main([str(runs / "pol"), str(runs / "rnd"), "--json", str(out), "--markdown", str(tmp_path / "c.md")]) == 0
    text = capsys.readouterr().out
    assert "| polaris |" in text and "| random |" in text
    d = json.loads(out.read_text())
    assert len(d["runs"]) == 2 and len(d["groups"]) == 2
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_method_labels_keep_software_dse_apart():
    from search.compare_runs import _method
    assert _method({"hw_search": "continuous", "acquisition": "ucb"}) == "polaris"
    assert _method({"hw_search": "continuous", "acquisition": "ei"}) == "polaris-ei"
    assert _method({"hw_search": "continuous", "acquisition": "ucb",
                    "hardware": {"dim": 16, "sp_kb": 256, "acc_kb": 64}}) == "polaris-sw-dse"
    assert _method({"method": "oracle", "hardware": None}) == "oracle"


def _brute_curve(db: Path) -> list[float]:
    """Best EDP so far after each sample from the raw rows: designs in order of their first
    row, sample j = each layer's first j rows of the design, every combination tried."""
    rows = sqlite3.connect(db).execute(
        "SELECT hw, layer, result, layer_index, phase FROM evaluations ORDER BY rowid").fetchall()
    by = {}
    for hw, lay, res, li, phase in rows:
        if not phase.startswith("baseline-"):
            by.setdefault(hw, {}).setdefault(li, []).append((Layer.from_json(lay), Result.from_json(res)))
    out, best = [], math.inf
    for layers in by.values():
        for j in range(1, max(len(v) for v in layers.values()) + 1):
            opts = [[(lay.count, r.energy_pj, r.cycles) for lay, r in layers[li][:j] if r.feasible]
                    for li in sorted(layers)]
            for combo in itertools.product(*opts):
                best = min(best, sum(n * e for n, e, _ in combo) * sum(n * c for n, _, c in combo))
            out.append(best)
    return out


@pytest.mark.parametrize("name", ["pol", "rnd"])
def test_convergence_against_brute_force(runs, name):
    curve = convergence(runs / name)
    want = _brute_curve(runs / name / "evaluations.sqlite")
    assert [n for n, _ in curve] == list(range(1, len(want) + 1))
    assert [v for _, v in curve] == pytest.approx(want, rel=1e-12)
    assert curve[-1][1] == pytest.approx(score_run(runs / name).best_edp, rel=1e-12)
