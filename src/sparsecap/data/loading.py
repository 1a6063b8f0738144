"""Loading a dataset from the first search root holding it (or downloading it), and which ones are available."""

from __future__ import annotations

from pathlib import Path

from sparsecap.data.cifar import CIFAR_LAYOUTS, load_cifar_dataset
from sparsecap.data.digits import DIGITS_SOURCE, load_digits_dataset
from sparsecap.data.download import download_dataset
from sparsecap.data.idx import load_idx_dataset
from sparsecap.data.locate import (
    candidate_locations,
    incomplete_locations,
    locate,
    not_found_message,
    search_roots,
    unreadable_text,
)
from sparsecap.data.registry import DatasetAvailability, DatasetName, ImageDataset, dataset_info, parse_dataset_name
from sparsecap.errors import DatasetNotFoundError


def load_dataset(name: DatasetName | str, data_root: Path | None = None, download: bool = False) -> ImageDataset:
    """Load a whole dataset into memory from the first search root holding it.

    Raises DatasetNotFoundError (listing every place searched and how to get the files) when it is nowhere
    and `download` is False; with `download` True, fetches it into the first search root instead.
    """
    dataset_name = parse_dataset_name(name)
    if dataset_name is DatasetName.DIGITS:
        return load_digits_dataset()
    roots = search_roots(data_root)
    location = locate(dataset_name, roots)
    if location is None:
        if not download:
            raise DatasetNotFoundError(not_found_message(dataset_name, roots))
        location = download_dataset(dataset_name, roots)
    info = dataset_info(dataset_name)
    if dataset_name in CIFAR_LAYOUTS:
        return load_cifar_dataset(info, location)
    return load_idx_dataset(info, location)


def _availability(name: DatasetName, roots: list[Path]) -> DatasetAvailability:
    if name is DatasetName.DIGITS:
        return DatasetAvailability(name, True, DIGITS_SOURCE)
    try:
        location = locate(name, roots)
    except OSError as error:  # a folder this user may not search: said for this dataset, the others still listed
        return DatasetAvailability(name, False, unreadable_text(error))
    if location is not None:
        return DatasetAvailability(name, True, str(location))
    incomplete = incomplete_locations(name, roots)
    if incomplete:
        return DatasetAvailability(name, False, f"incomplete: {'; '.join(incomplete)}")
    searched = len(candidate_locations(name, roots))
    roots_text = ", ".join(map(str, roots))
    return DatasetAvailability(name, False, f"not found in any of {searched} places searched (roots: {roots_text})")


def list_availability(data_root: Path | None = None) -> list[DatasetAvailability]:
    """Which datasets can be loaded without downloading, and from where; cheap (checks files exist, parses none)."""
    roots = search_roots(data_root)
    return [_availability(name, roots) for name in DatasetName]
