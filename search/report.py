"""The report of a co-design run (Spotlight now, Polaris later): ``report.md`` and its plots.

One job: turn a finished run's result (a ``history`` of hardware points and the ``best``
one, as `search.optimizers.spotlight.SpotlightResult`) into files in the run directory.
Running the search is `search.optimizers`; the CLI wires the two (`search.spotlight`).

Files written into the run directory by `write_report`:

``report.md``        header and summary lines; the best design (hardware, network EDP,
                     cycles, energy, area, iteration and phase); its per-layer table
                     (count, cycles, energy, EDP of one occurrence, mapping JSON); the
                     hardware candidates tried, one row per iteration, with the
                     best-so-far; the plots; the feature importance (when given); the
                     Verilog path (when given) and the re-verify command
``convergence.png``  `plot_convergence` (thesis Fig 4.6 style)
``cdf.png``          `plot_cdf` of the hardware samples' network objective (Fig 4.7)
``importance.png``   `plot_importance` (Fig 4.5), when an importance is given

Iterations are numbered from 0, as in ``history.json`` and the run's store. A point is
infeasible when its objective is inf (a layer had no feasible mapping): it is listed,
drawn as a cross on the convergence plot, and left out of the CDF (the legend counts it).

Plots use matplotlib's Agg canvas through `matplotlib.figure.Figure` (no pyplot, so no
global figure state and no backend switch in the calling process).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["point_dict", "empirical_cdf", "best_so_far", "plot_convergence", "plot_cdf", "plot_importance",
           "write_best_verilog", "write_report"]

_DPI = 120


# ---- pure helpers -----------------------------------------------------------------------------
def _finite(values) -> list[float]:
    """The finite numbers of ``values`` (None, nan and +-inf dropped)."""
    out = []
    for v in values:
        if v is None:
            continue
        f = float(v)
        if math.isfinite(f):
            out.append(f)
    return out


def empirical_cdf(values) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF of the finite ``values`` (None, nan and inf are left out).

    Returns ``x``, the distinct finite values in increasing order, and
    ``p[k] = #{v : v <= x[k]} / n`` with n the number of finite values (so ``p[-1] = 1``);
    both empty when no value is finite. E.g. ``[3, 1, inf, 2, 2, None]`` gives
    ``x = [1, 2, 3]``, ``p = [0.25, 0.75, 1]``.
    """
    v = np.sort(np.asarray(_finite(values), dtype=np.float64))
    if not len(v):
        return np.zeros(0), np.zeros(0)
    x, counts = np.unique(v, return_counts=True)
    return x, np.cumsum(counts) / len(v)


def best_so_far(objectives) -> list[float]:
    """``b_i = min(o_0, ..., o_i)`` (inf until the first finite objective; None is inf)."""
    out, b = [], math.inf
    for o in objectives:
        o = math.inf if o is None or math.isnan(float(o)) else float(o)
        b = min(b, o)
        out.append(b)
    return out


def _figure(w: float = 6.0, h: float = 3.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    return path


# ---- plots ------------------------------------------------------------------------------------
def plot_convergence(history_objectives, path, *, title: str, ylabel: str) -> Path:
    """Each hardware iteration's objective (dots) and the best so far (a step line), log y
    (thesis Fig 4.6 style, against iterations rather than wall time). Infeasible
    iterations (inf or None) are crosses along the top edge. Returns ``path``."""
    from matplotlib.transforms import blended_transform_factory

    obj = [math.inf if o is None else float(o) for o in history_objectives]
    it = np.arange(len(obj))
    ok = np.array([math.isfinite(o) for o in obj], dtype=bool)
    fig = _figure()
    ax = fig.add_subplot()
    if ok.any():
        y = np.array(obj)
        ax.plot(it[ok], y[ok], "o", ms=4, alpha=0.6, label="iteration's objective")
        best = np.array(best_so_far(obj))
        shown = np.isfinite(best)
        ax.plot(it[shown], best[shown], drawstyle="steps-post", lw=1.8, label="best so far")
        if (y[ok] > 0).all():
            ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no feasible design", ha="center", va="center", transform=ax.transAxes)
    if (~ok).any():
        top = blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(it[~ok], np.full((~ok).sum(), 0.97), "x", color="tab:red", transform=top, clip_on=False,
                label=f"infeasible ({int((~ok).sum())})")
    ax.set_xlabel("hardware iteration")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(obj):
        ax.set_xlim(-0.5, len(obj) - 0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_cdf(series: dict, path, *, xlabel: str) -> Path:
    """Empirical CDF (`empirical_cdf`) of each series' values, one step line per series
    (a run, or one trial of a method), log x when every value is positive (thesis Fig
    4.7: further left is better). Infinite / None values are left out and counted in the
    series' legend entry. Returns ``path``."""
    if not isinstance(series, dict):
        raise ValueError(f"series must be a dict of name -> values; got {type(series).__name__}")
    fig = _figure()
    ax = fig.add_subplot()
    positive, drawn = True, False
    for name, values in series.items():
        values = list(values)
        x, p = empirical_cdf(values)
        dropped = len(values) - len(_finite(values))
        label = f"{name} (n={len(values) - dropped}" + (f", {dropped} infeasible)" if dropped else ")")
        if len(x):
            positive &= bool(x[0] > 0)
            ax.plot(np.concatenate([[x[0]], x]), np.concatenate([[0.0], p]), drawstyle="steps-post", label=label)
            drawn = True
        else:
            ax.plot([], [], label=label)
    if drawn and positive:
        ax.set_xscale("log")
        lo, hi = ax.get_xlim()
        if hi / lo >= 10:          # majors at the decades: unlabelled minors (they overlap)
            from matplotlib.ticker import NullFormatter
            ax.xaxis.set_minor_formatter(NullFormatter())
    if not drawn:
        ax.text(0.5, 0.5, "no feasible sample", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of hardware samples")
    if series:
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_importance(imp, path) -> Path:
    """Horizontal bars of ``imp.mean`` (a `search.importance.SoftwareImportance`), the
    mean relative importance of each input over the layers, largest on top (thesis Fig
    4.5). Returns ``path``."""
    names, mean = list(imp.names), np.asarray(imp.mean, dtype=float)
    if len(names) != len(mean):
        raise ValueError(f"importance has {len(names)} names for {len(mean)} values")
    order = np.argsort(-mean, kind="stable")[::-1]          # smallest first: drawn bottom-up
    fig = _figure(6.5, max(2.5, 0.22 * len(names) + 1.0))
    ax = fig.add_subplot()
    ax.barh(np.arange(len(names)), mean[order], color="tab:blue")
    ax.set_yticks(np.arange(len(names)), [names[i] for i in order], fontsize="small")
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlabel(f"relative permutation importance (mean over {len(imp.layers)} layers)")
    hw = imp.hw
    ax.set_title(f"daBO_SW inputs ({imp.variant}) on dim {hw.dim}, sp {hw.sp_kb} KB, acc {hw.acc_kb} KB",
                 fontsize="medium")
    return _save(fig, path)


# ---- verilog ----------------------------------------------------------------------------------
def point_dict(p, layers) -> dict:
    """A design point as JSON (``best.json`` and ``history.json`` of Spotlight and the
    baselines; `python -m search.spotlight --verify` reads it): hardware, area, objective,
    network cost, evaluations and per layer the layer, mapping and result."""
    return {"iteration": p.iteration, "phase": p.phase, "hw": p.hw.to_dict(), "area_mm2": p.area_mm2,
            "objective": p.objective if math.isfinite(p.objective) else None,
            "cost": {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in p.cost.to_dict().items()},
            "evaluations": p.evaluations,
            "layers": [{"name": lay.name, "count": lay.count, "layer": lay.to_dict(),
                        "mapping": None if m is None else m.to_dict(), "result": r.to_dict()}
                       for lay, m, r in zip(layers, p.mappings, p.results)]}


def write_best_verilog(hw, out_dir) -> Path:
    """The Verilog of design ``hw`` (`hw.generate.write_verilog`, Amaranth: seconds to
    tens of seconds) in ``out_dir`` (the run's ``verilog/``); returns the file's path."""
    from hw.config import HardwareConfig
    from hw.generate import write_verilog

    if not isinstance(hw, HardwareConfig):
        raise ValueError(f"hw must be a HardwareConfig; got {type(hw).__name__}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"Verilog directory {out} is a file")
    return write_verilog(hw, out)


# ---- report.md --------------------------------------------------------------------------------
def _num(v, fmt: str = ".4e") -> str:
    return "infeasible" if v is None or not math.isfinite(float(v)) else format(float(v), fmt)


def _rel(p, root: Path) -> str:
    p = Path(p)
    try:
        return p.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(p)


def _best_lines(best, layers, objective: str) -> list[str]:
    from .evaluators import layer_objective

    c, hw = best.cost, best.hw
    lines = ["## Best design", "",
             f"- hardware: dim {hw.dim}, scratchpad {hw.sp_kb} KB, accumulator {hw.acc_kb} KB "
             f"(iteration {best.iteration}, {best.phase})",
             f"- network: EDP {c.edp:.4e} pJ x cycles, {c.cycles:,.0f} cycles, {c.energy_pj / 1e6:,.3f} uJ, "
             f"area {best.area_mm2:.3f} mm^2"]
    if objective != "edp":
        lines.append(f"- objective ({objective}): {best.objective:.4e}")
    lines += ["", "| layer | count | cycles | energy uJ | EDP (one occurrence) | mapping |",
              "|:--|--:|--:|--:|--:|:--|"]
    for lay, m, r in zip(layers, best.mappings, best.results):
        cyc = "-" if r.cycles is None else f"{r.cycles:,}"
        en = "-" if r.energy_pj is None else f"{r.energy_pj / 1e6:.3f}"
        lines.append(f"| {lay.name} | {lay.count} | {cyc} | {en} | {_num(layer_objective(r, 'edp'))} | "
                     f"`{m.to_json() if m else '-'}` |")
    return lines


def _hardware_lines(history, objective: str) -> list[str]:
    lines = ["## Hardware candidates", "",
             f"{len(history)} designs tried (iterations from 0); objective: network {objective}.", "",
             "| iteration | phase | dim | sp_kb | acc_kb | area mm^2 | objective | best so far |",
             "|--:|:--|--:|--:|--:|--:|--:|--:|"]
    bsf = best_so_far([p.objective for p in history])
    for p, b in zip(history, bsf):
        lines.append(f"| {p.iteration} | {p.phase} | {p.hw.dim} | {p.hw.sp_kb} | {p.hw.acc_kb} | "
                     f"{p.area_mm2:.3f} | {_num(p.objective)} | {'-' if not math.isfinite(b) else f'{b:.4e}'} |")
    bad = [p for p in history if not math.isfinite(p.objective)]
    if bad:
        lines += ["", "Infeasible iterations:"]
        for p in bad:
            why = next(((lay_i, r.reason) for lay_i, r in enumerate(p.results) if not r.feasible), None)
            lines.append(f"- iteration {p.iteration}: "
                         + (f"layer {why[0]}: {why[1] or 'no reason given'}" if why else "no feasible network cost"))
    return lines


def _importance_lines(imp) -> list[str]:
    hw = imp.hw
    lines = ["## Feature importance (daBO_SW)", "",
             f"Permutation importance (`search.importance`) of the software surrogate's inputs "
             f"(variant {imp.variant}, log {imp.objective}) on dim {hw.dim}, sp {hw.sp_kb} KB, acc {hw.acc_kb} KB: "
             f"a GP per layer on its evaluations, shares normalised per layer, then averaged over "
             f"{len(imp.layers)} layers."]
    if imp.skipped:
        lines.append(f"Skipped (too few feasible evaluations): {', '.join(imp.skipped)}.")
    if not imp.layers:
        return lines + ["", "No layer had enough feasible evaluations to fit a surrogate."]
    shares = np.stack(list(imp.layers.values()))
    lines += ["", "| feature | mean share | min | max |", "|:--|--:|--:|--:|"]
    for j in np.argsort(-np.asarray(imp.mean), kind="stable"):
        lines.append(f"| {imp.names[j]} | {imp.mean[j]:.3f} | {shares[:, j].min():.3f} | {shares[:, j].max():.3f} |")
    lines += ["", "| layer | points | most important input | share |", "|:--|--:|:--|--:|"]
    for name, s in imp.layers.items():
        j = int(np.argmax(s))
        lines.append(f"| {name} | {imp.counts[name]} | {imp.names[j]} | {s[j]:.3f} |")
    return lines + ["", "![feature importance](importance.png)"]


def write_report(run_path, *, title: str, summary_lines, names, layers, result, objective: str,
                 importance=None, verilog_path=None, verify_command: str | None) -> Path:
    """Write ``report.md``, ``convergence.png``, ``cdf.png`` (and ``importance.png`` when
    ``importance`` is given) into the run directory ``run_path``; returns report.md's path.

    ``names``: the workloads (the CDF's series label); ``layers``: the layers, in the
    order of each point's ``mappings`` / ``results``; ``result``: ``history`` (points
    with ``iteration``, ``phase``, ``hw``, ``area_mm2``, ``objective``, ``cost``,
    ``mappings``, ``results``) and ``best`` (one of them, or None); ``objective``: the
    network objective minimised (edp, cycles or energy); ``importance``: a
    `search.importance.SoftwareImportance`; ``verilog_path``: the best design's Verilog;
    ``verify_command``: the command that re-verifies the best design (shown when there
    is one; None omits it).
    """
    from .evaluators import OBJECTIVES

    root = Path(run_path)
    if not root.is_dir():
        raise ValueError(f"run directory {root} does not exist or is not a directory")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    layers, names = list(layers), list(names)
    history, best = tuple(result.history), result.best
    objs = [p.objective for p in history]
    ylabel = f"network {objective}"
    plot_convergence(objs, root / "convergence.png", title=title, ylabel=ylabel)
    plot_cdf({", ".join(names) or "run": objs}, root / "cdf.png", xlabel=ylabel)

    lines = [f"# {title}", "", *summary_lines, ""]
    if best is None:
        lines += ["No feasible design was found.", ""]
    else:
        lines += [*_best_lines(best, layers, objective), ""]
    lines += [*_hardware_lines(history, objective), "",
              "![convergence](convergence.png)", "",
              f"CDF of the {len(history)} hardware samples' network {objective} (further left is better):", "",
              "![cdf](cdf.png)", ""]
    if importance is not None:
        plot_importance(importance, root / "importance.png")
        lines += [*_importance_lines(importance), ""]
    if verilog_path is not None:
        lines += [f"Verilog of the best design: `{_rel(verilog_path, root)}`", ""]
    if best is not None and verify_command:
        lines += [f"Re-verify on the RTL: `{verify_command}`", ""]
    out = root / "report.md"
    out.write_text("\n".join(lines))
    return out
