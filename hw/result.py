"""Result vocabulary: what an evaluator returns for one (HardwareConfig, Mapping, Layer).

Both evaluators, the RTL one in sim/ (fidelity "rtl") and the analytical one in cost/
(fidelity "analytical"), return a `Result`, so datasets, surrogates and the search
treat them alike. The RTL generator (hw/top.py and the units) never imports this.

Fields
    cycles       total cycles of the layer (one occurrence), None if infeasible
    busy         {"load", "exec", "store"}: busy cycles of the three units
    counts       exactly COUNT_KEYS: scratchpad reads/writes and accumulator reads/writes
                 (in rows), DRAM bytes read/written, MACs issued, weight (PRELOAD) loads
    utilisation  macs / (dim^2 * cycles), None if infeasible
    feasible     False when the mapping does not fit or the run failed; then `reason`
    reason       one line explaining why infeasible (None when feasible)
    verified     True when the output was checked against a reference (RTL)
    fidelity     "rtl" or "analytical"
    energy_pj, area_mm2   optional (None when not computed)
    extra        free-form JSON-serialisable dict (wall time, notes, ...)
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field

__all__ = ["BUSY_KEYS", "COUNT_KEYS", "FIDELITIES", "Result", "ResultError"]

COUNT_KEYS = ("sp_reads", "sp_writes", "acc_reads", "acc_writes",
              "dram_bytes_read", "dram_bytes_written", "macs", "weight_loads")
BUSY_KEYS = ("load", "exec", "store")
FIDELITIES = ("rtl", "analytical")


class ResultError(ValueError):
    """A result record is malformed (one-line message)."""


def _as_int(name: str, v) -> int:
    if isinstance(v, bool):
        raise ResultError(f"Result.{name} must be an integer; got {v!r}")
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real) and math.isfinite(v) and float(v).is_integer():
        return int(v)
    raise ResultError(f"Result.{name} must be an integer; got {v!r}")


def _as_float_or_none(name: str, v):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ResultError(f"Result.{name} must be a number or None; got {v!r}")
    return float(v)


def _int_dict(name: str, d, keys: tuple) -> dict:
    if not isinstance(d, dict):
        raise ResultError(f"Result.{name} must be a dict with keys {list(keys)}; got {type(d).__name__}")
    if set(d) != set(keys):
        missing = [k for k in keys if k not in d]
        unknown = sorted(set(d) - set(keys), key=str)
        raise ResultError(f"Result.{name} must have exactly the keys {list(keys)}; "
                          f"missing {missing}, unknown {unknown}")
    out = {}
    for k in keys:
        v = _as_int(f"{name}[{k!r}]", d[k])
        if v < 0:
            raise ResultError(f"Result.{name}[{k!r}] must be >= 0; got {v}")
        out[k] = v
    return out


@dataclass(frozen=True)
class Result:
    """One evaluation of (HardwareConfig, Mapping, Layer); see the module docstring."""

    cycles: int | None
    busy: dict
    counts: dict
    utilisation: float | None
    feasible: bool
    reason: str | None
    verified: bool
    fidelity: str
    energy_pj: float | None = None
    area_mm2: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.cycles is not None:
            c = _as_int("cycles", self.cycles)
            if c < 0:
                raise ResultError(f"Result.cycles must be >= 0 or None; got {c}")
            object.__setattr__(self, "cycles", c)
        object.__setattr__(self, "busy", _int_dict("busy", self.busy, BUSY_KEYS))
        object.__setattr__(self, "counts", _int_dict("counts", self.counts, COUNT_KEYS))
        for name in ("utilisation", "energy_pj", "area_mm2"):
            object.__setattr__(self, name, _as_float_or_none(name, getattr(self, name)))
        for name in ("feasible", "verified"):
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise ResultError(f"Result.{name} must be a bool; got {v!r}")
        if self.reason is not None and not isinstance(self.reason, str):
            raise ResultError(f"Result.reason must be a string or None; got {self.reason!r}")
        if not self.feasible and not self.reason:
            raise ResultError("Result.reason must say why when feasible is False")
        if self.fidelity not in FIDELITIES:
            raise ResultError(f"Result.fidelity must be one of {', '.join(FIDELITIES)}; got {self.fidelity!r}")
        if not isinstance(self.extra, dict):
            raise ResultError(f"Result.extra must be a dict; got {type(self.extra).__name__}")
        object.__setattr__(self, "extra", dict(self.extra))

    # ---- derived ----------------------------------------------------------------------
    @property
    def edp(self) -> float | None:
        """Energy-delay product energy_pj * cycles (pJ x cycles); None if either is missing."""
        if self.energy_pj is None or self.cycles is None:
            return None
        return self.energy_pj * self.cycles

    @staticmethod
    def utilisation_of(macs: int, dim: int, cycles: int | None) -> float | None:
        """macs / (dim^2 * cycles), None when cycles is None or 0."""
        if not cycles:
            return None
        return macs / (dim * dim * cycles)

    # ---- constructors -----------------------------------------------------------------
    @classmethod
    def infeasible(cls, reason: str, fidelity: str, **extra) -> Result:
        """An infeasible result: no cycles, zero counts, `reason` says why."""
        return cls(cycles=None, busy={k: 0 for k in BUSY_KEYS}, counts={k: 0 for k in COUNT_KEYS},
                   utilisation=None, feasible=False, reason=reason, verified=False,
                   fidelity=fidelity, extra=dict(extra))

    # ---- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {f.name: (dict(getattr(self, f.name)) if isinstance(getattr(self, f.name), dict)
                         else getattr(self, f.name))
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        if not isinstance(d, dict):
            raise ResultError(f"Result.from_dict needs a dict; got {type(d).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(fields), key=str)
        if unknown:
            raise ResultError(f"unknown Result field(s) {unknown}; allowed: {fields}")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [f for f in required if f not in d]
        if missing:
            raise ResultError(f"missing Result field(s) {missing}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> Result:
        return cls.from_dict(json.loads(s))
