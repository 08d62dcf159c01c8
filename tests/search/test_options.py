"""search.options: the shared option checks and their one-line messages."""

import pytest

from search.options import (check_area_budget, check_bool, check_choice, check_int, check_int_limits,
                            check_number)


def test_check_int_accepts_bounds_and_rejects_bool_float_and_out_of_range():
    assert check_int("hw_iters", 1, 1, 8) == 1 and check_int("hw_iters", 8, 1, 8) == 8
    for bad in (0, 9, True, 2.0, "3", None):
        with pytest.raises(ValueError) as e:
            check_int("hw_iters", bad, 1, 8)
        assert str(e.value) == f"hw-iters must be an integer in 1..8; got {bad!r}"


def test_check_int_limits_names_the_first_bad_field():
    class O:
        a, b = 3, 5000
    check_int_limits(O, {"a": (1, 3)})
    with pytest.raises(ValueError, match=r"^b must be an integer in 0\.\.4,096; got 5000$"):
        check_int_limits(O, {"a": (1, 3), "b": (0, 4096)})


def test_check_number_closed_and_open_ranges():
    assert check_number("kappa", 0, 0, 100) == 0.0 and isinstance(check_number("kappa", 3, 0, 100), float)
    with pytest.raises(ValueError, match=r"^kappa must be a number in 0\.\.100; got -1$"):
        check_number("kappa", -1, 0, 100)
    with pytest.raises(ValueError, match=r"^beta must be a number in 0\.\.10,000; got 20000\.0$"):
        check_number("beta", 2e4, 0, 1e4)
    with pytest.raises(ValueError, match=r"^lr must be a number in \(0, 1\]; got 0$"):
        check_number("lr", 0, 0, 1, lo_open=True)
    assert check_number("lr", 1, 0, 1, lo_open=True) == 1.0
    with pytest.raises(ValueError):
        check_number("lr", True, 0, 1)


def test_area_budget_bool_and_choice():
    assert check_area_budget(None) is None and check_area_budget(2.5) == 2.5
    for bad in (0, -1.0, float("inf"), float("nan"), True, "3"):
        with pytest.raises(ValueError, match="^area-budget must be a positive number of mm\\^2; got "):
            check_area_budget(bad)
    assert check_bool("buffering", False) is False
    with pytest.raises(ValueError, match=r"^buffering must be True or False; got 1$"):
        check_bool("buffering", 1)
    assert check_choice("hw_search", "enumerate", ("continuous", "enumerate")) == "enumerate"
    with pytest.raises(ValueError, match=r"^hw-search must be one of continuous, enumerate; got 'grid'$"):
        check_choice("hw_search", "grid", ("continuous", "enumerate"))


def test_check_area_budget_reachable():
    from cost.energy import area_mm2
    from hw.config import HardwareConfig
    from search.options import check_area_budget_reachable

    check_area_budget_reachable(None)
    hw = HardwareConfig(dim=16, sp_kb=256, acc_kb=64)
    own = float(area_mm2(16, 256, 64))
    check_area_budget_reachable(own, hw)
    with pytest.raises(ValueError, match=rf"^--area-budget 1 mm\^2 is below the given design's area \({own:.3f}"):
        check_area_budget_reachable(1.0, hw)
    smallest = float(area_mm2(4, 8, 8))        # the space's smallest: dim 4, the smallest memories
    check_area_budget_reachable(smallest * 1.0001)
    with pytest.raises(ValueError, match=rf"below the smallest design of the space \({smallest:.3f} mm\^2\)"):
        check_area_budget_reachable(smallest * 0.999)
