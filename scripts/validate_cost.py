#!/usr/bin/env python3
"""Validate the analytical model (cost/) against the RTL (sim/) on random triples.

    python scripts/validate_cost.py --n 300 --seed 1 [--workers 2] [--plot FILE.png]

Triples (hardware, mapping, layer), drawn from `--seed`:

* hardware: one of `POOL`, eight configurations spanning DIM 4, 8, 16 and 32, small
  and large memories and (the first) an unusual memory system. A pool rather than the
  whole 4,096-point space because every configuration is a 30-250 s Verilator build;
* layer: a unique layer shape of the workloads (`WORKLOADS`), with its channel, kernel,
  stride, padding and grouping, but its output cropped to at most `CROP` x `CROP`
  pixels (GEMMs: at most `CROP_GEMM` rows) and its channels to at most `CROP_CH`, so
  that one RTL run takes seconds, not hours;
* mapping: uniform over the fitting mappings of `search.space.MappingSpace` (tiling
  factors and loop order), rejected when its array alone would need more than
  `MAX_ARRAY_CYCLES` cycles (MACs / (array C x array K), a bound independent of both
  models). With ``--buffers random`` each operand's tile is single- or double-buffered
  at random (`Mapping.buffers`) and the mapping is uniform over those that fit so
  buffered; the default ``double`` draws the triples of the seeds used before.

Both models evaluate every triple. RTL results are cached in `--cache` (JSON lines keyed
by the triple), so a rerun re-scores a changed model in seconds. The script prints
Spearman's rho and the median / p95 |error| of cycles, per-counter agreement, the worst
cases with the mechanism that dominated them in the RTL (which unit was busy), and
saves a log-log scatter plot with the y = x line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import Mapping
from hw.result import COUNT_KEYS, Result

POOL = (
    # DIM 4 with a narrow, slow memory system (8-byte bus, 32-byte requests, 4 in flight)
    HardwareConfig(dim=4, sp_kb=16, acc_kb=8, sp_banks=4, acc_banks=2, dma_bus_bytes=8,
                   dma_max_req_bytes=32, dma_max_inflight=4, dram_latency=30,
                   dram_bytes_per_cycle=4, dram_mb=1, imem_depth=4096),
    HardwareConfig(dim=4, sp_kb=64, acc_kb=32, dram_mb=1, imem_depth=4096),
    HardwareConfig(dim=8, sp_kb=32, acc_kb=16, sp_banks=2, acc_banks=1, dram_mb=2, imem_depth=4096),
    HardwareConfig(dim=8, sp_kb=128, acc_kb=64, dram_mb=2, imem_depth=4096),
    HardwareConfig(dim=16, dram_mb=4, imem_depth=16384),
    HardwareConfig(dim=16, sp_kb=64, acc_kb=32, dram_mb=4, imem_depth=8192),
    HardwareConfig(dim=32, sp_kb=128, acc_kb=128, dram_mb=4, imem_depth=8192),
    HardwareConfig(dim=32, sp_kb=256, acc_kb=64, dram_mb=4, imem_depth=8192),
)
WORKLOADS = ("resnet50", "bert", "unet", "retinanet", "vgg16", "mobilenetv2", "mnasnet", "transformer")
CROP = 8
CROP_GEMM = 32
CROP_CH = 512
MAX_ARRAY_CYCLES = 300_000


def _crop(layer: Layer, rng: np.random.Generator) -> Layer:
    d = layer.to_dict()
    gemm = layer.q == 1 and layer.r == 1 and layer.s == 1 and layer.n == 1
    cap = CROP_GEMM if gemm else CROP
    d["p"] = int(rng.integers(1, min(layer.p, cap) + 1))
    d["q"] = 1 if layer.q == 1 else int(rng.integers(1, min(layer.q, cap) + 1))
    g = layer.groups
    if g == 1:
        d["c"], d["k"] = min(layer.c, CROP_CH), min(layer.k, CROP_CH)
    else:  # keep the grouping: crop the number of groups, keep channels per group
        gc = max(1, min(g, CROP_CH // max(layer.c_per_group, layer.k_per_group)))
        d.update(groups=gc, c=gc * layer.c_per_group, k=gc * layer.k_per_group)
    d["count"] = 1
    return Layer(**d)


def _buffered_sample(space, rng: np.random.Generator) -> Mapping:
    """A mapping with random buffering, uniform over the factor choices that fit it."""
    bufs = tuple(int(b) for b in rng.integers(1, 3, 3))
    for _ in range(64):
        f, o = space.from_unit_arrays(rng.random((4096, 8)))
        ok = np.flatnonzero(space.fits_arrays(f, np.broadcast_to(bufs, (len(f), 3))))
        if len(ok):
            return Mapping.from_arrays(f[ok[0]], o[ok[0]], bufs)
    raise ValueError("no fitting mapping")


def draw_triples(n: int, seed: int, buffers: str = "double") -> list[tuple[HardwareConfig, Mapping, Layer]]:
    """`n` (hardware, mapping, layer) triples from `seed` (see the module docstring)."""
    from search.space import MappingSpace
    from search.workloads import get_workload, unique_layers

    shapes = unique_layers(layer for w in WORKLOADS for layer in get_workload(w))
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        hw = POOL[int(rng.integers(len(POOL)))]
        layer = _crop(shapes[int(rng.integers(len(shapes)))], rng)
        space = MappingSpace(hw, layer)
        try:
            if buffers == "double":
                m = space.sample(1, seed=int(rng.integers(2**31)), method="uniform")[0]
            else:
                m = _buffered_sample(space, rng)
        except Exception:  # noqa: BLE001 - nothing fits: draw another triple
            continue
        if layer.macs / (m.factor("array", "C") * m.factor("array", "K")) > MAX_ARRAY_CYCLES:
            continue
        # the tensors (input, weights, int32 output and partial sums) must fit the DRAM model
        need = (layer.n * (layer.h + 2 * layer.padding) * (layer.w + 2 * layer.padding) * layer.c
                + layer.weight_elems + 8 * layer.output_elems + 4 * hw.dma_bus_bytes)
        if need > hw.dram_bytes:
            continue
        out.append((hw, m, layer))
    return out


def _key(hw, m, layer) -> str:
    return json.dumps([hw.to_dict(), m.to_dict(), layer.to_dict()], sort_keys=True)


def rtl_results(triples, cache: Path, workers: int, cache_dir: str | None, superset: bool = False) -> list[Result]:
    """RTL results of the triples, from the cache where present (new ones appended)."""
    from sim.evaluate import evaluate_many

    done: dict[str, Result] = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[rec["key"]] = Result.from_dict(rec["result"])
    todo = [t for t in triples if _key(*t) not in done]
    if todo:
        print(f"RTL: {len(todo)} new simulations ({len(triples) - len(todo)} cached)", file=sys.stderr)
        cache.parent.mkdir(parents=True, exist_ok=True)
        # in chunks, appending as they finish, so an interrupted run keeps its work
        chunk = max(workers * 4, 8)
        for i in range(0, len(todo), chunk):
            part = todo[i:i + chunk]
            res = evaluate_many(part, workers=workers, cache_dir=cache_dir, progress=True, superset=superset)
            with cache.open("a") as f:
                for t, r in zip(part, res):
                    done[_key(*t)] = r
                    f.write(json.dumps({"key": _key(*t), "result": r.to_dict()}) + "\n")
    return [done[_key(*t)] for t in triples]


def _mechanism(r: Result) -> str:
    b = r.busy
    top = max(b, key=b.get)
    return f"{top}-bound (busy load {b['load'] / r.cycles:.2f}, exec {b['exec'] / r.cycles:.2f}, " \
           f"store {b['store'] / r.cycles:.2f} of the run)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300, help="number of random triples (default 300)")
    p.add_argument("--seed", type=int, default=1, help="seed of the triples (default 1)")
    p.add_argument("--workers", type=int, default=2, help="RTL simulations in parallel (default 2)")
    p.add_argument("--cache", type=Path, default=None,
                   help="RTL result cache (default build/validate_cost/rtl_seed<S>.jsonl)")
    p.add_argument("--cache-dir", default=None, help="Verilator build cache (default: the user cache)")
    p.add_argument("--buffers", choices=("double", "random"), default="double",
                   help="tile buffering: all double (the seeds used before) or random per operand")
    p.add_argument("--models", choices=("exact", "family"), default="exact",
                   help="RTL models: one build per configuration, or one per array size (capacity "
                        "ports; identical cycles, fewer builds)")
    p.add_argument("--plot", type=Path, default=Path("docs/cost_validation.png"),
                   help="scatter plot (default docs/cost_validation.png)")
    p.add_argument("--worst", type=int, default=8, help="worst cases to list (default 8)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n must be >= 1; got {args.n}")

    from scipy.stats import spearmanr

    import cost

    t0 = time.time()
    triples = draw_triples(args.n, args.seed, args.buffers)
    tag = "" if args.buffers == "double" else "_buffered"
    cache = args.cache or Path("build/validate_cost") / f"rtl_seed{args.seed}{tag}.jsonl"
    rtl = rtl_results(triples, cache, args.workers, args.cache_dir, superset=args.models == "family")
    ana = [cost.evaluate(hw, m, layer) for hw, m, layer in triples]
    keep = [i for i, r in enumerate(rtl) if r.feasible]
    if len(keep) < len(rtl):
        print(f"note: {len(rtl) - len(keep)} RTL runs infeasible (watchdog / failure), left out:",
              file=sys.stderr)
        for i in set(range(len(rtl))) - set(keep):
            print(f"  {triples[i][2].name}: {rtl[i].reason}", file=sys.stderr)
    rc = np.array([rtl[i].cycles for i in keep], dtype=float)
    ac = np.array([ana[i].cycles for i in keep], dtype=float)
    err = ac / rc - 1.0
    rho = float(spearmanr(rc, ac)[0])
    med, p95 = float(np.median(np.abs(err))), float(np.percentile(np.abs(err), 95))
    per_dim = {}
    for d in sorted({triples[i][0].dim for i in keep}):
        sel = [j for j, i in enumerate(keep) if triples[i][0].dim == d]
        per_dim[d] = (len(sel), float(np.median(np.abs(err[sel]))))
    print(f"triples: {len(keep)} (seed {args.seed}, {len(POOL)} hardware configurations, "
          f"DIM {', '.join(str(d) for d in sorted(per_dim))})")
    print(f"cycles: Spearman rho {rho:.4f}   median |error| {100 * med:.2f} %   p95 |error| {100 * p95:.2f} %"
          f"   mean error {100 * float(err.mean()):+.2f} %")
    print("per DIM: " + ", ".join(f"{d}: n={n} median {100 * m:.1f} %" for d, (n, m) in per_dim.items()))
    print("counters (analytical == RTL, exactly):")
    agree = {}
    for k in COUNT_KEYS:
        same = sum(ana[i].counts[k] == rtl[i].counts[k] for i in keep)
        agree[k] = same
        rel = [abs(ana[i].counts[k] / rtl[i].counts[k] - 1) for i in keep if rtl[i].counts[k]]
        print(f"  {k:20s} {same}/{len(keep)}   max |rel. error| {100 * max(rel, default=0):.3f} %")
    print(f"worst {args.worst}:")
    for j in np.argsort(-np.abs(err))[:args.worst]:
        i = keep[j]
        hw, m, layer = triples[i]
        print(f"  {100 * err[j]:+6.1f} %  RTL {int(rc[j]):>9,}  model {int(ac[j]):>9,}  DIM {hw.dim} "
              f"sp {hw.sp_kb} acc {hw.acc_kb}  {layer.name} ({layer.n}x{layer.k}x{layer.c}x{layer.p}x"
              f"{layer.q}x{layer.r}x{layer.s}/{layer.stride} g{layer.groups})  tiles {m.tiles()} "
              f"order {''.join(m.order)} buffers {''.join(map(str, m.buffers))}  {_mechanism(rtl[i])}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    dims = np.array([triples[i][0].dim for i in keep])
    for d, colour in zip((4, 8, 16, 32), ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        sel = dims == d
        ax.scatter(rc[sel], ac[sel], s=10, alpha=0.7, label=f"DIM {d}", color=colour)
    lo, hi = min(rc.min(), ac.min()) / 1.5, max(rc.max(), ac.max()) * 1.5
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("RTL cycles (Verilator)")
    ax.set_ylabel("analytical model cycles")
    ax.set_title(f"{len(keep)} random triples: rho {rho:.3f}, median |err| {100 * med:.1f} %")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({"n": len(keep), "seed": args.seed, "rho": rho, "median_abs_err": med,
                                         "p95_abs_err": p95, "counters_exact": agree,
                                         "per_dim": per_dim}, indent=1))
    print(f"wall time {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
