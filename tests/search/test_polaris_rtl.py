"""Polaris with the RTL in the loop (slow: Verilator models): every sample simulated and
verified, each triple simulated once, and a simulation past the wall-clock watchdog
counted infeasible without stopping the run."""

import math

import pytest

from hw.config import HardwareConfig
from hw.layer import Layer
from search.evaluators import RTLEvaluator
from search.optimizers.polaris import PolarisOptions, run_polaris
from search.runs import RunDir

LAYERS = [Layer.gemm("fc", m=16, k=32, n=16), Layer.conv("conv", n=1, k=16, c=8, p=4, q=4, r=3, s=3, padding=1)]
HW = HardwareConfig(dim=8, sp_kb=64, acc_kb=16)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("module_torch_thread")]


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory):
    from search.polaris_surrogate import SurrogateRecipe, default_surrogate

    rec = SurrogateRecipe(low_workloads=("resnet50", "bert"), low_n=2048, low_epochs=2, rtl_rows=64, dkl_iters=30)
    return default_surrogate(rec, root=tmp_path_factory.getbasetemp() / "polaris-cache", log=lambda s: None,
                             progress=False)[0]


def test_software_dse_on_the_rtl_is_verified_and_stored_once(tmp_path, surrogate):
    opts = PolarisOptions(sw_iters=2, sw_pool=32, update_iters=1)
    with RunDir.open(tmp_path / "r", opts.to_dict(), seeds={"seed": 0}) as run:
        res = run_polaris(LAYERS, opts, RTLEvaluator(workers=2), run, surrogate=surrogate, hardware=HW)
        assert run.count("rtl") == 2 * len(LAYERS)
    for s in res.samples:
        assert all(r.feasible and r.verified and r.fidelity == "rtl" for r in s.results)
        assert math.isfinite(s.objective)
    assert res.best is not None and res.timings["sim_run_s"] > 0 and res.timings["sim_compile_s"] > 0


def test_a_simulation_past_the_wall_clock_limit_does_not_stop_the_run(surrogate):
    opts = PolarisOptions(sw_iters=1, sw_pool=8, update_iters=1)
    res = run_polaris(LAYERS, opts, RTLEvaluator(workers=2, timeout_s=1e-3), None, surrogate=surrogate, hardware=HW)
    assert res.best is None
    assert all(not r.feasible and "killed after 0.001 s wall time" in r.reason for r in res.samples[0].results)
