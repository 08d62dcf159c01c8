"""Write the default mapping of one layer as a Mapping JSON file, to edit and pass back
with ``--mapping FILE`` to ``python -m sim.run`` or ``python -m cost.run``.

    python examples/default_mapping.py --dim 8 --conv 1 32 32 14 14 3 3 --stride 2 --pad 1 > m.json

Takes the hardware and layer options of ``sim.run`` (`hw.cli`); prints the JSON of
`hw.mapping.default_mapping` (one line per level) on stdout and the tiles and scratchpad
/ accumulator use on stderr. What the fields mean: the module docstring of hw/mapping.py;
an edited example is ``examples/mapping_conv_d8.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.cli import (  # noqa: E402
    OneLineParser, UsageError, add_config_arguments, add_layer_arguments, config_from_args, layer_from_args,
    print_error, run_main,
)
from hw.config import ConfigError  # noqa: E402
from hw.layer import LayerError  # noqa: E402
from hw.mapping import MappingError, default_mapping  # noqa: E402


def mapping_text(mapping) -> str:
    """Mapping JSON with one line per level (what `Mapping.from_json` reads)."""
    d = mapping.to_dict()
    levels = ",\n".join(f'    "{lv}": {json.dumps(f)}' for lv, f in d["factors"].items())
    rest = "".join(f',\n  "{k}": {json.dumps(v)}' for k, v in d.items() if k != "factors")
    return '{\n  "factors": {\n' + levels + "\n  }" + rest + "\n}"


def main(argv=None) -> int:
    p = OneLineParser(prog="python examples/default_mapping.py", description=__doc__.split("\n\n")[0])
    add_config_arguments(p)
    add_layer_arguments(p)
    try:
        args = p.parse_args(argv)
    except UsageError as e:
        return print_error(e, see_help=True)
    try:
        hw, layer = config_from_args(args), layer_from_args(args)
        m = default_mapping(hw, layer)
    except (ConfigError, LayerError, MappingError) as e:
        return print_error(e)
    fp = m.footprint(hw, layer)
    print(mapping_text(m))
    print(f"{layer}\ntiles {m.tiles()}\nscratchpad rows {fp.sp_rows_needed:,} of {hw.sp_rows:,}, "
          f"accumulator rows {fp.acc_rows_needed:,} of {hw.acc_rows:,}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
