"""Simulation benchmark of the RTL evaluator (`sim.evaluate`).

Sections (each optional):
  --speed     simulated cycles/s and MAC/s per array size on a GEMM that keeps the
              array busy, (64*D) x (16*D) x (16*D) with the default mapping, through the
              lean harness (and through cocotb with --cocotb), plus lean build times:
              cold (empty cache) and cached; --repeat N: the fastest of N simulations
  --resnet50  wall time of every ResNet-50 layer at DIM 16 (Gemmini defaults) with the
              default mapping, through the lean harness, and the total
  --resnet50-all WORKERS
              the whole ResNet-50 at every array size of --dims (Gemmini defaults,
              default mappings, lean harness) on WORKERS processes: each of the 24 unique
              layers of `search.workloads.unique_layers` simulated once and weighted by
              its count (54 layers), or all 54 occurrences with --all-occurrences. Per
              DIM: wall time, network cycles, the simulator's seconds and cycles/s, and
              the seconds of `sim.compiler.compile_layer` (reported apart from the
              simulation)

    python scripts/bench_sim.py --speed --dims 4,8,16,32 [--cocotb] --resnet50 [--json out.json]
    python scripts/bench_sim.py --resnet50-all 2 --dims 4,8,16,32 [--layers N] [--cache DIR]

Every run is verified bit-exact against numpy. Figures go to BENCHMARKS.md with the
command that produced them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.config import HardwareConfig  # noqa: E402
from hw.layer import Layer  # noqa: E402
from hw.mapping import default_mapping  # noqa: E402
from sim.evaluate import evaluate  # noqa: E402


def _timed_build(fn, cfg, cache):
    t0 = time.perf_counter()
    fn(cfg, cache_dir=cache)
    return time.perf_counter() - t0


def speed(dims, cocotb: bool, cache: Path, repeat: int = 1) -> list[dict]:
    from sim.build import build_cocotb_model, build_lean_model
    rows = []
    print(f"{'DIM':>4} {'harness':>7} {'layer':>18} {'cold build s':>12} {'cached s':>8} {'cycles':>10} "
          f"{'sim s':>7} {'cycles/s':>11} {'MAC/s':>13} {'util':>6}", flush=True)
    for d in dims:
        hw = HardwareConfig(dim=d)
        layer = Layer.gemm(f"gemm_{64 * d}x{16 * d}x{16 * d}", 64 * d, 16 * d, 16 * d)
        mapping = default_mapping(hw, layer)
        harnesses = [("lean", build_lean_model)] + ([("cocotb", build_cocotb_model)] if cocotb else [])
        for name, build in harnesses:
            cold = _timed_build(build, hw, cache)
            cached = _timed_build(build, hw, cache)
            runs = [evaluate(hw, mapping, layer, harness=name, cache_dir=cache) for _ in range(repeat)]
            assert len({(x.cycles, tuple(x.counts.items())) for x in runs}) == 1
            r = min(runs, key=lambda x: x.extra["sim_wall_s"])  # the fastest of `repeat` runs
            sim_s = r.extra["sim_wall_s"]
            row = {"dim": d, "harness": name, "layer": layer.name, "build_cold_s": round(cold, 1),
                   "build_cached_s": round(cached, 3), "cycles": r.cycles, "sim_wall_s": sim_s,
                   "cycles_per_s": round(r.cycles / sim_s), "macs_per_s": round(r.counts["macs"] / sim_s),
                   "utilisation": round(r.utilisation, 4)}
            rows.append(row)
            print(f"{d:>4} {name:>7} {layer.name:>18} {cold:>12.1f} {cached:>8.3f} {r.cycles:>10,} {sim_s:>7.2f} "
                  f"{row['cycles_per_s']:>11,} {row['macs_per_s']:>13,} {r.utilisation:>6.3f}", flush=True)
    return rows


def resnet50(cache: Path) -> list[dict]:
    from search.workloads import resnet50 as net, unique_layers
    hw = HardwareConfig(dim=16)
    rows = []
    total_wall = total_cycles = 0
    layers = unique_layers(net())
    print(f"{'layer':>22} {'count':>5} {'cycles':>10} {'util':>6} {'insns':>8} {'compile s':>9} "
          f"{'sim s':>7} {'wall s':>7}", flush=True)
    for layer in layers:
        t0 = time.perf_counter()
        r = evaluate(hw, default_mapping(hw, layer), layer, cache_dir=cache)
        wall = time.perf_counter() - t0
        total_wall += wall
        total_cycles += r.cycles * layer.count
        rows.append({"layer": layer.name, "count": layer.count, "cycles": r.cycles, "wall_s": round(wall, 3),
                     "sim_wall_s": r.extra["sim_wall_s"], "compile_s": r.extra["compile_s"],
                     "instructions": r.extra["instructions"], "utilisation": round(r.utilisation, 4)})
        print(f"{layer.name:>22} {layer.count:>5} {r.cycles:>10,} {r.utilisation:>6.3f} "
              f"{r.extra['instructions']:>8,} {r.extra['compile_s']:>9.2f} {r.extra['sim_wall_s']:>7.2f} "
              f"{wall:>7.2f}", flush=True)
    print(f"{len(layers)} unique layers (network: {sum(x.count for x in layers)} layers): "
          f"{total_wall:.1f} s wall in total; network cycles {total_cycles:,}", flush=True)
    return rows


def _timed_evaluate(args):
    """Worker: `evaluate` of one (hw, layer) with the default mapping, and the seconds
    spent in `sim.compiler.compile_layer` during it (timed around the call itself)."""
    hw, layer, cache, classic = args
    import sim.compiler

    spent = []
    compile_layer = sim.compiler.compile_layer

    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return compile_layer(*a, **({"block": False} if classic else {}), **k)
        finally:
            spent.append(time.perf_counter() - t0)

    sim.compiler.compile_layer = timed  # evaluate imports it at call time
    try:
        t0 = time.perf_counter()
        r = evaluate(hw, default_mapping(hw, layer), layer, cache_dir=cache)
        wall = time.perf_counter() - t0
    finally:
        sim.compiler.compile_layer = compile_layer
    return r, sum(spent), wall


def resnet50_pool(cache: Path, workers: int, dims, *, all_occurrences: bool = False,
                  max_layers: int | None = None, classic: bool = False) -> list[dict]:
    """The whole ResNet-50 at each DIM of `dims` on `workers` processes (see the module
    docstring); `max_layers` keeps the first N layers (network order) for a shorter run;
    `classic` compiles with ``block=False`` (no COMPUTE_BLOCK)."""
    from concurrent.futures import ProcessPoolExecutor

    import cost
    from search.workloads import resnet50 as net, unique_layers
    from sim.build import build_lean_model

    layers = net() if all_occurrences else unique_layers(net())
    if max_layers is not None:
        layers = layers[:max_layers]
    what = "occurrences" if all_occurrences else "unique layers weighted by count"
    rows = []
    print(f"ResNet-50: {len(layers)} {what} ({sum(x.count for x in layers)} layers), {workers} workers", flush=True)
    print(f"{'DIM':>4} {'layers':>6} {'wall s':>8} {'network cycles':>15} {'sim s':>8} {'cycles/s':>11} "
          f"{'compile s':>9} {'insns':>11} {'util':>6}", flush=True)
    for d in dims:
        hw = HardwareConfig(dim=d)
        build_lean_model(hw, cache_dir=cache)
        # longest first (the analytical model's estimate), so the pool finishes together
        order = sorted(range(len(layers)), key=lambda i: -cost.evaluate(hw, default_mapping(hw, layers[i]),
                                                                        layers[i]).cycles)
        t0 = time.perf_counter()
        out = [None] * len(layers)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_timed_evaluate, (hw, layers[i], cache, classic)): i for i in order}
            for fut, i in futures.items():
                out[i] = fut.result()
        wall = time.perf_counter() - t0
        bad = [layers[i].name for i, (r, _, _) in enumerate(out) if not (r.feasible and r.verified)]
        if bad:
            raise RuntimeError(f"DIM {d}: not simulated and verified: {', '.join(bad)} "
                               f"({next(r.reason for r, _, _ in out if not r.verified)})")
        per_layer = [{"layer": x.name, "count": x.count, "cycles": r.cycles, "instructions": r.extra["instructions"],
                      "sim_wall_s": r.extra["sim_wall_s"], "compile_layer_s": round(c, 3),
                      "evaluate_s": round(w, 3), "utilisation": round(r.utilisation, 4)}
                     for x, (r, c, w) in zip(layers, out)]
        sim_s = sum(r.extra["sim_wall_s"] for r, _, _ in out)
        sim_cycles = sum(r.cycles for r, _, _ in out)
        net_cycles = sum(r.cycles * x.count for x, (r, _, _) in zip(layers, out))
        net_macs = sum(r.counts["macs"] * x.count for x, (r, _, _) in zip(layers, out))
        row = {"dim": d, "layers": len(layers), "network_layers": sum(x.count for x in layers),
               "all_occurrences": all_occurrences, "workers": workers, "wall_s": round(wall, 1),
               "network_cycles": net_cycles, "simulated_cycles": sim_cycles, "sim_wall_s": round(sim_s, 2),
               "cycles_per_s": round(sim_cycles / sim_s), "compile_layer_s": round(sum(c for _, c, _ in out), 1),
               "instructions": sum(r.extra["instructions"] for r, _, _ in out),
               "utilisation": round(net_macs / (d * d * net_cycles), 4), "per_layer": per_layer}
        rows.append(row)
        print(f"{d:>4} {len(layers):>6} {wall:>8.1f} {net_cycles:>15,} {sim_s:>8.1f} {row['cycles_per_s']:>11,} "
              f"{row['compile_layer_s']:>9.1f} {row['instructions']:>11,} {row['utilisation']:>6.3f}", flush=True)
    print("every output verified against numpy", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--dims", default="4,8,16,32")
    ap.add_argument("--cocotb", action="store_true", help="also run the cocotb harness in --speed")
    ap.add_argument("--repeat", type=int, default=1, help="--speed: simulate each case N times, report the fastest")
    ap.add_argument("--resnet50", action="store_true", help="each unique ResNet-50 layer, one at a time")
    ap.add_argument("--resnet50-all", type=int, metavar="WORKERS",
                    help="the whole ResNet-50 at each DIM of --dims on this many worker processes")
    ap.add_argument("--all-occurrences", action="store_true",
                    help="with --resnet50-all: simulate all 54 layers, not the 24 unique ones weighted by count")
    ap.add_argument("--layers", type=int, metavar="N", help="with --resnet50-all: only the first N layers")
    ap.add_argument("--cache", type=Path, help="build cache (default: a new temporary directory, so builds are cold)")
    ap.add_argument("--classic", action="store_true",
                    help="--resnet50-all: compile with block=False (PRELOAD + COMPUTE runs, no COMPUTE_BLOCK)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not (args.speed or args.resnet50 or args.resnet50_all):
        ap.error("choose --speed, --resnet50 and/or --resnet50-all")
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        cache = args.cache or Path(tmp)
        if args.speed:
            out["speed"] = speed([int(x) for x in args.dims.split(",")], args.cocotb, cache, args.repeat)
        if args.resnet50:
            out["resnet50"] = resnet50(cache)
        if args.resnet50_all:
            out["resnet50_all"] = resnet50_pool(cache, args.resnet50_all, [int(x) for x in args.dims.split(",")],
                                                all_occurrences=args.all_occurrences, max_layers=args.layers,
                                                classic=args.classic)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
