"""Forward-pass arithmetic per image: multiply-accumulates of the dense layers and of their nonzeros.

Counted as ShrinkBench does, from each maskable layer's weights times the positions it is applied at
(output pixels for a convolution, once for a linear layer); normalisation, pooling and additions are
left out as they are small beside these.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sparsecap.models.modes import in_eval_mode
from sparsecap.sparsity.masked import masked_layers


@dataclass(frozen=True)
class MultiplyAccumulates:
    dense: int
    nonzero: int


@torch.no_grad()
def _positions(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, int]:
    """How many times each maskable layer's weights are applied per image: once for a linear layer (every
    model here flattens or pools before one), else found by one forward pass of zeros. A model of linear
    layers alone is not run: on the meta device a first forward pass loads torch's reference kernels, 1.2 s
    per process, which a quick study's worker would pay before its first trial."""
    layers = masked_layers(model)
    if all(len(layer.weight_shape) == 2 for _, layer in layers):
        return {name: 1 for name, _ in layers}
    positions: dict[str, int] = {}

    def record(name: str):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            positions[name] = output[0, 0].numel()

        return hook

    handles = [layer.register_forward_hook(record(name)) for name, layer in layers]
    try:
        with in_eval_mode(model):
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return positions


def _dense_at(model: nn.Module, positions: dict[str, int]) -> int:
    return sum(layer.weight_shape.numel() * positions[name] for name, layer in masked_layers(model))


def dense_multiply_accumulates(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """The dense count alone: needs only shapes, so it works on a model built on the `meta` device."""
    return _dense_at(model, _positions(model, input_shape))


def multiply_accumulates(model: nn.Module, input_shape: tuple[int, int, int]) -> MultiplyAccumulates:
    positions = _positions(model, input_shape)  # one forward pass for both counts
    return MultiplyAccumulates(
        dense=_dense_at(model, positions),
        nonzero=sum(int(layer.mask.count_nonzero()) * positions[name] for name, layer in masked_layers(model)),
    )
