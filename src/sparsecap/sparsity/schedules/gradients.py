"""RigL's growth criterion: where the dense gradient (of the loss with respect to every weight position,
kept or not) is largest, found without holding the dense gradient of a large layer at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from sparsecap.sparsity.masked import MaskedLayer, masked_layers
from sparsecap.sparsity.ranking import top_mask
from sparsecap.sparsity.sparse_linear import ReluSparseLinear

BLOCK_ELEMENTS = 2**22
"""Dense-gradient entries of a linear layer scored at a time (16 MiB in float32): the width-2^15 MLP's
25.7 M-weight first layer is scored in 7 blocks, never as one dense matrix."""

LayerGradient = tuple[torch.Tensor, torch.Tensor]
"""What a layer's weights multiply (its inputs; their ReLU for a `ReluSparseLinear`) and the loss's gradient
with respect to its outputs, from one batch."""


def layer_gradients(model: nn.Module, batch_loss: Callable[[], torch.Tensor]) -> dict[str, LayerGradient]:
    """One extra forward and backward pass of the batch, keeping what each maskable layer's dense weight
    gradient is made of. Parameters' `.grad` are left alone."""
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def keeper(name: str) -> Callable[..., None]:
        def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            multiplied = module.weight_inputs(inputs[0]) if isinstance(module, ReluSparseLinear) else inputs[0]
            captured[name] = (multiplied.detach(), output)
        return keep

    handles = [layer.register_forward_hook(keeper(name)) for name, layer in masked_layers(model)]
    try:
        loss = batch_loss()
    finally:
        for handle in handles:
            handle.remove()
    names = list(captured)
    gradients = torch.autograd.grad(loss, [captured[name][1] for name in names])
    return {name: (captured[name][0], gradient.detach()) for name, gradient in zip(names, gradients, strict=True)}


def _gradient_magnitude_blocks(layer: MaskedLayer, gradient: LayerGradient,
                               block_elements: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(first flat position, |dense weight gradient| there onwards, flat) in row blocks of the weight."""
    inputs, grad_outputs = gradient
    shape = layer.weight_shape
    if len(shape) == 2:
        out_features, in_features = shape
        inputs, grad_outputs = inputs.reshape(-1, in_features), grad_outputs.reshape(-1, out_features)
        rows = max(1, block_elements // in_features)
        for start in range(0, out_features, rows):
            yield start * in_features, (grad_outputs[:, start:start + rows].t() @ inputs).abs_().reshape(-1)
    else:
        yield 0, torch.nn.grad.conv2d_weight(inputs, shape, grad_outputs, layer.stride, layer.padding,
                                             layer.dilation, layer.groups).abs_().reshape(-1)


def largest_gradient_positions(layer: MaskedLayer, gradient: LayerGradient, excluded: torch.Tensor, count: int,
                               block_elements: int = BLOCK_ELEMENTS) -> torch.Tensor:
    """The `count` flat positions outside the ascending `excluded` ones with the largest dense-gradient magnitude."""
    scores, positions = [], []
    for start, block in _gradient_magnitude_blocks(layer, gradient, block_elements):
        bounds = torch.searchsorted(excluded, torch.tensor([start, start + block.numel()], device=excluded.device))
        block[excluded[int(bounds[0]):int(bounds[1])] - start] = -torch.inf
        best = top_mask(block, count)
        scores.append(block[best])
        positions.append(best.nonzero().flatten() + start)
    return torch.cat(positions)[top_mask(torch.cat(scores), count)]
