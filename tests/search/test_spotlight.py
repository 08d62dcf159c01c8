"""Spotlight (search.optimizers.spotlight, python -m search.spotlight): a small run's
history against an independent re-evaluation, the area budget, kill -9 resume equality,
and the command line's one-line errors."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cost
from hw.layer import Layer
from search.evaluators import AnalyticalEvaluator
from search.optimizers.spotlight import SpotlightOptions, run_spotlight

REPO = Path(__file__).resolve().parents[2]
LAYERS = [Layer.conv("conv", n=1, k=32, c=16, p=8, q=8, r=3, s=3, padding=1, count=2),
          Layer.gemm("fc", m=16, k=64, n=32)]
WORKLOAD = [{"name": "conv", "k": 32, "c": 16, "p": 8, "r": 3, "pad": 1, "count": 2},
            {"name": "fc", "gemm": {"m": 16, "k": 64, "n": 32}}]
SMALL = dict(hw_iters=5, sw_iters=8, sw_pool=40, sw_batch=4, hw_warmup=3, sw_warmup=4)


class _Store:
    """The smallest store the optimiser needs: a dict (the real one is search.runs')."""

    def __init__(self):
        self.evals, self.hw = {}, []

    def lookup_many(self, fidelity, hw, layer, mappings):
        return [self.evals.get((hw, layer, m)) for m in mappings]

    def record_many(self, fidelity, hw, layer, mappings, results, **ctx):
        for m, r in zip(mappings, results):
            self.evals[(hw, layer, m)] = r

    def record_hardware(self, point):
        self.hw.append(point)


def test_small_run_history_is_consistent_and_best_is_the_minimum():
    opts = SpotlightOptions(**SMALL, seed=5)
    store = _Store()
    res = run_spotlight(LAYERS, opts, AnalyticalEvaluator(), store)
    assert len(res.history) == 5 and len({p.hw for p in res.history}) == 5
    assert [p.phase for p in res.history[:3]] == ["warmup"] * 3
    ev = AnalyticalEvaluator()
    for p in res.history:
        # each layer's best mapping, re-evaluated independently (Mapping objects, cost.evaluate)
        assert p.evaluations == 2 * 8
        again = [cost.evaluate(p.hw, m, lay) for m, lay in zip(p.mappings, LAYERS)]
        e = sum(lay.count * r.energy_pj for r, lay in zip(again, LAYERS))
        c = sum(lay.count * r.cycles for r, lay in zip(again, LAYERS))
        assert p.objective == pytest.approx(e * c, rel=1e-9)
        assert p.cost.edp == pytest.approx(ev.evaluate(p.hw, LAYERS, p.mappings).cost.edp, rel=1e-12)
        # the layer's best is the minimum over what was evaluated for it on this design
        for li, lay in enumerate(LAYERS):
            seen = [r for (hw, layer, m), r in store.evals.items() if hw == p.hw and layer == lay]
            assert len(seen) == 8
            assert min(r.energy_pj * r.cycles for r in seen) == pytest.approx(
                p.results[li].energy_pj * p.results[li].cycles)
    assert res.best.objective == min(p.objective for p in res.history)
    assert res.best_so_far == list(np.minimum.accumulate([p.objective for p in res.history]))
    # same options, same run
    res2 = run_spotlight(LAYERS, opts, AnalyticalEvaluator(), _Store())
    assert [(p.hw, p.objective) for p in res2.history] == [(p.hw, p.objective) for p in res.history]


def test_area_budget_is_respected_and_variants_run():
    budget = 1.0
    for variant in ("spotlight", "v", "a", "r"):
        res = run_spotlight(LAYERS, SpotlightOptions(**SMALL, variant=variant, area_budget_mm2=budget),
                            AnalyticalEvaluator())
        assert all(p.area_mm2 <= budget for p in res.history)
        assert all(float(cost.area_mm2(p.hw.dim, p.hw.sp_kb, p.hw.acc_kb)) <= budget for p in res.history)
        assert res.best is not None


def test_bad_options():
    with pytest.raises(ValueError, match=r"hw-iters must be an integer in 1\.\.4,096; got 0"):
        SpotlightOptions(hw_iters=0)
    with pytest.raises(ValueError, match="variant must be one of"):
        SpotlightOptions(variant="x")
    with pytest.raises(ValueError, match="below the smallest design"):
        run_spotlight(LAYERS, SpotlightOptions(**SMALL, area_budget_mm2=1e-6), AnalyticalEvaluator())


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "search.spotlight", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600, **kw)


@pytest.mark.parametrize("args, message", [
    (["--workload", "nosuchnet"], "unknown workload 'nosuchnet'"),
    (["--workload", "resnet50", "--hw-iters", "0"], "hw-iters must be an integer in 1..4,096; got 0"),
    (["--workload", "resnet50", "--area-budget", "0.0001"], "below the smallest design"),
    (["--workload", "resnet50", "--run-dir", "README.md"], "run directory README.md is a file"),
    (["--workload", "resnet50", "--workers", "3"], "--workers applies to --fidelity rtl and --verify only"),
    (["--workload", "resnet50", "--seed", "-1"], "seed must be an integer in 0..4,294,967,295; got -1"),
])
def test_cli_errors_are_one_line_before_any_work(args, message):
    p = _cli(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], p.stderr


def _small_cli(run_dir, wl):
    return ["--workload", str(wl), "--hw-iters", "5", "--sw-iters", "8", "--sw-pool", "40", "--sw-batch", "4",
            "--seed", "3", "--run-dir", str(run_dir), "--quiet"]


def test_kill9_resume_gives_the_same_history_and_best(tmp_path):
    wl = tmp_path / "wl.json"
    wl.write_text(json.dumps(WORKLOAD))
    ref = tmp_path / "ref"
    p = _cli(*_small_cli(ref, wl))
    assert p.returncode == 0, p.stderr
    want_hist = json.loads((ref / "history.json").read_text())
    want_best = json.loads((ref / "best.json").read_text())
    run = tmp_path / "killed"
    rng = np.random.default_rng(11)
    t_full = None
    for attempt in range(2):
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "search.spotlight", *_small_cli(run, wl)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        delay = float(rng.uniform(3.0, 8.0))
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        t_full = time.time() - t0
    p = _cli(*_small_cli(run, wl))
    assert p.returncode == 0, p.stderr
    got_hist = json.loads((run / "history.json").read_text())
    got_best = json.loads((run / "best.json").read_text())
    assert got_hist == want_hist
    assert got_best == want_best
    assert t_full is not None and math.isfinite(t_full)
