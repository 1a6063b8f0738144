"""Dynamic sparse training: set (Mocanu et al. 2018) and rigl (Evci et al. 2020).

Both start from the static schedule's random mask and, every `update_interval` optimiser steps, drop
in each layer the fraction ζ of its kept weights with the smallest magnitude and regrow as many, so
every layer keeps exactly its count under the study's allocation. They differ in where they regrow:
set at random among the positions that were masked before the update, rigl where the dense gradient of
the step's batch is largest among all positions not kept after the drop (a dropped weight may return).
rigl's fraction decays as ζ/2·(1 + cos(π t / T_end)) and its updates stop at T_end = stop_fraction of
max_epochs' steps; set updates with the constant ζ until training ends. Neither moves the mask after the
last step (the stopping rule's or max_epochs'; Mocanu et al.'s code skips the last epoch's evolution too):
the weights it regrew would be evaluated untrained, at zero, a fraction ζ of the count lost. A weight grown where none was
kept before the update starts at zero, with its momentum (RigL's rule; its code base does the same for
SET); a dropped weight rigl regrows at once never left, and keeps its value and momentum (`net_moves`, as
RigL's reference code does by default).

The update is a hook between two optimiser steps (`sparsecap.training.step_hook`): positions move in
place in each layer's storage (`move_kept_`: a sparse layer's positions and values, a dense one's mask)
and the optimiser's momentum moves with them, so the trainer knows nothing of it. The model is updated
between steps, so seeds train one at a time (a stacked program holds the seeds' weights until it ends).
"""

from __future__ import annotations

import functools
import math
from abc import abstractmethod
from collections.abc import Sequence

import torch
from torch import nn

from sparsecap.sparsity.mask_granularity import MaskGranularity
from sparsecap.sparsity.mask_sampling import random_positions
from sparsecap.sparsity.masked import MaskedLayer, masked_layers
from sparsecap.sparsity.ranking import top_mask
from sparsecap.sparsity.schedule_config import DynamicConfig, Schedule
from sparsecap.sparsity.schedules.base import Fit, SparsitySchedule
from sparsecap.sparsity.schedules.gradients import LayerGradient, largest_gradient_positions, layer_gradients
from sparsecap.sparsity.schedules.registry import register_schedule
from sparsecap.sparsity.static import sparse_model_at_init
from sparsecap.training.step_hook import Step
from sparsecap.training.trainer import TrainingResult


def masked_position(kept: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """The flat positions of the `ranks`-th not-kept positions, given the ascending kept ones (no dense pass):
    kept[i] - i not-kept positions precede kept[i]."""
    before = kept - torch.arange(kept.numel(), device=kept.device)
    return ranks + torch.searchsorted(before, ranks, right=True)


def net_moves(dropped: torch.Tensor, grown: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions that leave and those that arrive: a position both dropped and grown stays as it is."""
    return dropped[~torch.isin(dropped, grown)], grown[~torch.isin(grown, dropped)]


def _companions(layer: MaskedLayer, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimiser's per-weight state of the layer's stored weights (SGD: the momentum buffer)."""
    weight = layer.stored_weight
    return [value for value in optimizer.state.get(weight, {}).values()
            if isinstance(value, torch.Tensor) and value.shape == weight.shape]


class MovingMask(SparsitySchedule):
    """What set and rigl share: the starting mask, the drop by magnitude and the moves in place."""

    def prepare(self, model: nn.Module, mask_generator: torch.Generator, init_generator: torch.Generator) -> None:
        settings = self.settings  # single weights move: a whole-kernel mask would not survive the first update
        sparse_model_at_init(model, settings.capacity, settings.allocation, mask_generator, init_generator,
                             MaskGranularity.WEIGHT)

    def can_train_seeds_together(self) -> bool:
        return False

    def train(self, models: Sequence[nn.Module], fit: Fit,
              generators: Sequence[torch.Generator]) -> list[TrainingResult]:
        return [fit([model], self.settings.max_epochs, on_step=functools.partial(self.update, model, generator))[0]
                for model, generator in zip(models, generators, strict=True)]

    @abstractmethod
    def drop_fraction(self, step: Step) -> float:
        """The fraction of each layer's kept weights to move after `step` (0: no update)."""

    @abstractmethod
    def regrow_count(self, kept: int, total: int, dropped: int) -> int:
        """How many of `dropped` weights a layer with `kept` of `total` positions can regrow."""

    @abstractmethod
    def grown_positions(self, layer: MaskedLayer, kept: torch.Tensor, survivors: torch.Tensor, count: int,
                        gradient: LayerGradient | None, generator: torch.Generator) -> torch.Tensor:
        """`count` positions to regrow, none in `survivors` (the kept positions not dropped)."""

    def gradients(self, model: nn.Module, step: Step) -> dict[str, LayerGradient] | None:
        """What regrowth reads of the step's batch (None: nothing)."""
        return None

    @torch.no_grad()
    def _move(self, name: str, layer: MaskedLayer, fraction: float, step: Step,
              gradients: dict[str, LayerGradient] | None, generator: torch.Generator) -> None:
        kept = layer.kept_positions()
        count = self.regrow_count(kept.numel(), layer.weight_shape.numel(), int(fraction * kept.numel()))
        if count <= 0:
            return
        dropped = top_mask(layer.kept_values().abs(), count, largest=False)
        grown = self.grown_positions(layer, kept, kept[~dropped], count,
                                     None if gradients is None else gradients[name], generator)
        layer.move_kept_(*net_moves(kept[dropped], grown), _companions(layer, step.optimizer))

    def update(self, model: nn.Module, generator: torch.Generator, step: Step) -> None:
        """The step hook: move each layer's smallest kept weights (see the module docstring)."""
        fraction = self.drop_fraction(step)
        if fraction <= 0:
            return
        gradients = self.gradients(model, step)
        for name, layer in masked_layers(model):
            self._move(name, layer, fraction, step, gradients, generator)


@register_schedule
class SparseEvolutionaryTraining(MovingMask):
    """set: regrow at random among the positions masked before the update."""

    name = Schedule.SET

    def drop_fraction(self, step: Step) -> float:
        return self.settings.dynamic.zeta if step.number % self.settings.dynamic.update_interval == 0 else 0.0

    def regrow_count(self, kept: int, total: int, dropped: int) -> int:
        return min(dropped, total - kept)

    def grown_positions(self, layer: MaskedLayer, kept: torch.Tensor, survivors: torch.Tensor, count: int,
                        gradient: LayerGradient | None, generator: torch.Generator) -> torch.Tensor:
        ranks = random_positions(layer.weight_shape.numel() - kept.numel(), count, generator).to(kept.device)
        return masked_position(kept, ranks)


def rigl_drop_fraction(dynamic: DynamicConfig, step: Step) -> float:
    """ζ/2·(1 + cos(π t / T_end)) on update steps before T_end = stop_fraction × planned steps, else 0."""
    end = dynamic.stop_fraction * step.planned
    if step.number % dynamic.update_interval or step.number >= end:
        return 0.0
    return dynamic.zeta / 2 * (1 + math.cos(math.pi * step.number / end))


@register_schedule
class RiggedLottery(MovingMask):
    """rigl: regrow where the dense gradient is largest (computed on update steps only)."""

    name = Schedule.RIGL

    def drop_fraction(self, step: Step) -> float:
        return rigl_drop_fraction(self.settings.dynamic, step)

    def regrow_count(self, kept: int, total: int, dropped: int) -> int:
        return dropped if kept < total else 0  # dropped positions are candidates too: room unless dense

    def gradients(self, model: nn.Module, step: Step) -> dict[str, LayerGradient] | None:
        with torch.enable_grad():
            return layer_gradients(model, step.batch_loss)

    def grown_positions(self, layer: MaskedLayer, kept: torch.Tensor, survivors: torch.Tensor, count: int,
                        gradient: LayerGradient | None, generator: torch.Generator) -> torch.Tensor:
        assert gradient is not None
        return largest_gradient_positions(layer, gradient, survivors, count)

