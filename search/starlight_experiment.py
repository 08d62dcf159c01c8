"""The transfer-learning experiment of thesis Fig 5.7 (and the training curve of Fig 5.6).

`run_experiment` trains each method on random subsets of the RTL training split, of each
size in ``sizes`` (``"all"``: the whole split), ``trials`` times (trial t draws its subset
with seed t and trains with seed t), and scores every model on the held-out split
(`search.surrogate_data.test_mask`; no training or selection reads it) with
`search.surrogate_metrics.metrics`.

Methods (`METHODS`):

``starlight``          Starlight-Low's encoder transferred into the DKL GP (`fit_starlight`;
                       the encoder frozen, the default of `DKLOptions`)
``starlight-joint``    the same, the encoder trained jointly with the GP (the thesis's recipe)
``starlight-residual`` the same with the analytical model's ln cycles and ln energy as extra
                       kernel inputs and its ln EDP as the prior mean (beyond the thesis)
``encoder-nn``         the transferred encoder and a fresh 2-64-256-256-64-1 predictor,
                       trained by MSE (`finetune(fresh_predictor=True)`)
``low-finetuned``      Starlight-Low fine-tuned whole on the RTL rows (`finetune`)
``low-zero-shot``      Starlight-Low as it is (no RTL training)
``plain-gp``           BoTorch's exact GP (Matern 5/2, ARD) on the network columns
                       (`search.models.gp.fit_gp`)
``analytical``         the analytical model's own prediction (no training)

Every result is one line of ``DIR/results.jsonl`` (method, size, trial, metrics, fit
seconds), appended as it finishes: rerunning the same command skips what is there, so
a killed experiment resumes. `summarise` turns the lines into the per-(method, size)
median / min / max table, `plot_sizes` into Fig 5.7 (median line, min-max band), and
`run_training_curve` computes rho against training iterations (Fig 5.6).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from search.surrogate_data import BASE_DIMS, SurrogateData
from search.surrogate_metrics import METRIC_NAMES, metrics

__all__ = ["METHODS", "ExperimentOptions", "run_experiment", "run_training_curve", "summarise",
           "plot_sizes", "plot_training_curve", "format_table", "plot_latent", "plot_predicted"]

METHODS = ("starlight", "starlight-joint", "starlight-residual", "encoder-nn", "low-finetuned", "low-zero-shot", "plain-gp",
           "analytical")
GP_METHODS = ("starlight", "starlight-joint", "starlight-residual", "plain-gp")


@dataclass(frozen=True)
class ExperimentOptions:
    sizes: tuple = (32, 64, 128, 256, 512, "all")
    trials: int = 10
    methods: tuple = METHODS
    dkl_iters: int = 400
    nn_epochs: int = 300
    nn_batch: int = 64
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for s in self.sizes:
            if s != "all" and (not isinstance(s, int) or isinstance(s, bool) or s < 2):
                raise ValueError(f"sizes must be integers >= 2 or 'all'; got {s!r}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown method(s) {', '.join(bad)}; allowed: {', '.join(METHODS)}")
        if not isinstance(self.trials, int) or not 1 <= self.trials <= 1000:
            raise ValueError(f"trials must be an integer in 1..1000; got {self.trials!r}")


def dkl_options(method: str, options: ExperimentOptions, seed: int):
    from search.models.dkl import DKLOptions

    return DKLOptions(residual=method == "starlight-residual", iters=options.dkl_iters, seed=seed,
                      freeze_encoder=method != "starlight-joint")


def fit_and_predict(method: str, low, train: SurrogateData, test: SurrogateData, options: ExperimentOptions,
                    seed: int):
    """(mean, std or None) of ``method`` trained on ``train``, predicted on ``test``."""
    from search.models.vae import LowOptions, finetune

    if method == "analytical":
        return test.analytical_log_edp(), None
    if method == "low-zero-shot":
        return low.predict(test.X[:, :BASE_DIMS]), None
    if method in ("encoder-nn", "low-finetuned"):
        o = LowOptions(**{**low.options.to_dict(), "epochs": options.nn_epochs, "batch": options.nn_batch,
                          "seed": seed, "encoder": low.options.encoder, "predictor": low.options.predictor})
        net, _ = finetune(low, train.X[:, :BASE_DIMS], train.y, o, fresh_predictor=method == "encoder-nn")
        return net.predict(test.X[:, :BASE_DIMS]), None
    if method == "plain-gp":
        from search.models.gp import fit_gp

        g = fit_gp(train.X[:, :BASE_DIMS], train.y, kernel="matern", seed=seed)
        mean, std = g.posterior_mean_std(test.X[:, :BASE_DIMS])
        noise = float(g.model.likelihood.noise.detach().mean()) * float(g.model.outcome_transform.stdvs.squeeze()) ** 2
        return mean, np.sqrt(std ** 2 + noise)
    from search.models.dkl import fit_starlight

    s = fit_starlight(low.encoder, train.X, train.y, dkl_options(method, options, seed))
    mean, _ = s.predict(test.X)
    _, std = s.predict(test.X, observation_noise=True)
    return mean, std


def _done(path: Path) -> dict:
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue                              # a line cut by a kill: redone
            out[(r["method"], str(r["size"]), r["trial"])] = r
    return out


def _check_data(path: Path, rtl: SurrogateData, options: ExperimentOptions) -> None:
    """Record (first run) or check (resume) what the results are of: the RTL rows (a
    SHA-256 of their keys) and the training options; resuming on other data or with
    other options would mix results, so it is an error."""
    import hashlib

    sig = {"rows": len(rtl), "keys_sha256": hashlib.sha256("\n".join(sorted(rtl.keys)).encode()).hexdigest(),
           "dkl_iters": options.dkl_iters, "nn_epochs": options.nn_epochs, "nn_batch": options.nn_batch}
    if path.exists():
        old = json.loads(path.read_text())
        diff = [k for k in sig if old.get(k) != sig[k]]
        if diff:
            raise ValueError(f"{path.parent} holds results of other data or options ({', '.join(diff)} differ); "
                             f"use another --out")
    else:
        path.write_text(json.dumps({**sig, "sources": list(rtl.sources)}, indent=1))


def run_experiment(low, rtl: SurrogateData, out_dir, options: ExperimentOptions = ExperimentOptions(), *,
                   progress: bool = True) -> list[dict]:
    """Run (or resume) the experiment into ``out_dir``; returns all result lines."""
    import torch
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_data(out_dir / "data.json", rtl, options)
    path = out_dir / "results.jsonl"
    done = _done(path)
    train, test = rtl.train, rtl.held_out
    if len(test) < 2:
        raise ValueError(f"the held-out split has {len(test)} rows; it needs at least 2")
    sizes = sorted({len(train) if s == "all" else min(int(s), len(train)) for s in options.sizes})
    jobs = [(m, n, t) for n in sizes for t in range(options.trials) for m in options.methods
            if (m, str(n), t) not in done]
    bar = tqdm(jobs, desc="experiment", unit="fit", disable=not progress, dynamic_ncols=True)
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with path.open("a") as f:                     # end a line cut by a kill, so the next
            f.write("\n")                            # result starts a line of its own
    with path.open("a") as f:
        for method, n, trial in bar:
            bar.set_postfix(method=method, n=n, trial=trial)
            idx = np.random.default_rng(trial).permutation(len(train))[:n]
            t0 = time.perf_counter()
            with torch.random.fork_rng():
                mean, std = fit_and_predict(method, low, train.subset(idx), test, options, trial)
            r = {"method": method, "size": n, "trial": trial, "fit_s": round(time.perf_counter() - t0, 3),
                 **metrics(test.y, mean, std)}
            f.write(json.dumps(r) + "\n")
            f.flush()
            done[(method, str(n), trial)] = r
    return list(done.values())


def summarise(results) -> list[dict]:
    """Per (method, size): median, min and max over trials of every metric."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r["method"], int(r["size"])), []).append(r)
    rows = []
    for (method, size), rs in sorted(groups.items(), key=lambda kv: (METHODS.index(kv[0][0]), kv[0][1])):
        row = {"method": method, "size": size, "trials": len(rs),
               "fit_s": float(np.median([r["fit_s"] for r in rs]))}
        for k in METRIC_NAMES:
            v = [r[k] for r in rs if r.get(k) is not None]
            row[k] = None if not v else {"median": float(np.median(v)), "min": float(np.min(v)),
                                         "max": float(np.max(v))}
        rows.append(row)
    return rows


def format_table(rows) -> str:
    """A Markdown table of `summarise` rows (medians; rho with its min-max)."""
    def cell(v, fmt):
        return "-" if v is None else format(v["median"], fmt)

    out = ["| method | RTL train rows | rho median (min-max) | median abs ln err | p95 abs ln err | "
           "90% coverage | top-10% recall | fit s |", "|:--|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        rho = r["rho"]
        out.append(f"| {r['method']} | {r['size']} | {rho['median']:.4f} ({rho['min']:.4f}-{rho['max']:.4f}) | "
                   f"{cell(r['median_abs_log'], '.4f')} | {cell(r['p95_abs_log'], '.4f')} | "
                   f"{cell(r['coverage90'], '.2f')} | {cell(r['top10_recall'], '.2f')} | {r['fit_s']:.1f} |")
    return "\n".join(out)


def plot_sizes(rows, path, metric: str = "rho") -> None:
    """Fig 5.7: ``metric`` against RTL training rows, per method (median, min-max band).
    rho is drawn as 1 - rho on a log axis, so that 0.999 and 0.99 stay apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in METHODS:
        rs = [r for r in rows if r["method"] == method and r[metric] is not None]
        if not rs:
            continue
        x = [r["size"] for r in rs]
        f = (lambda v: max(1.0 - v, 1e-5)) if metric == "rho" else (lambda v: v)
        med = [f(r[metric]["median"]) for r in rs]
        line, = ax.plot(x, med, marker="o", label=method, linestyle="--" if method == "analytical" else "-")
        ax.fill_between(x, [f(r[metric]["min"]) for r in rs], [f(r[metric]["max"]) for r in rs],
                        color=line.get_color(), alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("RTL training samples")
    ax.set_ylabel({"rho": "1 - Spearman rho of EDP (held-out; lower is better)",
                   "median_abs_log": "median |ln error| of EDP (held-out)"}.get(metric, metric))
    if metric in ("rho", "median_abs_log"):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_training_curve(low, rtl: SurrogateData, *, size: int | str = "all", trials: int = 10,
                       iters: int = 1000, residual: bool = False, checkpoints=None, progress: bool = True) -> dict:
    """rho on the held-out split after each checkpoint iteration of Starlight's training
    (Fig 5.6), ``trials`` subsets of ``size`` rows: {"iters": [...], "rho": [[per trial]...]}."""
    from tqdm import tqdm

    from search.models.dkl import DKLOptions, fit_starlight

    train, test = rtl.train, rtl.held_out
    n = len(train) if size == "all" else min(int(size), len(train))
    cps = sorted(set(checkpoints or [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]) & set(range(1, iters + 1)))
    curves = []
    for t in tqdm(range(trials), desc="training curve", unit="trial", disable=not progress):
        idx = np.random.default_rng(t).permutation(len(train))[:n]
        rho = []

        def cb(i, s):
            if i in cps:
                rho.append(metrics(test.y, s.predict(test.X)[0])["rho"])

        fit_starlight(low.encoder, train.X[idx], train.y[idx],
                      DKLOptions(residual=residual, iters=iters, seed=t), callback=cb)
        curves.append(rho)
    return {"size": n, "iters": cps, "rho": curves, "residual": residual}


def plot_training_curve(curve: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = np.array(curve["rho"])
    fig, ax = plt.subplots(figsize=(6, 4))
    x = curve["iters"]
    ax.plot(x, np.median(r, axis=0), marker="o", label="median of trials")
    ax.fill_between(x, r.min(axis=0), r.max(axis=0), alpha=0.2, label="min-max")
    ax.set_xscale("log")
    ax.set_xlabel("training iterations (Adam, full batch)")
    ax.set_ylabel("Spearman rho of EDP (held-out)")
    ax.set_title(f"Starlight training, {curve['size']} RTL samples, {len(r)} trials")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_latent(pairs, path) -> None:
    """Fig 5.3: each (title, latent (n, 2), ln EDP (n,)) of ``pairs`` as a scatter
    coloured by ln EDP, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pairs), figsize=(5.5 * len(pairs), 4.5), squeeze=False)
    for ax, (title, z, y) in zip(axes[0], pairs):
        sc = ax.scatter(z[:, 0], z[:, 1], c=y, s=3, cmap="viridis", rasterized=True)
        ax.set_title(title)
        ax.set_xlabel("latent 1")
        ax.set_ylabel("latent 2")
        fig.colorbar(sc, ax=ax, label="ln EDP (analytical)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_predicted(y, pred, path, title: str) -> None:
    """Fig 5.5: predicted against actual EDP (log-log) with y = x and Spearman's rho."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = metrics(y, pred)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(np.exp(y), np.exp(pred), s=4, alpha=0.5, rasterized=True)
    lo, hi = float(np.exp(min(y.min(), pred.min()))), float(np.exp(max(y.max(), pred.max())))
    ax.plot([lo, hi], [lo, hi], "--", color="gray")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("actual EDP (pJ x cycles)")
    ax.set_ylabel("predicted EDP")
    ax.set_title(f"{title}\nrho {m['rho']:.4f}, median |ln err| {m['median_abs_log']:.3f}, n = {m['n']}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
