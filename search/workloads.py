"""Workloads: networks as lists of `hw.layer.Layer`, derived from their definitions.

Each network function returns its layers in network order, one `Layer` per occurrence
(``count = 1``) with a unique descriptive name. `unique_layers` merges equal shapes
(summing ``count``) so a search evaluates each distinct shape once and weights it by
its repeat count; `total_macs` is the network total either way.

ResNet-50
    torchvision's definition (v1.5: the stride 2 of a stage's first bottleneck sits on
    its 3x3 conv, and the shortcut is a 1x1 stride-s projection "downsample"):
    stem 7x7/2 conv 64 (padding 3), 3x3/2 max pool (padding 1; not a layer), four
    stages of [3, 4, 6, 3] bottlenecks of widths 64/128/256/512 with expansion 4,
    global average pool (not a layer), FC 2048 -> 1000 as ``Layer.gemm(m=batch,
    k=2048, n=1000)``. Every conv has padding r // 2 and its output size is derived
    from its input size. At 224 x 224, batch 1: 53 convs + 1 FC = 54 layers,
    4,089,184,256 MACs, 24 unique shapes.

Registry: ``WORKLOADS[name]`` is a function ``(batch=1, ...) -> list[Layer]``;
`get_workload` looks one up by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hw.layer import Layer

__all__ = ["WORKLOADS", "get_workload", "resnet50", "total_macs", "unique_layers"]


def _out(size: int, ker: int, stride: int, padding: int) -> int:
    """Output size of a conv/pool window: (size + 2*padding - ker) // stride + 1."""
    return (size + 2 * padding - ker) // stride + 1


def resnet50(batch: int = 1, image: int = 224) -> list[Layer]:
    """ResNet-50 v1.5 (torchvision) at ``image x image``: 53 convs + the FC, in order."""
    layers: list[Layer] = []

    def conv(name: str, c: int, k: int, r: int, size: int, stride: int = 1) -> int:
        """Append a square conv with padding r // 2; return its output size."""
        layer = Layer.conv(name, n=batch, k=k, c=c, r=r, h=size,
                           stride=stride, padding=r // 2)
        layers.append(layer)
        return layer.p

    # Stem: 7x7/2 conv, then a 3x3/2 max pool with padding 1 (not a layer).
    size = conv("conv1", 3, 64, 7, image, stride=2)
    size = _out(size, 3, 2, 1)
    in_ch = 64

    expansion = 4
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        out_ch = width * expansion
        for b in range(blocks):
            stride = 2 if (stage > 1 and b == 0) else 1
            pre = f"layer{stage}.{b}"
            block_in = size
            s1 = conv(f"{pre}.conv1", in_ch, width, 1, block_in)
            s2 = conv(f"{pre}.conv2", width, width, 3, s1, stride=stride)
            s3 = conv(f"{pre}.conv3", width, out_ch, 1, s2)
            if b == 0:  # projection shortcut (channel change, and stride in stages 2-4)
                sd = conv(f"{pre}.downsample", in_ch, out_ch, 1, block_in, stride=stride)
                assert sd == s3, (sd, s3)
            size, in_ch = s3, out_ch

    # Global average pool (not a layer), then the classifier as a GEMM.
    layers.append(Layer.gemm("fc", m=batch, k=in_ch, n=1000))
    return layers


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


WORKLOADS: dict[str, Callable[..., list[Layer]]] = {
    "resnet50": resnet50,
}


def get_workload(name: str) -> list[Layer]:
    """The layers of the registered workload `name` (default arguments)."""
    try:
        fn = WORKLOADS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown workload {name!r}; known: {sorted(WORKLOADS)}") from None
    return fn()
