"""`sparsecap describe`: what a model holds once masked to its base's capacity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sparsecap.data import DatasetInfo, dataset_info
from sparsecap.errors import SparsecapError
from sparsecap.models import ModelConfig, create_model, create_shape_only_model
from sparsecap.runtime import physical_memory_bytes
from sparsecap.sparsity import (
    Allocation,
    MaskGranularity,
    SparsitySummary,
    mask_to_capacity,
    summarize,
    weight_count,
)
from sparsecap.sparsity.flops import MultiplyAccumulates, multiply_accumulates
from sparsecap.sparsity.memory_fit import beyond_memory


@dataclass(frozen=True)
class ModelDescription:
    summary: SparsitySummary
    arithmetic: MultiplyAccumulates
    """Forward multiply-accumulates per image, dense and of the nonzeros only."""

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary.to_json(),
            "dense_multiply_accumulates": self.arithmetic.dense,
            "nonzero_multiply_accumulates": self.arithmetic.nonzero,
        }


def describe_model(
    model_config: ModelConfig,
    base_config: ModelConfig,
    dataset: str,
    allocation: Allocation,
    seed: int,
    granularity: MaskGranularity = MaskGranularity.WEIGHT,
) -> ModelDescription:
    """Mask `model_config` to the dense weight count of `base_config` and summarise the result."""
    info = dataset_info(dataset)
    capacity = weight_count(create_shape_only_model(base_config, info))
    _refuse_beyond_memory(model_config, info)
    model = create_model(model_config, info)
    mask_to_capacity(model, capacity, allocation, torch.Generator().manual_seed(seed), granularity)
    return ModelDescription(summarize(model, capacity), multiply_accumulates(model, info.input_shape))


def _refuse_beyond_memory(config: ModelConfig, info: DatasetInfo) -> None:
    """A model that cannot fit in this machine's memory is refused before it is built, naming its size."""
    problem = beyond_memory(config, info, physical_memory_bytes())
    if problem is not None:
        raise SparsecapError(f"{problem}; choose a smaller --width or --depth")


def format_table(description: ModelDescription) -> str:
    """A fixed-width table a person can read in a terminal."""
    summary, arithmetic = description.summary, description.arithmetic
    header = (
        f"{'layer':<34}{'shape':>16}{'weights':>14}{'nonzero':>12}{'density':>10}"
        f"{'outputs w/o input':>19}{'inputs unread':>15}"
    )
    lines = [header, "-" * len(header)]
    for layer in summary.layers:
        shape = "x".join(map(str, layer.shape))
        lines.append(
            f"{layer.name:<34}{shape:>16}{layer.weights:>14,}{layer.nonzero:>12,}{layer.density:>10.4f}"
            f"{layer.outputs_without_input:>19}{layer.inputs_unread:>15}"
        )
    lines += [
        "-" * len(header),
        f"{'total':<50}{summary.total_weights:>14,}{summary.total_nonzero:>12,}{summary.density:>10.4f}",
        f"base nonzero (capacity): {summary.base_nonzero:,}",
        f"unmasked parameters (biases, normalisation): {summary.unmasked_parameters:,}",
        f"difference from the base: {summary.total_nonzero - summary.base_nonzero:+,}",
        f"disconnected hidden units: {summary.disconnected_units:,}",
        f"forward multiply-accumulates per image: {arithmetic.dense:,} dense, {arithmetic.nonzero:,} nonzero",
    ]
    return "\n".join(lines)
