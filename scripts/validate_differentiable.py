#!/usr/bin/env python3
"""Rank correlation with the RTL of the DOSA-style differentiable model
(`search.models.differentiable.layer_cost`: exact access counts, energy from the
`cost.energy` coefficients, DOSA's roofline latency), next to the analytical model's
(`cost.evaluate`), on the committed RTL datasets (issue 16).

    python scripts/validate_differentiable.py [docs/datasets/rtl_seed0_n1280.parquet ...] [--json out.json]

Every feasible row (one verified simulation of a mapping of a layer on a design) is priced
by both models; printed: rows, and Spearman's rho of each model's cycles, energy and EDP
against the RTL's, over all rows and per workload. The energies share their coefficients
with the RTL's pricing (`cost.price`), so their agreement measures the access counts; the
cycles are where the roofline differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rows_of(paths) -> list[dict]:
    import pyarrow.parquet as pq

    out = []
    for p in paths:
        t = pq.read_table(p, columns=["workloads", "layer", "hw", "mapping", "feasible", "cycles", "energy_pj"])
        out += [r for r in t.to_pylist() if r["feasible"] and r["cycles"] and r["energy_pj"]]
    return out


def price(rows) -> dict:
    import numpy as np
    import torch

    import cost
    from hw.config import HardwareConfig
    from hw.layer import Layer
    from hw.mapping import Mapping
    from search.models.differentiable import layer_cost, mapping_tensors

    cols = {k: [] for k in ("workload", "rtl_cycles", "rtl_energy", "diff_cycles", "diff_energy", "ana_cycles",
                            "ana_energy")}
    with torch.no_grad():
        for r in rows:
            hw = HardwareConfig.from_dict(json.loads(r["hw"]))
            layer = Layer(**json.loads(r["layer"]))
            m = Mapping.from_dict(json.loads(r["mapping"]))
            F, s, a = mapping_tensors(m)
            e, c, _ = layer_cost(layer, F, s, a, m.order, hw.dim, hw.sp_kb, hw.acc_kb, hw=hw)
            ana = cost.evaluate(hw, m, layer)
            cols["workload"].append(r["workloads"])
            cols["rtl_cycles"].append(float(r["cycles"]))
            cols["rtl_energy"].append(float(r["energy_pj"]))
            cols["diff_cycles"].append(float(c))
            cols["diff_energy"].append(float(e))
            cols["ana_cycles"].append(float(ana.cycles) if ana.feasible else np.nan)
            cols["ana_energy"].append(float(ana.energy_pj) if ana.feasible else np.nan)
    return {k: np.asarray(v) for k, v in cols.items()}


def correlations(c: dict, mask) -> dict:
    import numpy as np
    from scipy.stats import spearmanr

    out = {"rows": int(mask.sum())}
    for model in ("diff", "ana"):
        for what in ("cycles", "energy", "edp"):
            if what == "edp":
                x = c[f"{model}_cycles"] * c[f"{model}_energy"]
                y = c["rtl_cycles"] * c["rtl_energy"]
            else:
                x, y = c[f"{model}_{what}"], c[f"rtl_{what}"]
            ok = mask & np.isfinite(x)
            out[f"{model}_{what}"] = float(spearmanr(x[ok], y[ok]).statistic) if ok.sum() > 2 else None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="*", help="RTL dataset Parquet files (default: docs/datasets/rtl_*.parquet)")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)
    import numpy as np

    paths = a.datasets or sorted(str(p) for p in (REPO / "docs" / "datasets").glob("rtl_*.parquet"))
    missing = [p for p in paths if not Path(p).is_file()]
    if missing or not paths:
        print(f"error: no dataset file {missing[0] if missing else 'docs/datasets/rtl_*.parquet'}", file=sys.stderr)
        return 2
    c = price(rows_of(paths))
    res = {"datasets": [Path(p).name for p in paths], "all": correlations(c, np.ones(len(c["workload"]), bool))}
    for w in sorted(set(c["workload"])):
        res[w] = correlations(c, c["workload"] == w)
    print(f"{'subset':<14} {'rows':>5}  {'differentiable: cycles energy EDP':>34}  {'analytical: cycles energy EDP':>30}")
    for k, v in res.items():
        if k == "datasets":
            continue
        f = lambda x: "   -  " if x is None else f"{x:6.3f}"  # noqa: E731
        print(f"{k:<14} {v['rows']:>5}  {f(v['diff_cycles']):>14} {f(v['diff_energy'])} {f(v['diff_edp'])}      "
              f"{f(v['ana_cycles'])} {f(v['ana_energy'])} {f(v['ana_edp'])}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
