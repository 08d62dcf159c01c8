#!/usr/bin/env python3
"""Throughput of the vectorised analytical model (`cost.model.evaluate_arrays`) on one core.

    python scripts/bench_cost.py [--batch 1048576] [--repeat 3] [--chunk 0] [--scalar 2000]
                                 [--layers NAME,...] [--seed 0] [--json out.json]

For each layer (default: ResNet-50 layer1.0.conv2 and layer3.0.conv1, and a BERT
projection GEMM 128 x 768 x 768), `--batch` random (hardware, mapping) pairs are drawn
from `search.space`: hardware from `HardwareSpace` unit points (dim, acc_kb, sp_kb;
every other field the default), mappings from `MappingSpace(hw, layer).from_unit_arrays`
(the choices depend on the hardware only through dim, so one MappingSpace per dim).
Only `evaluate_arrays(layer, hw_arrays, factors, order)` is timed, not the sampling:
the first call of the process (cold: it loads, or compiles, the Numba kernel
`cost.kernel`) and the best of `--repeat` calls. The batch is one call, or calls of
`--chunk` rows. For comparison, the scalar `cost.evaluate` (a `Result` per call,
including `Mapping.check`) is timed on the first `--scalar` pairs.

numpy's thread pools are limited to one thread (the environment variables below are set
before numpy is imported) and the process is pinned to one CPU where the OS allows it.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cost
from cost import kernel, model
from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import Mapping
from search.space import DIMS, HardwareSpace, MappingSpace
from search.workloads import get_workload

TARGET = 1e6   # evaluations per second per core


def layers_by_name(names: list[str]) -> list[Layer]:
    """``net:layer`` names of search.workloads, or ``gemm:MxKxN``."""
    out = []
    for name in names:
        kind, _, rest = name.partition(":")
        if kind == "gemm":
            m, k, n = (int(v) for v in rest.split("x"))
            out.append(Layer.gemm(f"gemm_{m}x{k}x{n}", m, k, n))
        else:
            found = [lay for lay in get_workload(kind) if lay.name == rest]
            if not found:
                raise SystemExit(f"error: workload {kind!r} has no layer {rest!r}")
            out.append(found[0])
    return out


def draw(layer: Layer, batch: int, seed: int):
    """(hw dict of (B,) arrays, factors (B, 3, 7), order (B, 7)) from uniform unit points."""
    rng = np.random.default_rng(seed)
    u_hw = rng.random((batch, 3))
    u_map = rng.random((batch, 8))
    hw = HardwareSpace.from_unit_arrays(u_hw)
    dim = hw["dim"]
    factors = np.empty((batch, 3, 7), dtype=np.int64)
    order = np.empty((batch, 7), dtype=np.int64)
    for d in DIMS:
        rows = np.nonzero(dim == d)[0]
        if len(rows):
            factors[rows], order[rows] = MappingSpace(HardwareConfig(dim=d), layer).from_unit_arrays(u_map[rows])
    return hw, factors, order


def evaluate_batch(layer, hw, factors, order, chunk: int) -> dict:
    if not chunk or chunk >= len(factors):
        return model.evaluate_arrays(layer, hw, factors, order)
    parts = [model.evaluate_arrays(layer, {k: v[i:i + chunk] for k, v in hw.items()},
                                   factors[i:i + chunk], order[i:i + chunk])
             for i in range(0, len(factors), chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def time_scalar(layer, hw, factors, order, n: int) -> tuple[float, float]:
    """(calls/s of cost.evaluate on the first n pairs, max |cycles difference| to the batch)."""
    n = min(n, len(factors))
    cfgs = [HardwareConfig(dim=int(hw["dim"][i]), sp_kb=int(hw["sp_kb"][i]), acc_kb=int(hw["acc_kb"][i]))
            for i in range(n)]
    maps = [Mapping.from_arrays(factors[i], order[i]) for i in range(n)]
    t0 = time.perf_counter()
    results = [cost.evaluate(h, m, layer) for h, m in zip(cfgs, maps)]
    wall = time.perf_counter() - t0
    batch = model.evaluate_arrays(layer, {k: v[:n] for k, v in hw.items()}, factors[:n], order[:n])
    diff = max((abs(r.cycles - np.ceil(c)) for r, c in zip(results, batch["cycles"]) if r.feasible), default=0.0)
    return n / wall, float(diff)


# ---- main ------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Throughput of cost.model.evaluate_arrays on one core.")
    p.add_argument("--batch", type=int, default=1 << 20, help="pairs per layer (default 2^20)")
    p.add_argument("--repeat", type=int, default=3, help="timed calls per layer after the first (default 3)")
    p.add_argument("--chunk", type=int, default=0, help="rows per evaluate_arrays call (default 0: one call)")
    p.add_argument("--scalar", type=int, default=2000, help="pairs timed through cost.evaluate (default 2000)")
    p.add_argument("--layers", default="resnet50:layer1.0.conv2,resnet50:layer3.0.conv1,gemm:128x768x768",
                   help="comma-separated net:layer or gemm:MxKxN")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    args = p.parse_args(argv)
    if args.batch < 1 or args.repeat < 0 or args.chunk < 0 or args.scalar < 0:
        p.error("--batch must be >= 1 and --repeat, --chunk, --scalar >= 0")

    pinned = None
    if hasattr(os, "sched_setaffinity"):
        pinned = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {pinned})
    print(f"numpy {np.__version__}, 1 thread, pinned to CPU {pinned}; batch {args.batch:,}, "
          f"{'one call' if not args.chunk or args.chunk >= args.batch else f'chunks of {args.chunk:,}'}, "
          f"best of {args.repeat} after a cold call", flush=True)
    header = (f"{'layer':<24} {'feasible':>8} {'sample s':>8} {'cold s':>7} {'best s':>7} "
              f"{'cold ev/s':>10} {'best ev/s':>10} {'scalar ev/s':>11}")
    print(header, flush=True)
    rows = []
    for layer in layers_by_name(args.layers.split(",")):
        t0 = time.perf_counter()
        hw, factors, order = draw(layer, args.batch, args.seed)
        sample_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = evaluate_batch(layer, hw, factors, order, args.chunk)
        cold = time.perf_counter() - t0
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            evaluate_batch(layer, hw, factors, order, args.chunk)
            times.append(time.perf_counter() - t0)
        best = min(times) if times else cold
        feasible = float(np.mean(res["feasible"]))
        scalar_rate, diff = time_scalar(layer, hw, factors, order, args.scalar) if args.scalar else (None, 0.0)
        if diff:
            print(f"warning: cost.evaluate and evaluate_arrays disagree by up to {diff} cycles", flush=True)
        row = {"layer": layer.name, "shape": str(layer), "batch": args.batch, "chunk": args.chunk,
               "feasible_fraction": round(feasible, 4), "sample_s": round(sample_s, 3),
               "cold_s": round(cold, 3), "best_s": round(best, 3), "times_s": [round(t, 3) for t in times],
               "cold_evals_per_s": round(args.batch / cold), "evals_per_s": round(args.batch / best),
               "scalar_evals_per_s": round(scalar_rate, 1) if scalar_rate else None,
               "scalar_max_cycle_diff": diff}
        rows.append(row)
        print(f"{layer.name:<24} {feasible:>8.3f} {sample_s:>8.2f} {cold:>7.2f} {best:>7.2f} "
              f"{row['cold_evals_per_s']:>10,} {row['evals_per_s']:>10,} "
              f"{(f'{scalar_rate:,.0f}' if scalar_rate else '-'):>11}", flush=True)
    slow = [r["layer"] for r in rows if r["evals_per_s"] < TARGET]
    print(f"target {TARGET:,.0f} evaluations/s per core: " + (f"missed on {', '.join(slow)}" if slow else "met"))
    if args.json:
        model_sha = hashlib.sha256(Path(model.__file__).read_bytes()
                                   + Path(kernel.__file__).read_bytes()).hexdigest()[:16]
        args.json.write_text(json.dumps({"rows": rows, "pinned_cpu": pinned,
                                         "numpy": np.__version__, "cost_model_sha256": model_sha,
                                         "load_average": os.getloadavg()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
