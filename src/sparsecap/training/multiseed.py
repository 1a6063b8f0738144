"""Train the K seeds of one configuration together: one program whose products cover all K models.

The K models (same architecture; each with its own initialisation, mask and data-order generator)
are stacked layer by layer into one model that takes the K seeds' batches one after another and
passes (K, batch, features) activations between its layers:

- dense-stored layers (`MaskedLinear`) become one batched product over K weight matrices
  (``torch.baddbmm``), the weights multiplied by their masks as one layer does (skipped, exactly, when
  every mask keeps everything); the stacked weights are held as (K, in, out), the layout their batched
  gradient comes out in, so no transposing copy is made per step;
- sparse-stored layers (`SparseLinear`) become one block-diagonal sparse layer whose K diagonal
  blocks are the K seeds' kept weights, so the sparse engine's products and sampled gradient run once
  for all K and never touch the off-diagonal blocks.

The loss is the sum of the K per-seed mean cross-entropies, so each seed's gradient is exactly its
own, and SGD with momentum is elementwise, so one optimiser over the stacked tensors does what K
optimisers do. Each seed draws its batch order (and augmentation) from its own generator in the same
order as `train` does, so the result equals training the seeds one by one up to float rounding.
What this saves is the per-step work that does not grow with K (Python, dispatch, the optimiser's
and autograd's fixed costs), a large part of a small model's step on a CPU. Once the K seeds'
activations outgrow the CPU's caches, their elementwise passes cost more than that saving, so studies
stack seeds only below `STACKED_ACTIVATIONS_LIMIT` (`stacking_pays`).

Each seed keeps its own stopping rule: when its epoch loss falls below ``stop_loss`` (or it diverges),
its parameters at that point are what it returns, while the others go on (the stopped seed's rows keep
being computed and are discarded: simplest, and a stopped seed costs one K-th of a step).

Models whose weights all live in masked linear layers (the MLP family) stack as above; CNNs stack as one
grouped-convolution network (`sparsecap.training.stacked_cnn`) that takes and returns the same layouts,
so the loop below is the same for both. `stack_models` and `can_stack` choose between the two; where
stacking is used (`stacks_here`) is the device's decision.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as functional
from torch import nn

from sparsecap.devices import memory_format
from sparsecap.sparsity import MaskedLinear, SparseLinear, masked_layers
from sparsecap.sparsity.side_by_side import block_diagonal
from sparsecap.sparsity.engine import replace_module
from sparsecap.training.augmentation import random_crop_and_flip
from sparsecap.training.batches import shuffled_batches, smallest_batch
from sparsecap.training.config import TrainingConfig
from sparsecap.training.divergence import has_diverged
from sparsecap.training.graphed_steps import steps_for
from sparsecap.training.stacked_cnn import StackLinks, is_convolutional, stack_cnns, unstackable_module
from sparsecap.training.precision import numeric_precision
from sparsecap.training.trainer import TrainingResult, forward_of, loss_accumulator, sgd_with_schedule, to_pixels


class _StackedDense(nn.Module):
    """K dense-stored linear layers as one batched product; inputs are the K seeds' rows in turn."""

    def __init__(self, layers: Sequence[MaskedLinear]) -> None:
        super().__init__()
        self.count = len(layers)
        self.weight = nn.Parameter(torch.stack([layer.weight.detach().t() for layer in layers]))  # (K, in, out)
        mask = torch.stack([layer.mask.t() for layer in layers])
        self.mask: torch.Tensor | None = None if bool(mask.all()) else mask  # all ones: weight × 1 skipped
        biases = [layer.bias for layer in layers]
        self.bias = None if biases[0] is None else nn.Parameter(torch.stack([bias.detach() for bias in biases]))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        stacked = inputs.reshape(self.count, -1, inputs.shape[-1])
        weight = self.weight if self.mask is None else self.weight * self.mask
        if self.bias is None:
            outputs = torch.bmm(stacked, weight)
        else:
            outputs = torch.baddbmm(self.bias.unsqueeze(1), stacked, weight)
        return outputs

    def seed_tensors(self, index: int) -> list[torch.Tensor]:
        return [self.weight[index].t()] + ([] if self.bias is None else [self.bias[index]])


class _StackedSparse(nn.Module):
    """K sparse-stored linear layers as one block-diagonal `SparseLinear`."""

    def __init__(self, layers: Sequence[SparseLinear]) -> None:
        super().__init__()
        self.count = len(layers)
        self.in_features, self.out_features = layers[0].in_features, layers[0].out_features
        self.sizes = [layer.kept.numel() for layer in layers]
        self.block = block_diagonal(layers)  # a ReluSparseLinear too: the ReLU is per unit

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # The K seeds' inputs stacked feature-wise, (K·in, batch): the block-diagonal product's layout.
        stacked = inputs.reshape(self.count, -1, self.in_features)
        stacked_t = stacked.transpose(1, 2).reshape(self.count * self.in_features, stacked.shape[1])
        outputs_t = self.block.product_t(stacked_t)
        return outputs_t.view(self.count, self.out_features, -1).transpose(1, 2)  # (K, batch, out), no copy

    def seed_tensors(self, index: int) -> list[torch.Tensor]:
        values = self.block.values.split(self.sizes)[index]
        if self.block.bias is None:
            return [values]
        return [values, self.block.bias[index * self.out_features:(index + 1) * self.out_features]]


_Stacked = _StackedDense | _StackedSparse


def _own_tensors(layer: MaskedLinear | SparseLinear) -> list[torch.Tensor]:
    return [layer.stored_weight] + ([] if layer.bias is None else [layer.bias])


def _first_unstackable(model: nn.Module) -> str | None:
    """The name of the first parameter outside the model's linear layers, if any."""
    linear = {id(parameter) for _, layer in masked_layers(model) if isinstance(layer, MaskedLinear | SparseLinear)
              for parameter in layer.parameters()}
    return next((name for name, parameter in model.named_parameters() if id(parameter) not in linear), None)


def can_stack(model: nn.Module) -> bool:
    """Whether seeds of this model can be trained together: every weight in a linear layer, or a CNN
    `stack_cnns` can group."""
    if is_convolutional(model):
        return unstackable_module(model) is None
    return _first_unstackable(model) is None


STACKED_ACTIVATIONS_LIMIT = 4 * 2**20
"""Bytes of one step's stacked layer outputs up to which stacking pays on a CPU. Beyond it the K seeds'
activations leave the caches and their elementwise passes (ReLU, its gradient, the layout changes) cost
more than the per-step work stacking saves: benchmarks/sparse_engine.py measured the base MLP ×1.3-1.6
faster together, width 1024 (2.5 MiB for K = 5) ×1.1, width 2048 (5 MiB) ×0.7-1.0 and width 8192
×0.76 (docs/performance.md)."""


def stacking_pays(model: nn.Module, count: int, batch_size: int) -> bool:
    """Whether `count` seeds of `model` are faster stacked than in turn (`STACKED_ACTIVATIONS_LIMIT`)."""
    layers = [layer for _, layer in masked_layers(model)]
    outputs = sum(layer.weight_shape[0] for layer in layers)
    element = layers[0].stored_weight.element_size() if layers else 4
    return count * batch_size * outputs * element <= STACKED_ACTIVATIONS_LIMIT


CNN_STACKING_LIMIT = 100_000_000
"""Dense multiply-accumulates per example up to which a CNN's seeds are stacked on a GPU. On an H200 with
graphed steps (benchmarks/gpu.py, docs/performance.md) five seeds together gave 1.5-2.1x the throughput of
one by one for VGG11 at width 16 (9.9 M) and 1.4-2.3x for ResNet18 at width 16 (35 M), but 0.9-1.2x for
VGG11 at width 64 (153 M) and 0.8-1.1x for ResNet18 at width 64 (555 M): one such model already keeps the
GPU busy, and grouped convolutions run more slowly per channel than plain ones."""


def stacks_here(model: nn.Module, count: int, batch_size: int, device_type: str, multiply_accumulates: int) -> bool:
    """Whether `count` seeds of `model` (`multiply_accumulates` per example) train together on a device of
    `device_type`: where they can be stacked and it gains. MLPs by `stacking_pays`; CNNs off the CPU only,
    where a small model's step is bound by kernel launches (on a CPU grouped convolutions gained nothing
    steady: benchmarks/cnn_seeds.py, ×0.5-2 by model and width, docs/performance.md), and only up to
    `CNN_STACKING_LIMIT`."""
    if count < 2 or not can_stack(model):
        return False
    if is_convolutional(model):
        return device_type != "cpu" and multiply_accumulates <= CNN_STACKING_LIMIT
    return stacking_pays(model, count, batch_size)


def stack_models(models: Sequence[nn.Module]) -> tuple[nn.Module, StackLinks]:
    """One model computing all of `models` on their rows of its batch, and its stacked layers with theirs."""
    if is_convolutional(models[0]):
        return stack_cnns(models)
    unstackable = _first_unstackable(models[0])
    if unstackable is not None:
        raise ValueError(f"seeds can be trained together only when every weight is in a linear layer (the MLP "
                         f"family); {unstackable!r} is not")
    stacked = copy.deepcopy(models[0])
    links: StackLinks = []
    layer_names = set()
    for name, layer in masked_layers(models[0]):
        layer_names.add(name)
        layers = [model.get_submodule(name) for model in models]
        if all(isinstance(each, MaskedLinear) for each in layers):
            combined: _Stacked = _StackedDense(layers)  # type: ignore[arg-type]
        elif all(isinstance(each, SparseLinear) for each in layers):
            combined = _StackedSparse(layers)  # type: ignore[arg-type]
        else:
            raise ValueError(f"seeds trained together must store each layer alike (engine); {name!r} is dense in "
                             "one seed and sparse in another")
        stacked = replace_module(stacked, name, stacked.get_submodule(name), combined)
        links.append((combined, [_own_tensors(layer) for layer in layers]))
    for name, buffer in models[0].named_buffers():
        if name.rpartition(".")[0] in layer_names:
            continue  # masks and kept positions: stacked above
        if any(not torch.equal(buffer, model.get_buffer(name)) for model in models):
            raise ValueError(f"seeds trained together must share their fixed buffers; {name!r} differs")
    return stacked, links


SeedsEpochCallback = Callable[[int, list[float]], None]
"""Called after every epoch with its number and the epoch loss of each seed still training."""


def train_together(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainingConfig,
    generators: Sequence[torch.Generator],
    on_epoch: SeedsEpochCallback | None = None,
) -> list[TrainingResult]:
    """Train `models` (one per seed, same architecture) in place, as `train` would one by one."""
    if len(models) != len(generators) or not models:
        raise ValueError("one data-order generator per model, and at least one model")
    stacked, links = stack_models(models)
    count, smallest = len(models), smallest_batch(models[0])
    optimizer, scheduler = sgd_with_schedule(stacked, config)
    results = [TrainingResult() for _ in models]
    final: list[list[torch.Tensor] | None] = [None] * count

    def snapshot(index: int) -> list[torch.Tensor]:
        return [tensor.detach().clone() for combined, _ in links for tensor in combined.seed_tensors(index)]

    started = time.perf_counter()
    stacked.train()
    forward, layout = forward_of(stacked, config), memory_format(models[0], labels.device)  # the seeds' layout
    sums = torch.zeros(count, dtype=loss_accumulator(labels.device), device=labels.device)
    orders: dict[int, tuple[torch.Tensor, ...]] = {}

    def step(indices: torch.Tensor) -> torch.Tensor:
        """One step on the K seeds' batches, `indices` holding them one after another."""
        rows = len(indices) // count
        batch_images = images.index_select(0, indices)  # as `train`: faster than images[indices]
        if config.augmentation:
            batch_images = torch.cat([
                random_crop_and_flip(chunk, generators[index]) if index in orders else chunk
                for index, chunk in enumerate(batch_images.split(rows))
            ])
        logits = forward(to_pixels(batch_images, layout)).reshape(len(indices), -1)
        targets = labels.index_select(0, indices)
        losses = functional.cross_entropy(logits, targets, reduction="none").view(count, -1).mean(1)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        sums.add_(losses.detach().to(sums.dtype) * rows)
        return logits.detach()  # holding its autograd graph would keep the step's nodes alive

    run_step = steps_for(step, stacked, optimizer, [sums], config, labels.device, hooked=False)
    with numeric_precision(config.precision, labels.device):  # as `train`
        for epoch in range(config.max_epochs):
            active = [index for index in range(count) if final[index] is None]
            orders = {index: shuffled_batches(len(labels), generators[index], labels.device, config.batch_size, smallest)
                      for index in active}
            sums.zero_()
            for position in range(len(orders[active[0]])):
                # A stopped seed's rows repeat the first active seed's batch; they are computed and discarded.
                batches = [orders.get(index, orders[active[0]])[position] for index in range(count)]
                logits = run_step(torch.cat(batches))
            epoch_losses = (sums / len(labels)).tolist()  # the epoch's one wait for the device, as in `train`
            for index in active:
                result = results[index]
                result.epoch_losses.append(epoch_losses[index])
                result.diverged = has_diverged(result.epoch_losses[-1], logits.shape[-1])  # as `train`
                if result.diverged or result.epoch_losses[-1] < config.stop_loss or epoch + 1 == config.max_epochs:
                    final[index] = snapshot(index)
            if scheduler is not None:
                scheduler.step()
            if on_epoch is not None:
                on_epoch(epoch + 1, [results[index].epoch_losses[-1] for index in active])
            if all(state is not None for state in final):
                break
    seconds = (time.perf_counter() - started) / count  # each seed's share of the program
    for index, (model, state, result) in enumerate(zip(models, final, results, strict=True)):
        assert state is not None
        targets = [tensor for _, seeds in links for tensor in seeds[index]]
        with torch.no_grad():
            for target, value in zip(targets, state, strict=True):
                target.copy_(value)
        model.eval()
        result.seconds = seconds
    return results
