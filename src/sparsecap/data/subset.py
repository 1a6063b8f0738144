"""Fixed random subsets of a dataset, shared by every trial of a study (for smoke runs and quick checks)."""

from __future__ import annotations

from dataclasses import replace

import torch

from sparsecap.data.registry import ImageDataset
from sparsecap.errors import SparsecapError

SUBSET_SEED = 0


def _pick(count: int | None, available: int, split: str, dataset: ImageDataset) -> torch.Tensor | None:
    if count is None:
        return None
    if count > available:
        raise SparsecapError(
            f"{split}_examples = {count} exceeds the {available} {split} images of {dataset.info.name.value}"
        )
    return torch.randperm(available, generator=torch.Generator().manual_seed(SUBSET_SEED))[:count]


def take_subset(dataset: ImageDataset, train_examples: int | None, test_examples: int | None) -> ImageDataset:
    """The same `train_examples` / `test_examples` images every time (None keeps a split whole)."""
    train = _pick(train_examples, len(dataset.train_labels), "train", dataset)
    test = _pick(test_examples, len(dataset.test_labels), "test", dataset)
    if train is not None:
        dataset = replace(dataset, train_images=dataset.train_images[train], train_labels=dataset.train_labels[train])
    if test is not None:
        dataset = replace(dataset, test_images=dataset.test_images[test], test_labels=dataset.test_labels[test])
    return dataset
