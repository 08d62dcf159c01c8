"""search.report: the run report of a tiny real Spotlight run (report.md names the best
design and every layer, one hardware row per iteration with the cumulative minimum, the
plots exist), the CDF numbers by hand, infeasible and empty results, and the Verilog."""

import dataclasses
import math
import time

import numpy as np
import pytest

from hw.config import HardwareConfig
from search.evaluators import AnalyticalEvaluator
from search.importance import software_importance
from search.optimizers.spotlight import SpotlightOptions, SpotlightResult, run_spotlight
from search.report import (best_so_far, empirical_cdf, plot_cdf, plot_convergence, write_best_verilog,
                           write_report)
from search.runs import RunDir
from search.workloads import get_workload, unique_layers

TINY = dict(hw_iters=3, sw_iters=12, sw_warmup=4, sw_batch=4, sw_pool=64, seed=0)
PNGS = ("convergence.png", "cdf.png", "importance.png")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    by_name = {lay.name: lay for lay in unique_layers(get_workload("resnet50"))}
    layers = [by_name[n] for n in ("layer1.0.conv1", "layer4.1.conv2", "fc")]
    opts = SpotlightOptions(**TINY)
    path = tmp_path_factory.mktemp("report") / "run"
    with RunDir.open(path, {**opts.to_dict(), "fidelity": "analytical"}, seeds={"seed": 0}) as run:
        result = run_spotlight(layers, opts, AnalyticalEvaluator(), run)
        records = run.evaluations()
    return path, layers, result, records


def _report(path, layers, result, **kw):
    return write_report(path, title="Spotlight run: resnet50", summary_lines=["variant spotlight, seed 0"],
                        names=["resnet50"], layers=layers, result=result, objective="edp",
                        verify_command=f"python -m search.spotlight --verify {path}", **kw)


def _table(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_report_of_a_tiny_run(tiny_run, one_torch_thread):
    path, layers, result, records = tiny_run
    best = result.best
    imp = software_importance([r for r in records if r.hw == best.hw], "spotlight", "edp", n_repeats=3)
    out = _report(path, layers, result, importance=imp, verilog_path=path / "verilog" / "top.v")
    text = out.read_text()
    assert out == path / "report.md"
    assert f"dim {best.hw.dim}, scratchpad {best.hw.sp_kb} KB, accumulator {best.hw.acc_kb} KB" in text
    assert f"iteration {best.iteration}, {best.phase}" in text
    assert f"EDP {best.cost.edp:.4e}" in text
    layer_rows = _table(text, "| layer | count |")
    assert [r[0] for r in layer_rows] == [lay.name for lay in layers]
    for row, lay, r in zip(layer_rows, layers, best.results):
        assert int(row[1]) == lay.count and int(row[2].replace(",", "")) == r.cycles
        assert float(row[4]) == pytest.approx(r.energy_pj * r.cycles, rel=1e-4)
    # one row per hardware iteration; best so far = the cumulative minimum, computed here
    hw_rows = _table(text, "| iteration | phase |")
    objs = np.array([p.objective for p in result.history])
    cummin = [min(objs[:k + 1]) for k in range(len(objs))]
    assert len(hw_rows) == len(result.history) == 3
    for row, p, m in zip(hw_rows, result.history, cummin):
        assert row[:5] == [str(p.iteration), p.phase, str(p.hw.dim), str(p.hw.sp_kb), str(p.hw.acc_kb)]
        assert float(row[6]) == pytest.approx(p.objective, rel=1e-4)
        assert float(row[7]) == pytest.approx(m, rel=1e-4)
    assert "| log2_" in text and "verilog/top.v" in text
    assert f"python -m search.spotlight --verify {path}" in text
    for png in PNGS:
        f = path / png
        assert f.is_file() and f.stat().st_size > 1000 and f.read_bytes()[:4] == b"\x89PNG"
        assert f"({png})" in text


def test_infeasible_iterations_and_no_feasible_design(tiny_run, tmp_path):
    _, layers, result, _ = tiny_run
    h = result.history
    bad = dataclasses.replace(h[1], objective=math.inf)
    mixed = SpotlightResult((h[0], bad, h[2]), min((h[0], h[2]), key=lambda p: p.objective))
    text = _report(tmp_path, layers, mixed).read_text()
    rows = _table(text, "| iteration | phase |")
    assert rows[1][6] == "infeasible"
    assert float(rows[1][7]) == pytest.approx(h[0].objective, rel=1e-4)   # best so far carries over
    assert float(rows[2][7]) == pytest.approx(min(h[0].objective, h[2].objective), rel=1e-4)
    none = SpotlightResult((dataclasses.replace(h[0], objective=math.inf),), None)
    d = tmp_path / "none"
    d.mkdir()
    text = _report(d, layers, none).read_text()
    assert "No feasible design was found." in text and "--verify" not in text
    assert _table(text, "| iteration | phase |")[0][6:] == ["infeasible", "-"]
    for png in ("convergence.png", "cdf.png"):
        assert (d / png).stat().st_size > 1000
    with pytest.raises(ValueError, match="not a directory"):
        _report(tmp_path / "missing", layers, none)


def test_empirical_cdf_by_hand():
    x, p = empirical_cdf([3.0, 1.0, math.inf, 2.0, 2.0, None, float("nan")])
    assert x.tolist() == [1.0, 2.0, 3.0]
    assert p.tolist() == [0.25, 0.75, 1.0]
    x, p = empirical_cdf([math.inf, None])
    assert len(x) == len(p) == 0
    assert best_so_far([5.0, math.inf, 3.0, None, 4.0]) == [5.0, 5.0, 3.0, 3.0, 3.0]
    assert best_so_far([math.inf, 2.0]) == [math.inf, 2.0]


def test_plots_take_empty_and_infeasible_series(tmp_path):
    plot_cdf({"a": [1e3, 2e3, math.inf], "b": [None, math.inf]}, tmp_path / "c.png", xlabel="EDP")
    plot_convergence([math.inf, math.inf], tmp_path / "v.png", title="t", ylabel="EDP")
    assert (tmp_path / "c.png").stat().st_size > 1000 and (tmp_path / "v.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="dict"):
        plot_cdf([1.0], tmp_path / "x.png", xlabel="EDP")


def test_write_best_verilog(tmp_path):
    t0 = time.time()
    f = write_best_verilog(HardwareConfig(dim=4, sp_kb=8, acc_kb=8), tmp_path / "verilog")
    assert f.parent == tmp_path / "verilog" and f.suffix == ".v"
    assert "module top" in f.read_text()
    assert time.time() - t0 < 60
    with pytest.raises(ValueError, match="HardwareConfig"):
        write_best_verilog({"dim": 4}, tmp_path)
