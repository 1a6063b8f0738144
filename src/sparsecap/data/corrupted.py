"""Corrupted test sets on disk: the published MNIST-C and CIFAR-10-C / CIFAR-100-C layouts (and ours).

Layouts (spec §2.1 and §3.1):
- MNIST-C: a root folder (published: ``mnist_c``) with one folder per corruption, each holding
  ``test_images.npy`` (N, 28, 28, 1) uint8 and ``test_labels.npy`` (N,), and, in the published data,
  the same for ``train_``. ``sparsecap corrupt`` writes the test split (and the train split on request).
- CIFAR-10-C / CIFAR-100-C: a folder (published: ``CIFAR-10-C``, ``CIFAR-100-C``) with one
  ``<corruption>.npy`` per corruption, (5·N, 32, 32, 3) uint8, severities 1-5 stacked (severity 1
  first), and ``labels.npy`` (5·N,): the N test labels repeated five times.
A ``manifest.json`` beside them (written by sparsecap, absent from the published data) records the
seed, the spec version and a SHA-256 of every file. Label dtypes are not documented: labels are cast to
int64 on load. Folders are looked for inside the usual data roots (see `sparsecap.data.locate`).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from sparsecap.errors import DatasetFormatError, DatasetNotFoundError

MANIFEST = "manifest.json"
CIFAR_SEVERITIES = 5

# The published sets' corruptions (tests check that the corruption registry's published flags agree).
MNIST_C_PUBLISHED = (
    "identity", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
    "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag", "canny_edges",
)
CIFAR_C_PUBLISHED = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)


class CorruptedLayout(str, enum.Enum):
    """A corrupted dataset as `sparsecap datasets` lists it; the value is its name."""

    MNIST_C = "mnist-c"
    CIFAR10_C = "cifar10-c"
    CIFAR100_C = "cifar100-c"

    @property
    def folder(self) -> str:
        """The published folder name inside a data root."""
        return {"mnist-c": "mnist_c", "cifar10-c": "CIFAR-10-C", "cifar100-c": "CIFAR-100-C"}[self.value]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (28, 28, 1) if self is CorruptedLayout.MNIST_C else (32, 32, 3)

    @property
    def published(self) -> tuple[str, ...]:
        return MNIST_C_PUBLISHED if self is CorruptedLayout.MNIST_C else CIFAR_C_PUBLISHED


# ------------------------------------------------------------------------------------------- writing


def sha256_of(path: Path) -> str:
    """A file's SHA-256, read in blocks (checkpoints and corrupted sets are large)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def mnist_c_paths(directory: Path, corruption: str, split: str = "test") -> tuple[Path, Path]:
    folder = Path(directory) / corruption
    return folder / f"{split}_images.npy", folder / f"{split}_labels.npy"


def cifar_c_path(directory: Path, corruption: str) -> Path:
    return Path(directory) / f"{corruption}.npy"


def write_manifest(directory: Path, facts: dict[str, object], checksums: Mapping[str, str]) -> Path:
    """manifest.json with `facts` and `checksums`, the SHA-256 of each .npy file by its path under `directory`."""
    path = Path(directory) / MANIFEST
    path.write_text(json.dumps({**facts, "sha256": dict(checksums)}, indent=2, sort_keys=True) + "\n")
    return path


# ------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class CorruptedSplit:
    """Corrupted images (N, H, W, C) uint8 (channels last, as stored) and int64 labels (N,)."""

    corruption: str
    images: np.ndarray
    labels: np.ndarray
    severities: tuple[int, ...]
    """The severity of each block of `len(images) // len(severities)` images, in order."""
    source: str


NPY_MAGIC = b"\x93NUMPY"


def load_npy(path: Path, mmap_mode: Literal["r"] | None = None) -> np.ndarray:
    """A .npy array, never unpickled; one that cannot be read is a ValueError saying why in terms of the file
    (numpy's own message for a file without the .npy magic suggests allowing pickles, never needed here)."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except ValueError as error:
        with open(path, "rb") as file:
            reason = str(error) if file.read(len(NPY_MAGIC)) == NPY_MAGIC else "it does not start as a .npy file does"
        raise ValueError(reason) from None


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetNotFoundError(f"{what}: {path} is missing")
    try:
        return load_npy(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:  # EOFError: an empty file
        raise DatasetFormatError(f"{what}: {path} is not a readable .npy array ({error})") from error


def _check_images(images: np.ndarray, shape: tuple[int, int, int], path: Path) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != shape:
        raise DatasetFormatError(
            f"{path}: expected uint8 images of shape (N, {', '.join(map(str, shape))}), "
            f"got {images.dtype} {images.shape}"
        )
    if not len(images):
        raise DatasetFormatError(f"{path}: holds 0 images; a corrupted set needs at least one")


def _labels(labels: np.ndarray, count: int, path: Path, images_path: Path) -> np.ndarray:
    if labels.ndim != 1 or labels.shape[0] != count:
        raise DatasetFormatError(
            f"{path}: expected {count} labels (one per image of {images_path}), got shape {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetFormatError(f"{path}: labels must be integers, got {labels.dtype}")
    return np.asarray(labels, dtype=np.int64)


def read_mnist_c(directory: Path, corruption: str, split: str = "test") -> CorruptedSplit:
    """One corruption's split of an MNIST-C folder (published or written by `sparsecap corrupt`)."""
    images_path, labels_path = mnist_c_paths(directory, corruption, split)
    what = f"MNIST-C {corruption} ({split})"
    if not images_path.parent.is_dir():
        available = ", ".join(list_corruptions_in(directory, CorruptedLayout.MNIST_C)) or "none"
        raise DatasetNotFoundError(f"{what}: no folder {images_path.parent}; corruptions there: {available}")
    images = _load_array(images_path, what)
    _check_images(images, CorruptedLayout.MNIST_C.image_shape, images_path)
    labels = _labels(_load_array(labels_path, what), len(images), labels_path, images_path)
    return CorruptedSplit(corruption, images, labels, (0,), str(images_path.parent))


def read_cifar_c(directory: Path, corruption: str, severity: int | None = None) -> CorruptedSplit:
    """One corruption of a CIFAR-10-C / CIFAR-100-C folder: all five severities, or one of them."""
    path = cifar_c_path(directory, corruption)
    what = f"CIFAR-C {corruption}"
    if not path.is_file():
        available = ", ".join(list_corruptions_in(directory, CorruptedLayout.CIFAR10_C)) or "none"
        raise DatasetNotFoundError(f"{what}: {path} is missing; corruptions there: {available}")
    images = _load_array(path, what)
    _check_images(images, CorruptedLayout.CIFAR10_C.image_shape, path)
    labels_path = Path(directory) / "labels.npy"
    labels = _labels(_load_array(labels_path, "CIFAR-C labels"), len(images), labels_path, path)
    if len(images) % CIFAR_SEVERITIES:
        raise DatasetFormatError(f"{path}: {len(images)} images is not five equal blocks (severities 1-5)")
    block = len(images) // CIFAR_SEVERITIES
    if not all(np.array_equal(labels[:block], labels[start : start + block])
               for start in range(block, len(labels), block)):
        raise DatasetFormatError(f"{labels_path}: the five severity blocks do not repeat the same labels")
    if severity is None:
        return CorruptedSplit(corruption, images, labels, (1, 2, 3, 4, 5), str(path))
    if severity not in range(1, CIFAR_SEVERITIES + 1):
        raise DatasetFormatError(f"{what}: severity must be 1-5, got {severity}")
    part = slice((severity - 1) * block, severity * block)
    return CorruptedSplit(corruption, images[part], labels[part], (severity,), str(path))


def list_corruptions_in(directory: Path, layout: CorruptedLayout) -> list[str]:
    """The corruptions present in a folder (names only; files are not opened)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    if layout is CorruptedLayout.MNIST_C:
        return sorted(path.name for path in directory.iterdir() if (path / "test_images.npy").is_file())
    return sorted(path.stem for path in directory.glob("*.npy") if path.stem != "labels")


def _expected_files(layout: CorruptedLayout) -> str:
    if layout is CorruptedLayout.MNIST_C:
        return "<corruption>/test_images.npy and test_labels.npy folders"
    return "<corruption>.npy files and labels.npy"


def check_complete(directory: Path, layout: CorruptedLayout) -> list[str]:
    """Validate every corruption in a folder (shapes, dtypes, labels); return their names.

    Raises DatasetNotFoundError when the folder holds none, DatasetFormatError on a mismatched file.
    """
    names = list_corruptions_in(directory, layout)
    if not names:
        raise DatasetNotFoundError(f"{directory} holds no {layout.value} corruptions (expected {_expected_files(layout)})")
    for name in names:
        if layout is CorruptedLayout.MNIST_C:
            read_mnist_c(directory, name)
        else:
            read_cifar_c(directory, name)
    return names


def locate_corrupted(layout: CorruptedLayout, roots: list[Path]) -> Path | None:
    """The first data root holding the layout's folder with at least one corruption in it."""
    return next((root / layout.folder for root in roots if list_corruptions_in(root / layout.folder, layout)), None)


def describe_availability(layout: CorruptedLayout, roots: list[Path]) -> tuple[Path | None, str]:
    """(where it is, None where it is not; that place, or why not) for `sparsecap datasets`: cheap, files are
    not opened."""
    try:
        location = locate_corrupted(layout, roots)
    except OSError as error:  # a folder this user may not list: said for this set, the others still listed
        from sparsecap.data.locate import unreadable_text

        return None, unreadable_text(error)
    if location is None:
        make = f"`sparsecap corrupt {layout.value.removesuffix('-c')} --out DIR` makes it"
        empty = [str(root / layout.folder) for root in roots if (root / layout.folder).is_dir()]
        if empty:  # "not found" would send the user looking for a folder that is there
            return None, f"{', '.join(empty)} holds no corruptions (expected {_expected_files(layout)}); {make}"
        places = ", ".join(str(root / layout.folder) for root in roots)
        return None, f"not found (looked for {places}; {make})"
    names = list_corruptions_in(location, layout)
    missing = [name for name in layout.published if name not in names]
    extent = f"{len(names)} corruptions" + (f", {len(missing)} published ones missing" if missing else "")
    return location, f"{location} ({extent})"


def load_corrupted(
    layout: CorruptedLayout | str,
    corruption: str,
    data_root: Path | None = None,
    *,
    severity: int | None = None,
    split: str = "test",
) -> CorruptedSplit:
    """One corruption of a corrupted dataset found in the data roots (``--data-root``, ``$SPARSECAP_DATA``, ...).

    MNIST-C: the `split` of the corruption's folder; CIFAR-C: all five severities, or `severity`.
    """
    from sparsecap.data.locate import search_roots

    try:
        parsed = CorruptedLayout(getattr(layout, "value", layout))
    except ValueError:
        valid = ", ".join(member.value for member in CorruptedLayout)
        raise DatasetNotFoundError(f"unknown corrupted dataset {layout!r}; valid names: {valid}") from None
    roots = search_roots(data_root)
    location = locate_corrupted(parsed, roots)
    if location is None:
        raise DatasetNotFoundError(describe_availability(parsed, roots)[1])
    if parsed is CorruptedLayout.MNIST_C:
        return read_mnist_c(location, corruption, split)
    return read_cifar_c(location, corruption, severity)
