#!/usr/bin/env python3
"""Starlight's speed: prediction throughput and training time.

    python scripts/bench_starlight.py --low runs/starlight/low.pt \\
        --rtl docs/datasets/rtl_seed0_n1280.parquet[,DATA] [--batch 100000] [--train-rows 256] \\
        [--json FILE]

* **Prediction throughput** on one core (``torch.set_num_threads(1)``): ``--batch``
  candidate mappings of ResNet-50's layer3.1.conv2 on DIM 16 / 256 KB / 64 KB (Sobol
  samples of its constrained mapping space), scored by Starlight (mean and std), by
  the residual variant (its inputs include the analytical model's prediction, so the
  analytical evaluation is timed with it), and by Starlight-Low; the time to build the
  input rows (`candidate_inputs`) is reported separately. Best of 3 runs. The
  candidates are arrays (`MappingSpace.from_unit_arrays` of Sobol points, those that
  fit), as a search scores its pools, not `Mapping` objects.
* **Training time** of Starlight and of the residual variant on ``--train-rows`` RTL
  training rows on 2 threads (the issue's 2 cores), default options.

Prints a table of figures and the ratios to the issue's targets (50,000 predictions/s,
60 s of training).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_RATE = 50_000
TARGET_TRAIN_S = 60.0


def _best(f, reps=3):
    best = float("inf")
    out = None
    for _ in range(reps):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--low", required=True)
    p.add_argument("--rtl", required=True)
    p.add_argument("--batch", type=int, default=100_000)
    p.add_argument("--train-rows", type=int, default=256)
    p.add_argument("--json")
    args = p.parse_args()
    import torch

    from hw.config import HardwareConfig
    from search.models.dkl import DKLOptions, fit_starlight
    from search.models.model_file import load_low
    from search.space import MappingSpace
    from search.surrogate_data import BASE_DIMS, candidate_inputs, load_datasets
    from search.workloads import get_workload, unique_layers

    low, _ = load_low(args.low)
    data = load_datasets([Path(s) for s in args.rtl.split(",")])
    tr = data.train
    idx = np.random.default_rng(0).permutation(len(tr))[:args.train_rows]
    res = {"batch": args.batch, "train_rows": len(idx)}

    torch.set_num_threads(2)
    for name, o in (("starlight", DKLOptions()), ("starlight-residual", DKLOptions(residual=True,
                                                                                   freeze_encoder=True))):
        t = time.perf_counter()
        model = fit_starlight(low.encoder, tr.X[idx], tr.y[idx], o)
        res[f"train_s_{name}"] = time.perf_counter() - t
        res[f"model_{name}"] = model

    torch.set_num_threads(1)
    layer = next(la for la in unique_layers(get_workload("resnet50")) if la.name == "layer3.1.conv2")
    hw = HardwareConfig(dim=16, sp_kb=256, acc_kb=64)
    space = MappingSpace(hw, layer, 2)
    # the candidates as arrays (a search scores pools this way; no Mapping objects):
    # scrambled Sobol points of the mapping space, the first --batch that fit
    from scipy.stats import qmc
    u = qmc.Sobol(space.unit_dims, scramble=True, seed=0).random_base2(int(np.ceil(np.log2(8 * args.batch))))
    f, o = space.from_unit_arrays(u)
    b = space.buffers_from_unit(u)
    keep = np.flatnonzero(space.fits_arrays(f, b))[:args.batch]
    if len(keep) < args.batch:
        raise SystemExit(f"only {len(keep):,} of {len(u):,} points fit; use a smaller --batch")
    f, o, b = f[keep], o[keep], b[keep]
    res["inputs_s"], X0 = _best(lambda: candidate_inputs(layer, hw, f, o, b, analytical=False))
    res["inputs_analytical_s"], X = _best(lambda: candidate_inputs(layer, hw, f, o, b))
    s_plain = res.pop("model_starlight")
    s_res = res.pop("model_starlight-residual")
    res["predict_s_starlight"], _ = _best(lambda: s_plain.predict(X0))
    res["predict_s_starlight-residual"], _ = _best(lambda: s_res.predict(X))
    res["predict_s_low"], _ = _best(lambda: low.predict(X0[:, :BASE_DIMS]))
    n = args.batch
    rows = [
        ("Starlight, predict (mean + std)", res["predict_s_starlight"]),
        ("Starlight, inputs + predict", res["inputs_s"] + res["predict_s_starlight"]),
        ("residual, predict", res["predict_s_starlight-residual"]),
        ("residual, inputs with analytical model + predict",
         res["inputs_analytical_s"] + res["predict_s_starlight-residual"]),
        ("Starlight-Low, predict", res["predict_s_low"]),
    ]
    print(f"{n:,} candidates of resnet50 {layer.name} on {hw.dim}x{hw.dim}, one thread:")
    print(f"{'':52s} {'s':>8s} {'per s':>12s} {'x target':>9s}")
    for name, secs in rows:
        res[f"rate_{name}"] = n / secs
        print(f"{name:52s} {secs:8.3f} {n / secs:12,.0f} {n / secs / TARGET_RATE:9.1f}")
    print(f"input rows alone: {res['inputs_s']:.3f} s without / {res['inputs_analytical_s']:.3f} s with the "
          f"analytical columns")
    print(f"training on {len(idx)} RTL rows, 2 threads: Starlight {res['train_s_starlight']:.1f} s "
          f"({res['train_s_starlight'] / TARGET_TRAIN_S:.2f}x the 60 s target), residual "
          f"{res['train_s_starlight-residual']:.1f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
