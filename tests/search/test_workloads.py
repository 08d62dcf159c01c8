"""search.workloads: the networks (shapes and totals against independent hand counts and
published figures), unique-shape merging, the registry, workload files and the CLI."""

from __future__ import annotations

import json

import pytest

from hw.layer import Layer
from search.workload_file import RECORD_KEYS, WorkloadError, dumps_workload, load_workload_file
from search.workloads import (
    WORKLOADS,
    bert,
    get_workload,
    main,
    mnasnet,
    mobilenetv2,
    resnet50,
    retinanet,
    total_macs,
    transformer,
    unet,
    unique_layers,
    vgg16,
)

NAMES = {"resnet50", "bert", "transformer", "unet", "retinanet", "vgg16", "mobilenetv2", "mnasnet"}


def _by_name(layers):
    return {layer.name: layer for layer in layers}


def _convs(layers):
    return [l for l in layers if not l.is_gemm]


def _weights_bn_bias(layers):
    """Parameters as torchvision counts them for conv + BatchNorm + FC networks: weights,
    a BN scale and shift per conv output channel, an FC bias per FC output."""
    return sum(l.weight_elems for l in layers) + sum(
        l.k if l.is_gemm else 2 * l.k for l in layers)


# ---- ResNet-50 ----------------------------------------------------------------------
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
    # torchvision's model table: ResNet50_Weights.IMAGENET1K_V1, 4.09 GFLOPS (multiply-adds).
    assert abs(total_macs(layers) - 4.09e9) <= 0.005 * 4.09e9
    # torchvision's num_params for the same weights: 25,557,032.
    assert _weights_bn_bias(layers) == 25_557_032


def test_resnet50_specific_shapes():
    L = _by_name(resnet50())
    c1 = L["conv1"]
    assert (c1.n, c1.k, c1.c, c1.p, c1.q, c1.r, c1.s, c1.stride, c1.padding, c1.groups) == \
        (1, 64, 3, 112, 112, 7, 7, 2, 3, 1)
    assert L["layer1.0.conv2"].shape() == (1, 64, 64, 56, 56, 3, 3, 1, 1, 1)
    assert L["layer2.0.conv2"].shape() == (1, 128, 128, 28, 28, 3, 3, 2, 1, 1)
    assert L["layer2.0.conv1"].shape() == (1, 128, 256, 56, 56, 1, 1, 1, 0, 1)  # v1.5: no stride here
    assert L["layer3.0.conv2"].shape() == (1, 256, 256, 14, 14, 3, 3, 2, 1, 1)
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


# ---- VGG-16 -------------------------------------------------------------------------
# (in_ch, out_ch, size) of the 13 convs, by hand: every conv keeps the size (padding 1).
VGG16_CONVS = (
    [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112)]
    + [(128, 256, 56)] + [(256, 256, 56)] * 2
    + [(256, 512, 28)] + [(512, 512, 28)] * 2
    + [(512, 512, 14)] * 3
)


def test_vgg16():
    layers = vgg16()
    convs, fcs = _convs(layers), [l for l in layers if l.is_gemm]
    assert (len(layers), len(convs), len(fcs)) == (16, 13, 3)
    assert [(l.c, l.k, l.p) for l in convs] == VGG16_CONVS
    assert all((l.r, l.stride, l.padding) == (3, 1, 1) for l in convs)
    assert [l.gemm_shape for l in fcs] == [(1, 25088, 4096), (1, 4096, 4096), (1, 4096, 1000)]
    assert [l.name for l in layers[:3]] == ["conv1_1", "conv1_2", "conv2_1"]
    assert layers[12].name == "conv5_3"
    ref = sum(cin * cout * 9 * size * size for cin, cout, size in VGG16_CONVS)
    ref += 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    assert ref == 15_470_264_320
    assert total_macs(layers) == ref
    # torchvision's table: VGG16_Weights.IMAGENET1K_V1, 15.47 GFLOPS (multiply-adds).
    assert abs(total_macs(layers) - 15.47e9) <= 0.005 * 15.47e9
    # Weights + biases = the published 138,357,544 parameters (torchvision, Keras).
    assert sum(l.weight_elems + l.k for l in layers) == 138_357_544


# ---- MobileNetV2 --------------------------------------------------------------------
# The 17 bottlenecks written out from the paper's Table 2: (in_ch, t, out_ch, in_size, stride).
MBV2_BLOCKS = (
    [(32, 1, 16, 112, 1)]
    + [(16, 6, 24, 112, 2), (24, 6, 24, 56, 1)]
    + [(24, 6, 32, 56, 2)] + [(32, 6, 32, 28, 1)] * 2
    + [(32, 6, 64, 28, 2)] + [(64, 6, 64, 14, 1)] * 3
    + [(64, 6, 96, 14, 1)] + [(96, 6, 96, 14, 1)] * 2
    + [(96, 6, 160, 14, 2)] + [(160, 6, 160, 7, 1)] * 2
    + [(160, 6, 320, 7, 1)]
)


def _mbconv_macs(cin, t, cout, size, stride, kernel=3) -> int:
    hidden, out = cin * t, size // stride
    expand = cin * hidden * size * size if t != 1 else 0
    return expand + hidden * kernel * kernel * out * out + hidden * cout * out * out


def test_mobilenetv2():
    layers = mobilenetv2()
    convs = _convs(layers)
    # The usual count: stem + 2 (first block) + 16 x 3 + the 1x1 to 1280 = 52 convs.
    assert (len(layers), len(convs)) == (53, 52)
    dws = [l for l in convs if l.groups > 1]
    assert len(dws) == 17
    assert all(l.groups == l.c == l.k and l.r == 3 and l.padding == 1 for l in dws)
    assert [(l.c, l.p, l.stride) for l in dws] == [(cin * t, size // s, s) for cin, t, _, size, s in MBV2_BLOCKS]
    L = _by_name(layers)
    assert "block1.expand" not in L and "block2.expand" in L
    assert L["stem"].shape() == (1, 32, 3, 112, 112, 3, 3, 2, 1, 1)
    assert L["block2.dw"].shape() == (1, 96, 96, 56, 56, 3, 3, 2, 1, 96)
    assert L["block17.project"].shape() == (1, 320, 960, 7, 7, 1, 1, 1, 0, 1)
    assert L["head"].shape() == (1, 1280, 320, 7, 7, 1, 1, 1, 0, 1)
    assert L["fc"].gemm_shape == (1, 1280, 1000)
    ref = 32 * 3 * 9 * 112 * 112 + sum(_mbconv_macs(*b) for b in MBV2_BLOCKS)
    ref += 320 * 1280 * 7 * 7 + 1280 * 1000
    assert ref == 300_774_272
    assert total_macs(layers) == ref
    # Sandler et al. 2018, Table 4: MobileNetV2 (1.0), 300 M multiply-adds.
    assert abs(total_macs(layers) - 300e6) <= 0.01 * 300e6
    # torchvision's num_params (MobileNet_V2_Weights.IMAGENET1K_V1): 3,504,872.
    assert _weights_bn_bias(layers) == 3_504_872


# ---- MnasNet-A1 ---------------------------------------------------------------------
# The 15 MBConv blocks after the separable conv, from the reference mnasnet_a1 block
# strings: (in_ch, t, out_ch, in_size, stride, kernel, squeeze-and-excitation).
MNAS_BLOCKS = (
    [(16, 6, 24, 112, 2, 3, False), (24, 6, 24, 56, 1, 3, False)]
    + [(24, 3, 40, 56, 2, 5, True)] + [(40, 3, 40, 28, 1, 5, True)] * 2
    + [(40, 6, 80, 28, 2, 3, False)] + [(80, 6, 80, 14, 1, 3, False)] * 3
    + [(80, 6, 112, 14, 1, 3, True), (112, 6, 112, 14, 1, 3, True)]
    + [(112, 6, 160, 14, 2, 5, True)] + [(160, 6, 160, 7, 1, 5, True)] * 2
    + [(160, 6, 320, 7, 1, 3, False)]
)


def test_mnasnet():
    layers = mnasnet()
    convs, gemms = _convs(layers), [l for l in layers if l.is_gemm]
    # stem + separable (dw, project) + 15 MBConv x 3 + 1x1 head = 49 convs;
    # 8 SE blocks x 2 FCs + the classifier = 17 GEMMs.
    assert (len(layers), len(convs), len(gemms)) == (66, 49, 17)
    assert sum(".se." in l.name for l in layers) == 16
    L = _by_name(layers)
    assert L["block1.dw"].shape() == (1, 32, 32, 112, 112, 3, 3, 1, 1, 32)
    assert L["block4.dw"].shape() == (1, 72, 72, 28, 28, 5, 5, 2, 2, 72)
    assert L["block4.se.reduce"].gemm_shape == (1, 72, 6)
    assert L["block5.se.expand"].gemm_shape == (1, 10, 120)
    assert L["block16.project"].shape() == (1, 320, 960, 7, 7, 1, 1, 1, 0, 1)
    assert L["fc"].gemm_shape == (1, 1280, 1000)
    ref = 32 * 3 * 9 * 112 * 112 + 32 * 9 * 112 * 112 + 32 * 16 * 112 * 112   # stem, separable
    se = 0
    for cin, t, cout, size, stride, kernel, has_se in MNAS_BLOCKS:
        ref += _mbconv_macs(cin, t, cout, size, stride, kernel)
        se += 2 * (cin * t) * (cin // 4) if has_se else 0
    ref += 320 * 1280 * 7 * 7 + 1280 * 1000
    assert ref + se == 311_579_072
    assert total_macs(layers) == ref + se
    assert total_macs(mnasnet(se=False)) == ref
    assert len(mnasnet(se=False)) == 50
    # Tan et al. 2019, Table 1: MnasNet-A1, 312 M multiply-adds (3.9 M parameters).
    assert abs(total_macs(layers) - 312e6) <= 0.02 * 312e6
    assert abs(_weights_bn_bias(layers) - 3.9e6) <= 0.02 * 3.9e6


# ---- U-Net --------------------------------------------------------------------------
def test_unet():
    layers = unet()
    assert len(layers) == 23                       # "In total the network has 23 convolutional layers"
    assert all(not l.is_gemm for l in layers)
    L = _by_name(layers)
    assert L["enc1.conv1"].shape() == (1, 64, 1, 256, 256, 3, 3, 1, 1, 1)
    assert L["bottom.conv2"].shape() == (1, 1024, 1024, 16, 16, 3, 3, 1, 1, 1)
    # 2x2 stride-2 up-convolution 1024 -> 512 as a 1x1 conv to 4*512 at 16 x 16.
    assert L["up4"].shape() == (1, 2048, 1024, 16, 16, 1, 1, 1, 0, 1)
    assert L["dec4.conv1"].shape() == (1, 512, 1024, 32, 32, 3, 3, 1, 1, 1)  # after the concat
    assert L["up1"].shape() == (1, 256, 128, 128, 128, 1, 1, 1, 0, 1)
    assert L["final"].shape() == (1, 2, 64, 256, 256, 1, 1, 1, 0, 1)
    # Closed form per level l = 0..3 (width w = 64 * 2^l, size S = 256 / 2^l), 9 MACs per
    # 3x3 tap: encoder convs (in -> w, w -> w), decoder convs (2w -> w, w -> w), and
    # the up-convolution into level l: one MAC per output pixel per (2w, w) channel
    # pair (a transposed 2x2/2 conv touches each output pixel once per input channel).
    ref = 0
    for level in range(4):
        w, size = 64 * 2 ** level, 256 // 2 ** level
        cin = 1 if level == 0 else w // 2
        ref += 9 * size * size * (cin * w + w * w)             # encoder
        ref += 9 * size * size * (2 * w * w + w * w)           # decoder
        ref += size * size * (2 * w) * w                       # up-convolution
    ref += 9 * 16 * 16 * (512 * 1024 + 1024 * 1024)            # bottom
    ref += 256 * 256 * 64 * 2                                  # final 1x1
    assert ref == 48_096_083_968
    assert total_macs(layers) == ref
    # The up-convolution equivalence: same MACs and weights as ConvTranspose2d(c, k, 2, 2).
    up = L["up3"]
    assert up.macs == (2 * up.p) ** 2 * up.c * (up.k // 4)
    assert up.weight_elems == up.c * (up.k // 4) * 2 * 2
    assert total_macs(unet(batch=2, image=128, in_channels=3, classes=5)) > 0
    with pytest.raises(WorkloadError, match=r"multiple of 16 \(four 2x2 pools\); got 200"):
        unet(image=200)


# ---- RetinaNet heads ----------------------------------------------------------------
def test_retinanet():
    layers = retinanet()
    assert len(layers) == 5 * 2 * 5
    assert all(l.r == 3 and l.padding == 1 and l.stride == 1 and l.c == 256 for l in layers)
    sizes = [l.p for l in layers if l.name.endswith(".cls.logits")]
    assert sizes == [80, 40, 20, 10, 5]            # 640 / 8 .. 640 / 128
    L = _by_name(layers)
    assert L["P3.cls.conv1"].shape() == (1, 256, 256, 80, 80, 3, 3, 1, 1, 1)
    assert L["P3.cls.logits"].k == 9 * 80
    assert L["P7.box.deltas"].shape() == (1, 36, 256, 5, 5, 3, 3, 1, 1, 1)
    # Per output pixel: 4 x (256*256*9) + 256*720*9 (classes) + 4 x (256*256*9) + 256*36*9 (boxes).
    per_pixel = 8 * 256 * 256 * 9 + 256 * (720 + 36) * 9
    pixels = sum((640 // stride) ** 2 for stride in (8, 16, 32, 64, 128))
    assert total_macs(layers) == per_pixel * pixels == 55_075_046_400
    # 800 x 800: the odd sizes round up through the stride-2 convs (25 -> 13 -> 7).
    assert [l.p for l in retinanet(image=800) if l.name.endswith(".box.deltas")] == [100, 50, 25, 13, 7]
    assert len(unique_layers(layers)) == 15        # per level: 256->256, cls out, box out


# ---- BERT and the Transformer -------------------------------------------------------
def _encoder_layer_macs(s, d, f, s_kv=None):
    """Attention + FF of one layer: Q,out on s rows; K,V on s_kv rows; S and O; FF."""
    s_kv = s if s_kv is None else s_kv
    return 2 * s * d * d + 2 * s_kv * d * d + 2 * s * s_kv * d


def test_bert():
    layers = bert()
    assert len(layers) == 12 * (3 + 12 + 12 + 1 + 2) == 360
    assert len({l.name for l in layers}) == 360
    assert all(l.is_gemm and l.count == 1 for l in layers)
    L = _by_name(layers)
    assert L["encoder.0.self_attn.query"].gemm_shape == (128, 768, 768)
    assert L["encoder.5.self_attn.scores.head11"].gemm_shape == (128, 64, 128)
    assert L["encoder.5.self_attn.context.head0"].gemm_shape == (128, 128, 64)
    assert L["encoder.11.self_attn.out"].gemm_shape == (128, 768, 768)
    assert L["encoder.11.ffn.fc1"].gemm_shape == (128, 768, 3072)
    assert L["encoder.11.ffn.fc2"].gemm_shape == (128, 3072, 768)
    assert len(unique_layers(layers)) == 5
    # 12 x (4 s d^2 + 2 s d f + 2 s^2 d), s = 128, d = 768, f = 3072.
    s, d, f = 128, 768, 3072
    ref = 12 * (4 * s * d * d + 2 * s * d * f + 2 * s * s * d)
    assert ref == 12 * (_encoder_layer_macs(s, d, f) + 2 * s * d * f) == 11_173_625_856
    assert total_macs(layers) == ref
    # MobileBERT (Sun et al. 2020), Table 4: BERT-base 22.5 G FLOPs at 128 tokens,
    # i.e. 11.25 G multiply-adds (it also counts softmax, layer norm, embeddings...).
    assert abs(total_macs(layers) - 11.25e9) <= 0.02 * 11.25e9
    # The weight GEMMs match bert-base-uncased's 109,482,240 parameters once biases,
    # layer norms, embeddings (30522 + 512 + 2 rows) and the pooler are added.
    weights = sum(l.c * l.k for l in layers if ".scores." not in l.name and ".context." not in l.name)
    per_layer_extra = (4 * d + f + d) + 2 * 2 * d         # biases, two layer norms
    embeddings = (30522 + 512 + 2) * d + 2 * d
    pooler = d * d + d
    assert weights + 12 * per_layer_extra + embeddings + pooler == 109_482_240


def test_bert_batch():
    layers = bert(batch=2)
    L = _by_name(layers)
    assert L["encoder.0.self_attn.value"].gemm_shape == (256, 768, 768)
    assert L["encoder.0.self_attn.scores.sample1.head11"].gemm_shape == (128, 64, 128)
    assert sum(".scores." in l.name for l in layers) == 12 * 2 * 12
    assert len({l.name for l in layers}) == len(layers) == 12 * (6 + 2 * 24)
    assert total_macs(layers) == 2 * total_macs(bert())


def test_transformer():
    layers = transformer()
    assert len(layers) == 6 * (4 + 16 + 2) + 6 * (2 * (4 + 16) + 2) == 384
    assert len({l.name for l in layers}) == 384
    assert all(l.is_gemm for l in layers)
    L = _by_name(layers)
    assert L["encoder.0.self_attn.query"].gemm_shape == (128, 512, 512)
    assert L["decoder.5.self_attn.scores.head7"].gemm_shape == (128, 64, 128)
    assert L["decoder.5.cross_attn.key"].gemm_shape == (128, 512, 512)
    assert L["decoder.0.ffn.fc1"].gemm_shape == (128, 512, 2048)
    assert "decoder.0.cross_attn.scores.head8" not in L
    s, d, f = 128, 512, 2048
    enc = _encoder_layer_macs(s, d, f) + 2 * s * d * f          # attention + FF
    dec = 2 * _encoder_layer_macs(s, d, f) + 2 * s * d * f      # two attentions + FF
    # 6 encoder layers (4 s d^2 + 2 s d f + 2 s^2 d) + 6 decoder layers (8 s d^2 + 2 s d f + 4 s^2 d).
    ref = 6 * (4 * s * d * d + 2 * s * d * f + 2 * s * s * d) + 6 * (8 * s * d * d + 2 * s * d * f + 4 * s * s * d)
    assert ref == 6 * (enc + dec) == 5_939_134_464
    assert total_macs(layers) == ref


def test_transformer_cross_attention_uses_source_length():
    L = _by_name(transformer(src_tokens=64, tgt_tokens=32))
    assert L["decoder.0.cross_attn.query"].gemm_shape == (32, 512, 512)
    assert L["decoder.0.cross_attn.key"].gemm_shape == (64, 512, 512)
    assert L["decoder.0.cross_attn.scores.head0"].gemm_shape == (32, 64, 64)
    assert L["decoder.0.cross_attn.context.head0"].gemm_shape == (32, 64, 64)
    assert L["decoder.0.self_attn.scores.head0"].gemm_shape == (32, 64, 32)
    assert L["encoder.0.self_attn.scores.head0"].gemm_shape == (64, 64, 64)
    with pytest.raises(WorkloadError, match="multiple of heads"):
        transformer(heads=7)


# ---- all networks -------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_network_is_well_formed(name):
    fn = WORKLOADS[name]
    layers = fn()
    assert layers and all(isinstance(l, Layer) and l.count == 1 and l.n == 1 for l in layers)
    assert len({l.name for l in layers}) == len(layers)
    assert fn() == layers                          # pure: same result every call
    two = fn(batch=2)
    assert total_macs(two) == 2 * total_macs(layers)
    assert len(unique_layers(layers)) <= len(layers)
    assert total_macs(unique_layers(layers)) == total_macs(layers)


def test_registry():
    assert set(WORKLOADS) == NAMES
    assert get_workload("resnet50") == resnet50()
    assert get_workload("vgg16", batch=3) == vgg16(batch=3)
    with pytest.raises(ValueError, match="unknown workload 'nope'.*resnet50") as exc:
        get_workload("nope")
    assert "\n" not in str(exc.value)
    assert isinstance(exc.value, WorkloadError)
    with pytest.raises(WorkloadError, match="batch must be an integer >= 1; got 0"):
        get_workload("bert", batch=0)
    with pytest.raises(TypeError):
        WORKLOADS["mine"] = resnet50               # read-only


# ---- workload files -----------------------------------------------------------------
YAML_NET = """\
# a small network
- {name: conv1, k: 64, c: 3, h: 224, r: 7, stride: 2, pad: 3}
- name: block.conv
  k: 64
  c: 64
  p: 56
  r: 3
  padding: 1
  count: 3
- name: dw
  n: 2
  k: 32
  c: 32
  p: 28
  q: 14
  r: 3
  s: 1
  groups: 32
- {name: fc, gemm: {m: 1, k: 2048, n: 1000}, count: 2}
"""

EXPECTED = [
    Layer("conv1", n=1, k=64, c=3, p=112, q=112, r=7, s=7, stride=2, padding=3),
    Layer("block.conv", n=1, k=64, c=64, p=56, q=56, r=3, s=3, padding=1, count=3),
    Layer("dw", n=2, k=32, c=32, p=28, q=14, r=3, s=1, groups=32),
    Layer.gemm("fc", m=1, k=2048, n=1000, count=2),
]


def test_load_yaml(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(YAML_NET)
    assert load_workload_file(path) == EXPECTED
    assert get_workload(str(path)) == EXPECTED
    assert get_workload(path) == EXPECTED


def test_load_json_and_dump_round_trip(tmp_path):
    path = tmp_path / "net.json"
    path.write_text(json.dumps([{"name": "a", "k": 8, "c": 4, "p": 5, "r": 1},
                                {"name": "b", "k": 8, "c": 8, "h": 10, "w": 6, "r": 3, "pad": 1, "stride": 2},
                                {"name": "g", "gemm": {"m": 3, "k": 4, "n": 5}}], indent=2))
    layers = load_workload_file(path)
    assert layers == [Layer("a", n=1, k=8, c=4, p=5, q=5, r=1, s=1),
                      Layer("b", n=1, k=8, c=8, p=5, q=3, r=3, s=3, stride=2, padding=1),
                      Layer.gemm("g", m=3, k=4, n=5)]
    # What dumps_workload writes (one layer a line, canonical keys) reads back equal,
    # and a file without a known suffix is read as YAML, a superset of JSON.
    out = tmp_path / "net_out"
    out.write_text(dumps_workload(EXPECTED))
    assert load_workload_file(out) == EXPECTED
    assert get_workload(str(out)) == EXPECTED      # an existing file, no suffix
    assert all(list(json.loads(line.rstrip(","))) == list(RECORD_KEYS)
               for line in dumps_workload(EXPECTED).splitlines()[1:-1])


def _error(tmp_path, name, text) -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(WorkloadError) as exc:
        load_workload_file(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}:")
    return msg.removeprefix(str(path))


def test_yaml_errors_name_line_layer_and_key(tmp_path):
    bad_stride = YAML_NET.replace("  padding: 1\n", "  padding: 1\n  stride: 0\n")
    assert _error(tmp_path, "a.yaml", bad_stride) == (
        ":3: layer 2 'block.conv': stride must be an integer from 1 to 16; got 0")
    bad_pad = YAML_NET.replace("pad: 3}", "pad: 7}")
    assert _error(tmp_path, "b.yaml", bad_pad) == (
        ":2: layer 1 'conv1': padding must be an integer from 0 to min(r, s) - 1 = 6; got 7")
    # The third layer starts at line 10; 'groups' must divide the channels.
    bad_groups = YAML_NET.replace("groups: 32", "groups: 5")
    assert _error(tmp_path, "c.yml", bad_groups) == (
        ":10: layer 3 'dw': groups must divide both c (32) and k (32); got 5")
    unknown = YAML_NET.replace("  count: 3\n", "  cout: 3\n")
    msg = _error(tmp_path, "d.yaml", unknown)
    assert msg.startswith(":3: layer 2 'block.conv': unknown key(s) 'cout'; allowed: name, n, k, c, p, q, r, s,")
    missing = YAML_NET.replace("  c: 64\n", "")
    assert _error(tmp_path, "e.yaml", missing) == (
        ":3: layer 2 'block.conv': missing key(s) c; a conv layer needs name, k, c, r and p (or h)")
    not_int = YAML_NET.replace("r: 7,", "r: 7.5,")
    assert _error(tmp_path, "f.yaml", not_int) == ":2: layer 1 'conv1': kernel must be an integer; got 7.5"
    gemm = YAML_NET.replace("n: 1000}", "n: 0}")
    assert _error(tmp_path, "g.yaml", gemm) == ":19: layer 4 'fc': gemm.n must be an integer >= 1; got 0"
    gemm_extra = YAML_NET.replace("count: 2}", "count: 2, r: 3}")
    assert _error(tmp_path, "h.yaml", gemm_extra) == (
        ":19: layer 4 'fc': a gemm layer takes only name, gemm and count; got also 'r'")
    both = YAML_NET.replace("pad: 3}", "pad: 3, padding: 3}")
    assert _error(tmp_path, "i.yaml", both) == ":2: layer 1 'conv1': give pad or padding (an alias), not both"
    dup = YAML_NET.replace("name: dw", "name: conv1")
    assert _error(tmp_path, "j.yaml", dup) == (
        ":10: layer 3 'conv1': name 'conv1' is already used by the layer at line 2")
    both_p_h = YAML_NET.replace("  p: 56\n", "  p: 56\n  h: 56\n")
    assert _error(tmp_path, "k.yaml", both_p_h) == ":3: layer 2 'block.conv': give p or h, not both"


def test_json_errors_name_line_layer_and_key(tmp_path):
    layers = [{"name": "a", "k": 8, "c": 4, "p": 5, "r": 1},
              {"name": "b", "k": 8, "c": 4, "p": 5, "r": 1, "stride": 17},
              {"name": "c", "k": 8, "c": 4, "p": 5, "r": 1, "stide": 2}]
    text = json.dumps(layers, indent=2)              # each layer spans 8 or 9 lines
    starts = [i + 1 for i, line in enumerate(text.splitlines()) if line == "  {"]
    assert starts == [2, 9, 17]
    assert _error(tmp_path, "a.json", text) == (
        ":9: layer 2 'b': stride must be an integer from 1 to 16; got 17")
    del layers[1]["stride"]                        # layer 3 now starts at line 16
    msg = _error(tmp_path, "b.json", json.dumps(layers, indent=2))
    assert msg.startswith(":16: layer 3 'c': unknown key(s) 'stide'; allowed: name, n, k, c, p, q, r, s, stride, pad,")
    # Several layers on one line, with odd spacing: the line of the layer's '{'.
    compact = '[ {"name": "a", "k": 8, "c": 4, "p": 5, "r": 1} ,\n\n  {"name": 7, "k": 1, "c": 1, "p": 1, "r": 1} ]'
    assert _error(tmp_path, "c.json", compact) == ":3: layer 2: Layer.name must be a non-empty string; got 7"
    assert _error(tmp_path, "d.json", '[\n {"name": "a",\n  "k": 8,}\n]') == (
        ":3: invalid JSON: Expecting property name enclosed in double quotes (column 10)")
    assert _error(tmp_path, "e.json", '{"name": "a"}') == (
        ":1: expected a list of layer objects at the top level; got dict")
    assert _error(tmp_path, "f.json", "[]") == ":1: the workload has no layers"
    assert _error(tmp_path, "g.json", '[\n 3\n]') == (
        ":2: layer 1: a layer must be an object of keys and values; got int 3")


def test_file_level_errors(tmp_path):
    assert _error(tmp_path, "a.yaml", "- {name: a, k: [1, 2}\n") .startswith(":1: invalid YAML: ")
    assert _error(tmp_path, "b.yaml", "") == ":1: expected a list of layer objects at the top level; got an empty file"
    missing = tmp_path / "missing.yaml"
    with pytest.raises(WorkloadError, match=r"missing.yaml: cannot read the workload file: No such file"):
        get_workload(str(missing))
    path = tmp_path / "ok.yaml"
    path.write_text(YAML_NET)
    with pytest.raises(WorkloadError, match="batch 2 applies only to the built-in networks"):
        get_workload(str(path), batch=2)


# ---- CLI ----------------------------------------------------------------------------
def test_cli_lists_workloads(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "layers", "unique", "GMACs"]
    rows = {line.split()[0]: line.split()[1:] for line in out[1:]}
    assert set(rows) == NAMES
    assert rows["resnet50"] == ["54", "24", "4.089"]
    assert rows["vgg16"] == ["16", "12", "15.470"]
    assert rows["bert"] == ["360", "5", "11.174"]


def test_cli_table(capsys):
    assert main(["resnet50"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["name", "n", "k", "c", "p", "q", "r", "s", "stride", "pad", "groups",
                                "count", "MACs"]
    assert lines[1].split() == ["conv1", "1", "64", "3", "112", "112", "7", "7", "2", "3", "1", "1",
                                "118,013,952"]
    assert len(lines) == 1 + 54 + 1 + 3
    assert lines[-3:] == ["layers         54", "unique layers  24",
                          "total MACs     4,089,184,256 (4.089 G)"]
    assert main(["resnet50", "--unique", "--batch", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 24 + 1 + 3
    assert lines[-1] == "total MACs     8,178,368,512 (8.178 G)"
    assert next(l for l in lines if l.startswith("layer1.0.conv3 ")).split()[-2:] == ["4", "411,041,792"]


def test_cli_json(capsys, tmp_path):
    assert main(["mobilenetv2", "--json"]) == 0
    out = capsys.readouterr().out
    records = json.loads(out)                      # nothing but the JSON on stdout
    assert len(records) == 53
    assert all(list(r) == ["name", "n", "k", "c", "p", "q", "r", "s", "stride", "pad", "groups", "count"]
               for r in records)
    assert records[0] == {"name": "stem", "n": 1, "k": 32, "c": 3, "p": 112, "q": 112, "r": 3, "s": 3,
                          "stride": 2, "pad": 1, "groups": 1, "count": 1}
    # The JSON output is a workload file.
    path = tmp_path / "mbv2.json"
    path.write_text(out)
    assert load_workload_file(path) == mobilenetv2()
    assert main([str(path), "--unique", "--json"]) == 0
    merged = json.loads(capsys.readouterr().out)
    assert sum(r["count"] for r in merged) == 53 and len(merged) == 31


def test_cli_errors(capsys, tmp_path):
    assert main(["nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: unknown workload 'nope'") and captured.err.count("\n") == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: a, k: 8, c: 4, p: 5, r: 1, stride: 99}\n")
    assert main([str(bad)]) == 2
    assert capsys.readouterr().err == (
        f"error: {bad}:1: layer 1 'a': stride must be an integer from 1 to 16; got 99\n")
    assert main(["resnet50", "--batch", "0"]) == 2
    assert capsys.readouterr().err == "error: batch must be an integer >= 1; got 0\n"
    assert main(["--frobnicate"]) == 2
    assert capsys.readouterr().err == "error: unrecognized arguments: --frobnicate\n"
    assert main(["--json"]) == 2
    assert capsys.readouterr().err == "error: --json and --unique need a workload NAME or FILE\n"
