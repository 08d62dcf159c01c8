#!/usr/bin/env python3
"""Single buffering allowed vs double buffering only, on the RTL, for a whole network.

    python scripts/bench_buffers.py [--workload resnet50] [--dim 16 --sp-kb 256 --acc-kb 64]
                                    [--n 4096] [--seed 0] [--workers 2] [--json out.json]

For every unique layer of the workload, two candidate sets: "double only", `--n` fitting
Sobol mappings of `search.space.MappingSpace` in encoding version 1 (every tile
double-buffered); "single allowed", those same mappings with each of the 8 bufferings
plus `--n` fitting Sobol mappings of version 2 (each operand's tile single- or
double-buffered), so it holds the first set. The analytical model
(`cost.model.evaluate_arrays`) picks the lowest-EDP mapping of each set. Both picks of
every layer are then simulated on the RTL (verified against numpy; the capacity-family
model of the array size) and priced from their RTL counters (`cost.price`); the network
EDP is (sum count x energy) x (sum count x cycles) (`cost.network_edp`). Prints a row
per layer and both network totals; whichever wins is reported as it is.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cost.evaluate import network_edp, price  # noqa: E402
from cost.model import evaluate_arrays  # noqa: E402
from hw.config import HardwareConfig  # noqa: E402
from hw.mapping import Mapping  # noqa: E402
from search.space import MappingSpace  # noqa: E402
from search.workloads import get_workload, unique_layers  # noqa: E402


def _best(hw: HardwareConfig, layer, maps: list[Mapping]) -> tuple[Mapping, float]:
    arrs = [m.to_arrays() for m in maps]
    res = evaluate_arrays(layer, hw, np.stack([a[0] for a in arrs]), np.stack([a[1] for a in arrs]),
                          np.array([m.buffers for m in maps]))
    i = int(np.nanargmin(res["edp"]))
    return maps[i], float(res["edp"][i])


def best_mappings(hw: HardwareConfig, layer, n: int, seed: int) -> tuple[tuple, tuple]:
    """((mapping, EDP) of the double-only set, (mapping, EDP) of the single-allowed set)."""
    double = MappingSpace(hw, layer).sample(n, seed=seed, method="sobol")
    bufferings = list(itertools.product((1, 2), repeat=3))
    single = [Mapping(m.factors, m.order, b) for m in double for b in bufferings]
    single += MappingSpace(hw, layer, version=2).sample(n, seed=seed, method="sobol")
    return _best(hw, layer, double), _best(hw, layer, single)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="resnet50")
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--sp-kb", type=int, default=256)
    p.add_argument("--acc-kb", type=int, default=64)
    p.add_argument("--n", type=int, default=4096, help="mappings sampled per layer and set (default 4096)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if not 1 <= args.n <= 1 << 20 or not 1 <= args.workers <= 64:
        p.error("--n must be from 1 to 1048576 and --workers from 1 to 64")
    from sim.compiler import dram_mb_for
    from sim.evaluate import evaluate_many

    layers = unique_layers(get_workload(args.workload))
    hw = HardwareConfig(dim=args.dim, sp_kb=args.sp_kb, acc_kb=args.acc_kb, dram_mb=dram_mb_for(layers))
    t0 = time.time()
    picks = {1: [], 2: []}
    for layer in layers:
        a, b = best_mappings(hw, layer, args.n, args.seed)
        picks[1].append(a)
        picks[2].append(b)
    print(f"{len(layers)} layers: mappings chosen by the model ({args.n} double-buffered, {9 * args.n} with "
          f"single buffering allowed, per layer) in {time.time() - t0:.1f} s", file=sys.stderr)
    items = [(hw, m, layer) for v in (1, 2) for (m, _), layer in zip(picks[v], layers)]
    t1 = time.time()
    rtl = evaluate_many(items, workers=args.workers, superset=True)
    print(f"{len(items)} RTL simulations in {time.time() - t1:.0f} s", file=sys.stderr)
    rtl = [price(r, hw) for r in rtl]
    bad = [(it[2].name, r.reason) for it, r in zip(items, rtl) if not (r.feasible and r.verified)]
    if bad:
        print(f"error: {len(bad)} RTL runs failed or were not verified: {bad[:3]}", file=sys.stderr)
        return 1
    by = {1: rtl[:len(layers)], 2: rtl[len(layers):]}
    rows = []
    print(f"{'layer':<22} {'count':>5} {'double-only cycles':>18} {'with single cycles':>18} "
          f"{'buffers':>8} {'EDP ratio':>9}")
    for i, layer in enumerate(layers):
        r1, r2 = by[1][i], by[2][i]
        m2 = picks[2][i][0]
        rows.append({"layer": layer.name, "count": layer.count, "double": {"cycles": r1.cycles, "energy_pj": r1.energy_pj,
                     "mapping": picks[1][i][0].to_dict()}, "single_allowed": {"cycles": r2.cycles,
                     "energy_pj": r2.energy_pj, "mapping": m2.to_dict()}})
        print(f"{layer.name:<22} {layer.count:>5} {r1.cycles:>18,} {r2.cycles:>18,} "
              f"{''.join(map(str, m2.buffers)):>8} {r2.edp / r1.edp:>9.3f}")
    tot = {v: network_edp(by[v], layers) for v in (1, 2)}
    for v, name in ((1, "double only"), (2, "single allowed")):
        t = tot[v]
        print(f"network ({name}): cycles {t.cycles:,.0f}  energy {t.energy_pj / 1e6:,.1f} uJ  EDP {t.edp:.4e}")
    ratio = tot[2].edp / tot[1].edp
    print(f"EDP single-allowed / double-only: {ratio:.3f} ({'single allowed wins' if ratio < 1 else 'double only wins'})")
    if args.json:
        args.json.write_text(json.dumps({"hw": hw.to_dict(), "n": args.n, "seed": args.seed, "layers": rows,
                                         "total": {str(v): tot[v].to_dict() for v in (1, 2)},
                                         "edp_ratio": ratio}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
