"""Fixed-capacity sparsity: masks, their allocation over layers, initialisation and pruning."""

from sparsecap.sparsity.allocation import (
    Allocation,
    allocate,
    check_capacity,
    parse_allocation,
    whole_kernel_counts,
)
from sparsecap.sparsity.engine import Engine, match_stored_form, set_engine
from sparsecap.sparsity.initialization import initialize_
from sparsecap.sparsity.masked import MaskedConv2d, MaskedLinear, masked_layers
from sparsecap.sparsity.pruning import PruningScope, magnitude_prune_
from sparsecap.sparsity.random_mask import random_mask
from sparsecap.sparsity.sparse_linear import SparseLinear
from sparsecap.sparsity.static import MaskGranularity, mask_to_capacity, sparse_model_at_init, weight_count
from sparsecap.sparsity.summary import LayerSummary, SparsitySummary, summarize

__all__ = [
    "Allocation",
    "Engine",
    "LayerSummary",
    "MaskGranularity",
    "MaskedConv2d",
    "MaskedLinear",
    "PruningScope",
    "SparseLinear",
    "SparsitySummary",
    "allocate",
    "check_capacity",
    "initialize_",
    "magnitude_prune_",
    "mask_to_capacity",
    "masked_layers",
    "match_stored_form",
    "parse_allocation",
    "random_mask",
    "set_engine",
    "sparse_model_at_init",
    "summarize",
    "weight_count",
    "whole_kernel_counts",
]
