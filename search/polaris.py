"""Polaris from the command line: co-design the accelerator and per-layer mappings with the
RTL in the loop (thesis chapter 6).

    python -m search.polaris --workload resnet50                       # the whole command
    python -m search.polaris --workloads bert,resnet50 [--area-budget MM2] [--seed S]
    python -m search.polaris --workload resnet50 --hw dim=16,sp_kb=256,acc_kb=64   # software DSE (m = 20)
    python -m search.polaris --workload bert --fidelity analytical --hw-iters 2 --sw-iters 2   # the fast proxy

The optimiser is `search.optimizers.polaris` (its docstring has the formulas); the
surrogate is Starlight (residual variant), pre-trained on first use and cached
(`search.polaris_surrogate`) unless ``--surrogate FILE`` names one; the run directory
(``runs/NAME``) is `search.runs`: options, seeds, versions, every evaluation in SQLite.
Kill the run at any moment and rerun the same command: it resumes, simulates nothing
stored, and ends with the same history and best design.

At RTL fidelity every evaluation is a Verilator simulation verified against numpy; the
layers of a round run in parallel on ``--workers`` processes; each simulation has the
program's cycle watchdog and a wall-clock limit (``--timeout``), after which it counts
as infeasible and the run goes on.

Outputs in the run directory: ``best.json`` (the format of `python -m search.spotlight
--verify`, which re-simulates it), ``history.json``, ``samples.json`` (every sample with
its prediction and measurement), ``report.md`` with ``convergence.png`` (Fig 6.5),
``predicted.png``, ``product_of_sums.png`` (Fig 6.2) and the wall-time split, and the
best design's Verilog under ``verilog/`` (``--no-verilog``: not written).

Bad options print one ``error:`` line and exit 2 before any work.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from hw.cli import OneLineParser, parse_or_exit_status, print_error, run_main

__all__ = ["main"]

MAX_WORKERS = 256
_HELP_DEFAULTS = dict(hw_iters=8, sw_iters=6, sw_iters_dse=20)


def _parser() -> OneLineParser:
    from search.optimizers.polaris import PolarisOptions

    d = PolarisOptions()
    p = OneLineParser(prog="python -m search.polaris",
                      description="Polaris: online co-design of the accelerator and per-layer mappings, Starlight "
                                  "as the surrogate, every sample evaluated on the RTL.")
    p.add_argument("--workload", help="a workload name (python -m search.workloads lists them) or a workload file")
    p.add_argument("--workloads", metavar="A,B", help="comma-separated workloads sharing one design")
    p.add_argument("--hw", metavar="SPEC", help="software DSE on this design: field=N,... (e.g. dim=16,sp_kb=256,"
                   "acc_kb=64; other fields default) or a HardwareConfig JSON file (a run's best.json works); "
                   "default: co-design the hardware too")
    p.add_argument("--fidelity", choices=("rtl", "analytical"), default="rtl",
                   help="rtl: verified Verilator simulation of every evaluation; analytical: the analytical model "
                        "(seconds; a proxy for tests and trials) (default rtl)")
    p.add_argument("--hw-iters", type=int, default=None, help=f"hardware iterations n (default {d.hw_iters})")
    p.add_argument("--sw-iters", type=int, default=None,
                   help=f"software rounds m per design; one round = one sample (default {d.sw_iters}; "
                        f"{_HELP_DEFAULTS['sw_iters_dse']} with --hw)")
    p.add_argument("--acquisition", choices=("ucb", "ei"), default=d.acquisition,
                   help="upper confidence bound or expected improvement (default ucb)")
    p.add_argument("--kappa", type=float, default=None,
                   help=f"UCB: ln EDP mean - kappa * std (default {d.kappa:g})")
    p.add_argument("--beta", type=float, default=None, help="UCB in BoTorch's terms: kappa = sqrt(beta) "
                   "(give --kappa or --beta; default beta 1)")
    p.add_argument("--hw-search", choices=("continuous", "enumerate"), default=d.hw_search,
                   help="continuous: maximise the acquisition over the hardware cube and round by L1 (the paper's); "
                        "enumerate: score all 4,096 designs (default continuous)")
    p.add_argument("--hw-candidates", type=int, default=None,
                   help=f"continuous: Sobol points of the hardware cube (default {d.hw_candidates})")
    p.add_argument("--hw-refine", type=int, default=None,
                   help=f"continuous: pattern-search points after them (default {d.hw_refine})")
    p.add_argument("--hw-pool", type=int, default=None,
                   help="mappings per layer scoring one design in the hardware step (default 32 continuous, "
                        "4 enumerate)")
    p.add_argument("--sw-pool", type=int, default=None,
                   help=f"Sobol mappings per layer and design in the software step (default {d.sw_pool})")
    p.add_argument("--update-iters", type=int, default=None,
                   help=f"Adam steps of each online surrogate update (default {d.update_iters})")
    p.add_argument("--area-budget", type=float, default=None, metavar="MM2",
                   help="designs over this area are never tried (default: no budget)")
    p.add_argument("--surrogate", metavar="FILE", help="a Starlight model file (python -m search.starlight train); "
                   "default: the pre-trained default, built on first use (about 4 min) and cached in "
                   "~/.cache/accelsim/polaris")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--name", help="run directory runs/NAME (default polaris-WORKLOADS[-sw]-FIDELITY-sSEED)")
    p.add_argument("--run-dir", help="run directory (instead of --name)")
    p.add_argument("--workers", type=int, default=None,
                   help=f"RTL simulations in parallel (default all cores: {os.cpu_count() or 1})")
    p.add_argument("--ray", metavar="ADDRESS", help="send the simulations to Ray instead: local, auto or "
                   "ray://host:port (needs pip install 'accelsim[ray]'; default: a local process pool)")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="wall-clock limit of one simulation in seconds; past it the sample is infeasible "
                        "(default 1800)")
    p.add_argument("--no-baselines", action="store_true",
                   help="with --hw: do not measure the mapper baselines (by default the design is also evaluated "
                        "with every layer on default_mapping and on the analytical best of --baseline-samples "
                        "mappings, at the run's fidelity, for the report's comparison)")
    p.add_argument("--baseline-samples", type=int, default=None, metavar="N",
                   help="with --hw: mappings per layer of the analytical best-of-N baseline (1..1,048,576, "
                        "default 4096, as --mapping best)")
    p.add_argument("--no-verilog", action="store_true", help="do not write the best design's Verilog")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def _command() -> str:
    import shlex
    return shlex.join(["python", "-m", "search.polaris", *sys.argv[1:]])


def _options(args, hardware):
    from search.optimizers.polaris import PolarisOptions

    if args.kappa is not None and args.beta is not None:
        raise ValueError("give --kappa or --beta, not both")
    kw = dict(acquisition=args.acquisition, hw_search=args.hw_search, seed=args.seed,
              area_budget_mm2=args.area_budget)
    if args.beta is not None:
        if not (math.isfinite(args.beta) and args.beta >= 0):
            raise ValueError(f"--beta must be a finite number >= 0; got {args.beta:g}")
        kw["kappa"] = math.sqrt(args.beta)
    elif args.kappa is not None:
        kw["kappa"] = args.kappa
    if hardware is not None:
        kw["sw_iters"] = 20
        kw["hw_iters"] = 1
        if args.hw_iters not in (None, 1):
            raise ValueError("--hw fixes the design: --hw-iters does not apply")
    for opt in ("hw_iters", "sw_iters", "hw_candidates", "hw_refine", "hw_pool", "sw_pool", "update_iters"):
        v = getattr(args, opt)
        if v is not None:
            kw[opt] = v
    return PolarisOptions(**kw)      # validates every value (one-line ValueError)


def _layers_of(names) -> list:
    from search.workloads import get_workload, unique_layers

    layers = []
    for w in names:
        layers += unique_layers(get_workload(w))
    return layers


def _point_dict(p, layers) -> dict:
    def fin(v):
        return v if not isinstance(v, float) or math.isfinite(v) else None

    return {"iteration": p.iteration, "phase": p.phase, "hw": p.hw.to_dict(), "area_mm2": p.area_mm2,
            "objective": fin(p.objective), "layerwise_objective": fin(p.layerwise_objective),
            "hw_point": list(p.hw_point), "acquisition": fin(p.acquisition_value),
            "cost": {k: fin(v) for k, v in p.cost.to_dict().items()}, "evaluations": p.evaluations,
            "samples": [s.objective if math.isfinite(s.objective) else None for s in p.samples],
            "layers": [{"name": lay.name, "count": lay.count, "layer": lay.to_dict(),
                        "mapping": None if m is None else m.to_dict(), "result": r.to_dict()}
                       for lay, m, r in zip(layers, p.mappings, p.results)]}


def _sample_dict(s, layers) -> dict:
    def fin(v):
        return v if math.isfinite(v) else None

    return {"iteration": s.iteration, "round": s.round, "objective": fin(s.objective),
            "best_on_design": fin(s.best_on_design),
            "predicted_ln_edp": fin(s.predicted_network[0]), "predicted_ln_edp_std": s.predicted_network[1],
            "layers": [{"name": lay.name, "mapping": None if m is None else m.to_dict(),
                        "predicted_ln_edp": fin(mu), "predicted_std": fin(sd),
                        "cycles": r.cycles, "energy_pj": r.energy_pj, "feasible": r.feasible, "reason": r.reason,
                        "verified": r.verified}
                       for lay, m, r, mu, sd in zip(layers, s.mappings, s.results, s.predicted_mean,
                                                    s.predicted_std)]}


class _RayRTLEvaluator:
    """The RTL evaluator with its simulations as Ray tasks (``--ray``)."""

    fidelity = "rtl"

    def __init__(self, address: str, timeout_s: float):
        import ray

        self.ray, self.timeout_s = ray, timeout_s
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        from sim.evaluate import evaluate

        self.remote = ray.remote(num_cpus=1)(
            lambda hw, m, layer, t: evaluate(hw, m, layer, timeout_s=t, superset=True))

    def results_many(self, work):
        import cost

        refs, where = [], []
        for j, (hw, layer, batch) in enumerate(work):
            for i in range(len(batch)):
                refs.append(self.remote.remote(hw, batch.mapping(i), layer, self.timeout_s))
                where.append((j, hw))
        out = [[] for _ in work]
        for (j, hw), r in zip(where, self.ray.get(refs)):
            out[j].append(cost.price(r, hw))
        return out


def main(argv=None) -> int:
    args, status = parse_or_exit_status(_parser(), argv)
    if args is None:
        return status
    from search.models.model_file import ModelFileError
    from search.workload_file import WorkloadError

    try:
        if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
            raise ValueError(f"--workers must be in 1..{MAX_WORKERS}; got {args.workers}")
        if not (math.isfinite(args.timeout) and 0 < args.timeout <= 86_400):
            raise ValueError(f"--timeout must be in (0, 86400] seconds; got {args.timeout:g}")
        if args.fidelity != "rtl" and (args.workers is not None or args.ray):
            raise ValueError("--workers and --ray apply to --fidelity rtl only")
        if args.workers is not None and args.ray:
            raise ValueError("give --workers (a local process pool) or --ray, not both")
        if args.ray:
            try:
                import ray  # noqa: F401
            except ImportError:
                raise ValueError("--ray needs the ray package (pip install 'accelsim[ray]')") from None
        if bool(args.workload) == bool(args.workloads):
            raise ValueError("give one of --workload and --workloads" if args.workload
                             else "--workload or --workloads is required")
        names = [w for w in (args.workloads or args.workload).split(",") if w] if args.workloads else [args.workload]
        if not names:
            raise ValueError("--workloads names no workload")
        hardware = None
        if args.hw is not None:
            from hw.cli import parse_hardware
            hardware = parse_hardware(args.hw)
        opts = _options(args, hardware)
        baselines = _baseline_options(args, hardware)
        layers = _layers_of(names)
        if args.fidelity == "rtl":
            from search.evaluators import check_simulable
            check_simulable(layers)
        if args.name and args.run_dir:
            raise ValueError("give --name or --run-dir, not both")
        from search.options import check_area_budget_reachable

        check_area_budget_reachable(args.area_budget, hardware)
        stem = "+".join(Path(n).stem for n in names) + ("-sw" if hardware else "")
        run_path = Path(args.run_dir) if args.run_dir else Path("runs") / (
            args.name or f"polaris-{stem}-{args.fidelity}-s{opts.seed}")
        if run_path.exists() and not run_path.is_dir():
            raise ValueError(f"run directory {run_path} is a file")
        from search import polaris_surrogate as ps

        if args.surrogate:
            surrogate, sinfo = ps.load_surrogate_file(args.surrogate)
            identity = sinfo["identity"]
        else:
            surrogate, sinfo = None, None
            identity = f"default:{ps.recipe_key(ps.SurrogateRecipe())}"
        options = {**opts.to_dict(), "workloads": names, "fidelity": args.fidelity, "surrogate": identity,
                   "timeout_s": args.timeout}
        if hardware is not None:
            options["hardware"] = hardware.to_dict()
            options["baseline_samples"] = baselines
        from search.runs import RunDir

        run = RunDir.open(run_path, options, seeds={"seed": opts.seed}, command=_command())
    except (ValueError, WorkloadError, ModelFileError, OSError) as e:
        return print_error(e)
    with run:
        if run.notes:
            print(run.notes, file=sys.stderr)
        try:
            if surrogate is None:
                surrogate, sinfo = ps.default_surrogate(log=None if not args.quiet else (lambda s: None),
                                                        progress=not args.quiet)
            evaluator = _evaluator(args)
        except (ValueError, ModelFileError, OSError) as e:
            return print_error(e)
        result, wall = _search(args, run, opts, names, layers, evaluator, surrogate, sinfo, hardware, baselines)
    return _summary(result, wall, run)


def _evaluator(args):
    from search.evaluators import make_evaluator

    if args.fidelity == "analytical":
        return make_evaluator("analytical")
    if args.ray:
        return _RayRTLEvaluator(args.ray, args.timeout)
    return make_evaluator("rtl", workers=args.workers or os.cpu_count() or 1, progress=False,
                          timeout_s=args.timeout)


def _baseline_options(args, hardware) -> int | None:
    """Mappings per layer of the best-of-N mapper baseline, or None (no baselines)."""
    from hw.cli import MAX_BEST_SAMPLES, DEFAULT_BEST_SAMPLES

    if hardware is None:
        for flag, given in (("--no-baselines", args.no_baselines), ("--baseline-samples", args.baseline_samples)):
            if given not in (None, False):
                raise ValueError(f"{flag} applies to software DSE (--hw) only")
        return None
    if args.no_baselines:
        if args.baseline_samples is not None:
            raise ValueError("give --no-baselines or --baseline-samples, not both")
        return None
    n = DEFAULT_BEST_SAMPLES if args.baseline_samples is None else args.baseline_samples
    if not 1 <= n <= MAX_BEST_SAMPLES:
        raise ValueError(f"--baseline-samples must be in 1..{MAX_BEST_SAMPLES:,}; got {n}")
    return n


def _search(args, run, opts, names, layers, evaluator, surrogate, sinfo, hardware, baselines=None):
    from tqdm import tqdm

    from search.optimizers.polaris import run_polaris
    from search.polaris_report import timing_rows, write_polaris_report

    t0 = time.time()
    n_it = 1 if hardware is not None else opts.hw_iters
    bar = tqdm(total=n_it * opts.sw_iters, unit="sample", disable=args.quiet, dynamic_ncols=True, file=sys.stderr,
               desc="polaris")

    def progress(ev):
        best = f"best EDP {ev['best']:.3e}" if ev.get("best") else "no design yet"
        stage = {"hardware": "choosing a design", "simulate": f"{ev['in_flight']} layers in flight",
                 "round": "updated", "design": "design done"}[ev["stage"]]
        h = ev["h"]
        hw = ev.get("hw")
        where = f" d{hw.dim}/sp{hw.sp_kb}/acc{hw.acc_kb}" if hw is not None else ""
        bar.set_postfix_str(f"hw {min(h + 1, ev['n'])}/{ev['n']}{where} sw {ev['j']}/{ev['m']} | {stage} | {best}",
                            refresh=True)
        if ev["stage"] == "round":
            bar.update(1)

    try:
        result = run_polaris(layers, opts, evaluator, run, surrogate=surrogate, hardware=hardware, progress=progress)
    finally:
        bar.close()
    base = None
    if baselines is not None:
        from search.polaris_baselines import mapper_baselines

        tb = time.time()
        if not args.quiet:
            print(f"mapper baselines: default_mapping and the analytical best of {baselines:,}, {evaluator.fidelity} "
                  f"fidelity ...", file=sys.stderr)
        base = mapper_baselines(hardware, layers, evaluator, run, samples=baselines, seed=opts.seed,
                                buffering=opts.buffering, iteration=0)
        result.timings["baselines"] = time.time() - tb
        run.write_json("baselines.json", [b.to_dict(layers) for b in base])
    wall = time.time() - t0
    t1 = time.time()
    run.write_json("history.json", [_point_dict(p, layers) for p in result.history])
    run.write_json("samples.json", [_sample_dict(s, layers) for s in result.samples])
    verilog = None
    if result.best is not None:
        run.write_json("best.json", {**_point_dict(result.best, layers), "fidelity": evaluator.fidelity,
                                     "workloads": names, "optimizer": "polaris", "seed": opts.seed})
        if not args.no_verilog:
            from search.report import write_best_verilog
            verilog = write_best_verilog(result.best.hw, Path(run.path) / "verilog")
    n_samples = len(result.samples)
    summary = [f"Polaris ({opts.acquisition}, kappa {opts.kappa:g}, hardware search {opts.hw_search}), "
               f"{evaluator.fidelity} fidelity, {len(result.history)} design(s) x {opts.sw_iters} rounds = "
               f"{n_samples} samples ({sum(p.evaluations for p in result.history)} layer evaluations over "
               f"{len(layers)} unique layers), seed {opts.seed}; wall {wall:.0f} s this sitting (a resumed run "
               f"replays what is stored).", "",
               f"Surrogate: `{sinfo['path']}` ({run.options.get('surrogate')}).", "",
               f"Started by: `{run.info.get('command', '')}`"]
    rows = timing_rows(result.timings, pretrain_s=sinfo.get("build_s", 0.0), outputs_s=time.time() - t1)
    write_polaris_report(run.path, title=f"Polaris run: {', '.join(names)}", summary_lines=summary, layers=layers,
                         result=result, timings_rows=rows, verilog_path=verilog, baselines=base,
                         verify_command=f"python -m search.spotlight --verify {run.path}")
    run.write_json("timings.json", dict(rows))
    return result, wall


def _summary(result, wall, run) -> int:
    if result.best is None:
        print("no feasible design found", file=sys.stderr)
        return 1
    b = result.best
    print(f"best design: dim {b.hw.dim}, sp_kb {b.hw.sp_kb}, acc_kb {b.hw.acc_kb}   network EDP {b.cost.edp:.4e} "
          f"pJ x cycles, {b.cost.cycles:,.0f} cycles, {b.cost.energy_pj / 1e6:,.3f} uJ, {b.area_mm2:.3f} mm^2 "
          f"(iteration {b.iteration}; {len(result.samples)} samples, wall {wall:.0f} s)")
    print(f"report: {Path(run.path) / 'report.md'}   re-verify on the RTL: "
          f"python -m search.spotlight --verify {run.path}")
    return 0


if __name__ == "__main__":
    run_main(main)
