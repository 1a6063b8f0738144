"""The engines a study can choose for its masked linear layers, by name (no torch: specs are checked without it)."""

from __future__ import annotations

import enum


class Engine(str, enum.Enum):
    """How a masked linear layer is stored and computed (applied by `sparsecap.sparsity.engine.set_engine`)."""

    DENSE = "dense"
    """Dense weight × mask (the reference; costs the dense shape)."""
    SPARSE = "sparse"
    """Only the kept weights stored; products over them and a sampled weight gradient at the nonzeros."""
    AUTO = "auto"
    """Sparse where the layer's density is below `sparsecap.sparsity.engine.AUTO_DENSITY_THRESHOLD`, dense elsewhere."""
