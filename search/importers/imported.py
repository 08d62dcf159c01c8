"""What an import returns (`ImportedModel`), and the input shapes an import takes.

`ImportedModel.node_layers` are the MAC layers in graph order, one per node (a batched
matrix product is one layer whose ``count`` is its number of GEMMs); `ImportedModel.layers`
is the workload: equal shapes merged by `search.workloads.unique_layers`, first name,
counts summed. ``skipped`` lists every other node as (op type, nodes), most frequent first.

`Collector` builds one (unique layer names, skipped ops counted) inside one import call.

`parse_input_shape` reads ``"1,3,224,224"``; `check_input_shape` bounds a shape: every
dim from 1 to `MAX_INPUT_DIM`, at most `MAX_INPUT_ELEMS` elements in all.
`DynamicShapeError` (a `WorkloadError`) says that an input needs a shape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import prod

from hw.layer import Layer
from search.workload_file import WorkloadError
from search.workloads import total_macs, unique_layers

__all__ = ["MAX_INPUT_DIM", "MAX_INPUT_ELEMS", "DynamicShapeError", "ImportedModel", "check_input_shape",
           "parse_input_shape"]

#: The largest dim an input shape may have.
MAX_INPUT_DIM = 1_000_000
#: The most elements an input may have (2**31: a 2-GiB int8 tensor).
MAX_INPUT_ELEMS = 2**31


class DynamicShapeError(WorkloadError):
    """A model input has dynamic dimensions and no input shape was given. ``problem``
    says which (``input 'x' has dynamic dimension 0 ('batch')``), ``example`` is a shape
    to suggest (``1,128,768``: the static dims, 1 for the dynamic ones)."""

    def __init__(self, where: str, problem: str, example: str):
        super().__init__(f"{where}: {problem}; give the input's shape with --input-shape "
                         f"(e.g. --input-shape {example})")
        self.where, self.problem, self.example = where, problem, example


@dataclass(frozen=True)
class ImportedModel:
    """The MAC layers of an imported model and the nodes left out (module docstring)."""

    source: str
    node_layers: tuple[Layer, ...]
    skipped: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if not self.node_layers:
            raise WorkloadError(f"{self.source}: no MAC layers (convolutions or matrix products) in the model"
                                + (f"; its ops: {self.skipped_text()}" if self.skipped else ""))

    @property
    def layers(self) -> list[Layer]:
        """The workload: one layer per distinct shape with its repeat count."""
        return unique_layers(self.node_layers)

    @property
    def total_macs(self) -> int:
        return total_macs(self.node_layers)

    @property
    def skipped_nodes(self) -> int:
        return sum(n for _, n in self.skipped)

    def skipped_text(self) -> str:
        """``"Relu 49, Add 16, ..."`` (empty when nothing was skipped)."""
        return ", ".join(f"{op} {n}" for op, n in self.skipped)


class Collector:
    """The layers and skipped ops of one import under construction (local to one call):
    unique layer names, skipped ops counted by type."""

    def __init__(self, source: str):
        self.source = source
        self._layers: list[Layer] = []
        self._names: set[str] = set()
        self._skipped: Counter[str] = Counter()

    def name(self, wanted: str, fallback: str) -> str:
        """``wanted`` (or ``fallback`` when empty), made unique with a ``#2``, ``#3`` suffix."""
        base = wanted or fallback
        name, i = base, 1
        while name in self._names:
            i += 1
            name = f"{base}#{i}"
        self._names.add(name)
        return name

    def add(self, layers: Iterable[Layer]) -> None:
        self._layers.extend(layers)

    def skip(self, op: str) -> None:
        self._skipped[op] += 1

    def result(self) -> ImportedModel:
        skipped = tuple(sorted(self._skipped.items(), key=lambda item: (-item[1], item[0])))
        return ImportedModel(self.source, tuple(self._layers), skipped)


def check_input_shape(shape: Sequence[int], what: str) -> tuple[int, ...]:
    """``shape`` as a tuple of ints, each 1..MAX_INPUT_DIM, MAX_INPUT_ELEMS in all."""
    dims = tuple(shape)
    if not dims:
        raise WorkloadError(f"{what}: an input shape needs at least one dimension")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_INPUT_DIM:
            raise WorkloadError(f"{what}: every dimension must be an integer from 1 to {MAX_INPUT_DIM:,}; "
                                f"got {d!r} in {dims}")
    if prod(dims) > MAX_INPUT_ELEMS:
        raise WorkloadError(f"{what}: {prod(dims):,} elements is more than the limit of "
                            f"{MAX_INPUT_ELEMS:,} for one input")
    return dims


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` -> (1, 3, 224, 224), checked by `check_input_shape`."""
    what = f"--input-shape {text!r}"
    parts = [part.strip() for part in str(text).split(",")]
    try:
        dims = [int(part) for part in parts]
    except ValueError:
        raise WorkloadError(f"{what}: expected comma-separated integers such as 1,3,224,224") from None
    return check_input_shape(dims, what)
