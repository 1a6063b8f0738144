"""Whether a masked model can fit in memory at all: said before anything is built or written, since a model
too large for the machine fails only when its weights are allocated, after a study directory exists."""

from __future__ import annotations

from sparsecap.data import DatasetInfo
from sparsecap.models import ModelConfig, create_shape_only_model
from sparsecap.sparsity.masked import weight_count

BYTES_PER_MASKED_WEIGHT = 8
"""A float32 weight and its float32 mask: the least a masked model holds per weight."""


def beyond_memory(config: ModelConfig, info: DatasetInfo, memory_bytes: int) -> str | None:
    """Why `config` cannot fit in `memory_bytes` (its weights and masks alone exceed it), or None where it may."""
    weights = weight_count(create_shape_only_model(config, info))
    needed = weights * BYTES_PER_MASKED_WEIGHT
    if needed <= memory_bytes:
        return None
    return (f"{config.architecture} width {config.width} depth {config.depth} has {weights:,} weights: at least "
            f"{needed / 2**30:,.1f} GiB with their masks, more than this machine's {memory_bytes / 2**30:,.1f} GiB")
