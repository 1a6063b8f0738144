"""Multi-layer perceptrons of the paper's MLP families (ReLU, biases, every linear layer maskable)."""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from sparsecap.sparsity.masked import MaskedLinear


def build_mlp(input_shape: tuple[int, int, int], num_classes: int, width: int, depth: int) -> nn.Sequential:
    """`depth` hidden layers of `width` units between the flattened input and the class logits."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    features = math.prod(input_shape)
    for index in range(1, depth + 1):
        layers[f"hidden{index}"] = MaskedLinear(features, width)
        layers[f"relu{index}"] = nn.ReLU()
        features = width
    layers["output"] = MaskedLinear(features, num_classes)
    return nn.Sequential(layers)
