"""Encoding version 2 of `search.space.MappingSpace`: the per-operand buffering
(`Mapping.buffers`) as three more unit-cube numbers and three more encoding inputs.
Version 1 (the default, 28 inputs, all double-buffered) is tests/search/test_space.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hw.config import HardwareConfig
from hw.layer import LOOPS, Layer
from hw.mapping import Mapping, default_mapping
from search.space import (BUFFER_ENCODING_NAMES, ENCODING_NAMES, UNIT_DIMS, MappingSpace, SpaceError,
                          order_from_index)
from tests.search.test_space import TINY, TINY_HW, _brute_choices

LAYER = Layer.conv("c", k=32, c=16, r=3, p=8, padding=1)
HW = HardwareConfig(dim=8, sp_kb=16, acc_kb=8)
BUFFERINGS = list(itertools.product((1, 2), repeat=3))


def test_version_2_names_and_unit_cube():
    v1, v2 = MappingSpace(HW, LAYER), MappingSpace(HW, LAYER, version=2)
    assert v1.version == 1 and v1.encoding_names == ENCODING_NAMES and v1.unit_dims == UNIT_DIMS == 8
    assert v2.encoding_names == ENCODING_NAMES + BUFFER_ENCODING_NAMES and len(v2.encoding_names) == 31
    assert BUFFER_ENCODING_NAMES == ("buffers_input", "buffers_weight", "buffers_output")
    assert v2.unit_dims == 11
    u = np.full((4, 11), 0.3)
    u[:, 8:] = [[0.0, 0.49, 0.5], [0.5, 1.0, 0.0], [0.2, 0.7, 0.99], [1.0, 1.0, 1.0]]
    np.testing.assert_array_equal(v2.buffers_from_unit(u), [[1, 1, 2], [2, 2, 1], [1, 2, 2], [2, 2, 2]])
    np.testing.assert_array_equal(v1.buffers_from_unit(u[:, :8]), np.full((4, 3), 2))
    # the factor and order columns mean the same in both versions
    f1, o1 = v1.from_unit_arrays(u[:, :8])
    f2, o2 = v2.from_unit_arrays(u)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(o1, o2)
    assert v2.from_unit(u[0]).buffers == (1, 1, 2)
    with pytest.raises(SpaceError, match=r"version must be one of \(1, 2\); got 3"):
        MappingSpace(HW, LAYER, version=3)


def test_version_2_encode_decode_round_trip():
    ms = MappingSpace(HW, LAYER, version=2)
    for i, m in enumerate(ms.sample(64, seed=1)):
        x = ms.encode(m)
        assert x.shape == (31,) and np.all((0 <= x) & (x <= 1))
        np.testing.assert_array_equal(x[28:], np.array(m.buffers) - 1.0)
        np.testing.assert_array_equal(x[:28], MappingSpace(HW, LAYER).encode(Mapping(m.factors, m.order)))
        assert ms.decode(x) == m
    np.testing.assert_array_equal(ms.encode_many(ms.sample(5, seed=2)),
                                  np.stack([ms.encode(m) for m in ms.sample(5, seed=2)]))


def test_version_1_refuses_single_buffered_mappings():
    m = default_mapping(HW, LAYER, (1, 2, 2))
    with pytest.raises(SpaceError, match=r"encoding version 1 holds double-buffered mappings only"):
        MappingSpace(HW, LAYER).encode(m)
    assert MappingSpace(HW, LAYER, version=2).encode(m)[28:].tolist() == [0.0, 1.0, 1.0]


def test_version_2_samples_fit_with_their_buffering_and_cover_all_eight():
    ms = MappingSpace(HW, LAYER, version=2)
    got = ms.sample(400, seed=3, method="sobol")
    assert got == ms.sample(400, seed=3, method="sobol")
    assert all(m.check(HW, LAYER) for m in got)
    assert {m.buffers for m in got} == set(BUFFERINGS)
    # version 1's stream is unchanged by the new version
    assert MappingSpace(HW, LAYER).sample(50, seed=3) == MappingSpace(HW, LAYER, version=1).sample(50, seed=3)
    assert all(m.buffers == (2, 2, 2) for m in MappingSpace(HW, LAYER).sample(50, seed=3))


def test_version_2_fits_arrays_matches_mapping_check():
    ms = MappingSpace(HW, LAYER, version=2)
    u = np.random.default_rng(4).random((3000, 11))
    f, o = ms.from_unit_arrays(u)
    b = ms.buffers_from_unit(u)
    want = [bool(Mapping.from_arrays(f[i], o[i], b[i]).check(HW, LAYER)) for i in range(len(f))]
    np.testing.assert_array_equal(ms.fits_arrays(f, b), want)
    # single buffering admits every double-buffered fit and more
    double = ms.fits_arrays(f)
    single = ms.fits_arrays(f, np.ones_like(b))
    assert np.all(single >= double) and single.sum() > double.sum()


def test_version_2_exact_size_vs_brute_force():
    choices = [_brute_choices(TINY.dims[lp], lp, TINY_HW.dim) for lp in LOOPS]
    fitting = 0
    for combo in itertools.product(*choices):
        for bufs in BUFFERINGS:
            m = Mapping.for_layer(TINY, spad={lp: sa[0] for lp, sa in zip(LOOPS, combo)},
                                  array={lp: sa[1] for lp, sa in zip(LOOPS, combo)},
                                  order=order_from_index(0), buffers=bufs)
            fitting += bool(m.check(TINY_HW, TINY))
    size = MappingSpace(TINY_HW, TINY, version=2).size()
    assert size.exact and size.count == fitting * 5040
    assert size.count > MappingSpace(TINY_HW, TINY).size().count > 0   # (2, 2, 2) is one of the eight
