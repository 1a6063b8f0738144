"""Where dataset files are looked for, and what to tell the user when they are in none of those places.

Search roots, in order (first match wins; downloads go to the first root):
  1. the explicit ``data_root`` (the CLI's ``--data-root``),
  2. the directory in the ``SPARSECAP_DATA`` environment variable,
  3. ``~/.cache/sparsecap/data``.
Inside each root R:
  - MNIST: ``R/mnist``, ``R/MNIST/raw`` (torchvision's layout), then ``R`` itself;
  - Fashion-MNIST: ``R/fashion-mnist``, ``R/FashionMNIST/raw``; after all roots, the Debian package's
    ``/usr/share/datasets/fashion-mnist`` (R itself is not tried: its file names are MNIST's);
  - CIFAR-10/100: the extracted ``R/cifar-10-batches-py`` / ``R/cifar-100-python``, then the official tarball
    ``R/cifar-10-python.tar.gz`` / ``R/cifar-100-python.tar.gz``.
"""

import os
from pathlib import Path

from sparsecap.data.cifar import CIFAR_LAYOUTS
from sparsecap.data.idx import IDX_FILE_NAMES, find_idx_file
from sparsecap.data.registry import DatasetName

DATA_ENV_VAR = "SPARSECAP_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/sparsecap/data")

# Subdirectories of each root that may hold the IDX files; the first is where downloads go.
IDX_SUBDIRECTORIES: dict[DatasetName, tuple[str, ...]] = {
    DatasetName.MNIST: ("mnist", "MNIST/raw", "."),
    DatasetName.FASHION_MNIST: ("fashion-mnist", "FashionMNIST/raw"),
}
# Installed by the Debian package dataset-fashion-mnist (file names as published, gzipped).
FASHION_MNIST_SYSTEM_DIRECTORY = Path("/usr/share/datasets/fashion-mnist")


def search_roots(data_root: Path | None) -> list[Path]:
    """The roots searched, in order: ``data_root``, ``$SPARSECAP_DATA``, ``~/.cache/sparsecap/data``.

    Made absolute (messages and `ImageDataset.source` then name real places) and deduplicated.
    """
    roots = [Path(data_root)] if data_root is not None else []
    if env_root := os.environ.get(DATA_ENV_VAR):
        roots.append(Path(env_root))
    roots.append(DEFAULT_DATA_ROOT)
    return list(dict.fromkeys(root.expanduser().absolute() for root in roots))


def candidate_locations(name: DatasetName, roots: list[Path]) -> list[Path]:
    """Every directory (or CIFAR tarball) that may hold the dataset, in the order they are tried."""
    if name in IDX_SUBDIRECTORIES:
        in_roots = [root / subdirectory for root in roots for subdirectory in IDX_SUBDIRECTORIES[name]]
        system = [FASHION_MNIST_SYSTEM_DIRECTORY] if name is DatasetName.FASHION_MNIST else []
        return in_roots + system
    if name in CIFAR_LAYOUTS:
        layout = CIFAR_LAYOUTS[name]
        return [root / entry for root in roots for entry in (layout.directory, layout.tarball)]
    raise ValueError(f"{name.value} is not read from files")


def _needed_and_missing(name: DatasetName, location: Path) -> tuple[tuple[str, ...], list[str]]:
    """The files the dataset needs at `location`, and those it lacks (existence only, nothing is parsed)."""
    if name in IDX_SUBDIRECTORIES:
        return IDX_FILE_NAMES, [file for file in IDX_FILE_NAMES if find_idx_file(location, file) is None]
    layout = CIFAR_LAYOUTS[name]
    if location.name == layout.tarball:
        return (layout.tarball,), [] if location.is_file() else [layout.tarball]
    return layout.batch_names(), [batch for batch in layout.batch_names() if not (location / batch).is_file()]


def is_complete(name: DatasetName, location: Path) -> bool:
    """Whether every file the dataset needs is at `location`."""
    return not _needed_and_missing(name, location)[1]


def unreadable_text(error: OSError) -> str:
    """Why a dataset cannot be listed: a folder or file this user may not read."""
    return f"unreadable: {error.filename}: {error.strerror or error}; give this user read access to it"


def locate(name: DatasetName, roots: list[Path]) -> Path | None:
    """The first complete candidate location, or None."""
    return next((location for location in candidate_locations(name, roots) if is_complete(name, location)), None)


def _files_needed(name: DatasetName) -> str:
    if name in IDX_SUBDIRECTORIES:
        return f"put the files {', '.join(IDX_FILE_NAMES)} (each plain or .gz) in <ROOT>/{IDX_SUBDIRECTORIES[name][0]}"
    layout = CIFAR_LAYOUTS[name]
    return (
        f"put the directory {layout.directory} (files {', '.join(layout.batch_names())}), as extracted from "
        f"the official {layout.tarball}, or that tarball itself, in <ROOT>"
    )


def incomplete_locations(name: DatasetName, roots: list[Path]) -> list[str]:
    """Candidate folders that hold some of the dataset's files but not all (a copy cut short, a file replaced by
    a folder), each with what it lacks: "not found" would send the user looking for a folder that is there."""
    found = []
    for location in candidate_locations(name, roots):
        needed, missing = _needed_and_missing(name, location)
        if 0 < len(missing) < len(needed):  # a tarball, one file, is never partly there
            found.append(f"{location} lacks {', '.join(missing)}")
    return found


def not_found_message(name: DatasetName, roots: list[Path]) -> str:
    """Explain that the dataset is missing: every place searched, and each way to provide it."""
    searched = "\n".join(f"  - {location}" for location in candidate_locations(name, roots))
    ways = [
        f"{_files_needed(name)}, where <ROOT> is the directory given with --data-root (data_root=), "
        f"${DATA_ENV_VAR}, or {DEFAULT_DATA_ROOT}",
    ]
    if name is DatasetName.FASHION_MNIST:
        ways.append(
            f"install the Debian package: apt-get install dataset-fashion-mnist "
            f"(it puts the files in {FASHION_MNIST_SYSTEM_DIRECTORY})"
        )
    ways.append(
        f"where a network is available, let sparsecap fetch and verify them into {roots[0]}: "
        f"`sparsecap ... --download` or load_dataset(..., download=True)"
    )
    how = "\n".join(f"  - {way}" for way in ways)
    mistaken = "".join(f"\nNote: {problem}" for problem in [*incomplete_locations(name, roots), *root_problems(roots)])
    return f"dataset {name.value!r} not found. Searched, in order:\n{searched}\nTo get it, either:\n{how}{mistaken}"


def root_problems(roots: list[Path]) -> list[str]:
    """Roots the user named (--data-root, $SPARSECAP_DATA) that cannot hold data: likely a typo or a file given
    for its directory. The default cache root is left out: it is missing until the first download."""
    default = DEFAULT_DATA_ROOT.expanduser().absolute()
    return [f"{root} {_why_no_directory(root)}" for root in roots if root != default and not root.is_dir()]


def _why_no_directory(path: Path) -> str:
    if path.exists():
        return "is not a directory"
    if path.is_symlink():
        return "is a symbolic link to nothing (a missing target, or a loop)"
    return "does not exist"
