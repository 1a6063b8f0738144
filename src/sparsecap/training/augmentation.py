"""Batch data augmentation on uint8 images, vectorised over the batch and drawn from the trial's generator."""

from __future__ import annotations

import torch
import torch.nn.functional as functional

CROP_PADDING = 4


def random_crop_and_flip(images: torch.Tensor, generator: torch.Generator, padding: int = CROP_PADDING) -> torch.Tensor:
    """Zero-pad by `padding`, crop back to the original size at a random offset, flip half horizontally.

    The offsets and flips are drawn on the generator's device (the CPU in a study: the same draws on every
    device) and the gather runs where the images are.
    """
    count, _, height, width = images.shape
    padded = functional.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (count,), generator=generator, device=generator.device)
    left = torch.randint(0, 2 * padding + 1, (count,), generator=generator, device=generator.device)
    flip = torch.rand(count, generator=generator, device=generator.device) < 0.5
    top, left, flip = top.to(images.device), left.to(images.device), flip.to(images.device)
    rows = (top[:, None] + torch.arange(height, device=images.device))[:, None, :, None]
    columns = (left[:, None] + torch.arange(width, device=images.device))[:, None, None, :]
    columns = torch.where(flip[:, None, None, None], columns.flip(-1), columns)
    batch = torch.arange(count, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, columns]
