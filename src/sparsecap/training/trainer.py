"""Full-batch-in-memory SGD training with the paper's stopping rule.

Images stay uint8 in memory and are scaled per batch; one permutation per epoch from the trial's own
generator fixes the data order, so the same seed gives the same run.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as functional
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from sparsecap.devices import memory_format
from sparsecap.training.augmentation import random_crop_and_flip
from sparsecap.training.batches import epoch_batches, shuffled_batches, smallest_batch
from sparsecap.training.config import LearningRateSchedule, TrainingConfig
from sparsecap.training.divergence import has_diverged
from sparsecap.training.graphed_steps import steps_for
from sparsecap.training.precision import numeric_precision
from sparsecap.training.step_hook import Step, StepHook


@dataclass
class TrainingResult:
    epoch_losses: list[float] = field(default_factory=list)
    diverged: bool = False
    seconds: float = 0.0

    @property
    def epochs(self) -> int:
        return len(self.epoch_losses)

    @property
    def final_loss(self) -> float | None:
        return self.epoch_losses[-1] if self.epoch_losses else None


def loss_accumulator(device: torch.device) -> torch.dtype:
    """The dtype epoch losses are summed in: float64, as Python's floats were, where the device has it."""
    return torch.float32 if device.type == "mps" else torch.float64


def to_pixels(images: torch.Tensor, layout: torch.memory_format = torch.preserve_format) -> torch.Tensor:
    """uint8 images to float pixels in [0, 1] (the models' input space), in `layout` (`devices.memory_format`)."""
    return images.to(torch.float32, memory_format=layout).div_(255.0)


def forward_of(model: nn.Module, config: TrainingConfig) -> nn.Module:
    """What training calls: the model, or with `[training] compile` `torch.compile(model)`, which shares its
    parameters (so the optimiser, hooks and checkpoints see the model itself)."""
    return torch.compile(model) if config.compile else model


EpochCallback = Callable[[int, float], None]


def sgd_with_schedule(model: nn.Module, config: TrainingConfig) -> tuple[torch.optim.SGD, LRScheduler | None]:
    """The paper's optimiser (SGD with momentum) over `model`'s parameters, and its learning-rate schedule (None:
    constant); one seed's model or K seeds stacked into one."""
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum)
    if config.schedule is LearningRateSchedule.COSINE:
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_epochs)
    return optimizer, None


def _batch_loss(model: nn.Module, pixels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return functional.cross_entropy(model(pixels), targets)


def train(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainingConfig,
    generator: torch.Generator,
    on_epoch: EpochCallback | None = None,
    on_step: StepHook | None = None,
) -> TrainingResult:
    """Train in place with SGD + momentum until max_epochs or the loss threshold; `on_step` is called
    between two optimiser steps with the first (`sparsecap.training.step_hook`), never after the last: a mask
    moved then would leave its regrown weights untrained in the model that is evaluated.

    The epoch's loss is summed where the model is and read once per epoch: no step waits for the device.
    On CUDA the steps are replayed as CUDA graphs where nothing in them is decided on the host
    (`sparsecap.training.graphed_steps`): the same kernels, launched at once.
    An epoch whose loss is non-finite or beyond `divergence_bound` ends training, marked diverged
    (`sparsecap.training.divergence`); its weights are then those at the end of that epoch.
    """
    optimizer, scheduler = sgd_with_schedule(model, config)
    result = TrainingResult()
    started = time.perf_counter()
    model.train()
    smallest = smallest_batch(model)
    steps, planned = 0, config.max_epochs * len(epoch_batches(torch.arange(len(labels)), config.batch_size, smallest))
    forward, layout = forward_of(model, config), memory_format(model, labels.device)
    loss_sum = torch.zeros((), dtype=loss_accumulator(labels.device), device=labels.device)
    taken: list[Step] = []  # the step whose hook waits for the next step to come

    def step(batch: torch.Tensor) -> torch.Tensor:
        nonlocal steps
        batch_images = images.index_select(0, batch)  # ~10x faster than images[batch] on uint8
        if config.augmentation:
            batch_images = random_crop_and_flip(batch_images, generator)
        pixels, targets = to_pixels(batch_images, layout), labels.index_select(0, batch)
        if taken:
            on_step(taken.pop())
        logits = forward(pixels)
        loss = functional.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if on_step is not None:
            steps += 1
            taken.append(Step(steps, planned, optimizer, functools.partial(_batch_loss, model, pixels, targets)))
        loss_sum.add_(loss.detach().to(loss_sum.dtype) * len(batch))
        return logits.detach()  # holding its autograd graph would keep the step's nodes alive

    run_step = steps_for(step, model, optimizer, [loss_sum], config, labels.device, hooked=on_step is not None)
    with numeric_precision(config.precision, labels.device):
        for epoch in range(config.max_epochs):
            loss_sum.zero_()
            for batch in shuffled_batches(len(labels), generator, labels.device, config.batch_size, smallest):
                logits = run_step(batch)
            result.epoch_losses.append(loss_sum.item() / len(labels))  # the epoch's one wait for the device
            result.diverged = has_diverged(result.epoch_losses[-1], logits.shape[-1])
            if scheduler is not None:
                scheduler.step()
            if on_epoch is not None:  # the diverging epoch too: a log then shows its loss
                on_epoch(epoch + 1, result.epoch_losses[-1])
            if result.diverged or result.epoch_losses[-1] < config.stop_loss:
                break
    result.seconds = time.perf_counter() - started
    model.eval()
    return result
