"""The report of a Polaris run: ``report.md`` and its plots, from a `PolarisResult`.

One job: files in the run directory. The search is `search.optimizers.polaris`; the CLI
(`search.polaris`) wires the two. Files:

``report.md``             summary; the best design (hardware, area, network energy, delay,
                          EDP; per layer the mapping, energy, cycles, EDP); the
                          product-of-sums check on it (thesis Fig 6.2); the hardware
                          candidates tried (continuous point, acquisition value, realised
                          design, its objective, best so far); the wall time split by phase;
                          the plots and the re-verify command
``convergence.png``       `plot_convergence` (thesis Fig 6.5)
``predicted.png``         `plot_predicted`: the surrogate's prediction, made before each
                          evaluation, against the measurement, for every sample (network)
                          and every evaluated triple (layer)
``product_of_sums.png``   `plot_product_of_sums` (Fig 6.2) for the best design

Plots use matplotlib's Agg canvas through `matplotlib.figure.Figure` (no pyplot), as
`search.report`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .report import best_so_far

__all__ = ["plot_convergence", "plot_predicted", "plot_product_of_sums", "combination_points", "timing_rows",
           "write_polaris_report"]

_DPI = 120


def _figure(w: float = 6.5, h: float = 3.8, n: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, n, i + 1) for i in range(n)]


def _save(fig, path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    return Path(path)


def _no_minor_labels(ax) -> None:
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot_convergence(history, path, *, title: str) -> Path:
    """Thesis Fig 6.5: every sample's network EDP (dots) against the overall sample
    number, one segment per hardware candidate (grey dashed borders, labelled with the
    design), the solid line the cumulative minimum within the segment (the best
    combination of the design's mappings so far), a thin line the run's best so far."""
    fig, (ax,) = _figure()
    x0, drawn = 0, False
    overall = []
    for p in history:
        xs = np.arange(x0, x0 + len(p.samples)) + 1
        obj = np.array([s.objective for s in p.samples], dtype=float)
        cum = np.array([s.best_on_design for s in p.samples], dtype=float)
        ok = np.isfinite(obj)
        if ok.any():
            ax.plot(xs[ok], obj[ok], "o", ms=3.5, color="tab:blue", alpha=0.55,
                    label=None if drawn else "sample's network EDP")
        okc = np.isfinite(cum)
        if okc.any():
            ax.plot(xs[okc], cum[okc], "-", lw=1.8, color="tab:orange", drawstyle="steps-post",
                    label=None if drawn else "cumulative min (this design)")
            drawn = True
        overall += list(cum)
        if x0 > 0:
            ax.axvline(x0 + 0.5, color="0.6", ls="--", lw=0.8)
        ax.text(x0 + 0.7, 1.0, f"d{p.hw.dim}\nsp{p.hw.sp_kb}\nacc{p.hw.acc_kb}", transform=ax.get_xaxis_transform(),
                fontsize=6, va="top", color="0.3")
        x0 += len(p.samples)
    b = np.array(best_so_far(overall))
    if np.isfinite(b).any():
        xs = np.arange(1, len(b) + 1)
        ax.plot(xs[np.isfinite(b)], b[np.isfinite(b)], "-", lw=0.8, color="k", alpha=0.6, drawstyle="steps-post",
                label="best so far (run)")
        ax.set_yscale("log")
        _no_minor_labels(ax)
    else:
        ax.text(0.5, 0.5, "no feasible sample", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("sample (hardware iteration x software round)")
    ax.set_ylabel("network EDP (pJ x cycles)")
    ax.set_title(title, fontsize="medium")
    if x0:
        ax.set_xlim(0.5, x0 + 0.5)
    if drawn:
        ax.legend(fontsize="x-small", loc="upper right")
    return _save(fig, path)


def plot_predicted(history, layers, path) -> Path:
    """Predicted (before the evaluation) against measured EDP: left every sample's
    network EDP (bars: +-1 sigma_N), right every evaluated layer triple (one occurrence);
    log-log, the diagonal dashed."""
    fig, (a, b) = _figure(10.0, 4.2, 2)
    pm, ps, me, it = [], [], [], []
    lm, ls, lme = [], [], []
    for p in history:
        for s in p.samples:
            mu, sd = s.predicted_network
            if math.isfinite(s.objective) and math.isfinite(mu):
                pm.append(mu), ps.append(sd), me.append(math.log(s.objective)), it.append(p.iteration)
            for r, mu_l, sd_l in zip(s.results, s.predicted_mean, s.predicted_std):
                if r.feasible and r.cycles and r.energy_pj and math.isfinite(mu_l):
                    lm.append(mu_l), ls.append(sd_l), lme.append(math.log(r.cycles * r.energy_pj))
    for ax, (m, s_, y), what in ((a, (pm, ps, me), "network EDP per sample"),
                                 (b, (lm, ls, lme), "layer EDP per evaluation")):
        if not m:
            ax.text(0.5, 0.5, "no feasible sample", ha="center", va="center", transform=ax.transAxes)
            continue
        m, s_, y = np.exp(m), np.array(s_), np.exp(y)
        err = np.vstack([m - m * np.exp(-s_), m * np.exp(s_) - m])
        c = it if what.startswith("network") else None
        if c is not None:
            ax.errorbar(m, y, xerr=err, fmt="none", ecolor="0.7", lw=0.8)
            sc = ax.scatter(m, y, c=c, cmap="viridis", s=14, zorder=3)
            fig.colorbar(sc, ax=ax, label="hardware iteration")
        else:
            ax.scatter(m, y, s=6, alpha=0.5)
        lo, hi = min(m.min(), y.min()) / 1.2, max(m.max(), y.max()) * 1.2
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlim(lo, hi), ax.set_ylim(lo, hi)
        _no_minor_labels(ax)
        med = float(np.median(np.abs(np.log(m) - np.log(y))))
        ax.set_title(f"{what} (n={len(m)}, median |ln err| {med:.3f})", fontsize="small")
        ax.set_xlabel("predicted (before evaluation)")
        ax.set_ylabel("measured")
    return _save(fig, path)


def combination_points(energy, cycles, counts, *, limit: int = 200_000, seed: int = 0):
    """(energy sums, cycles sums) of every combination of the options (one per layer),
    or of ``limit`` random ones (seeded) when there are more; and whether all were taken."""
    es = [np.asarray(e, dtype=float) for e in energy]
    cs = [np.asarray(c, dtype=float) for c in cycles]
    n = np.asarray(counts, dtype=float)
    total = float(np.prod([len(e) for e in es], dtype=float))
    if total <= limit:
        E, C = np.zeros(1), np.zeros(1)
        for e, c, k in zip(es, cs, n):
            E = (E[:, None] + k * e[None, :]).ravel()
            C = (C[:, None] + k * c[None, :]).ravel()
        return E, C, True
    rng = np.random.default_rng(seed)
    pick = [rng.integers(0, len(e), limit) for e in es]
    E = sum(k * e[p] for e, p, k in zip(es, pick, n))
    C = sum(k * c[p] for c, p, k in zip(cs, pick, n))
    return E, C, False


def _design_options(point):
    """Per layer the feasible evaluated results of a design, from its samples."""
    E, C = [], []
    for li in range(len(point.results)):
        rs = [s.results[li] for s in point.samples]
        ok = [r for r in rs if r.feasible and r.cycles and r.energy_pj]
        E.append([r.energy_pj for r in ok])
        C.append([r.cycles for r in ok])
    return E, C


def plot_product_of_sums(point, layers, path):
    """Thesis Fig 6.2 on one design: the network energy and delay of every combination of
    its evaluated mappings (one per layer), the layerwise choice (star) and the exact
    minimum EDP (circle). Returns (path, `product_of_sums_check` dict) or (None, None)
    when a layer has no feasible evaluation."""
    from .optimizers.polaris import product_of_sums_check

    E, C = _design_options(point)
    if any(not e for e in E):
        return None, None
    counts = [lay.count for lay in layers]
    chk = product_of_sums_check(E, C, counts)
    Es, Cs, every = combination_points(E, C, counts)
    fig, (ax,) = _figure(5.5, 4.2)
    ax.scatter(Cs, Es / 1e6, s=3, alpha=0.3, color="tab:blue",
               label=f"{'all' if every else 'sampled'} {len(Es):,} of {chk['combinations']:,} combinations")

    def sums(choice):
        e = sum(k * E[i][j] for i, (j, k) in enumerate(zip(choice, counts)))
        c = sum(k * C[i][j] for i, (j, k) in enumerate(zip(choice, counts)))
        return c, e / 1e6

    ax.plot(*sums(chk["min_choice"]), "o", ms=11, mfc="none", mec="tab:red", mew=1.5, label="min EDP (exact)")
    ax.plot(*sums(chk["layerwise_choice"]), "*", ms=11, color="tab:orange", label="layerwise minimum")
    ax.set_xlabel("network delay (cycles)")
    ax.set_ylabel("network energy (uJ)")
    ax.set_title(f"dim {point.hw.dim}, sp {point.hw.sp_kb} KB, acc {point.hw.acc_kb} KB: layerwise / min = "
                 f"{chk['ratio']:.4f}", fontsize="small")
    ax.legend(fontsize="x-small")
    return _save(fig, path), chk


def timing_rows(timings: dict, *, pretrain_s: float, outputs_s: float | None = None) -> list[tuple[str, float]]:
    """The wall-time split (label, seconds) of a run's sitting."""
    t = timings
    rows = [("surrogate pre-training (first use of the default surrogate; 0 when cached)", pretrain_s),
            ("acquisition: hardware step (pools, inputs, predictions, search)", t["hardware_step"]),
            ("acquisition: software step (pools, inputs, predictions)", t["software_step"]),
            ("  of which surrogate predictions (both steps)", t["surrogate_predict"]),
            ("surrogate training (online updates)", t["surrogate_update"]),
            ("evaluation (evaluator wall time)", t["evaluation"]),
            ("  simulation: summed over simulations (parallel)", t["sim_run_s"]),
            ("  program generation: summed over simulations (parallel)", t["sim_compile_s"]),
            ("run store (look-ups, records)", t["store"])]
    if outputs_s is not None:
        rows.append(("outputs (JSON files, the best design's Verilog)", outputs_s))
    rows.append(("total (optimiser)", t["total"]))
    if "baselines" in t:
        rows.append(("mapper baselines (after the search, not in the total)", t["baselines"]))
    return rows


def prediction_errors(history) -> list[dict]:
    """How well the surrogate predicted before each evaluation, per hardware iteration and
    over the run: for the layer evaluations (one occurrence) Spearman's rho and the median
    |ln predicted - ln measured| EDP, and the median |ln err| of the network EDP per sample."""
    from scipy.stats import spearmanr

    def stats(label, pts):
        lm = [(mu, y) for s in pts for mu, y in s[0]]
        net = [abs(a - b) for s in pts for a, b in s[1]]
        rho = float(spearmanr(*zip(*lm)).statistic) if len(lm) > 2 else math.nan
        return {"label": label, "n": len(lm), "rho": rho,
                "median_layer": float(np.median([abs(a - b) for a, b in lm])) if lm else math.nan,
                "median_network": float(np.median(net)) if net else math.nan}

    per = []
    for p in history:
        pts = []
        for s in p.samples:
            lay = [(mu, math.log(r.cycles * r.energy_pj)) for r, mu in zip(s.results, s.predicted_mean)
                   if r.feasible and r.cycles and r.energy_pj and math.isfinite(mu)]
            net = [(s.predicted_network[0], math.log(s.objective))] if math.isfinite(s.objective) and \
                math.isfinite(s.predicted_network[0]) else []
            pts.append((lay, net))
        per.append((p.iteration, pts))
    rows = [stats(f"iteration {i}", pts) for i, pts in per]
    rows.append(stats("all", [x for _, pts in per for x in pts]))
    return rows


def _num(v) -> str:
    return "infeasible" if v is None or not math.isfinite(float(v)) else f"{float(v):.4e}"


def write_polaris_report(run_path, *, title: str, summary_lines, layers, result, timings_rows,
                         verilog_path=None, verify_command: str | None = None, baselines=None) -> Path:
    """Write report.md and its plots into ``run_path``; returns report.md's path."""
    from .evaluators import layer_objective

    root = Path(run_path)
    history, best = tuple(result.history), result.best
    plot_convergence(history, root / "convergence.png", title=title)
    plot_predicted(history, layers, root / "predicted.png")
    lines = [f"# {title}", "", *summary_lines, ""]
    if best is None:
        lines += ["No feasible design was found.", ""]
    else:
        c, hw = best.cost, best.hw
        lines += ["## Best design", "",
                  f"- hardware: dim {hw.dim}, scratchpad {hw.sp_kb} KB, accumulator {hw.acc_kb} KB "
                  f"(iteration {best.iteration}, {best.phase}), area {best.area_mm2:.3f} mm^2",
                  f"- network: EDP {c.edp:.4e} pJ x cycles, delay {c.cycles:,.0f} cycles, energy "
                  f"{c.energy_pj / 1e6:,.3f} uJ (every layer {'verified on the RTL' if all(r.verified for r in best.results) else 'evaluated'})",
                  "", "| layer | count | cycles | energy uJ | EDP (one occurrence) | mapping |",
                  "|:--|--:|--:|--:|--:|:--|"]
        for lay, m, r in zip(layers, best.mappings, best.results):
            cyc = "-" if r.cycles is None else f"{r.cycles:,}"
            en = "-" if r.energy_pj is None else f"{r.energy_pj / 1e6:.4f}"
            lines.append(f"| {lay.name} | {lay.count} | {cyc} | {en} | {_num(layer_objective(r, 'edp'))} | "
                         f"`{m.to_json() if m else '-'}` |")
        lines.append("")
        pth, chk = plot_product_of_sums(best, layers, root / "product_of_sums.png")
        if chk is not None:
            lines += ["## Product of sums (thesis Fig 6.2)", "",
                      f"On the best design, over the {chk['combinations']:,} combinations of its evaluated mappings "
                      f"(one per layer): the layerwise choice (each layer's lowest EDP) gives network EDP "
                      f"{chk['layerwise_edp']:.6e}; the exact minimum of (sum energy) x (sum delay) is "
                      f"{chk['min_edp']:.6e} (ratio {chk['ratio']:.6f}: "
                      f"{'the same point' if chk['equal'] else 'not the same point; the design takes the exact one'}).",
                      "", "![product of sums](product_of_sums.png)", ""]
    if baselines:
        ref = best.objective if best is not None else math.inf
        lines += ["## Mapper baselines (thesis Fig 6.4)", "",
                  "The same design with every layer on another mapper, at the same fidelity "
                  f"({'verified on the RTL' if all(r.verified for b in baselines for r in b.results if r.feasible) else 'evaluated'}):",
                  "", "| mapper | network EDP | cycles | energy uJ | Polaris's EDP relative to it |", "|:--|--:|--:|--:|--:|",
                  f"| Polaris ({len(best.samples) if best is not None else 0} rounds) | {_num(ref)} | "
                  f"{best.cost.cycles:,.0f} | {best.cost.energy_pj / 1e6:,.3f} | 1.000 |" if best is not None else
                  "| Polaris | infeasible | - | - | - |"]
        for b in baselines:
            if math.isfinite(b.objective):
                rel = f"{ref / b.objective:.3f}" if math.isfinite(ref) else "-"
                lines.append(f"| {b.description} | {_num(b.objective)} | {b.cost.cycles:,.0f} | "
                             f"{b.cost.energy_pj / 1e6:,.3f} | {rel} |")
            else:
                why = next((r.reason for r in b.results if not r.feasible), "")
                lines.append(f"| {b.description} | infeasible ({why}) | - | - | - |")
        lines.append("")
    lines += ["## Hardware candidates", "",
              "u* is the continuous point of the hardware step (dim index / 3, (acc_kb - 8) / 248, "
              "(sp_kb - 8) / 248), S its acquisition value (lower is better); objective: the exact best "
              "combination of the design's evaluated mappings; layerwise: each layer's own best.", "",
              "| iteration | u* | S | dim | sp_kb | acc_kb | area mm^2 | samples | objective | layerwise | best so far |",
              "|--:|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for p, b in zip(history, best_so_far([p.objective for p in history])):
        u = ", ".join(f"{v:.3f}" for v in p.hw_point)
        lines.append(f"| {p.iteration} | ({u}) | {p.acquisition_value:.4g} | {p.hw.dim} | {p.hw.sp_kb} | "
                     f"{p.hw.acc_kb} | {p.area_mm2:.3f} | {len(p.samples)} | {_num(p.objective)} | "
                     f"{_num(p.layerwise_objective)} | {_num(b)} |")
    lines += ["", "![convergence](convergence.png)", "",
              "The surrogate's prediction (made before each evaluation) against the measurement:", "",
              "![predicted vs measured](predicted.png)", "",
              "| design | layer evaluations | Spearman rho | median abs ln err (layer) | median abs ln err (network) |",
              "|:--|--:|--:|--:|--:|"]
    for r in prediction_errors(history):
        lines.append(f"| {r['label']} | {r['n']} | {r['rho']:.3f} | {r['median_layer']:.3f} | "
                     f"{r['median_network']:.3f} |")
    lines += ["",
              "## Wall time", "", "| phase | seconds |", "|:--|--:|"]
    lines += [f"| {name} | {secs:,.1f} |" for name, secs in timings_rows]
    lines.append("")
    if verilog_path is not None:
        try:
            rel = Path(verilog_path).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = str(verilog_path)
        lines += [f"Verilog of the best design: `{rel}`", ""]
    if best is not None and verify_command:
        lines += [f"Re-verify on the RTL: `{verify_command}`", ""]
    out = root / "report.md"
    out.write_text("\n".join(lines))
    return out
