"""The mapper baselines of a software DSE run (thesis Fig 6.4): the same design's network
cost with every layer on ``default_mapping`` and on the analytical model's best of N
constrained mappings (`search.software.best_mapping`, the mapper of ``--mapping best``),
both measured by the run's evaluator (the RTL by default) and stored in its run
directory, so that Polaris's mappings are compared at the same fidelity.

A layer with no feasible mapping of a kind (e.g. ``default_mapping`` does not fit) makes
that baseline infeasible, with the reason kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hw.config import HardwareConfig
from hw.mapping import MappingError, default_mapping
from hw.result import Result

from .software import MappingBatch, best_mapping

__all__ = ["MAPPERS", "MapperBaseline", "mapper_baselines"]

#: name -> what it is (the report's wording)
MAPPERS = {"default": "default_mapping",
           "best": "analytical best of {n:,} constrained mappings (--mapping best)"}


@dataclass(frozen=True)
class MapperBaseline:
    name: str                 # a key of MAPPERS
    description: str
    mappings: tuple           # per layer: Mapping or None
    results: tuple            # per layer: Result
    cost: object              # cost.NetworkCost

    @property
    def objective(self) -> float:
        return float(self.cost.edp) if self.cost.feasible else math.inf

    def to_dict(self, layers) -> dict:
        return {"name": self.name, "description": self.description,
                "objective": self.objective if math.isfinite(self.objective) else None,
                "cycles": self.cost.cycles if self.cost.feasible else None,
                "energy_pj": self.cost.energy_pj if self.cost.feasible else None,
                "layers": [{"name": lay.name, "mapping": None if m is None else m.to_dict(), "result": r.to_dict()}
                           for lay, m, r in zip(layers, self.mappings, self.results)]}


def _mappings(kind: str, hw: HardwareConfig, layers, samples: int, seed: int, buffering: bool):
    out = []
    for layer in layers:
        try:
            if kind == "default":
                out.append((default_mapping(hw, layer), None))
            else:
                out.append((best_mapping(hw, layer, samples, "edp", seed, buffering)[0], None))
        except MappingError as e:
            out.append((None, str(e).splitlines()[0]))
    return out


def mapper_baselines(hw: HardwareConfig, layers, evaluator, store=None, *, samples: int = 4096, seed: int = 0,
                     buffering: bool = True, iteration: int = 0) -> list[MapperBaseline]:
    """The two baselines on ``hw``: every layer's mapping evaluated (looked up in ``store``
    first, recorded there after, phase ``baseline-NAME``), all new ones in ONE evaluator
    call (the RTL runs them in parallel)."""
    from cost.evaluate import network_edp

    plans = {kind: _mappings(kind, hw, layers, samples, seed, buffering) for kind in MAPPERS}
    results: dict[tuple[str, int], Result] = {}
    work, where = [], []
    for kind, plan in plans.items():
        for li, (m, why) in enumerate(plan):
            if m is None:
                results[kind, li] = Result.infeasible(why, evaluator.fidelity)
                continue
            r = store.lookup(evaluator.fidelity, hw, layers[li], m) if store is not None else None
            if r is not None:
                results[kind, li] = r
            elif (prev := next((w for w in where if w[2] == li and plans[w[0]][li][0] == m), None)) is not None:
                where.append((kind, li, li, prev))       # the same mapping as the other mapper: evaluated once
            else:
                where.append((kind, li, li, None))
                work.append((hw, layers[li], MappingBatch.from_mappings([m])))
    fresh = iter(evaluator.results_many(work) if work else [])
    for kind, li, _, same in where:
        if same is None:
            r = next(fresh)[0]
            if store is not None:
                store.record_many(evaluator.fidelity, hw, layers[li], [plans[kind][li][0]], [r],
                                  iteration=iteration, phase=f"baseline-{kind}", layer_index=li)
        else:
            r = results[same[0], same[1]]
        results[kind, li] = r
    out = []
    for kind, plan in plans.items():
        rs = tuple(results[kind, li] for li in range(len(layers)))
        out.append(MapperBaseline(kind, MAPPERS[kind].format(n=samples), tuple(m for m, _ in plan), rs,
                                  network_edp(rs, layers)))
    return out
