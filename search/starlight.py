"""Starlight from the command line: train, evaluate and study the learned EDP surrogate.

    python -m search.starlight train-low --data DIR[,DIR] --out LOW.pt [--epochs 40] [--alpha 1e-3] \\
        [--encoder 24,12] [--seed 0] [--plots DIR]
    python -m search.starlight train --low LOW.pt --rtl DATA[,DATA] --out MODEL.pt [--residual] \\
        [--joint] [--iters 400] [--n N] [--seed 0]
    python -m search.starlight evaluate --model MODEL.pt|LOW.pt --data DATA[,DATA] [--split test|train|all] \\
        [--json FILE] [--plot FILE.png]
    python -m search.starlight experiment --low LOW.pt --rtl DATA[,DATA] --out DIR \\
        [--sizes 32,64,128,256,512,all] [--trials 10] [--methods a,b] [--curve [--curve-size 256]]

DATA is a collection directory of `search.collect` (``dataset.sqlite``) or a Parquet file
it exported (``docs/datasets/*.parquet``). Rows are read by `search.surrogate_data` (the
input layout, the ln EDP target and the held-out test split are defined there):

* ``train-low`` trains Starlight-Low (`search.models.vae`) on the training split of
  analytical collections; ``--plots DIR`` also trains the plain VAE (no predictor) and
  writes the latent spaces of both (thesis Fig 5.3, ``latent.png``) and predicted
  against actual EDP on the held-out split (Fig 5.5b, ``predicted.png``);
* ``train`` transfers that encoder into Starlight (`search.models.dkl`) and fits it on
  the training split of RTL collections (``--n``: a random subset of that many rows);
  ``--residual`` is the variant that learns what the analytical model misses;
* ``evaluate`` prints the metrics (`search.surrogate_metrics`) of a model file of
  either kind on a split (default: the held-out one), next to the analytical model's;
* ``experiment`` runs thesis Fig 5.7's comparison (`search.starlight_experiment`)
  resumably into DIR (``results.jsonl``, ``summary.json``, ``table.md``, ``rho.png``,
  ``median_err.png``); ``--curve`` adds Fig 5.6 (``curve.json``, ``curve.png``): rho against training
  iterations, ``--trials`` subsets of ``--curve-size`` rows.

Bad options and unusable files print one ``error:`` line and exit 2.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hw.cli import OneLineParser, parse_or_exit_status, print_error, run_main

__all__ = ["main"]


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m search.starlight",
                      description="Starlight: a transfer-learned deep-kernel surrogate of RTL EDP.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    a = sub.add_parser("train-low", help="train Starlight-Low on analytical collections")
    a.add_argument("--data", required=True, help="analytical collection(s), comma-separated")
    a.add_argument("--out", required=True, help="model file to write")
    a.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    a.add_argument("--alpha", type=float, default=1e-3, help="weight of the KL term (default 1e-3)")
    a.add_argument("--encoder", default="24,12", help="hidden widths of the encoder (default 24,12: the thesis's)")
    a.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    a.add_argument("--plots", metavar="DIR", help="also write latent.png and predicted.png to DIR")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    t = sub.add_parser("train", help="transfer the encoder and fit Starlight on RTL collections")
    t.add_argument("--low", required=True, help="Starlight-Low model file")
    t.add_argument("--rtl", required=True, help="RTL collection(s), comma-separated")
    t.add_argument("--out", required=True, help="model file to write")
    t.add_argument("--residual", action="store_true", help="the residual variant (analytical prior mean)")
    t.add_argument("--joint", action="store_true",
                   help="train the encoder jointly with the GP (the thesis's recipe; default: frozen, see DKLOptions)")
    t.add_argument("--iters", type=int, default=400, help="Adam iterations (default 400)")
    t.add_argument("--n", type=int, help="train on a random subset of this many rows (default: all)")
    t.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    e = sub.add_parser("evaluate", help="metrics of a model file on a split of collections")
    e.add_argument("--model", required=True, help="Starlight or Starlight-Low model file")
    e.add_argument("--data", required=True, help="collection(s), comma-separated")
    e.add_argument("--split", choices=("test", "train", "all"), default="test", help="rows to score (default test)")
    e.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    e.add_argument("--plot", metavar="FILE", help="also plot predicted against actual EDP")
    x = sub.add_parser("experiment", help="thesis Fig 5.7: methods x RTL training-set sizes x trials")
    x.add_argument("--low", required=True, help="Starlight-Low model file")
    x.add_argument("--rtl", required=True, help="RTL collection(s), comma-separated")
    x.add_argument("--out", required=True, help="output directory (resumable)")
    x.add_argument("--sizes", default="32,64,128,256,512,all", help="training-set sizes (default 32,64,128,256,512,all)")
    x.add_argument("--trials", type=int, default=10, help="trials per size (default 10)")
    x.add_argument("--methods", help="comma-separated subset of the methods (default: all)")
    x.add_argument("--dkl-iters", type=int, default=400, help="Adam iterations of the DKL fits (default 400)")
    x.add_argument("--nn-epochs", type=int, default=300, help="epochs of the network fine-tunes (default 300)")
    x.add_argument("--curve", action="store_true", help="also rho against training iterations (Fig 5.6)")
    x.add_argument("--curve-iters", type=int, default=1000, help="iterations of the curve (default 1000)")
    x.add_argument("--curve-size", type=int, default=256,
                   help="RTL training rows of each curve trial, 2..; at most the training split (default 256)")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _paths(text: str) -> list[Path]:
    out = [Path(s.strip()) for s in text.split(",") if s.strip()]
    if not out:
        raise ValueError(f"no dataset in {text!r}")
    return out


def _int_range(v, name: str, lo: int, hi: int) -> int:
    if v is None or not lo <= v <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi:,}; got {v}")
    return v


def _train_low(args) -> int:
    from search.models.model_file import save_low
    from search.models.vae import LowOptions, train_low
    from search.surrogate_data import BASE_DIMS, load_datasets
    from search.surrogate_metrics import metrics

    _int_range(args.epochs, "--epochs", 1, 100_000)
    try:
        widths = tuple(int(w) for w in args.encoder.split(","))
    except ValueError:
        raise ValueError(f"--encoder must be comma-separated widths such as 24,12; got {args.encoder!r}") from None
    if not widths or min(widths) < 1 or max(widths) > 4096:
        raise ValueError(f"--encoder widths must be in 1..4096; got {args.encoder!r}")
    opts = LowOptions(epochs=args.epochs, alpha=args.alpha, encoder=widths, seed=args.seed)
    data = load_datasets(_paths(args.data), analytical=False)
    if data.fidelity != "analytical":
        print(f"note: training Starlight-Low on {data.fidelity} data", file=sys.stderr)
    tr, te = data.train, data.held_out
    t0 = time.perf_counter()
    net, log = train_low(tr.X[:, :BASE_DIMS], tr.y, opts, progress=not args.quiet)
    secs = time.perf_counter() - t0
    m = metrics(te.y, net.predict(te.X[:, :BASE_DIMS])) if len(te) > 1 else None
    save_low(args.out, net, {"data": [str(p) for p in data.sources], "rows": len(tr), "held_out": len(te),
                             "train_s": round(secs, 1), "best_epoch": log.best_epoch,
                             "val_loss": log.val[log.best_epoch], "held_out_metrics": m})
    print(f"Starlight-Low: {len(tr):,} training rows, {opts.epochs} epochs in {secs:.1f} s "
          f"(best epoch {log.best_epoch + 1}); wrote {args.out}")
    if m:
        print(f"held-out ({len(te):,} rows): rho {m['rho']:.4f}, median |ln err| {m['median_abs_log']:.4f}, "
              f"p95 {m['p95_abs_log']:.4f}")
    if args.plots:
        from search.starlight_experiment import plot_latent, plot_predicted

        out = Path(args.plots)
        out.mkdir(parents=True, exist_ok=True)
        vae, _ = train_low(tr.X[:, :BASE_DIMS], tr.y, LowOptions(**{**opts.to_dict(), "encoder": widths,
                                                                    "predictor": opts.predictor,
                                                                    "predictor_weight": 0.0}),
                           progress=not args.quiet)
        k = min(len(te), 20_000)
        plot_latent([("VAE without predictor", vae.latent(te.X[:k, :BASE_DIMS]), te.y[:k]),
                     ("Starlight-Low (with predictor)", net.latent(te.X[:k, :BASE_DIMS]), te.y[:k])],
                    out / "latent.png")
        plot_predicted(te.y, net.predict(te.X[:, :BASE_DIMS]), out / "predicted.png",
                       "Starlight-Low on held-out analytical samples")
        print(f"plots: {out / 'latent.png'}, {out / 'predicted.png'}")
    return 0


def _train(args) -> int:
    from search.models.dkl import DKLOptions, fit_starlight
    from search.models.model_file import file_sha256, load_low, save_starlight
    from search.surrogate_data import load_datasets

    import numpy as np

    _int_range(args.iters, "--iters", 0, 100_000)
    low, low_prov = load_low(args.low)
    data = load_datasets(_paths(args.rtl))
    tr = data.train
    if args.n is not None:
        _int_range(args.n, "--n", 2, len(tr))
        tr = tr.subset(np.random.default_rng(args.seed).permutation(len(tr))[:args.n])
    if len(tr) < 2:
        raise ValueError(f"{len(tr)} training rows; Starlight needs at least 2")
    opts = DKLOptions(residual=args.residual, iters=args.iters, seed=args.seed, freeze_encoder=not args.joint)
    prov = {"low_file": str(args.low), "low_sha256": file_sha256(args.low), "low_provenance": low_prov,
            "data": [str(p) for p in data.sources], "rows": len(tr)}
    t0 = time.perf_counter()
    model = fit_starlight(low.encoder, tr.X, tr.y, opts, provenance=prov)
    secs = time.perf_counter() - t0
    model.provenance["train_s"] = round(secs, 2)
    save_starlight(args.out, model)
    print(f"Starlight{' (residual)' if args.residual else ''}: {len(tr):,} RTL rows, {args.iters} iterations in "
          f"{secs:.1f} s; wrote {args.out}")
    return 0


def _evaluate(args) -> int:
    import torch

    from search.models.model_file import ModelFileError, load_low, load_starlight
    from search.surrogate_data import BASE_DIMS, load_datasets
    from search.surrogate_metrics import metrics

    try:
        model, kind = load_starlight(args.model), "starlight"
    except ModelFileError as e:
        if "'starlight-low' model file" not in str(e):
            raise
        model, kind = load_low(args.model)[0], "starlight-low"
    data = load_datasets(_paths(args.data))
    rows = {"test": data.held_out, "train": data.train, "all": data}[args.split]
    if len(rows) < 2:
        raise ValueError(f"the {args.split} split has {len(rows)} rows; at least 2 are needed")
    with torch.no_grad():
        if kind == "starlight":
            mean, _ = model.predict(rows.X)
            std = model.predict(rows.X, observation_noise=True)[1]
        else:
            mean, std = model.predict(rows.X[:, :BASE_DIMS]), None
    m = metrics(rows.y, mean, std)
    a = metrics(rows.y, rows.analytical_log_edp())
    print(f"{args.model} ({kind}) on the {args.split} split of {', '.join(data.sources)}: {m['n']:,} rows")
    print(f"{'':12s} {'rho':>8s} {'median':>8s} {'p95':>8s} {'cov90':>6s} {'top10%':>7s}")
    for name, r in ((kind, m), ("analytical", a)):
        cov = "-" if r["coverage90"] is None else f"{r['coverage90']:.2f}"
        print(f"{name:12s} {r['rho']:8.5f} {r['median_abs_log']:8.4f} {r['p95_abs_log']:8.4f} {cov:>6s} "
              f"{r['top10_recall']:7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": m, "analytical": a, "split": args.split}, indent=1))
    if args.plot:
        from search.starlight_experiment import plot_predicted

        plot_predicted(rows.y, mean, args.plot, f"{kind} on the {args.split} split")
    return 0


def _experiment(args) -> int:
    from search.models.model_file import load_low
    from search.starlight_experiment import (METHODS, ExperimentOptions, format_table, plot_sizes,
                                             plot_training_curve, run_experiment, run_training_curve, summarise)
    from search.surrogate_data import load_datasets

    sizes = []
    for s in args.sizes.split(","):
        s = s.strip()
        if s == "all":
            sizes.append("all")
        elif s.isdigit() and int(s) >= 2:
            sizes.append(int(s))
        else:
            raise ValueError(f"--sizes takes integers >= 2 and 'all'; got {s!r}")
    methods = tuple(m.strip() for m in args.methods.split(",")) if args.methods else METHODS
    opts = ExperimentOptions(sizes=tuple(sizes), trials=args.trials, methods=methods,
                             dkl_iters=_int_range(args.dkl_iters, "--dkl-iters", 0, 100_000),
                             nn_epochs=_int_range(args.nn_epochs, "--nn-epochs", 1, 100_000))
    low, _ = load_low(args.low)
    data = load_datasets(_paths(args.rtl))
    out = Path(args.out)
    t0 = time.perf_counter()
    results = run_experiment(low, data, out, opts, progress=not args.quiet)
    rows = summarise(results)
    (out / "summary.json").write_text(json.dumps({"rtl_rows": len(data), "train_rows": len(data.train),
                                                  "held_out_rows": len(data.held_out), "sources": data.sources,
                                                  "rows": rows}, indent=1))
    table = format_table(rows)
    (out / "table.md").write_text(table + "\n")
    plot_sizes(rows, out / "rho.png", "rho")
    plot_sizes(rows, out / "median_err.png", "median_abs_log")
    if args.curve:
        curve = run_training_curve(low, data, size=_int_range(args.curve_size, "--curve-size", 2, 10 ** 9),
                                   trials=args.trials, iters=_int_range(args.curve_iters, "--curve-iters", 1, 100_000),
                                   progress=not args.quiet)
        (out / "curve.json").write_text(json.dumps(curve))
        plot_training_curve(curve, out / "curve.png")
    print(table)
    print(f"{len(data.train):,} RTL training rows, {len(data.held_out):,} held out; "
          f"{time.perf_counter() - t0:.0f} s; results in {out}")
    return 0


def main(argv=None) -> int:
    args, status = parse_or_exit_status(_parser(), argv)
    if args is None:
        return status
    from search.dataset import DatasetError
    from search.models.model_file import ModelFileError

    handlers = {"train-low": _train_low, "train": _train, "evaluate": _evaluate, "experiment": _experiment}
    try:
        return handlers[args.command](args)
    except (ValueError, DatasetError, ModelFileError, OSError) as e:
        return print_error(e)


if __name__ == "__main__":
    run_main(main)
