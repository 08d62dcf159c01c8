"""Energy per access and area of a configuration (public 40 nm tables).

Energy of a run = sum over the access counters of ``count x energy per access`` (the
counters are `hw.result.COUNT_KEYS`, the RTL's own names), so one function prices both
the analytical model's predicted counts and the RTL's measured counters.

Sources (every default below names its own):

* DOSA (Hong et al., "DOSA: Differentiable Model-Based One-Loop Search for DNN
  Accelerators", MICRO 2023), Gemmini energy model derived with Accelergy/CACTI at 40 nm:
  8-bit MAC 0.561 pJ; weight register write 0.487 pJ; accumulator SRAM (one 32-bit word)
  0.1005 * (acc_KB / DIM) + 1.94 pJ; scratchpad SRAM (one byte) 0.02513 * sp_KB + 0.49 pJ;
  DRAM 100 pJ per byte. (Accelergy's LPDDR4 table gives 64 pJ/byte; use an override file
  to price DRAM that way.)
* Area: a linear fit to DOSA's Timeloop/Accelergy dataset at 40 nm (median error 4.6 %),
  ``mm^2 = 4.045e-4 * PEs + 5.550e-3 * acc_KB + 2.604e-3 * sp_KB + 1.088e-3 * DIM + 0.0138``.

Accounting per counter (one counter unit = one local-memory *row*, as in the RTL):

    macs               x mac_pj
    weight_loads       x dim x weight_reg_pj        (one PE weight register per element)
    sp_reads/writes    x dim x sp_pj(sp_kb)         (a scratchpad row holds dim bytes)
    acc_reads/writes   x dim x acc_pj(acc_kb, dim)  (an accumulator row holds dim words)
    dram_bytes_*       x dram_pj_per_byte

`EnergyTable.from_file` reads a JSON or YAML file whose keys override any of the fields
(unknown keys are an error naming the allowed ones).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.cli import first_line

__all__ = ["EnergyError", "EnergyTable", "area_mm2", "energy_breakdown", "energy_pj"]


class EnergyError(ValueError):
    """A bad energy table or override file (one-line message)."""


@dataclass(frozen=True)
class EnergyTable:
    """Energy per access in pJ; memory energies are affine in the memory size."""

    mac_pj: float = 0.561                 # DOSA (Accelergy/CACTI 40 nm): 8-bit MAC
    weight_reg_pj: float = 0.487          # DOSA: PE weight register, per element
    acc_pj_slope: float = 0.1005          # DOSA: accumulator word, x (acc_KB / DIM)
    acc_pj_base: float = 1.94             # DOSA: accumulator word, constant term
    sp_pj_slope: float = 0.02513          # DOSA: scratchpad byte, x sp_KB
    sp_pj_base: float = 0.49              # DOSA: scratchpad byte, constant term
    dram_pj_per_byte: float = 100.0       # DOSA: DRAM (Accelergy LPDDR4: 64)
    # Area fit to DOSA's Timeloop/Accelergy data (40 nm), mm^2 per unit
    area_per_pe: float = 4.045e-4
    area_per_acc_kb: float = 5.550e-3
    area_per_sp_kb: float = 2.604e-3
    area_per_dim: float = 1.088e-3
    area_const: float = 0.0138

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) or v < 0:
                raise EnergyError(f"EnergyTable.{f.name} must be a finite number >= 0; got {v!r}")
            object.__setattr__(self, f.name, float(v))

    # ---- per-access energies (vectorised over numpy arrays) ---------------------------
    def sp_byte_pj(self, sp_kb):
        return self.sp_pj_slope * np.asarray(sp_kb, dtype=float) + self.sp_pj_base

    def acc_word_pj(self, acc_kb, dim):
        return self.acc_pj_slope * (np.asarray(acc_kb, dtype=float) / np.asarray(dim, dtype=float)) \
            + self.acc_pj_base

    # ---- overrides ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict) -> EnergyTable:
        if not isinstance(d, dict):
            raise EnergyError(f"an energy table must be a mapping of field -> pJ; got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names), key=str)
        if unknown:
            raise EnergyError(f"unknown energy table key(s) {unknown}; allowed: {names}")
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> EnergyTable:
        """Defaults overridden by the keys of a JSON or YAML file."""
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise EnergyError(f"cannot read energy table {str(p)!r}: {e.strerror}") from None
        try:
            if p.suffix.lower() in (".yaml", ".yml"):
                import yaml
                d = yaml.safe_load(text)
            else:
                d = json.loads(text)
        except Exception as e:  # noqa: BLE001 - any parse error becomes one line
            raise EnergyError(f"energy table {str(p)!r} is not valid JSON/YAML: {first_line(e)}") from None
        try:
            return cls.from_dict(d or {})
        except EnergyError as e:
            raise EnergyError(f"{p}: {e}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


DEFAULT_TABLE = EnergyTable()


def energy_breakdown(counts: dict, dim, sp_kb, acc_kb, table: EnergyTable = DEFAULT_TABLE) -> dict:
    """Energy in pJ per component from counters (`hw.result.COUNT_KEYS`); numpy-vectorised:
    every value may be an array (one entry per sample) or a scalar."""
    f = lambda k: np.asarray(counts[k], dtype=float)
    dim = np.asarray(dim, dtype=float)
    sp_row = dim * table.sp_byte_pj(sp_kb)
    acc_row = dim * table.acc_word_pj(acc_kb, dim)
    return {
        "mac": f("macs") * table.mac_pj,
        "weight_reg": f("weight_loads") * dim * table.weight_reg_pj,
        "scratchpad": (f("sp_reads") + f("sp_writes")) * sp_row,
        "accumulator": (f("acc_reads") + f("acc_writes")) * acc_row,
        "dram": (f("dram_bytes_read") + f("dram_bytes_written")) * table.dram_pj_per_byte,
    }


def energy_pj(counts: dict, dim, sp_kb, acc_kb, table: EnergyTable = DEFAULT_TABLE):
    """Total energy in pJ (sum of `energy_breakdown`); array in, array out."""
    parts = energy_breakdown(counts, dim, sp_kb, acc_kb, table)
    return sum(parts.values())


def area_mm2(dim, sp_kb, acc_kb, table: EnergyTable = DEFAULT_TABLE):
    """Area in mm^2 of a configuration (DOSA's 40 nm fit); numpy-vectorised."""
    dim = np.asarray(dim, dtype=float)
    return (table.area_per_pe * dim * dim + table.area_per_acc_kb * np.asarray(acc_kb, dtype=float)
            + table.area_per_sp_kb * np.asarray(sp_kb, dtype=float) + table.area_per_dim * dim
            + table.area_const)
