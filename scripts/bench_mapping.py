#!/usr/bin/env python3
"""`--mapping best` against `default_mapping`, on the RTL, for every layer of a network.

    python scripts/bench_mapping.py [--workload resnet50] [--dims 16,32] [--sp-kb 256 --acc-kb 64]
                                    [--samples 4096] [--objective edp|cycles|energy] [--seed 0]
                                    [--workers 2] [--cache-dir DIR] [--json out.json]

For every unique layer of the workload (`search.workloads.unique_layers`) and every design
of ``--dims`` (each with ``--sp-kb`` / ``--acc-kb``, Gemmini's 256 KB / 64 KB by default),
two mappings: `hw.mapping.default_mapping` and `search.software.best_mapping` (the best of
``--samples`` constrained Sobol mappings and the default by the analytical model's
``--objective``; the ``--mapping best`` of ``sim.run`` / ``cost.run``). Both are simulated
on the RTL through `search.evaluators.RTLEvaluator` (`sim.evaluate.evaluate_many`: the
lean harness on the per-DIM capacity-family Verilator models, every output verified
against numpy, ``--workers`` processes) and priced from the RTL's own counters
(`cost.price`). A (hardware, mapping, layer shape) triple is simulated once per run
however often it occurs (a layer whose best mapping is its default, a repeated design).
The network totals are count-weighted sums; the network EDP is (sum count x energy) x
(sum count x cycles) (`cost.network_edp`).

Prints a row per layer (cycles, energy and EDP of one occurrence with each mapping, the
RTL's ratio best / default and the model's predicted one, and the model's cycles over the
RTL's for each mapping) and the network totals per design, then two acceptance checks
over every design, each PASS or FAIL, measured in ``--objective`` (EDP by default):

* the network with the best mappings costs less than with the default mappings;
* no layer costs more than ``--tolerance`` (5 %) above its default (ratio <= 1.05).

``--json FILE`` writes the options, the commit (``git rev-parse HEAD``), the wall time,
every row (mappings, RTL and model results) and the totals. Progress goes to stderr.
The exit status is 0 whatever the checks say (they are measurements); 1 when an RTL run
fails or is not verified, 2 for a bad option.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hw.cli import DEFAULT_BEST_SAMPLES, MAX_BEST_SAMPLES  # noqa: E402

OBJECTIVES = ("edp", "cycles", "energy")
#: a layer "more than 5 % worse" than its default fails the per-layer check
DEFAULT_TOLERANCE = 0.05


# ---- pure helpers (tests/search/test_bench_mapping.py) ---------------------------------------
def triple_key(hw, mapping, layer) -> tuple:
    """What makes two simulations the same: the hardware, the mapping, the layer's shape
    (its name and count change nothing in the simulation)."""
    return (hw.to_json() if hasattr(hw, "to_json") else json.dumps(hw.to_dict(), sort_keys=True),
            json.dumps(mapping.to_dict(), sort_keys=True), tuple(layer.shape()))


def plan_unique(triples, key=triple_key) -> tuple[list, list[int]]:
    """(the distinct triples in first-seen order, for each input triple its index there)."""
    index: dict = {}
    unique, where = [], []
    for t in triples:
        k = key(*t)
        if k not in index:
            index[k] = len(unique)
            unique.append(t)
        where.append(index[k])
    return unique, where


def metric(cycles: float, energy_pj: float, objective: str) -> float:
    """The objective's quantity of one occurrence (or of the network totals)."""
    return {"edp": energy_pj * cycles, "cycles": float(cycles), "energy": float(energy_pj)}[objective]


def network_totals(rows, side: str) -> dict:
    """Count-weighted cycles and energy of ``side`` ("default" / "best") over ``rows``
    (each {"count", side: {"cycles", "energy_pj"}}), and their product, the network EDP."""
    c = sum(r["count"] * r[side]["cycles"] for r in rows)
    e = sum(r["count"] * r[side]["energy_pj"] for r in rows)
    return {"cycles": c, "energy_pj": e, "edp": c * e}


def checks(layer_ratios, network_ratio: float, tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """The two acceptance checks of one design: the network ratio best / default < 1, and
    every layer's ratio <= 1 + tolerance; with the worst layer (index, ratio)."""
    ratios = list(layer_ratios)
    worst = max(range(len(ratios)), key=lambda i: ratios[i]) if ratios else None
    return {"network_lower": bool(network_ratio < 1.0),
            "layers_within": bool(all(r <= 1.0 + tolerance for r in ratios)),
            "worst_layer": worst, "worst_ratio": None if worst is None else ratios[worst],
            "layers_over": [i for i, r in enumerate(ratios) if r > 1.0 + tolerance]}


def parse_dims(text: str) -> list[int]:
    """"16,32" -> [16, 32]: distinct array sizes, first-seen order (ValueError if bad)."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ValueError(f"--dims must be comma-separated integers (4, 8, 16, 32); got {text!r}")
        if int(part) not in out:
            out.append(int(part))
    if not out:
        raise ValueError("--dims is empty")
    return out


# ---- the run ---------------------------------------------------------------------------------
def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _res(r) -> dict:
    return {"cycles": r.cycles, "energy_pj": r.energy_pj, "edp": r.edp, "busy": r.busy, "counts": r.counts,
            "utilisation": r.utilisation, "instructions": r.extra.get("instructions")}


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="resnet50", help="a registered workload or a workload file")
    p.add_argument("--dims", default="16,32", help="array sizes, comma-separated (default 16,32)")
    p.add_argument("--sp-kb", type=int, default=256, help="scratchpad KB of every design (default 256)")
    p.add_argument("--acc-kb", type=int, default=64, help="accumulator KB of every design (default 64)")
    p.add_argument("--samples", type=int, default=DEFAULT_BEST_SAMPLES,
                   help=f"mappings drawn per layer by best_mapping (default {DEFAULT_BEST_SAMPLES})")
    p.add_argument("--objective", choices=OBJECTIVES, default="edp",
                   help="what best_mapping minimises and the checks measure (default edp)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Sobol pool (default 0)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help="a layer may be this much worse than its default (default 0.05)")
    p.add_argument("--workers", type=int, default=2, help="simulation processes (default 2)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="Verilator model cache (default $ACCEL_CACHE_DIR, else build/sim-cache)")
    p.add_argument("--json", type=Path, default=None, help="write everything to this JSON file")
    args = p.parse_args(argv)
    try:
        dims = parse_dims(args.dims)
    except ValueError as e:
        p.error(str(e))
    if not 1 <= args.samples <= MAX_BEST_SAMPLES:
        p.error(f"--samples must be in 1..{MAX_BEST_SAMPLES:,}; got {args.samples}")
    if not 1 <= args.workers <= 64:
        p.error(f"--workers must be from 1 to 64; got {args.workers}")
    if args.seed < 0 or not 0 <= args.tolerance < 10:
        p.error("--seed must be >= 0 and --tolerance from 0 to 10")

    import cost
    from hw.config import ConfigError, HardwareConfig
    from hw.mapping import default_mapping
    from search.evaluators import RTLEvaluator
    from search.software import best_mapping
    from search.workloads import get_workload, unique_layers
    from sim.compiler import dram_mb_for

    try:
        layers = unique_layers(get_workload(args.workload))
    except Exception as e:  # noqa: BLE001  (an unknown name or a bad file: one line)
        p.error(f"--workload {args.workload}: {e}")
    try:
        designs = [HardwareConfig(dim=d, sp_kb=args.sp_kb, acc_kb=args.acc_kb, dram_mb=dram_mb_for(layers))
                   for d in dims]
    except ConfigError as e:
        p.error(str(e))
    cache_dir = args.cache_dir
    if cache_dir is None and not os.environ.get("ACCEL_CACHE_DIR"):
        cache_dir = REPO / "build" / "sim-cache"

    t_start = time.time()
    # 1. the two mappings of every (design, layer) and the model's results of both
    picks = []      # per design: per layer (default, best, model default, model best)
    mapping_s = []
    for hw in designs:
        t0 = time.time()
        per = []
        for layer in layers:
            dm = default_mapping(hw, layer)
            bm, bres = best_mapping(hw, layer, samples=args.samples, objective=args.objective, seed=args.seed)
            per.append((dm, bm, cost.evaluate(hw, dm, layer), bres))
        picks.append(per)
        mapping_s.append(time.time() - t0)
        same = sum(json.dumps(d.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)
                   for d, b, _, _ in per)
        print(f"DIM {hw.dim}: {len(layers)} layers mapped (best of {args.samples:,} by the model, "
              f"{args.objective}) in {mapping_s[-1]:.1f} s; best is the default for {same}",
              file=sys.stderr, flush=True)

    # 2. every distinct triple once on the RTL
    triples = [(hw, m, layer) for hw, per in zip(designs, picks)
               for layer, (dm, bm, _, _) in zip(layers, per) for m in (dm, bm)]
    unique, where = plan_unique(triples)
    print(f"{len(unique)} RTL simulations ({len(triples) - len(unique)} of {len(triples)} triples are repeats) "
          f"on {args.workers} workers", file=sys.stderr, flush=True)
    ev = RTLEvaluator(workers=args.workers, cache_dir=cache_dir, superset=True, progress=True)
    from search.software import MappingBatch
    t1 = time.time()
    res = ev.results_many([(hw, layer, MappingBatch.from_mappings([m])) for hw, m, layer in unique])
    rtl_s = time.time() - t1
    res = [r[0] for r in res]
    print(f"{len(unique)} RTL simulations in {rtl_s:.0f} s", file=sys.stderr, flush=True)
    bad = [(f"DIM {hw.dim}", layer.name, r.reason) for (hw, _, layer), r in zip(unique, res)
           if not (r.feasible and r.verified)]
    if bad:
        print(f"error: {len(bad)} RTL runs failed or were not verified: {bad[:3]}", file=sys.stderr)
        return 1
    rtl = [res[i] for i in where]

    # 3. rows, totals, checks
    out_designs = []
    k = 0
    for hw, per, ms in zip(designs, picks, mapping_s):
        rows, results = [], {"default": [], "best": []}
        for layer, (dm, bm, mdef, mbest) in zip(layers, per):
            rd, rb = rtl[k], rtl[k + 1]
            k += 2
            results["default"].append(rd)
            results["best"].append(rb)
            ratio = {o: _ratio(metric(rb.cycles, rb.energy_pj, o), metric(rd.cycles, rd.energy_pj, o))
                     for o in OBJECTIVES}
            mratio = {o: _ratio(metric(mbest.cycles, mbest.energy_pj, o), metric(mdef.cycles, mdef.energy_pj, o))
                      for o in OBJECTIVES}
            rows.append({
                "layer": layer.name, "count": layer.count, "shape": layer.to_dict(),
                "same_mapping": json.dumps(dm.to_dict(), sort_keys=True) == json.dumps(bm.to_dict(), sort_keys=True),
                "default": {**_res(rd), "mapping": dm.to_dict(), "model": _res(mdef)},
                "best": {**_res(rb), "mapping": bm.to_dict(), "model": _res(mbest)},
                "ratio": ratio, "model_ratio": mratio,
                "model_over_rtl_cycles": {"default": _ratio(mdef.cycles, rd.cycles),
                                          "best": _ratio(mbest.cycles, rb.cycles)},
            })
        tot = {s: cost.network_edp(results[s], layers).to_dict() for s in ("default", "best")}
        mtot = {s: network_totals([{"count": r["count"], s: r[s]["model"]} for r in rows], s)
                for s in ("default", "best")}
        net_ratio = {o: _ratio(metric(tot["best"]["cycles"], tot["best"]["energy_pj"], o),
                               metric(tot["default"]["cycles"], tot["default"]["energy_pj"], o)) for o in OBJECTIVES}
        mnet_ratio = {o: _ratio(metric(mtot["best"]["cycles"], mtot["best"]["energy_pj"], o),
                                metric(mtot["default"]["cycles"], mtot["default"]["energy_pj"], o)) for o in OBJECTIVES}
        chk = checks([r["ratio"][args.objective] for r in rows], net_ratio[args.objective], args.tolerance)
        out_designs.append({"hw": hw.to_dict(), "mapping_s": round(ms, 2), "rows": rows, "total": tot,
                            "model_total": mtot, "ratio": net_ratio, "model_ratio": mnet_ratio, "checks": chk})

    # 4. print
    obj = args.objective
    for d in out_designs:
        hw = d["hw"]
        print(f"\nDIM {hw['dim']}, sp {hw['sp_kb']} KB, acc {hw['acc_kb']} KB: default_mapping vs best of "
              f"{args.samples:,} ({obj}); one occurrence per layer; ratios are best / default")
        print(f"{'layer':<22} {'count':>5} {'cycles default':>14} {'best':>11} {'energy uJ def':>13} {'best':>9} "
              f"{'EDP default':>11} {'best':>10} {'ratio':>6} {'model':>6} {'m/r cyc def':>11} {'best':>5}")
        for r in d["rows"]:
            rd, rb = r["default"], r["best"]
            mo = r["model_over_rtl_cycles"]
            print(f"{r['layer']:<22} {r['count']:>5} {rd['cycles']:>14,} {rb['cycles']:>11,} "
                  f"{rd['energy_pj'] / 1e6:>13,.2f} {rb['energy_pj'] / 1e6:>9,.2f} {rd['edp']:>11.3e} "
                  f"{rb['edp']:>10.3e} {r['ratio'][obj]:>6.3f} {r['model_ratio'][obj]:>6.3f} "
                  f"{mo['default']:>11.3f} {mo['best']:>5.3f}" + ("  (same mapping)" if r["same_mapping"] else ""))
        for s in ("default", "best"):
            t = d["total"][s]
            print(f"network ({s:<7}): cycles {t['cycles']:,.0f}  energy {t['energy_pj'] / 1e6:,.1f} uJ  "
                  f"EDP {t['edp']:.4e}")
        c = d["checks"]
        print(f"network {obj} best / default: {d['ratio'][obj]:.3f} (model predicted {d['model_ratio'][obj]:.3f}); "
              f"worst layer {d['rows'][c['worst_layer']]['layer']} {c['worst_ratio']:.3f}")
    print()
    net_ok = all(d["checks"]["network_lower"] for d in out_designs)
    lay_ok = all(d["checks"]["layers_within"] for d in out_designs)
    net_txt = ", ".join(f"DIM {d['hw']['dim']} {d['ratio'][obj]:.3f}" for d in out_designs)
    lay_txt = ", ".join(f"DIM {d['hw']['dim']} worst {d['rows'][d['checks']['worst_layer']]['layer']} "
                        f"{d['checks']['worst_ratio']:.3f}"
                        + (f" ({len(d['checks']['layers_over'])} over)" if d["checks"]["layers_over"] else "")
                        for d in out_designs)
    print(f"{'PASS' if net_ok else 'FAIL'}: network {obj} with best lower than with default at every design "
          f"({net_txt})")
    print(f"{'PASS' if lay_ok else 'FAIL'}: no layer's {obj} more than {args.tolerance:.0%} above its default "
          f"(ratio <= {1 + args.tolerance:.2f}; {lay_txt})")
    wall = time.time() - t_start
    print(f"wall {wall:.0f} s (RTL {rtl_s:.0f} s, {len(unique)} simulations)", file=sys.stderr)
    if args.json:
        opts = {k_: (str(v) if isinstance(v, Path) else v) for k_, v in vars(args).items()}
        opts["dims"] = dims
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "options": opts, "commit": _commit(), "wall_s": round(wall, 1), "rtl_s": round(rtl_s, 1),
            "simulations": len(unique), "triples": len(triples),
            "checks": {"network_lower": net_ok, "layers_within": lay_ok},
            "designs": out_designs}, indent=1))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
