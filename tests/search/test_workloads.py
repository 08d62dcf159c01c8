"""search.workloads: ResNet-50 layer list, unique-shape merging, totals, registry."""

from __future__ import annotations

import pytest

from hw.layer import Layer
from search.workloads import (
    WORKLOADS,
    get_workload,
    resnet50,
    total_macs,
    unique_layers,
)

# The 16 bottleneck blocks of ResNet-50 v1.5 written out by hand (independent of the
# generator): (in_ch, mid_ch, out_ch, in_size, stride). The stride sits on the 3x3 conv
# and on the projection shortcut; the first block of each stage has the projection.
BLOCKS = (
    [(64, 64, 256, 56, 1)] + [(256, 64, 256, 56, 1)] * 2
    + [(256, 128, 512, 56, 2)] + [(512, 128, 512, 28, 1)] * 3
    + [(512, 256, 1024, 28, 2)] + [(1024, 256, 1024, 14, 1)] * 5
    + [(1024, 512, 2048, 14, 2)] + [(2048, 512, 2048, 7, 1)] * 2
)
FIRST_OF_STAGE = {0, 3, 7, 13}


def _reference_macs() -> int:
    total = 64 * 3 * 7 * 7 * 112 * 112            # stem conv1
    for i, (cin, mid, cout, size, stride) in enumerate(BLOCKS):
        o = size // stride                         # output size of the block
        total += cin * mid * size * size           # 1x1 reduce, at the input size
        total += mid * mid * 9 * o * o             # 3x3 (strided)
        total += mid * cout * o * o                # 1x1 expand
        if i in FIRST_OF_STAGE:
            total += cin * cout * o * o            # 1x1 projection shortcut
    total += 2048 * 1000                           # FC
    return total


def _by_name(layers):
    return {layer.name: layer for layer in layers}


def test_resnet50_layer_counts_and_names():
    layers = resnet50()
    assert len(layers) == 54
    assert layers[0].name == "conv1" and layers[-1].name == "fc"
    convs = [l for l in layers if l.name != "fc"]
    assert len(convs) == 53
    assert len({l.name for l in layers}) == 54
    assert all(l.count == 1 and l.n == 1 for l in layers)
    assert sum(l.r == 3 for l in layers) == 16
    assert sum(".downsample" in l.name for l in layers) == 4
    assert [l.name for l in layers[1:5]] == [
        "layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3", "layer1.0.downsample"]


def test_resnet50_total_macs():
    layers = resnet50()
    ref = _reference_macs()
    assert ref == 4_089_184_256
    assert total_macs(layers) == ref
    assert abs(total_macs(layers) - 4.09e9) <= 0.005 * 4.09e9


def test_resnet50_specific_shapes():
    L = _by_name(resnet50())
    c1 = L["conv1"]
    assert (c1.n, c1.k, c1.c, c1.p, c1.q, c1.r, c1.s, c1.stride, c1.padding, c1.groups) == \
        (1, 64, 3, 112, 112, 7, 7, 2, 3, 1)
    assert L["layer1.0.conv2"].shape() == (1, 64, 64, 56, 56, 3, 3, 1, 1, 1)
    assert L["layer2.0.conv2"].shape() == (1, 128, 128, 28, 28, 3, 3, 2, 1, 1)
    assert L["layer2.0.conv1"].shape() == (1, 128, 256, 56, 56, 1, 1, 1, 0, 1)  # v1.5: no stride here
    assert L["layer4.2.conv3"].shape() == (1, 2048, 512, 7, 7, 1, 1, 1, 0, 1)
    assert L["layer1.0.downsample"].shape() == (1, 256, 64, 56, 56, 1, 1, 1, 0, 1)
    assert L["layer2.0.downsample"].shape() == (1, 512, 256, 28, 28, 1, 1, 2, 0, 1)
    assert L["layer3.0.downsample"].shape() == (1, 1024, 512, 14, 14, 1, 1, 2, 0, 1)
    assert L["layer4.0.downsample"].shape() == (1, 2048, 1024, 7, 7, 1, 1, 2, 0, 1)
    fc = L["fc"]
    assert fc.is_gemm and fc.gemm_shape == (1, 2048, 1000)


def test_resnet50_batch_and_image():
    L = _by_name(resnet50(batch=4, image=256))
    assert L["conv1"].n == 4 and L["conv1"].p == 128
    assert L["layer4.2.conv3"].p == 8
    assert L["fc"].gemm_shape == (4, 2048, 1000)
    assert total_macs(resnet50(batch=4)) == 4 * 4_089_184_256


def test_unique_layers_resnet50():
    layers = resnet50()
    uniq = unique_layers(layers)
    # 24 unique shapes, as DESIGN.md section 6 says: conv1 + fc, 4 in stage 1
    # (conv1 64->64, 3x3, conv3 64->256, and 256->64 of blocks 1-2), and 6 in each of
    # stages 2-4 (first block's conv1, strided 3x3, conv3, strided projection; later
    # blocks' conv1 and 3x3). layer1.0.downsample (1x1 64->256, stride 1, 56x56) has
    # exactly the shape of layer1.0.conv3, so it merges into it; the strided
    # projections of stages 2-4 have their own shapes.
    assert len(uniq) == 24
    assert sum(u.count for u in uniq) == 54
    assert total_macs(uniq) == total_macs(layers)
    U = _by_name(uniq)
    assert "layer1.0.downsample" not in U
    assert U["layer1.0.conv3"].count == 4          # 3 conv3 + the stage-1 projection
    assert U["layer3.1.conv2"].count == 5
    assert U["conv1"].count == 1 and U["fc"].count == 1
    assert len({u.shape() for u in uniq}) == 24
    # First-appearance order is kept.
    names = [l.name for l in layers]
    assert [names.index(u.name) for u in uniq] == sorted(names.index(u.name) for u in uniq)


def test_unique_layers_sums_counts():
    a = Layer.gemm("a", m=4, k=8, n=16, count=2)
    b = Layer.gemm("b", m=4, k=8, n=16, count=3)
    c = Layer.gemm("c", m=4, k=8, n=32)
    out = unique_layers([a, c, b])
    assert [(l.name, l.count) for l in out] == [("a", 5), ("c", 1)]
    assert unique_layers([]) == []


def test_registry():
    assert set(WORKLOADS) == {"resnet50"}
    assert get_workload("resnet50") == resnet50()
    with pytest.raises(ValueError, match="unknown workload 'nope'.*resnet50") as exc:
        get_workload("nope")
    assert "\n" not in str(exc.value)
