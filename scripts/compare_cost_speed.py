#!/usr/bin/env python3
"""The analytical model's throughput in two checkouts, side by side, in CPU time.

    python scripts/compare_cost_speed.py OTHER_CHECKOUT [--rounds 3] [--repeat 7] [--cpu 1]

Runs the same measurement alternately in this checkout and in OTHER_CHECKOUT (e.g. a
`git worktree` of an older commit), each in a fresh process pinned to one CPU: for
ResNet-50 layer1.0.conv2 and layer3.0.conv1, 2^20 (hardware, mapping) pairs drawn by
that checkout's `scripts/bench_cost.py` `draw` (the same pairs in both, as long as the
sampling rule is unchanged), one warm-up call and the best of `--repeat` calls of
`cost.model.evaluate_arrays`. Timed in process CPU time, so a machine shared with other
work still gives comparable figures; prints evaluations/s per round and the best of
each checkout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("layer1.0.conv2", "layer3.0.conv1")

_CHILD = r"""
import os, sys, time
root = sys.argv[1]
sys.path[:0] = [root, root + "/scripts"]
os.sched_setaffinity(0, {int(sys.argv[2])})
import bench_cost
from cost import model
from search.workloads import get_workload
out = []
for name in sys.argv[4].split(","):
    layer = next(l for l in get_workload("resnet50") if l.name == name)
    hw, f, o = bench_cost.draw(layer, 1 << 20, 0)
    model.evaluate_arrays(layer, hw, f, o)
    best = min((lambda t0: (model.evaluate_arrays(layer, hw, f, o), time.process_time() - t0)[1])(time.process_time())
               for _ in range(int(sys.argv[3])))
    out.append(str((1 << 20) / best))
print(" ".join(out))
"""


def measure(root: Path, cpu: int, repeat: int) -> list[float]:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(root), str(cpu), str(repeat), ",".join(LAYERS)],
                          capture_output=True, text=True, check=True)
    return [float(v) for v in proc.stdout.split()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("other", type=Path, help="the other checkout (its repository root)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--cpu", type=int, default=1, help="CPU to pin both processes to (default 1)")
    args = p.parse_args(argv)
    if not (args.other / "cost" / "model.py").is_file():
        p.error(f"{args.other} is not a checkout of this project (no cost/model.py)")
    if not (1 <= args.rounds <= 20 and 1 <= args.repeat <= 50):
        p.error("--rounds must be from 1 to 20 and --repeat from 1 to 50")
    best = {"this": [0.0] * len(LAYERS), "other": [0.0] * len(LAYERS)}
    for r in range(args.rounds):
        for tag, root in (("other", args.other.resolve()), ("this", ROOT)):
            rates = measure(root, args.cpu, args.repeat)
            best[tag] = [max(a, b) for a, b in zip(best[tag], rates)]
            print(f"round {r + 1} {tag:>5}: " + "  ".join(f"{n} {v / 1e6:.3f} M/s" for n, v in zip(LAYERS, rates)),
                  flush=True)
    for i, n in enumerate(LAYERS):
        print(f"best {n}: this {best['this'][i] / 1e6:.3f} M/s, other {best['other'][i] / 1e6:.3f} M/s, "
              f"ratio {best['this'][i] / best['other'][i]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
