"""The co-design comparison (issue 16; thesis section 6.2, Figs 6.3-6.6): every method
under one harness, one budget and one scoring rule.

    python -m search.experiments codesign --workloads resnet50,bert --methods all --trials 3 \\
        [--budget 48] [--sw-iters 6] [--fidelity rtl|analytical] [--area-budget MM2] \\
        [--out runs] [--summary DIR] [--workers W] [--set METHOD.FIELD=VALUE ...] [--status] [--quiet]

Cells. Every (method, workload, trial) is its own run directory (`search.runs`),
``OUT/METHOD-WORKLOAD-FIDELITY-sTRIAL`` (a non-default budget, software rounds or area
budget adds ``-bB``, ``-mM``, ``-aA``), with seed = trial; the same names as the other
command lines' runs (``runs/polaris-bert-rtl-s0`` is the Polaris cell of BERT, trial 0),
so runs made by hand are cells too when their options match. A cell is finished when
its ``report.md`` is at least as new as its ``best.json`` (every method writes them in
that order, last); a finished cell is never rerun; an unfinished one is resumed by its
method (every method resumes from its store and simulates nothing twice). Kill the
experiment at any moment and rerun the same command.

Methods and their budget B (network samples: one mapping per layer on one design,
counted from the run store the same way for every method, `search.compare_runs`),
with m = ``--sw-iters``:

    polaris     `search.polaris`: B/m designs x m rounds (the paper's 8 x 6 at B = 48)
    spotlight   `search.spotlight` variant spotlight, trained from scratch (the paper's
                setting): B/m designs x m; warm-ups 2 designs and 2 mappings per layer,
                one mapping per layer per GP refit (its defaults, 10 and 30 warm-ups,
                would make all of B = 48 random)
    random      `search.spotlight` variant r: random designs, random constrained
                mappings, B/m x m
    vanilla-bo  `search.optimizers.vanilla_bo`: BoTorch GP on the raw parameters, B/m x m
    oracle      `search.optimizers.oracle`: exhaustive analytical ranking, then the best
                B/3 designs x 3 mappings measured
    offline     `search.optimizers.offline`: gradient descent on Starlight's mean (the
                default pre-trained surrogate of Polaris), B designs measured
    dosa        `search.optimizers.dosa`: DOSA-style gradient descent on a differentiable
                model, the best B rounded points measured
    dosa-16     the same with DOSA's 16 x 16 array (the paper's setting)

``--set METHOD.FIELD=VALUE`` changes one option of one method (a field of its options
class, e.g. ``dosa.steps=600``, ``polaris.acquisition=ei``); the budget, seed, fidelity
and area budget are the experiment's. Changed options are part of a cell's options, so
a rerun with other settings is refused (use another --out).

    python -m search.experiments swdse --workloads resnet50,bert [--on dosa] [--trial 0] \
        [--sw-iters 20] [the codesign experiment's --budget, --sw-iters-codesign, --fidelity, --area-budget, --out]

Software DSE on another method's design (Fig 6.4): the design in the ``--on`` method's
codesign cell (trial ``--trial``; its ``best.json``) gets Polaris's software search alone
(`search.polaris` ``--hw``, m = 20 rounds, ``OUT/polaris-sw-W-on-METHOD-FIDELITY-sT``),
which also measures every layer on ``default_mapping`` and on the analytical best of
4,096 mappings (`search.polaris_baselines`). ``OUT/swdse-on-METHOD-FIDELITY/summary.*``
and ``swdse.png``: per workload the method's own EDP on its design, Polaris's, and the two
mappers', each relative to Polaris's.

Summary (``--summary DIR``, default ``OUT/codesign-FIDELITY``; written at the end, after
a cell when `SUMMARY_EVERY_S` have passed since the last one, and with ``--status``): ``summary.json`` and ``summary.md`` with, per workload and
method, the finished trials' median, min and max best EDP, the median's percent
difference to Polaris's median, its distance to the best-known design (the lowest EDP
any cell of the workload found, named), the samples, the simulator's summed time and
the wall time; ``edp.png`` (Figs 6.3/6.6: median best EDP relative to the best known,
min-max bars) and ``convergence.png`` (Fig 6.5: best EDP so far against samples, the
median over trials with its min-max band).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path

from hw.cli import OneLineParser, parse_or_exit_status, print_error, run_main

__all__ = ["METHODS", "Method", "CodesignExperiment", "Cell", "cells", "cell_state", "summarise",
           "write_summary", "parse_setting", "SoftwareDSE", "swdse_summary", "main"]

MAX_TRIALS = 100
#: the summary is rewritten after a cell when this many seconds have passed since the
#: last one (and always at the end): scoring every cell is seconds per dozen cells, so
#: rewriting it after each of hundreds of fast analytical cells would dominate the run
SUMMARY_EVERY_S = 300.0
MAX_BUDGET = 4096
DEFAULT_METHODS = ("polaris", "spotlight", "random", "vanilla-bo", "oracle", "offline", "dosa")


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    options: str                 # the options class's import path, "module:Class"
    fixed: tuple                 # its fields the experiment sets


_DESIGNS_X_ROUNDS = ("hw_iters", "sw_iters", "seed", "area_budget_mm2")
_BEST_POINTS = ("sample_budget", "seed", "area_budget_mm2")

METHODS = {m.name: m for m in (
    Method("polaris", "Polaris: Starlight, UCB, the RTL in the loop (B/m designs x m)",
           "search.optimizers.polaris:PolarisOptions", _DESIGNS_X_ROUNDS),
    Method("spotlight", "Spotlight from scratch, 2 + 2 warm-ups (B/m x m)",
           "search.optimizers.spotlight:SpotlightOptions", (*_DESIGNS_X_ROUNDS, "variant")),
    Method("random", "random designs and constrained mappings (B/m x m)",
           "search.optimizers.spotlight:SpotlightOptions", (*_DESIGNS_X_ROUNDS, "variant")),
    Method("vanilla-bo", "BoTorch SingleTaskGP on the raw parameters, UCB (B/m x m)",
           "search.optimizers.vanilla_bo:VanillaBOOptions", _DESIGNS_X_ROUNDS),
    Method("oracle", "analytical ranking of every design, the best B/3 measured x 3 mappings",
           "search.optimizers.oracle:OracleOptions",
           ("designs", "per_design", "sample_budget", "seed", "area_budget_mm2")),
    Method("offline", "gradient descent on Starlight's mean, B designs measured",
           "search.optimizers.offline:OfflineOptions", _BEST_POINTS),
    Method("dosa", "DOSA-style gradient descent, the best B rounded points measured",
           "search.optimizers.dosa:DosaOptions", _BEST_POINTS),
    Method("dosa-16", "DOSA-style with DOSA's 16 x 16 array",
           "search.optimizers.dosa:DosaOptions", (*_BEST_POINTS, "array_dim")),
)}
_CLI_METHODS = ("polaris", "spotlight", "random")
#: the Spotlight warm-ups at a 48-sample budget (the same as vanilla BO's)
SPOTLIGHT_SMALL_BUDGET = {"hw_warmup": 2, "sw_warmup": 2, "sw_batch": 1}


def _options_class(method: Method):
    import importlib

    mod, cls = method.options.split(":")
    return getattr(importlib.import_module(mod), cls)


def parse_setting(text: str) -> tuple[str, str, object]:
    """``METHOD.FIELD=VALUE`` -> (method, field, value); the value is an int, a float,
    true/false, none, or else the string. Unknown methods and fields, and fields the
    experiment sets, are a one-line ValueError."""
    key, sep, raw = text.partition("=")
    method, dot, field = key.strip().partition(".")
    if not (sep and dot and method and field):
        raise ValueError(f"--set {text!r} is not METHOD.FIELD=VALUE (e.g. dosa.steps=600)")
    if method not in METHODS:
        raise ValueError(f"--set {text!r}: unknown method {method!r}; one of {', '.join(METHODS)}")
    m = METHODS[method]
    names = [f.name for f in fields(_options_class(m))]
    field = field.replace("-", "_")
    if field not in names:
        raise ValueError(f"--set {text!r}: {method} has no option {field!r}; its options: "
                         f"{', '.join(n for n in names if n not in m.fixed)}")
    if field in m.fixed:
        raise ValueError(f"--set {text!r}: {field} is set by the experiment (--budget, --sw-iters, the trial's "
                         f"seed, --area-budget)")
    raw = raw.strip()
    low = raw.lower()
    if low in ("true", "false"):
        return method, field, low == "true"
    if low == "none":
        return method, field, None
    for conv in (int, float):
        try:
            return method, field, conv(raw)
        except ValueError:
            pass
    return method, field, raw


@dataclass(frozen=True)
class CodesignExperiment:
    """What ``codesign`` runs: workloads x methods x trials (seeds 0..trials-1)."""

    workloads: tuple
    methods: tuple = DEFAULT_METHODS
    trials: int = 3
    budget: int = 48
    sw_iters: int = 6
    fidelity: str = "rtl"
    area_budget_mm2: float | None = None
    settings: tuple = ()          # (method, field, value)
    surrogate: str | None = None  # a Starlight file for polaris and offline (default: Polaris's default)

    def __post_init__(self):
        from .options import check_area_budget, check_choice, check_int

        if not self.workloads:
            raise ValueError("--workloads names no workload")
        if not self.methods:
            raise ValueError("--methods names no method")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"--methods: unknown method {m!r}; one of {', '.join(METHODS)} (or all)")
        for what, seq in (("--workloads", self.workloads), ("--methods", self.methods)):
            dup = next((x for i, x in enumerate(seq) if x in seq[:i]), None)
            if dup is not None:
                raise ValueError(f"{what} names {dup!r} twice")
        check_int("trials", self.trials, 1, MAX_TRIALS)
        check_int("budget", self.budget, 1, MAX_BUDGET)
        check_int("sw-iters", self.sw_iters, 1, self.budget)
        if self.budget % self.sw_iters:
            raise ValueError(f"--budget {self.budget} must be a multiple of --sw-iters {self.sw_iters} (Polaris, "
                             f"Spotlight, random and vanilla BO run budget / sw-iters designs)")
        check_choice("fidelity", self.fidelity, ("rtl", "analytical"))
        check_area_budget(self.area_budget_mm2)
        for method, field, value in self.settings:
            if method not in self.methods:
                raise ValueError(f"--set {method}.{field}: {method} is not among --methods")

    def suffix(self) -> str:
        s = "" if self.budget == 48 else f"-b{self.budget}"
        s += "" if self.sw_iters == 6 else f"-m{self.sw_iters}"
        return s + ("" if self.area_budget_mm2 is None else f"-a{self.area_budget_mm2:g}")

    def settings_of(self, method: str) -> dict:
        return {f: v for m, f, v in self.settings if m == method}

    def method_options(self, method: str, seed: int):
        """The method's options object for one trial (validated by its class)."""
        m = METHODS[method]
        cls = _options_class(m)
        B, M, area = self.budget, self.sw_iters, self.area_budget_mm2
        kw = {"seed": seed, "area_budget_mm2": area}
        if method in ("polaris", "vanilla-bo", "spotlight", "random"):
            kw |= {"hw_iters": B // M, "sw_iters": M}
        if method == "spotlight":
            kw |= {"variant": "spotlight", **SPOTLIGHT_SMALL_BUDGET}
        elif method == "random":
            kw["variant"] = "r"
        elif method == "oracle":
            per = min(3, B)
            kw |= {"designs": B // per, "per_design": per, "sample_budget": B}
        elif method in ("offline", "dosa", "dosa-16"):
            kw["sample_budget"] = B
        if method == "dosa-16":
            kw["array_dim"] = 16
        try:
            return cls(**{**kw, **self.settings_of(method)})
        except (ValueError, TypeError) as e:
            raise ValueError(f"{method}: {str(e).splitlines()[0]}") from None


@dataclass(frozen=True)
class Cell:
    method: str
    workload: str
    trial: int
    path: Path


def _stem(workload: str) -> str:
    return Path(workload).stem


def cells(exp: CodesignExperiment, out) -> list[Cell]:
    """Every (workload, method, trial) cell, trials outermost (one trial of everything
    first, so an interrupted experiment has a comparable table early)."""
    out = Path(out)
    return [Cell(m, w, t, out / f"{m}-{_stem(w)}-{exp.fidelity}-s{t}{exp.suffix()}")
            for t in range(exp.trials) for w in exp.workloads for m in exp.methods]


def cell_state(cell: Cell, exp: CodesignExperiment | None = None) -> str:
    """``finished``, ``partial`` (a run directory, unfinished) or ``new``; with ``exp``,
    ``stale`` when the run directory was made with other options than ``exp`` gives
    its method now (`stale_option`)."""
    p = cell.path
    if not (p / "run.json").is_file():
        return "new"
    if exp is not None and stale_option(exp, cell) is not None:
        return "stale"
    best, report = p / "best.json", p / "report.md"
    if best.is_file() and report.is_file() and report.stat().st_mtime >= best.stat().st_mtime:
        return "finished"
    return "partial"


def stale_option(exp: CodesignExperiment, cell: Cell):
    """The first option of the cell's method (its options class's ``to_dict``) whose value
    in the cell's run.json differs from what ``exp`` gives it, as (name, stored, now);
    None when all agree (a changed default shows here, so old cells are never mixed in)."""
    try:
        stored = json.loads((cell.path / "run.json").read_text()).get("options") or {}
    except (OSError, ValueError):
        return ("run.json", "unreadable", "")
    want = json.loads(json.dumps(exp.method_options(cell.method, cell.trial).to_dict()))
    for k, v in want.items():
        if k != "method" and stored.get(k, "<absent>") != v:     # "method": the experiment's name
            return (k, stored.get(k, "<absent>"), v)
    return None


# ---- running one cell ---------------------------------------------------------------------------
def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _cli_argv(exp: CodesignExperiment, cell: Cell, opts, workers: int | None, quiet: bool) -> list[str]:
    argv = ["--workload", cell.workload, "--fidelity", exp.fidelity, "--seed", str(cell.trial),
            "--hw-iters", str(opts.hw_iters), "--sw-iters", str(opts.sw_iters), "--run-dir", str(cell.path)]
    if exp.area_budget_mm2 is not None:
        argv += ["--area-budget", repr(exp.area_budget_mm2)]
    extra = dict(SPOTLIGHT_SMALL_BUDGET) if cell.method == "spotlight" else {}
    if cell.method != "polaris":
        argv += ["--variant", opts.variant]
    extra |= exp.settings_of(cell.method)
    for field, value in extra.items():
        argv += [_flag(field), str(value)]
    if exp.fidelity == "rtl" and workers is not None:
        argv += ["--workers", str(workers)]
    if cell.method == "polaris" and exp.surrogate:
        argv += ["--surrogate", exp.surrogate]
    if exp.fidelity != "rtl":
        argv.append("--no-verilog")      # a design's Verilog belongs with its verified figures
    return argv + (["--quiet"] if quiet else [])


def _run_cli(exp, cell, opts, workers, quiet) -> int:
    if cell.method == "polaris":
        from search.polaris import main as cli
    else:
        from search.spotlight import main as cli
    return cli(_cli_argv(exp, cell, opts, workers, quiet))


def _baseline_runner(method: str):
    if method == "vanilla-bo":
        from search.optimizers.vanilla_bo import run_vanilla_bo as fn
    elif method == "oracle":
        from search.optimizers.oracle import run_oracle as fn
    elif method == "offline":
        from search.optimizers.offline import run_offline as fn
    else:
        from search.optimizers.dosa import run_dosa as fn
    return fn


def _run_baseline(exp, cell, opts, workers, quiet, command: str) -> int:
    """Run a baseline optimiser into the cell's run directory and write best.json,
    history.json, timings.json and report.md (`search.report`)."""
    from search.evaluators import make_evaluator
    from search.report import point_dict, write_best_verilog, write_report
    from search.runs import RunDir
    from search.workloads import get_workload, unique_layers

    layers = unique_layers(get_workload(cell.workload))
    evaluator = make_evaluator(exp.fidelity, **({"workers": workers or 2} if exp.fidelity == "rtl" else {}))
    kw = {}
    if cell.method == "offline":
        from search import polaris_surrogate as ps
        if exp.surrogate:
            kw["surrogate"], info = ps.load_surrogate_file(exp.surrogate)
            identity = info["identity"]
        else:
            kw["surrogate"] = ps.default_surrogate(log=(lambda s: None) if quiet else None, progress=not quiet)[0]
            identity = f"default:{ps.recipe_key(ps.SurrogateRecipe())}"
    options = {**opts.to_dict(), "method": cell.method, "workloads": [cell.workload], "fidelity": exp.fidelity}
    if cell.method == "offline":
        options["surrogate"] = identity
    t0 = time.time()
    with RunDir.open(cell.path, options, seeds={"seed": opts.seed}, command=command) as run:
        if run.notes:
            print(run.notes, file=sys.stderr)
        result = _baseline_runner(cell.method)(layers, opts, evaluator, run, **kw)
        wall = time.time() - t0
        run.write_json("history.json", [point_dict(p, layers) for p in result.history])
        run.write_json("timings.json", {k: round(v, 3) for k, v in result.timings.items()})
        if result.best is None:
            print(f"{cell.path}: no feasible design found", file=sys.stderr)
            return 1
        run.write_json("best.json", {**point_dict(result.best, layers), "fidelity": exp.fidelity,
                                     "workloads": [cell.workload], "optimizer": cell.method, "seed": opts.seed})
        verilog = write_best_verilog(result.best.hw, cell.path / "verilog") if exp.fidelity == "rtl" else None
        summary = [f"{METHODS[cell.method].description}; {exp.fidelity} fidelity, {len(result.samples)} samples "
                   f"over {len(result.history)} designs, seed {opts.seed}; wall {wall:.0f} s this sitting.", "",
                   "Seconds by phase: " + ", ".join(f"{k} {v:,.1f}" for k, v in result.timings.items()), "",
                   f"Started by: `{run.info.get('command', '')}`"]
        write_report(cell.path, title=f"{cell.method} run: {cell.workload}", summary_lines=summary,
                     names=[cell.workload], layers=layers, result=result, objective="edp", verilog_path=verilog,
                     verify_command=f"python -m search.spotlight --verify {cell.path}")
    return 0


def _log_sitting(cell: Cell, wall_s: float, rc: int) -> None:
    """Append this sitting's wall time to the cell's experiment.json (the method's own
    run directory files are left to the method)."""
    f = cell.path / "experiment.json"
    try:
        doc = json.loads(f.read_text()) if f.is_file() else {}
    except (OSError, ValueError):
        doc = {}
    sittings = [*doc.get("sittings", []), {"ended": datetime.now(UTC).isoformat(timespec="seconds"),
                                           "wall_s": round(wall_s, 1), "rc": rc}]
    doc = {"method": cell.method, "workload": cell.workload, "trial": cell.trial, "sittings": sittings,
           "wall_s": round(sum(s["wall_s"] for s in sittings), 1)}
    if cell.path.is_dir():
        tmp = f.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(f)


def run_cell(exp: CodesignExperiment, cell: Cell, *, workers: int | None = None, quiet: bool = True,
             command: str = "") -> int:
    """Run (or resume) one cell; returns the method's exit status (0: finished)."""
    opts = exp.method_options(cell.method, cell.trial)
    t0 = time.time()
    rc = 1
    try:
        if cell.method in _CLI_METHODS:
            rc = _run_cli(exp, cell, opts, workers, quiet)
        else:
            rc = _run_baseline(exp, cell, opts, workers, quiet, command)
    finally:
        _log_sitting(cell, time.time() - t0, rc)
    return rc


# ---- the summary --------------------------------------------------------------------------------
def _wall(cell: Cell, score) -> float:
    f = cell.path / "experiment.json"
    try:
        return float(json.loads(f.read_text())["wall_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return score.wall_s          # a run made outside the experiment: its first to last record


def summarise(exp: CodesignExperiment, out) -> dict:
    """Score every cell with a run directory (`search.compare_runs.score_run`); the table
    rows are the finished cells'. Read only."""
    from search.compare_runs import convergence, score_run

    per_cell, curves = [], {}
    for c in cells(exp, out):
        state = cell_state(c, exp)
        if state in ("new", "stale"):
            per_cell.append({"method": c.method, "workload": c.workload, "trial": c.trial, "state": state,
                             "path": str(c.path)})
            continue
        s = score_run(c.path)
        per_cell.append({"method": c.method, "workload": c.workload, "trial": c.trial, "state": state,
                         "path": str(c.path), "best_edp": s.best_edp, "best_hw": s.best_hw, "samples": s.samples,
                         "simulations": s.simulations, "sim_wall_s": s.sim_wall_s, "wall_s": _wall(c, s)})
        if state == "finished":
            curves[c.method, c.workload, c.trial] = convergence(c.path)
    rows, best_known = [], {}
    for w in exp.workloads:
        seen = [p for p in per_cell if p["workload"] == w and p["state"] in ("finished", "partial")
                and math.isfinite(p["best_edp"])]
        if seen:
            b = min(seen, key=lambda p: p["best_edp"])
            best_known[w] = {"edp": b["best_edp"], "method": b["method"], "trial": b["trial"], "hw": b["best_hw"],
                             "finished": b["state"] == "finished"}
        for m in exp.methods:
            done = [p for p in per_cell if p["workload"] == w and p["method"] == m and p["state"] == "finished"]
            row = {"workload": w, "method": m, "trials": len(done), "of": exp.trials,
                   "partial": sum(p["workload"] == w and p["method"] == m and p["state"] == "partial"
                                  for p in per_cell)}
            if done:
                vals = [p["best_edp"] for p in done]
                row |= {"median_edp": statistics.median(vals), "min_edp": min(vals), "max_edp": max(vals),
                        "samples": statistics.mean(p["samples"] for p in done),
                        "sim_wall_s": statistics.mean(p["sim_wall_s"] for p in done),
                        "wall_s": statistics.mean(p["wall_s"] for p in done)}
            rows.append(row)
    for r in rows:
        pol = next((q for q in rows if q["workload"] == r["workload"] and q["method"] == "polaris"
                    and "median_edp" in q), None)
        bk = best_known.get(r["workload"])
        if "median_edp" in r:
            r["vs_polaris_pct"] = 100.0 * (r["median_edp"] / pol["median_edp"] - 1) if pol else None
            r["vs_best_known_pct"] = 100.0 * (r["median_edp"] / bk["edp"] - 1) if bk else None
            r["min_vs_best_known_pct"] = 100.0 * (r["min_edp"] / bk["edp"] - 1) if bk else None
    return {"experiment": {"workloads": list(exp.workloads), "methods": list(exp.methods), "trials": exp.trials,
                           "budget": exp.budget, "sw_iters": exp.sw_iters, "fidelity": exp.fidelity,
                           "area_budget_mm2": exp.area_budget_mm2,
                           "settings": [f"{m}.{f}={v}" for m, f, v in exp.settings]},
            "rows": rows, "best_known": best_known, "cells": per_cell,
            "convergence": [{"method": m, "workload": w, "trial": t, "curve": c} for (m, w, t), c in curves.items()]}


def _e(v) -> str:
    return "-" if v is None else f"{v:.4e}" if math.isfinite(v) else "infeasible"


def _pct(v) -> str:
    return "-" if v is None else f"{v:+.1f} %"


def markdown(summary: dict) -> str:
    x = summary["experiment"]
    lines = [f"Co-design comparison, {x['fidelity']} fidelity, budget {x['budget']} samples "
             f"(m = {x['sw_iters']}), {x['trials']} trial(s) per cell"
             + (f", area budget {x['area_budget_mm2']:g} mm^2" if x["area_budget_mm2"] is not None else "")
             + (f", settings {', '.join(x['settings'])}" if x["settings"] else "") + ".", "",
             "| workload | method | trials | median best EDP | min | max | vs Polaris (median) | "
             "vs best known (median) | samples | simulator s | wall s |",
             "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in summary["rows"]:
        t = f"{r['trials']}/{r['of']}" + (f" (+{r['partial']} running)" if r["partial"] else "")
        if "median_edp" not in r:
            lines.append(f"| {_stem(r['workload'])} | {r['method']} | {t} | - | - | - | - | - | - | - | - |")
            continue
        lines.append(f"| {_stem(r['workload'])} | {r['method']} | {t} | {_e(r['median_edp'])} | {_e(r['min_edp'])} | "
                     f"{_e(r['max_edp'])} | {_pct(r['vs_polaris_pct'])} | {_pct(r['vs_best_known_pct'])} | "
                     f"{r['samples']:.0f} | {r['sim_wall_s']:,.0f} | {r['wall_s']:,.0f} |")
    lines += ["", "Best-known design per workload (the lowest EDP any cell found, finished or not):", ""]
    for w, b in summary["best_known"].items():
        hw = b["hw"]
        lines.append(f"- {_stem(w)}: EDP {_e(b['edp'])}, dim {hw['dim']}, sp {hw['sp_kb']} KB, acc {hw['acc_kb']} KB "
                     f"({b['method']}, trial {b['trial']}{'' if b['finished'] else ', unfinished'})")
    return "\n".join(lines) + "\n"


def plot_edp(summary: dict, path) -> Path | None:
    """Figs 6.3/6.6: per workload, each method's median best EDP over the best known
    (1 = the best known), min-max bars; log y."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = summary["experiment"]
    W, M = x["workloads"], x["methods"]
    if not any("median_edp" in r for r in summary["rows"]):
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(W) * len(M) / 3), 3.8), dpi=120)
    width = 0.8 / len(M)
    for j, m in enumerate(M):
        xs, ys, lo, hi = [], [], [], []
        for i, w in enumerate(W):
            r = next(q for q in summary["rows"] if q["workload"] == w and q["method"] == m)
            bk = summary["best_known"].get(w)
            if "median_edp" not in r or not bk or not math.isfinite(r["median_edp"]):
                continue
            xs.append(i + (j - (len(M) - 1) / 2) * width)
            ys.append(r["median_edp"] / bk["edp"])
            lo.append(ys[-1] - r["min_edp"] / bk["edp"])
            hi.append((r["max_edp"] / bk["edp"] if math.isfinite(r["max_edp"]) else ys[-1]) - ys[-1])
        if xs:
            ax.bar(xs, ys, width, label=m, yerr=np.array([lo, hi]), capsize=2, error_kw={"lw": 0.8})
    ax.axhline(1.0, color="k", lw=0.6)
    ax.set_yscale("log")
    ax.set_xticks(range(len(W)), [_stem(w) for w in W])
    ax.set_ylabel("best EDP / best known (median, min-max)")
    ax.set_title(f"Co-design at {x['fidelity']} fidelity, {x['budget']} samples")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_convergence(summary: dict, path) -> Path | None:
    """Fig 6.5: per workload, best EDP so far against samples; per method the median over
    finished trials, with the min-max band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = summary["experiment"]
    W = [w for w in x["workloads"] if any(c["workload"] == w for c in summary["convergence"])]
    if not W:
        return None
    fig, axes = plt.subplots(1, len(W), figsize=(4.2 * len(W), 3.6), dpi=120, squeeze=False)
    for ax, w in zip(axes[0], W):
        for m in x["methods"]:
            cs = [c["curve"] for c in summary["convergence"] if c["workload"] == w and c["method"] == m]
            if not cs:
                continue
            n = min(len(c) for c in cs)
            Y = np.array([[v for _, v in c[:n]] for c in cs], dtype=float)
            Y[~np.isfinite(Y)] = np.nan
            xs = np.arange(1, n + 1)
            med = np.nanmedian(Y, axis=0) if np.isfinite(Y).any() else Y[0]
            line, = ax.plot(xs, med, drawstyle="steps-post", label=f"{m} ({len(cs)})")
            if len(cs) > 1:
                ax.fill_between(xs, np.nanmin(Y, axis=0), np.nanmax(Y, axis=0), step="post", alpha=0.15,
                                color=line.get_color())
        ax.set_yscale("log")
        ax.set_xlabel("samples")
        ax.set_title(_stem(w))
    axes[0][0].set_ylabel("best EDP so far")
    axes[0][-1].legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _finite(v):
    """``v`` with every non-finite float (nested too) as None, for JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def write_summary(summary: dict, out_dir) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    paths = [out / "summary.json", out / "summary.md"]
    paths[0].write_text(json.dumps(_finite(summary), indent=1) + "\n")
    paths[1].write_text(markdown(summary))
    for p in (plot_edp(summary, out / "edp.png"), plot_convergence(summary, out / "convergence.png")):
        if p is not None:
            paths.append(p)
    return paths


# ---- the command line ---------------------------------------------------------------------------
def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m search.experiments",
                      description="Experiments comparing the co-design methods under one harness.")
    sub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    c = sub.add_parser("codesign", help="every method x workload x trial, one budget, one scoring rule",
                       description="Every method x workload x trial as its own resumable run directory, then the "
                                   "summary table and plots. Method budgets: polaris, spotlight, random and vanilla-bo run "
                                   "budget / sw-iters designs x sw-iters rounds; oracle budget / 3 designs x 3 mappings; "
                                   "offline and dosa measure their best budget points.")
    c.add_argument("--workloads", required=True, metavar="A,B", help="comma-separated workload names or files")
    c.add_argument("--methods", default="all", metavar="M,N",
                   help=f"comma-separated methods, or all (= {','.join(DEFAULT_METHODS)}); also: dosa-16")
    c.add_argument("--trials", type=int, default=3, help=f"trials per (method, workload); trial t has seed t "
                   f"(1..{MAX_TRIALS}; default 3)")
    c.add_argument("--budget", type=int, default=48, help="network samples per cell (default 48, the paper's)")
    c.add_argument("--sw-iters", type=int, default=6,
                   help="software rounds per design of Polaris, Spotlight, random and vanilla BO (default 6)")
    c.add_argument("--fidelity", choices=("rtl", "analytical"), default="rtl",
                   help="rtl: every sample a verified simulation; analytical: the fast proxy (default rtl)")
    c.add_argument("--area-budget", type=float, default=None, metavar="MM2", help="the same area budget for every method (default none)")
    c.add_argument("--set", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                   help="one option of one method, e.g. dosa.steps=600 (repeatable)")
    c.add_argument("--surrogate", metavar="FILE", help="a Starlight model file for polaris and offline (default: "
                   "Polaris's pre-trained default, built on first use and cached)")
    c.add_argument("--out", default="runs", help="where the cells' run directories go (default runs)")
    c.add_argument("--summary", metavar="DIR", help="summary directory (default OUT/codesign-FIDELITY)")
    c.add_argument("--workers", type=int, default=None, help="RTL simulations in parallel (default all cores)")
    c.add_argument("--status", action="store_true", help="run nothing: print each cell's state and the summary")
    c.add_argument("--quiet", action="store_true", help="no progress display of the methods")
    d = sub.add_parser("swdse", help="Polaris's software search on another method's co-designed design (Fig 6.4)",
                       description="Polaris's software DSE (m rounds) on the design a method found in its codesign "
                                   "cell, against that method's own mappings and the two mapper baselines.")
    d.add_argument("--workloads", required=True, metavar="A,B", help="comma-separated workload names or files")
    d.add_argument("--on", default="dosa", choices=tuple(METHODS), help="whose design (default dosa)")
    d.add_argument("--trial", type=int, default=0, help="the codesign trial whose design is taken (default 0)")
    d.add_argument("--sw-iters", type=int, default=20, help="Polaris's software rounds on the design (default 20)")
    d.add_argument("--budget", type=int, default=48, help="the codesign experiment's budget (default 48)")
    d.add_argument("--codesign-sw-iters", type=int, default=6, help="the codesign experiment's --sw-iters (default 6)")
    d.add_argument("--fidelity", choices=("rtl", "analytical"), default="rtl", help="default rtl")
    d.add_argument("--area-budget", type=float, default=None, metavar="MM2",
                   help="the codesign experiment's area budget (default none)")
    d.add_argument("--surrogate", metavar="FILE", help="a Starlight model file (default: Polaris's default)")
    d.add_argument("--out", default="runs", help="the codesign experiment's --out, where this one's cells go too")
    d.add_argument("--summary", metavar="DIR", help="summary directory (default OUT/swdse-on-METHOD-FIDELITY)")
    d.add_argument("--workers", type=int, default=None, help="RTL simulations in parallel (default all cores)")
    d.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def experiment_from_args(args) -> CodesignExperiment:
    names = tuple(w for w in args.workloads.split(",") if w)
    methods = DEFAULT_METHODS if args.methods.strip() == "all" else tuple(m for m in args.methods.split(",") if m)
    settings = tuple(parse_setting(s) for s in args.set)
    return CodesignExperiment(names, methods, args.trials, args.budget, args.sw_iters, args.fidelity,
                              args.area_budget, settings, args.surrogate)


def _validate(exp: CodesignExperiment, args) -> None:
    """Every check that can fail, before any work: workloads, every cell's options, the
    area budget against the space, the workers, and run directories' options."""
    import os

    from search.workload_file import WorkloadError
    from search.workloads import get_workload

    for w in exp.workloads:
        try:
            layers = get_workload(w)
        except WorkloadError as e:
            raise ValueError(str(e).splitlines()[0]) from None
        if exp.fidelity == "rtl":
            from search.evaluators import check_simulable
            check_simulable(layers)
    for m in exp.methods:
        exp.method_options(m, 0)
    if exp.surrogate and ({"polaris", "offline"} & set(exp.methods)):
        from search.models.model_file import ModelFileError
        from search.polaris_surrogate import load_surrogate_file
        try:
            load_surrogate_file(exp.surrogate)
        except ModelFileError as e:
            raise ValueError(str(e).splitlines()[0]) from None
    if args.workers is not None:
        if exp.fidelity != "rtl":
            raise ValueError("--workers applies to --fidelity rtl only")
        if not 1 <= args.workers <= 256:
            raise ValueError(f"--workers must be in 1..256; got {args.workers}")
    from .options import check_area_budget_reachable
    check_area_budget_reachable(exp.area_budget_mm2)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file")
    if not args.status:
        os.makedirs(out, exist_ok=True)


def main(argv=None) -> int:
    args, status = parse_or_exit_status(_parser(), argv)
    if args is None:
        return status
    if args.experiment == "swdse":
        return _swdse_main(args)
    import shlex

    try:
        exp = experiment_from_args(args)
        _validate(exp, args)
    except (ValueError, OSError) as e:
        return print_error(e)
    summary_dir = Path(args.summary) if args.summary else Path(args.out) / f"codesign-{exp.fidelity}"
    todo = cells(exp, args.out)
    command = shlex.join(["python", "-m", "search.experiments", *(sys.argv[1:] if argv is None else argv)])
    failed = []
    if not args.status:
        import os
        workers = args.workers or (os.cpu_count() or 1)
        t_start, spent, last_summary = time.time(), [], time.time()
        states = {c.path: cell_state(c, exp) for c in todo}
        for c in todo:
            if states[c.path] == "stale":
                k, a, b = stale_option(exp, c)
                print(f"error: {c.path} was made with {k} {a!r}, this experiment gives {b!r}; it is left alone "
                      f"(use another --out, or delete it to rerun)", file=sys.stderr)
                failed.append(c)
        pending = [c for c in todo if states[c.path] in ("new", "partial")]
        print(f"{len(todo)} cells, {sum(v == 'finished' for v in states.values())} finished, {len(pending)} to run",
              file=sys.stderr)
        for k, c in enumerate(pending, 1):
            print(f"[{k}/{len(pending)}] {c.method} {c.workload} trial {c.trial} -> {c.path}", file=sys.stderr)
            t0 = time.time()
            try:
                rc = run_cell(exp, c, workers=workers if exp.fidelity == "rtl" else None, quiet=args.quiet,
                              command=command)
            except (ValueError, OSError) as e:       # a cell that cannot run is reported; the others go on
                print_error(e)
                rc = 2
            spent.append(time.time() - t0)
            if rc != 0:
                failed.append(c)
            eta = statistics.mean(spent) * (len(pending) - k)
            print(f"[{k}/{len(pending)}] {c.method} {c.workload} trial {c.trial}: "
                  f"{'finished' if rc == 0 else f'exit {rc}'} in {spent[-1]:,.0f} s; elapsed "
                  f"{time.time() - t_start:,.0f} s, ETA {eta:,.0f} s", file=sys.stderr)
            if k < len(pending) and time.time() - last_summary >= SUMMARY_EVERY_S:
                try:
                    write_summary(summarise(exp, args.out), summary_dir)
                except (ValueError, OSError) as e:
                    print_error(e)
                last_summary = time.time()
    try:
        summary = summarise(exp, args.out)
        paths = write_summary(summary, summary_dir)
    except (ValueError, OSError) as e:
        return print_error(e)
    if args.status:
        for p in summary["cells"]:
            extra = "" if p["state"] in ("new", "stale") else f"  best EDP {_e(p['best_edp'])}, {p['samples']} samples"
            print(f"{p['state']:>8}  {p['path']}{extra}")
    print(markdown(summary), end="")
    print(f"summary: {paths[0].parent}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} cell(s) did not finish: {', '.join(str(c.path) for c in failed)}", file=sys.stderr)
        return 1
    return 0


# ---- software DSE on another method's design (Fig 6.4) -----------------------------------------
@dataclass(frozen=True)
class SoftwareDSE:
    """Polaris's software search on the designs of ``source``'s codesign cells."""

    source: CodesignExperiment    # one method, the codesign cells' settings
    trial: int = 0
    sw_iters: int = 20

    def __post_init__(self):
        from .options import check_int

        if len(self.source.methods) != 1:
            raise ValueError("a software DSE takes the design of one method")
        check_int("trial", self.trial, 0, MAX_TRIALS - 1)
        check_int("sw-iters", self.sw_iters, 1, MAX_BUDGET)

    @property
    def on(self) -> str:
        return self.source.methods[0]

    def pairs(self, out) -> list[tuple[Cell, Cell]]:
        """(the source codesign cell, the software DSE cell) per workload."""
        src = replace(self.source, trials=self.trial + 1)
        out = Path(out)
        return [(c, Cell("polaris-sw", c.workload, self.trial,
                         out / f"polaris-sw-{_stem(c.workload)}-on-{self.on}-{src.fidelity}-s{self.trial}"
                               f"{src.suffix()}{'' if self.sw_iters == 20 else f'-m{self.sw_iters}'}"))
                for c in cells(src, out) if c.trial == self.trial]


def _swdse_argv(dse: SoftwareDSE, src: Cell, cell: Cell, workers, quiet) -> list[str]:
    f = dse.source.fidelity
    argv = ["--workload", src.workload, "--hw", str(src.path / "best.json"), "--fidelity", f,
            "--sw-iters", str(dse.sw_iters), "--seed", str(dse.trial), "--run-dir", str(cell.path)]
    if dse.source.surrogate:
        argv += ["--surrogate", dse.source.surrogate]
    if f == "rtl" and workers is not None:
        argv += ["--workers", str(workers)]
    if f != "rtl":
        argv.append("--no-verilog")
    return argv + (["--quiet"] if quiet else [])


def swdse_summary(dse: SoftwareDSE, out) -> dict:
    """Per workload: the source method's best EDP on its design (its own mappings,
    `search.compare_runs.score_run`), Polaris's on the same design, the two mapper
    baselines' (``baselines.json``), each with its ratio to Polaris's. Read only."""
    from search.compare_runs import score_run

    rows = []
    for src, cell in dse.pairs(out):
        row = {"workload": src.workload, "source": str(src.path), "run": str(cell.path), "state": cell_state(cell)}
        if cell_state(src) == "finished":
            row["hw"] = json.loads((src.path / "best.json").read_text())["hw"]
            row[f"{dse.on}_edp"] = score_run(src.path).best_edp
        if row["state"] == "finished":
            row["polaris_edp"] = score_run(cell.path).best_edp
            base = cell.path / "baselines.json"
            for b in (json.loads(base.read_text()) if base.is_file() else []):
                row[f"{b['name']}_mapping_edp"] = math.inf if b["objective"] is None else b["objective"]
            for k in [k for k in row if k.endswith("_edp") and k != "polaris_edp"]:
                row[k.replace("_edp", "_vs_polaris")] = row[k] / row["polaris_edp"]
        rows.append(row)
    return {"experiment": {"on": dse.on, "trial": dse.trial, "sw_iters": dse.sw_iters,
                           "fidelity": dse.source.fidelity, "budget": dse.source.budget}, "rows": rows}


def swdse_markdown(summary: dict) -> str:
    x = summary["experiment"]
    on = x["on"]
    lines = [f"Software DSE on {on}'s co-designed design (trial {x['trial']}), {x['fidelity']} fidelity: Polaris "
             f"{x['sw_iters']} rounds against {on}'s own mappings and the mapper baselines.", "",
             f"| workload | design | {on}'s mappings | Polaris SW DSE | default_mapping | analytical best of N | "
             f"{on} / Polaris |", "|:--|:--|--:|--:|--:|--:|--:|"]
    for r in summary["rows"]:
        hw = r.get("hw")
        d = "-" if hw is None else f"dim {hw['dim']}, sp {hw['sp_kb']} KB, acc {hw['acc_kb']} KB"
        ratio = r.get(f"{on}_vs_polaris")
        lines.append(f"| {_stem(r['workload'])} | {d} | {_e(r.get(f'{on}_edp'))} | {_e(r.get('polaris_edp'))} | "
                     f"{_e(r.get('default_mapping_edp'))} | {_e(r.get('best_mapping_edp'))} | "
                     f"{'-' if ratio is None else f'{ratio:.3f}'} |")
    return "\n".join(lines) + "\n"


def plot_swdse(summary: dict, path) -> Path | None:
    """Fig 6.4: per workload, each mapper's network EDP on the design relative to Polaris's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    on = summary["experiment"]["on"]
    rows = [r for r in summary["rows"] if "polaris_edp" in r]
    if not rows:
        return None
    keys = [(f"{on}_edp", f"{on}'s mappings"), ("default_mapping_edp", "default_mapping"),
            ("best_mapping_edp", "analytical best of N"), ("polaris_edp", "Polaris SW DSE")]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(rows) + 2), 3.6), dpi=120)
    width = 0.8 / len(keys)
    for j, (k, label) in enumerate(keys):
        xs = [i + (j - (len(keys) - 1) / 2) * width for i, r in enumerate(rows) if math.isfinite(r.get(k, math.inf))]
        ys = [r[k] / r["polaris_edp"] for r in rows if math.isfinite(r.get(k, math.inf))]
        ax.bar(xs, ys, width, label=label)
    ax.axhline(1.0, color="k", lw=0.6)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [_stem(r["workload"]) for r in rows])
    ax.set_ylabel("network EDP / Polaris SW DSE's")
    ax.set_title(f"Software DSE on {on}'s design ({summary['experiment']['fidelity']})")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _swdse_main(args) -> int:
    import os

    try:
        names = tuple(w for w in args.workloads.split(",") if w)
        src = CodesignExperiment(names, (args.on,), 1, args.budget, args.codesign_sw_iters, args.fidelity,
                                 args.area_budget, (), args.surrogate)
        dse = SoftwareDSE(src, args.trial, args.sw_iters)
        if args.workers is not None and (args.fidelity != "rtl" or not 1 <= args.workers <= 256):
            raise ValueError("--workers applies to --fidelity rtl only" if args.fidelity != "rtl"
                             else f"--workers must be in 1..256; got {args.workers}")
        pairs = dse.pairs(args.out)
        missing = [str(s.path) for s, _ in pairs if cell_state(s) != "finished"]
        if missing:
            raise ValueError(f"no finished {args.on} codesign cell at {missing[0]} (run python -m search.experiments "
                             f"codesign --methods {args.on} with the same --budget, --fidelity and --out first)")
    except (ValueError, OSError) as e:
        return print_error(e)
    from search.polaris import main as polaris_main

    summary_dir = Path(args.summary) if args.summary else Path(args.out) / f"swdse-on-{args.on}-{args.fidelity}"
    workers = (args.workers or os.cpu_count() or 1) if args.fidelity == "rtl" else None
    failed = []
    for k, (s, c) in enumerate(pairs, 1):
        if cell_state(c) == "finished":
            continue
        print(f"[{k}/{len(pairs)}] Polaris software DSE on {s.path}/best.json -> {c.path}", file=sys.stderr)
        t0 = time.time()
        rc = polaris_main(_swdse_argv(dse, s, c, workers, args.quiet))
        _log_sitting(c, time.time() - t0, rc)
        if rc != 0:
            failed.append(c)
    summary = swdse_summary(dse, args.out)
    summary_dir.mkdir(parents=True, exist_ok=True)
    (summary_dir / "summary.json").write_text(json.dumps(_finite(summary), indent=1) + "\n")
    text = swdse_markdown(summary)
    (summary_dir / "summary.md").write_text(text)
    plot_swdse(summary, summary_dir / "swdse.png")
    print(text, end="")
    print(f"summary: {summary_dir}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main)
