#!/usr/bin/env python3
"""Program generation time of the layer compiler (`sim.compiler.compile_layer`).

    python scripts/bench_compile.py [--dims 4,8,16,32] [--repeat 5] [--compare] [--classic]
                                    [--layers NAME,...] [--sampled N] [--json out.json]

For every unique ResNet-50 layer shape (`search.workloads.unique_layers`, 24 shapes; the
network has 54 layers) at every DIM of --dims (`HardwareConfig(dim=DIM)`, every other
field the default), with the default mapping the RTL flows use (`hw.mapping.
default_mapping`, as in `scripts/bench_sim.py` and `search.collect`'s reference runs),
`compile_layer` is timed: lowering (hardware, mapping, layer) to the instruction words
and the DRAM image layout. A layer that compiles in under --small-s seconds is timed
--repeat times and its median reported, a bigger one once. Per DIM: the total and the
largest seconds over the 24 shapes, the network total (each shape weighted by its count)
and the instructions.

--compare also times the frozen pre-vectorisation compiler
(tests/sim/reference_compiler.py, the same rule for repeats) and prints the speed-ups
(reference seconds / compiler seconds), per layer and per DIM; it checks nothing (the
test suite checks that both give the same words with ``block=False``). --classic times
``compile_layer(..., block=False)``, the stream before COMPUTE_BLOCK (the default
streams each weight block's pixels with COMPUTE_BLOCKs and has fewer instructions).

--sampled N also times N points of the RTL collection's distribution
(`search.collect`: scrambled Sobol points of `CoDesignSpace(..., version=2)` over the
ResNet-50 shapes, the hardware of the point, mappings that fit and whose analytical
estimate is at most 20,000,000 cycles, the collection's default --max-cycles), with
--compare against the reference too: total seconds and the slowest point.
"""

from __future__ import annotations

import argparse
import functools
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.config import HardwareConfig  # noqa: E402
from hw.mapping import default_mapping  # noqa: E402
from search.workloads import resnet50, unique_layers  # noqa: E402
from sim.compiler import compile_layer, dram_mb_for  # noqa: E402

TARGET_S = 1.0   # the goal for the slowest ResNet-50 layer at any DIM (issue 11)


def timed(fn, hw, mapping, layer, repeat: int, small_s: float) -> tuple[float, int]:
    """(seconds, instructions) of ``fn(hw, mapping, layer)``: the median of `repeat`
    calls when the first takes under `small_s` seconds, else the first."""
    t0 = time.perf_counter()
    c = fn(hw, mapping, layer)
    times = [time.perf_counter() - t0]
    n = c.stats["instructions"]
    del c
    if times[0] < small_s:
        for _ in range(repeat - 1):
            t0 = time.perf_counter()
            fn(hw, mapping, layer)
            times.append(time.perf_counter() - t0)
    return statistics.median(times), n


def resnet50_table(dims, names, repeat: int, small_s: float, ref, fn=compile_layer) -> list[dict]:
    layers = unique_layers(resnet50())
    if names:
        layers = [L for L in layers if L.name in names]
    rows = []
    for d in dims:
        hw = HardwareConfig(dim=d)
        head = f"{'layer':>20} {'count':>5} {'instructions':>12} {'compile s':>9}"
        print(f"\nDIM {d} ({len(layers)} ResNet-50 layer shapes, default mappings)")
        print(head + (f" {'reference s':>11} {'speed-up':>8}" if ref else ""), flush=True)
        per = []
        for L in layers:
            m = default_mapping(hw, L)
            s, n = timed(fn, hw, m, L, repeat, small_s)
            row = {"layer": L.name, "count": L.count, "instructions": n, "compile_s": round(s, 4)}
            line = f"{L.name:>20} {L.count:>5} {n:>12,} {s:>9.3f}"
            if ref:
                rs, rn = timed(ref, hw, m, L, repeat, small_s)
                row.update(reference_s=round(rs, 4), speedup=round(rs / s, 1))
                line += f" {rs:>11.3f} {rs / s:>7.1f}x"
            per.append(row)
            print(line, flush=True)
        total = sum(r["compile_s"] for r in per)
        slow = max(per, key=lambda r: r["compile_s"])
        row = {"dim": d, "layers": len(per), "total_s": round(total, 3), "max_s": slow["compile_s"],
               "max_layer": slow["layer"],
               "network_s": round(sum(r["compile_s"] * r["count"] for r in per), 3),
               "instructions": sum(r["instructions"] for r in per),
               "max_instructions": max(r["instructions"] for r in per), "per_layer": per}
        print(f"DIM {d}: total {total:.2f} s, max {slow['compile_s']:.3f} s ({slow['layer']}; target "
              f"{TARGET_S:g} s), network (x count) {row['network_s']:.2f} s, "
              f"{row['instructions']:,} instructions (largest {row['max_instructions']:,})", flush=True)
        if ref:
            rtotal = sum(r["reference_s"] for r in per)
            rslow = max(per, key=lambda r: r["reference_s"])
            ups = [r["speedup"] for r in per]
            row.update(reference_total_s=round(rtotal, 3), reference_max_s=rslow["reference_s"],
                       speedup_total=round(rtotal / total, 1), speedup_min=min(ups), speedup_max=max(ups))
            print(f"DIM {d}: reference total {rtotal:.2f} s, max {rslow['reference_s']:.3f} s "
                  f"({rslow['layer']}); speed-up {rtotal / total:.1f}x in total, "
                  f"{min(ups):.1f}x to {max(ups):.1f}x per layer", flush=True)
        rows.append(row)
    return rows


def sampled(n: int, seed: int, ref, fn=compile_layer) -> dict:
    """`n` fitting points of the RTL collection's space (see the module docstring)."""
    import cost
    from search.space import CoDesignSpace

    layers = unique_layers(resnet50())
    space = CoDesignSpace(layers, version=2)
    mb = max(16, dram_mb_for(layers))
    points = space.sobol(64 * n, seed=seed)
    done, tot, rtot, slow = 0, 0.0, 0.0, None
    print(f"\n{n} sampled points of the RTL collection's space (ResNet-50 shapes, seed {seed})")
    for u in points:
        if done == n:
            break
        li, hw, m = space.point(u)
        L = layers[li]
        if not m.check(hw, L) or cost.evaluate(hw, m, L).cycles > 20_000_000:
            continue
        hw = dataclasses.replace(hw, dram_mb=mb)
        s, insns = timed(fn, hw, m, L, 1, 0.0)
        tot += s
        done += 1
        if slow is None or s > slow[0]:
            slow = (s, f"{L.name} DIM {hw.dim} buffers {m.buffers}, {insns:,} instructions")
        if ref:
            rtot += timed(ref, hw, m, L, 1, 0.0)[0]
    out = {"points": done, "total_s": round(tot, 3), "max_s": round(slow[0], 4), "max_point": slow[1]}
    print(f"{done} points: total {tot:.2f} s, mean {tot / max(done, 1):.3f} s, max {slow[0]:.3f} s ({slow[1]})")
    if ref:
        out.update(reference_total_s=round(rtot, 3), speedup_total=round(rtot / tot, 1))
        print(f"reference: total {rtot:.2f} s; speed-up {rtot / tot:.1f}x")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", default="4,8,16,32")
    ap.add_argument("--repeat", type=int, default=5, help="runs of a small layer (median; default 5)")
    ap.add_argument("--small-s", type=float, default=0.25,
                    help="a layer whose first run is under this many seconds is repeated (default 0.25)")
    ap.add_argument("--compare", action="store_true",
                    help="also time tests/sim/reference_compiler.py and print the speed-ups")
    ap.add_argument("--layers", help="only these ResNet-50 layer names (comma-separated)")
    ap.add_argument("--sampled", type=int, default=0, metavar="N",
                    help="also time N points of the RTL collection's sample space")
    ap.add_argument("--seed", type=int, default=1, help="Sobol seed of --sampled (default 1)")
    ap.add_argument("--classic", action="store_true",
                    help="compile with block=False (PRELOAD + COMPUTE runs of <= DIM rows, no COMPUTE_BLOCK)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    args = ap.parse_args(argv)
    ref = None
    if args.compare:
        from tests.sim.reference_compiler import compile_layer as ref
    dims = [int(x) for x in args.dims.split(",")]
    names = set(args.layers.split(",")) if args.layers else None
    fn = functools.partial(compile_layer, block=False) if args.classic else compile_layer
    out = {"resnet50": resnet50_table(dims, names, args.repeat, args.small_s, ref, fn)}
    print("\nsummary (ResNet-50, default mappings)")
    print(f"{'DIM':>4} {'total s':>8} {'max s':>7} {'instructions':>13}"
          + (f" {'ref total s':>11} {'ref max s':>9} {'speed-up':>8}" if ref else ""))
    for r in out["resnet50"]:
        print(f"{r['dim']:>4} {r['total_s']:>8.2f} {r['max_s']:>7.3f} {r['instructions']:>13,}"
              + (f" {r['reference_total_s']:>11.2f} {r['reference_max_s']:>9.3f} {r['speedup_total']:>7.1f}x"
                 if ref else ""))
    if args.sampled:
        out["sampled"] = sampled(args.sampled, args.seed, ref, fn=fn)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
