#!/usr/bin/env python3
"""The DOSA-style baseline (`search.optimizers.dosa`) on one workload, with the analytical
model as the evaluator: its best network EDP, design and wall time.

    python scripts/bench_dosa.py [--workload bert] [--seed 0] [--starts 7] [--steps 1490]
                                 [--lr LR] [--round-every K] [--json out.json]

The options not named keep `DosaOptions`' defaults (lr 0.2, rounding every 500 steps,
48 samples). Prints one JSON object: the workload's unique-layer count, the wall time, the
best network EDP (pJ x cycles), its design, the number of distinct rounded points, and
the seconds spent in the descent and in the rounding.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="bert", help="workload name or file (default bert)")
    ap.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    ap.add_argument("--starts", type=int, default=7, help="gradient-descent starts (default 7)")
    ap.add_argument("--steps", type=int, default=1490, help="Adam steps per start (default 1490)")
    ap.add_argument("--lr", type=float, default=None, help="Adam learning rate (default DosaOptions')")
    ap.add_argument("--round-every", type=int, default=None, help="steps between roundings (default DosaOptions')")
    ap.add_argument("--json", help="also write the result to this file")
    a = ap.parse_args(argv)

    from search.evaluators import AnalyticalEvaluator
    from search.optimizers.dosa import DosaOptions, run_dosa
    from search.workloads import get_workload, unique_layers
    try:
        layers = unique_layers(get_workload(a.workload))
        kw = {k: v for k, v in (("lr", a.lr), ("round_every", a.round_every)) if v is not None}
        opts = DosaOptions(seed=a.seed, starts=a.starts, steps=a.steps, **kw)
    except (ValueError, KeyError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    res = run_dosa(layers, opts, AnalyticalEvaluator())
    b = res.best
    out = {"workload": a.workload, "options": opts.to_dict(), "layers": len(layers),
           "wall_s": round(time.perf_counter() - t0, 1),
           "descent_s": round(res.timings["descent"], 2), "rounding_s": round(res.timings["rounding"], 2),
           "best_edp": b.objective if b else None, "hw": b.hw.to_dict() if b else None,
           "candidates": (res.info or {}).get("candidates")}
    print(json.dumps(out, default=str))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
