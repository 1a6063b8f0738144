"""Clean evaluation: accuracy, mean cross-entropy and per-class recall on a test set."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as functional
from torch import nn

from sparsecap.devices import memory_format
from sparsecap.sparsity.masked import masked_layers
from sparsecap.sparsity.unread_units import without_unread_units
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


EVALUATION_BATCH = 1000
CPU_ACTIVATIONS_LIMIT = 4 * 2**20
"""Bytes of one evaluation batch's layer outputs that a CPU keeps in its caches. Wider models are evaluated
in smaller batches (down to 128): on 2 cores the width-2^15 MLP's clean pass over the MNIST test set took
1.2-1.3 s in batches of 1000 (131 MB of hidden activations each) and 0.4-0.47 s in batches of 64-128;
width 2^13: 0.27-0.31 s against 0.12-0.18 s (docs/performance.md). A GPU takes the whole 1000."""


def evaluation_batch_size(model: nn.Module, device: torch.device) -> int:
    """Examples per evaluation batch: 1000, fewer on a CPU where that many would overflow its caches (the
    batch changes no result beyond float rounding)."""
    if device.type != "cpu":
        return EVALUATION_BATCH
    outputs = sum(layer.weight_shape[0] for _, layer in masked_layers(model))
    return max(128, min(EVALUATION_BATCH, CPU_ACTIVATIONS_LIMIT // (4 * max(outputs, 1))))


@torch.no_grad()
def evaluate_side_by_side(
    network: nn.Module, count: int, images: torch.Tensor, labels: torch.Tensor, num_classes: int, batch_size: int,
    layout: torch.memory_format = torch.preserve_format,
) -> list[Evaluation]:
    """The evaluations of the `count` models whose logits `network` gives side by side, (batch, count × classes)
    (`sparsecap.sparsity.side_by_side`; count 1: a model itself), in eval mode over uint8 `images`, summing
    on their device and reading the sums once.

    Losses and predictions are taken over the logits as (model, class, example): the sparse engine gives its
    outputs in that layout, each class's scores contiguous over the batch. Reducing over the classes of each
    row of a (batch, classes) view instead strides through memory: for five width-2^15 draws side by side,
    loss and predictions took 0.28 ms per batch of 165 that way, 0.04 ms this way (one thread; `max` finds
    `argmax`'s first maximum, in an eighth of its time over this layout)."""
    network.eval()
    loss_sums = torch.zeros(count, dtype=loss_accumulator(labels.device), device=labels.device)
    predictions = []
    for start in range(0, len(labels), batch_size):
        batch_labels = labels[start : start + batch_size]
        scores = network(to_pixels(images[start : start + batch_size], layout)).t().reshape(count, -1, len(batch_labels))
        losses = functional.cross_entropy(scores, batch_labels.expand(count, -1), reduction="none")
        loss_sums += losses.sum(1).to(loss_sums.dtype)
        predictions.append(scores.max(dim=1).indices)
    predicted, sums = torch.cat(predictions, dim=1), loss_sums.tolist()
    return [Evaluation(accuracy=(predicted[index] == labels).double().mean().item(),
                       loss=sums[index] / len(labels),
                       class_recall=class_recall(predicted[index], labels, num_classes)) for index in range(count)]


def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, batch_size: int | None = None
) -> Evaluation:
    """Evaluate in eval mode over uint8 `images` (`batch_size` None: `evaluation_batch_size`). The model is
    computed without its unread hidden units (`without_unread_units`): the same logits, bit for bit."""
    model.eval()
    model = without_unread_units(model)
    batch_size = batch_size or evaluation_batch_size(model, images.device)
    return evaluate_side_by_side(model, 1, images, labels, num_classes, batch_size,
                                 memory_format(model, images.device))[0]
