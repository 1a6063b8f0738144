"""CIFAR-style VGG (3×3 convolutions with batch norm, max-pool stages, one linear classifier).

The width knob is the first layer's channel count; every later layer keeps vanilla VGG's ratio to it
(64 → 128 → 256 → 512), so width 64 is the vanilla network. Pools round up (ceil mode), so the five
stages reduce 32×32 and 28×28 inputs alike to 1×1; a global average pool before the classifier (the
identity on 1×1) lets larger images through too, as ResNet's does.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from sparsecap.models.layouts import POOL, VGG_LAYOUTS
from sparsecap.sparsity.masked import MaskedConv2d, MaskedLinear

VANILLA_WIDTH = 64


def build_vgg(input_shape: tuple[int, int, int], num_classes: int, width: int, depth: int) -> nn.Sequential:
    """VGG`depth` with `width` channels in its first layer."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = input_shape[0]
    convolution, pool = 0, 0
    for entry in VGG_LAYOUTS[depth]:
        if entry == POOL:
            pool += 1
            layers[f"pool{pool}"] = nn.MaxPool2d(2, ceil_mode=True)
            continue
        convolution += 1
        out_channels = int(entry) * width // VANILLA_WIDTH
        layers[f"conv{convolution}"] = MaskedConv2d(channels, out_channels, 3, padding=1)
        layers[f"norm{convolution}"] = nn.BatchNorm2d(out_channels)
        layers[f"relu{convolution}"] = nn.ReLU()
        channels = out_channels
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["classifier"] = MaskedLinear(channels, num_classes)
    return nn.Sequential(layers)
