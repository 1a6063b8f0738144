"""Layers that carry their own sparsity mask as a buffer and apply it in every forward pass.

Multiplying by the mask in forward (as ShrinkBench does) makes the gradient of a masked weight exactly
zero, so SGD with momentum never moves it: masked weights stay exactly zero for the whole of training
without any hook on the optimiser. The mask is a buffer, so it is saved and loaded with the weights.

A linear layer can instead be stored at its kept weights only (`SparseLinear`, the sparse engine); the
two answer the same questions (`weight_shape`, `mask`, `effective_weight`, `stored_weight`,
`stored_mask`, `to_stored_layout`, `kept_count`, `kept_to_stored_layout`, `kept_positions`,
`kept_values`) and move kept positions alike (`move_kept_`, for the moving-mask schedules), so code that
reads or perturbs weights works on either.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as functional
from torch import nn

from sparsecap.sparsity.sparse_linear import SparseLinear


class _MaskedWeight:
    """What linear and convolutional masked layers share: the mask buffer and how it is replaced."""

    weight: nn.Parameter
    mask: torch.Tensor

    def _register_mask(self) -> None:
        # not ones_like: on the meta device (a trial's shape-only model) that loads torch's symbolic-shape
        # machinery, 0.4 s per process
        weight = self.weight
        mask = torch.ones(weight.shape, dtype=weight.dtype, device=weight.device)
        self.register_buffer("mask", mask)  # type: ignore[attr-defined]

    @property
    def weight_shape(self) -> torch.Size:
        return self.weight.shape

    @property
    def density(self) -> float:
        """The kept fraction of the weights."""
        return int(self.mask.count_nonzero()) / max(self.mask.numel(), 1)

    def effective_weight(self) -> torch.Tensor:
        """The weights the layer computes with: weight × mask."""
        return self.weight.detach() * self.mask

    @property
    def stored_weight(self) -> nn.Parameter:
        """The Parameter holding the weights: the dense weight (masked entries are zero)."""
        return self.weight

    @property
    def stored_mask(self) -> torch.Tensor:
        """Which stored weights are kept: the mask."""
        return self.mask

    def to_stored_layout(self, dense: torch.Tensor) -> torch.Tensor:
        """A tensor of the weight's dense shape in the stored weight's layout: itself."""
        return dense

    @property
    def kept_count(self) -> int:
        return int(self.mask.count_nonzero())

    def kept_to_stored_layout(self, kept: torch.Tensor) -> torch.Tensor:
        """Values of the kept weights, in row-major order, in the stored weight's layout (zero elsewhere)."""
        return torch.zeros_like(self.weight).masked_scatter_(self.mask.bool(), kept)

    def kept_positions(self) -> torch.Tensor:
        """Flat row-major positions of the kept weights, ascending."""
        return torch.nonzero(self.mask.reshape(-1)).reshape(-1)

    def kept_values(self) -> torch.Tensor:
        """The kept weights' values, in the order of `kept_positions`."""
        return self.weight.detach().reshape(-1)[self.kept_positions()]

    @torch.no_grad()
    def move_kept_(self, dropped: torch.Tensor, grown: torch.Tensor, companions: Sequence[torch.Tensor] = ()) -> None:
        """Unmask flat positions `grown` (not kept) in place of `dropped` (kept): the count stays. Weights
        at both start (or stay) at zero, and so do `companions` (tensors in the stored layout, e.g. momentum)."""
        self.mask.view(-1)[dropped] = 0
        self.mask.view(-1)[grown] = 1
        for tensor in (self.weight, *companions):
            tensor.view(-1)[dropped] = 0
            tensor.view(-1)[grown] = 0

    def set_mask(self, mask: torch.Tensor) -> None:
        """Install a new mask and zero the weights it removes, so stored weights are the effective ones."""
        if mask.shape != self.weight.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match weight {tuple(self.weight.shape)}")
        with torch.no_grad():
            self.mask.copy_(mask)  # converts as it copies: no temporary of the mask's size (100 MB at width 2^15)
            self.weight.mul_(self.mask)


class MaskedLinear(_MaskedWeight, nn.Linear):
    """`nn.Linear` whose weight is multiplied by a fixed 0/1 mask (all ones: a dense layer).

    `sparsecap.sparsity.set_engine` swaps it for a `SparseLinear` (the same function, stored and computed
    at the nonzeros only) and back.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self._register_mask()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return functional.linear(inputs, self.weight * self.mask, self.bias)


class MaskedConv2d(_MaskedWeight, nn.Conv2d):
    """`nn.Conv2d` whose weight is multiplied by a fixed 0/1 mask over (out, in, kernel height, width)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self._register_mask()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(inputs, self.weight * self.mask, self.bias)


MaskedLayer = MaskedLinear | MaskedConv2d | SparseLinear


def masked_layers(model: nn.Module) -> list[tuple[str, MaskedLayer]]:
    """The model's maskable layers in definition order; their weights are what capacity counts."""
    return [
        (name, module) for name, module in model.named_modules()
        if isinstance(module, MaskedLinear | MaskedConv2d | SparseLinear)
    ]


def weight_count(model: nn.Module) -> int:
    """Weights of the maskable layers: the quantity capacity is measured in (biases excluded)."""
    return sum(layer.weight_shape.numel() for _, layer in masked_layers(model))


def layer_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(layer.weight_shape) for _, layer in masked_layers(model)]
