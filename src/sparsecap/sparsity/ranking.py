"""Exact-count selection of the largest (or smallest) values, equal values taken in index order on every device.

`torch.topk` breaks ties one way on CPUs and another on CUDA, so pruning, a moving mask's drop and RigL's regrowth
would keep other weights on another device wherever equal values straddle the cut (zero gradients of blank pixels,
regrown weights still at zero). A sort breaks ties by index but costs a CPU 8× a `topk` on 25 M values; here the
`topk` only finds the cut, and the ties at it are taken by a running count, without a host sync.
"""

from __future__ import annotations

import math

import torch


def top_mask(values: torch.Tensor, count: int, *, largest: bool = True) -> torch.Tensor:
    """A boolean mask, shaped as `values`, of its `count` largest (with `largest=False`, smallest) entries; equal
    values are taken in flat index order. NaN ranks above every number, as in `topk`: kept first, dropped last."""
    flat = values.flatten()
    if count <= 0:
        return torch.zeros(values.shape, dtype=torch.bool, device=values.device)
    ranked = torch.where(torch.isnan(flat), math.inf if largest else -math.inf, flat if largest else -flat)
    cut = torch.topk(ranked, min(count, flat.numel()), sorted=False).values.min()
    above = ranked > cut
    at_cut = ranked == cut
    chosen = above | (at_cut & (torch.cumsum(at_cut, 0) <= count - above.sum()))
    return chosen.view(values.shape)
