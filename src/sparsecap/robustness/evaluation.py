"""Clean evaluation: accuracy, mean cross-entropy and per-class recall on a test set."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as functional
from torch import nn

from sparsecap.training.trainer import loss_accumulator, to_pixels


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    class_recall: tuple[float, ...]

    @property
    def min_class_recall(self) -> float:
        """The worst class's recall (paper Fig. 8): a model can keep accuracy yet forget a class.

        Classes absent from the test set (recall NaN) are left out.
        """
        return min((recall for recall in self.class_recall if not math.isnan(recall)), default=math.nan)


def class_recall(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[float, ...]:
    """Recall of each class (correct / present); a class absent from `labels` gets NaN."""
    present = torch.bincount(labels, minlength=num_classes).double()
    correct = torch.bincount(labels[predictions == labels], minlength=num_classes).double()
    return tuple((correct / present).tolist())


@torch.no_grad()
def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, batch_size: int = 1000
) -> Evaluation:
    """Evaluate in eval mode over uint8 `images`, summing on their device and reading the sums once."""
    model.eval()
    loss_sum = torch.zeros((), dtype=loss_accumulator(labels.device), device=labels.device)
    predictions = []
    for start in range(0, len(labels), batch_size):
        logits = model(to_pixels(images[start : start + batch_size]))
        batch_labels = labels[start : start + batch_size]
        loss_sum += functional.cross_entropy(logits, batch_labels, reduction="sum").to(loss_sum.dtype)
        predictions.append(logits.argmax(dim=1))
    predicted = torch.cat(predictions)
    return Evaluation(
        accuracy=(predicted == labels).double().mean().item(),
        loss=loss_sum.item() / len(labels),
        class_recall=class_recall(predicted, labels, num_classes),
    )
