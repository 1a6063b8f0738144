"""Magnitude pruning to a fixed nonzero count: the `posttrain` schedule (no fine-tuning after it), and the
pruning step of `posttrain-finetune` and `imp`, which train on after it."""

from __future__ import annotations

import torch
from torch import nn

from sparsecap.sparsity.allocation import Allocation, allocate, check_capacity
from sparsecap.sparsity.masked import layer_shapes, masked_layers
from sparsecap.sparsity.pruning_scope import PruningScope
from sparsecap.sparsity.ranking import top_mask


@torch.no_grad()
def magnitude_prune_(model: nn.Module, target: int, scope: PruningScope, allocation: Allocation) -> list[int]:
    """Keep the `target` largest-magnitude effective weights, zero the rest; returns per-layer counts."""
    layers = [layer for _, layer in masked_layers(model)]
    magnitudes = [layer.effective_weight().abs() for layer in layers]
    if scope is PruningScope.LAYERWISE:
        counts = allocate(layer_shapes(model), target, allocation)
        masks = [top_mask(magnitude, count) for magnitude, count in zip(magnitudes, counts, strict=True)]
    else:
        check_capacity(layer_shapes(model), target)
        flat = top_mask(torch.cat([magnitude.flatten() for magnitude in magnitudes]), target)
        chunks = flat.split([magnitude.numel() for magnitude in magnitudes])
        masks = [chunk.view(magnitude.shape) for chunk, magnitude in zip(chunks, magnitudes, strict=True)]
        counts = [int(mask.sum()) for mask in masks]
    for layer, mask in zip(layers, masks, strict=True):
        layer.set_mask(mask)
    return counts
