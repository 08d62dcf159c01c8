"""Simulation benchmark of the RTL evaluator (`sim.evaluate`).

Sections (each optional):
  --speed     simulated cycles/s and MAC/s per array size on a GEMM that keeps the
              array busy, (64*D) x (16*D) x (16*D) with the default mapping, through the
              lean harness (and through cocotb with --cocotb), plus lean build times:
              cold (empty cache) and cached
  --resnet50  wall time of every ResNet-50 layer at DIM 16 (Gemmini defaults) with the
              default mapping, through the lean harness, and the total

    python scripts/bench_sim.py --speed --dims 4,8,16,32 [--cocotb] --resnet50 [--json out.json]

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


def speed(dims, cocotb: bool, cache: Path) -> list[dict]:
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
            r = evaluate(hw, mapping, layer, harness=name, cache_dir=cache)
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


def resnet50_pool(cache: Path, workers: int) -> dict:
    """All 54 layers (repeats included) through evaluate_many on `workers` processes."""
    from search.workloads import resnet50 as net
    from sim.evaluate import evaluate_many
    hw = HardwareConfig(dim=16)
    layers = net()
    t0 = time.perf_counter()
    results = evaluate_many([(hw, default_mapping(hw, layer), layer) for layer in layers], workers=workers,
                            cache_dir=cache)
    wall = time.perf_counter() - t0
    assert all(r.verified for r in results)
    cycles = sum(r.cycles for r in results)
    print(f"all {len(layers)} ResNet-50 layers, {workers} workers: {wall:.1f} s wall, "
          f"{cycles:,} cycles, every output verified", flush=True)
    return {"layers": len(layers), "workers": workers, "wall_s": round(wall, 1), "cycles": cycles}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--dims", default="4,8,16,32")
    ap.add_argument("--cocotb", action="store_true", help="also run the cocotb harness in --speed")
    ap.add_argument("--resnet50", action="store_true", help="each unique ResNet-50 layer, one at a time")
    ap.add_argument("--resnet50-all", type=int, metavar="WORKERS",
                    help="all 54 ResNet-50 layers through evaluate_many with this many workers")
    ap.add_argument("--cache", type=Path, help="build cache (default: a new temporary directory, so builds are cold)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not (args.speed or args.resnet50 or args.resnet50_all):
        ap.error("choose --speed, --resnet50 and/or --resnet50-all")
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        cache = args.cache or Path(tmp)
        if args.speed:
            out["speed"] = speed([int(x) for x in args.dims.split(",")], args.cocotb, cache)
        if args.resnet50:
            out["resnet50"] = resnet50(cache)
        if args.resnet50_all:
            out["resnet50_all"] = resnet50_pool(cache, args.resnet50_all)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
