"""Compare finished co-design runs under one rule, read from their run stores.

    python -m search.compare_runs runs/polaris-bert-rtl-s* runs/random-bert-rtl-s* \\
        [--json docs/polaris/compare.json] [--markdown FILE]

Every run directory (`search.runs`) is scored the same way, whatever optimiser made it
(Polaris, Spotlight and its variants, random search): its evaluations are grouped by
design; a design's network EDP is the exact minimum of (sum_l n_l E_l) x (sum_l n_l C_l)
over all combinations of its evaluated feasible mappings, one per layer
(`search.optimizers.polaris.product_of_sums_check`); the run's best is the lowest over
its designs. A design missing a feasible evaluation of some layer scores infeasible.

Per run: method, workloads, seed, samples (network evaluations: per design the most
evaluations any one layer had, summed over designs; the mapper baselines of a software
DSE run are left out), simulations, the simulator's summed wall time (the same harness
for every method), the run's wall (its first record to its last; includes the gaps of
a resumed run) and the best design. Per (workloads, method): the median, min and max
best EDP over seeds and the ratio of the median to Polaris's.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from hw.cli import OneLineParser, parse_or_exit_status, print_error, run_main

__all__ = ["RunScore", "score_run", "convergence", "group_scores", "main"]

_VARIANTS = {"spotlight": "spotlight", "v": "vanilla-bo", "a": "spotlight-a", "r": "random", "ga": "genetic"}


@dataclass(frozen=True)
class RunScore:
    path: str
    method: str
    workloads: tuple
    fidelity: str
    seed: int
    samples: int
    simulations: int
    sim_wall_s: float
    wall_s: float
    designs: int
    best_edp: float               # inf when no design is feasible
    best_hw: dict | None
    best_layerwise_edp: float     # the best design's layerwise choice (each layer's lowest EDP)


def _method(options: dict) -> str:
    """The run's method; a software DSE on a given design (options "hardware") is its own
    method, "<method>-sw-dse", so it is never pooled with co-design runs."""
    m = _base_method(options)
    return m + "-sw-dse" if options.get("hardware") else m


def _base_method(options: dict) -> str:
    if isinstance(options.get("method"), str):      # the baselines name themselves
        return options["method"]
    if "variant" in options:
        return _VARIANTS.get(options["variant"], str(options["variant"]))
    if "hw_search" in options:
        return "polaris" + ("-" + options["acquisition"] if options.get("acquisition", "ucb") != "ucb" else "")
    return "unknown"


def _designs(recs) -> list[dict]:
    """The records grouped by design, designs in order of their first record, each
    layer's results in record order: [{"hw", "layers": {index: {"layer", "results"}}}]."""
    by_hw: dict[str, dict] = {}
    for r in recs:
        d = by_hw.setdefault(r.hw.to_json(), {"hw": r.hw, "layers": {}})
        d["layers"].setdefault(r.layer_index, {"layer": r.layer, "results": []})["results"].append(r.result)
    return list(by_hw.values())


def _design_score(d: dict, upto: int | None = None):
    """(min EDP over all combinations, layerwise EDP) of a design's feasible evaluations,
    each layer's first ``upto`` only when given; None when a layer has none."""
    from search.optimizers.polaris import product_of_sums_check

    E, C, counts = [], [], []
    for li in sorted(d["layers"]):
        ok = [x for x in d["layers"][li]["results"][:upto] if x.feasible and x.cycles and x.energy_pj]
        if not ok:
            return None
        E.append([x.energy_pj for x in ok])
        C.append([x.cycles for x in ok])
        counts.append(d["layers"][li]["layer"].count)
    if len(E) != max(d["layers"]) + 1:
        return None
    chk = product_of_sums_check(E, C, counts)
    return chk["min_edp"], chk["layerwise_edp"]


def _records(run):
    return [r for r in run.evaluations() if not r.phase.startswith("baseline-")]


def score_run(path) -> RunScore:
    """Score one run directory (read only)."""
    from search.runs import RunDir

    with RunDir.open_existing(path) as run:
        opts, info, seeds = run.options, run.info, run.seeds
        recs = _records(run)
    fidelity = opts.get("fidelity", "analytical")
    designs = _designs(recs)
    best = (math.inf, None, math.inf)
    samples = 0
    for d in designs:
        samples += max(len(v["results"]) for v in d["layers"].values())
        sc = _design_score(d)
        if sc is not None and sc[0] < best[0]:
            best = (sc[0], d["hw"].to_dict(), sc[1])
    sim = sum(float((r.result.extra or {}).get("sim_wall_s") or 0.0) for r in recs)
    created = datetime.fromisoformat(info["created"]).timestamp() if info.get("created") else math.nan
    wall = max((r.wall for r in recs), default=math.nan) - created
    return RunScore(str(path), _method(opts), tuple(opts.get("workloads") or ()), fidelity,
                    int(seeds.get("seed", opts.get("seed", 0))), samples, len(recs), sim, wall, len(designs),
                    best[0], best[1], best[2])


def convergence(path) -> list[tuple[int, float]]:
    """The run's best EDP so far after each sample, by the rule of `score_run`: designs in
    the order they were first evaluated; on a design, sample j is each layer's first j
    evaluations (a layer with fewer keeps all it has). [(samples so far, best EDP so far
    (inf while nothing is feasible))], one entry per sample."""
    from search.runs import RunDir

    with RunDir.open_existing(path) as run:
        recs = _records(run)
    out, n, best = [], 0, math.inf
    for d in _designs(recs):
        for j in range(1, max(len(v["results"]) for v in d["layers"].values()) + 1):
            sc = _design_score(d, j)
            if sc is not None:
                best = min(best, sc[0])
            n += 1
            out.append((n, best))
    return out


def group_scores(scores) -> list[dict]:
    """Per (workloads, fidelity, method): seeds, median/min/max best EDP, mean samples and
    wall, and the median's ratio to Polaris's median on the same workloads."""
    groups: dict[tuple, list[RunScore]] = {}
    for s in scores:
        groups.setdefault((s.workloads, s.fidelity, s.method), []).append(s)
    rows = []
    for (wl, fid, method), ss in sorted(groups.items()):
        vals = [s.best_edp for s in ss]
        rows.append({"workloads": ",".join(wl), "fidelity": fid, "method": method, "runs": len(ss),
                     "seeds": sorted(s.seed for s in ss), "median_edp": statistics.median(vals),
                     "min_edp": min(vals), "max_edp": max(vals),
                     "samples": statistics.mean(s.samples for s in ss),
                     "simulations": statistics.mean(s.simulations for s in ss),
                     "sim_wall_s": statistics.mean(s.sim_wall_s for s in ss),
                     "wall_s": statistics.mean(s.wall_s for s in ss)})
    for r in rows:
        ref = next((q for q in rows if q["method"] == "polaris" and q["workloads"] == r["workloads"]
                    and q["fidelity"] == r["fidelity"]), None)
        r["median_vs_polaris"] = r["median_edp"] / ref["median_edp"] if ref else math.nan
    return rows


def markdown(scores, rows) -> str:
    def e(v):
        return f"{v:.4e}" if math.isfinite(v) else "infeasible"

    out = ["| workload | fidelity | method | runs (seeds) | median best EDP | min | max | median / Polaris's | "
           "samples | simulations | simulator s | wall s |", "|:--|:--|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        out.append(f"| {r['workloads']} | {r['fidelity']} | {r['method']} | {r['runs']} "
                   f"({','.join(map(str, r['seeds']))}) | {e(r['median_edp'])} | {e(r['min_edp'])} | "
                   f"{e(r['max_edp'])} | {r['median_vs_polaris']:.3f} | {r['samples']:.0f} | {r['simulations']:.0f} | "
                   f"{r['sim_wall_s']:,.0f} | {r['wall_s']:,.0f} |")
    out += ["", "| run | method | seed | best EDP | best design | designs | samples |", "|:--|:--|--:|--:|:--|--:|--:|"]
    for s in sorted(scores, key=lambda s: (s.workloads, s.method, s.seed)):
        hw = "-" if s.best_hw is None else f"dim {s.best_hw['dim']}, sp {s.best_hw['sp_kb']} KB, acc {s.best_hw['acc_kb']} KB"
        out.append(f"| {Path(s.path).name} | {s.method} | {s.seed} | {e(s.best_edp)} | {hw} | {s.designs} | "
                   f"{s.samples} |")
    return "\n".join(out) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m search.compare_runs",
                      description="Score run directories of any optimiser by one rule and tabulate them.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (runs/NAME)")
    p.add_argument("--json", metavar="FILE", help="also write the per-run and per-group figures as JSON")
    p.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown")
    return p


def main(argv=None) -> int:
    args, status = parse_or_exit_status(_parser(), argv)
    if args is None:
        return status
    try:
        scores = [score_run(p) for p in args.runs]
    except (ValueError, OSError) as e:
        return print_error(e)
    rows = group_scores(scores)
    text = markdown(scores, rows)
    print(text, end="")
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        def fin(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v
        Path(args.json).write_text(json.dumps({"runs": [{k: fin(v) for k, v in asdict(s).items()} for s in scores],
                                               "groups": [{k: fin(v) for k, v in r.items()} for r in rows]},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)
