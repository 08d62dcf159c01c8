"""One fit rule, four paths: on random (hardware, mapping, layer) triples, the vectorised
rule `hw.mapping.check_arrays`, `Mapping.check` (a batch of one), `MappingSpace.fits_arrays`
and the analytical kernel's compiled copy (`cost.model.evaluate_arrays`) agree on
feasibility and on the reason code; and the kernel's hardware columns are HardwareConfig's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cost import kernel
from cost.model import evaluate_arrays
from hw.config import EXEC_SLOTS, HW_FIELDS, HardwareConfig
from hw.layer import LOOPS, Layer
from hw.mapping import LEVELS, REASONS, Mapping, check_arrays, default_mapping
from search.space import DIMS, MEM_KB, UNIT_DIMS, MappingSpace

N_LAYERS = 50
PER_LAYER = 2048          # 50 x 2048 = 102,400 triples
HW_PER_LAYER = 16
_IC, _IK = LOOPS.index("C"), LOOPS.index("K")


def _random_layer(rng, i: int) -> Layer:
    r = int(rng.choice([1, 1, 3, 5]))
    s = int(rng.choice([r, 1]))
    groups = int(rng.choice([1, 1, 1, 2, 4]))
    return Layer(name=f"l{i}", n=int(rng.choice([1, 1, 2])), k=groups * int(rng.choice([4, 12, 16, 48, 64, 96])),
                 c=groups * int(rng.choice([3, 8, 16, 32, 40, 64])), p=int(rng.integers(1, 30)),
                 q=int(rng.integers(1, 30)), r=r, s=s, stride=int(rng.choice([1, 1, 2])),
                 padding=int(rng.integers(0, min(r, s))), groups=groups)


def _perturb(rng, f: np.ndarray, o: np.ndarray, dim: np.ndarray) -> None:
    """Break a quarter of the rows in place, one way each, so that every code occurs."""
    b = len(f)
    kind = rng.integers(0, 8, b)
    rows = np.arange(b)
    lv, lp = rng.integers(0, 3, b), rng.integers(0, 7, b)
    sel = kind == 0                                          # a factor doubled: product != bound
    f[rows[sel], lv[sel], lp[sel]] *= 2
    sel = kind == 1                                          # a factor 0 or negative
    f[rows[sel], lv[sel], lp[sel]] = rng.integers(-2, 1, sel.sum())
    sel = np.flatnonzero(kind == 2)                          # the order repeats a loop
    o[sel, rng.integers(0, 7, len(sel))] = o[sel, 0]
    o[sel, 1] = o[sel, 0]
    sel = np.flatnonzero(kind == 3)                          # a loop other than C, K on the array
    other = rng.choice([i for i in range(7) if i not in (_IC, _IK)], len(sel))
    f[sel, 2, other] *= f[sel, 0, other]
    f[sel, 0, other] = 1
    sel = np.flatnonzero(kind == 4)                          # the whole C or K bound on the array
    ck = rng.choice([_IC, _IK], len(sel))
    f[sel, 2, ck] *= f[sel, 0, ck] * f[sel, 1, ck]
    f[sel, 0, ck] = f[sel, 1, ck] = 1
    sel = np.flatnonzero(kind == 5)                          # the whole layer in one tile
    f[sel, 1, :] *= f[sel, 0, :]
    f[sel, 0, :] = 1
    # kinds 6, 7: left as drawn (mostly fitting or over capacity)


def _triples(seed: int):
    rng = np.random.default_rng(seed)
    for i in range(N_LAYERS):
        layer = _random_layer(rng, i)
        # HW_PER_LAYER random configurations per layer (800 in all), one per sample at random
        pick = rng.integers(0, HW_PER_LAYER, PER_LAYER)
        dim = np.asarray(DIMS)[rng.integers(0, len(DIMS), HW_PER_LAYER)][pick]
        sp = np.asarray(MEM_KB)[rng.integers(0, len(MEM_KB), HW_PER_LAYER)][pick]
        acc = np.asarray(MEM_KB)[rng.integers(0, len(MEM_KB), HW_PER_LAYER)][pick]
        # mappings drawn on the largest array, so array factors up to 32 meet smaller arrays
        f, o = MappingSpace(HardwareConfig(dim=32), layer).from_unit_arrays(rng.random((PER_LAYER, UNIT_DIMS)))
        f, o = f.copy(), o.copy()
        _perturb(rng, f, o, dim)
        # buffer counts: 1 or 2 per operand, and a few invalid ones (0, 3)
        bufs = rng.choice([1, 2], size=(PER_LAYER, 3))
        bad = rng.random(PER_LAYER) < 0.02
        bufs[bad, rng.integers(0, 3, bad.sum())] = rng.choice([0, 3], bad.sum())
        yield layer, dim, sp, acc, f, o, bufs


def test_every_path_gives_the_same_reason_code():
    base = HardwareConfig()
    seen = np.zeros(len(REASONS), dtype=np.int64)
    total = 0
    for layer, dim, sp, acc, f, o, bufs in _triples(seed=2026):
        dims = [layer.dims[lp] for lp in LOOPS]
        hws = [dataclasses.replace(base, dim=int(d), sp_kb=int(s), acc_kb=int(a)) for d, s, a in zip(dim, sp, acc)]
        sp_rows = np.array([h.sp_rows for h in hws])
        acc_rows = np.array([h.acc_rows for h in hws])
        # 1. the vectorised rule, every hardware configuration at once
        want = check_arrays(dims, layer.stride, f, o, dim, sp_rows, acc_rows, bufs)
        # 2. the analytical kernel's compiled copy
        got = evaluate_arrays(layer, {"dim": dim, "sp_kb": sp, "acc_kb": acc}, f, o, bufs)
        np.testing.assert_array_equal(got["reason"], want)
        np.testing.assert_array_equal(got["feasible"], want == 0)
        # 3. Mapping.check, one mapping at a time (its code, its wording agrees with REASONS' kind)
        for j in range(len(f)):
            m = Mapping(factors={lv: dict(zip(LOOPS, f[j, i].tolist())) for i, lv in enumerate(LEVELS)},
                        order=tuple(LOOPS[k] for k in o[j].tolist()), buffers=tuple(bufs[j].tolist()))
            c = m.check(hws[j], layer)
            assert (c.code, bool(c)) == (int(want[j]), want[j] == 0), (j, c, m)
        # 4. MappingSpace.fits_arrays (the fit rule ignores the order), per array size
        for d in np.unique(dim).tolist():
            for s_kb, a_kb in {(int(s), int(a)) for s, a in zip(sp[dim == d], acc[dim == d])}:
                sel = (dim == d) & (sp == s_kb) & (acc == a_kb)
                ms = MappingSpace(dataclasses.replace(base, dim=d, sp_kb=s_kb, acc_kb=a_kb), layer)
                no_order = check_arrays(dims, layer.stride, f[sel], None, d, ms.hw.sp_rows, ms.hw.acc_rows, bufs[sel])
                np.testing.assert_array_equal(ms.fits_arrays(f[sel], bufs[sel]), no_order == 0)
        seen += np.bincount(want, minlength=len(REASONS))
        total += len(f)
    assert total >= 100_000
    # every rule was exercised, and fitting mappings are a real share
    assert (seen >= 100).all(), dict(enumerate(seen.tolist()))


def test_kernel_hardware_columns_are_hardware_config_fields():
    """The kernel reads hardware columns by position: the compiled positions (from the
    on-disk cache too) must be those of HardwareConfig's fields, and EX_SLOTS the RTL's."""
    positions, slots = kernel.compiled_hw_fields()
    assert [HW_FIELDS[i] for i in positions.tolist()] == list(kernel.KERNEL_HW_FIELDS)
    assert HW_FIELDS == tuple(f.name for f in dataclasses.fields(HardwareConfig))
    assert slots == EXEC_SLOTS
    from hw.controllers import SLOTS
    assert SLOTS == EXEC_SLOTS


@pytest.mark.parametrize("field", ["dram_latency", "dram_bytes_per_cycle", "dma_max_inflight", "sp_kb"])
def test_each_kernel_column_changes_the_result_of_its_field(field):
    """Changing one field changes the kernel's answer the way that field should: a
    behavioural check that the column read is the field (not a neighbour)."""
    layer = Layer(name="c", n=1, k=64, c=64, p=14, q=14, r=3, s=3, padding=1)
    hw = HardwareConfig(dim=16, sp_kb=64, acc_kb=32, dram_latency=40, dram_bytes_per_cycle=4,
                        dma_max_inflight=4)
    f, o = default_mapping(hw, layer).to_arrays()   # fills the 64 KB scratchpad
    base = evaluate_arrays(layer, hw, f, o)
    worse = {"dram_latency": 400, "dram_bytes_per_cycle": 1, "dma_max_inflight": 1, "sp_kb": 8}[field]
    other = evaluate_arrays(layer, dataclasses.replace(hw, **{field: worse}), f, o)
    if field == "sp_kb":   # the same tile no longer fits an 8 KB scratchpad
        assert base["feasible"][0] and other["reason"][0] == 4
    else:
        assert other["cycles"][0] > base["cycles"][0]
