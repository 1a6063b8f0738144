"""Fixed-capacity sparsity: masks, their allocation over layers, initialisation and pruning."""

from sparsecap.lazy_imports import lazy_package

__getattr__, __all__ = lazy_package(__name__, {
    "allocation": ["Allocation", "allocate", "check_capacity", "parse_allocation", "whole_kernel_counts"],
    "connectivity": ["Connectivity", "measure_connectivity"],
    "engine": ["match_stored_form", "set_engine"],
    "engine_choice": ["Engine"],
    "initialization": ["initialize_"],
    "mask_granularity": ["MaskGranularity"],
    "mask_sampling": ["random_mask"],
    "masked": ["MaskedConv2d", "MaskedLinear", "layer_shapes", "masked_layers", "weight_count"],
    "memory_fit": ["beyond_memory"],
    "pruning": ["magnitude_prune_"],
    "pruning_scope": ["PruningScope"],
    "sparse_linear": ["SparseLinear"],
    "static": ["mask_to_capacity", "sparse_model_at_init"],
    "summary": ["LayerSummary", "SparsitySummary", "summarize"],
})
