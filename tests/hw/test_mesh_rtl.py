"""PE and mesh timing and arithmetic on Verilator (cocotb benches in cocotb_mesh.py)."""

import pytest

from hw.config import HardwareConfig
from sim.build import run_cocotb_test
from tests.hw.cocotb_mesh import generate_mesh, generate_pe

MODULE = "tests.hw.cocotb_mesh"


def test_pe_mac_and_double_buffer(build_model, tmp_path):
    model = build_model(HardwareConfig(dim=4), generate=generate_pe)
    run_cocotb_test(model, MODULE, testcase="pe_mac_and_double_buffer", test_dir=tmp_path, timeout_s=120)


@pytest.mark.parametrize("dim", [4, 8, pytest.param(16, marks=pytest.mark.slow)])
def test_mesh_latency_and_throughput(build_model, tmp_path, dim):
    """Latency 2*DIM-1 for an isolated row; one row per cycle back to back."""
    model = build_model(HardwareConfig(dim=dim), generate=generate_mesh)
    run_cocotb_test(model, MODULE, testcase="mesh_latency_and_throughput", env={"MESH_DIM": str(dim)},
                    test_dir=tmp_path, timeout_s=300)
