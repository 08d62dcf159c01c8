"""scripts/validate_differentiable.py on a committed RTL dataset: the torch model's energy
is the RTL's to the last bit (its access counts equal the simulator's counters, priced by
the same coefficients), and its Spearman figures against scipy's on the same columns."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("validate_differentiable", REPO / "scripts" / "validate_differentiable.py")
vd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vd)
DATA = REPO / "docs" / "datasets" / "rtl_seed0_n1280.parquet"


@pytest.fixture(scope="module")
def priced():
    rows = vd.rows_of([DATA])[:150]
    return rows, vd.price(rows)


def test_energy_equals_the_rtls(priced):
    rows, c = priced
    assert len(rows) == 150
    np.testing.assert_allclose(c["diff_energy"], [r["energy_pj"] for r in rows], rtol=1e-12)
    np.testing.assert_allclose(c["rtl_cycles"], [r["cycles"] for r in rows])


def test_correlations_are_scipys(priced):
    _, c = priced
    res = vd.correlations(c, np.ones(len(c["workload"]), bool))
    assert res["rows"] == 150
    assert res["diff_cycles"] == pytest.approx(spearmanr(c["diff_cycles"], c["rtl_cycles"]).statistic)
    assert res["diff_edp"] == pytest.approx(spearmanr(c["diff_cycles"] * c["diff_energy"],
                                                      c["rtl_cycles"] * c["rtl_energy"]).statistic)
    assert res["diff_energy"] == pytest.approx(1.0)
    assert res["ana_cycles"] > res["diff_cycles"]        # the roofline misses what the analytical model keeps
