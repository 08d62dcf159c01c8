"""Spotlight from the command line: co-design a design and per-layer mappings.

    python -m search.spotlight --workload resnet50 [--workloads a,b,c] [--fidelity analytical|rtl] \\
        [--hw-iters 100] [--sw-iters 100] [--variant spotlight|v|a|r] [--seed S] \\
        [--objective edp|cycles|energy] [--area-budget MM2] [--name NAME | --run-dir DIR] \\
        [--workers W] [--sw-pool N] [--sw-batch K] [--quiet]
    python -m search.spotlight --workload W --hw dim=16,sp_kb=256,acc_kb=64 [options as above]
    python -m search.spotlight --codesign-with a,b,c --evaluate-on d[,e] [options as above]
    python -m search.spotlight --verify DIR [--workers W]

The optimiser is `search.optimizers.spotlight` (read its docstring); the run directory
(``runs/NAME``, default name from the workload, variant, fidelity and seed) is
`search.runs`: the options, seeds and package versions, and every evaluation in SQLite.
Kill the run at any moment and rerun the same command: it resumes, re-evaluates nothing
stored, and ends with the same history and best design as an uninterrupted run.

Layers: each workload's unique layer shapes (`search.workloads.unique_layers`, with
their repeat counts); with --workloads several models share one design and the
objective is that of all their layers together.

--hw fixes the design and searches the software only (one hardware iteration of
--sw-iters evaluations per layer): a software DSE on a given accelerator.

Generalisation (thesis Fig 4.4): --codesign-with a,b,c co-designs one design for those
models together (``DIR/codesign``); then for each --evaluate-on model the software is
searched on that design alone, with the same per-layer budget (``DIR/evaluate-d``), and,
as the reference, a design is co-designed for that model itself with the same budgets
(``DIR/target-d``); ``DIR/generalisation.json`` and ``DIR/report.md`` give the target's
EDP on the transferred design against its own co-designed one.

Defaults at analytical fidelity are the
paper's 100 hardware x 100 software samples; at RTL fidelity every evaluation is a
verified Verilator simulation (Polaris's budget is --hw-iters 8 --sw-iters 6).

Outputs in the run directory: ``best.json`` (hardware, per-layer mappings and results,
network energy, cycles, EDP, area), ``history.json`` (one entry per hardware iteration),
``report.md`` (`search.report`: the best design and its per-layer mappings, the hardware
candidates tried, the convergence plot ``convergence.png``, the CDF of the designs'
objective ``cdf.png``, the permutation importance of the software inputs on the best
design, `search.importance`, ``importance.png``), and the best design's Verilog under
``verilog/`` (``--no-verilog``: not written). --verify DIR simulates the
best design's layers on the RTL (every output verified against numpy) and prints the
network cost next to the run's own figure.

Bad options print one ``error:`` line and exit 2 before any work.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from hw.cli import OneLineParser, parse_or_exit_status, print_error, run_main

from search.report import point_dict

__all__ = ["main"]

MAX_WORKERS = 64


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m search.spotlight",
                      description="Spotlight (domain-aware BO) co-design of the accelerator and per-layer mappings.")
    p.add_argument("--workload", help="a workload name (python -m search.workloads lists them) or a workload file")
    p.add_argument("--workloads", help="comma-separated workloads sharing one design")
    p.add_argument("--codesign-with", metavar="A,B,...", help="generalisation: co-design for these workloads ...")
    p.add_argument("--evaluate-on", metavar="D,...", help="... then map these workloads onto that design")
    p.add_argument("--hw", metavar="SPEC", help="software search only, on this design: field=N,... "
                   "(e.g. dim=16,sp_kb=256,acc_kb=64; other fields default) or a HardwareConfig JSON file")
    p.add_argument("--fidelity", choices=("analytical", "rtl"), default="analytical",
                   help="analytical model, or verified RTL simulation of every evaluation (default analytical)")
    p.add_argument("--hw-iters", type=int, default=None, help="hardware iterations (default 100)")
    p.add_argument("--sw-iters", type=int, default=None,
                   help="software evaluations per layer and design (default 100)")
    p.add_argument("--variant", choices=("spotlight", "v", "a", "r", "ga"), default="spotlight",
                   help="features (spotlight), raw parameters (v), both (a), random search (r), "
                        "genetic algorithm (ga); default spotlight")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--objective", choices=("edp", "cycles", "energy"), default="edp",
                   help="network objective to minimise (default edp: total energy x total cycles)")
    p.add_argument("--area-budget", type=float, default=None, metavar="MM2",
                   help="designs over this area are never tried (default: no budget)")
    p.add_argument("--sw-pool", type=int, default=None, help="candidate mappings per layer and design (default 1000)")
    p.add_argument("--sw-batch", type=int, default=None, help="software evaluations per model refit (default 10)")
    p.add_argument("--hw-warmup", type=int, default=None, help="random hardware picks first (default 10)")
    p.add_argument("--sw-warmup", type=int, default=None, help="random software picks first, per layer (default 30)")
    p.add_argument("--hw-explore", type=float, default=None,
                   help="probability of a random hardware pick after the warm-up (default 0.1)")
    p.add_argument("--sw-explore", type=float, default=None,
                   help="probability of a random software round after the warm-up (default 0.3)")
    p.add_argument("--kappa", type=float, default=None, help="LCB = mean - kappa * std (default 1)")
    p.add_argument("--name", help="run directory runs/NAME (default from the workloads, variant, fidelity, seed)")
    p.add_argument("--run-dir", help="run directory (instead of --name)")
    p.add_argument("--workers", type=int, default=None, help="RTL simulations in parallel (default 2; RTL only)")
    p.add_argument("--verify", metavar="DIR", help="simulate a run's best design on the RTL")
    p.add_argument("--no-verilog", action="store_true", help="do not write the best design's Verilog")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _command() -> str:
    import shlex
    return shlex.join(["python", "-m", "search.spotlight", *sys.argv[1:]])


def _names(text: str, flag: str) -> list[str]:
    names = [w for w in text.split(",") if w]
    if not names:
        raise ValueError(f"{flag} names no workload")
    return names


def _layers_of(names) -> list:
    from search.workloads import get_workload, unique_layers

    layers = []
    for w in names:
        layers += unique_layers(get_workload(w))
    return layers


def _stem(names) -> str:
    return "+".join(Path(n).stem for n in names)


def _options(args):
    from search.optimizers.spotlight import SpotlightOptions

    kw = dict(variant=args.variant, seed=args.seed, objective=args.objective, area_budget_mm2=args.area_budget)
    for opt in ("hw_iters", "sw_iters", "sw_pool", "sw_batch", "hw_warmup", "sw_warmup", "hw_explore",
                "sw_explore", "kappa"):
        v = getattr(args, opt)
        if v is not None:
            kw[opt] = v
    return SpotlightOptions(**kw)   # validates every value (one-line ValueError)


def _report(args, run, opts, names, layers, result, wall_s: float) -> Path:
    """report.md (with convergence, CDF and feature-importance plots) and the best
    design's Verilog, through `search.report`."""
    from search.report import write_best_verilog, write_report

    path = Path(run.path)
    best = result.best
    importance = verilog = None
    if best is not None and opts.variant != "r":
        from search.importance import software_importance
        records = [r for r in run.evaluations() if r.hw == best.hw]
        try:
            importance = software_importance(records, opts.variant, opts.objective, seed=opts.seed)
        except ValueError as e:         # too few points on the best design: no table
            print(f"note: no feature importance ({e})", file=sys.stderr)
    if best is not None and not args.no_verilog:
        verilog = write_best_verilog(best.hw, path / "verilog")
    summary = [f"Spotlight-{opts.variant}, {run.options.get('fidelity')} fidelity, {len(result.history)} hardware "
               f"iterations x {opts.sw_iters} software evaluations per layer, seed {opts.seed}, objective "
               f"{opts.objective}, wall {wall_s:.0f} s (this sitting; a resumed run replays what is stored).",
               "", f"Started by: `{run.info.get('command', '')}`"]
    return write_report(path, title=f"Spotlight run: {', '.join(names)}", summary_lines=summary, names=names,
                        layers=layers, result=result, objective=opts.objective, importance=importance,
                        verilog_path=verilog,
                        verify_command=f"python -m search.spotlight --verify {path}" if best is not None else None)


def _verify(args) -> int:
    from hw.config import HardwareConfig
    from hw.layer import Layer
    from hw.mapping import Mapping
    from search.evaluators import RTLEvaluator

    path = Path(args.verify)
    f = path / "best.json"
    if not f.is_file():
        raise ValueError(f"--verify {path}: no best.json there (not a finished run directory)")
    doc = json.loads(f.read_text())
    hw = HardwareConfig.from_dict(doc["hw"])
    layers = [Layer(**e["layer"]) for e in doc["layers"]]
    maps = [Mapping.from_dict(e["mapping"]) for e in doc["layers"]]
    ev = RTLEvaluator(workers=args.workers, progress=not args.quiet).evaluate(hw, layers, maps)
    bad = [lay.name for lay, r in zip(layers, ev.results) if not (r.feasible and r.verified)]
    print(f"RTL: EDP {ev.cost.edp:.4e}  cycles {ev.cost.cycles:,.0f}  energy {ev.cost.energy_pj / 1e6:,.3f} uJ  "
          f"({len(layers) - len(bad)}/{len(layers)} layers verified); run's own figure "
          f"({doc['fidelity']}): EDP {doc['cost']['edp']:.4e}")
    return 0 if not bad else 1


def main(argv=None) -> int:
    args, status = parse_or_exit_status(_parser(), argv)
    if args is None:
        return status
    from search.workload_file import WorkloadError

    try:
        if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
            raise ValueError(f"--workers must be in 1..{MAX_WORKERS}; got {args.workers}")
        if args.workers is not None and not args.verify and args.fidelity != "rtl":
            raise ValueError("--workers applies to --fidelity rtl and --verify only")
        args.workers = args.workers or 2
        if args.verify:
            return _verify(args)
        given = [f"--{f.replace('_', '-')}" for f in ("workload", "workloads", "codesign_with") if getattr(args, f)]
        if len(given) > 1:
            raise ValueError(f"give one of --workload, --workloads and --codesign-with; got {' and '.join(given)}")
        if not given:
            raise ValueError("--workload, --workloads or --codesign-with is required")
        if bool(args.codesign_with) != bool(args.evaluate_on):
            raise ValueError("--codesign-with and --evaluate-on go together")
        hardware = None
        if args.hw is not None:
            from hw.cli import parse_hardware
            if args.codesign_with:
                raise ValueError("--hw fixes the design; it does not go with --codesign-with")
            hardware = parse_hardware(args.hw)
        opts = _options(args)
        if args.name and args.run_dir:
            raise ValueError("give --name or --run-dir, not both")
        if args.codesign_with:
            names = _names(args.codesign_with, "--codesign-with")
            targets = _names(args.evaluate_on, "--evaluate-on")
            layers = _layers_of(names)
            target_layers = {t: _layers_of([t]) for t in targets}     # every workload read before any work
            stem = f"{_stem(names)}-to-{_stem(targets)}"
        else:
            names = _names(args.workloads, "--workloads") if args.workloads else [args.workload]
            layers = _layers_of(names)
            stem = _stem(names) + ("" if args.hw is None else "-sw")
        if args.fidelity == "rtl":
            from search.evaluators import check_simulable
            check_simulable(layers)
            for t in (target_layers.values() if args.codesign_with else ()):
                check_simulable(t)
        run_path = Path(args.run_dir) if args.run_dir else Path("runs") / (
            args.name or f"{stem}-{opts.variant}-{args.fidelity}-s{opts.seed}")
        if run_path.exists() and not run_path.is_dir():
            raise ValueError(f"run directory {run_path} is a file")
        from search.options import check_area_budget_reachable
        check_area_budget_reachable(args.area_budget)
        from search.evaluators import make_evaluator
        from search.runs import RunDir

        evaluator = make_evaluator(args.fidelity, **({"workers": args.workers, "progress": not args.quiet}
                                                     if args.fidelity == "rtl" else {}))
        if args.codesign_with:
            options = {**opts.to_dict(), "scenario": "generalisation", "codesign_with": names,
                       "evaluate_on": targets, "fidelity": args.fidelity}
        else:
            options = {**opts.to_dict(), "workloads": names, "fidelity": args.fidelity}
            if hardware is not None:
                options["hardware"] = hardware.to_dict()
        run = RunDir.open(run_path, options, seeds={"seed": opts.seed}, command=_command())
    except (ValueError, WorkloadError) as e:
        return print_error(e)
    if args.codesign_with:
        return _generalise(args, run, opts, names, layers, target_layers, evaluator)
    with run:
        result, wall = _search(args, run, opts, names, layers, evaluator, hardware=hardware)
    return _summary(result, wall, run)


def _search(args, run, opts, names, layers, evaluator, hardware=None, label=None):
    """Run Spotlight into ``run`` (resuming what it holds) and write its outputs."""
    import torch
    from tqdm import tqdm

    from search.optimizers.spotlight import run_spotlight

    torch.set_num_threads(1)        # tiny GPs: one thread is faster, and reproducible
    t0 = time.time()
    total = 1 if hardware is not None else opts.hw_iters
    bar = tqdm(total=total, unit="design", disable=args.quiet, dynamic_ncols=True, file=sys.stderr, desc=label)

    def progress(point, best):
        bar.set_postfix_str(f"best {opts.objective} {best.objective:.3e} (dim {best.hw.dim}, sp {best.hw.sp_kb}, "
                            f"acc {best.hw.acc_kb})" if best else "no feasible design yet", refresh=False)
        bar.update(1)

    try:
        result = run_spotlight(layers, opts, evaluator, run, hardware=hardware, progress=progress)
    finally:
        bar.close()
    wall = time.time() - t0
    history = [point_dict(p, layers) for p in result.history]
    run.write_json("history.json", history)
    if result.best is not None:
        best = {**point_dict(result.best, layers), "fidelity": evaluator.fidelity, "workloads": names,
                "variant": opts.variant, "seed": opts.seed}
        run.write_json("best.json", best)
    _report(args, run, opts, names, layers, result, wall)
    return result, wall


def _summary(result, wall, run) -> int:
    if result.best is None:
        print("no feasible design found", file=sys.stderr)
        return 1
    b = result.best
    print(f"best design: dim {b.hw.dim}, sp_kb {b.hw.sp_kb}, acc_kb {b.hw.acc_kb}   network EDP {b.cost.edp:.4e} "
          f"pJ x cycles, {b.cost.cycles:,.0f} cycles, {b.cost.energy_pj / 1e6:,.3f} uJ, {b.area_mm2:.3f} mm^2 "
          f"(iteration {b.iteration}; {len(result.history)} designs, wall {wall:.0f} s)")
    print(f"report: {Path(run.path) / 'report.md'}   re-verify on the RTL: python -m search.spotlight --verify {run.path}")
    return 0


def _generalise(args, top, opts, names, layers, target_layers, evaluator) -> int:
    """Co-design for ``names``, then map each target onto that design and compare with
    the target's own co-designed design (same budgets)."""
    from search.runs import RunDir

    base = {**opts.to_dict(), "fidelity": args.fidelity}
    seeds = {"seed": opts.seed}
    command = _command()
    with top:
        with RunDir.open(top.path / "codesign", {**base, "workloads": names, "role": "codesign"},
                         seeds=seeds, command=command) as run:
            src, wall = _search(args, run, opts, names, layers, evaluator, label="co-design")
        if src.best is None:
            print(f"no feasible design found for {', '.join(names)}", file=sys.stderr)
            return 1
        rows = []
        for t, t_layers in target_layers.items():
            tag = Path(t).stem
            with RunDir.open(top.path / f"evaluate-{tag}", {**base, "workloads": [t], "role": "evaluate",
                                                             "hardware": src.best.hw.to_dict()},
                             seeds=seeds, command=command) as run:
                moved, _ = _search(args, run, opts, [t], t_layers, evaluator, hardware=src.best.hw,
                                   label=f"map {tag}")
            with RunDir.open(top.path / f"target-{tag}", {**base, "workloads": [t], "role": "target"},
                             seeds=seeds, command=command) as run:
                own, _ = _search(args, run, opts, [t], t_layers, evaluator, label=f"co-design {tag}")
            m, o = moved.best, own.best
            rows.append({"workload": t,
                         "transferred": None if m is None else {"hw": m.hw.to_dict(), "objective": m.objective,
                                                                "cost": m.cost.to_dict()},
                         "own": None if o is None else {"hw": o.hw.to_dict(), "objective": o.objective,
                                                        "cost": o.cost.to_dict()},
                         "ratio": None if m is None or o is None else m.objective / o.objective})
        doc = {"codesign_with": names, "design": src.best.hw.to_dict(), "objective": opts.objective,
               "source_objective": src.best.objective, "targets": rows}
        top.write_json("generalisation.json", doc)
        hw = src.best.hw
        lines = [f"# Generalisation: {', '.join(names)} -> {', '.join(target_layers)}", "",
                 f"Spotlight-{opts.variant}, {args.fidelity} fidelity, {opts.hw_iters} x {opts.sw_iters} "
                 f"per co-design, seed {opts.seed}, objective {opts.objective}.", "",
                 f"Design co-designed for {', '.join(names)} (`codesign/`): dim {hw.dim}, sp_kb {hw.sp_kb}, "
                 f"acc_kb {hw.acc_kb}; its {opts.objective} there {src.best.objective:.4e}.", "",
                 f"| target | on the transferred design (`evaluate-*`) | own co-designed design (`target-*`) | "
                 f"ratio |", "|:--|--:|--:|--:|"]
        for r in rows:
            tr, ow = r["transferred"], r["own"]
            lines.append(f"| {r['workload']} | {tr['objective']:.4e} | " if tr else f"| {r['workload']} | - | ")
            lines[-1] += (f"{ow['objective']:.4e} (dim {ow['hw']['dim']}, sp {ow['hw']['sp_kb']}, acc "
                          f"{ow['hw']['acc_kb']}) | " if ow else "- | ") + (f"{r['ratio']:.3f} |" if r["ratio"] else "- |")
        (top.path / "report.md").write_text("\n".join(lines) + "\n")
    print(f"design for {', '.join(names)}: dim {hw.dim}, sp_kb {hw.sp_kb}, acc_kb {hw.acc_kb}")
    for r in rows:
        ratio = f"{r['ratio']:.3f}x its own co-designed design" if r["ratio"] else "no feasible comparison"
        print(f"  {r['workload']}: {opts.objective} "
              f"{r['transferred']['objective'] if r['transferred'] else float('nan'):.4e} on it, {ratio}")
    print(f"report: {top.path / 'report.md'}")
    return 0


if __name__ == "__main__":
    run_main(main)
