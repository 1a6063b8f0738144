"""Reader for the "python version" of CIFAR-10/100: pickled batches, extracted or still inside the tarball.

Each batch is a pickled dict with b"data", a uint8 array (N, 3072) holding the red, green and blue 32x32
planes of each image in turn, and a label list (b"labels" for CIFAR-10, b"fine_labels" for CIFAR-100).
Pickle can run arbitrary code, so batches are read with an unpickler that only rebuilds numpy arrays
(`sparsecap.data.safe_pickle`); batches re-pickled with protocol 2 are accepted too.
"""

import gzip
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from sparsecap.data.registry import DatasetInfo, DatasetName, ImageDataset
from sparsecap.data.safe_pickle import load_numpy_pickle
from sparsecap.errors import DatasetFormatError

_PIXELS_PER_IMAGE = 3 * 32 * 32
CRC_CHECK_CHUNK = 2**20


@dataclass(frozen=True)
class CifarLayout:
    """Where a CIFAR variant's batches live, as the official tarball lays them out."""

    directory: str  # the directory the tarball extracts to
    tarball: str
    train_batches: tuple[str, ...]
    test_batches: tuple[str, ...]
    label_key: bytes
    batch_md5: dict[str, str]
    """The published MD5 of each extracted batch file (byte for byte as in the tarball)."""

    def batch_names(self) -> tuple[str, ...]:
        return self.train_batches + self.test_batches


CIFAR_LAYOUTS: dict[DatasetName, CifarLayout] = {
    DatasetName.CIFAR10: CifarLayout(
        directory="cifar-10-batches-py",
        tarball="cifar-10-python.tar.gz",
        train_batches=tuple(f"data_batch_{index}" for index in range(1, 6)),
        test_batches=("test_batch",),
        label_key=b"labels",
        batch_md5={
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
        },
    ),
    DatasetName.CIFAR100: CifarLayout(
        directory="cifar-100-python",
        tarball="cifar-100-python.tar.gz",
        train_batches=("train",),
        test_batches=("test",),
        label_key=b"fine_labels",
        batch_md5={"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc"},
    ),
}


def read_batch(file: IO[bytes], source: str, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle one batch safely and return its (N, 3072) uint8 data and (N,) int64 labels, validated."""
    batch = load_numpy_pickle(file, source, DatasetFormatError, "a CIFAR batch")
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DatasetFormatError(f"{source}: expected a dict with b'data' and {label_key!r} entries")
    data = batch[b"data"]
    labels = np.asarray(batch[label_key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DatasetFormatError(f"{source}: b'data' must be a 2-D uint8 array")
    if data.shape[1] != _PIXELS_PER_IMAGE:
        raise DatasetFormatError(
            f"{source}: b'data' has {data.shape[1]} columns, expected {_PIXELS_PER_IMAGE} (3x32x32)"
        )
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetFormatError(
            f"{source}: {len(data)} images but {label_key!r} holds {labels.size} values (integers expected)"
        )
    return data, labels.astype(np.int64)


def _read_directory_batches(directory: Path, layout: CifarLayout) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    batches = {}
    for batch_name in layout.batch_names():
        path = directory / batch_name
        with path.open("rb") as file:
            batches[batch_name] = read_batch(file, str(path), layout.label_key)
    return batches


def _read_tarball_batches(tarball: Path, layout: CifarLayout) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the batches straight from the tarball in one streaming pass (no extraction, no seeking back),
    then read the gzip stream to its end, where gzip checks its CRC: tarfile stops at the archive's end
    marker, before the CRC, and a damaged byte that still inflates would pass as a pixel."""
    wanted = {f"{layout.directory}/{batch_name}": batch_name for batch_name in layout.batch_names()}
    batches = {}
    try:
        with gzip.open(tarball, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                batch_name = wanted.get(member.name)
                if batch_name is None:
                    continue
                file = archive.extractfile(member)  # None when the member is not a regular file
                if file is not None:
                    batches[batch_name] = read_batch(file, f"{tarball}:{member.name}", layout.label_key)
            while stream.read(CRC_CHECK_CHUNK):
                pass
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DatasetFormatError(f"{tarball}: unreadable tarball ({error})") from error
    missing = [member_name for member_name, batch_name in wanted.items() if batch_name not in batches]
    if missing:
        raise DatasetFormatError(f"{tarball}: missing members {', '.join(missing)}")
    return batches


def _to_tensors(
    batches: dict[str, tuple[np.ndarray, np.ndarray]], batch_names: tuple[str, ...], info: DatasetInfo, source: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate batches in their canonical order into (N, 3, 32, 32) images and int64 labels."""
    data = np.concatenate([batches[name][0] for name in batch_names])
    labels = np.concatenate([batches[name][1] for name in batch_names])
    if labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise DatasetFormatError(
            f"{source}: labels span {labels.min()}..{labels.max()}, outside 0..{info.num_classes - 1}"
        )
    return torch.from_numpy(data.reshape(-1, *info.input_shape)), torch.from_numpy(labels)


def load_cifar_dataset(info: DatasetInfo, location: Path) -> ImageDataset:
    """Load CIFAR-10/100 from its extracted batch directory or from the unextracted official tarball."""
    layout = CIFAR_LAYOUTS[info.name]
    if location.is_dir():
        batches = _read_directory_batches(location, layout)
    else:
        batches = _read_tarball_batches(location, layout)
    train_images, train_labels = _to_tensors(batches, layout.train_batches, info, str(location))
    test_images, test_labels = _to_tensors(batches, layout.test_batches, info, str(location))
    return ImageDataset(info, train_images, train_labels, test_images, test_labels, source=str(location))
