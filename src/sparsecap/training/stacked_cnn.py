"""K seeds of one CNN as one grouped-convolution network: the stacking `train_together` uses for CNNs.

The K seeds' batches are laid side by side along channels, (batch, K·C, H, W), seed-major, and every
layer is replaced by one that keeps the K seeds' channels apart:

- a masked convolution becomes one convolution with groups = K over the K seeds' stacked weights
  (K·out, in, kh, kw) and masks, so seed k's outputs see only seed k's inputs and weights;
- batch normalisation becomes one over K·C channels: its statistics are per channel, hence each seed's
  own over its own batch, running statistics included (nothing to keep apart by hand);
- the masked linear classifier becomes one batched product over the K weight matrices;
- the input normalisation repeats its per-channel mean and standard deviation K times;
- ReLU, pooling, flattening and residual sums are per channel (or keep the seed-major channel order) and
  stay as they are.

The stacked network takes the K seeds' batches one after another, (K·batch, C, H, W), as the MLP
stacking does, and returns (K, batch, classes): `train_together`'s loop is the same for both. This is
exact, with no vmap: each seed's outputs, batch statistics and gradients are computed from its own
tensors only, so the result equals one-by-one training up to float rounding. Each stacked layer's
`seed_tensors` are one seed's slices of its parameters and buffers (masks, batch-norm running statistics
and step count), which `train_together` snapshots when that seed stops and writes back into its model.
On CUDA the side-by-side batches and convolution weights are channels-last (`devices.memory_format`).

Only models built from those layers stack (`unstackable_module`); sparse-stored linear layers do not
(the classifier of a CNN is sparse only under `engine = "sparse"`, or `auto` on a CPU, where stacking CNNs
does not pay anyway).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as functional
from torch import nn

from sparsecap.devices import memory_format
from sparsecap.models.normalize import Normalize
from sparsecap.models.resnet import ResidualBlock
from sparsecap.sparsity.engine import replace_module
from sparsecap.sparsity.masked import MaskedConv2d, MaskedLinear

_PER_CHANNEL = (nn.Sequential, ResidualBlock, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)
"""Modules without tensors of their own that treat channels apart (or keep their seed-major order)."""


class SeedSliced(Protocol):
    """A stacked layer: one seed's slices of its parameters and buffers, in the order of that seed's own."""

    def seed_tensors(self, index: int) -> list[torch.Tensor]: ...


StackLinks = list[tuple[SeedSliced, list[list[torch.Tensor]]]]
"""Each stacked layer with, per seed, that seed's own tensors its `seed_tensors(index)` are written back to."""


def _own_tensors(module: nn.Module) -> list[torch.Tensor]:
    """A layer's own parameters, then its buffers: what is stacked, and written back, seed by seed."""
    return [*module.parameters(recurse=False), *module.buffers(recurse=False)]


def _seed_rows(stacked: nn.Module, rows: int, index: int) -> list[torch.Tensor]:
    """Seed `index`'s slices of a stacked layer's `_own_tensors`: its `rows` leading rows each; scalars shared."""
    seed = slice(index * rows, (index + 1) * rows)
    return [tensor if tensor.dim() == 0 else tensor[seed] for tensor in _own_tensors(stacked)]


class _StackedMasked(nn.Module):
    """K masked convolutions as one with groups = K, or K masked linear layers as one batched product."""

    def __init__(self, layers: Sequence[MaskedConv2d | MaskedLinear], layout: torch.memory_format) -> None:
        super().__init__()
        first = layers[0]
        self.count, self.out = len(layers), first.weight.shape[0]
        # (stride, padding, dilation) of a convolution; None for a linear layer
        self.geometry = (first.stride, first.padding, first.dilation) if isinstance(first, MaskedConv2d) else None
        if self.geometry is None:
            layout = torch.contiguous_format
        weight = torch.cat([layer.weight.detach() for layer in layers])
        self.weight = nn.Parameter(weight.contiguous(memory_format=layout))
        self.register_buffer("mask", torch.cat([layer.mask for layer in layers]).contiguous(memory_format=layout))
        biases = [layer.bias for layer in layers]
        self.bias = None if biases[0] is None else nn.Parameter(torch.cat([bias.detach() for bias in biases]))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.mask
        if self.geometry is not None:
            return functional.conv2d(inputs, weight, self.bias, *self.geometry, groups=self.count)
        batch = inputs.shape[0]
        seeds = inputs.view(batch, self.count, -1).transpose(0, 1)  # (K, batch, in)
        outputs = torch.bmm(seeds, weight.view(self.count, self.out, -1).transpose(1, 2))  # (K, batch, out)
        if self.bias is not None:
            outputs = outputs + self.bias.view(self.count, 1, self.out)
        return outputs.transpose(0, 1).reshape(batch, self.count * self.out)

    def seed_tensors(self, index: int) -> list[torch.Tensor]:
        return _seed_rows(self, self.out, index)


class _StackedNorm(nn.BatchNorm2d):
    """K batch norms as one over K·C channels (per-channel statistics: each seed's own)."""

    def __init__(self, norms: Sequence[nn.BatchNorm2d], dtype: torch.dtype) -> None:
        first = norms[0]
        super().__init__(len(norms) * first.num_features, first.eps, first.momentum, first.affine,
                         first.track_running_stats, dtype=dtype)
        self.channels = first.num_features
        with torch.no_grad():
            for name, tensor in self.named_parameters(recurse=False):
                tensor.copy_(torch.cat([norm.get_parameter(name) for norm in norms]))
            for name, tensor in self.named_buffers(recurse=False):
                values = [norm.get_buffer(name) for norm in norms]
                tensor.copy_(values[0] if tensor.dim() == 0 else torch.cat(values))  # the step count: shared

    def seed_tensors(self, index: int) -> list[torch.Tensor]:
        return _seed_rows(self, self.channels, index)


class _SeedsAsChannels(nn.Module):
    """The stacked network between the MLP stacking's layouts: (K·batch, C, H, W) in, (K, batch, classes) out;
    in between the seeds' channels side by side, stored in `layout` (`sparsecap.devices.memory_format`)."""

    def __init__(self, network: nn.Module, count: int, layout: torch.memory_format) -> None:
        super().__init__()
        self.network, self.count, self.layout = network, count, layout

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        seeds_batch, channels, height, width = inputs.shape
        batch = seeds_batch // self.count
        side_by_side = inputs.view(self.count, batch, channels, height, width).transpose(0, 1)
        stacked = side_by_side.reshape(batch, self.count * channels, height, width)
        outputs = self.network(stacked.contiguous(memory_format=self.layout))
        return outputs.view(batch, self.count, -1).transpose(0, 1)


def is_convolutional(model: nn.Module) -> bool:
    """Whether the model has convolutions: its seeds stack here, not as the MLP family's do."""
    return any(isinstance(module, MaskedConv2d) for module in model.modules())


def unstackable_module(model: nn.Module) -> str | None:
    """The name (and kind) of the first module this stacking cannot keep seed by seed, if any."""
    for name, module in model.named_modules():
        stacked = isinstance(module, MaskedConv2d | MaskedLinear | nn.BatchNorm2d | Normalize)
        if isinstance(module, MaskedConv2d) and (module.groups != 1 or module.padding_mode != "zeros"):
            stacked = False
        if not stacked and not isinstance(module, _PER_CHANNEL):
            return f"{name or 'the model'} ({type(module).__name__})"
    return None


def stack_cnns(models: Sequence[nn.Module]) -> tuple[nn.Module, StackLinks]:
    """One grouped network computing all of `models` (same architecture), in their device and dtype, and its
    stacked layers with theirs."""
    unstackable = unstackable_module(models[0])
    if unstackable is not None:
        raise ValueError(f"seeds of a CNN can be trained together only when it is built of masked convolutions, "
                         f"batch norms, dense-stored linear layers and per-channel operations; {unstackable} is not")
    first = next(models[0].parameters())
    count, device, dtype = len(models), first.device, first.dtype
    layout = memory_format(models[0], device)
    stacked = copy.deepcopy(models[0])
    links: StackLinks = []
    for name, module in models[0].named_modules():
        seeds = [model.get_submodule(name) for model in models]
        if isinstance(module, Normalize):
            if any(not (torch.equal(seed.mean, module.mean) and torch.equal(seed.std, module.std)) for seed in seeds):
                raise ValueError(f"seeds trained together must share their input normalisation; {name!r} differs")
            repeated = (statistic.flatten().repeat(count).tolist() for statistic in (module.mean, module.std))
            stacked = replace_module(stacked, name, stacked.get_submodule(name), Normalize(*repeated))
            continue
        if isinstance(module, MaskedConv2d | MaskedLinear):
            combined: _StackedMasked | _StackedNorm = _StackedMasked(seeds, layout)  # type: ignore[arg-type]
        elif isinstance(module, nn.BatchNorm2d):
            combined = _StackedNorm(seeds, dtype)  # type: ignore[arg-type]
        else:
            continue
        stacked = replace_module(stacked, name, stacked.get_submodule(name), combined)
        links.append((combined, [_own_tensors(seed) for seed in seeds]))
    return _SeedsAsChannels(stacked, count, layout).to(device, dtype), links
