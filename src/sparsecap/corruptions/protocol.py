"""The evaluation protocol (paper Section 3): the corrupted inputs every model of a study is tested on.

For each corruption and severity: a seeded random sample of `sample_size` test images (without
replacement; all of them when the test set is smaller), corrupted `draws` times with independent
generators when the corruption is random, once when it is deterministic. CIFAR-C uses the configured
severities (2 and 4 by default); MNIST-C uses each corruption's published severity. Everything is
derived from the protocol seed alone, never from a model, so every model of a study sees the same
inputs.

The inputs are generated once and cached on disk, keyed by dataset, seed, spec version and the
configuration's hash (`<cache>/<dataset>-seed<seed>-<hash>/`): one ``<corruption>-s<severity>.npy``
of shape (draws, n, H, W, C) uint8 and one ``...-indices.npy`` per entry, and ``manifest.json``, written
last, whose presence marks a complete cache. Later trials and resumed runs memory-map the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sparsecap.corruptions import frost as frost_module
from sparsecap.corruptions import pessimal
from sparsecap.corruptions.registry import SPEC_VERSION, Suite, get_corruption, list_corruptions, to_channels_last
from sparsecap.data.corrupted import load_npy
from sparsecap.errors import AssetUnavailableError
from sparsecap.studies.progress import write_line

CACHE_MANIFEST = "manifest.json"
"""Written last into a cache directory: its presence marks the cache complete (not a `sparsecap corrupt` set's
manifest, `sparsecap.data.corrupted.MANIFEST`, though the file name is the same)."""
_SAMPLE_STREAM = 0x5A3D1E  # separates the sample's seed sequence from the noise draws'


def name_key(name: str) -> int:
    """A stable integer for a corruption name (seed sequences take integers; hash() is salted)."""
    return zlib.crc32(name.encode())


def corruption_rng(seed: int, suite: Suite, name: str, severity: int, draw: int) -> np.random.Generator:
    """The generator of one draw: independent per (seed, suite, corruption, severity, draw)."""
    return np.random.default_rng(np.random.SeedSequence([seed, name_key(suite.value), name_key(name), severity, draw]))


def sample_indices(test_size: int, sample_size: int, seed: int, name: str, severity: int) -> np.ndarray:
    """The protocol's sample of test indices for one corruption and severity (sorted, no repeats)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SAMPLE_STREAM, name_key(name), severity]))
    if sample_size >= test_size:
        return np.arange(test_size)
    return np.sort(rng.choice(test_size, size=sample_size, replace=False))


@dataclass(frozen=True)
class ProtocolConfig:
    suite: Suite
    corruptions: tuple[str, ...]
    severities: tuple[int, ...] = (2, 4)
    """CIFAR-C severities; MNIST-C uses each corruption's published severity."""
    sample_size: int = 1000
    draws: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.corruptions:
            get_corruption(name, self.suite)  # unknown names fail here, listing the valid ones

    @classmethod
    def default(cls, suite: Suite, **overrides: object) -> ProtocolConfig:
        """The published corruptions of the suite (MNIST-C's 15 and identity; CIFAR-10-C's 19)."""
        names = list_corruptions(suite, published_only=suite is Suite.MNIST_C)
        return cls(suite=suite, corruptions=tuple(names), **overrides)  # type: ignore[arg-type]

    def severities_of(self, name: str) -> tuple[int, ...]:
        corruption = get_corruption(name, self.suite)
        if self.suite is Suite.MNIST_C:
            return (corruption.published_severity or 1,)
        return self.severities if corruption.has_severity else (1,)

    def plan(self) -> list[tuple[str, int, int]]:
        """(corruption, severity, draws) of every entry; deterministic corruptions get one draw."""
        return [
            (name, severity, self.draws if get_corruption(name, self.suite).random else 1)
            for name in self.corruptions
            for severity in self.severities_of(name)
        ]

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["suite"] = self.suite.value
        return data


@dataclass(frozen=True)
class CorruptedEntry:
    """The inputs of one corruption at one severity: `images[draw]` is (n, H, W, C) for `indices`."""

    corruption: str
    severity: int
    indices: np.ndarray
    images: np.ndarray


@dataclass(frozen=True)
class EvaluationInputs:
    directory: Path
    dataset: str
    config: ProtocolConfig
    entries: list[CorruptedEntry]
    skipped: dict[str, str] = field(default_factory=dict)
    """Corruptions left out (frost without pictures, pessimal_noise without its matrix), with the reason."""

    def __iter__(self) -> Iterator[CorruptedEntry]:
        return iter(self.entries)


def cache_key(dataset: str, config: ProtocolConfig, test_size: int, frost_digest: str | None,
              pessimal_digest: str | None = None) -> str:
    """The cache directory's name: dataset, seed and a hash of everything the inputs depend on.

    The pessimal-noise matrix enters the hash only when used, so caches made without it keep their names.
    """
    facts = {"dataset": dataset, "spec_version": SPEC_VERSION, "config": config.to_json(),
             "test_size": test_size, "frost": frost_digest}
    if pessimal_digest is not None:
        facts["pessimal_matrix"] = pessimal_digest
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]
    return f"{dataset}-seed{config.seed}-{digest}"


def _entry_stem(name: str, severity: int) -> str:
    return f"{name}-s{severity}"


def _load(directory: Path, dataset: str, config: ProtocolConfig) -> EvaluationInputs:
    manifest = json.loads((directory / CACHE_MANIFEST).read_text())
    entries = [
        CorruptedEntry(
            corruption=name,
            severity=severity,
            indices=load_npy(directory / f"{_entry_stem(name, severity)}-indices.npy"),
            images=load_npy(directory / f"{_entry_stem(name, severity)}.npy", mmap_mode="r"),
        )
        for name, severity, _ in config.plan()
        if name not in manifest["skipped"]
    ]
    return EvaluationInputs(directory, dataset, config, entries, dict(manifest["skipped"]))


def unavailable_corruptions(names: Sequence[str], suite: Suite, frost_directory: Path | None,
                            pessimal_matrix: Path | None) -> dict[str, str]:
    """The corruptions whose user-supplied file is missing or unusable: name -> why."""
    reasons = {}
    for name in names:
        try:
            get_corruption(name, suite).assets(frost_directory=frost_directory, pessimal_matrix=pessimal_matrix)
        except AssetUnavailableError as error:
            reasons[name] = str(error)
    return reasons


def _usable_digest(digest: Callable[[Path | None], str | None], asset: Path | None) -> str | None:
    """`digest` of a user-supplied asset, or None where it is missing or unusable: its corruption is then
    skipped and reported below, as `unavailable_corruptions` announced, so the cache key must not fail on it."""
    try:
        return digest(asset)
    except AssetUnavailableError:
        return None


def prepare_inputs(
    cache_root: Path,
    dataset: str,
    test_images: np.ndarray,
    config: ProtocolConfig,
    *,
    frost_directory: Path | str | None = None,
    pessimal_matrix: Path | str | None = None,
    show_progress: bool = False,
) -> EvaluationInputs:
    """The protocol's corrupted inputs for one dataset: loaded from the cache, or generated into it once.

    `test_images` is the whole test split, (N, C, H, W) as the data layer holds it (a torch tensor on any
    device, or an array) or already channels-last; only its length is read when the cache holds the
    inputs. Frost without pictures and pessimal_noise without its matrix are skipped and reported in
    `skipped`.
    """
    frost_dir = frost_module.frost_directory(frost_directory)
    matrix_path = pessimal.matrix_path(pessimal_matrix)
    corruptions = [get_corruption(name, config.suite) for name in config.corruptions]
    needs_frost = any(corruption.needs_frost for corruption in corruptions)
    digest = _usable_digest(frost_module.pictures_digest, frost_dir) if needs_frost else None
    needs_matrix = any(corruption.needs_pessimal_matrix for corruption in corruptions)
    matrix_digest = _usable_digest(pessimal.matrix_digest, matrix_path) if needs_matrix else None
    directory = Path(cache_root) / cache_key(dataset, config, len(test_images), digest, matrix_digest)
    if (directory / CACHE_MANIFEST).is_file():
        try:
            return _load(directory, dataset, config)
        except (OSError, ValueError, KeyError, TypeError) as error:  # a truncated array, a damaged manifest
            # A cache, drawn from seeds: made again, it is what it was.
            write_line(f"warning: the cached corrupted inputs in {directory} are damaged ({error}); generating "
                       f"them again", sys.stderr)
    # Generated on the CPU from the pixels, wherever the study holds them (a GPU's tensors: copied here).
    images = np.asarray(test_images.cpu().numpy() if hasattr(test_images, "cpu") else test_images)
    if images.ndim == 4 and images.shape[1:] != config.suite.image_shape:
        images = to_channels_last(images)

    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    skipped: dict[str, str] = {}
    plan = config.plan()
    with tqdm(total=sum(draws for _, _, draws in plan), desc=f"corrupting {dataset}", unit="set",
              leave=False, disable=not show_progress) as bar:
        for name, severity, draws in plan:
            corruption = get_corruption(name, config.suite)
            if name in skipped:
                bar.update(draws)
                continue
            indices = sample_indices(len(images), config.sample_size, config.seed, name, severity)
            sample = np.ascontiguousarray(images[indices])
            try:
                corrupted = np.stack([
                    corruption(sample, severity, corruption_rng(config.seed, config.suite, name, severity, draw),
                               frost_directory=frost_dir, pessimal_matrix=matrix_path)
                    for draw in range(draws)
                ])
            except AssetUnavailableError as error:
                skipped[name] = str(error)
                bar.update(draws)
                continue
            np.save(partial / f"{_entry_stem(name, severity)}.npy", corrupted)
            np.save(partial / f"{_entry_stem(name, severity)}-indices.npy", indices)
            bar.update(draws)
    manifest = {"dataset": dataset, "spec_version": SPEC_VERSION, "config": config.to_json(),
                "test_size": len(images), "frost_pictures": digest, "pessimal_matrix": matrix_digest,
                "skipped": skipped}
    (partial / CACHE_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if directory.exists():  # an incomplete cache (no manifest) left by an interrupted run
        shutil.rmtree(directory)
    os.replace(partial, directory)
    return _load(directory, dataset, config)

