"""Workloads: networks as lists of `hw.layer.Layer`, derived from their definitions.

Each network function ``(batch=1, ...) -> list[Layer]`` returns the network's MAC
layers in network order, one `Layer` per occurrence (``count = 1``) with a unique
descriptive name; every output size is derived from its input size with the conv
formula ``(size + 2*padding - r) // stride + 1``. Convolutions use padding ``r // 2``
("same"), depthwise convolutions are ``groups = channels``, and fully connected layers
and the matrix products of attention are ``Layer.gemm(name, m, k, n)`` (rows m, reduction
k, columns n). Pooling, normalisation, activations, softmax, residual additions,
concatenations and embedding look-ups are not MAC layers on this accelerator and are
left out everywhere. `unique_layers` merges equal shapes (summing ``count``) so a
search evaluates each distinct shape once and weights it by its repeat count;
`total_macs` is the network total either way. Totals below are at batch 1.

resnet50 (ResNet-50, 224 x 224)
    torchvision's definition (v1.5: the stride 2 of a stage's first bottleneck sits on
    its 3x3 conv, and the shortcut is a 1x1 stride-s projection "downsample"):
    stem 7x7/2 conv 64 (padding 3), 3x3/2 max pool (padding 1; not a layer), four
    stages of [3, 4, 6, 3] bottlenecks of widths 64/128/256/512 with expansion 4,
    global average pool (not a layer), FC 2048 -> 1000 as ``Layer.gemm(m=batch,
    k=2048, n=1000)``. 53 convs + 1 FC = 54 layers, 4,089,184,256 MACs, 24 unique
    shapes (torchvision lists 4.09 GFLOPS, counting multiply-adds).

bert (BERT-base encoder, 128 tokens)
    Devlin et al. 2019: 12 encoder layers, hidden 768, 12 heads of 64, feed-forward
    3072. Per layer and sample (s = 128 tokens): the Q, K and V projections and the
    attention output projection (m = s*batch, 768 -> 768), then for every sample and
    head one GEMM for the scores Q K^T (m=s, k=64, n=s) and one for the context
    softmax(.) V (m=s, k=s, n=64): the heads are separate GEMM layers because each
    multiplies its own activations (there are no shared weights to batch them over),
    named ``...scores.head{h}`` (``...scores.sample{b}.head{h}`` when batch > 1); then
    FF1 (768 -> 3072) and FF2 (3072 -> 768). Embeddings, layer norms, softmax, the
    pooler and task heads are left out. 12 x 30 = 360 layers, 5 unique shapes,
    11,173,625,856 MACs (MobileBERT, Sun et al. 2020, Table 4 gives 22.5 G FLOPs
    for BERT-base at 128 tokens, about 11.2 G multiply-adds).

transformer (Transformer base, 128 source and 128 target tokens)
    Vaswani et al. 2017, base model: d_model 512, 8 heads of 64, feed-forward 2048, 6
    encoder layers (self-attention, FF) and 6 decoder layers (self-attention,
    cross-attention over the encoder's 128 outputs, FF), attention GEMMs as in bert.
    The decoder runs on all 128 target tokens at once (training or prefill): its
    masked self-attention is computed densely, as frameworks do. Cross-attention
    projects its queries from the decoder (m = target tokens) and its keys and values
    from the encoder output (m = source tokens). The embeddings and the output
    projection to the vocabulary (tied to the embeddings; its size depends on the
    tokenizer) are left out. 6 x 22 + 6 x 42 = 384 layers, 5 unique shapes,
    5,939,134,464 MACs.

unet (U-Net, 1 x 256 x 256 input, "same" convs)
    Ronneberger et al. 2015 with one change: the 3x3 convs have padding 1, so the
    feature maps keep their size and the skip connections need no cropping (the
    paper's valid convs take a 572 x 572 tile to 388 x 388). 1 input channel and 2
    classes as in the paper. Encoder: four levels of two 3x3 convs (64, 128, 256,
    512 channels at 256, 128, 64, 32) each followed by a 2x2 max pool (not a layer),
    and two 3x3 convs of 1024 at 16 x 16. Decoder: four levels of a 2x2 stride-2
    up-convolution halving the channels, concatenation with the skip (not a layer)
    and two 3x3 convs; then a 1x1 conv to the classes. The up-convolution (a 2x2
    stride-2 transposed conv, as in the reference implementations) writes each input
    pixel to its own 2x2 output patch, so it is exactly a 1x1 conv at the low
    resolution producing 4 x C_out channels (same MACs, weights and inputs; the
    outputs are a pixel shuffle of its result); it is modelled that way and named
    ``up{level}``. 23 convs (the paper's count), 48,096,083,968 MACs. The image
    size must be a multiple of 16.

retinanet (RetinaNet heads, 640 x 640)
    Lin et al. 2017, ResNet-50-FPN, the heads only (the backbone and the FPN are not
    included): on every pyramid level P3..P7 (strides 8..128) a classification subnet
    of 4 x [3x3 conv 256 -> 256] and a 3x3 conv 256 -> A*K (A = 9 anchors, K = 80
    COCO classes) and a box subnet of 4 x [3x3 conv 256 -> 256] and a 3x3 conv 256 ->
    4A. The subnets' weights are shared across levels, but each level is its own
    layer (its own feature-map size). The level sizes are derived from the input
    through ResNet-50's stride-2 layers (conv1, max pool, the strided 3x3 of stages
    2-4: C3..C5) and the two 3x3/2 convs that make P6 and P7: 80, 40, 20, 10, 5 at
    640 x 640 (the 640 x 640 input of TF2's "RetinaNet50" model-zoo entry; the paper
    resizes the shorter side to 800). 5 x 10 = 50 layers, 55,075,046,400 MACs.

vgg16 (VGG-16, 224 x 224)
    Simonyan & Zisserman 2015, configuration D: 13 3x3 convs with padding 1 (64, 64 |
    128, 128 | 256 x 3 | 512 x 3 | 512 x 3, a 2x2 max pool after each group) and three
    FC layers as GEMMs: 25088 -> 4096, 4096 -> 4096, 4096 -> 1000 (torchvision's
    adaptive pool to 7 x 7 keeps fc6 at 25088 inputs for any image size). 16 layers,
    15,470,264,320 MACs (torchvision lists 15.47 GFLOPS, counting multiply-adds).

mobilenetv2 (MobileNetV2 1.0, 224 x 224)
    Sandler et al. 2018, Table 2: stem 3x3/2 conv 32, then the inverted residual
    bottlenecks (t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1)
    (6,160,3,2) (6,320,1,1), each a 1x1 expansion to t x C_in (absent when t = 1), a
    3x3 depthwise conv (stride s on a group's first block) and a 1x1 projection; then
    a 1x1 conv to 1280 and the FC 1280 -> 1000. Blocks are named ``block1`` ..
    ``block17`` (torchvision's features.1 .. features.17). 52 convs + FC = 53 layers,
    300,774,272 MACs (the paper's Table 4: 300 M multiply-adds).

mnasnet (MnasNet-A1, 224 x 224)
    Tan et al. 2019, Figure 7(a), with the block arguments of the authors' reference
    implementation (tensorflow/tpu models/official/mnasnet, ``mnasnet_a1``):
    stem 3x3/2 conv 32; a separable conv (3x3 depthwise 32, 1x1 to 16); MBConv blocks
    (repeats, kernel, stride, expansion, C_out, SE) = (2,3,2,6,24,-) (3,5,2,3,40,SE)
    (4,3,2,6,80,-) (2,3,1,6,112,SE) (3,5,2,6,160,SE) (1,3,1,6,320,-), each a 1x1
    expansion, a kxk depthwise conv, optionally squeeze-and-excitation, and a 1x1
    projection; then a 1x1 conv to 1280 and the FC 1280 -> 1000. Squeeze-and-excitation
    (global average pool, FC C_exp -> int(C_in / 4), FC back to C_exp, a scale) is
    included as its two FCs, GEMMs with m = batch (``se=False`` leaves them out). This
    is not torchvision's ``mnasnet1_0``, which is MnasNet-B1 (no SE, other blocks).
    49 convs + 16 SE FCs + FC = 66 layers, 311,579,072 MACs (311,325,344 without SE;
    the paper's Table 1: 312 M multiply-adds, the reference README: 315.2 M).

Registry: ``WORKLOADS[name]`` is the network function; `get_workload` takes a name,
the path of a user's workload file (`search.workload_file`) or the path of an ONNX
model (``.onnx``, imported by `search.importers.import_onnx`: its unique layers with
their repeat counts).

CLI: ``python -m search.workloads`` lists the workloads; ``python -m search.workloads
NAME|FILE [--json] [--unique] [--batch B]`` prints one's layers (see ``--help``);
``python -m search.workloads import MODEL.onnx [--input-shape D,D,...]... [--out FILE]``
imports a model: it prints the layer table (layers, unique layers, MACs, skipped ops)
and writes a workload file (see ``import --help``); bad input prints one ``error:``
line and exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from hw.cli import OneLineParser, UsageError, print_error, run_main, slow_notice
from hw.layer import Layer, LayerError, check_workload
from search.workload_file import (
    FILE_SUFFIXES,
    WorkloadError,
    dumps_workload,
    layer_record,
    load_workload_file,
    write_workload_file,
)

#: Model files that `get_workload` imports (`search.importers`).
MODEL_SUFFIXES = (".onnx",)

#: Largest batch of a built-in network: BERT and the Transformer, one GEMM per sample and
#: head, are about 74,000 layers at 256 (within `hw.layer.MAX_WORKLOAD_LAYERS`).
MAX_BATCH = 256

__all__ = [
    "MAX_BATCH",
    "MODEL_SUFFIXES",
    "WORKLOADS",
    "WorkloadError",
    "bert",
    "get_workload",
    "load_workload_file",
    "main",
    "mnasnet",
    "mobilenetv2",
    "resnet50",
    "retinanet",
    "total_macs",
    "transformer",
    "unet",
    "unique_layers",
    "vgg16",
]


def _out(size: int, ker: int, stride: int, padding: int) -> int:
    """Output size of a conv/pool window: (size + 2*padding - ker) // stride + 1."""
    return (size + 2 * padding - ker) // stride + 1


@dataclass
class _Net:
    """The layers of one network under construction (local to one network call)."""

    batch: int
    layers: list[Layer] = field(default_factory=list)

    def conv(self, name: str, c: int, k: int, r: int, size: int,
             stride: int = 1, groups: int = 1) -> int:
        """Append a square conv with padding r // 2 on a size x size input; return its output size."""
        layer = Layer.conv(name, n=self.batch, k=k, c=c, r=r, h=size,
                           stride=stride, padding=r // 2, groups=groups)
        self.layers.append(layer)
        return layer.p

    def depthwise(self, name: str, channels: int, r: int, size: int, stride: int = 1) -> int:
        """Append a depthwise conv (groups = channels); return its output size."""
        return self.conv(name, channels, channels, r, size, stride=stride, groups=channels)

    def gemm(self, name: str, m: int, k: int, n: int) -> None:
        """Append C[m x n] = A[m x k] @ B[k x n]."""
        self.layers.append(Layer.gemm(name, m=m, k=k, n=n))


# ---- CNNs ---------------------------------------------------------------------------
def resnet50(batch: int = 1, image: int = 224) -> list[Layer]:
    """ResNet-50 v1.5 (torchvision) at ``image x image``: 53 convs + the FC, in order."""
    net = _Net(batch)

    # Stem: 7x7/2 conv, then a 3x3/2 max pool with padding 1 (not a layer).
    size = net.conv("conv1", 3, 64, 7, image, stride=2)
    size = _out(size, 3, 2, 1)
    in_ch = 64

    expansion = 4
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        out_ch = width * expansion
        for b in range(blocks):
            stride = 2 if (stage > 1 and b == 0) else 1
            pre = f"layer{stage}.{b}"
            block_in = size
            s1 = net.conv(f"{pre}.conv1", in_ch, width, 1, block_in)
            s2 = net.conv(f"{pre}.conv2", width, width, 3, s1, stride=stride)
            s3 = net.conv(f"{pre}.conv3", width, out_ch, 1, s2)
            if b == 0:  # projection shortcut (channel change, and stride in stages 2-4)
                sd = net.conv(f"{pre}.downsample", in_ch, out_ch, 1, block_in, stride=stride)
                assert sd == s3, (sd, s3)
            size, in_ch = s3, out_ch

    # Global average pool (not a layer), then the classifier as a GEMM.
    net.gemm("fc", m=batch, k=in_ch, n=1000)
    return net.layers


def vgg16(batch: int = 1, image: int = 224, classes: int = 1000) -> list[Layer]:
    """VGG-16 (configuration D) at ``image x image``: 13 3x3 convs + 3 FC layers."""
    net = _Net(batch)
    size, in_ch = image, 3
    for group, (width, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), start=1):
        for i in range(1, convs + 1):
            size = net.conv(f"conv{group}_{i}", in_ch, width, 3, size)
            in_ch = width
        size = _out(size, 2, 2, 0)                    # 2x2 max pool (not a layer)
    # torchvision: adaptive average pool to 7 x 7 (not a layer), so fc6 reads 512*7*7.
    net.gemm("fc6", m=batch, k=in_ch * 7 * 7, n=4096)
    net.gemm("fc7", m=batch, k=4096, n=4096)
    net.gemm("fc8", m=batch, k=4096, n=classes)
    return net.layers


# MobileNetV2, Sandler et al. 2018, Table 2: (expansion t, channels c, repeats n, stride s).
_MOBILENETV2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenetv2(batch: int = 1, image: int = 224, classes: int = 1000) -> list[Layer]:
    """MobileNetV2 (width 1.0) at ``image x image``: 52 convs + the FC, in order."""
    net = _Net(batch)
    size = net.conv("stem", 3, 32, 3, image, stride=2)
    in_ch, index = 32, 0
    for t, c, n, s in _MOBILENETV2_BLOCKS:
        for i in range(n):
            index += 1
            pre = f"block{index}"
            hidden = in_ch * t
            if t != 1:
                net.conv(f"{pre}.expand", in_ch, hidden, 1, size)
            size = net.depthwise(f"{pre}.dw", hidden, 3, size, stride=s if i == 0 else 1)
            net.conv(f"{pre}.project", hidden, c, 1, size)
            in_ch = c
    net.conv("head", in_ch, 1280, 1, size)
    net.gemm("fc", m=batch, k=1280, n=classes)      # after the global average pool
    return net.layers


# MnasNet-A1 (tensorflow/tpu mnasnet_models.mnasnet_a1) after the separable conv:
# (repeats, kernel, stride, expansion, output channels, squeeze-and-excitation).
_MNASNET_A1_BLOCKS = ((2, 3, 2, 6, 24, False), (3, 5, 2, 3, 40, True), (4, 3, 2, 6, 80, False),
                      (2, 3, 1, 6, 112, True), (3, 5, 2, 6, 160, True), (1, 3, 1, 6, 320, False))


def mnasnet(batch: int = 1, image: int = 224, classes: int = 1000, se: bool = True) -> list[Layer]:
    """MnasNet-A1 at ``image x image``: 49 convs, 16 SE FCs (``se=True``) and the FC."""
    net = _Net(batch)
    size = net.conv("stem", 3, 32, 3, image, stride=2)
    # Separable conv: 3x3 depthwise, 1x1 projection to 16 (no expansion, no skip).
    size = net.depthwise("block1.dw", 32, 3, size)
    net.conv("block1.project", 32, 16, 1, size)
    in_ch, index = 16, 1
    for repeats, kernel, stride, t, out_ch, has_se in _MNASNET_A1_BLOCKS:
        for i in range(repeats):
            index += 1
            pre = f"block{index}"
            hidden = in_ch * t
            net.conv(f"{pre}.expand", in_ch, hidden, 1, size)
            size = net.depthwise(f"{pre}.dw", hidden, kernel, size, stride=stride if i == 0 else 1)
            if has_se and se:
                # Squeeze to int(C_in * 0.25) (the reference's se_ratio on the block input).
                reduced = max(1, in_ch // 4)
                net.gemm(f"{pre}.se.reduce", m=batch, k=hidden, n=reduced)
                net.gemm(f"{pre}.se.expand", m=batch, k=reduced, n=hidden)
            net.conv(f"{pre}.project", hidden, out_ch, 1, size)
            in_ch = out_ch
    net.conv("head", in_ch, 1280, 1, size)
    net.gemm("fc", m=batch, k=1280, n=classes)
    return net.layers


def unet(batch: int = 1, image: int = 256, in_channels: int = 1, classes: int = 2) -> list[Layer]:
    """U-Net with padded 3x3 convs at ``image x image``: 23 convs (up-convs as 1x1 convs)."""
    if image % 16:
        raise WorkloadError(f"unet: image must be a multiple of 16 (four 2x2 pools); got {image}")
    net = _Net(batch)
    widths = (64, 128, 256, 512)
    size, in_ch = image, in_channels
    skips: list[tuple[int, int]] = []                 # (channels, size) of each level's output
    for level, width in enumerate(widths, start=1):
        size = net.conv(f"enc{level}.conv1", in_ch, width, 3, size)
        size = net.conv(f"enc{level}.conv2", width, width, 3, size)
        skips.append((width, size))
        size, in_ch = _out(size, 2, 2, 0), width      # 2x2 max pool (not a layer)
    size = net.conv("bottom.conv1", in_ch, 1024, 3, size)
    size = net.conv("bottom.conv2", 1024, 1024, 3, size)
    in_ch = 1024
    for level in range(len(widths), 0, -1):
        width, skip_size = skips[level - 1]
        # 2x2 stride-2 transposed conv in_ch -> width == 1x1 conv in_ch -> 4*width at
        # the low resolution, then a pixel shuffle to 2*size (module docstring).
        net.conv(f"up{level}", in_ch, 4 * width, 1, size)
        size *= 2
        assert size == skip_size, (size, skip_size)
        # Concatenation with the skip (not a layer): 2*width channels.
        size = net.conv(f"dec{level}.conv1", 2 * width, width, 3, size)
        size = net.conv(f"dec{level}.conv2", width, width, 3, size)
        in_ch = width
    net.conv("final", in_ch, classes, 1, size)
    return net.layers


def _retinanet_levels(image: int) -> list[int]:
    """Feature-map sizes of P3..P7 for an ``image x image`` input to ResNet-50-FPN."""
    size = _out(image, 7, 2, 3)                       # conv1, stride 2
    size = _out(size, 3, 2, 1)                        # max pool: C2, stride 4
    sizes = []
    for _ in range(3):                                # stages 2-4, 3x3/2 convs: C3, C4, C5
        size = _out(size, 3, 2, 1)
        sizes.append(size)
    for _ in range(2):                                # P6 and P7: 3x3/2 convs
        size = _out(size, 3, 2, 1)
        sizes.append(size)
    return sizes


def retinanet(batch: int = 1, image: int = 640, classes: int = 80, anchors: int = 9) -> list[Layer]:
    """RetinaNet's classification and box subnets on P3..P7 (heads only): 50 convs."""
    net = _Net(batch)
    width = 256
    for level, size in enumerate(_retinanet_levels(image), start=3):
        for subnet, outputs, last in (("cls", anchors * classes, "logits"), ("box", 4 * anchors, "deltas")):
            pre = f"P{level}.{subnet}"
            for i in range(1, 5):
                net.conv(f"{pre}.conv{i}", width, width, 3, size)
            net.conv(f"{pre}.{last}", width, outputs, 3, size)
    return net.layers


# ---- Transformers -------------------------------------------------------------------
def _attention(net: _Net, pre: str, d_model: int, heads: int, tokens: int, kv_tokens: int) -> None:
    """Multi-head attention: Q from `tokens` rows, K and V from `kv_tokens` rows."""
    if d_model % heads:
        raise WorkloadError(f"{pre}: d_model ({d_model}) must be a multiple of heads ({heads})")
    batch, d_head = net.batch, d_model // heads
    net.gemm(f"{pre}.query", m=tokens * batch, k=d_model, n=d_model)
    net.gemm(f"{pre}.key", m=kv_tokens * batch, k=d_model, n=d_model)
    net.gemm(f"{pre}.value", m=kv_tokens * batch, k=d_model, n=d_model)
    # One GEMM per sample and head: each multiplies two activation matrices.
    tags = [f"head{h}" if batch == 1 else f"sample{b}.head{h}"
            for b in range(batch) for h in range(heads)]
    for tag in tags:                                  # S = Q_h K_h^T
        net.gemm(f"{pre}.scores.{tag}", m=tokens, k=d_head, n=kv_tokens)
    for tag in tags:                                  # O_h = softmax(S) V_h
        net.gemm(f"{pre}.context.{tag}", m=tokens, k=kv_tokens, n=d_head)
    net.gemm(f"{pre}.out", m=tokens * batch, k=d_model, n=d_model)


def _feed_forward(net: _Net, pre: str, d_model: int, d_ff: int, tokens: int) -> None:
    net.gemm(f"{pre}.fc1", m=tokens * net.batch, k=d_model, n=d_ff)
    net.gemm(f"{pre}.fc2", m=tokens * net.batch, k=d_ff, n=d_model)


def bert(batch: int = 1, tokens: int = 128, layers: int = 12, d_model: int = 768,
         heads: int = 12, d_ff: int = 3072) -> list[Layer]:
    """BERT-base encoder GEMMs: 12 layers x (Q, K, V, 12+12 head GEMMs, out, FF1, FF2)."""
    net = _Net(batch)
    for i in range(layers):
        _attention(net, f"encoder.{i}.self_attn", d_model, heads, tokens, tokens)
        _feed_forward(net, f"encoder.{i}.ffn", d_model, d_ff, tokens)
    return net.layers


def transformer(batch: int = 1, src_tokens: int = 128, tgt_tokens: int = 128, layers: int = 6,
                d_model: int = 512, heads: int = 8, d_ff: int = 2048) -> list[Layer]:
    """Transformer base GEMMs: 6 encoder layers, then 6 decoder layers with cross-attention."""
    net = _Net(batch)
    for i in range(layers):
        _attention(net, f"encoder.{i}.self_attn", d_model, heads, src_tokens, src_tokens)
        _feed_forward(net, f"encoder.{i}.ffn", d_model, d_ff, src_tokens)
    for i in range(layers):
        _attention(net, f"decoder.{i}.self_attn", d_model, heads, tgt_tokens, tgt_tokens)
        _attention(net, f"decoder.{i}.cross_attn", d_model, heads, tgt_tokens, src_tokens)
        _feed_forward(net, f"decoder.{i}.ffn", d_model, d_ff, tgt_tokens)
    return net.layers


# ---- totals, registry ---------------------------------------------------------------
def unique_layers(layers: Iterable[Layer]) -> list[Layer]:
    """Merge layers of equal `Layer.shape`, summing ``count``; first name, first-seen order."""
    merged: dict[tuple, Layer] = {}
    for layer in layers:
        key = layer.shape()
        first = merged.get(key)
        if first is None:
            merged[key] = layer
        else:
            merged[key] = Layer(**{**first.to_dict(), "count": first.count + layer.count})
    return list(merged.values())


def total_macs(layers: Iterable[Layer]) -> int:
    """Network multiply-accumulates: sum of macs * count."""
    return sum(layer.macs * layer.count for layer in layers)


WORKLOADS: Mapping[str, Callable[..., list[Layer]]] = MappingProxyType({
    "resnet50": resnet50,
    "bert": bert,
    "transformer": transformer,
    "unet": unet,
    "retinanet": retinanet,
    "vgg16": vgg16,
    "mobilenetv2": mobilenetv2,
    "mnasnet": mnasnet,
})


def _is_model_file(name) -> bool:
    return os.fspath(name).lower().endswith(MODEL_SUFFIXES)


def _is_workload_file(name) -> bool:
    return str(name).lower().endswith(FILE_SUFFIXES) or os.path.isfile(name)


def get_workload(name: str | os.PathLike, batch: int = 1) -> list[Layer]:
    """The layers of a registered workload (default arguments, this batch), of a workload
    file, or of an ONNX model.

    A registered name wins; otherwise a `name` ending in .onnx is imported
    (`search.importers.import_onnx`: the unique layers with their counts; a model with
    dynamic input shapes needs ``python -m search.workloads import MODEL --input-shape
    ...`` first), and `name` is read as a workload file when it ends in .json, .yaml or
    .yml or names an existing file. A file's or model's layers carry their own batch
    (``n``), so ``batch`` must stay 1 for it. Raises `WorkloadError` (a ValueError, one
    line) for an unknown name, a bad file or model, a bad batch (1..`MAX_BATCH`), or a
    workload beyond `hw.layer.check_workload`'s limits (entries, total MACs).
    """
    _check_batch(batch)
    fn = WORKLOADS.get(name) if isinstance(name, str) else None
    if fn is not None:
        try:
            layers = fn(batch=batch)
        except LayerError as e:   # a size limit of hw.layer
            raise WorkloadError(f"{name} at batch {batch}: {e}") from None
        where = f"{name} at batch {batch}"
    elif isinstance(name, (str, os.PathLike)) and (_is_model_file(name) or _is_workload_file(name)):
        if batch != 1:
            raise WorkloadError(f"{os.fspath(name)}: a workload file or model sets each layer's batch (n); "
                                f"batch {batch} applies only to the built-in networks")
        where = os.fspath(name)
        if _is_model_file(name):
            from search.importers import DynamicShapeError, import_onnx  # onnx is imported only for a model
            try:
                layers = import_onnx(name).layers
            except DynamicShapeError as e:  # a workload argument has no input shape: say how to give one
                raise WorkloadError(f"{e.where}: {e.problem}; write a workload file with its input shape: "
                                    f"python -m search.workloads import {e.where} --input-shape {e.example} "
                                    "--out FILE.yaml") from None
        else:
            layers = load_workload_file(name)
    else:
        raise WorkloadError(f"unknown workload {name!r}; known: {sorted(WORKLOADS)} "
                            f"(or a workload file ending in {', '.join(FILE_SUFFIXES)}, "
                            f"or a model ending in {', '.join(MODEL_SUFFIXES)})")
    try:
        check_workload(layers, where)
    except LayerError as e:
        raise WorkloadError(str(e)) from None
    return layers


def _check_batch(batch) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise WorkloadError(f"batch must be an integer >= 1; got {batch!r}")
    if batch > MAX_BATCH:
        raise WorkloadError(f"batch must be an integer from 1 to {MAX_BATCH} (the built-in networks' limit); "
                            f"got {batch}")


# ---- CLI ----------------------------------------------------------------------------
_TABLE_COLUMNS = ("n", "k", "c", "p", "q", "r", "s", "stride", "pad", "groups", "count")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m search.workloads",
        description="List the built-in workloads, or print one workload's layers. "
                    "'layers' counts occurrences (sum of count); MACs are per row, times count.",
        epilog="Import a model: python -m search.workloads import MODEL.onnx [--input-shape D,D,...] "
               "[--out FILE] (see: python -m search.workloads import --help).")
    p.add_argument("name", nargs="?", metavar="NAME|FILE",
                   help=f"a workload ({', '.join(WORKLOADS)}), a .json/.yaml/.yml workload file "
                        "or a .onnx model; without it, list the workloads")
    p.add_argument("--json", action="store_true",
                   help="print the layers as a JSON list (keys: " + ", ".join(("name",) + _TABLE_COLUMNS)
                        + "), nothing else")
    p.add_argument("--unique", action="store_true", help="merge equal shapes, summing count")
    p.add_argument("--batch", type=int, default=1, metavar="B",
                   help=f"batch size of a built-in network, 1..{MAX_BATCH} (default 1)")
    return p


def _table(rows: list[list[str]], left: int = 1) -> str:
    """Columns padded to their widest cell; the first `left` columns left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        .rstrip() for row in rows)


def _list_workloads(batch: int) -> str:
    rows = [["name", "layers", "unique", "GMACs"]]
    for name in WORKLOADS:
        layers = get_workload(name, batch=batch)
        rows.append([name, str(sum(l.count for l in layers)), str(len(unique_layers(layers))),
                     f"{total_macs(layers) / 1e9:.3f}"])
    return _table(rows)


def _layer_table(layers: list[Layer], all_layers: list[Layer]) -> str:
    rows = [["name", *_TABLE_COLUMNS, "MACs"]]
    for layer in layers:
        rec = layer_record(layer)
        rows.append([layer.name, *(str(rec[c]) for c in _TABLE_COLUMNS), f"{layer.total_macs:,}"])
    macs = total_macs(all_layers)
    summary = [
        f"layers         {sum(l.count for l in all_layers)}",
        f"unique layers  {len(unique_layers(all_layers))}",
        f"total MACs     {macs:,} ({macs / 1e9:.3f} G)",
    ]
    return _table(rows) + "\n\n" + "\n".join(summary)


def _import_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m search.workloads import",
        description="Import an ONNX model as a workload: print its layer table (equal shapes merged, "
                    "with repeat counts), the totals and the ops left out, and write a workload file "
                    "that every command taking a workload accepts. Bad input prints one error: line "
                    "and exits 2.")
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX model file")
    p.add_argument("--input-shape", action="append", metavar="D,D,...", dest="input_shapes",
                   help="the shape of a graph input, e.g. 1,3,224,224 (needed when the model's "
                        "inputs have dynamic dimensions); give one per input, in the model's order")
    p.add_argument("--out", metavar="FILE", type=Path,
                   help="write the workload to FILE (.yaml, .yml or .json)")
    return p


def _check_out(path: Path) -> Path:
    if path.is_dir():
        raise WorkloadError(f"--out {path}: is a directory; give a file name ending in "
                            f"{', '.join(FILE_SUFFIXES)}")
    if not path.name.lower().endswith(FILE_SUFFIXES):
        raise WorkloadError(f"--out {path}: a workload file name ends in {', '.join(FILE_SUFFIXES)}")
    if not path.parent.is_dir():
        raise WorkloadError(f"--out {path}: the folder {path.parent} does not exist")
    return path


def _import_main(argv: list[str]) -> int:
    """``python -m search.workloads import MODEL [--input-shape D,D,...]... [--out FILE]``."""
    from search.importers import import_onnx, parse_input_shape  # onnx is imported only here

    try:
        args = _import_parser().parse_args(argv)
        shapes = None if args.input_shapes is None else [parse_input_shape(s) for s in args.input_shapes]
        out = None if args.out is None else _check_out(args.out)
        with slow_notice(f"importing {args.model} (shape inference; a large model takes a while)...", after=5.0):
            model = import_onnx(args.model, shapes)
        layers = model.layers
        summary = (f"{sum(l.count for l in layers)} layers, {len(layers)} unique, "
                   f"{model.total_macs:,} MACs")
        if out is not None:
            write_workload_file(out, layers, comment=[
                f"Imported from {args.model} by python -m search.workloads import"
                + (f" --input-shape {' --input-shape '.join(args.input_shapes)}" if shapes else "") + ":",
                summary + ".",
                f"Skipped ops: {model.skipped_text() or 'none'}."])
    except (UsageError, WorkloadError) as e:
        return print_error(e)
    table = _layer_table(layers, layers)
    skipped = f"skipped ops    {model.skipped_nodes}" + (f": {model.skipped_text()}" if model.skipped else "")
    print(table + "\n" + skipped)
    if out is not None:
        print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m search.workloads [NAME|FILE] [--json] [--unique] [--batch B]``, or
    ``python -m search.workloads import MODEL ...``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["import"]:
        return _import_main(argv[1:])
    try:
        args = _parser().parse_args(argv)
        if args.name is None:
            if args.json or args.unique:
                raise WorkloadError("--json and --unique need a workload NAME or FILE")
            _check_batch(args.batch)
            print(_list_workloads(args.batch))
            return 0
        layers = get_workload(args.name, batch=args.batch)
    except (UsageError, WorkloadError) as e:
        return print_error(e)
    shown = unique_layers(layers) if args.unique else layers
    if args.json:
        print(dumps_workload(shown))
    else:
        print(_layer_table(shown, layers))
    return 0


if __name__ == "__main__":
    run_main(main)
