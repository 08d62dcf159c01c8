"""Analytical latency, energy and area model of the accelerator (the RTL's low-fidelity twin).

`cost.evaluate(hw, mapping, layer)` returns the same `hw.result.Result` as
`sim.evaluate.evaluate`, with fidelity "analytical", energy and area;
`cost.model.evaluate_arrays` is the vectorised batch form; `cost.price` prices any
result's counters (RTL-informed energy); `cost.energy` holds the energy/area tables.
"""

from .energy import EnergyError, EnergyTable, area_mm2, energy_breakdown, energy_pj
from .evaluate import (
           NetworkCost,
           evaluate,
           evaluate_many,
           network_edp,
           price,
           result_from_arrays,
)
from hw.mapping import REASONS

from .model import TimingParams, evaluate_arrays

__all__ = [
           "REASONS",
           "EnergyError",
           "EnergyTable",
           "NetworkCost",
           "TimingParams",
           "area_mm2",
           "energy_breakdown",
           "energy_pj",
           "evaluate",
           "evaluate_arrays",
           "evaluate_many",
           "network_edp",
           "price",
           "result_from_arrays",
]
