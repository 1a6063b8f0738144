"""Accuracy on corrupted data: a model evaluated on the protocol's cached corrupted inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sparsecap.corruptions.protocol import EvaluationInputs
from sparsecap.corruptions.registry import to_channels_first
from sparsecap.robustness.evaluation import evaluate


@dataclass(frozen=True)
class CorruptionResult:
    corruption: str
    severity: int
    draw: int
    accuracy: float
    loss: float


@torch.no_grad()
def corrupted_data_robustness(
    model: nn.Module, inputs: EvaluationInputs, test_labels: torch.Tensor, num_classes: int
) -> list[CorruptionResult]:
    """Accuracy and mean cross-entropy on every (corruption, severity, draw) of `inputs`.

    `test_labels` are the whole test split's labels; each entry's sample indices select from them.
    """
    results = []
    for entry in inputs:
        labels = test_labels[torch.from_numpy(entry.indices).to(test_labels.device)]
        for draw, images in enumerate(entry.images):  # generated on the CPU once per study, evaluated on the device
            pixels = torch.from_numpy(np.array(to_channels_first(images))).to(test_labels.device)  # a copy: the
            # cache is read-only
            evaluation = evaluate(model, pixels, labels, num_classes)
            results.append(CorruptionResult(entry.corruption, entry.severity, draw, evaluation.accuracy,
                                            evaluation.loss))
    return results
