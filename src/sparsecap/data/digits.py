"""scikit-learn's bundled 8x8 digits: tiny and always available, so studies and tests can run with no files."""

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sparsecap.data.registry import DatasetName, ImageDataset, dataset_info

_MAX_DIGITS_VALUE = 16  # load_digits pixels are counts 0..16
TEST_FRACTION = 0.2
SPLIT_SEED = 0
DIGITS_SOURCE = "scikit-learn load_digits() (bundled, always available)"


def _to_uint8_pixels(values: np.ndarray) -> np.ndarray:
    """Rescale 0..16 digit intensities to the 0..255 uint8 scale every other dataset uses."""
    return np.rint(values * (255 / _MAX_DIGITS_VALUE)).astype(np.uint8)


def load_digits_dataset() -> ImageDataset:
    """The digits as (N, 1, 8, 8) uint8 with a fixed, stratified train/test split (same on every call)."""
    digits = load_digits()
    images = _to_uint8_pixels(digits.images)[:, None]
    labels = digits.target.astype(np.int64)
    train_images, test_images, train_labels, test_labels = train_test_split(
        images, labels, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    return ImageDataset(
        info=dataset_info(DatasetName.DIGITS),
        train_images=torch.from_numpy(train_images),
        train_labels=torch.from_numpy(train_labels),
        test_images=torch.from_numpy(test_images),
        test_labels=torch.from_numpy(test_labels),
        source=DIGITS_SOURCE,
    )
