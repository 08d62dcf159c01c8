#!/usr/bin/env python3
"""Spotlight's ablation (thesis 4.4.5, Figs 4.6 and 4.7): Spotlight, -V, -A, -R and -GA at
equal sample budgets, several trials each, at analytical fidelity.

    python scripts/bench_spotlight.py [--workloads resnet50,transformer] \\
        [--methods spotlight,v,a,r,ga] [--trials 10] [--hw-iters 30] [--sw-iters 40] \\
        [--sw-warmup 20] [--hw-warmup 10] [--jobs 2] [--runs runs/ablation] \\
        [--out docs/spotlight/ablation]

Every (workload, method, trial) is one `search.optimizers.spotlight.run_spotlight` run
with seed = trial into its own run directory under ``--runs`` (resumable: a killed
benchmark rerun with the same options replays what is stored and goes on). The same
seed gives every method the same warm-up hardware picks (a paired comparison); the
budgets are identical: ``hw_iters`` designs x ``sw_iters`` mappings per layer.
Runs go to a pool of ``--jobs`` processes, one torch thread each.

Writes under ``--out``: ``summary.json`` (options, per run: best objective and design,
best-so-far curve, every design's objective, wall seconds), ``table.md`` (per workload
and method: median / min / max best EDP over the trials, median wall), and per workload
``convergence_<w>.png`` (median best-so-far per method, min-max band) and ``cdf_<w>.png``
(empirical CDF of the designs' EDP, one line per trial). Prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = ("spotlight", "v", "a", "r", "ga")
LABELS = {"spotlight": "Spotlight", "v": "Spotlight-V", "a": "Spotlight-A", "r": "Spotlight-R", "ga": "Spotlight-GA"}


def _options(args, method: str, seed: int):
    from search.optimizers.spotlight import SpotlightOptions

    return SpotlightOptions(hw_iters=args.hw_iters, sw_iters=args.sw_iters, hw_warmup=args.hw_warmup,
                            sw_warmup=args.sw_warmup, sw_pool=args.sw_pool, variant=method, seed=seed)


def _one(job) -> dict:
    """One trial in its own run directory (resumes what is stored)."""
    import torch

    from search.evaluators import AnalyticalEvaluator
    from search.optimizers.spotlight import run_spotlight
    from search.runs import RunDir
    from search.workloads import get_workload, unique_layers

    torch.set_num_threads(1)
    args, workload, method, seed = job
    opts = _options(args, method, seed)
    layers = unique_layers(get_workload(workload))
    path = Path(args.runs) / f"{workload}-{method}-s{seed}"
    t0 = time.time()
    with RunDir.open(path, {**opts.to_dict(), "workloads": [workload], "fidelity": "analytical"},
                     seeds={"seed": seed}, command="scripts/bench_spotlight.py") as run:
        stored = run.count()
        res = run_spotlight(layers, opts, AnalyticalEvaluator(), run)
    wall = time.time() - t0
    fin = lambda v: v if math.isfinite(v) else None  # noqa: E731
    b = res.best
    return {"workload": workload, "method": method, "seed": seed, "wall_s": wall, "resumed_evaluations": stored,
            "best": None if b is None else fin(b.objective),
            "best_hw": None if b is None else b.hw.to_dict(),
            "best_so_far": [fin(v) for v in res.best_so_far],
            "objectives": [fin(p.objective) for p in res.history]}


def _plots(out: Path, runs: list[dict], workloads, methods) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from search.report import empirical_cdf

    colours = dict(zip(METHODS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for w in workloads:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for m in methods:
            curves = [r["best_so_far"] for r in runs if r["workload"] == w and r["method"] == m]
            if not curves:
                continue
            Y = np.array([[np.nan if v is None else v for v in c] for c in curves], dtype=float)
            x = np.arange(1, Y.shape[1] + 1)
            ax.semilogy(x, np.nanmedian(Y, axis=0), color=colours[m], label=LABELS[m])
            ax.fill_between(x, np.nanmin(Y, axis=0), np.nanmax(Y, axis=0), color=colours[m], alpha=0.15)
        ax.set_xlabel("hardware samples")
        ax.set_ylabel("best network EDP (pJ x cycles)")
        ax.set_title(f"{w}: median best-so-far, min-max band")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"convergence_{w}.png", dpi=120)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for m in methods:
            first = True
            for r in (r for r in runs if r["workload"] == w and r["method"] == m):
                x, p = empirical_cdf(r["objectives"])
                ax.step(x, p, where="post", color=colours[m], alpha=0.6, lw=1, label=LABELS[m] if first else None)
                first = False
        ax.set_xscale("log")
        ax.set_xlabel("network EDP of a hardware sample (pJ x cycles)")
        ax.set_ylabel("fraction of samples")
        ax.set_title(f"{w}: CDF of the hardware samples, one line per trial")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"cdf_{w}.png", dpi=120)
        plt.close(fig)


def _table(runs: list[dict], workloads, methods) -> str:
    lines = ["| workload | method | trials | median best EDP | min | max | median / Spotlight's | median wall s |",
             "|:--|:--|--:|--:|--:|--:|--:|--:|"]
    for w in workloads:
        ref = [r["best"] for r in runs if r["workload"] == w and r["method"] == "spotlight" and r["best"]]
        ref_med = float(np.median(ref)) if ref else None
        for m in methods:
            rs = [r for r in runs if r["workload"] == w and r["method"] == m]
            b = [r["best"] for r in rs if r["best"] is not None]
            if not b:
                lines.append(f"| {w} | {LABELS[m]} | {len(rs)} | - | - | - | - | - |")
                continue
            med = float(np.median(b))
            rel = f"{med / ref_med:.3f}" if ref_med else "-"
            lines.append(f"| {w} | {LABELS[m]} | {len(rs)} | {med:.4e} | {min(b):.4e} | {max(b):.4e} | {rel} | "
                         f"{np.median([r['wall_s'] for r in rs]):.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="resnet50,transformer")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--hw-iters", type=int, default=30)
    p.add_argument("--sw-iters", type=int, default=40)
    p.add_argument("--hw-warmup", type=int, default=10)
    p.add_argument("--sw-warmup", type=int, default=20)
    p.add_argument("--sw-pool", type=int, default=1000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--runs", default="runs/ablation")
    p.add_argument("--out", default="docs/spotlight/ablation")
    args = p.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        p.error(f"--methods: unknown {bad[0]!r}; known: {', '.join(METHODS)}")
    if not 1 <= args.trials <= 100:
        p.error(f"--trials must be in 1..100; got {args.trials}")
    if not 1 <= args.jobs <= 64:
        p.error(f"--jobs must be in 1..64; got {args.jobs}")
    from search.workloads import get_workload
    for w in workloads:
        try:
            get_workload(w)
        except Exception as e:  # noqa: BLE001 - one line, whatever the reader raised
            p.error(str(e).splitlines()[0])
    _options(args, "spotlight", 0)          # validates the budgets (one-line ValueError)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # the interleaved order gives an early picture of every method
    jobs = [(args, w, m, s) for s in range(args.trials) for w in workloads for m in methods]
    runs, t0 = [], time.time()
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        futs = [ex.submit(_one, j) for j in jobs]
        for i, f in enumerate(as_completed(futs), 1):
            r = f.result()
            runs.append(r)
            el = time.time() - t0
            print(f"[{i}/{len(jobs)}] {r['workload']} {LABELS[r['method']]} seed {r['seed']}: best "
                  f"{r['best'] if r['best'] is None else format(r['best'], '.4e')} in {r['wall_s']:.0f} s "
                  f"(elapsed {el:.0f} s, ETA {el / i * (len(jobs) - i):.0f} s)", file=sys.stderr, flush=True)
    runs.sort(key=lambda r: (r["workload"], METHODS.index(r["method"]), r["seed"]))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    except OSError:
        commit = None
    opts = {k: v for k, v in vars(args).items()}
    summary = {"options": opts, "commit": commit, "cpu_count": os.cpu_count(), "wall_s": time.time() - t0,
               "runs": runs}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    table = _table(runs, workloads, methods)
    (out / "table.md").write_text(table + "\n")
    _plots(out, runs, workloads, methods)
    print(table)
    print(f"wall {time.time() - t0:.0f} s; {out}/summary.json, table.md, convergence_*.png, cdf_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
