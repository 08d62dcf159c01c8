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
from dataclasses import dataclass

__all__ = ["HardwareConfig", "ConfigError", "MAX_MEM_KB"]

#: Largest scratchpad or accumulator capacity in KB (the range of sp_kb and acc_kb).
MAX_MEM_KB = 256


class ConfigError(ValueError):
    """A hardware parameter is outside its allowed range (one-line message)."""


def _pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


# name -> (description of the allowed values, predicate)
_RULES = {
    "dim": ("one of 4, 8, 16, 32", lambda v: v in (4, 8, 16, 32)),
    "sp_kb": ("a multiple of 8 from 8 to 256", lambda v: 8 <= v <= MAX_MEM_KB and v % 8 == 0),
    "acc_kb": ("a multiple of 8 from 8 to 256", lambda v: 8 <= v <= MAX_MEM_KB and v % 8 == 0),
    "sp_banks": ("one of 1, 2, 4, 8", lambda v: v in (1, 2, 4, 8)),
    "acc_banks": ("one of 1, 2, 4, 8", lambda v: v in (1, 2, 4, 8)),
    "dma_bus_bytes": ("one of 4, 8, 16, 32, 64", lambda v: v in (4, 8, 16, 32, 64)),
    "dma_max_req_bytes": ("a power of two from 4 to 4096", lambda v: _pow2(v) and 4 <= v <= 4096),
    "dma_max_inflight": ("an integer from 1 to 64", lambda v: 1 <= v <= 64),
    "dram_latency": ("an integer from 1 to 1000 cycles", lambda v: 1 <= v <= 1000),
    "dram_bytes_per_cycle": ("an integer from 1 to 64", lambda v: 1 <= v <= 64),
    "dram_mb": ("a power of two from 1 to 256", lambda v: _pow2(v) and 1 <= v <= 256),
    "imem_depth": ("a power of two from 64 to 65536", lambda v: _pow2(v) and 64 <= v <= 65536),
}


@dataclass(frozen=True)
class HardwareConfig:
    """Parameters of one accelerator instance.

    dim                   systolic array is dim x dim PEs (4, 8, 16, 32)
    sp_kb                 scratchpad capacity in KB (rows of dim int8)
    acc_kb                accumulator capacity in KB (rows of dim int32)
    sp_banks, acc_banks   independent banks (one read and one write port each)
    dma_bus_bytes         DMA data bus width: bytes per beat
    dma_max_req_bytes     largest DRAM request; requests never cross a boundary of this size
    dma_max_inflight      DRAM requests outstanding at once, per direction (read, write)
    dram_latency          cycles from a request's issue to its first data (reads) or ack (writes)
    dram_bytes_per_cycle  sustained DRAM bandwidth, shared by reads and writes
    dram_mb               size of the simulation-only DRAM model
    imem_depth            instruction buffer depth in 128-bit instructions (a FIFO the
                          host refills while the program runs; programs may be longer)
    """

    dim: int = 16
    sp_kb: int = 256
    acc_kb: int = 64
    sp_banks: int = 4
    acc_banks: int = 2
    dma_bus_bytes: int = 16
    dma_max_req_bytes: int = 64
    dma_max_inflight: int = 16
    dram_latency: int = 40
    dram_bytes_per_cycle: int = 8
    dram_mb: int = 16
    imem_depth: int = 4096

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            allowed, ok = _RULES[f.name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"HardwareConfig.{f.name} must be an integer, {allowed}; got {value!r}")
            if not ok(value):
                raise ConfigError(f"HardwareConfig.{f.name} must be {allowed}; got {value!r}")
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
