"""python -m search.polaris: --help, one-line errors before any work, an analytical run's
outputs and its resumption (in process), and kill -9 resumption (slow, subprocesses)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from search.polaris import main

REPO = Path(__file__).resolve().parents[2]
WORKLOAD = [{"name": "conv", "k": 32, "c": 16, "p": 8, "r": 3, "pad": 1, "count": 2},
            {"name": "fc", "gemm": {"m": 16, "k": 64, "n": 32}}]
FAST = ["--fidelity", "analytical", "--hw-iters", "2", "--sw-iters", "2", "--sw-pool", "32", "--hw-candidates", "8",
        "--hw-refine", "4", "--update-iters", "2", "--no-verilog", "--quiet"]

pytestmark = pytest.mark.usefixtures("module_torch_thread")


@pytest.fixture
def workload(tmp_path) -> Path:
    p = tmp_path / "wl.json"
    p.write_text(json.dumps(WORKLOAD))
    return p


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


def test_help_explains_every_option_with_its_default(capsys):
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for flag, default in [("--hw-iters", "default 8"), ("--sw-iters", "default 6"), ("--acquisition", "default ucb"),
                          ("--kappa", "default 1"), ("--hw-search", "default continuous"),
                          ("--area-budget", "no budget"), ("--workers", "default all cores"),
                          ("--fidelity", "default rtl"), ("--seed", "default 0"), ("--surrogate", "default"),
                          ("--timeout", "default 1800"), ("--ray", "default"), ("--sw-pool", "default 512"),
                          ("--hw", "default"), ("--name", "default"), ("--beta", "kappa = sqrt(beta)")]:
        assert flag in out and default in out, (flag, default)


@pytest.mark.parametrize("extra, msg", [
    (["--workload", "nosuchnet"], "nosuchnet"),
    (["--hw", "dim=banana"], "--hw: 'dim=banana' is not field=N"),
    (["--area-budget", "0.01"], "--area-budget 0.01 mm^2 is below the smallest design of the space"),
    (["--kappa", "1", "--beta", "2"], "give --kappa or --beta, not both"),
    (["--hw-iters", "0"], "hw-iters must be an integer"),
    (["--workers", "2"], "--workers and --ray apply to --fidelity rtl only"),
    (["--no-baselines"], "--no-baselines applies to software DSE (--hw) only"),
])
def test_bad_input_is_one_line_before_any_work(capsys, tmp_path, workload, surrogate_file, extra, msg):
    argv = ["--workload", str(workload), *FAST, "--surrogate", str(surrogate_file), "--run-dir", str(tmp_path / "r")]
    if extra[0] == "--workload":
        argv[1] = extra[1]
        extra = []
    assert main(argv + extra) == 2
    assert msg in _err_line(capsys)
    assert not (tmp_path / "r").exists()


def test_layer_too_big_for_the_simulation_dram_is_one_line_at_rtl(capsys, tmp_path, surrogate_file):
    """A layer that needs more than the largest (256 MB) DRAM model: one line naming it
    before any simulation; the same workload at the analytical fidelity runs."""
    wl = tmp_path / "huge.json"
    wl.write_text(json.dumps([{"name": "huge", "gemm": {"m": 16384, "k": 1024, "n": 2048}}]))
    argv = ["--workload", str(wl), *FAST, "--surrogate", str(surrogate_file), "--run-dir", str(tmp_path / "r")]
    assert main(argv + ["--fidelity", "rtl"]) == 2
    assert ("layer 'huge' needs 287,313,920 bytes of simulation DRAM, more than the largest simulation DRAM "
            "model (256 MB): search it with --fidelity analytical") in _err_line(capsys)
    assert not (tmp_path / "r").exists()
    assert main(argv) == 0


def test_surrogate_of_another_input_version_is_one_line(capsys, tmp_path, workload, surrogate_file):
    d = torch.load(surrogate_file, weights_only=True)
    d["input_version"] = 0
    bad = tmp_path / "old.pt"
    torch.save(d, bad)
    assert main(["--workload", str(workload), *FAST, "--surrogate", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    assert "made for input layout version 0" in _err_line(capsys)
    assert not (tmp_path / "r").exists()


def test_run_end_to_end_then_resume_and_other_options(capsys, tmp_path, workload, surrogate_file):
    run = tmp_path / "run"
    argv = ["--workload", str(workload), *FAST, "--surrogate", str(surrogate_file), "--run-dir", str(run)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "best design: dim" in out and "report:" in out
    for f in ("report.md", "best.json", "history.json", "samples.json", "timings.json", "convergence.png",
              "predicted.png", "product_of_sums.png", "run.json", "evaluations.sqlite"):
        assert (run / f).is_file(), f
    best, hist = json.loads((run / "best.json").read_text()), json.loads((run / "history.json").read_text())
    samples = json.loads((run / "samples.json").read_text())
    assert len(hist) == 2 and len(samples) == 4
    assert best["objective"] == min(h["objective"] for h in hist)
    # the format `python -m search.spotlight --verify` reads
    assert {"hw", "layers", "fidelity", "cost"} <= set(best) and {"layer", "mapping"} <= set(best["layers"][0])
    n = sqlite3.connect(run / "evaluations.sqlite").execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    assert n == 2 * 2 * len(WORKLOAD)
    report = (run / "report.md").read_text()
    assert "## Wall time" in report and "Product of sums" in report and "## Hardware candidates" in report
    # the same command again: the same history, nothing evaluated again
    assert main(argv) == 0
    capsys.readouterr()
    assert json.loads((run / "history.json").read_text()) == hist
    assert sqlite3.connect(run / "evaluations.sqlite").execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] == n
    # other options on the same directory: one line, nothing run
    assert main(argv[:-2] + ["--run-dir", str(run), "--seed", "3"]) == 2
    assert "seed" in _err_line(capsys)


def test_software_dse_on_a_given_design(capsys, tmp_path, workload, surrogate_file):
    run = tmp_path / "dse"
    assert main(["--workload", str(workload), "--hw", "dim=16,sp_kb=256,acc_kb=64", "--fidelity", "analytical",
                 "--sw-iters", "3", "--sw-pool", "32", "--update-iters", "1", "--no-verilog", "--quiet",
                 "--surrogate", str(surrogate_file), "--run-dir", str(run)]) == 0
    hist = json.loads((run / "history.json").read_text())
    assert len(hist) == 1 and hist[0]["phase"] == "given" and hist[0]["hw"]["dim"] == 16
    assert len(hist[0]["samples"]) == 3
    # the mapper baselines against the analytical model called directly
    import cost
    from hw.config import HardwareConfig
    from hw.mapping import default_mapping
    from search.software import best_mapping
    from search.workloads import get_workload, unique_layers

    hw = HardwareConfig(dim=16, sp_kb=256, acc_kb=64)
    layers = unique_layers(get_workload(str(workload)))
    base = {b["name"]: b for b in json.loads((run / "baselines.json").read_text())}
    for name, mapper in (("default", lambda lay: default_mapping(hw, lay)),
                         ("best", lambda lay: best_mapping(hw, lay, 4096, "edp", 0)[0])):
        rs = [cost.evaluate(hw, mapper(lay), lay) for lay in layers]
        e = sum(lay.count * r.energy_pj for lay, r in zip(layers, rs))
        c = sum(lay.count * r.cycles for lay, r in zip(layers, rs))
        assert base[name]["objective"] == pytest.approx(e * c, rel=1e-12), name
    assert "## Mapper baselines" in (run / "report.md").read_text()
    n = sqlite3.connect(run / "evaluations.sqlite").execute(
        "SELECT COUNT(*) FROM evaluations WHERE phase LIKE 'baseline-%'").fetchone()[0]
    assert 1 <= n <= 2 * len(layers)
    assert main(["--workload", str(workload), "--hw", "dim=16,sp_kb=256,acc_kb=64", "--hw-iters", "3",
                 "--fidelity", "analytical", "--surrogate", str(surrogate_file), "--run-dir", str(tmp_path / "x")]) == 2
    assert "--hw fixes the design" in _err_line(capsys)


def _cli(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "search.polaris", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _count(db: Path) -> int:
    try:
        return sqlite3.connect(db).execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_kill_9_twice_then_resume_gives_the_uninterrupted_result(tmp_path, workload, surrogate_file):
    args = ["--workload", str(workload), "--fidelity", "analytical", "--hw-iters", "3", "--sw-iters", "3",
            "--sw-pool", "64", "--update-iters", "5", "--no-verilog", "--quiet", "--surrogate", str(surrogate_file)]
    ref = _cli(args + ["--run-dir", str(tmp_path / "ref")])
    assert ref.wait(300) == 0, ref.stderr.read()
    run = tmp_path / "killed"
    for target in (3, 9):
        p = _cli(args + ["--run-dir", str(run)])
        t0 = time.time()
        while _count(run / "evaluations.sqlite") < target and p.poll() is None and time.time() - t0 < 240:
            time.sleep(0.05)
        assert p.poll() is None, "the run ended before it could be killed"
        p.send_signal(signal.SIGKILL)
        assert p.wait(60) == -signal.SIGKILL
        assert target <= _count(run / "evaluations.sqlite") < 18
    p = _cli(args + ["--run-dir", str(run)])
    assert p.wait(300) == 0, p.stderr.read()
    a = json.loads((tmp_path / "ref" / "history.json").read_text())
    b = json.loads((run / "history.json").read_text())
    assert a == b
    assert _count(run / "evaluations.sqlite") == _count(tmp_path / "ref" / "evaluations.sqlite")


def test_multi_workload_codesign_scores_both_networks_on_one_design(capsys, tmp_path, workload, surrogate_file):
    other = tmp_path / "wl2.json"
    other.write_text(json.dumps([{"name": "proj", "gemm": {"m": 32, "k": 32, "n": 64}, "count": 3}]))
    run = tmp_path / "multi"
    assert main(["--workloads", f"{workload},{other}", *FAST, "--surrogate", str(surrogate_file),
                 "--run-dir", str(run)]) == 0
    hist = json.loads((run / "history.json").read_text())
    best = json.loads((run / "best.json").read_text())
    assert [lay["name"] for lay in best["layers"]] == ["conv", "fc", "proj"]
    assert best["workloads"] == [str(workload), str(other)]
    # the objective is the product of sums over the layers of both networks
    rs = [(lay["count"], lay["result"]["energy_pj"], lay["result"]["cycles"]) for lay in best["layers"]]
    assert best["objective"] == pytest.approx(sum(n * e for n, e, _ in rs) * sum(n * c for n, _, c in rs), rel=1e-12)
    assert best["objective"] == min(h["objective"] for h in hist)
