"""Fixed-capacity static sparsity: a random mask drawn at initialisation, never changed."""

from __future__ import annotations

import torch
from torch import nn

from sparsecap.sparsity.allocation import Allocation, allocate, whole_kernel_counts
from sparsecap.sparsity.initialization import initialize_
from sparsecap.sparsity.mask_granularity import MaskGranularity
from sparsecap.sparsity.mask_sampling import random_mask
from sparsecap.sparsity.masked import layer_shapes, masked_layers


def mask_to_capacity(
    model: nn.Module,
    target: int,
    allocation: Allocation,
    generator: torch.Generator,
    granularity: MaskGranularity = MaskGranularity.WEIGHT,
) -> list[int]:
    """Give the model `target` nonzero weights at random, shared by `allocation`; returns per-layer counts."""
    shapes = layer_shapes(model)
    counts = allocate(shapes, target, allocation)
    if granularity is MaskGranularity.KERNEL:
        counts = whole_kernel_counts(counts, shapes, target)
    for (_, layer), count in zip(masked_layers(model), counts, strict=True):
        shape = layer.weight_shape
        if granularity is MaskGranularity.KERNEL:
            kernels = random_mask(shape[:2], count, generator)
            layer.set_mask(kernels.view(*shape[:2], *[1] * (len(shape) - 2)).expand(shape))
        else:
            layer.set_mask(random_mask(shape, count, generator))
    return [int(layer.mask.count_nonzero()) for _, layer in masked_layers(model)]


def sparse_model_at_init(
    model: nn.Module,
    target: int,
    allocation: Allocation,
    mask_generator: torch.Generator,
    init_generator: torch.Generator,
    granularity: MaskGranularity = MaskGranularity.WEIGHT,
) -> nn.Module:
    """Mask `model` to `target` nonzeros and initialise it for its masks (the paper's static schedule)."""
    mask_to_capacity(model, target, allocation, mask_generator, granularity)
    initialize_(model, init_generator)
    return model
