"""search.features: Spotlight's feature transform (thesis Table 4.2, adapted), checked
feature by feature on hand-computed mappings, against an independent per-mapping
Python reimplementation (with the DRAM loads counted by walking the loop nest), and
for its shapes, names and one-line errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hw.config import HardwareConfig
from hw.layer import LOOPS, Layer
from hw.mapping import Mapping
from search.features import (HARDWARE_FEATURE_NAMES, SOFTWARE_FEATURE_NAMES, hardware_features,
                             software_features)
from search.space import DIMS, MEM_KB, MappingSpace

# A grouped, strided conv with a batch of 2: per group N2 K20 C6 P4 Q4 R3 S3 (h = w = 7).
CONV = Layer.conv("conv", n=2, k=40, c=12, r=3, p=4, stride=2, padding=1, groups=2)
# GEMM M64 x K48 x N40: P = 64, C = 48, K = 40.
GEMM = Layer.gemm("gemm", m=64, k=48, n=40)
HW8 = HardwareConfig(dim=8, sp_kb=16, acc_kb=8)      # sp_rows 16*1024/8 = 2048, acc_rows 8*1024/32 = 256
HW16 = HardwareConfig(dim=16, sp_kb=32, acc_kb=16)   # sp_rows 2048, acc_rows 16*1024/64 = 256

F = {n: i for i, n in enumerate(SOFTWARE_FEATURE_NAMES)}
H = {n: i for i, n in enumerate(HARDWARE_FEATURE_NAMES)}
lg = math.log2


def _arrays(mappings):
    fo = [m.to_arrays() for m in mappings]
    return (np.stack([f for f, _ in fo]), np.stack([o for _, o in fo]),
            np.array([m.buffers for m in mappings], dtype=np.int64))


def _features(hw, layer, mappings):
    return software_features(hw, layer, *_arrays(mappings))


# ---- names and shapes ---------------------------------------------------------------------
def test_names_and_shapes():
    assert len(SOFTWARE_FEATURE_NAMES) == len(set(SOFTWARE_FEATURE_NAMES)) == 20
    assert len(HARDWARE_FEATURE_NAMES) == len(set(HARDWARE_FEATURE_NAMES)) == 8
    ms = MappingSpace(HW8, CONV, version=2).sample(37, seed=0)
    x = _features(HW8, CONV, ms)
    assert x.shape == (37, len(SOFTWARE_FEATURE_NAMES)) and x.dtype == np.float64
    assert x.flags.c_contiguous and np.isfinite(x).all()
    h = hardware_features(np.array([4, 8, 32]), np.array([8, 16, 256]), np.array([256, 64, 8]))
    assert h.shape == (3, len(HARDWARE_FEATURE_NAMES)) and h.dtype == np.float64
    assert hardware_features(16, 64, 32).shape == (1, len(HARDWARE_FEATURE_NAMES))
    # scalars broadcast against arrays
    np.testing.assert_array_equal(hardware_features(16, np.array([64, 128]), 32),
                                  hardware_features(np.array([16, 16]), np.array([64, 128]), np.array([32, 32])))
    # an empty batch
    f, o, b = _arrays(ms)
    assert software_features(HW8, CONV, f[:0], o[:0], b[:0]).shape == (0, len(SOFTWARE_FEATURE_NAMES))
    # every module docstring row names a feature, and every feature has a row
    import search.features as mod
    for name in SOFTWARE_FEATURE_NAMES + HARDWARE_FEATURE_NAMES:
        assert f"\n{name} " in mod.__doc__, name


def test_buffers_none_and_broadcast():
    ms = MappingSpace(HW8, CONV).sample(20, seed=2)
    f, o, _ = _arrays(ms)
    full = software_features(HW8, CONV, f, o, np.full((20, 3), 2))
    np.testing.assert_array_equal(software_features(HW8, CONV, f, o, None), full)
    np.testing.assert_array_equal(software_features(HW8, CONV, f, o, [2, 2, 2]), full)
    one = software_features(HW8, CONV, f, o, (1, 2, 1))
    np.testing.assert_array_equal(one[:, F["buffers_input"]], 1.0)
    np.testing.assert_array_equal(one[:, F["buffers_output"]], 1.0)


# ---- hand-computed cases ----------------------------------------------------------------------
def test_conv_by_hand():
    m = Mapping.for_layer(CONV, spad={"K": 2, "C": 2, "P": 2, "Q": 4, "S": 3}, array={"K": 5, "C": 3},
                          order=("K", "N", "R", "P", "C", "Q", "S"), buffers=(1, 2, 2))
    assert m.check(HW8, CONV)
    # dram factors: N 2, K 20/10 = 2, C 6/6 = 1, P 4/2 = 2, Q 1, R 3, S 1; G = 2 groups
    # tiles T: N1 K10 C6 P2 Q4 R1 S3; array A_C = 3, A_K = 5; spad S_C = 2, S_K = 2
    # cb = ceil(6/8) = 1, kb = ceil(10/8) = 2, M = T_N*T_P*T_Q = 8
    x = _features(HW8, CONV, [m])[0]
    steps = 2 * (2 * 2 * 1 * 2 * 1 * 3 * 1)                  # G * prod(D) = 48
    blocks = steps * 2 * 1 * 1 * 3                           # x kb cb T_R T_S = 288
    # DRAM nest (positions): K2 N2 R3 P2 C1 Q1 S1, cumulative products 2 4 12 24 24 24 24.
    # input (N C P Q R S): innermost relevant loop with D > 1 is P (position 3) -> G * 24
    # weight (K C R S): R (position 2) -> G * 12; output (N K P Q): P (position 3) -> G * 24
    n_in, n_w, visits = 2 * 24, 2 * 12, 2 * 24
    distinct = 2 * 2 * 2 * 2 * 1                             # G * D_N D_K D_P D_Q = 16
    spills = visits - distinct                               # 32
    in_h, in_w = (2 - 1) * 2 + 1, (4 - 1) * 2 + 3            # 3, 9 (stride 2)
    in_bytes = n_in * (1 * in_h * in_w * 6)                  # 48 * 162 = 7776
    w_bytes = n_w * (1 * 3 * 6 * 10)                         # 24 * 180 = 4320
    ps_bytes = 8 * spills * (8 * 10)                         # 8 * 32 * 80 = 20480
    out_bytes = 2 * 40 * 4 * 4                               # layer.output_elems = 1280
    input_rows, weight_rows, output_rows = 1 * 3 * 9 * 1, 1 * 3 * 2 * 6, 1 * 2 * 4 * 2   # 27, 36, 16
    want = {
        "log2_kernel_parallelism": lg(1 * 3),
        "log2_spatial_unroll": lg(3 * 5),
        "log2_pe_utilisation": lg((6 / 8) * (10 / 16)),
        "log2_dram_steps": lg(48),
        "log2_weight_blocks": lg(288),
        "log2_iterations": lg(288 * 8),
        "log2_rows_per_block": 3.0,
        "log2_input_loads": lg(48),
        "log2_weight_loads": lg(24),
        "log2_output_visits": lg(48),
        "log2_input_bytes": lg(7776),
        "log2_weight_bytes": lg(4320),
        "log2_psum_bytes": lg(1 + 20480),
        "log2_dram_bytes": lg(7776 + 4320 + 20480 + 1280),
        # 2 log2 T_P + 3 log2 T_Q + 5 log2 A_K + 7 log2 S_K + 11 log2 A_C + 13 log2 S_C
        "unrolled_dims_primes": 2 * 1 + 3 * 2 + 5 * lg(5) + 7 * 1 + 11 * lg(3) + 13 * 1,
        "sp_utilisation": (1 * input_rows + 2 * weight_rows) / 2048,    # 99 / 2048 (input single)
        "acc_utilisation": (2 * output_rows) / 256,                     # 32 / 256
        "buffers_input": 1.0, "buffers_weight": 2.0, "buffers_output": 2.0,
    }
    assert steps == 48 and blocks == 288 and in_bytes == 7776 and w_bytes == 4320 and ps_bytes == 20480
    assert out_bytes == CONV.output_elems
    assert set(want) == set(SOFTWARE_FEATURE_NAMES)
    for name, v in want.items():
        assert x[F[name]] == pytest.approx(v, rel=1e-12, abs=1e-12), name


def test_gemm_by_hand():
    m = Mapping.for_layer(GEMM, spad={"C": 3, "K": 5, "P": 16}, array={"C": 16, "K": 8}, buffers=(2, 2, 1))
    assert m.check(HW16, GEMM)
    # dram: P 64/16 = 4, everything else 1; order N K P Q C R S (the default); G = 1
    # tiles: K40 C48 P16; cb = ceil(48/16) = 3 (full), kb = ceil(40/16) = 3 (40 of 48 columns)
    x = _features(HW16, GEMM, [m])[0]
    # input (A, indexed by P and C): P has D 4 -> 4 loads; weight (B, K and C): no loop
    # with D > 1 -> loaded once; output: P -> 4 visits, 4 distinct tiles, no spills
    input_rows, weight_rows, output_rows = 16 * 1 * 1 * 3, 1 * 1 * 3 * 48, 16 * 3   # 48, 144, 48
    want = {
        "log2_kernel_parallelism": 0.0,
        "log2_spatial_unroll": lg(16 * 8),
        "log2_pe_utilisation": lg(1.0 * (40 / 48)),
        "log2_dram_steps": 2.0,
        "log2_weight_blocks": lg(4 * 3 * 3),                 # steps x kb x cb x 1 x 1 = 36
        "log2_iterations": lg(36 * 16),                      # x M = 16 rows per block
        "log2_rows_per_block": 4.0,
        "log2_input_loads": 2.0,
        "log2_weight_loads": 0.0,
        "log2_output_visits": 2.0,
        "log2_input_bytes": lg(4 * 16 * 48),                 # the whole A once: 3072
        "log2_weight_bytes": lg(48 * 40),                    # the whole B once: 1920
        "log2_psum_bytes": 0.0,
        "log2_dram_bytes": lg(3072 + 1920 + 0 + 64 * 40),
        "unrolled_dims_primes": 2 * 4 + 3 * 0 + 5 * 3 + 7 * lg(5) + 11 * 4 + 13 * lg(3),
        "sp_utilisation": (2 * input_rows + 2 * weight_rows) / 2048,    # 384 / 2048
        "acc_utilisation": (1 * output_rows) / 256,                     # 48 / 256 (single)
        "buffers_input": 2.0, "buffers_weight": 2.0, "buffers_output": 1.0,
    }
    assert set(want) == set(SOFTWARE_FEATURE_NAMES)
    for name, v in want.items():
        assert x[F[name]] == pytest.approx(v, rel=1e-12, abs=1e-12), name


def test_reduction_outside_output_loops_spills():
    """GEMM with the C loop outermost: every output tile is visited once per C step."""
    m = Mapping.for_layer(GEMM, spad={"C": 1, "K": 5, "P": 16}, array={"C": 16, "K": 8},
                          order=("C", "N", "K", "P", "Q", "R", "S"))
    x = _features(HW16, GEMM, [m])[0]
    # D: C 3, P 4. Output (P): innermost position 3 -> 3 * 4 = 12 visits, 4 distinct,
    # 8 spills of 16 x 40 int32, out and back in.
    assert x[F["log2_output_visits"]] == pytest.approx(lg(12))
    assert x[F["log2_psum_bytes"]] == pytest.approx(lg(1 + 8 * 8 * 16 * 40))
    # weight (C, K): C at position 0 -> 3 loads of 16 x 40; input (C, P): P -> 12 loads of 16 x 16
    assert x[F["log2_weight_loads"]] == pytest.approx(lg(3))
    assert x[F["log2_weight_bytes"]] == pytest.approx(lg(3 * 16 * 40))
    assert x[F["log2_input_bytes"]] == pytest.approx(lg(12 * 16 * 16))


def test_hardware_by_hand():
    x = hardware_features(np.array([16, 4]), np.array([64, 8]), np.array([32, 256]))
    want = [
        # dim 16, sp 64 KB, acc 32 KB
        {"log2_dim": 4, "log2_pes": 8, "log2_sp_kb": 6, "log2_acc_kb": 5, "log2_sram_kb": lg(96),
         "log2_sram_kb_per_pe": lg(96 / 256), "log2_sp_rows": lg(64 * 1024 / 16),   # 4096 rows
         "log2_acc_rows": lg(32 * 1024 / 64)},                                          # 512 rows
        # dim 4, sp 8 KB, acc 256 KB
        {"log2_dim": 2, "log2_pes": 4, "log2_sp_kb": 3, "log2_acc_kb": 8, "log2_sram_kb": lg(264),
         "log2_sram_kb_per_pe": lg(264 / 16), "log2_sp_rows": lg(2048), "log2_acc_rows": lg(16384)},
    ]
    for row, w in zip(x, want):
        assert set(w) == set(HARDWARE_FEATURE_NAMES)
        for name, v in w.items():
            assert row[H[name]] == pytest.approx(v, rel=1e-12, abs=1e-12), name
    # the rows features are the HardwareConfig derived quantities
    for d, sp, acc in itertools.product(DIMS, (8, 136, 256), (8, 24, 256)):
        hw = HardwareConfig(dim=d, sp_kb=sp, acc_kb=acc)
        row = hardware_features(d, sp, acc)[0]
        assert row[H["log2_sp_rows"]] == pytest.approx(lg(hw.sp_rows))
        assert row[H["log2_acc_rows"]] == pytest.approx(lg(hw.acc_rows))
        assert row[H["log2_pes"]] == pytest.approx(lg(hw.peak_macs_per_cycle))


# ---- an independent per-mapping reimplementation ---------------------------------------------------
_REL = {"input": "NCPQRS", "weight": "KCRS", "output": "NKPQ"}


def _walk_loads(layer, dram, order):
    """Tile loads of each operand by walking the DRAM loop nest (group loop outermost):
    a load whenever the operand's tile index (group + its relevant loops) changes."""
    ranges = [range(layer.groups)] + [range(dram[lp]) for lp in order]
    keys = {op: [0] + [j + 1 for j, lp in enumerate(order) if lp in rel] for op, rel in _REL.items()}
    last = {op: None for op in _REL}
    count = {op: 0 for op in _REL}
    for it in itertools.product(*ranges):
        for op, ks in keys.items():
            key = tuple(it[k] for k in ks)
            if key != last[op]:
                count[op] += 1
                last[op] = key
    return count["input"], count["weight"], count["output"]


def _closed_loads(layer, dram, order):
    """The same counts by the reuse rule, on Python ints."""
    out = []
    for op in ("input", "weight", "output"):
        inner = -1
        for j, lp in enumerate(order):
            if lp in _REL[op] and dram[lp] > 1:
                inner = j
        n = layer.groups
        for j in range(inner + 1):
            n *= dram[order[j]]
        out.append(n)
    return tuple(out)


def _scalar_features(hw, layer, m: Mapping, walk: bool) -> list[float]:
    d, st, G = hw.dim, layer.stride, layer.groups
    D, Sp, A = m.level("dram"), m.level("spad"), m.level("array")
    T = {lp: Sp[lp] * A[lp] for lp in LOOPS}
    cb, kb = math.ceil(T["C"] / d), math.ceil(T["K"] / d)
    M = T["N"] * T["P"] * T["Q"]
    steps = G * math.prod(D.values())
    blocks = steps * kb * cb * T["R"] * T["S"]
    n_in, n_w, visits = (_walk_loads if walk else _closed_loads)(layer, D, m.order)
    distinct = G * D["N"] * D["K"] * D["P"] * D["Q"]
    in_h = (T["P"] - 1) * st + T["R"]
    in_w = (T["Q"] - 1) * st + T["S"]
    in_bytes = n_in * T["N"] * in_h * in_w * T["C"]
    w_bytes = n_w * T["R"] * T["S"] * T["C"] * T["K"]
    ps_bytes = 2 * 4 * (visits - distinct) * M * T["K"]
    # footprint rows straight from the hw.mapping docstring's contract
    input_rows = T["N"] * in_h * in_w * cb
    weight_rows = T["R"] * T["S"] * kb * T["C"]
    output_rows = M * kb
    bi, bw, bo = m.buffers
    return [
        lg(T["R"] * T["S"]),
        lg(A["C"] * A["K"]),
        lg(T["C"] / (cb * d)) + lg(T["K"] / (kb * d)),
        lg(steps), lg(blocks), lg(blocks * M), lg(M),
        lg(n_in), lg(n_w), lg(visits),
        lg(in_bytes), lg(w_bytes), lg(1 + ps_bytes),
        lg(in_bytes + w_bytes + ps_bytes + layer.n * layer.k * layer.p * layer.q),
        sum(w * lg(v) for w, v in zip((2, 3, 5, 7, 11, 13),
                                      (T["P"], T["Q"], A["K"], Sp["K"], A["C"], Sp["C"]))),
        (bi * input_rows + bw * weight_rows) / hw.sp_rows,
        output_rows * bo / hw.acc_rows,
        float(bi), float(bw), float(bo),
    ]


REF_CASES = [
    (HW8, CONV),
    (HardwareConfig(dim=4, sp_kb=8, acc_kb=8), Layer.conv("dw", k=8, c=8, r=3, p=6, padding=1, groups=8)),
    (HardwareConfig(dim=16, sp_kb=32, acc_kb=16), GEMM),
    (HardwareConfig(dim=8, sp_kb=64, acc_kb=32), Layer.conv("c1", n=4, k=24, c=18, r=1, s=3, p=6, q=5)),
]


@pytest.mark.parametrize("hw,layer", REF_CASES, ids=[c[1].name for c in REF_CASES])
def test_matches_scalar_reimplementation(hw, layer):
    ms = MappingSpace(hw, layer, version=2)
    mappings = ms.sample(240, seed=7) + ms.sample(60, seed=8, feasible_only=False)
    x = _features(hw, layer, mappings)
    walked = 0
    for i, m in enumerate(mappings):
        walk = m.dram_iterations * layer.groups <= 2000     # walk the nest where it is short
        walked += walk
        ref = _scalar_features(hw, layer, m, walk)
        np.testing.assert_allclose(x[i], ref, rtol=1e-12, atol=1e-12, err_msg=f"mapping {i}:\n{m}")
    assert walked >= 100


def test_loads_walk_equals_closed_form():
    """The reuse rule against the walk on every order of one small mapping."""
    m0 = Mapping.for_layer(CONV, spad={"K": 5, "C": 3, "P": 2}, array={"K": 2, "C": 2})
    dram = m0.level("dram")                                    # N2 K2 C1 P2 Q4 R3 S3
    for order in list(itertools.permutations(LOOPS))[::37]:
        assert _walk_loads(CONV, dram, order) == _closed_loads(CONV, dram, order), order


def test_unfitting_mappings_have_features():
    hw = HardwareConfig(dim=8, sp_kb=8, acc_kb=8)
    layer = Layer.conv("big", k=64, c=64, r=3, p=28, padding=1)   # 1024 scratchpad, 256 acc rows
    ms = MappingSpace(hw, layer, version=2)
    mappings = ms.sample(200, seed=3, feasible_only=False)
    x = _features(hw, layer, mappings)
    fits = np.array([bool(m.check(hw, layer)) for m in mappings])
    over = (x[:, F["sp_utilisation"]] > 1) | (x[:, F["acc_utilisation"]] > 1)
    assert (~fits).any()
    np.testing.assert_array_equal(over, ~fits)
    for i in np.flatnonzero(~fits)[:50]:
        np.testing.assert_allclose(x[i], _scalar_features(hw, layer, mappings[i], walk=False),
                                   rtol=1e-12, atol=1e-12)


# ---- bad input ---------------------------------------------------------------------------------
def _good(n=4):
    return _arrays(MappingSpace(HW8, CONV, version=2).sample(n, seed=1))


def test_bad_software_inputs():
    f, o, b = _good()
    cases = [
        ((HW8, CONV, f[0], o, b), r"factors must be an integer array of shape \(B, 3, 7\); got shape \(3, 7\)"),
        ((HW8, CONV, f[:, :2], o, b), r"shape \(B, 3, 7\); got shape \(4, 2, 7\)"),
        ((HW8, CONV, f.astype(float), o, b), r"factors must be an integer array .* got dtype float64"),
        ((HW8, CONV, f, o[:3], b), r"order must be an integer array of shape \(B, 7\) = \(4, 7\); got shape \(3, 7\)"),
        ((HW8, CONV, f, o.astype(float), b), r"order must be an integer array .* got dtype float64"),
        ((HW8, CONV, f, o, b[:, :2]), r"buffers must be an integer array of shape \(B, 3\) = \(4, 3\) or "
                                      r"\(3,\); got shape \(4, 2\)"),
        ((HW8, CONV, f, o, b * 1.0), r"buffers must be an integer array .* got dtype float64"),
        ((HW8, CONV, f, o, [2, 3, 2]), r"buffers must each be 1 or 2 \(single or double\); got 3 \(weight\) in row 0"),
        ((HW8, CONV, f, o, np.where(np.arange(12).reshape(4, 3) == 7, 0, b)),
         r"got 0 \(weight\) in row 2"),
        ((HW8, CONV, f, np.array([o[0], o[1], [0, 1, 2, 3, 4, 5, 5], o[3]]), b),
         r"order rows must be permutations of 0\.\.6 .*; got \[0, 1, 2, 3, 4, 5, 5\] in row 2"),
        ((HW8, CONV, f, np.array([o[0], [0, 1, 2, 3, 4, 5, 7], o[2], o[3]]), b),
         r"got \[0, 1, 2, 3, 4, 5, 7\] in row 1"),
        ("hw", r"hw must be a HardwareConfig; got str"),
        ("layer", r"layer must be a Layer; got dict"),
    ]
    for args, msg in cases:
        if args == "hw":
            args = ("dim8", CONV, f, o, b)
        elif args == "layer":
            args = (HW8, {"k": 1}, f, o, b)
        with pytest.raises(ValueError, match=msg) as e:
            software_features(*args)
        assert "\n" not in str(e.value)


def test_bad_mappings():
    f, o, b = _good()
    g = f.copy()
    g[1, 0, 3] *= 2                                   # P: dram x 2 breaks the product
    with pytest.raises(ValueError, match=r"row 1 is not a mapping of layer 'conv' on dim 8: loop P: dram \d+ x "
                                         r"spad \d+ x array 1 = \d+ != layer dim 4"):
        software_features(HW8, CONV, g, o, b)
    g = f.copy()
    g[2, :, 3] = [1, 1, 4]                            # P unrolled on the array
    with pytest.raises(ValueError, match=r"row 2 .*array factor of P is 4; only C and K are unrolled"):
        software_features(HW8, CONV, g, o, b)
    g = f.copy()
    g[0, :, 0] = [0, 1, 1]
    with pytest.raises(ValueError, match=r"row 0 .*dram factor of N is 0; factors must be integers >= 1"):
        software_features(HW8, CONV, g, o, b)
    # array K 10 on a dim-8 array (fine on dim 16)
    m = Mapping.for_layer(CONV, spad={"K": 1}, array={"K": 10, "C": 6})
    fa, oa, ba = _arrays([m])
    with pytest.raises(ValueError, match=r"row 0 .* on dim 8: array K factor 10 exceeds array dim 8"):
        software_features(HW8, CONV, fa, oa, ba)
    assert software_features(HW16, CONV, fa, oa, ba).shape == (1, len(SOFTWARE_FEATURE_NAMES))


def test_bad_hardware_inputs():
    cases = [
        ((12, 64, 32), r"dim must be one of 4, 8, 16, 32; got 12"),
        ((np.array([16, 64]), 64, 32), r"dim must be one of 4, 8, 16, 32; got 64"),
        ((16, np.array([64, 12]), 32), r"sp_kb must be a multiple of 8 from 8 to 256; got 12"),
        ((16, 64, 512), r"acc_kb must be a multiple of 8 from 8 to 256; got 512"),
        ((16.0, 64, 32), r"dim must be an integer array of shape \(B,\) or a scalar; got dtype float64"),
        ((16, np.full((2, 2), 64), 32), r"sp_kb must be an integer array of shape \(B,\) or a scalar; got shape \(2, 2\)"),
        ((np.array([16, 8]), np.array([64, 64, 64]), 32),
         r"dim, sp_kb and acc_kb must have one length B \(or be scalars\); got shapes \[\(2,\), \(3,\), \(\)\]"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg) as e:
            hardware_features(*args)
        assert "\n" not in str(e.value)
    # every allowed value is accepted
    assert hardware_features(np.array(DIMS), MEM_KB[0], MEM_KB[-1]).shape == (len(DIMS), len(HARDWARE_FEATURE_NAMES))
