"""Spotlight at RTL fidelity, end to end (slow: about half an hour on 2 cores):
``python -m search.spotlight --workload resnet50 --fidelity rtl --hw-iters 4 --sw-iters 3``.
Every evaluation in the run's store is a verified Verilator simulation, the best design
is the minimum of the history, and the report names it."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from search.runs import RunDir

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_resnet50_at_rtl_fidelity_every_evaluation_verified(tmp_path):
    run = tmp_path / "rtl"
    p = subprocess.run([sys.executable, "-m", "search.spotlight", "--workload", "resnet50", "--fidelity", "rtl",
                        "--hw-iters", "4", "--sw-iters", "3", "--workers", "2", "--run-dir", str(run), "--quiet"],
                       cwd=REPO, capture_output=True, text=True, timeout=4 * 3600)
    assert p.returncode == 0, p.stderr[-2000:]
    with RunDir.open_existing(run) as store:
        records = store.evaluations()
        hardware = store.hardware_history()
    assert len(hardware) == 4
    assert records and all(r.fidelity == "rtl" for r in records)
    feasible = [r for r in records if r.result.feasible]
    assert feasible and all(r.result.verified for r in feasible)
    # infeasible ones are refusals before simulation, each with its reason
    assert all(r.result.reason for r in records if not r.result.feasible)
    assert len(records) <= 4 * 24 * 3
    history = json.loads((run / "history.json").read_text())
    best = json.loads((run / "best.json").read_text())
    finite = [h["objective"] for h in history if h["objective"] is not None and math.isfinite(h["objective"])]
    assert best["objective"] == min(finite)
    report = (run / "report.md").read_text()
    hw = best["hw"]
    assert f"dim {hw['dim']}, scratchpad {hw['sp_kb']} KB, accumulator {hw['acc_kb']} KB" in report
