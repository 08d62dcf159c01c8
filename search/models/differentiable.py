"""A differentiable (torch, float64) model of one layer's access counts, energy and
latency for a mapping, on the minimal hardware the mapping implies (issue 16, the DOSA
baseline's model; `search.optimizers.dosa`).

Inputs: per loop of ``LOOPS = (N, K, C, P, Q, R, S)`` the DRAM, spad and array factors
``F``, ``s``, ``a`` (float64 tensors (7,), real-valued: the optimiser relaxes them), the
DRAM loop order (fixed, a permutation of LOOPS) and the array dimension ``dim``. The
``stack_*`` functions take a whole network at once (a `LayerStack` and (L, 7) factors,
one row per layer: one tensor operation per term instead of one per layer and term); the
``layer_*`` ones are the same functions on one layer.

Access counts (the analytical model's closed form, `cost.kernel`, term by term)
------------------------------------------------------------------------------
Tile extents ``T = s * a``; ``cb = ceil(T_C / dim)``, ``kb = ceil(T_K / dim)``;
``in_h = (T_P - 1) stride + T_R``, ``in_w = (T_Q - 1) stride + T_S``; ``M = T_N T_P T_Q``;
``in_rows = T_N in_h in_w cb``, ``w_rows = T_R T_S kb T_C``, ``o_rows = M kb``
(`hw.mapping.footprint_rows`); ``a_rows = kb T_R T_S cb M`` (A rows streamed per step).
The DRAM loops, the group loop (G) outermost and then ``order``, give the position
products ``cum[i] = G prod(F at positions <= i)``; ``steps = cum[7]``. With ``L_X`` the
innermost position whose factor is > 1 among the group loop and the loops indexing X
(input: N C P Q R S; weight: K C R S; output: N K P Q): ``n_X = cum[L_X]`` (1 if none);
``visits = n_output``, ``distinct = G F_N F_K F_P F_Q``, ``spills = visits - distinct``:

    macs               = layer.macs
    dram_bytes_read    = n_in T_N in_h in_w T_C + n_w T_R T_S T_C T_K + 4 spills M T_K
    dram_bytes_written = e_out distinct M T_K + 4 spills M T_K     (e_out = 4 for int32 out)
    sp_writes          = n_in in_rows + n_w w_rows
    sp_reads           = steps (a_rows + w_rows)
    acc_writes         = steps a_rows + spills o_rows
    acc_reads          = steps a_rows - distinct kb M + visits o_rows
    weight_loads       = steps w_rows

The relaxation: ``ceil`` is a straight-through ceiling (the value ceil(x), the gradient
of x; ``straight=False`` gives ceil's own zero gradient, which `torch.autograd.gradcheck`
checks against finite differences), and which factors are "> 1" (the choice of L_X) is read from the current values
(> 1 + 1e-9) without gradient; so at integer factors every count equals
`cost.evaluate`'s exactly and between the switch points the model is smooth.

Energy (`cost.energy`, the one source of the coefficients: the `EnergyTable` fields)
    E = macs mac_pj + weight_loads dim weight_reg_pj
        + (sp_reads + sp_writes) dim (sp_pj_slope sp_kb + sp_pj_base)
        + (acc_reads + acc_writes) dim (acc_pj_slope acc_kb / dim + acc_pj_base)
        + (dram_bytes_read + dram_bytes_written) dram_pj_per_byte

Latency: DOSA's roofline form, the maximum over the levels of accesses / bandwidth and
of the compute cycles (NOT the analytical model's per-step schedule, `cost.model`):

    cycles = max(macs / (a_C a_K),                               compute, used PEs
                 (dram_bytes_read + dram_bytes_written) / hw.dram_bytes_per_cycle,
                 sp_reads + sp_writes,                           one scratchpad row / cycle
                 acc_reads + acc_writes)                         one accumulator row / cycle

Minimal hardware (`minimal_hardware`): dim = the smallest realizable array dimension
(`search.space.DIMS`) >= the largest array factor of C and K over the layers (or a fixed
one); sp_kb, acc_kb = the smallest realizable sizes (`search.space.MEM_KB`) whose rows
(`HardwareConfig.sp_rows`, ``acc_rows``) hold the largest buffered tile footprints
(`hw.mapping.rows_needed`). `continuous_memory_kb` is its differentiable counterpart
(the exact KB the largest footprint needs, no snapping) used by the optimiser's energy.
"""

from __future__ import annotations

import dataclasses

import torch

from cost.energy import DEFAULT_TABLE, EnergyTable
from hw.config import HardwareConfig
from hw.layer import LOOPS, Layer
from hw.mapping import DEFAULT_BUFFERS, Mapping, footprint_rows, rows_needed

__all__ = ["COUNT_KEYS", "LayerStack", "continuous_memory_kb", "layer_counts", "layer_cost", "minimal_hardware",
           "order_index", "stack_cost", "stack_counts", "stack_layers", "stack_memory_kb"]

COUNT_KEYS = ("sp_reads", "sp_writes", "acc_reads", "acc_writes", "dram_bytes_read", "dram_bytes_written",
              "macs", "weight_loads")
_N, _K, _C, _P, _Q, _R, _S = range(7)
_INDEXES = {"input": (_N, _C, _P, _Q, _R, _S), "weight": (_K, _C, _R, _S), "output": (_N, _K, _P, _Q)}


def _ceil_st(x: torch.Tensor, straight: bool = True) -> torch.Tensor:
    """ceil(x) in value; the identity's gradient (``straight``) or ceil's own (zero)."""
    return x + (torch.ceil(x) - x).detach() if straight else torch.ceil(x)


@dataclasses.dataclass(frozen=True)
class LayerStack:
    """The per-layer constants of the batched model, float64 tensors (L,): groups,
    stride, MACs (`stack_layers`)."""

    groups: torch.Tensor
    stride: torch.Tensor
    macs: torch.Tensor

    def __len__(self) -> int:
        return int(self.groups.shape[0])


def stack_layers(layers) -> LayerStack:
    """`LayerStack` of ``layers`` (a `Layer` or a sequence of them)."""
    layers = [layers] if isinstance(layers, Layer) else list(layers)
    t = lambda v: torch.tensor(v, dtype=torch.float64)   # noqa: E731
    return LayerStack(t([float(L.groups) for L in layers]), t([float(L.stride) for L in layers]),
                      t([float(L.macs) for L in layers]))


def order_index(orders) -> torch.Tensor:
    """(L, 7) long tensor of DRAM loop orders (names or LOOPS indices, outermost first)."""
    return torch.tensor([[LOOPS.index(o) if isinstance(o, str) else int(o) for o in order] for order in orders],
                        dtype=torch.long)


#: per operand: which LOOPS index it (`_INDEXES`), as a (7,) bool table
_MEMBER = {op: torch.tensor([i in ix for i in range(7)]) for op, ix in _INDEXES.items()}


def stack_counts(stack: LayerStack, F: torch.Tensor, s: torch.Tensor, a: torch.Tensor, order: torch.Tensor, dim,
                 *, out: str = "int32", straight: bool = True) -> dict:
    """The counters (`COUNT_KEYS`) of one occurrence of each layer of ``stack``, float64
    tensors (L,) (module docstring). ``F``, ``s``, ``a``: the DRAM, spad and array
    factors (L, 7); ``order``: `order_index` (L, 7); ``straight`` False: the block counts
    use ceil's true (zero) gradient instead of straight-through."""
    T = s * a
    G, st = stack.groups, stack.stride
    d = torch.as_tensor(dim, dtype=torch.float64)
    cb, kb = _ceil_st(T[:, _C] / d, straight), _ceil_st(T[:, _K] / d, straight)
    in_h = (T[:, _P] - 1) * st + T[:, _R]
    in_w = (T[:, _Q] - 1) * st + T[:, _S]
    M = T[:, _N] * T[:, _P] * T[:, _Q]
    in_rows = T[:, _N] * in_h * in_w * cb
    w_rows = T[:, _R] * T[:, _S] * kb * T[:, _C]
    o_rows = M * kb
    a_rows = kb * T[:, _R] * T[:, _S] * cb * M
    Fo = F.gather(1, order)                                    # the DRAM factors in loop order
    cum = torch.cumprod(torch.cat([G[:, None], Fo], 1), 1)     # (L, 8): G, G F_o0, G F_o0 F_o1, ...
    steps = cum[:, -1]
    big = torch.cat([(G > 1)[:, None], Fo.detach() > 1 + 1e-9], 1)
    positions = torch.arange(8)
    one = torch.ones_like(G)

    def loads(op):
        member = torch.cat([torch.ones(len(G), 1, dtype=torch.bool), _MEMBER[op][order]], 1)
        last = torch.where(big & member, positions, -1).amax(1)
        return torch.where(last >= 0, cum.gather(1, last.clamp_min(0)[:, None])[:, 0], one)

    n_in, n_w, visits = loads("input"), loads("weight"), loads("output")
    distinct = G * F[:, _N] * F[:, _K] * F[:, _P] * F[:, _Q]
    spills = visits - distinct
    e_out = 4.0 if out == "int32" else 1.0
    o_elems = M * T[:, _K]
    return {
        "macs": stack.macs * one,
        "dram_bytes_read": n_in * T[:, _N] * in_h * in_w * T[:, _C] + n_w * T[:, _R] * T[:, _S] * T[:, _C] * T[:, _K]
        + spills * o_elems * 4,
        "dram_bytes_written": distinct * o_elems * e_out + spills * o_elems * 4,
        "sp_writes": n_in * in_rows + n_w * w_rows,
        "sp_reads": steps * (a_rows + w_rows),
        "acc_writes": steps * a_rows + spills * o_rows,
        "acc_reads": steps * a_rows - distinct * kb * M + visits * o_rows,
        "weight_loads": steps * w_rows,
    }


def stack_cost(stack: LayerStack, F, s, a, order, dim, sp_kb, acc_kb, *, hw: HardwareConfig | None = None,
               table: EnergyTable = DEFAULT_TABLE, out: str = "int32", straight: bool = True) -> tuple:
    """(energy_pj, cycles, counts), tensors (L,), of one occurrence of each layer of
    ``stack`` (module docstring; arguments as `stack_counts`); ``dim``, ``sp_kb``,
    ``acc_kb`` may be tensors (gradients flow through them); ``hw`` supplies
    ``dram_bytes_per_cycle`` (default `HardwareConfig()`)."""
    c = stack_counts(stack, F, s, a, order, dim, out=out, straight=straight)
    d = torch.as_tensor(dim, dtype=torch.float64)
    sp = torch.as_tensor(sp_kb, dtype=torch.float64)
    acc = torch.as_tensor(acc_kb, dtype=torch.float64)
    energy = (c["macs"] * table.mac_pj + c["weight_loads"] * d * table.weight_reg_pj
              + (c["sp_reads"] + c["sp_writes"]) * d * (table.sp_pj_slope * sp + table.sp_pj_base)
              + (c["acc_reads"] + c["acc_writes"]) * d * (table.acc_pj_slope * acc / d + table.acc_pj_base)
              + (c["dram_bytes_read"] + c["dram_bytes_written"]) * table.dram_pj_per_byte)
    bpc = float((hw or HardwareConfig()).dram_bytes_per_cycle)
    cycles = torch.stack([c["macs"] / (a[:, _C] * a[:, _K]),
                          (c["dram_bytes_read"] + c["dram_bytes_written"]) / bpc,
                          c["sp_reads"] + c["sp_writes"], c["acc_reads"] + c["acc_writes"]]).amax(0)
    return energy, cycles, c


def stack_memory_kb(stack: LayerStack, s, a, dim, buffers=DEFAULT_BUFFERS) -> tuple:
    """(sp_kb, acc_kb), float64 tensors (L,): the exact KB each layer's buffered tile
    needs at ``dim`` (``sp_rows x dim / 1024``, ``acc_rows x 4 dim / 1024``), no snapping."""
    T = s * a
    d = torch.as_tensor(dim, dtype=torch.float64)
    cb, kb = _ceil_st(T[:, _C] / d), _ceil_st(T[:, _K] / d)
    st = stack.stride
    i = T[:, _N] * ((T[:, _P] - 1) * st + T[:, _R]) * ((T[:, _Q] - 1) * st + T[:, _S]) * cb
    w = T[:, _R] * T[:, _S] * kb * T[:, _C]
    o = T[:, _N] * T[:, _P] * T[:, _Q] * kb
    sp_rows = buffers[0] * i + buffers[1] * w
    acc_rows = buffers[2] * o
    return sp_rows * d / 1024.0, acc_rows * 4 * d / 1024.0


def layer_counts(layer: Layer, F: torch.Tensor, s: torch.Tensor, a: torch.Tensor, order, dim,
                 *, out: str = "int32", straight: bool = True) -> dict:
    """`stack_counts` of one layer: ``F``, ``s``, ``a`` (7,), ``order`` the DRAM loop names
    (or LOOPS indices), outermost first; the counters as scalar tensors."""
    c = stack_counts(stack_layers(layer), F[None], s[None], a[None], order_index([order]), dim,
                     out=out, straight=straight)
    return {k: v[0] for k, v in c.items()}


def layer_cost(layer: Layer, F, s, a, order, dim, sp_kb, acc_kb, *, hw: HardwareConfig | None = None,
               table: EnergyTable = DEFAULT_TABLE, out: str = "int32", straight: bool = True) -> tuple:
    """`stack_cost` of one layer (arguments as `layer_counts`): scalar tensors."""
    e, c, counts = stack_cost(stack_layers(layer), F[None], s[None], a[None], order_index([order]), dim, sp_kb,
                              acc_kb, hw=hw, table=table, out=out, straight=straight)
    return e[0], c[0], {k: v[0] for k, v in counts.items()}


def continuous_memory_kb(layer: Layer, s, a, dim, buffers=DEFAULT_BUFFERS) -> tuple:
    """`stack_memory_kb` of one layer: scalar tensors."""
    sp, acc = stack_memory_kb(stack_layers(layer), s[None], a[None], dim, buffers)
    return sp[0], acc[0]


def minimal_hardware(layers, mappings, *, base: HardwareConfig | None = None,
                     array_dim: int | None = None) -> HardwareConfig | None:
    """The smallest realizable `HardwareConfig` (module docstring) every ``mappings[l]``
    fits on (`Mapping.check` passes); None when no realizable size holds one of them."""
    from search.space import DIMS, MEM_KB

    base = base or HardwareConfig()
    need = max(max(m.factors_dict()["array"]["C"], m.factors_dict()["array"]["K"]) for m in mappings)
    if array_dim is not None:
        if need > array_dim:
            return None
        dim = array_dim
    else:
        dim = next((d for d in DIMS if d >= need), None)
        if dim is None:
            return None
    sp_need = acc_need = 0
    for layer, m in zip(layers, mappings):
        t = m.tiles()
        rows = rows_needed(*footprint_rows(dim, layer.stride, *(t[lp] for lp in LOOPS)), *m.buffers)
        sp_need, acc_need = max(sp_need, rows[0]), max(acc_need, rows[1])
    sp = next((k for k in MEM_KB if k * 1024 // dim >= sp_need), None)
    acc = next((k for k in MEM_KB if k * 1024 // (4 * dim) >= acc_need), None)
    if sp is None or acc is None:
        return None
    hw = dataclasses.replace(base, dim=dim, sp_kb=sp, acc_kb=acc)
    for layer, m in zip(layers, mappings):
        if not m.check(hw, layer):
            return None
    return hw


def mapping_tensors(m: Mapping) -> tuple:
    """(F, s, a) float64 tensors (7,) of a `Mapping`'s factors."""
    f, _ = m.to_arrays()
    t = torch.as_tensor(f, dtype=torch.float64)
    return t[0], t[1], t[2]
