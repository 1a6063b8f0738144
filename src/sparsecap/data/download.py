"""Fetching datasets from their official mirrors, verified against the published MD5s (opt-in: needs a network).

A file only ever appears under its final name complete and verified, so an interrupted or corrupted
download can never be mistaken for data by a later run.
"""

import hashlib
import http.client
import os
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sparsecap.data.cifar import CIFAR_LAYOUTS
from sparsecap.data.locate import IDX_SUBDIRECTORIES, not_found_message
from sparsecap.data.registry import DatasetName
from sparsecap.errors import DatasetFormatError, DatasetNotFoundError

_CHUNK_BYTES = 1 << 20
_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class RemoteFiles:
    """A dataset's published files: a base URL and the MD5 of each file under it."""

    base_url: str
    md5_by_file: dict[str, str]


REMOTE_FILES: dict[DatasetName, RemoteFiles] = {
    DatasetName.MNIST: RemoteFiles(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    DatasetName.FASHION_MNIST: RemoteFiles(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    DatasetName.CIFAR10: RemoteFiles(
        "https://www.cs.toronto.edu/~kriz/", {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}
    ),
    DatasetName.CIFAR100: RemoteFiles(
        "https://www.cs.toronto.edu/~kriz/", {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"}
    ),
}


def _stream_to(url: str, output: BinaryIO) -> str:
    """Copy the response body to `output` chunk by chunk (datasets are large) and return its MD5 hex digest."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response:
            while chunk := response.read(_CHUNK_BYTES):
                digest.update(chunk)
                output.write(chunk)
    except (OSError, http.client.HTTPException) as error:  # URLError and HTTPError are OSErrors
        raise DatasetNotFoundError(f"could not download {url}: {error}") from error
    return digest.hexdigest()


def download_file(url: str, destination: Path, md5: str) -> Path:
    """Download `url` to `destination` via a temporary file that is renamed into place only if its MD5 matches."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary_name = tempfile.mkstemp(
            dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
        )
    except OSError as error:  # a data root that is a file, read-only or under /proc: no download can land
        raise DatasetNotFoundError(
            f"cannot download {url} into {destination.parent}: {error.strerror or error} "
            f"({error.filename or destination.parent}); give --data-root a directory you can write"
        ) from None
    temporary = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "wb") as output:
            digest = _stream_to(url, output)
        if digest != md5:
            raise DatasetFormatError(f"{url}: downloaded file has MD5 {digest}, expected {md5}; it was discarded")
        temporary.chmod(0o644)  # mkstemp creates files private to the user; data files are meant to be shared
        temporary.replace(destination)
    finally:
        temporary.unlink(missing_ok=True)
    return destination


def _extract_tarball(tarball: Path, directory: Path) -> None:
    """Unpack with the "data" filter, which refuses absolute paths, links out of `directory` and device files."""
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            archive.extractall(directory, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DatasetFormatError(f"{tarball}: could not extract ({error})") from error


def download_dataset(name: DatasetName, roots: list[Path]) -> Path:
    """Fetch the dataset into the first search root and return the location to read it from.

    Files already present under their final names are kept, so an interrupted multi-file download resumes.
    """
    remote = REMOTE_FILES[name]
    root = roots[0]
    directory = root / IDX_SUBDIRECTORIES[name][0] if name in IDX_SUBDIRECTORIES else root
    try:
        for file_name, md5 in remote.md5_by_file.items():
            if not (directory / file_name).is_file():
                download_file(remote.base_url + file_name, directory / file_name, md5)
    except DatasetNotFoundError as error:
        raise DatasetNotFoundError(f"{error}\n\n{not_found_message(name, roots)}") from error
    if name not in CIFAR_LAYOUTS:
        return directory
    layout = CIFAR_LAYOUTS[name]
    _extract_tarball(directory / layout.tarball, directory)
    (directory / layout.tarball).unlink()  # the extracted batches are read much faster; don't keep both copies
    return directory / layout.directory
