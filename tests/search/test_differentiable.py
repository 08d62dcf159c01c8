"""The differentiable DOSA-style model (search.models.differentiable): gradcheck in
float64, its access counts against the analytical model's on hand-picked valid mappings,
and the minimal hardware being realizable and fitting."""

import dataclasses

import pytest
import torch

import cost
from hw.config import HardwareConfig
from hw.layer import Layer
from hw.mapping import Mapping, default_mapping
from search.models.differentiable import (COUNT_KEYS, layer_cost, layer_counts, mapping_tensors,
                                          minimal_hardware, order_index, stack_cost, stack_layers,
                                          stack_memory_kb)
from search.space import DIMS, MEM_KB

CONV = Layer.conv("conv", n=1, k=32, c=16, p=8, q=8, r=3, s=3, padding=1)
FC = Layer.gemm("fc", m=16, k=64, n=32)
STRIDED = Layer.conv("s2", n=2, k=16, c=8, p=4, q=4, r=1, s=1, stride=2)
HW = HardwareConfig()


def _cases():
    yield CONV, default_mapping(HW, CONV)
    yield CONV, Mapping.for_layer(CONV, spad={"P": 4, "Q": 2, "C": 2}, array={"C": 8, "K": 16},
                                  order=("K", "C", "R", "S", "N", "P", "Q"))
    yield CONV, Mapping.for_layer(CONV, spad={"R": 3}, array={"C": 16, "K": 8},
                                  order=("N", "C", "P", "Q", "R", "S", "K"))
    yield FC, Mapping.for_layer(FC, spad={"P": 4, "K": 2}, array={"C": 16, "K": 16},
                                order=("C", "N", "K", "P", "Q", "R", "S"))
    yield STRIDED, Mapping.for_layer(STRIDED, spad={"N": 2, "P": 2}, array={"C": 8, "K": 8},
                                     order=("P", "K", "C", "N", "Q", "R", "S"))


@pytest.mark.parametrize("layer, m", list(_cases()))
def test_counts_equal_the_analytical_model(layer, m):
    assert m.check(HW, layer)
    r = cost.evaluate(HW, m, layer)
    F, s, a = mapping_tensors(m)
    c = layer_counts(layer, F, s, a, m.order, HW.dim)
    for k in COUNT_KEYS:
        assert float(c[k]) == pytest.approx(r.counts[k], rel=1e-12, abs=1e-9), k
    e, _, _ = layer_cost(layer, F, s, a, m.order, HW.dim, HW.sp_kb, HW.acc_kb)
    assert float(e) == pytest.approx(r.energy_pj, rel=1e-9)


def test_a_stack_of_layers_equals_each_layer_and_the_analytical_model():
    """The batched model on all five cases at once (three layers, five DRAM orders, a
    grouped-free strided conv): row l is case l's counts, energy and memory."""
    cases = list(_cases())
    layers, maps = [c[0] for c in cases], [c[1] for c in cases]
    F, s, a = (torch.stack(t) for t in zip(*(mapping_tensors(m) for m in maps)))
    e, c, counts = stack_cost(stack_layers(layers), F, s, a, order_index([m.order for m in maps]), HW.dim,
                              HW.sp_kb, HW.acc_kb)
    sp, acc = stack_memory_kb(stack_layers(layers), s, a, HW.dim)
    assert e.shape == c.shape == sp.shape == (len(cases),)
    for i, (layer, m) in enumerate(cases):
        r = cost.evaluate(HW, m, layer)
        for k in COUNT_KEYS:
            assert float(counts[k][i]) == pytest.approx(r.counts[k], rel=1e-12, abs=1e-9), (i, k)
        assert float(e[i]) == pytest.approx(r.energy_pj, rel=1e-9)
        e1, c1, _ = layer_cost(layer, F[i], s[i], a[i], m.order, HW.dim, HW.sp_kb, HW.acc_kb)
        assert (float(e1), float(c1)) == (float(e[i]), float(c[i]))
        assert float(sp[i]) * 1024 / HW.dim == pytest.approx(sum(
            b * n for b, n in zip(m.buffers[:2], _rows(layer, m)[:2])))
        assert float(acc[i]) * 1024 / (4 * HW.dim) == pytest.approx(m.buffers[2] * _rows(layer, m)[2])


def _rows(layer, m):
    from hw.layer import LOOPS
    from hw.mapping import footprint_rows
    t = m.tiles()
    return footprint_rows(HW.dim, layer.stride, *(t[lp] for lp in LOOPS))


def test_gradcheck_float64():
    m = Mapping.for_layer(CONV, spad={"P": 4, "Q": 2, "C": 2}, array={"C": 8, "K": 16},
                          order=("K", "C", "R", "S", "N", "P", "Q"))
    F0, s0, a0 = mapping_tensors(m)
    g = torch.Generator().manual_seed(0)
    # log-factors away from the straight-through switch points
    x = (torch.log(torch.cat([s0, a0])) + 0.1 + 0.2 * torch.rand(14, generator=g, dtype=torch.float64))
    x.requires_grad_(True)
    dims = torch.tensor([CONV.dims[lp] for lp in ("N", "K", "C", "P", "Q", "R", "S")], dtype=torch.float64)

    def f(x):
        s, a = torch.exp(x[:7]), torch.exp(x[7:])
        F = dims / (s * a)
        e, c, _ = layer_cost(CONV, F, s, a, m.order, 16.0, torch.exp(x[0]) * 64, torch.exp(x[1]) * 32,
                             straight=False)
        return torch.stack([torch.log(e), torch.log(c)])

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradcheck_float64_of_a_stack():
    """The batched model's gradient (DOSA's loss on two layers with different DRAM orders)
    against finite differences."""
    cases = list(_cases())[2:4]
    layers, maps = [c[0] for c in cases], [c[1] for c in cases]
    F0, s0, a0 = (torch.stack(t) for t in zip(*(mapping_tensors(m) for m in maps)))
    g = torch.Generator().manual_seed(1)
    x = torch.log(torch.cat([s0, a0], 1)) + 0.1 + 0.2 * torch.rand(2, 14, generator=g, dtype=torch.float64)
    x.requires_grad_(True)
    D = F0 * s0 * a0
    stack, order = stack_layers(layers), order_index([m.order for m in maps])

    def f(x):
        s, a = torch.exp(x[:, :7]), torch.exp(x[:, 7:])
        e, c, _ = stack_cost(stack, D / (s * a), s, a, order, 16.0, torch.exp(x[0, 0]) * 64,
                             torch.exp(x[1, 1]) * 32, straight=False)
        return torch.stack([torch.log(e.sum()), torch.log(c.sum())])

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_minimal_hardware_is_realizable_and_fits():
    layers = [CONV, FC, STRIDED]
    ms = [m for _, m in list(_cases())[:1]] + [list(_cases())[3][1], list(_cases())[4][1]]
    hw = minimal_hardware(layers, ms)
    assert hw.dim in DIMS and hw.sp_kb in MEM_KB and hw.acc_kb in MEM_KB
    assert all(m.check(hw, lay) for lay, m in zip(layers, ms))
    # minimal: one step smaller in either memory no longer fits some mapping
    for field in ("sp_kb", "acc_kb"):
        i = MEM_KB.index(getattr(hw, field))
        if i:
            smaller = dataclasses.replace(hw, **{field: MEM_KB[i - 1]})
            assert not all(m.check(smaller, lay) for lay, m in zip(layers, ms))
    assert minimal_hardware(layers, ms, array_dim=max(DIMS)).dim == max(DIMS)
