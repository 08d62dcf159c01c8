"""Every command, given an absurd size, stops with one ``error:`` line (exit 2) within
seconds, under a memory limit: nothing allocates, builds, compiles or writes first.

Each case runs as a process with ``RLIMIT_AS`` (address space) at 2 GB and a wall-clock
limit: a command that started to allocate for the size would die of MemoryError (a
traceback) or be killed, and one that started to work would run past the limit."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 2 << 30
SECONDS = 60          # generous for a loaded machine; a clean error takes 1-3 s

HUGE_GEMM = ["--gemm", "1000000000", "1000000000", "1000000000"]


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("guard")
    (d / "huge.yaml").write_text("- {name: huge, gemm: {m: 1000000000, k: 1000000000, n: 1000000000}}\n")
    (d / "heavy.yaml").write_text("- {name: heavy, gemm: {m: 1048576, k: 1048576, n: 1024}, count: 1073741824}\n")
    return d


CASES = [
    ("sim.run", HUGE_GEMM, "--gemm M must be an integer from 1 to 1,048,576"),
    ("sim.run", ["--dim", "4", "--gemm", "1048576", "1048576", "1"], "of simulation DRAM"),
    ("sim.run", ["--dim", "4", "--sp-kb", "32", "--acc-kb", "16", "--gemm", "2048", "2048", "2048"],
     "more than sim.run's limit of 8,388,608"),
    ("sim.run", ["--gemm", "4", "4", "4", "--seed", str(10**30)], "--seed must be an integer from 0"),
    ("cost.run", HUGE_GEMM, "--gemm M must be an integer from 1 to 1,048,576"),
    ("cost.run", ["--workload", "{d}/huge.yaml"], "gemm.m must be an integer from 1 to 1,048,576"),
    ("cost.run", ["--workload", "{d}/heavy.yaml"], "MACs in all (count x MACs), more than the limit"),
    ("hw.generate", ["--imem-depth", str(1 << 40), "--out-dir", "{d}/rtl"], "HardwareConfig.imem_depth must be"),
    ("search.workloads", ["bert", "--batch", "1000000000"], "batch must be an integer from 1 to 256"),
    ("search.workloads", ["{d}/huge.yaml"], "gemm.m must be an integer from 1 to 1,048,576"),
    ("search.collect", ["--fidelity", "analytical", "--workloads", "bert", "--n", "100000000000", "--out", "{d}/c"],
     "--n must be an integer >= 1 and <= 16,777,216"),
    ("search.collect", ["--fidelity", "analytical", "--workloads", "bert", "--n", "10", "--workers", "1000000",
                        "--out", "{d}/c"], "--workers must be an integer >= 1 and <="),
    ("search.collect", ["--fidelity", "analytical", "--workloads", "{d}/huge.yaml", "--n", "10", "--out", "{d}/c"],
     "gemm.m must be an integer from 1 to 1,048,576"),
]


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS semantics are Linux's")
@pytest.mark.parametrize("module, argv, message", CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_absurd_sizes_are_a_clean_error_under_a_memory_limit(files, module, argv, message):
    argv = [a.replace("{d}", str(files)) for a in argv]
    env = dict(os.environ, ACCEL_CACHE_DIR=str(files / "cache"))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO, capture_output=True, text=True,
                       timeout=SECONDS, preexec_fn=_limit, env=env)
    wall = time.perf_counter() - t0
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert p.stdout == ""
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr[-2000:]
    assert message in p.stderr
    assert wall < SECONDS
    assert not (files / "cache").exists() and not (files / "c").exists() and not (files / "rtl").exists()
