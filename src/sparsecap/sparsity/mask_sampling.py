"""Exact-count random masks, vectorised.

Drawing k of n positions with `torch.randperm(n)` costs about a second for the 25.7M weights of the
width-2^15 MLP's first layer; sampling with replacement and discarding repeats needs only about k
draws when k is small against n (and the complement is drawn when it is not), which is ~20x faster.
"""

from __future__ import annotations

import torch


def _distinct_positions(population: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` distinct positions in range(population), uniformly at random (count <= population / 2)."""
    chosen = torch.empty(0, dtype=torch.int64)
    while chosen.numel() < count:
        missing = count - chosen.numel()
        draws = torch.randint(0, population, (missing + missing // 16 + 16,), generator=generator)
        chosen = torch.cat([chosen, draws]).unique()
    # A uniform subset of a uniform random set is uniform, so trimming keeps the draw unbiased.
    keep = torch.randperm(chosen.numel(), generator=generator)[:count]
    return chosen[keep]


def random_positions(population: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` distinct positions of range(population), uniformly at random, without a dense draw when few."""
    if count <= population // 2:
        return _distinct_positions(population, count, generator)
    return torch.randperm(population, generator=generator)[:count]


def random_mask(shape: torch.Size | tuple[int, ...], count: int, generator: torch.Generator) -> torch.Tensor:
    """A boolean mask of `shape` with exactly `count` True entries at uniformly random positions."""
    population = int(torch.Size(shape).numel())
    if not 0 <= count <= population:
        raise ValueError(f"cannot keep {count} of {population} weights")
    if count <= population // 2:
        mask = torch.zeros(population, dtype=torch.bool)
        mask[_distinct_positions(population, count, generator)] = True
    else:
        mask = torch.ones(population, dtype=torch.bool)
        mask[_distinct_positions(population, population - count, generator)] = False
    return mask.view(shape)
