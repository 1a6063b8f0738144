"""Forward-pass arithmetic per image: multiply-accumulates of the dense layers and of their nonzeros.

Counted as ShrinkBench does, from each maskable layer's weights times the positions it is applied at
(output pixels for a convolution, once for a linear layer); normalisation, pooling and additions are
left out as they are small beside these.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sparsecap.sparsity.masked import masked_layers


@dataclass(frozen=True)
class MultiplyAccumulates:
    dense: int
    nonzero: int


@torch.no_grad()
def multiply_accumulates(model: nn.Module, input_shape: tuple[int, int, int]) -> MultiplyAccumulates:
    positions: dict[str, int] = {}

    def record(name: str):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            positions[name] = output[0, 0].numel()

        return hook

    layers = masked_layers(model)
    handles = [layer.register_forward_hook(record(name)) for name, layer in layers]
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return MultiplyAccumulates(
        dense=sum(layer.weight_shape.numel() * positions[name] for name, layer in layers),
        nonzero=sum(int(layer.mask.count_nonzero()) * positions[name] for name, layer in layers),
    )
