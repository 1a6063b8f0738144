"""Dataset files in their real on-disk formats, written by tests."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""../shared/data beside the repository, as in CI: real MNIST and the frost pictures (see its README)."""


def real_data(path: Path, how_to_get: str) -> Path:
    """`path`, where real data files are; where they are missing the test is skipped, but fails in CI (`$CI`),
    whose machine has them: a checkout without them must not pass the real-data tests by skipping them all."""
    if not path.exists():
        message = f"{path} is missing: {how_to_get}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def cifar_batch_bytes(data: np.ndarray, labels: list[int], label_key: bytes = b"labels") -> bytes:
    """A batch pickled like the official ones: a dict with bytes keys, uint8 data and a list of int labels."""
    batch = {
        b"batch_label": b"testing batch",
        label_key: labels,
        b"data": data,
        b"filenames": [f"image_{index}.png".encode() for index in range(len(labels))],
    }
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [label // 5 for label in labels]
    return pickle.dumps(batch)


def random_cifar_batch(rng: np.random.Generator, count: int, num_classes: int) -> tuple[np.ndarray, list[int]]:
    data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
    return data, [int(label) for label in rng.integers(0, num_classes, size=count)]


def write_cifar10(directory: Path, per_train_batch: int = 3, test: int = 2) -> dict[str, tuple[np.ndarray, list[int]]]:
    """The CIFAR-10 python-version layout with random images: five training batches and the test batch."""
    rng = np.random.default_rng(1)
    batches = {f"data_batch_{index}": random_cifar_batch(rng, per_train_batch, 10) for index in range(1, 6)}
    batches["test_batch"] = random_cifar_batch(rng, test, 10)
    directory.mkdir(parents=True)
    for batch_name, (data, labels) in batches.items():
        (directory / batch_name).write_bytes(cifar_batch_bytes(data, labels))
    return batches
