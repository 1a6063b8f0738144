"""Iterative magnitude pruning with rewinding (Frankle & Carbin 2018; Renda et al. 2020).

The model is trained dense while its weights at the end of epoch k (`rewind_epoch`; 0: the
initialisation) are stored; then each round prunes `imp_prune_fraction` of the remaining weights by
magnitude (the study's scope and allocation; the last round stops at the base's count exactly), rewinds
every kept weight, bias and normalisation parameter to the stored epoch-k values, and retrains for
max_epochs − k epochs with fresh momentum. A model whose dense training stops (by the loss rule) before
epoch k is rewound to its final weights. Rounds are `imp_round_targets`; a spec whose `imp_rounds`
cannot reach the base's count is refused before anything runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sparsecap.sparsity.masked import masked_layers, weight_count
from sparsecap.sparsity.schedule_config import Schedule, imp_round_targets
from sparsecap.sparsity.schedules.base import Fit, SparsitySchedule, fit_survivors
from sparsecap.sparsity.schedules.registry import register_schedule
from sparsecap.training.trainer import TrainingResult

_WEIGHT_STORAGE = ("weight", "mask", "kept", "values")
"""State-dict entries of a maskable layer that hold its weights or mask (either engine)."""


@dataclass(frozen=True)
class Snapshot:
    """A model's weights at one moment: each maskable layer's dense weights, and every other state entry."""

    weights: dict[str, torch.Tensor]
    others: dict[str, torch.Tensor]


def take_snapshot(model: nn.Module) -> Snapshot:
    layers = dict(masked_layers(model))
    storage = {f"{name}.{entry}" if name else entry for name in layers for entry in _WEIGHT_STORAGE}
    return Snapshot({name: layer.effective_weight().clone() for name, layer in layers.items()},
                    {key: value.detach().clone() for key, value in model.state_dict().items() if key not in storage})


@torch.no_grad()
def rewind_(model: nn.Module, snapshot: Snapshot) -> None:
    """Set every kept weight, and everything else the snapshot holds, to the snapshot's values (masks stay)."""
    for name, layer in masked_layers(model):
        layer.stored_weight.copy_(layer.to_stored_layout(snapshot.weights[name]) * layer.stored_mask)
    model.load_state_dict(snapshot.others, strict=False)


@register_schedule
class IterativeMagnitudePruning(SparsitySchedule):
    """imp (see the module docstring)."""

    name = Schedule.IMP

    def can_train_seeds_together(self) -> bool:
        return self.settings.dynamic.rewind_epoch == 0  # epoch k > 0 is read from each model during training

    def train(self, models: Sequence[nn.Module], fit: Fit,
              generators: Sequence[torch.Generator]) -> list[TrainingResult]:
        dynamic, rewind_epoch = self.settings.dynamic, self.settings.dynamic.rewind_epoch
        if rewind_epoch > 0 and len(models) > 1:
            return [result for model, generator in zip(models, generators, strict=True)
                    for result in self.train([model], fit, [generator])]
        snapshots = [take_snapshot(model) for model in models] if rewind_epoch == 0 else []

        def keep_epoch(epoch: int) -> None:
            if epoch == rewind_epoch:
                snapshots.append(take_snapshot(models[0]))

        results = fit(models, self.settings.max_epochs, on_epoch=keep_epoch if rewind_epoch else None)
        if not snapshots:  # stopped before epoch k
            snapshots = [take_snapshot(model) for model in models]
        targets = imp_round_targets(weight_count(models[0]), self.settings.capacity, dynamic.imp_prune_fraction,
                                    dynamic.imp_rounds)
        for target in targets:
            for model, snapshot in zip(models, snapshots, strict=True):
                self.prune(model, target)
                rewind_(model, snapshot)
            results = fit_survivors(fit, models, results, self.settings.max_epochs - rewind_epoch)
        return results
