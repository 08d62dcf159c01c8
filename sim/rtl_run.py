"""Run accelerator programs on the Verilator model through cocotb (verification path).

`run_programs(model, cases)` writes each `ProgramCase` (instruction words, DRAM image,
dump range, cycle budget) to a case directory, runs them all in one simulator process
with `sim.program_tb`, and returns one `ProgramOutcome` per case: the counters, whether
it finished, faulted or hit the watchdog, and the DRAM image updated with the dumped
words, so the caller can check outputs against a reference.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hw.program import DramImage, write_imem_hex
from sim.build import BuiltModel, run_cocotb_test

__all__ = ["ProgramCase", "ProgramOutcome", "run_programs", "default_cycle_budget", "write_cases",
           "read_outcomes"]


@dataclass(frozen=True)
class ProgramCase:
    name: str
    words: Sequence[int]
    image: DramImage
    dump_lo: int            # DRAM word range to read back (inclusive)
    dump_hi: int
    max_cycles: int
    #: values of the model's constant input ports for this run, as ((name, value), ...):
    #: the bank sizes ``sp_bank_rows`` / ``acc_bank_rows`` of a model with capacity ports
    ports: tuple = ()


@dataclass(frozen=True)
class ProgramOutcome:
    case: ProgramCase
    counters: dict
    done: bool
    fault: bool
    timed_out: bool
    wall_s: float
    image: DramImage        # the input image updated with the dumped words

    @property
    def ok(self) -> bool:
        return self.done and not self.fault and not self.timed_out


def default_cycle_budget(macs: int, dram_bytes: int, cfg) -> int:
    """A generous watchdog: 20x the compute and transfer time plus a fixed allowance."""
    compute = macs // (cfg.dim * cfg.dim) + 1
    transfer = dram_bytes // max(1, min(cfg.dram_bytes_per_cycle, cfg.dma_bus_bytes)) + 1
    return 20 * (compute + transfer) + 50 * cfg.dram_latency + 10_000


def write_cases(cases: Sequence[ProgramCase], root: Path) -> list[Path]:
    """Write `cases` as `root/caseNNNN/` directories (imem.hex, dram_in.hex, case.json) and
    `root/cases.txt` listing them; returns the directories. Both harnesses read this."""
    root.mkdir(parents=True, exist_ok=True)
    dirs = []
    for i, case in enumerate(cases):
        d = root / f"case{i:04d}"
        d.mkdir(exist_ok=True)
        for stale in ("result.json", "dram_out.hex"):
            (d / stale).unlink(missing_ok=True)
        write_imem_hex(d / "imem.hex", list(case.words))
        case.image.write_hex(d / "dram_in.hex")
        (d / "case.json").write_text(json.dumps(
            {"name": case.name, "max_cycles": int(case.max_cycles),
             "dump_lo": int(case.dump_lo), "dump_hi": int(case.dump_hi),
             **{name: int(value) for name, value in case.ports}}))
        dirs.append(d.resolve())
    (root / "cases.txt").write_text("\n".join(str(d) for d in dirs) + "\n")
    return dirs


def read_outcomes(cases: Sequence[ProgramCase], dirs: Sequence[Path]) -> list[ProgramOutcome]:
    """The `ProgramOutcome` of each case from its result.json and dram_out.hex."""
    outcomes = []
    for case, d in zip(cases, dirs):
        res = json.loads((d / "result.json").read_text())
        image = case.image.copy()
        image.load_dump(d / "dram_out.hex", case.dump_lo, case.dump_hi)
        outcomes.append(ProgramOutcome(case=case, counters=res["counters"], done=res["done"],
                                       fault=res["fault"], timed_out=res["timed_out"],
                                       wall_s=res["wall_s"], image=image))
    return outcomes


def run_programs(model: BuiltModel, cases: Sequence[ProgramCase], *, workdir: Path | None = None,
                 timeout_s: float | None = 600) -> list[ProgramOutcome]:
    """Run `cases` in one simulation; raises if the simulator itself fails."""
    if getattr(model, "capacity_ports", False) or any(c.ports for c in cases):
        raise ValueError("models with capacity ports run on the lean harness only (sim.lean.run_programs_lean)")
    root = (Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="accel-cases-"))).resolve()
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    dirs = write_cases(cases, root)
    run_cocotb_test(
        model, "sim.program_tb",
        env={"ACCEL_CASES": str(root / "cases.txt"), "ACCEL_WORK": str(work)},
        plusargs=[f"+IMEM_IN={work / 'imem.hex'}", f"+DRAM_IN={work / 'dram_in.hex'}",
                  f"+DRAM_OUT={work / 'dram_out.hex'}"],
        test_dir=root, timeout_s=timeout_s,
    )
    return read_outcomes(cases, dirs)
