"""Where post-training pruning ranks magnitudes, as a study names it (no torch: specs are checked without it)."""

from __future__ import annotations

import enum


class PruningScope(str, enum.Enum):
    """Where the largest magnitudes are ranked."""

    LAYERWISE = "layerwise"
    """Within each layer, keeping the per-layer counts of the study's allocation."""
    GLOBAL = "global"
    """Across all maskable layers at once."""
