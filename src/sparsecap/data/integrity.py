"""Whether a dataset's files hold the published data (`sparsecap datasets --verify`).

Loading checks format (sizes, magic numbers, label ranges), not content: a flipped pixel or an edited
file loads, and a study then runs on other data under the dataset's name. Here content is compared with
published digests:
- MNIST, Fashion-MNIST: the SHA-256 of each IDX file's decoded bytes (`idx.DECODED_SHA256`), so that
  plain and gzipped copies verify alike;
- CIFAR-10/100: the published MD5 of each extracted batch (`CifarLayout.batch_md5`), or of the tarball;
- a corrupted test set written by `sparsecap corrupt`: the SHA-256 its manifest records for each file.
  The published MNIST-C and CIFAR-C carry no digests: their files are read and their format checked.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sparsecap.data.cifar import CIFAR_LAYOUTS
from sparsecap.data.corrupted import MANIFEST, CorruptedLayout, check_complete, sha256_of
from sparsecap.data.download import REMOTE_FILES
from sparsecap.data.idx import DECODED_SHA256, IDX_FILE_NAMES, decoded_bytes, find_idx_file
from sparsecap.data.registry import DatasetName
from sparsecap.errors import DatasetFormatError, DatasetNotFoundError


@dataclass(frozen=True)
class Verification:
    """What was compared, and every difference found (none: verified)."""

    checked: str
    problems: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        return not self.problems


def verify_dataset(name: DatasetName, location: Path) -> Verification:
    """Compare the files `sparsecap.data.locate` found for `name` at `location` with the published ones."""
    if name in CIFAR_LAYOUTS:
        return _verify_cifar(name, location)
    if name in DECODED_SHA256:
        return _verify_idx(name, location)
    raise ValueError(f"{name.value} is not read from files")


def _digest_problem(path: Path, digest: Callable[[Path], str], expected: str, source: str,
                    known: Mapping[str, str] | None = None) -> str | None:
    """None where `path`'s digest is `expected`; else what differs (what the file is, where its digest is among
    `known` ones), or why the file could not be read."""
    try:
        found = digest(path)
    except (DatasetFormatError, OSError) as error:  # a damaged gzip stream; an unreadable file
        return str(error) if isinstance(error, DatasetFormatError) else f"{path}: unreadable: {error.strerror or error}"
    if found == expected:
        return None
    if known and found in known:
        return f"{path}: holds {known[found]}"
    return f"{path}: content differs from {source} ({found[:12]}…, expected {expected[:12]}…)"


def _found(problems: list[str | None]) -> tuple[str, ...]:
    return tuple(problem for problem in problems if problem is not None)


def _decoded_sha256(path: Path) -> str:
    return hashlib.sha256(decoded_bytes(path)).hexdigest()


def _md5(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "md5").hexdigest()


def _verify_idx(name: DatasetName, directory: Path) -> Verification:
    problems: list[str | None] = []
    for file_name in IDX_FILE_NAMES:
        path = find_idx_file(directory, file_name)
        problems.append(f"{directory}: {file_name} (plain or .gz) is missing" if path is None else _digest_problem(
            path, _decoded_sha256, DECODED_SHA256[name][file_name], "the published SHA-256 of its decoded bytes",
            {digests[file_name]: f"{other.value}'s published {file_name}, not {name.value}'s"
             for other, digests in DECODED_SHA256.items() if other is not name}))
    return Verification(f"{len(IDX_FILE_NAMES)} files against the published SHA-256 of their content",
                        _found(problems))


def _verify_cifar(name: DatasetName, location: Path) -> Verification:
    layout = CIFAR_LAYOUTS[name]
    if location.name == layout.tarball:
        published = REMOTE_FILES[name].md5_by_file[layout.tarball]
        return Verification("the tarball against its published MD5",
                            _found([_digest_problem(location, _md5, published, "the published MD5")]))
    problems = [_digest_problem(location / batch, _md5, md5, "the published MD5") for batch, md5 in layout.batch_md5.items()]
    return Verification(f"{len(layout.batch_md5)} batches against their published MD5s", _found(problems))


def verify_corrupted(layout: CorruptedLayout, directory: Path) -> Verification:
    """A corrupted set against the checksums of the manifest `sparsecap corrupt` wrote; without a manifest (the
    published sets have none), a read of every corruption with its format checks."""
    manifest = directory / MANIFEST
    if not manifest.exists():
        try:
            names = check_complete(directory, layout)
        except (DatasetFormatError, DatasetNotFoundError, OSError) as error:
            return Verification("the format of its files (no manifest: no checksums to compare)", (str(error),))
        return Verification(f"the format of {len(names)} corruptions (no manifest: no checksums to compare)")
    try:
        checksums = _recorded_checksums(manifest)
    except ValueError as error:
        return Verification(f"its files against {manifest}", (f"{manifest}: {error}: the manifest is damaged",))
    problems = [_listed_file_problem(directory, relative, recorded) for relative, recorded in sorted(checksums.items())]
    unlisted = sorted(str(path) for path in directory.rglob("*.npy") if str(path.relative_to(directory)) not in checksums)
    problems += [f"{path}: not listed in {MANIFEST}" for path in unlisted]
    return Verification(f"{len(checksums)} files against the SHA-256 in its {MANIFEST}", _found(problems))


def _recorded_checksums(manifest: Path) -> dict[str, str]:
    """The manifest's SHA-256 of each file, by its path in the set; ValueError saying what is wrong with it."""
    try:
        data = json.loads(manifest.read_text())
    except OSError as error:
        raise ValueError(f"unreadable ({error.strerror or error})") from None
    except ValueError:  # JSONDecodeError, or text that is not UTF-8
        raise ValueError("not JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"holds a JSON {type(data).__name__}, not an object")
    checksums = data.get("sha256")
    if not isinstance(checksums, dict):
        raise ValueError("has no sha256 table of files")
    for relative, digest in checksums.items():
        if not (isinstance(digest, str) and re.fullmatch("[0-9a-f]{64}", digest)):
            raise ValueError(f"the SHA-256 of {relative} is {digest!r}, not 64 hexadecimal digits")
    return checksums


def _listed_file_problem(directory: Path, relative: str, recorded: str) -> str | None:
    """What is wrong with one file a manifest lists: outside its directory (never read), missing, or changed."""
    path = directory / relative
    if not path.resolve().is_relative_to(directory.resolve()):
        return f"{MANIFEST} lists {relative!r}, which is not a file of {directory}: the manifest is damaged"
    if not path.is_file():
        return f"{path}: missing (listed in {MANIFEST})"
    return _digest_problem(path, sha256_of, recorded, f"the SHA-256 in {MANIFEST}")
