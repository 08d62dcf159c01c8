"""Evaluators, one per fidelity: (hardware, per-layer mappings) -> per-layer Results and
the network cost.

``AnalyticalEvaluator``
    `cost.evaluate_arrays`: one vectorised call per (hardware, layer) batch of mappings.
``RTLEvaluator``
    `sim.evaluate.evaluate_many` (Verilator, lean harness, every output verified against
    the numpy reference) over a process pool, on the per-DIM capacity-family models by
    default; each Result is priced by `cost.price` (delay = RTL cycles, energy = the
    RTL's own counters priced by the energy table). A run that raises or hits the
    watchdog comes back infeasible with its reason; a `VerificationError` (the RTL
    disagrees with the reference: a bug) propagates. The simulation-only DRAM model
    (``HardwareConfig.dram_mb``, not part of the design: no area, no energy, no effect
    on timing) is sized per call to the largest layer simulated on each design
    (`sim.compiler.dram_mb_for`, at least the design's own), so a workload's builds are
    one per array size; `check_simulable` says before any work if a layer needs more
    than the largest model.

Both expose ``fidelity``, ``results(hw, layer, batch) -> list[Result]`` for a
`search.software.MappingBatch` of one layer, ``results_many([(hw, layer, batch), ...])``
(the RTL one puts every simulation of the call into one pool), and ``evaluate(hw,
layers, mappings) -> Evaluation``. Objectives: `layer_objective` (per-layer, the
software loop's) and `network_objective` (the network's: EDP as the product of the
count-weighted sums of energy and cycles, `cost.network_edp`).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass


import cost
from cost.energy import DEFAULT_TABLE, EnergyTable
from cost.evaluate import NetworkCost, network_edp, result_from_arrays
from hw.config import HardwareConfig
from hw.layer import Layer
from hw.result import Result

from .software import MappingBatch

__all__ = ["AnalyticalEvaluator", "Evaluation", "OBJECTIVES", "RTLEvaluator", "check_simulable",
           "layer_objective", "network_objective", "make_evaluator", "simulation_hardware"]

#: minimised quantities: energy-delay product, delay (cycles), energy
OBJECTIVES = ("edp", "cycles", "energy")


def _check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    return objective


def layer_objective(r: Result, objective: str = "edp") -> float:
    """One occurrence of a layer: energy x cycles, cycles or energy; inf if infeasible."""
    _check_objective(objective)
    if not r.feasible or r.cycles is None or r.energy_pj is None:
        return math.inf
    return {"edp": r.energy_pj * r.cycles, "cycles": float(r.cycles), "energy": r.energy_pj}[objective]


def network_objective(c: NetworkCost, objective: str = "edp") -> float:
    """The network's: (sum count*energy) x (sum count*cycles), the cycles or the energy."""
    _check_objective(objective)
    if not c.feasible:
        return math.inf
    return {"edp": c.edp, "cycles": c.cycles, "energy": c.energy_pj}[objective]


@dataclass(frozen=True)
class Evaluation:
    """Per-layer results (in the order of the layers) and the network totals."""

    results: tuple
    cost: NetworkCost


def check_simulable(layers) -> None:
    """ValueError (one line, naming the layer and the bytes) if a layer of ``layers``
    needs more simulation DRAM than the largest ``dram_mb``: such a workload can be
    searched at the analytical fidelity only."""
    from hw.config import param_spec
    from sim.compiler import dram_bytes_needed

    top = param_spec("dram_mb").hi
    layers = list(layers)
    if not layers:
        return
    need, name = max((dram_bytes_needed(L), L.name or str(L)) for L in layers)
    if need > top << 20:
        raise ValueError(f"layer {name!r} needs {need:,} bytes of simulation DRAM, more than the largest "
                         f"simulation DRAM model ({top} MB): search it with --fidelity analytical")


def simulation_hardware(work) -> dict:
    """For the (hw, layer, batch) triples of ``work``: each distinct hw mapped to the
    configuration the RTL runs it on, its DRAM model sized to the largest of its layers
    (at least ``hw.dram_mb``)."""
    from sim.compiler import dram_mb_for

    layers_of: dict = {}
    for hw, layer, batch in work:
        if len(batch):
            layers_of.setdefault(hw, []).append(layer)
    return {hw: dataclasses.replace(hw, dram_mb=dram_mb_for(ls, least=hw.dram_mb))
            for hw, ls in layers_of.items()}


class _Evaluator(ABC):
    """What every evaluator has: ``fidelity``, ``results_many`` (its own) and the rest."""

    fidelity = ""

    def results(self, hw: HardwareConfig, layer: Layer, batch: MappingBatch) -> list[Result]:
        return self.results_many([(hw, layer, batch)])[0]

    @abstractmethod
    def results_many(self, work) -> list[list[Result]]:
        """Per (hw, layer, MappingBatch) of ``work``: its Results, in batch order."""

    def evaluate(self, hw: HardwareConfig, layers, mappings) -> Evaluation:
        """Each layer with its mapping (same order); the network cost of them all."""
        layers, mappings = list(layers), list(mappings)
        if len(layers) != len(mappings):
            raise ValueError(f"{len(mappings)} mappings for {len(layers)} layers")
        res = self.results_many([(hw, lay, MappingBatch.from_mappings([m])) for lay, m in zip(layers, mappings)])
        results = tuple(r[0] for r in res)
        return Evaluation(results, network_edp(results, layers))


class AnalyticalEvaluator(_Evaluator):
    """The analytical model (see the module docstring)."""

    fidelity = "analytical"

    def __init__(self, table: EnergyTable = DEFAULT_TABLE):
        self.table = table

    def arrays(self, hw: HardwareConfig, layer: Layer, batch: MappingBatch) -> dict:
        """`cost.evaluate_arrays` of the batch (for vectorised callers)."""
        return cost.evaluate_arrays(layer, hw, batch.factors, batch.order, batch.buffers, table=self.table)

    def results_many(self, work) -> list[list[Result]]:
        out = []
        for hw, layer, batch in work:
            if len(batch) == 0:
                out.append([])
                continue
            a = self.arrays(hw, layer, batch)
            out.append([result_from_arrays(a, i) for i in range(len(batch))])
        return out


class RTLEvaluator(_Evaluator):
    """The RTL (see the module docstring); ``workers`` processes, ``seed`` the inputs'."""

    fidelity = "rtl"

    def __init__(self, workers: int = 2, cache_dir=None, superset: bool = True, seed: int = 0,
                 timeout_s: float = 3600.0, progress: bool = False, table: EnergyTable = DEFAULT_TABLE):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer; got {workers!r}")
        self.workers, self.cache_dir, self.superset = workers, cache_dir, superset
        self.seed, self.timeout_s, self.progress, self.table = seed, timeout_s, progress, table

    def results_many(self, work) -> list[list[Result]]:
        from sim.evaluate import evaluate_many

        sim_hw = simulation_hardware(work)
        items, where, designs = [], [], []
        for j, (hw, layer, batch) in enumerate(work):
            for i in range(len(batch)):
                items.append((sim_hw[hw], batch.mapping(i), layer))
                where.append(j)
                designs.append(hw)
        out: list[list[Result]] = [[] for _ in work]
        if not items:
            return out
        res = evaluate_many(items, workers=min(self.workers, len(items)), progress=self.progress,
                            cache_dir=self.cache_dir, superset=self.superset, seed=self.seed,
                            timeout_s=self.timeout_s)
        for hw, j, r in zip(designs, where, res):
            out[j].append(cost.price(r, hw, self.table))
        return out


def make_evaluator(fidelity: str, **rtl_options) -> _Evaluator:
    """``analytical`` or ``rtl`` (the RTL options go to `RTLEvaluator`)."""
    if fidelity == "analytical":
        return AnalyticalEvaluator()
    if fidelity == "rtl":
        return RTLEvaluator(**rtl_options)
    raise ValueError(f"fidelity must be analytical or rtl; got {fidelity!r}")

