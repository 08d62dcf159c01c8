"""Evaluate one layer, or a whole workload, with the analytical model from the command line.

    python -m cost.run --dim 16 --sp-kb 256 --acc-kb 64 \\
        (--gemm M K N | --conv N K C P Q R S [--stride T] [--pad X] [--groups G] | --workload NAME|FILE) \\
        [--mapping FILE.json | auto | best [--samples N] [--objective edp|cycles|energy]] \\
        [--out int32|int8] [--energy FILE.json|.yaml] [--json]

The command line is `python -m sim.run`'s (both are built from `hw.cli`), plus --workload
and --energy, so one command line runs on either evaluator: the RTL-only options (--seed,
--harness, --timeout, --trace, --save) are accepted and ignored, and --relu / --shift do
not change the analytical cost (--out does: int8 outputs write a quarter of the bytes).

One layer: prints sim.run's summary of the `Result` (`hw.cli.summary_text`; fidelity
"analytical"), then the energy in pJ with its breakdown by component
(`cost.energy.energy_breakdown`), the area in mm^2 and the energy-delay product
(pJ x cycles). --json prints one JSON object: ``Result.to_dict()`` plus ``edp`` and
``energy_breakdown``.

--workload NAME|FILE (a name of `search.workloads` or a workload file): every distinct
layer shape once, with its repeat count and `default_mapping` (or, with --mapping best,
each layer's best-of-N mapping); prints one row per layer
(name, count, cycles, utilisation, energy, EDP) and the network totals of
`cost.network_edp` (count-weighted sums of energy and cycles, EDP = the product of the
sums, and the layerwise sum of count x energy x cycles). --json prints
``{"layers": [...], "total": {...}}``; each layer entry is the single-layer object plus
``name``, ``count``, ``layer`` and ``mapping``.

--energy FILE overrides entries of `cost.energy.EnergyTable` (JSON or YAML object,
field -> value; `EnergyTable.from_file`), e.g. ``examples/energy_lpddr4.yaml``.

--mapping best: the best of --samples (default 4096) mappings of the constrained
software space and `default_mapping` by the analytical model's --objective (default
edp): `search.software.best_mapping`, about 0.1 s per layer.

Bad input is an error even where it would change nothing here, so that one command line
means the same on either evaluator: --relu / --shift with --out int32, --stride / --pad /
--groups with --gemm or --workload, an RTL option out of its range (--seed, --timeout,
--trace's name). Sizes are `hw.layer`'s limits. Run as a command, a first run whose
Numba kernel is not cached yet says "compiling the analytical model ..." on stderr
(``main(argv)`` from Python: only with ``notices=True``), and a workload of more than a
thousand distinct layers shows a progress bar.

Exit status: 0 when everything is feasible; 1 when a result is infeasible, printed with
its reason (a mapping that does not fit, a mapping file that cannot be read or is not a
mapping, a hardware configuration that is invalid or on which no mapping fits); 2 for
bad arguments, with one ``error:`` line on stderr.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from hw.cli import (
    ANALYTICAL_COMPILE_NOTICE,
    OneLineParser,
    parse_or_exit_status,
    add_config_arguments,
    add_layer_arguments,
    add_mapping_argument,
    check_mapping_options,
    add_output_arguments,
    add_rtl_arguments,
    config_from_args,
    conv_options_given,
    first_line,
    layer_from_args,
    mapping_from_args,
    output_from_args,
    print_error,
    read_small_text,
    rtl_options_from_args,
    run_main,
    slow_notice,
    summary_text,
)
from hw.config import ConfigError
from hw.layer import Layer, LayerError
from hw.mapping import Mapping, MappingError, default_mapping
from hw.result import Result

from .energy import DEFAULT_TABLE, EnergyError, EnergyTable, energy_breakdown
from .evaluate import evaluate, network_edp

__all__ = ["main"]


def _parser() -> OneLineParser:
    """sim.run's options (from `hw.cli`, worded for the analytical model), plus --workload
    (in the required --gemm | --conv group) and --energy."""
    p = OneLineParser(prog="python -m cost.run", description=__doc__.split("\n\n")[0])
    add_config_arguments(p)
    add_layer_arguments(p, workload_help="every distinct layer of a search.workloads network (resnet50, bert, ...) "
                                         "or workload file, with default_mapping, and the network totals")
    add_mapping_argument(p, workload=True)
    add_output_arguments(p, analytical=True,
                         json_help="print one JSON object: the Result plus edp and energy_breakdown "
                                   "(with --workload: {layers, total})")
    add_rtl_arguments(p, analytical=True)
    p.add_argument("--energy", type=Path, metavar="FILE",
                   help="JSON/YAML file overriding EnergyTable entries (field -> pJ or mm^2 value)")
    return p


# ---- one layer ------------------------------------------------------------------------------
def _breakdown(r: Result, hw, table: EnergyTable) -> dict | None:
    if not r.feasible:
        return None
    parts = energy_breakdown(r.counts, hw.dim, hw.sp_kb, hw.acc_kb, table)
    return {k: float(v) for k, v in parts.items()}


def _record(r: Result, breakdown: dict | None) -> dict:
    """The JSON object of one result: Result.to_dict() plus edp and energy_breakdown."""
    return {**r.to_dict(), "edp": r.edp, "energy_breakdown": breakdown}


def _evaluate_layer(hw, layer: Layer, mapping: Mapping | None, args, table: EnergyTable) -> Result:
    try:
        return evaluate(hw, mapping, layer, out=args.out, table=table)
    except (MappingError, ValueError) as e:  # a mapping check() passes but the model rejects
        return Result.infeasible(first_line(e), "analytical")


def _text(hw, layer: Layer, mapping: Mapping | None, r: Result, breakdown: dict | None) -> str:
    if hw is None or mapping is None:  # no configuration or no mapping: nothing to summarise
        lines = [f"layer    {layer}"] + ([f"hardware {hw.to_json()}"] if hw is not None else [])
        return "\n".join(lines + [f"INFEASIBLE: {r.reason}"])
    text = summary_text(hw, layer, mapping, r)
    if not r.feasible:
        return text
    e = r.energy_pj
    parts = "  ".join(f"{k} {v:,.1f} ({100 * v / e:.1f}%)" if e else f"{k} {v:,.1f}"
                      for k, v in breakdown.items())
    return "\n".join([
        text,
        f"energy   {e:,.1f} pJ ({e / 1e6:.4g} uJ)",
        f"         {parts} pJ",
        f"area     {r.area_mm2:.4f} mm^2   EDP {r.edp:.4e} pJ x cycles   fidelity {r.fidelity}",
    ])


def _run_layer(args, layer: Layer, hw, table: EnergyTable) -> int:
    mapping = None
    try:
        mapping = mapping_from_args(args, hw, layer)
    except MappingError as e:  # unreadable file, not a mapping, or no mapping fits (auto)
        reason = first_line(e)
        if args.mapping != "auto" and not reason.startswith(("cannot read mapping file", "mapping file ")):
            reason = f"mapping file {args.mapping}: {reason}"
        r = Result.infeasible(reason, "analytical")
    except ValueError as e:     # json.JSONDecodeError
        r = Result.infeasible(f"mapping file {args.mapping} is not valid JSON: {first_line(e)}", "analytical")
    else:
        r = _evaluate_layer(hw, layer, mapping, args, table)
    if r.feasible and not math.isfinite(r.edp):
        return print_error(ValueError(f"--energy {args.energy}: the energy of layer {layer.name!r} overflows "
                                      "(inf): the table's values are too large"))
    breakdown = _breakdown(r, hw, table)
    print(json.dumps(_record(r, breakdown), sort_keys=True) if args.json
          else _text(hw, layer, mapping, r, breakdown))
    return 0 if r.feasible else 1


# ---- a workload -----------------------------------------------------------------------------
def _finite_or_none(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     .rstrip() for row in rows)


def _run_workload(args, layers: list[Layer], hw, table: EnergyTable, notices: bool) -> int:
    from tqdm import tqdm

    entries, results = [], []
    for layer in tqdm(layers, unit="layer", disable=not notices or len(layers) <= 1000, file=sys.stderr,
                      dynamic_ncols=True, leave=False):
        mapping = None
        try:
            mapping = mapping_from_args(args, hw, layer)   # auto or best (checked in main)
        except MappingError as e:
            r = Result.infeasible(first_line(e), "analytical")
        else:
            r = _evaluate_layer(hw, layer, mapping, args, table)
        results.append(r)
        entries.append({"name": layer.name, "count": layer.count, "layer": layer.to_dict(),
                        "mapping": mapping.to_dict() if mapping is not None else None,
                        **_record(r, _breakdown(r, hw, table))})
    total = network_edp(results, layers)
    if any(r.feasible and not math.isfinite(r.edp) for r in results):
        return print_error(ValueError(f"--energy {args.energy}: the energy of the workload overflows (inf): "
                                      "the table's values are too large"))
    if args.json:
        doc = {"layers": entries, "total": {k: _finite_or_none(v) for k, v in total.to_dict().items()}}
        print(json.dumps(doc, sort_keys=True))
        return 0 if total.feasible else 1

    rows = [["layer", "count", "cycles", "util", "energy uJ", "EDP pJ*cyc"]]
    for layer, r in zip(layers, results):
        if r.feasible:
            rows.append([layer.name, str(layer.count), f"{r.cycles:,}", f"{r.utilisation:.3f}",
                         f"{r.energy_pj / 1e6:,.3f}", f"{r.edp:.3e}"])
        else:
            rows.append([layer.name, str(layer.count), "-", "-", "-", "infeasible"])
    lines = [f"workload {args.workload}: {sum(lay.count for lay in layers)} layers, {len(layers)} distinct",
             f"hardware {hw.to_json()}" if hw is not None else "hardware (invalid)",
             "", _table(rows), ""]
    if total.feasible:
        lines += [
            f"total    energy {total.energy_pj / 1e6:,.3f} uJ   cycles {total.cycles:,.0f}   (each layer x count)",
            f"EDP      {total.edp:.4e} pJ x cycles (total energy x total cycles)",
            f"         {total.edp_layerwise:.4e} pJ x cycles layerwise (sum of count x energy x cycles)",
        ]
    else:
        bad = [(layer, r) for layer, r in zip(layers, results) if not r.feasible]
        lines.append(f"INFEASIBLE: {len(bad)} of {len(layers)} layers; no network totals")
        lines += [f"  {layer.name}: {r.reason}" for layer, r in bad]
    print("\n".join(lines))
    return 0 if total.feasible else 1


# ---- entry point ----------------------------------------------------------------------------
def _energy_table(path: Path) -> EnergyTable:
    try:
        read_small_text(path)       # bounded: a huge or endless file is refused before parsing
    except ValueError as e:
        raise EnergyError(f"cannot read energy table {str(path)!r}: {first_line(e)}") from None
    except OSError:
        pass                        # EnergyTable.from_file says why
    return EnergyTable.from_file(path)


def main(argv: list[str] | None = None, *, notices: bool | None = None) -> int:
    """``python -m cost.run ...``; returns the exit status (bad arguments: 2, never raises).

    ``notices``: say on stderr when a slow phase runs (the Numba kernel compiling, a
    progress bar for a large workload); default: when run as a command (``argv`` None)."""
    notices = argv is None if notices is None else notices
    args, status = parse_or_exit_status(_parser(), argv)
    if args is None:
        return status
    from search.workload_file import WorkloadError
    from search.workloads import get_workload, unique_layers

    try:
        output_from_args(args)       # --shift's range, --relu / --shift need --out int8
        check_mapping_options(args)  # --samples / --objective need --mapping best
        rtl_options_from_args(args)  # the RTL-only options are ignored here, but must be valid
        if args.workload is not None:
            if args.mapping not in ("auto", "best"):
                raise ValueError("--mapping FILE maps one layer; --workload takes auto or best for each")
            if args.name is not None:
                raise ValueError("--name names one layer; --workload takes the workload's names")
            given = conv_options_given(args)
            if given:
                raise ValueError(f"{' and '.join(given)} {'shapes' if len(given) == 1 else 'shape'} one --conv "
                                 "layer; --workload takes each layer's own")
            layers = unique_layers(get_workload(args.workload))
        else:
            layer = layer_from_args(args)
        table = _energy_table(args.energy) if args.energy is not None else DEFAULT_TABLE
    except (LayerError, EnergyError, WorkloadError, ValueError) as e:
        return print_error(e)
    try:
        hw = config_from_args(args)
    except ConfigError as e:  # bad input, as in sim.run: one line, exit 2
        return print_error(e)
    from cost.model import warm_up

    with slow_notice(ANALYTICAL_COMPILE_NOTICE, enabled=notices):
        warm_up()
    import numpy as np

    with np.errstate(over="ignore", invalid="ignore"):   # an overflowing energy table: one error line below
        if args.workload is not None:
            return _run_workload(args, layers, hw, table, notices)
        return _run_layer(args, layer, hw, table)


if __name__ == "__main__":
    run_main(main)
