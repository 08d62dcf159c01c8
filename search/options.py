"""Validation of optimiser options: one rule and one message per kind of value, shared by
every optimiser's frozen options dataclass (Spotlight, Polaris and the baselines).

Each check raises ValueError with one line that names the option as its CLI flag (``_``
written ``-``), the allowed range and the value given; the numeric checks return the
value as the type the optimiser stores (float for numbers).
"""

from __future__ import annotations

import math


def _flag(name: str) -> str:
    return name.replace("_", "-")


def check_int(name: str, v, lo: int, hi: int) -> int:
    """An integer (not a bool) in lo..hi inclusive."""
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{_flag(name)} must be an integer in {lo}..{hi:,}; got {v!r}")
    return v


def check_int_limits(options, limits: dict) -> None:
    """`check_int` for every ``name: (lo, hi)`` of ``limits`` on ``options``' fields."""
    for name, (lo, hi) in limits.items():
        check_int(name, getattr(options, name), lo, hi)


def check_number(name: str, v, lo: float, hi: float, *, lo_open: bool = False,
                 text: str | None = None) -> float:
    """A real number (not a bool) in lo..hi (``lo_open``: lo excluded); returned as float.
    ``text`` replaces the range in the message."""
    ok = (not isinstance(v, bool) and isinstance(v, (int, float))
          and (lo < v if lo_open else lo <= v) and v <= hi)
    if not ok:
        rng = text or (f"({lo:g}, {hi:g}]" if lo_open else f"{lo:g}..{hi:,g}")
        raise ValueError(f"{_flag(name)} must be a number in {rng}; got {v!r}")
    return float(v)


def check_area_budget(b) -> float | None:
    """None (no budget) or a positive finite area in mm^2."""
    if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b < math.inf):
        raise ValueError(f"area-budget must be a positive number of mm^2; got {b!r}")
    return b


def check_area_budget_reachable(b, hardware=None) -> None:
    """A one-line ValueError when the area budget ``b`` (mm^2, or None) is below the area
    of ``hardware`` (a given design) or, without one, of the smallest design of the space:
    no design could be tried."""
    if b is None:
        return
    from .optimizers.spotlight import hardware_candidates
    from .space import HardwareSpace

    area = hardware_candidates([hardware] if hardware is not None else HardwareSpace(), None)[4]
    if b < area.min():
        what = "the given design's area" if hardware is not None else "the smallest design of the space"
        raise ValueError(f"--area-budget {b:g} mm^2 is below {what} ({area.min():.3f} mm^2)")


def check_bool(name: str, v) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{_flag(name)} must be True or False; got {v!r}")
    return v


def check_choice(name: str, v, choices) -> str:
    if v not in choices:
        raise ValueError(f"{_flag(name)} must be one of {', '.join(choices)}; got {v!r}")
    return v
