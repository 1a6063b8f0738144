"""Reader for the IDX files MNIST and Fashion-MNIST are distributed as (gzipped or not), validated strictly.

IDX layout: a big-endian int32 magic (0x0000, a type code, then the number of dimensions), one big-endian
uint32 per dimension, then the values. Both datasets use unsigned bytes: magic 2051 for (N, H, W) images and
2049 for (N,) labels.
"""

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np
import torch

from sparsecap.data.registry import DatasetInfo, DatasetName, ImageDataset
from sparsecap.errors import DatasetFormatError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# (images, labels) file names per split, as published; each may also be present with a ".gz" suffix.
TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_FILE_NAMES = TRAIN_FILES + TEST_FILES

# SHA-256 of each published dataset's decoded test labels. The two datasets share file names, so MNIST's
# search of <ROOT> itself can meet Fashion-MNIST's files; these tell them apart at the cost of 10,000 bytes.
TEST_LABELS_SHA256: dict[DatasetName, str] = {
    DatasetName.MNIST: "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    DatasetName.FASHION_MNIST: "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}
# SHA-256 of each published file's decoded bytes (as gunzip gives them): what `sparsecap datasets --verify`
# compares, plain and gzipped copies alike (the published MD5s are of gzip streams, which a repackager such as
# Debian's Fashion-MNIST may recompress).
DECODED_SHA256: dict[DatasetName, dict[str, str]] = {
    DatasetName.MNIST: {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    DatasetName.FASHION_MNIST: {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}


def find_idx_file(directory: Path, file_name: str) -> Path | None:
    """The file as published, preferring the uncompressed copy (faster to read) over the ".gz" one."""
    for candidate in (directory / file_name, directory / f"{file_name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def decoded_bytes(path: Path) -> bytes:
    """The file's content, decompressed if it is gzipped; a damaged gzip stream is a format error, not a crash."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as compressed:
                return compressed.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DatasetFormatError(f"{path}: damaged gzip stream ({error})") from error


def parse_idx(content: bytes, expected_magic: int, source: Path) -> np.ndarray:
    """Decode IDX bytes into a uint8 array, checking the magic and that the payload matches the declared dims."""
    if len(content) < 4:
        raise DatasetFormatError(f"{source}: only {len(content)} bytes, too short for an IDX header")
    magic = int.from_bytes(content[:4], "big")
    if magic != expected_magic:
        raise DatasetFormatError(
            f"{source}: IDX magic number is {magic}, expected {expected_magic} "
            f"({'images' if expected_magic == IMAGES_MAGIC else 'labels'} file)"
        )
    ndim = magic & 0xFF
    header_bytes = 4 + 4 * ndim
    if len(content) < header_bytes:
        raise DatasetFormatError(f"{source}: truncated IDX header, expected {header_bytes} bytes, found {len(content)}")
    dims = tuple(int(dim) for dim in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    if not dims or dims[0] == 0:
        raise DatasetFormatError(f"{source}: header declares no items (shape {dims}); expected a non-empty split")
    expected_bytes = header_bytes + int(np.prod(dims))
    if len(content) != expected_bytes:
        raise DatasetFormatError(
            f"{source}: header declares shape {dims}, so expected {expected_bytes} bytes, "
            f"found {len(content)} (truncated or corrupt file)"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header_bytes).reshape(dims)


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read and validate one IDX file (gzipped or not)."""
    return parse_idx(decoded_bytes(path), expected_magic, path)


def _load_split(directory: Path, file_names: tuple[str, str], info: DatasetInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """One split's images as (N, 1, H, W) uint8 and labels as int64, checked against each other and `info`."""
    images_path, labels_path = (find_idx_file(directory, file_name) for file_name in file_names)
    if images_path is None or labels_path is None:
        raise DatasetFormatError(f"{directory}: missing {' or '.join(file_names)} (plain or .gz)")
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DatasetFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if images.shape[1:] != info.input_shape[1:]:
        raise DatasetFormatError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"{info.name.value} needs {info.input_shape[1]}x{info.input_shape[2]}"
        )
    if labels.size and labels.max() >= info.num_classes:
        raise DatasetFormatError(f"{labels_path}: label {labels.max()} is out of range for {info.num_classes} classes")
    # np.frombuffer views read-only bytes; copy so the tensors own writable memory.
    return torch.from_numpy(images[:, None].copy()), torch.from_numpy(labels.astype(np.int64))


def load_idx_dataset(info: DatasetInfo, directory: Path) -> ImageDataset:
    """Load MNIST-style train and test splits from a directory holding the four IDX files."""
    train_images, train_labels = _load_split(directory, TRAIN_FILES, info)
    test_images, test_labels = _load_split(directory, TEST_FILES, info)
    _refuse_the_other_dataset(info, directory, test_labels)
    return ImageDataset(info, train_images, train_labels, test_images, test_labels, source=str(directory))


def _refuse_the_other_dataset(info: DatasetInfo, directory: Path, test_labels: torch.Tensor) -> None:
    """Refuse files that are recognisably another IDX dataset's, which would run the study on the wrong data
    under the right name; files of neither published dataset (a user's own) pass."""
    digest = hashlib.sha256(test_labels.to(torch.uint8).numpy().tobytes()).hexdigest()
    other = next((name for name, known in TEST_LABELS_SHA256.items() if known == digest), info.name)
    if other is not info.name:
        raise DatasetFormatError(
            f"{directory} holds {other.value}'s files, not {info.name.value}'s (its test labels are "
            f"{other.value}'s); give the directory with {info.name.value}'s files, or run on {other.value}"
        )
