"""Writing whole corrupted test sets in the published layouts (`sparsecap corrupt DATASET --out DIR`).

Images are corrupted a chunk at a time with a generator per (seed, corruption, severity, split,
chunk), so the files depend only on the seed, the chunk size and the input; the manifest records both.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sparsecap import __version__
from sparsecap.corruptions import frost as frost_module
from sparsecap.corruptions import pessimal
from sparsecap.corruptions.protocol import name_key, unavailable_corruptions
from sparsecap.corruptions.registry import (
    SEVERITIES,
    Corruption,
    SPEC_VERSION,
    Suite,
    get_corruption,
    list_corruptions,
    suite_for_dataset,
    to_channels_last,
)
from sparsecap.data import ImageDataset
from sparsecap.data.corrupted import MANIFEST, cifar_c_path, mnist_c_paths, sha256_of, write_manifest
from sparsecap.errors import CorruptionError
from sparsecap.studies.progress import ProgressStyle, write_line

CHUNK_SIZE = 1000
UserFiles = dict[str, tuple[Callable[[Corruption], bool], Callable[[], str | None]]]
"""The user's files some corruptions read: manifest key -> (whether a corruption reads it, the file's checksum)."""


@dataclass
class WriteSummary:
    directory: Path
    suite: Suite
    written: dict[str, list[int]] = field(default_factory=dict)
    """corruption -> severities written."""
    skipped: dict[str, str] = field(default_factory=dict)
    kept: dict[str, list[int]] = field(default_factory=dict)
    """corruption -> severities an earlier run wrote as this one would (an interrupted run's finished ones)."""


@dataclass(frozen=True)
class _Drawing:
    """What a written corruption's pixels depend on besides the images: its suite, the seed, and the user's files."""

    suite: Suite
    seed: int
    frost_directory: Path | None
    pessimal_matrix: Path | None

    def corrupt(self, images: np.ndarray, name: str, severity: int, split: str, bar: tqdm, out: np.ndarray) -> None:
        """`images` corrupted into `out` a chunk at a time, each chunk with its own generator."""
        corruption = get_corruption(name, self.suite)
        for chunk, start in enumerate(range(0, len(images), CHUNK_SIZE)):
            rng = np.random.default_rng(np.random.SeedSequence(
                [self.seed, name_key(self.suite.value), name_key(name), severity, name_key(split), chunk]))
            part = images[start : start + CHUNK_SIZE]
            out[start : start + len(part)] = corruption(part, severity, rng, frost_directory=self.frost_directory,
                                                        pessimal_matrix=self.pessimal_matrix)
            bar.update(len(part))


Splits = dict[str, tuple[np.ndarray, np.ndarray]]
"""split -> (channels-last uint8 images, uint8 labels), as written."""


def _chosen_names(corruptions: Sequence[str] | None, suite: Suite) -> list[str]:
    """The corruptions to write, each once: those named, else the suite's default set (MNIST-C's published ones)."""
    names = list(dict.fromkeys(corruptions)) if corruptions is not None else list_corruptions(
        suite, published_only=suite is Suite.MNIST_C)
    if not names:
        raise CorruptionError(f"no corruption named; valid: {', '.join(list_corruptions(suite))}")
    for name in names:
        get_corruption(name, suite)
    return names


def _splits(dataset: ImageDataset, suite: Suite, severity: int | None, limit: int | None,
            include_train: bool) -> Splits:
    """The splits to corrupt, cut to `limit` images; the options checked against the suite's layout first."""
    if severity is not None and suite is Suite.CIFAR_C:
        raise CorruptionError("a single --severity applies to MNIST-C only; CIFAR-C files hold all five")
    if severity is not None and severity not in SEVERITIES:
        raise CorruptionError(f"severity {severity}: expected 1 to 5")
    if limit is not None and limit < 1:  # 0 would write files no reader takes; negative would mean "all but"
        raise CorruptionError(f"limit must be a positive number of images (or None for all), got {limit}")
    splits = {"test": (dataset.test_images, dataset.test_labels)}
    if include_train:
        if suite is Suite.CIFAR_C:
            raise CorruptionError("CIFAR-10-C and CIFAR-100-C hold the test split only")
        splits["train"] = (dataset.train_images, dataset.train_labels)
    return {split: (to_channels_last(images[:limit]), labels[:limit].numpy().astype(np.uint8))
            for split, (images, labels) in splits.items()}


def _severities(name: str, suite: Suite, severity: int | None) -> list[int]:
    """The severities `name` is written at: CIFAR-C's five, else `severity` or MNIST-C's published one."""
    if suite is Suite.CIFAR_C:
        return list(SEVERITIES)
    return [severity or get_corruption(name, suite).published_severity or 1]


def _user_files(drawing: _Drawing) -> UserFiles:
    """The files of the user's that some corruptions read, each read and hashed once, when first asked."""
    return {
        "frost_pictures": (lambda corruption: corruption.needs_frost,
                           functools.cache(lambda: frost_module.pictures_digest(drawing.frost_directory))),
        "pessimal_matrix": (lambda corruption: corruption.needs_pessimal_matrix,
                            functools.cache(lambda: pessimal.matrix_digest(drawing.pessimal_matrix))),
    }


def _open_directory(directory: Path, settings: dict[str, object]) -> dict:
    """`directory`, created, and the manifest of an earlier run into it (`_earlier_run`)."""
    if directory.exists() and not directory.is_dir():
        raise CorruptionError(f"output path {directory} exists and is not a directory; give --out a directory")
    earlier = _earlier_run(directory, settings)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CorruptionError(f"cannot write to {directory}: {error.strerror or error}; choose a writable --out "
                              f"directory") from None
    return earlier


def _manifest(settings: dict[str, object], earlier: dict, summary: WriteSummary, user_files: UserFiles,
              source: str) -> dict[str, object]:
    """The manifest of what is written so far, this run's corruptions added to the earlier runs'."""
    written = {**earlier.get("corruptions", {}), **summary.written}
    return {
        **settings,
        "sparsecap_version": __version__,
        "corruptions": written,
        "skipped": {name: reason for name, reason in {**earlier.get("skipped", {}), **summary.skipped}.items()
                    if name not in written},
        **{key: digest() if any(reads(get_corruption(name, summary.suite)) for name in summary.written)
           else earlier.get(key) for key, (reads, digest) in user_files.items()},  # a file unread keeps its record
        "source": source,
    }


def _write_corruption(directory: Path, name: str, severities: list[int], splits: Splits, drawing: _Drawing,
                      bar: tqdm) -> None:
    """One corruption's files: per split an images and a labels file (MNIST-C), or one file with the severities
    stacked and the shared labels.npy (CIFAR-C). Images go through a memory map, never all in memory at once."""
    for split, (images, labels) in splits.items():
        if drawing.suite is Suite.MNIST_C:
            images_path, labels_path = mnist_c_paths(directory, name, split)
            images_path.parent.mkdir(parents=True, exist_ok=True)
            blocks = [(severities[0], slice(None))]
        else:
            images_path, labels_path = cifar_c_path(directory, name), directory / "labels.npy"
            count = len(images)
            blocks = [(level, slice(block * count, (block + 1) * count)) for block, level in enumerate(severities)]
            labels = np.tile(labels, len(severities))
        out = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8,
                                        shape=(len(blocks) * len(images), *images.shape[1:]))
        for level, rows in blocks:
            drawing.corrupt(images, name, level, split, bar, out[rows])
        out.flush()
        del out
        np.save(labels_path, labels)


def write_corrupted_dataset(
    dataset: ImageDataset,
    directory: Path,
    *,
    corruptions: Sequence[str] | None = None,
    seed: int = 0,
    severity: int | None = None,
    limit: int | None = None,
    include_train: bool = False,
    frost_directory: Path | str | None = None,
    pessimal_matrix: Path | str | None = None,
    progress: ProgressStyle = ProgressStyle.BARS,
) -> WriteSummary:
    """Write the dataset's corrupted test set (MNIST-C or CIFAR-C layout) and a manifest into `directory`.

    MNIST-C: one folder per corruption at its published severity (or `severity` for all), the train
    split too with `include_train`. CIFAR-C: one file per corruption with severities 1-5 stacked.
    `limit` keeps the first `limit` images of each split (for quick looks and tests). A corruption of the
    default set whose user-supplied file (frost pictures, pessimal-noise matrix) is missing is skipped, with
    the reason; one named in `corruptions` is refused instead, before anything is written: it was asked for.
    """
    suite = suite_for_dataset(dataset.info.name.value)
    names = _chosen_names(corruptions, suite)
    splits = _splits(dataset, suite, severity, limit, include_train)
    drawing = _Drawing(suite, seed, frost_module.frost_directory(frost_directory),
                       pessimal.matrix_path(pessimal_matrix))
    directory = Path(directory)
    summary = WriteSummary(directory, suite, skipped=unavailable_corruptions(
        names, suite, drawing.frost_directory, drawing.pessimal_matrix))
    if corruptions is not None and summary.skipped:
        raise CorruptionError("; ".join(summary.skipped.values()) + "; nothing was written")
    # What every file of one output directory is written with: the images, their labels (CIFAR-C's one
    # labels.npy) and the draws depend on them.
    settings = {"dataset": dataset.info.name.value, "layout": "mnist-c" if suite is Suite.MNIST_C else "cifar-c",
                "seed": seed, "spec_version": SPEC_VERSION, "chunk_size": CHUNK_SIZE, "limit": limit,
                "splits": list(splits)}
    earlier = _open_directory(directory, settings)
    levels = {name: _severities(name, suite, severity) for name in names}
    user_files = _user_files(drawing)
    summary.kept = {name: levels[name] for name in names if name not in summary.skipped and _written_before(
        earlier, name, levels[name], suite, user_files, _files_of(directory, name, suite, list(splits)))}
    writing = [name for name in names if name not in summary.skipped and name not in summary.kept]
    checksums = dict(earlier.get("sha256", {}))  # the earlier runs' files, as they wrote them; this run's added

    def record() -> None:
        """The manifest, written after each corruption, so that a stopped run loses none."""
        write_manifest(directory, _manifest(settings, earlier, summary, user_files, dataset.source), checksums)

    total = sum(len(images) * len(levels[name]) for name in writing for images, _ in splits.values())
    with tqdm(total=total, desc=f"corrupting {dataset.info.name.value}", unit="image",
              disable=progress is not ProgressStyle.BARS, file=sys.stderr) as bar:
        for done, name in enumerate(writing, 1):
            _write_corruption(directory, name, levels[name], splits, drawing, bar)
            summary.written[name] = levels[name]
            checksums.update({str(path.relative_to(directory)): sha256_of(path)
                              for path in _files_of(directory, name, suite, list(splits))})
            record()
            if progress is ProgressStyle.LINES:
                write_line(f"[{done}/{len(writing)}] {name} written at "
                           f"severit{'y' if len(levels[name]) == 1 else 'ies'} {', '.join(map(str, levels[name]))}",
                           sys.stderr)
    if not writing:  # otherwise each corruption recorded it
        record()
    return summary


def _files_of(directory: Path, name: str, suite: Suite, splits: Sequence[str]) -> list[Path]:
    """The files `name` is written to."""
    if suite is Suite.CIFAR_C:
        return [cifar_c_path(directory, name), directory / "labels.npy"]
    return [path for split in splits for path in mnist_c_paths(directory, name, split)]


def _written_before(earlier: dict, name: str, severities: list[int], suite: Suite, user_files: UserFiles,
                    files: Sequence[Path]) -> bool:
    """Whether an earlier run into the directory, with the same settings (`_earlier_run`), wrote `name` as this
    run would: at the same severities, from the same frost pictures or pessimal matrix where it reads one, and
    with its files still there. Files are deterministic, so writing it again would only repeat the work."""
    if earlier.get("corruptions", {}).get(name) != severities or not all(path.is_file() for path in files):
        return False
    corruption = get_corruption(name, suite)
    return all(earlier.get(key) == digest() for key, (reads, digest) in user_files.items() if reads(corruption))


def _earlier_run(directory: Path, settings: dict[str, object]) -> dict:
    """The manifest of an earlier `sparsecap corrupt` into `directory` ({} where there is none), whose
    corruptions this run adds to. Refused, before anything is written, where its files could not sit beside this
    run's (other `settings`), or where .npy files are there without a manifest (e.g. the published
    MNIST-C, which this run would overwrite)."""
    path = directory / MANIFEST
    if not path.exists():  # a directory of that name is no manifest: refused below, as unreadable
        strays = sorted(directory.rglob("*.npy")) if directory.is_dir() else []
        if strays:
            raise CorruptionError(f"{directory} holds .npy files that sparsecap corrupt did not write (no {MANIFEST}; "
                                  f"e.g. {strays[0]}), which this run would overwrite; nothing was written. Choose "
                                  f"a new --out directory")
        return {}
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CorruptionError(f"{path} cannot be read ({error}); nothing was written. Choose a new --out "
                              f"directory") from None
    if not isinstance(earlier, dict):
        raise CorruptionError(f"{path} is not a manifest of sparsecap corrupt; nothing was written. Choose a new "
                              f"--out directory")
    differing = [f"{key} {earlier.get(key)!r} (this run: {value!r})" for key, value in settings.items()
                 if earlier.get(key) != value]
    if differing:
        raise CorruptionError(f"{directory} holds corruptions written with other settings: {'; '.join(differing)}; "
                              f"their files and this run's would not match, so nothing was written. Choose a new "
                              f"--out directory, or rerun with those settings to add corruptions to it")
    return earlier
