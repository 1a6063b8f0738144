"""Sparse-aware initialisation: scale each layer by its effective fan-in.

A unit of a layer at density d receives on average fan_in × d inputs, so drawing weights for the
dense fan-in would shrink activations by sqrt(d) per layer. Using the effective fan-in keeps the
activation scale of the dense model; at density 1 this is exactly PyTorch's default
(U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sparsecap.sparsity.masked import MaskedLayer, masked_layers


def effective_fan_in(layer: MaskedLayer) -> float:
    """Inputs per output unit that survive the mask, on average."""
    return math.prod(layer.weight_shape[1:]) * layer.density


@torch.no_grad()
def initialize_(model: nn.Module, generator: torch.Generator) -> None:
    """Draw every maskable layer's weights and biases for its current mask, from `generator` only."""
    for _, layer in masked_layers(model):
        bound = 1.0 / math.sqrt(max(effective_fan_in(layer), 1.0))
        # Drawn at the dense shape whatever the storage, so every engine starts from the same weights.
        drawn = layer.to_stored_layout(_uniform(layer.weight_shape, bound, generator))
        layer.stored_weight.copy_(drawn * layer.stored_mask)
        if layer.bias is not None:
            layer.bias.copy_(_uniform(layer.bias.shape, bound, generator))


def _uniform(shape: torch.Size, bound: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator) * (2 * bound) - bound
