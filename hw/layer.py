"""Workload vocabulary: one convolution (or GEMM) layer.

`Layer` is a frozen dataclass shared by both evaluators (RTL and analytical) and the
search. It is pure data: the RTL generator (hw/top.py and the units) never imports it.

Dimensions (the usual Timeloop/Gemmini names)
    n        batch
    k        output channels (total, over all groups)
    c        input channels (total, over all groups)
    p, q     output height, width
    r, s     kernel height, width
    stride   the same in both directions (1..MAX_STRIDE = 16)
    padding  the same on all four sides (0 .. min(r, s) - 1)
    groups   channel groups (1 = ordinary conv; groups = c = k is depthwise)
    count    how many times this layer occurs in its network (for network totals)

Input size. The input height and width are *derived*, not stored:

    h = (p - 1) * stride + r - 2 * padding,   w = (q - 1) * stride + s - 2 * padding

i.e. the smallest input that produces p x q outputs. This can be one smaller than the
"nominal" input of a network: ResNet-50's conv1 (224 x 224 input, 7 x 7, stride 2,
padding 3, 112 x 112 output) gives h = w = 223, because the last input row/column is
never read by any output. MACs, weights and outputs do not depend on this choice; the
input footprint is the one the hardware actually has to read. `Layer.conv` accepts
either the output size (p, q) or the nominal input size (h, w) and derives p, q with
the usual formula ``p = (h + 2*padding - r) // stride + 1``.

GEMM. ``Layer.gemm(name, m, k, n)`` describes C[M x N] = A[M x K] @ B[K x N] as a
1 x 1 convolution with batch 1::

    GEMM M  (rows of A and C)        -> layer p   (output pixels), q = 1
    GEMM K  (reduction)              -> layer c   (input channels)
    GEMM N  (columns of B and C)     -> layer k   (output channels)
    n = 1, r = s = 1, stride 1, padding 0, groups 1

Beware the clash of names: the GEMM's K is the layer's *c*, and the layer's *k* is the
GEMM's N. ``Layer.gemm_shape`` returns (M, K, N) back for a GEMM-shaped layer.

Size limits (checked here, once, for every tool: the CLIs, workload files, imported
models, the search). They keep every count of the analytical model inside int64 and
every command's work bounded; a layer outside them is a one-line `LayerError`:

    each of n, k, c, p, q, r, s      1 .. MAX_DIM = 1,048,576 (2**20)
    stride                           1 .. MAX_STRIDE = 16
    count                            1 .. MAX_COUNT = 1,073,741,824 (2**30)
    MACs of one occurrence           at most MAX_MACS = 1,125,899,906,842,624 (2**50, about 1.1e15)

and a workload (`check_workload`): at most MAX_WORKLOAD_LAYERS = 100,000 entries (before
equal shapes merge) and MAX_WORKLOAD_MACS = 2**60 (about 1.2e18) MACs in all (count x
MACs summed). The RTL simulation has a tighter bound, its DRAM (`sim.run`).

Grouped convolutions. ``dims`` gives the seven loop bounds of ONE group
(K = k // groups, C = c // groups); mappings tile one group and the group loop is an
implicit outermost loop. ``macs``, ``weight_elems`` etc. are totals over all groups.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass

__all__ = ["LOOPS", "Layer", "LayerError", "MAX_DIM", "MAX_STRIDE", "MAX_COUNT", "MAX_MACS",
           "MAX_WORKLOAD_LAYERS", "MAX_WORKLOAD_MACS", "check_workload"]

LOOPS = ("N", "K", "C", "P", "Q", "R", "S")

#: Largest value of each loop bound n, k, c, p, q, r, s of a layer (2**20).
MAX_DIM = 1 << 20
#: Largest stride.
MAX_STRIDE = 16
#: Largest repeat count of one layer in its network (2**30).
MAX_COUNT = 1 << 30
#: Most multiply-accumulates of one occurrence of a layer (2**50, about 1.1e15).
MAX_MACS = 1 << 50
#: Most entries of one workload (its layer list before equal shapes merge).
MAX_WORKLOAD_LAYERS = 100_000
#: Most MACs of one workload in all (sum of count x MACs; 2**60, about 1.2e18).
MAX_WORKLOAD_MACS = 1 << 60

_INT_FIELDS = ("n", "k", "c", "p", "q", "r", "s", "stride", "padding", "groups", "count")


class LayerError(ValueError):
    """A layer's parameters are invalid (one-line message)."""


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


@dataclass(frozen=True)
class Layer:
    """One convolution layer (see the module docstring for names and conventions)."""

    name: str
    n: int
    k: int
    c: int
    p: int
    q: int
    r: int
    s: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    count: int = 1

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise LayerError(f"Layer.name must be a non-empty string; got {self.name!r}")
        tag = f"Layer {self.name!r}"
        for f in _INT_FIELDS:
            v = getattr(self, f)
            if not _is_int(v):
                raise LayerError(f"{tag}: {f} must be an integer; got {v!r}")
            object.__setattr__(self, f, int(v))  # numpy integers -> int (JSON, hashing)
        for f in ("n", "k", "c", "p", "q", "r", "s"):
            v = getattr(self, f)
            if v < 1:
                raise LayerError(f"{tag}: {f} must be an integer >= 1; got {v}")
            if v > MAX_DIM:
                raise LayerError(f"{tag}: {f} must be an integer from 1 to {MAX_DIM:,} (2**20); got {v:,}")
        if not 1 <= self.stride <= MAX_STRIDE:
            raise LayerError(f"{tag}: stride must be an integer from 1 to {MAX_STRIDE}; got {self.stride}")
        pad_max = min(self.r, self.s) - 1
        if not 0 <= self.padding <= pad_max:
            raise LayerError(
                f"{tag}: padding must be an integer from 0 to min(r, s) - 1 = {pad_max}; got {self.padding}")
        if self.groups < 1:
            raise LayerError(f"{tag}: groups must be an integer >= 1; got {self.groups}")
        if self.c % self.groups or self.k % self.groups:
            raise LayerError(
                f"{tag}: groups must divide both c ({self.c}) and k ({self.k}); got {self.groups}")
        if self.count < 1:
            raise LayerError(f"{tag}: count must be an integer >= 1; got {self.count}")
        if self.count > MAX_COUNT:
            raise LayerError(f"{tag}: count must be an integer from 1 to {MAX_COUNT:,} (2**30); got {self.count:,}")
        if self.macs > MAX_MACS:
            raise LayerError(f"{tag}: {self.macs:,} MACs, more than the limit of {MAX_MACS:,} (2**50) "
                             "for one layer")
        for axis, o, kk, size in (("h", "p", "r", self.h), ("w", "q", "s", self.w)):
            if size < 1:
                raise LayerError(
                    f"{tag}: input {axis} = ({o} - 1) * stride + {kk} - 2 * padding must be >= 1; got {size}")
            last = (getattr(self, o) - 1) * self.stride - self.padding
            if last >= size:
                raise LayerError(
                    f"{tag}: the last output along {axis} starts at input {last}, outside the input {axis} = {size}")

    # ---- derived sizes ------------------------------------------------------------
    @property
    def h(self) -> int:
        """Input height: the smallest one consistent with p (see module docstring)."""
        return (self.p - 1) * self.stride + self.r - 2 * self.padding

    @property
    def w(self) -> int:
        """Input width: the smallest one consistent with q."""
        return (self.q - 1) * self.stride + self.s - 2 * self.padding

    @property
    def c_per_group(self) -> int:
        return self.c // self.groups

    @property
    def k_per_group(self) -> int:
        return self.k // self.groups

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one occurrence (all groups)."""
        return self.n * self.k * self.p * self.q * self.c_per_group * self.r * self.s

    @property
    def total_macs(self) -> int:
        """macs * count: this layer's share of its network."""
        return self.macs * self.count

    @property
    def input_elems(self) -> int:
        return self.n * self.c * self.h * self.w

    @property
    def weight_elems(self) -> int:
        return self.k * self.c_per_group * self.r * self.s

    @property
    def output_elems(self) -> int:
        return self.n * self.k * self.p * self.q

    @property
    def dims(self) -> dict[str, int]:
        """The seven loop bounds of ONE group, keyed by hw.mapping.LOOPS."""
        return {"N": self.n, "K": self.k_per_group, "C": self.c_per_group,
                "P": self.p, "Q": self.q, "R": self.r, "S": self.s}

    @property
    def is_gemm(self) -> bool:
        """True when the layer is a plain GEMM (what `Layer.gemm` builds)."""
        return (self.r == 1 and self.s == 1 and self.stride == 1 and self.padding == 0
                and self.q == 1 and self.n == 1 and self.groups == 1)

    @property
    def gemm_shape(self) -> tuple[int, int, int]:
        """(M, K, N) of a GEMM-shaped layer: (p, c, k). LayerError if not `is_gemm`."""
        if not self.is_gemm:
            raise LayerError(f"Layer {self.name!r} is not a GEMM (needs r=s=1, stride 1, padding 0, q=1, n=1, groups=1)")
        return (self.p, self.c, self.k)

    def shape(self) -> tuple:
        """Everything but name and count: equal shapes cost the same."""
        return (self.n, self.k, self.c, self.p, self.q, self.r, self.s,
                self.stride, self.padding, self.groups)

    # ---- constructors -------------------------------------------------------------
    @classmethod
    def gemm(cls, name: str, m: int, k: int, n: int, count: int = 1) -> Layer:
        """GEMM C[m x n] = A[m x k] @ B[k x n] as a 1x1 conv: p=m, q=1, c=k, k=n, batch 1."""
        return cls(name=name, n=1, k=n, c=k, p=m, q=1, r=1, s=1, count=count)

    @classmethod
    def conv(cls, name: str, *, k: int, c: int, r: int, s: int | None = None,
             p: int | None = None, q: int | None = None,
             h: int | None = None, w: int | None = None,
             n: int = 1, stride: int = 1, padding: int = 0, groups: int = 1,
             count: int = 1) -> Layer:
        """Convolution from keyword arguments.

        Give the output size (p, and optionally q; default q = p) or the nominal input
        size (h, and optionally w; default w = h), not both for the same axis; s
        defaults to r. From h: p = (h + 2*padding - r) // stride + 1.
        """
        s = r if s is None else s
        if p is not None and h is not None:
            raise LayerError(f"Layer {name!r}: give p or h, not both")
        if q is not None and w is not None:
            raise LayerError(f"Layer {name!r}: give q or w, not both")
        if p is None and h is None:
            raise LayerError(f"Layer {name!r}: give the output height p or the input height h")
        if h is not None:
            p = cls._out_size(name, "h", h, r, stride, padding)
        if q is None and w is None:
            if h is not None:
                w = h
            else:
                q = p
        if w is not None:
            q = cls._out_size(name, "w", w, s, stride, padding)
        return cls(name=name, n=n, k=k, c=c, p=p, q=q, r=r, s=s, stride=stride,
                   padding=padding, groups=groups, count=count)

    @staticmethod
    def _out_size(name, axis, size, ker, stride, padding) -> int:
        for f, v in ((axis, size), ("kernel", ker), ("stride", stride), ("padding", padding)):
            if not _is_int(v):
                raise LayerError(f"Layer {name!r}: {f} must be an integer; got {v!r}")
        if stride < 1:
            raise LayerError(f"Layer {name!r}: stride must be an integer from 1 to {MAX_STRIDE}; got {stride}")
        span = size + 2 * padding - ker
        if span < 0:
            raise LayerError(
                f"Layer {name!r}: input {axis} = {size} with padding {padding} is smaller than the kernel ({ker})")
        return span // stride + 1

    # ---- serialisation ------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Layer:
        if not isinstance(d, dict):
            raise LayerError(f"Layer.from_dict needs a dict; got {type(d).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise LayerError(f"unknown Layer field(s) {unknown}; allowed: {fields}")
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [f for f in required if f not in d]
        if missing:
            raise LayerError(f"missing Layer field(s) {missing}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> Layer:
        return cls.from_dict(json.loads(s))

    def __str__(self) -> str:
        extra = []
        if self.stride != 1:
            extra.append(f"stride {self.stride}")
        if self.padding:
            extra.append(f"pad {self.padding}")
        if self.groups != 1:
            extra.append(f"groups {self.groups}")
        if self.count != 1:
            extra.append(f"x{self.count}")
        tail = (", " + ", ".join(extra)) if extra else ""
        return (f"{self.name}: N{self.n} K{self.k} C{self.c} P{self.p} Q{self.q} "
                f"R{self.r} S{self.s}{tail}")


def check_workload(layers, where: str = "the workload") -> None:
    """LayerError (one line, starting with ``where``) when ``layers`` (a list of `Layer`)
    has more than MAX_WORKLOAD_LAYERS entries or more than MAX_WORKLOAD_MACS MACs in all
    (count x MACs summed); see the module docstring."""
    if len(layers) > MAX_WORKLOAD_LAYERS:
        raise LayerError(f"{where} has {len(layers):,} layers, more than the limit of {MAX_WORKLOAD_LAYERS:,}")
    total = sum(layer.total_macs for layer in layers)
    if total > MAX_WORKLOAD_MACS:
        raise LayerError(f"{where} has {total:,} MACs in all (count x MACs), more than the limit of "
                         f"{MAX_WORKLOAD_MACS:,} (2**60)")
