"""CIFAR-style ResNet: 3×3 stem without max-pool, four stages, projection shortcuts where shapes change.

ResNet18/34 use basic blocks, ResNet50 bottleneck blocks (expansion 4). The width knob is the stem's
channel count; stage widths keep vanilla ResNet's ratios to it (64, 128, 256, 512 at width 64).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from sparsecap.models.layouts import RESNET_LAYOUTS
from sparsecap.sparsity.masked import MaskedConv2d, MaskedLinear

BOTTLENECK_EXPANSION = 4


def _convolution_norm(in_channels: int, out_channels: int, kernel: int, stride: int) -> list[nn.Module]:
    return [
        MaskedConv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]


class ResidualBlock(nn.Module):
    """A basic (two 3×3) or bottleneck (1×1, 3×3, 1×1) block with an identity or projection shortcut."""

    def __init__(self, in_channels: int, planes: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        if bottleneck:
            out_channels = planes * BOTTLENECK_EXPANSION
            layers = [
                *_convolution_norm(in_channels, planes, 1, 1), nn.ReLU(),
                *_convolution_norm(planes, planes, 3, stride), nn.ReLU(),
                *_convolution_norm(planes, out_channels, 1, 1),
            ]
        else:
            out_channels = planes
            layers = [*_convolution_norm(in_channels, planes, 3, stride), nn.ReLU(), *_convolution_norm(planes, planes, 3, 1)]
        self.residual = nn.Sequential(*layers)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(*_convolution_norm(in_channels, out_channels, 1, stride))
        self.out_channels = out_channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.residual(inputs) + self.shortcut(inputs))


def build_resnet(input_shape: tuple[int, int, int], num_classes: int, width: int, depth: int) -> nn.Sequential:
    """ResNet`depth` with `width` channels in its stem."""
    blocks_per_stage, bottleneck = RESNET_LAYOUTS[depth]
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        stem=nn.Sequential(*_convolution_norm(input_shape[0], width, 3, 1), nn.ReLU())
    )
    channels = width
    for stage, blocks in enumerate(blocks_per_stage, start=1):
        planes = width * 2 ** (stage - 1)
        stage_blocks = []
        for index in range(blocks):
            block = ResidualBlock(channels, planes, 2 if stage > 1 and index == 0 else 1, bottleneck)
            stage_blocks.append(block)
            channels = block.out_channels
        layers[f"stage{stage}"] = nn.Sequential(*stage_blocks)
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["classifier"] = MaskedLinear(channels, num_classes)
    return nn.Sequential(layers)
