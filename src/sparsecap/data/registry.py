"""What each supported dataset is (shape, classes, normalisation) and the in-memory containers, with no file access."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparsecap.errors import SparsecapError

if TYPE_CHECKING:  # ImageDataset's annotations only: spec validation reads this module without torch
    import torch


class DatasetName(str, enum.Enum):
    """The datasets sparsecap can load; the value is the name users type."""

    MNIST = "mnist"
    FASHION_MNIST = "fashion-mnist"
    CIFAR10 = "cifar10"
    CIFAR100 = "cifar100"
    DIGITS = "digits"


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts models and transforms need before (or without) reading any data."""

    name: DatasetName
    input_shape: tuple[int, int, int]  # (channels, height, width)
    num_classes: int
    mean: tuple[float, ...]  # per channel, pixels scaled to [0, 1]
    std: tuple[float, ...]  # per channel, pixels scaled to [0, 1]


@dataclass(frozen=True)
class ImageDataset:
    """A whole dataset held in memory: uint8 images (N, C, H, W) and int64 labels (N,) for each split."""

    info: DatasetInfo
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # where it was read from, for logs and reports

    def to(self, device: str) -> ImageDataset:
        """The dataset on `device`, uploaded as uint8 (a quarter of float32's bytes); no copy where it already is."""
        return dataclasses.replace(
            self, train_images=self.train_images.to(device), train_labels=self.train_labels.to(device),
            test_images=self.test_images.to(device), test_labels=self.test_labels.to(device),
        )


@dataclass(frozen=True)
class DatasetAvailability:
    """Whether a dataset can be loaded without downloading, and where from (or why not)."""

    name: DatasetName
    available: bool
    location: str
    """Where it loads from (the folder or tarball, for a dataset read from files), or why it cannot be."""


# Means and stds are the customary published values, computed on each training set.
# Digits has no customary values: these come from the train split of `digits.load_digits_dataset`
# (a test recomputes them).
_INFOS: dict[DatasetName, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(DatasetName.MNIST, (1, 28, 28), 10, (0.1307,), (0.3081,)),
        DatasetInfo(DatasetName.FASHION_MNIST, (1, 28, 28), 10, (0.2860,), (0.3530,)),
        DatasetInfo(DatasetName.CIFAR10, (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        DatasetInfo(DatasetName.CIFAR100, (3, 32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        DatasetInfo(DatasetName.DIGITS, (1, 8, 8), 10, (0.3054,), (0.3760,)),
    )
}


def parse_dataset_name(name: str) -> DatasetName:
    """Turn user input into a DatasetName, failing with the list of valid names so the user can fix a typo."""
    try:
        return DatasetName(name.strip().lower())
    except ValueError:
        valid = ", ".join(member.value for member in DatasetName)
        raise SparsecapError(f"unknown dataset {name!r}; valid names: {valid}") from None


def dataset_info(name: DatasetName | str) -> DatasetInfo:
    """Static facts about a dataset, without touching its files."""
    return _INFOS[parse_dataset_name(name)]
