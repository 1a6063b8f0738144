"""Train the K seeds of one configuration together: one vectorised program instead of K runs.

The K models (same architecture; each with its own initialisation, mask and data-order generator)
are stacked parameter by parameter and run with ``torch.func.functional_call`` under ``torch.vmap``:
every step computes all K forward and backward passes in batched products. The loss is the sum of the
K per-seed mean cross-entropies, so each seed's gradient is exactly its own; SGD with momentum is
elementwise, so one optimiser over the stacked tensors does what K optimisers do. Each seed draws its
batch order (and augmentation) from its own generator in the same order as `train` does, so the result
equals training the seeds one by one up to float rounding (batched vs single matrix products).

Each seed keeps its own stopping rule: when its epoch loss falls below ``stop_loss`` (or it diverges),
its parameters at that point are what it returns, while the others go on (the stopped seed's rows keep
being computed, and are discarded: simplest, and what a batch of seeds costs anyway).

Masked layers must use the dense engine here (the sparse engine's autograd Function is not vmapped).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as functional
from torch import nn
from torch.func import functional_call, stack_module_state

from sparsecap.sparsity import SparseLinear
from sparsecap.training.augmentation import random_crop_and_flip
from sparsecap.training.trainer import LearningRateSchedule, TrainingConfig, TrainingResult, to_pixels


def train_together(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainingConfig,
    generators: Sequence[torch.Generator],
) -> list[TrainingResult]:
    """Train `models` (one per seed, same architecture) in place, as `train` would one by one."""
    if len(models) != len(generators) or not models:
        raise ValueError("one data-order generator per model, and at least one model")
    for model in models:
        if any(isinstance(module, SparseLinear) for module in model.modules()):
            raise ValueError("train_together needs the dense engine (the sparse engine is not vmapped)")
    count = len(models)
    parameters, buffers = stack_module_state(list(models))  # detached copies, requires_grad set
    template = models[0]

    def seed_loss(
        seed_parameters: dict[str, torch.Tensor], seed_buffers: dict[str, torch.Tensor],
        inputs: torch.Tensor, targets: torch.Tensor,
    ) -> torch.Tensor:
        logits = functional_call(template, (seed_parameters, seed_buffers), (inputs,))
        return functional.cross_entropy(logits, targets)

    batched_loss = torch.vmap(seed_loss)
    optimizer = torch.optim.SGD(parameters.values(), lr=config.learning_rate, momentum=config.momentum)
    scheduler = None
    if config.schedule is LearningRateSchedule.COSINE:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_epochs)
    results = [TrainingResult() for _ in models]
    final: list[dict[str, torch.Tensor] | None] = [None] * count
    started = time.perf_counter()
    template.train()
    for epoch in range(config.max_epochs):
        active = [index for index in range(count) if final[index] is None]
        orders = [torch.randperm(len(labels), generator=generators[index]).split(config.batch_size)
                  if index in active else None for index in range(count)]
        sums = [0.0] * count
        seen = 0
        diverged: set[int] = set()
        for step in range(math.ceil(len(labels) / config.batch_size)):
            batches = [order[step] if order is not None else orders[active[0]][step] for order in orders]
            inputs = []
            for index, batch in enumerate(batches):
                batch_images = images[batch]
                if config.augmentation and index in active and index not in diverged:
                    batch_images = random_crop_and_flip(batch_images, generators[index])
                inputs.append(to_pixels(batch_images))
            losses = batched_loss(parameters, buffers, torch.stack(inputs), torch.stack([labels[b] for b in batches]))
            values = losses.tolist()
            for index in active:
                if index not in diverged and not math.isfinite(values[index]):
                    diverged.add(index)  # as `train`: stop before this step, keep the weights it had
                    final[index] = {name: tensor[index].detach().clone() for name, tensor in parameters.items()}
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            for index in active:
                sums[index] += values[index] * len(batches[index])
            seen += len(batches[0])
        for index in active:
            result = results[index]
            if index in diverged:
                result.diverged = True
                result.epoch_losses.append(math.nan)
                continue
            result.epoch_losses.append(sums[index] / seen)
            if result.epoch_losses[-1] < config.stop_loss or epoch + 1 == config.max_epochs:
                final[index] = {name: tensor[index].detach().clone() for name, tensor in parameters.items()}
        if scheduler is not None:
            scheduler.step()
        if all(state is not None for state in final):
            break
    seconds = time.perf_counter() - started
    for model, state, result in zip(models, final, results, strict=True):
        assert state is not None
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                parameter.copy_(state[name])
        model.eval()
        result.seconds = seconds
    return results
