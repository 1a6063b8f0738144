"""How an epoch's shuffled order is cut into training batches."""

from __future__ import annotations

import torch
from torch import nn


def smallest_batch(model: nn.Module) -> int:
    """The fewest examples a training batch of `model` may hold: 2 with batch norms, which cannot normalise a
    single example where a layer's output is 1×1 (VGG and ResNet on 8×8 digits), else 1."""
    return 2 if any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules()) else 1


def shuffled_batches(size: int, generator: torch.Generator, device: torch.device, batch_size: int,
                     smallest: int) -> tuple[torch.Tensor, ...]:
    """One epoch's batches of a seed: its order drawn on the CPU from its own generator (the same on every
    device), moved once per epoch (a copy per step would wait for the device)."""
    return epoch_batches(torch.randperm(size, generator=generator).to(device), batch_size, smallest)


def epoch_batches(order: torch.Tensor, batch_size: int, smallest: int = 1) -> tuple[torch.Tensor, ...]:
    """`order` in batches of `batch_size`; a last batch of fewer than `smallest` examples joins the one before
    it, so every example is still trained on once per epoch."""
    batches = order.split(batch_size)
    if len(batches) > 1 and len(batches[-1]) < smallest:
        return (*batches[:-2], torch.cat(batches[-2:]))
    return batches

