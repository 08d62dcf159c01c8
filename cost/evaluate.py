"""`Result`-level API of the analytical model, RTL-informed energy, and network EDP.

    evaluate(hw, mapping, layer)      -> Result (fidelity "analytical")
    evaluate_many(hw_list, mapping_list, layer) -> list[Result]   (one vectorised call)
    price(result, hw)                 -> the same Result with energy_pj / area_mm2 from
                                         its own counters (e.g. an RTL result: cycles
                                         from the RTL, energy from its measured counts)
    network_edp(results, layers)      -> totals over a network (see `NetworkCost`)

Everything goes through `cost.model.evaluate_arrays`, so one evaluation and a batch of a
million give the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import REASONS, Mapping
from hw.result import BUSY_KEYS, COUNT_KEYS, Result

from .energy import DEFAULT_TABLE, EnergyTable, area_mm2, energy_pj
from .model import DEFAULT_PARAMS, TimingParams, evaluate_arrays

__all__ = ["NetworkCost", "evaluate", "evaluate_many", "network_edp", "price",
           "result_from_arrays"]


def result_from_arrays(arrays: dict, i: int, *, reason_text: str | None = None, **extra) -> Result:
    """Row i of an `evaluate_arrays` output as a `Result` (fidelity "analytical")."""
    if not arrays["feasible"][i]:
        return Result.infeasible(reason_text or REASONS[int(arrays["reason"][i])], "analytical", **extra)
    exact = float(arrays["cycles"][i])
    cycles = int(math.ceil(exact))
    counts = {k: int(arrays[k][i]) for k in COUNT_KEYS}
    busy = {k: min(cycles, int(round(float(arrays[f"busy_{k}"][i])))) for k in BUSY_KEYS}
    return Result(cycles=cycles, busy=busy, counts=counts,
                  utilisation=float(arrays["utilisation"][i]) * exact / cycles,  # of the whole cycles
                  feasible=True, reason=None,
                  verified=False, fidelity="analytical", energy_pj=float(arrays["energy_pj"][i]),
                  area_mm2=float(arrays["area_mm2"][i]),
                  extra={"instructions": int(arrays["instructions"][i]), **extra})


def evaluate(hw: HardwareConfig, mapping: Mapping, layer: Layer, *, out: str = "int32",
             table: EnergyTable = DEFAULT_TABLE, params: TimingParams = DEFAULT_PARAMS) -> Result:
    """Analytical `Result` of one (hardware, mapping, layer); infeasible mappings come
    back infeasible with `Mapping.check`'s reason, like the RTL evaluator's."""
    if not isinstance(hw, HardwareConfig):
        raise TypeError(f"hw must be a HardwareConfig; got {type(hw).__name__}")
    chk = mapping.check(hw, layer)
    if not chk:
        return Result.infeasible(chk.reason, "analytical")
    factors, order = mapping.to_arrays()
    arrays = evaluate_arrays(layer, hw, factors, order, mapping.buffers, out=out, table=table, params=params)
    return result_from_arrays(arrays, 0)


def evaluate_many(hws, mappings, layer: Layer, *, out: str = "int32", table: EnergyTable = DEFAULT_TABLE,
                  params: TimingParams = DEFAULT_PARAMS) -> list[Result]:
    """Analytical results of many (hardware, mapping) pairs for one layer, in one
    vectorised call. `hws` is one HardwareConfig or a list as long as `mappings`."""
    mappings = list(mappings)
    if isinstance(hws, HardwareConfig):
        hws = [hws] * len(mappings)
    hws = list(hws)
    if len(hws) != len(mappings):
        raise ValueError(f"{len(hws)} hardware configurations for {len(mappings)} mappings")
    if not mappings:
        return []
    pairs = [m.to_arrays() for m in mappings]
    factors = np.stack([p[0] for p in pairs])
    order = np.stack([p[1] for p in pairs])
    buffers = np.array([m.buffers for m in mappings], dtype=np.int64)
    arrays = evaluate_arrays(layer, hws, factors, order, buffers, out=out, table=table, params=params)
    out_list = []
    for i, (hw, m) in enumerate(zip(hws, mappings)):
        reason = None
        if not arrays["feasible"][i]:
            reason = m.check(hw, layer).reason
        out_list.append(result_from_arrays(arrays, i, reason_text=reason))
    return out_list


def price(result: Result, hw: HardwareConfig, table: EnergyTable = DEFAULT_TABLE) -> Result:
    """`result` with energy_pj and area_mm2 computed from its own counters (RTL-informed
    energy when `result` comes from the RTL). An infeasible result gets the area only."""
    area = float(area_mm2(hw.dim, hw.sp_kb, hw.acc_kb, table))
    energy = None
    if result.feasible:
        energy = float(energy_pj(result.counts, hw.dim, hw.sp_kb, hw.acc_kb, table))
    d = result.to_dict()
    d.update(energy_pj=energy, area_mm2=area)
    return Result.from_dict(d)


@dataclass(frozen=True)
class NetworkCost:
    """Costs of a network (each layer weighted by its ``count``).

    energy_pj, cycles      sums over the layers
    edp                    energy_pj * cycles (the product of the sums)
    edp_layerwise          sum over layers of count * energy * cycles (of one occurrence)
    feasible               every layer has a feasible result
    """

    energy_pj: float
    cycles: float
    edp: float
    edp_layerwise: float
    feasible: bool
    layers: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def network_edp(results, layers) -> NetworkCost:
    """Network totals from per-layer results (same order as `layers`)."""
    results, layers = list(results), list(layers)
    if len(results) != len(layers):
        raise ValueError(f"{len(results)} results for {len(layers)} layers")
    e = c = lw = 0.0
    ok = True
    for r, layer in zip(results, layers):
        if not r.feasible or r.energy_pj is None or r.cycles is None:
            ok = False
            continue
        e += layer.count * r.energy_pj
        c += layer.count * r.cycles
        lw += layer.count * r.energy_pj * r.cycles
    if not ok:
        nan = float("nan")
        return NetworkCost(nan, nan, nan, nan, False, len(layers))
    return NetworkCost(energy_pj=e, cycles=c, edp=e * c, edp_layerwise=lw, feasible=True, layers=len(layers))
