"""Batch data augmentation on uint8 images, vectorised over the batch and drawn from the trial's generator."""

from __future__ import annotations

import torch
import torch.nn.functional as functional

CROP_PADDING = 4


def random_crop_and_flip(images: torch.Tensor, generator: torch.Generator, padding: int = CROP_PADDING) -> torch.Tensor:
    """Zero-pad by `padding`, crop back to the original size at a random offset, flip half horizontally."""
    count, _, height, width = images.shape
    padded = functional.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (count,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (count,), generator=generator)
    rows = (top[:, None] + torch.arange(height))[:, None, :, None]
    columns = (left[:, None] + torch.arange(width))[:, None, None, :]
    flip = torch.rand(count, generator=generator) < 0.5
    columns = torch.where(flip[:, None, None, None], columns.flip(-1), columns)
    batch = torch.arange(count)[:, None, None, None]
    channel = torch.arange(images.shape[1])[None, :, None, None]
    return padded[batch, channel, rows, columns]
