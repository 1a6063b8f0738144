"""Fixed-capacity static sparsity: a random mask drawn at initialisation, never changed."""

from __future__ import annotations

import torch
from torch import nn

from sparsecap.sparsity.allocation import Allocation, allocate
from sparsecap.sparsity.initialization import initialize_
from sparsecap.sparsity.masked import masked_layers
from sparsecap.sparsity.random_mask import random_mask


def weight_count(model: nn.Module) -> int:
    """Weights of the maskable layers: the quantity capacity is measured in (biases excluded)."""
    return sum(layer.weight.numel() for _, layer in masked_layers(model))


def layer_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(layer.weight.shape) for _, layer in masked_layers(model)]


def mask_to_capacity(
    model: nn.Module, target: int, allocation: Allocation, generator: torch.Generator
) -> list[int]:
    """Give the model exactly `target` nonzero weights at random, shared by `allocation`; returns counts."""
    counts = allocate(layer_shapes(model), target, allocation)
    for (_, layer), count in zip(masked_layers(model), counts, strict=True):
        layer.set_mask(random_mask(layer.weight.shape, count, generator))
    return counts


def sparse_model_at_init(
    model: nn.Module,
    target: int,
    allocation: Allocation,
    mask_generator: torch.Generator,
    init_generator: torch.Generator,
) -> nn.Module:
    """Mask `model` to `target` nonzeros and initialise it for its masks (the paper's static schedule)."""
    mask_to_capacity(model, target, allocation, mask_generator)
    initialize_(model, init_generator)
    return model
