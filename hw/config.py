"""Hardware configuration: the one place where an accelerator parameter is defined.

`HardwareConfig` is a frozen dataclass. Every other part of the toolkit (the RTL
generator, the program builder, the compiler, the cost model and the search spaces)
reads its parameters from here and from the quantities it derives, never from a copy.

Defaults follow Gemmini's default configuration: a 16x16 array, a 256 KB scratchpad
in 4 banks, a 64 KB accumulator in 2 banks, a 16-byte DMA bus, 64-byte requests with
16 in flight; DRAM at 8 bytes/cycle as in Gemmini's Timeloop models. The DRAM latency
(40 cycles) and the DRAM size of the simulation-only model are this toolkit's choices.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

__all__ = ["HardwareConfig", "ConfigError", "MAX_MEM_KB", "EXEC_SLOTS", "HW_FIELDS", "ParamSpec",
           "param_spec"]

#: Largest scratchpad or accumulator capacity in KB (the range of sp_kb and acc_kb).
MAX_MEM_KB = 256

#: Slots of each unit's scoreboard in the frontend (instructions in flight per unit):
#: the RTL (`hw.controllers`, `hw.frontend`) and the analytical model read it here.
EXEC_SLOTS = 16


class ConfigError(ValueError):
    """A hardware parameter is outside its allowed range (one-line message)."""


def _pow2(lo: int, hi: int) -> tuple[int, ...]:
    return tuple(1 << i for i in range(lo.bit_length() - 1, hi.bit_length()))


@dataclass(frozen=True)
class ParamSpec:
    """What one `HardwareConfig` field may hold, for every tool that reads it.

    ``values`` is the full set of allowed values, ascending (a tuple or a range: every
    field is an integer with a finite set), ``allowed`` the same in words (used in
    error messages), ``unit`` its unit ("" for a count), ``help`` one line for
    command-line help and documentation."""

    values: tuple | range
    allowed: str
    unit: str
    help: str

    @property
    def lo(self) -> int:
        return self.values[0]

    @property
    def hi(self) -> int:
        return self.values[-1]


def _param(default: int, values, allowed: str, unit: str, help: str):
    return field(default=default, metadata={"spec": ParamSpec(values, allowed, unit, help)})


@dataclass(frozen=True)
class HardwareConfig:
    """Parameters of one accelerator instance.

    Each field's allowed values, unit and help text are its `ParamSpec` (`param_spec`,
    ``dataclasses.fields(HardwareConfig)[i].metadata["spec"]``): the command-line
    options, the search grid and the cost model's field order are derived from them.
    """

    dim: int = _param(16, (4, 8, 16, 32), "one of 4, 8, 16, 32", "PEs",
                      "systolic array is dim x dim PEs")
    sp_kb: int = _param(256, range(8, MAX_MEM_KB + 1, 8), "a multiple of 8 from 8 to 256", "KB",
                        "scratchpad capacity in KB (rows of dim int8)")
    acc_kb: int = _param(64, range(8, MAX_MEM_KB + 1, 8), "a multiple of 8 from 8 to 256", "KB",
                         "accumulator capacity in KB (rows of dim int32)")
    sp_banks: int = _param(4, (1, 2, 4, 8), "one of 1, 2, 4, 8", "",
                           "independent scratchpad banks (one read and one write port each)")
    acc_banks: int = _param(2, (1, 2, 4, 8), "one of 1, 2, 4, 8", "",
                            "independent accumulator banks (one read and one write port each)")
    dma_bus_bytes: int = _param(16, (4, 8, 16, 32, 64), "one of 4, 8, 16, 32, 64", "bytes",
                                "DMA data bus width: bytes per beat")
    dma_max_req_bytes: int = _param(64, _pow2(4, 4096), "a power of two from 4 to 4096", "bytes",
                                    "largest DRAM request; requests never cross a boundary of this size")
    dma_max_inflight: int = _param(16, range(1, 65), "an integer from 1 to 64", "requests",
                                   "DRAM requests outstanding at once, per direction (read, write)")
    dram_latency: int = _param(40, range(1, 1001), "an integer from 1 to 1000 cycles", "cycles",
                               "cycles from a request's issue to its first data (reads) or ack (writes)")
    dram_bytes_per_cycle: int = _param(8, range(1, 65), "an integer from 1 to 64", "bytes/cycle",
                                       "sustained DRAM bandwidth, shared by reads and writes")
    dram_mb: int = _param(16, _pow2(1, 256), "a power of two from 1 to 256", "MB",
                          "size of the simulation-only DRAM model")
    imem_depth: int = _param(4096, _pow2(64, 65536), "a power of two from 64 to 65536", "instructions",
                             "instruction buffer depth in 128-bit instructions (a FIFO the host "
                             "refills while the program runs; programs may be longer)")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            spec = f.metadata["spec"]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"HardwareConfig.{f.name} must be an integer, {spec.allowed}; got {value!r}")
            if value not in spec.values:
                raise ConfigError(f"HardwareConfig.{f.name} must be {spec.allowed}; got {value!r}")
        if self.dma_max_req_bytes < self.dma_bus_bytes:
            raise ConfigError(
                f"HardwareConfig.dma_max_req_bytes must be at least dma_bus_bytes "
                f"({self.dma_bus_bytes}); got {self.dma_max_req_bytes}")

    # ---- derived quantities -------------------------------------------------------
    @property
    def sp_rows(self) -> int:
        """Scratchpad rows (each dim int8 elements)."""
        return self.sp_kb * 1024 // self.dim

    @property
    def sp_bank_rows(self) -> int:
        return self.sp_rows // self.sp_banks

    @property
    def acc_rows(self) -> int:
        """Accumulator rows (each dim int32 elements)."""
        return self.acc_kb * 1024 // (4 * self.dim)

    @property
    def acc_bank_rows(self) -> int:
        return self.acc_rows // self.acc_banks

    @property
    def dram_bytes(self) -> int:
        return self.dram_mb << 20

    @property
    def dram_words(self) -> int:
        """DRAM model depth in bus-wide words."""
        return self.dram_bytes // self.dma_bus_bytes

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.dim * self.dim

    def superset(self) -> "HardwareConfig":
        """This configuration with the largest scratchpad and accumulator (256 KB each).

        A simulation model generated with ``capacity_ports`` (`hw.top.Top`) from the
        superset runs any capacity of the same family cycle for cycle: the memories'
        bank boundaries come from ports set to this configuration's bank sizes."""
        return dataclasses.replace(self, sp_kb=MAX_MEM_KB, acc_kb=MAX_MEM_KB)

    # ---- serialisation ------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HardwareConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown HardwareConfig field(s) {unknown}; allowed: {sorted(names)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "HardwareConfig":
        return cls.from_dict(json.loads(s))

    def key(self) -> str:
        """Short stable identifier, e.g. for build directories."""
        import hashlib
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]


#: Field names in declaration order: the column order of every array form of a
#: configuration (the cost model's hardware matrix, dataset columns).
HW_FIELDS = tuple(f.name for f in dataclasses.fields(HardwareConfig))


def param_spec(name: str) -> ParamSpec:
    """The `ParamSpec` of field ``name``; ConfigError naming the fields if there is none."""
    for f in dataclasses.fields(HardwareConfig):
        if f.name == name:
            return f.metadata["spec"]
    raise ConfigError(f"unknown HardwareConfig field {name!r}; allowed: {list(HW_FIELDS)}")
