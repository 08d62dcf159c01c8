"""User workload files: a JSON or YAML list of layers, read into `hw.layer.Layer`s.

A workload file is a list with one object per layer::

    # my_net.yaml
    - {name: conv1, k: 64, c: 3, h: 224, r: 7, stride: 2, pad: 3}
    - name: block.conv
      n: 1
      k: 64
      c: 64
      p: 56          # output size; q defaults to p
      r: 3           # kernel; s defaults to r
      pad: 1
      count: 3       # this shape occurs three times in the network
    - {name: fc, gemm: {m: 1, k: 2048, n: 1000}}

Keys (the names of `Layer`, with ``pad`` for its ``padding``)
    name                   required, unique in the file
    k, c, r                required: output channels, input channels, kernel height
    p | h                  required: output height p, or nominal input height h
    q | w                  optional: output width (default p) or input width (default h)
    s                      optional: kernel width (default r)
    n, stride, pad, groups, count    optional: defaults 1, 1, 0, 1, 1
    padding                accepted as an alias of pad (not both)
    gemm: {m, k, n}        instead of the conv keys: ``Layer.gemm(name, m, k, n)``;
                           only name and count may accompany it

The meaning of every key and the allowed ranges are `Layer`'s (hw/layer.py, with its size
limits); ``h``/``w`` give the output size with ``p = (h + 2*pad - r) // stride + 1`` as
in `Layer.conv`. A file holds at most `hw.layer.MAX_WORKLOAD_LAYERS` layers and
`MAX_FILE_BYTES` (16 MB); it is read with that bound, so a huge file is refused first.

Format: ``.json`` files are read as JSON, anything else (``.yaml``, ``.yml``) as YAML
(PyYAML, imported only then). Every problem raises `WorkloadError`, a `ValueError`
with a one-line message naming the file, the line where the offending layer starts,
the layer (numbered from 1, with its name) and what is wrong, e.g.::

    my_net.yaml:5: layer 2 'block.conv': padding must be an integer from 0 to min(r, s) - 1 = 2; got 3

`dumps_workload` writes layers back as JSON with the canonical keys (``name, n, k, c,
p, q, r, s, stride, pad, groups, count``), one layer a line, which this module reads
back to equal layers; `write_workload_file` writes such a file, as YAML (one flow
mapping a line, after optional ``#`` comment lines) or, for ``.json``, as JSON.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from hw.cli import read_small_text
from hw.layer import MAX_DIM, MAX_WORKLOAD_LAYERS, Layer, LayerError

__all__ = [
    "FILE_SUFFIXES",
    "MAX_FILE_BYTES",
    "RECORD_KEYS",
    "WorkloadError",
    "dumps_workload",
    "layer_record",
    "load_workload_file",
    "write_workload_file",
]

FILE_SUFFIXES = (".json", ".yaml", ".yml")

#: Largest workload file read (16 MB: about 100,000 layers of one line each).
MAX_FILE_BYTES = 16 << 20

# What `layer_record` writes, in this order.
RECORD_KEYS = ("name", "n", "k", "c", "p", "q", "r", "s", "stride", "pad", "groups", "count")
# What a file may use.
_ALLOWED_KEYS = RECORD_KEYS + ("padding", "h", "w", "gemm")
_CONV_REQUIRED = ("name", "k", "c", "r")
_GEMM_KEYS = ("m", "k", "n")
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


class WorkloadError(ValueError):
    """A workload name, file or argument is invalid (one-line message)."""


# ---- one layer ----------------------------------------------------------------------
def _keys(keys) -> str:
    return ", ".join(repr(k) for k in keys)


def _layer_from_record(rec) -> Layer:
    """One file object -> Layer; LayerError with a one-line message otherwise."""
    if not isinstance(rec, dict):
        raise LayerError(f"a layer must be an object of keys and values; got {type(rec).__name__} {rec!r}")
    unknown = [key for key in rec if key not in _ALLOWED_KEYS]
    if unknown:
        raise LayerError(f"unknown key(s) {_keys(unknown)}; allowed: {', '.join(_ALLOWED_KEYS)}")
    if "name" not in rec:
        raise LayerError("missing key 'name'")
    if "pad" in rec and "padding" in rec:
        raise LayerError("give pad or padding (an alias), not both")

    if "gemm" in rec:
        extra = [key for key in rec if key not in ("name", "gemm", "count")]
        if extra:
            raise LayerError(f"a gemm layer takes only name, gemm and count; got also {_keys(extra)}")
        g = rec["gemm"]
        if not isinstance(g, dict):
            raise LayerError(f"gemm must be an object with keys m, k, n; got {g!r}")
        bad = [key for key in g if key not in _GEMM_KEYS]
        if bad:
            raise LayerError(f"gemm: unknown key(s) {_keys(bad)}; allowed: m, k, n")
        missing = [key for key in _GEMM_KEYS if key not in g]
        if missing:
            raise LayerError(f"gemm: missing key(s) {_keys(missing)}")
        for key in _GEMM_KEYS:
            v = g[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise LayerError(f"gemm.{key} must be an integer >= 1; got {v!r}")
            if v > MAX_DIM:
                raise LayerError(f"gemm.{key} must be an integer from 1 to {MAX_DIM:,} (2**20); got {v:,}")
        return Layer.gemm(rec["name"], m=g["m"], k=g["k"], n=g["n"], count=rec.get("count", 1))

    missing = [key for key in _CONV_REQUIRED if key not in rec]
    if "p" not in rec and "h" not in rec:
        missing.append("p (or h)")
    if missing:
        raise LayerError(f"missing key(s) {', '.join(missing)}; a conv layer needs name, k, c, r and p (or h)")
    kwargs = {("padding" if key == "pad" else key): v for key, v in rec.items()}
    return Layer.conv(**kwargs)


def layer_record(layer: Layer) -> dict:
    """A Layer as a file object with the canonical keys `RECORD_KEYS` (``pad``, not ``padding``)."""
    d = layer.to_dict()
    d["pad"] = d.pop("padding")
    return {key: d[key] for key in RECORD_KEYS}


def dumps_workload(layers) -> str:
    """Layers as a JSON list, one object a line, readable by `load_workload_file`."""
    rows = [json.dumps(layer_record(layer)) for layer in layers]
    if not rows:
        return "[]"
    return "[\n  " + ",\n  ".join(rows) + "\n]"


def write_workload_file(path: str | os.PathLike, layers, comment: list[str] | None = None) -> None:
    """Write ``layers`` to ``path``: JSON (`dumps_workload`) for ``.json``, else YAML with
    the ``comment`` lines first; `load_workload_file` reads it back to equal layers.
    Raises `WorkloadError` (one line) when the file cannot be written."""
    where = os.fspath(path)
    if where.lower().endswith(".json"):
        text = dumps_workload(layers) + "\n"
    else:
        lines = [f"# {line}" for text in (comment or []) for line in text.splitlines()]
        for layer in layers:
            rec = layer_record(layer)
            fields = ", ".join(f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in rec.items())
            lines.append(f"- {{{fields}}}")
        text = "\n".join(lines) + "\n"
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise WorkloadError(f"{where}: cannot write the workload file: {e.strerror or e}") from None


# ---- parsing with line numbers ------------------------------------------------------
def _parse_json(text: str, where: str) -> tuple[object, list[int]]:
    """(data, the 1-based start line of each top-level list element)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkloadError(f"{where}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(data, list):
        return data, []
    # The text is valid JSON with a list at the top: walk its elements with
    # raw_decode, counting newlines up to where each element starts.
    decoder = json.JSONDecoder()
    lines: list[int] = []
    line, counted = 1, 0
    i = _JSON_SPACE.match(text, 0).end() + 1            # just past the opening '['
    while True:
        i = _JSON_SPACE.match(text, i).end()
        if text[i] == "]":
            return data, lines
        line += text.count("\n", counted, i)
        counted = i
        lines.append(line)
        _, i = decoder.raw_decode(text, i)
        i = _JSON_SPACE.match(text, i).end()
        if text[i] == ",":
            i += 1


def _parse_yaml(text: str, where: str) -> tuple[object, list[int]]:
    """(data, the 1-based start line of each top-level sequence item), via node marks."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is installed where the tests run
        raise WorkloadError(f"{where}: reading YAML needs PyYAML (pip install pyyaml)") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "1"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise WorkloadError(f"{where}:{line}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    if isinstance(node, yaml.SequenceNode):
        return data, [item.start_mark.line + 1 for item in node.value]
    return data, []


def load_workload_file(path: str | os.PathLike) -> list[Layer]:
    """The layers of a JSON or YAML workload file (see the module docstring).

    Raises `WorkloadError` (one line: file, line, layer, problem) for a file that
    cannot be read or parsed, a top level that is not a non-empty list, an unknown or
    missing key, a value `Layer` rejects, or a repeated layer name.
    """
    where = os.fspath(path)
    try:
        text = read_small_text(path, MAX_FILE_BYTES)
    except OSError as e:
        raise WorkloadError(f"{where}: cannot read the workload file: {e.strerror or e}") from None
    except ValueError as e:  # too large, not UTF-8
        raise WorkloadError(f"{where}: cannot read the workload file: {e}") from None

    parse = _parse_json if where.lower().endswith(".json") else _parse_yaml
    data, lines = parse(text, where)
    if not isinstance(data, list):
        got = "an empty file" if data is None else type(data).__name__
        raise WorkloadError(f"{where}:1: expected a list of layer objects at the top level; got {got}")
    if not data:
        raise WorkloadError(f"{where}:1: the workload has no layers")
    if len(data) > MAX_WORKLOAD_LAYERS:
        raise WorkloadError(f"{where}:1: the workload has {len(data):,} layers, more than the limit of "
                            f"{MAX_WORKLOAD_LAYERS:,}")

    layers: list[Layer] = []
    first_line: dict[str, int] = {}
    for index, (rec, line) in enumerate(zip(data, lines), start=1):
        name = rec.get("name") if isinstance(rec, dict) else None
        tag = f"{where}:{line}: layer {index}" + (f" {name!r}" if isinstance(name, str) else "")
        try:
            layer = _layer_from_record(rec)
        except (LayerError, TypeError, ValueError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            msg = msg.removeprefix(f"Layer {name!r}: ")  # Layer's messages name the layer too
            raise WorkloadError(f"{tag}: {msg}") from None
        if layer.name in first_line:
            raise WorkloadError(
                f"{tag}: name {layer.name!r} is already used by the layer at line {first_line[layer.name]}")
        first_line[layer.name] = line
        layers.append(layer)
    return layers
