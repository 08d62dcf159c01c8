"""sim.evaluate on the RTL: verified results, infeasible mappings, the watchdog, the
cocotb and lean harnesses agreeing, the process pool, and the sim.run CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import Mapping, default_mapping
from hw.result import Result
from sim.evaluate import evaluate, evaluate_many
from tests.hw.rtl_common import CFG4

REPO = Path(__file__).resolve().parents[2]

LAYERS = [
    Layer.gemm("gemm", 10, 12, 9),
    Layer(name="c3x3", n=1, k=6, c=5, p=5, q=4, r=3, s=3, stride=1, padding=1),
    Layer(name="c3x3s2", n=2, k=4, c=8, p=3, q=3, r=3, s=3, stride=2, padding=1),
    Layer(name="dw", n=1, k=8, c=8, p=4, q=4, r=3, s=3, stride=1, padding=1, groups=8),
]


@pytest.fixture(scope="module")
def cache(sim_cache_dir):
    return sim_cache_dir


@pytest.mark.parametrize("layer", LAYERS, ids=lambda x: x.name)
def test_cocotb_and_lean_agree_and_verify(cache, layer):
    keep_l, keep_c = {}, {}
    m = default_mapping(CFG4, layer)
    lean = evaluate(CFG4, m, layer, seed=3, harness="lean", cache_dir=cache, keep=keep_l)
    coco = evaluate(CFG4, m, layer, seed=3, harness="cocotb", cache_dir=cache, keep=keep_c)
    assert lean.feasible and lean.verified and coco.verified
    assert lean.cycles == coco.cycles and lean.counts == coco.counts and lean.busy == coco.busy
    assert np.array_equal(keep_l["y"], keep_c["y"])
    assert lean.counts["macs"] == layer.macs
    assert Result.from_json(lean.to_json()) == lean


def test_infeasible_mapping_is_rejected_before_simulation(tmp_path):
    layer = Layer.gemm("big", 512, 512, 512)
    m = Mapping.for_layer(layer, spad={"P": 512, "C": 128, "K": 128}, array={"C": 4, "K": 4})
    r = evaluate(CFG4, m, layer, workdir=tmp_path)
    assert not r.feasible and "scratchpad rows" in r.reason
    assert not any(tmp_path.iterdir()), "nothing may be simulated for an infeasible mapping"


def test_forced_hang_comes_back_infeasible(cache):
    layer = LAYERS[1]
    r = evaluate(CFG4, default_mapping(CFG4, layer), layer, cache_dir=cache, max_cycles=50, timeout_s=60)
    assert not r.feasible and r.reason.startswith("watchdog")


def test_watchdog_budget_covers_serial_single_buffered_steps(cache):
    """One-row steps with a single-buffered weight tile run one DRAM latency and one
    drain per step back to back; the watchdog's budget must leave a wide margin (it
    once came within 1.1x at DIM 32 and stopped a correct run of scripts/validate_cost.py)."""
    from sim.compiler import compile_layer
    from sim.evaluate import cycle_budget

    layer = Layer(name="dw5s2", n=1, k=16, c=16, p=1, q=1, r=5, s=5, stride=2, padding=2, groups=16)
    m = Mapping.for_layer(layer, spad={}, array={}, order=("K", "R", "S", "P", "C", "N", "Q"),
                          buffers={"input": 2, "weight": 1, "output": 2})
    assert m.check(CFG4, layer)
    r = evaluate(CFG4, m, layer, cache_dir=cache)
    assert r.verified
    assert cycle_budget(compile_layer(CFG4, m, layer).program.words, CFG4) >= 4 * r.cycles


def test_evaluate_many_keeps_order(cache):
    items = [(CFG4, default_mapping(CFG4, layer), layer) for layer in LAYERS[:3]]
    results = evaluate_many(items, workers=2, progress=False, cache_dir=cache)
    assert [r.counts["macs"] for r in results] == [layer.macs for layer in LAYERS[:3]]
    assert all(r.verified for r in results)


def _slow_or_failing(args):
    """Stands in for one simulation: "slow" runs for two minutes, anything else raises."""
    import time
    if args[2].name == "slow":
        time.sleep(120)
    raise RuntimeError("the compiler failed")


def test_evaluate_many_error_stops_the_workers(monkeypatch):
    """A simulation that raises stops the ones still running: no worker is left alive
    (before, the process waited at exit for the longest simulation in flight)."""
    import multiprocessing
    import time

    import sim.evaluate as se
    monkeypatch.setattr(se, "_model", lambda *a, **k: None)
    monkeypatch.setattr(se, "_evaluate_star", _slow_or_failing)
    slow, fast = Layer.gemm("slow", 4, 4, 4), Layer.gemm("fast", 4, 4, 4)
    m = default_mapping(CFG4, slow)
    with pytest.raises(RuntimeError, match="the compiler failed"):
        evaluate_many([(CFG4, m, slow), (CFG4, m, fast)], workers=2, progress=False)
    deadline = time.monotonic() + 30
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert multiprocessing.active_children() == []


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "sim.run", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600, env=env)


def test_cli_json_and_save(cache, tmp_path, monkeypatch):
    import os
    env = dict(os.environ, ACCEL_CACHE_DIR=str(cache))
    cfg = ["--dim", "4", "--sp-kb", "16", "--acc-kb", "8", "--sp-banks", "4", "--acc-banks", "2",
           "--dma-bus-bytes", "8", "--dma-max-req-bytes", "32", "--dma-max-inflight", "4",
           "--dram-latency", "30", "--dram-bytes-per-cycle", "4", "--dram-mb", "1"]
    r = _cli(*cfg, "--gemm", "9", "7", "5", "--json", "--save", str(tmp_path / "run"), env=env)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["feasible"] and res["verified"] and res["counts"]["macs"] == 9 * 7 * 5
    A = np.load(tmp_path / "run" / "input.npy")
    B = np.load(tmp_path / "run" / "weight.npy")
    C = np.load(tmp_path / "run" / "output.npy")
    assert A.shape == (9, 7) and B.shape == (7, 5)
    assert np.array_equal(C, A.astype(np.int32) @ B.astype(np.int32))
    r = _cli(*cfg, "--conv", "1", "4", "4", "3", "3", "3", "3", "--pad", "1", env=env)
    assert r.returncode == 0 and "cycles" in r.stdout and "verified True" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--dim", "12", "--gemm", "4", "4", "4"], "error: HardwareConfig.dim must be one of 4, 8, 16, 32; got 12"),
    (["--gemm", "0", "4", "4"], "error: Layer"),
    (["--gemm", "4", "4", "4", "--mapping", "/nonexistent.json"], "error: cannot read mapping file"),
    (["--gemm", "4", "4", "4", "--trace", "out.fst"], "error: --trace writes a VCD waveform"),
])
def test_cli_bad_input_is_one_line(args, message):
    r = _cli(*args)
    assert r.returncode == 2
    assert r.stderr.strip().startswith(message) and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


# Random valid mappings (random tiling factors at every level and random DRAM loop orders,
# so partial sums are spilled and reloaded) of convolutions of every kind, on the RTL.
RANDOM_LAYERS = [
    Layer(name="1x1", n=1, k=12, c=8, p=4, q=4, r=1, s=1),
    Layer(name="1x1s2", n=1, k=8, c=12, p=3, q=3, r=1, s=1, stride=2),
    Layer(name="3x3", n=1, k=8, c=6, p=4, q=4, r=3, s=3, padding=1),
    Layer(name="3x3s2", n=2, k=8, c=8, p=3, q=3, r=3, s=3, stride=2, padding=1),
    Layer(name="7x7s2", n=1, k=8, c=3, p=4, q=4, r=7, s=7, stride=2, padding=3),
    Layer(name="dw3x3", n=1, k=12, c=12, p=4, q=4, r=3, s=3, padding=1, groups=12),
    Layer(name="g2", n=1, k=8, c=8, p=3, q=3, r=3, s=3, padding=1, groups=2),
    Layer.gemm("gemm", 12, 40, 24),
]


def _random_cases(hw, seed, n_per_layer):
    import random

    from tests.sim.test_compiler import random_mapping
    rng = random.Random(seed)
    for layer in RANDOM_LAYERS:
        for _ in range(n_per_layer):
            yield layer, random_mapping(rng, hw, layer)


@pytest.mark.parametrize("dim", [4, 8, 16, pytest.param(32, marks=pytest.mark.slow)])
def test_random_mappings_bit_exact_on_rtl(cache, dim):
    from hw.config import HardwareConfig
    from tests.hw.rtl_common import CONFIGS
    hw = CONFIGS[dim] if dim != 16 else HardwareConfig(dim=16)
    from hw.isa import Op, decode
    from sim.compiler import compile_layer
    from tests.sim.test_compiler import reduction_outside
    cases = list(_random_cases(hw, seed=dim, n_per_layer=2))
    orders = {m.order for _, m in cases}
    assert len(orders) > 4, "the sample must include non-default loop orders"
    assert any(reduction_outside(m) for _, m in cases), "the sample must spill partial sums"
    # the programs stream their pixels with COMPUTE_BLOCKs, two-level ones among them
    blocks = [[f for op, f in map(decode, compile_layer(hw, m, layer).program.words) if op == Op.COMPUTE_BLOCK]
              for layer, m in cases]
    assert all(blocks) and any(f["reps"] > 1 for b in blocks for f in b)
    results = evaluate_many([(hw, m, layer) for layer, m in cases], workers=2, progress=False,
                            cache_dir=cache, out="int8", relu=True, shift=4)
    for (layer, m), r in zip(cases, results):
        assert r.feasible and r.verified, f"{layer.name} {m.to_json()}: {r.reason}"
        assert r.counts["macs"] == layer.macs


# ---- the vectorised program statistics against per-instruction references ----------------

def _budget_by_decoding(words, hw) -> int:
    """`cycle_budget` as it was written first: one `decode` per instruction."""
    from hw.isa import ConfigTarget, Op, decode
    rate = max(1, min(hw.dma_bus_bytes, hw.dram_bytes_per_cycle))
    acc_full, total = False, 0
    for word in words:
        op, f = decode(word)
        if op == Op.CONFIG and f["funct"] == ConfigTarget.ST:
            acc_full = bool(f["acc_full"])
        elif op in (Op.MVIN, Op.MVOUT):
            elem = 4 if f["acc"] and (op == Op.MVIN or acc_full) else 1
            total += (f["rows"] * (f["cols"] * elem + hw.dma_bus_bytes) // rate
                      + f["rows"] * (1 + hw.dram_latency // hw.dma_max_inflight) + 2 + hw.dram_latency)
        elif op in (Op.PRELOAD, Op.COMPUTE_PRELOADED, Op.COMPUTE_ACCUMULATED):
            total += f["rows"] + 2 + 2 * hw.dim
        elif op == Op.COMPUTE_BLOCK:
            total += f["run"] * f["reps"] + 2 + 2 * hw.dim
        else:
            total += 1
    return 4 * (total + 2 * hw.dram_latency + 4 * hw.dim) + 20_000


def test_cycle_budget_and_weight_loads_match_decoding_each_instruction():
    from hw.isa import Op, decode, low_words
    from search.space import MappingSpace
    from sim.compiler import compile_layer
    from sim.evaluate import _weight_loads, cycle_budget

    layers = [Layer(name="c3", n=1, k=24, c=20, p=6, q=5, r=3, s=3, stride=1, padding=1),
              Layer(name="g", n=2, k=16, c=16, p=4, q=4, r=1, s=1, groups=4),
              Layer(name="s2", n=1, k=12, c=8, p=4, q=4, r=3, s=3, stride=2, padding=1)]
    checked, int8_out = 0, 0
    for dim in (4, 8):
        hw = HardwareConfig(dim=dim, sp_kb=32, acc_kb=16)
        for layer in layers:
            for m in MappingSpace(hw, layer, 2).sample(6, seed=dim, method="sobol"):
                for out, block in (("int32", True), ("int8", True), ("int32", False)):
                    words = compile_layer(hw, m, layer, out=out, block=block).program.words
                    assert any(decode(w)[0] == Op.COMPUTE_BLOCK for w in words) == block
                    assert cycle_budget(words, hw) == _budget_by_decoding(words, hw)
                    assert cycle_budget(words, hw, low_words(words)) == cycle_budget(words, hw)
                    ref = sum(f["rows"] for op, f in map(decode, words) if op == Op.PRELOAD and not f["b_none"])
                    assert _weight_loads(words) == ref
                    checked += 1
                    int8_out += out == "int8"
    assert checked == 108 and int8_out == 36
    assert cycle_budget([], CFG4) == _budget_by_decoding([], CFG4)


def test_evaluate_leaves_no_scratch_directory(tmp_path, monkeypatch):
    """Its own work directory (program and DRAM images) is removed after the run."""
    import tempfile

    from hw.config import HardwareConfig
    from hw.layer import Layer
    from hw.mapping import default_mapping
    from sim.evaluate import evaluate

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    hw = HardwareConfig(dim=4, sp_kb=16, acc_kb=8)
    layer = Layer.gemm("g", m=8, k=8, n=8)
    r = evaluate(hw, default_mapping(hw, layer), layer)
    assert r.feasible and r.verified
    assert not list(tmp_path.glob("accel-eval-*"))
