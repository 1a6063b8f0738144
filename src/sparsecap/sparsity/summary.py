"""What a masked model holds: per-layer counts and densities, totals, and connectivity.

The JSON form is a contract other tools read: `layers` (each with `name`, `shape`, `weights`,
`nonzero`, `density`), `total_weights`, `total_nonzero`, `base_nonzero`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from sparsecap.sparsity.masked import masked_layers


@dataclass(frozen=True)
class LayerSummary:
    name: str
    shape: tuple[int, ...]
    weights: int
    nonzero: int
    density: float
    outputs_without_input: int
    """Output units (channels) of this layer whose incoming weights are all masked."""
    inputs_unread: int
    """Input units (channels) this layer takes no weight from."""


@dataclass(frozen=True)
class SparsitySummary:
    layers: tuple[LayerSummary, ...]
    total_weights: int
    total_nonzero: int
    base_nonzero: int
    unmasked_parameters: int
    """Biases and normalisation parameters: never masked, reported apart from capacity."""

    @property
    def density(self) -> float:
        return self.total_nonzero / self.total_weights

    @property
    def disconnected_units(self) -> int:
        """Hidden connections broken: outputs without input (bar the logits) plus inputs unread (bar the
        image). In a plain chain (the MLPs) a hidden unit cut off on one side counts once and one cut off on
        both sides twice; `connectivity`'s ineffective units count each unit on no input-output path once."""
        return sum(layer.outputs_without_input for layer in self.layers[:-1]) + sum(
            layer.inputs_unread for layer in self.layers[1:]
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "density": self.density, "disconnected_units": self.disconnected_units}


def _dead_units(mask: torch.Tensor, dimension: int) -> torch.Tensor:
    """Indices along `dimension` whose slice of the mask is all zero."""
    other_dimensions = [axis for axis in range(mask.dim()) if axis != dimension]
    return mask.amax(dim=other_dimensions) == 0


def summarize(model: nn.Module, base_nonzero: int) -> SparsitySummary:
    """Summarise `model`'s masks layer by layer."""
    layers = masked_layers(model)
    summaries = []
    for name, layer in layers:
        mask = layer.mask
        nonzero = int(mask.count_nonzero())
        summaries.append(
            LayerSummary(
                name=name,
                shape=tuple(layer.weight_shape),
                weights=mask.numel(),
                nonzero=nonzero,
                density=nonzero / mask.numel(),
                outputs_without_input=int(_dead_units(mask, 0).sum()),
                inputs_unread=int(_dead_units(mask, 1).sum()),
            )
        )
    maskable = {id(layer.stored_weight) for _, layer in layers}
    unmasked = sum(parameter.numel() for parameter in model.parameters() if id(parameter) not in maskable)
    return SparsitySummary(
        layers=tuple(summaries),
        total_weights=sum(layer.weights for layer in summaries),
        total_nonzero=sum(layer.nonzero for layer in summaries),
        base_nonzero=base_nonzero,
        unmasked_parameters=unmasked,
    )
