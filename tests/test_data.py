"""Dataset layer: real file formats written small in tmp_path, error messages, search order, downloads over a
local HTTP server, and (when present on the machine) the real MNIST and Fashion-MNIST files."""

import codecs
import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import re
import struct
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsecap.data import (
    DatasetName,
    dataset_info,
    list_availability,
    load_dataset,
    parse_dataset_name,
    search_roots,
)
from sparsecap.data import download as download_module
from sparsecap.data.digits import load_digits_dataset
from sparsecap.data.download import RemoteFiles, download_file
from sparsecap.data.locate import candidate_locations, locate, not_found_message
from sparsecap.data.subset import take_subset
from sparsecap.errors import DatasetFormatError, DatasetNotFoundError, SparsecapError
from tests.dataset_files import SHARED_DATA, cifar_batch_bytes, random_cifar_batch, real_data, write_cifar10

REAL_MNIST = SHARED_DATA / "mnist"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
HOW_TO_GET_MNIST = "../shared/data/mnist beside the repository (see its README.md)"
HOW_TO_GET_FASHION = "apt-get install dataset-fashion-mnist"
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@pytest.fixture(autouse=True)
def isolated_search_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's ~/.cache and $SPARSECAP_DATA out of every test."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPARSECAP_DATA", raising=False)


# ---------------------------------------------------------------- writers of the real formats


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(dim.to_bytes(4, "big") for dim in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_file(path: Path, content: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(content))
    else:
        path.write_bytes(content)
    return path


def write_idx_dataset(directory: Path, gz: bool, num_train: int = 6, num_test: int = 4) -> dict[str, np.ndarray]:
    """Four IDX files in `directory`; returns the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", num_train), ("test", num_test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count, dtype=np.uint8)
        images_name, labels_name = IDX_NAMES[split]
        write_file(directory / images_name, idx_bytes(images, 2051), gz)
        write_file(directory / labels_name, idx_bytes(labels, 2049), gz)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


def write_cifar100(directory: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(2)
    batches = {"train": random_cifar_batch(rng, 5, 100), "test": random_cifar_batch(rng, 3, 100)}
    directory.mkdir(parents=True)
    for batch_name, (data, labels) in batches.items():
        (directory / batch_name).write_bytes(cifar_batch_bytes(data, labels, b"fine_labels"))
    return batches


def write_tarball(tarball: Path, source_directory: Path) -> None:
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(source_directory, arcname=source_directory.name)


def assert_cifar10_matches(dataset, batches: dict[str, tuple[np.ndarray, list[int]]]) -> None:
    train_data = np.concatenate([batches[f"data_batch_{index}"][0] for index in range(1, 6)])
    train_labels = [label for index in range(1, 6) for label in batches[f"data_batch_{index}"][1]]
    assert dataset.train_images.shape == (15, 3, 32, 32)
    assert dataset.train_images.dtype == torch.uint8
    assert dataset.train_labels.dtype == torch.int64
    # Row layout: the 1024 red values, then green, then blue, each row-major.
    assert dataset.train_images[4, 1, 2, 3].item() == train_data[4, 1024 + 2 * 32 + 3]
    assert np.array_equal(dataset.train_images.reshape(15, -1).numpy(), train_data)
    assert dataset.train_labels.tolist() == train_labels
    assert np.array_equal(dataset.test_images.reshape(2, -1).numpy(), batches["test_batch"][0])
    assert dataset.test_labels.tolist() == batches["test_batch"][1]


# ---------------------------------------------------------------- names and static info


def test_parse_dataset_name_accepts_every_name_and_lists_them_on_a_typo() -> None:
    for member in DatasetName:
        assert parse_dataset_name(member.value) is member
    assert parse_dataset_name("MNIST") is DatasetName.MNIST
    with pytest.raises(SparsecapError) as error:
        parse_dataset_name("cifar")
    for member in DatasetName:
        assert member.value in str(error.value)


def test_dataset_info_describes_each_dataset() -> None:
    assert dataset_info("mnist").input_shape == (1, 28, 28)
    assert dataset_info(DatasetName.CIFAR100).num_classes == 100
    for member in DatasetName:
        info = dataset_info(member)
        assert len(info.mean) == len(info.std) == info.input_shape[0]


def test_cifar_normalisation_constants_are_the_published_training_set_ones() -> None:
    """CIFAR files are not on this machine to recompute them, so the published values are pinned; in particular
    not the often-copied (0.2023, 0.1994, 0.2010), which are per-image stds, not the training set's."""
    cifar10, cifar100 = dataset_info("cifar10"), dataset_info("cifar100")
    assert cifar10.mean == (0.4914, 0.4822, 0.4465) and cifar10.std == (0.2470, 0.2435, 0.2616)
    assert cifar100.mean == (0.5071, 0.4865, 0.4409) and cifar100.std == (0.2673, 0.2564, 0.2762)


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "raw"])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    arrays = write_idx_dataset(tmp_path / "mnist", gz)
    dataset = load_dataset("mnist", data_root=tmp_path)
    assert dataset.train_images.shape == (6, 1, 28, 28)
    assert dataset.train_images.dtype == torch.uint8
    assert dataset.train_labels.dtype == torch.int64
    assert np.array_equal(dataset.train_images[:, 0].numpy(), arrays["train_images"])
    assert np.array_equal(dataset.train_labels.numpy(), arrays["train_labels"])
    assert np.array_equal(dataset.test_images[:, 0].numpy(), arrays["test_images"])
    assert np.array_equal(dataset.test_labels.numpy(), arrays["test_labels"])
    assert dataset.source == str(tmp_path / "mnist")


@pytest.mark.parametrize(
    ("name", "subdirectory"),
    [("mnist", "MNIST/raw"), ("mnist", "."), ("fashion-mnist", "FashionMNIST/raw"), ("fashion-mnist", "fashion-mnist")],
)
def test_idx_layouts_are_found(tmp_path: Path, name: str, subdirectory: str) -> None:
    write_idx_dataset(tmp_path / subdirectory, gz=False)
    dataset = load_dataset(name, data_root=tmp_path)
    assert dataset.source == str(tmp_path / subdirectory)
    assert len(dataset.train_labels) == 6


def test_idx_wrong_magic_names_file_and_both_magics(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "mnist", gz=True)
    labels = np.zeros(6, dtype=np.uint8)
    bad = write_file(tmp_path / "mnist" / "train-images-idx3-ubyte", idx_bytes(labels, 2049), gz=True)
    with pytest.raises(DatasetFormatError) as error:
        load_dataset("mnist", data_root=tmp_path)
    message = str(error.value)
    assert str(bad) in message and "2049" in message and "2051" in message


def test_idx_truncated_names_file_and_byte_counts(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "mnist", gz=False)
    images_path = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    content = images_path.read_bytes()
    images_path.write_bytes(content[:-100])
    with pytest.raises(DatasetFormatError) as error:
        load_dataset("mnist", data_root=tmp_path)
    message = str(error.value)
    assert str(images_path) in message
    assert str(len(content)) in message and str(len(content) - 100) in message


def test_idx_truncated_gzip_stream_is_a_format_error(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "mnist", gz=True)
    labels_path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    labels_path.write_bytes(labels_path.read_bytes()[:-12])
    with pytest.raises(DatasetFormatError, match=re.escape("train-labels-idx1-ubyte.gz")):
        load_dataset("mnist", data_root=tmp_path)


def test_idx_split_declaring_no_items_is_refused(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "mnist", gz=False)
    empty = write_file(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(0, dtype=np.uint8), 2049))
    with pytest.raises(DatasetFormatError, match=re.escape(f"{empty}: header declares no items")):
        load_dataset("mnist", data_root=tmp_path)


def test_idx_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "mnist", gz=False)
    write_file(tmp_path / "mnist" / "train-labels-idx1-ubyte", idx_bytes(np.zeros(5, dtype=np.uint8), 2049))
    with pytest.raises(DatasetFormatError, match=r"6 images but .* 5 labels"):
        load_dataset("mnist", data_root=tmp_path)


def test_idx_label_equal_to_the_class_count_is_refused(tmp_path: Path) -> None:
    """Labels run 0..9: a 10 would index past the logits."""
    write_idx_dataset(tmp_path / "mnist", gz=False)
    labels = write_file(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", idx_bytes(np.array([0, 9, 10, 1]), 2049))
    with pytest.raises(DatasetFormatError, match=re.escape(f"{labels}: label 10 is out of range for 10 classes")):
        load_dataset("mnist", data_root=tmp_path)


def test_idx_bytes_past_the_declared_shape_are_refused(tmp_path: Path) -> None:
    """A payload longer than the header declares is as corrupt as a shorter one."""
    write_idx_dataset(tmp_path / "mnist", gz=False)
    labels_path = tmp_path / "mnist" / "train-labels-idx1-ubyte"
    labels_path.write_bytes(labels_path.read_bytes() + b"\x00")
    with pytest.raises(DatasetFormatError, match=r"expected 14 bytes, found 15"):
        load_dataset("mnist", data_root=tmp_path)


# ---------------------------------------------------------------- CIFAR


def test_cifar10_directory_round_trip(tmp_path: Path) -> None:
    batches = write_cifar10(tmp_path / "cifar-10-batches-py")
    dataset = load_dataset("cifar10", data_root=tmp_path)
    assert_cifar10_matches(dataset, batches)
    assert dataset.source == str(tmp_path / "cifar-10-batches-py")


def test_cifar10_read_straight_from_the_tarball(tmp_path: Path) -> None:
    batches = write_cifar10(tmp_path / "staging" / "cifar-10-batches-py")
    (tmp_path / "root").mkdir()
    write_tarball(tmp_path / "root" / "cifar-10-python.tar.gz", tmp_path / "staging" / "cifar-10-batches-py")
    dataset = load_dataset("cifar10", data_root=tmp_path / "root")
    assert_cifar10_matches(dataset, batches)
    assert dataset.source.endswith("cifar-10-python.tar.gz")


def test_a_cifar_tarball_whose_gzip_checksum_fails_is_refused(tmp_path: Path) -> None:
    """The CRC sits after the tar's end marker: a damaged byte that still inflates is caught only there."""
    write_cifar10(tmp_path / "staging" / "cifar-10-batches-py")
    (tmp_path / "root").mkdir()
    tarball = tmp_path / "root" / "cifar-10-python.tar.gz"
    write_tarball(tarball, tmp_path / "staging" / "cifar-10-batches-py")
    content = bytearray(tarball.read_bytes())
    content[-8] ^= 0xFF  # the gzip trailer's CRC-32 of the data: no longer the data's
    tarball.write_bytes(bytes(content))
    with pytest.raises(DatasetFormatError, match=re.escape(f"{tarball}: unreadable tarball (CRC check failed")):
        load_dataset("cifar10", data_root=tmp_path / "root")


def test_cifar100_round_trip_uses_fine_labels(tmp_path: Path) -> None:
    batches = write_cifar100(tmp_path / "cifar-100-python")
    dataset = load_dataset("cifar100", data_root=tmp_path)
    assert dataset.train_images.shape == (5, 3, 32, 32)
    assert dataset.test_images.shape == (3, 3, 32, 32)
    assert np.array_equal(dataset.train_images.reshape(5, -1).numpy(), batches["train"][0])
    assert dataset.train_labels.tolist() == batches["train"][1]
    assert dataset.test_labels.tolist() == batches["test"][1]
    assert dataset.info.num_classes == 100


def test_cifar_truncated_pickle_names_the_file(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "cifar-10-batches-py")
    batch_path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch_path.write_bytes(batch_path.read_bytes()[:5000])
    with pytest.raises(DatasetFormatError, match="data_batch_3"):
        load_dataset("cifar10", data_root=tmp_path)


def test_cifar_wrong_column_count_is_rejected(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "cifar-10-batches-py")
    batch_path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch_path.write_bytes(cifar_batch_bytes(np.zeros((2, 3000), dtype=np.uint8), [0, 1]))
    with pytest.raises(DatasetFormatError) as error:
        load_dataset("cifar10", data_root=tmp_path)
    assert str(batch_path) in str(error.value) and "3000" in str(error.value) and "3072" in str(error.value)


def test_cifar_label_count_must_match_rows(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "cifar-10-batches-py")
    batch_path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch_path.write_bytes(cifar_batch_bytes(np.zeros((2, 3072), dtype=np.uint8), [0, 1, 2]))
    with pytest.raises(DatasetFormatError, match="2 images but b'labels' holds 3"):
        load_dataset("cifar10", data_root=tmp_path)


def test_cifar_negative_label_is_refused(tmp_path: Path) -> None:
    """A -1 label would silently index the last class."""
    write_cifar10(tmp_path / "cifar-10-batches-py")
    batch_path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch_path.write_bytes(cifar_batch_bytes(np.zeros((2, 3072), dtype=np.uint8), [-1, 3]))
    with pytest.raises(DatasetFormatError, match=r"labels span -1\.\.3, outside 0\.\.9"):
        load_dataset("cifar10", data_root=tmp_path)


class _Python2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes str and bytes as Python 2's str (SHORT_BINSTRING / BINSTRING), as the official batches were written."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def _save_python2_str(self, value: str | bytes) -> None:
        data = value.encode("latin-1") if isinstance(value, str) else value
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(value)

    dispatch[str] = _save_python2_str
    dispatch[bytes] = _save_python2_str


def test_cifar_batches_pickled_by_python_2_keep_their_bytes_keys(tmp_path: Path) -> None:
    """The official batches are Python 2 pickles: their str keys must load as b"data" / b"labels" (encoding
    "bytes"), and numpy 1's module name numpy.core.multiarray must resolve."""
    batches = write_cifar10(tmp_path / "default" / "cifar-10-batches-py")
    directory = tmp_path / "python2" / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    for batch_name, (data, labels) in batches.items():
        stream = io.BytesIO()
        _Python2Pickler(stream, protocol=2).dump({b"batch_label": b"batch", b"data": data, b"labels": labels})
        content = re.sub(rb"cnumpy\._?core\.multiarray\n", b"cnumpy.core.multiarray\n", stream.getvalue())
        assert b"U\x04data" in content and b"_codecs" not in content
        (directory / batch_name).write_bytes(content)
    assert_cifar10_matches(load_dataset("cifar10", data_root=tmp_path / "python2"), batches)


class _RunsShellCommand:
    """Pickles as a call to os.system, as a hostile batch file would."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_cifar_pickle_with_forbidden_global_is_refused_without_running_it(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "cifar-10-batches-py")
    marker = tmp_path / "pwned"
    batch_path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch_path.write_bytes(pickle.dumps({b"data": _RunsShellCommand(f"touch {marker}"), b"labels": []}))
    with pytest.raises(DatasetFormatError) as error:
        load_dataset("cifar10", data_root=tmp_path)
    assert str(batch_path) in str(error.value) and "system" in str(error.value)
    assert not marker.exists()


def test_cifar_batches_re_pickled_with_protocol_2_give_the_same_arrays(tmp_path: Path) -> None:
    """Protocol 2 writes every bytes object (the keys, the array data) as a call to _codecs.encode."""
    batches = write_cifar10(tmp_path / "default" / "cifar-10-batches-py")
    directory = tmp_path / "protocol2" / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    for batch_name in batches:
        batch = pickle.loads((tmp_path / "default" / "cifar-10-batches-py" / batch_name).read_bytes())
        (directory / batch_name).write_bytes(pickle.dumps(batch, protocol=2))
    assert b"c_codecs\nencode\n" in (directory / "test_batch").read_bytes()
    default = load_dataset("cifar10", data_root=tmp_path / "default")
    protocol2 = load_dataset("cifar10", data_root=tmp_path / "protocol2")
    assert_cifar10_matches(protocol2, batches)
    for split in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(protocol2, split), getattr(default, split))


class _EncodesWith:
    """Pickles as the _codecs.encode call protocol 2 writes for bytes, but with other arguments."""

    def __init__(self, *arguments: object) -> None:
        self.arguments = arguments

    def __reduce__(self):
        return (codecs.encode, self.arguments)


@pytest.mark.parametrize(("arguments", "shown"), [
    (("import os", "rot13"), "('import os', 'rot13')"),
    ((b"x\x9c", "zlib_codec"), "(bytes, 'zlib_codec')"),
    (("text",), "('text')"),
])
def test_cifar_pickle_using_codecs_encode_otherwise_than_for_latin1_bytes_is_refused(
    tmp_path: Path, arguments: tuple[object, ...], shown: str
) -> None:
    write_cifar10(tmp_path / "cifar-10-batches-py")
    batch_path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch_path.write_bytes(pickle.dumps({b"data": _EncodesWith(*arguments), b"labels": []}, protocol=2))
    with pytest.raises(DatasetFormatError) as error:
        load_dataset("cifar10", data_root=tmp_path)
    message = str(error.value)
    assert str(batch_path) in message and f"_codecs.encode{shown}" in message
    assert "only _codecs.encode(str, 'latin1')" in message


# ---------------------------------------------------------------- digits


def test_digits_split_is_deterministic_stratified_uint8() -> None:
    first, second = load_digits_dataset(), load_dataset("digits")
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.test_labels, second.test_labels)
    assert first.train_images.shape == (1437, 1, 8, 8) and first.test_images.shape == (360, 1, 8, 8)
    assert first.train_images.dtype == torch.uint8 and first.train_labels.dtype == torch.int64
    assert first.train_images.max().item() == 255
    train_counts = np.bincount(first.train_labels.numpy(), minlength=10)
    test_counts = np.bincount(first.test_labels.numpy(), minlength=10)
    assert np.all(np.abs(test_counts / (train_counts + test_counts) - 0.2) < 0.01)


def test_digits_normalisation_constants_match_the_train_split() -> None:
    dataset = load_digits_dataset()
    pixels = dataset.train_images.double() / 255
    assert pixels.mean().item() == pytest.approx(dataset.info.mean[0], abs=1e-3)
    assert pixels.std().item() == pytest.approx(dataset.info.std[0], abs=1e-3)


# ---------------------------------------------------------------- subsets


def test_subsets_keep_each_image_with_its_label_and_are_the_same_every_time() -> None:
    """A subset that shuffled images apart from their labels would train on noise without failing."""
    dataset = load_digits_dataset()
    subset = take_subset(dataset, 100, 30)
    assert subset.train_images.shape == (100, 1, 8, 8) and subset.test_labels.shape == (30,)
    for images, labels, whole_images, whole_labels in (
        (subset.train_images, subset.train_labels, dataset.train_images, dataset.train_labels),
        (subset.test_images, subset.test_labels, dataset.test_images, dataset.test_labels),
    ):
        flat = whole_images.reshape(len(whole_images), -1)
        for image, label in zip(images, labels):
            rows = (flat == image.reshape(1, -1)).all(dim=1).nonzero().flatten()
            assert label.item() in whole_labels[rows].tolist()
    assert len(set(map(tuple, subset.train_images.reshape(100, -1).tolist()))) > 90  # drawn without replacement
    again = take_subset(dataset, 100, 30)
    assert torch.equal(again.train_images, subset.train_images) and torch.equal(again.test_labels, subset.test_labels)


def test_a_subset_may_take_a_whole_split_but_no_more() -> None:
    dataset = load_digits_dataset()
    whole = take_subset(dataset, len(dataset.train_labels), None)
    assert sorted(whole.train_labels.tolist()) == sorted(dataset.train_labels.tolist())
    assert whole.test_images is dataset.test_images
    with pytest.raises(SparsecapError, match="test_examples = 361 exceeds the 360 test images of digits"):
        take_subset(dataset, None, 361)


# ---------------------------------------------------------------- search order and availability


def test_search_roots_order_explicit_then_env_then_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARSECAP_DATA", str(tmp_path / "env"))
    assert search_roots(tmp_path / "explicit") == [
        tmp_path / "explicit",
        tmp_path / "env",
        tmp_path / "home" / ".cache" / "sparsecap" / "data",
    ]
    assert search_roots(tmp_path / "env") == search_roots(None)  # no duplicates


def test_env_var_root_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx_dataset(tmp_path / "env" / "mnist", gz=True)
    monkeypatch.setenv("SPARSECAP_DATA", str(tmp_path / "env"))
    assert load_dataset("mnist").source == str(tmp_path / "env" / "mnist")


def test_not_found_names_every_searched_place_and_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARSECAP_DATA", str(tmp_path / "env"))
    for name in (DatasetName.MNIST, DatasetName.CIFAR100):
        with pytest.raises(DatasetNotFoundError) as error:
            load_dataset(name, data_root=tmp_path / "explicit")
        message = str(error.value)
        searched = candidate_locations(name, search_roots(tmp_path / "explicit"))
        assert len(searched) >= 6
        for location in searched:
            assert f"- {location}\n" in message
        assert "--data-root" in message and "SPARSECAP_DATA" in message
        assert "--download" in message and "download=True" in message
        assert f"Note: {tmp_path / 'explicit'} does not exist\nNote: {tmp_path / 'env'} does not exist" in message


def test_fashion_not_found_message_mentions_system_directory_and_apt() -> None:
    message = not_found_message(DatasetName.FASHION_MNIST, search_roots(None))
    assert f"- {FASHION_SYSTEM_DIR}" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "train-images-idx3-ubyte" in message


def test_every_layout_of_a_root_is_tried_before_the_next_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--data-root in torchvision's layout (MNIST/raw) wins over $SPARSECAP_DATA's mnist/: roots come first, then
    layouts; within a root an extracted CIFAR directory is read before its (slower) tarball."""
    first, second = tmp_path / "first", tmp_path / "second"
    assert candidate_locations(DatasetName.MNIST, [first, second]) == [
        first / "mnist", first / "MNIST" / "raw", first, second / "mnist", second / "MNIST" / "raw", second]
    assert candidate_locations(DatasetName.CIFAR10, [first, second]) == [
        first / "cifar-10-batches-py", first / "cifar-10-python.tar.gz",
        second / "cifar-10-batches-py", second / "cifar-10-python.tar.gz"]
    write_idx_dataset(first / "MNIST" / "raw", gz=True)
    write_idx_dataset(second / "mnist", gz=True)
    monkeypatch.setenv("SPARSECAP_DATA", str(second))
    assert load_dataset("mnist", data_root=first).source == str(first / "MNIST" / "raw")


def test_a_partly_extracted_cifar_directory_is_passed_over_for_the_tarball(tmp_path: Path) -> None:
    """An interrupted extraction (a batch missing) is not the dataset: the tarball beside it is used instead."""
    write_cifar10(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    assert locate(DatasetName.CIFAR10, [tmp_path]) is None
    (tmp_path / "cifar-10-python.tar.gz").touch()
    assert locate(DatasetName.CIFAR10, [tmp_path]) == tmp_path / "cifar-10-python.tar.gz"


def test_list_availability_reports_each_dataset(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "MNIST" / "raw", gz=True)
    write_cifar100(tmp_path / "cifar-100-python")
    report = {entry.name: entry for entry in list_availability(tmp_path)}
    assert set(report) == set(DatasetName)
    assert report[DatasetName.MNIST].available
    assert report[DatasetName.MNIST].location == str(tmp_path / "MNIST" / "raw")
    assert report[DatasetName.CIFAR100].available
    assert not report[DatasetName.CIFAR10].available
    assert "not found" in report[DatasetName.CIFAR10].location
    assert report[DatasetName.DIGITS].available


# ---------------------------------------------------------------- downloads (local HTTP server)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """Serve tmp_path/served on 127.0.0.1; yields (served directory, base URL)."""
    for variable in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(variable, "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join()


def md5_of(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


@pytest.fixture
def mnist_server(
    http_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, str, dict[str, np.ndarray]]:
    """MNIST's four files served over HTTP as the official mirror: where they are, its URL, and their arrays."""
    served, base_url = http_server
    arrays = write_idx_dataset(served, gz=True)
    md5s = {path.name: md5_of(path.read_bytes()) for path in served.iterdir()}
    monkeypatch.setitem(download_module.REMOTE_FILES, DatasetName.MNIST, RemoteFiles(base_url, md5s))
    return served, base_url, arrays


def test_download_file_keeps_a_verified_file(tmp_path: Path, http_server: tuple[Path, str]) -> None:
    served, base_url = http_server
    content = os.urandom(3 * 1024 * 1024 + 17)  # several chunks
    (served / "blob.bin").write_bytes(content)
    destination = tmp_path / "downloads" / "blob.bin"
    assert download_file(base_url + "blob.bin", destination, md5_of(content)) == destination
    assert destination.read_bytes() == content
    assert [path.name for path in destination.parent.iterdir()] == ["blob.bin"]


def test_download_file_with_wrong_md5_leaves_no_file(tmp_path: Path, http_server: tuple[Path, str]) -> None:
    served, base_url = http_server
    (served / "blob.bin").write_bytes(b"not what was published")
    destination = tmp_path / "downloads" / "blob.bin"
    with pytest.raises(DatasetFormatError, match="MD5"):
        download_file(base_url + "blob.bin", destination, "0" * 32)
    assert list(destination.parent.iterdir()) == []


def test_download_file_network_failure_names_the_url(tmp_path: Path, http_server: tuple[Path, str]) -> None:
    _, base_url = http_server
    with pytest.raises(DatasetNotFoundError, match=re.escape("missing.bin")):
        download_file(base_url + "missing.bin", tmp_path / "downloads" / "missing.bin", "0" * 32)
    assert list((tmp_path / "downloads").iterdir()) == []


def test_load_dataset_downloads_idx_files_into_the_first_root(
    tmp_path: Path, mnist_server: tuple[Path, str, dict[str, np.ndarray]]
) -> None:
    served, _, arrays = mnist_server
    dataset = load_dataset("mnist", data_root=tmp_path / "root", download=True)
    assert dataset.source == str(tmp_path / "root" / "mnist")
    assert np.array_equal(dataset.test_images[:, 0].numpy(), arrays["test_images"])
    assert sorted(path.name for path in (tmp_path / "root" / "mnist").iterdir()) == sorted(
        path.name for path in served.iterdir())


def test_an_interrupted_download_resumes_keeping_the_files_already_verified(
    tmp_path: Path, mnist_server: tuple[Path, str, dict[str, np.ndarray]]
) -> None:
    """Files already under their final names are not fetched again (here the server no longer has one)."""
    served, _, arrays = mnist_server
    kept = tmp_path / "root" / "mnist" / "train-images-idx3-ubyte.gz"
    kept.parent.mkdir(parents=True)
    (served / kept.name).rename(kept)
    dataset = load_dataset("mnist", data_root=tmp_path / "root", download=True)
    assert np.array_equal(dataset.train_images[:, 0].numpy(), arrays["train_images"])


def test_a_downloaded_file_is_readable_by_everyone(tmp_path: Path, http_server: tuple[Path, str]) -> None:
    """Data directories are shared: the private mode of the temporary file must not stay on the data."""
    served, base_url = http_server
    (served / "blob.bin").write_bytes(b"shared data")
    destination = download_file(base_url + "blob.bin", tmp_path / "blob.bin", md5_of(b"shared data"))
    assert destination.stat().st_mode & 0o777 == 0o644


def test_a_data_root_that_is_a_file_is_named_as_such_and_refused_for_downloads_in_one_message(
    tmp_path: Path, mnist_server: tuple[Path, str, dict[str, np.ndarray]]
) -> None:
    """A file given as --data-root (a slip for its directory) is pointed out among the places searched, and a
    download into it fails with a message that says where and why, not with a traceback from mkdir."""
    _, base_url, _ = mnist_server
    root = tmp_path / "train-images-idx3-ubyte.gz"
    root.write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match=f"Note: {root} is not a directory"):
        load_dataset("mnist", data_root=root)
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("mnist", data_root=root, download=True)
    assert str(error.value).startswith(f"cannot download {base_url}")
    assert f"into {root / 'mnist'}: Not a directory" in str(error.value)
    assert "give --data-root a directory you can write" in str(error.value)
    assert root.read_bytes() == b""


def test_load_dataset_downloads_and_extracts_cifar(
    tmp_path: Path, http_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, base_url = http_server
    batches = write_cifar10(tmp_path / "staging" / "cifar-10-batches-py")
    write_tarball(served / "cifar-10-python.tar.gz", tmp_path / "staging" / "cifar-10-batches-py")
    md5 = md5_of((served / "cifar-10-python.tar.gz").read_bytes())
    remote = RemoteFiles(base_url, {"cifar-10-python.tar.gz": md5})
    monkeypatch.setitem(download_module.REMOTE_FILES, DatasetName.CIFAR10, remote)
    dataset = load_dataset("cifar10", data_root=tmp_path / "root", download=True)
    assert_cifar10_matches(dataset, batches)
    assert [path.name for path in (tmp_path / "root").iterdir()] == ["cifar-10-batches-py"]


def test_load_dataset_download_failure_explains_what_was_searched(
    tmp_path: Path, http_server: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, base_url = http_server
    remote = RemoteFiles(base_url, {"cifar-100-python.tar.gz": "0" * 32})  # not served: 404
    monkeypatch.setitem(download_module.REMOTE_FILES, DatasetName.CIFAR100, remote)
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("cifar100", data_root=tmp_path / "root", download=True)
    message = str(error.value)
    assert base_url + "cifar-100-python.tar.gz" in message and "404" in message
    assert f"- {tmp_path / 'root' / 'cifar-100-python'}\n" in message


# ---------------------------------------------------------------- real data, where this machine has it


def test_real_mnist() -> None:
    dataset = load_dataset("mnist", data_root=real_data(REAL_MNIST, HOW_TO_GET_MNIST))
    assert dataset.train_images.shape == (60000, 1, 28, 28)
    assert dataset.test_images.shape == (10000, 1, 28, 28)
    # The published first labels: a header offset or byte-order slip would shift or garble them.
    assert dataset.train_labels[:5].tolist() == [5, 0, 4, 1, 9] and dataset.test_labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert dataset.train_labels.min().item() == 0 and dataset.train_labels.max().item() == 9
    assert set(dataset.test_labels.unique().tolist()) == set(range(10))
    pixels = dataset.train_images.double() / 255
    assert pixels.mean().item() == pytest.approx(dataset.info.mean[0], abs=1e-3)
    assert pixels.std().item() == pytest.approx(dataset.info.std[0], abs=1e-3)


def test_real_fashion_mnist_from_the_system_directory() -> None:
    real_data(FASHION_SYSTEM_DIR, HOW_TO_GET_FASHION)
    dataset = load_dataset("fashion-mnist")
    assert dataset.source == str(FASHION_SYSTEM_DIR)
    assert len(dataset.train_labels) == 60000 and len(dataset.test_labels) == 10000
    assert dataset.train_labels[:5].tolist() == [9, 0, 0, 3, 0] and dataset.test_labels[:5].tolist() == [9, 2, 1, 1, 6]
    assert dataset.train_images.shape[1:] == (1, 28, 28)
    pixels = dataset.train_images.double() / 255
    assert pixels.mean().item() == pytest.approx(dataset.info.mean[0], abs=1e-3)
    assert pixels.std().item() == pytest.approx(dataset.info.std[0], abs=1e-3)


def test_fashion_mnist_files_given_as_mnist_are_refused_by_name() -> None:
    """MNIST also looks in <ROOT> itself, where Fashion-MNIST's files carry the same names."""
    real_data(FASHION_SYSTEM_DIR, HOW_TO_GET_FASHION)
    with pytest.raises(DatasetFormatError) as error:
        load_dataset("mnist", data_root=FASHION_SYSTEM_DIR)
    assert str(error.value) == (f"{FASHION_SYSTEM_DIR} holds fashion-mnist's files, not mnist's (its test labels "
                                f"are fashion-mnist's); give the directory with mnist's files, or run on fashion-mnist")


def test_mnist_files_given_as_fashion_mnist_are_refused(tmp_path: Path) -> None:
    (tmp_path / "fashion-mnist").symlink_to(real_data(REAL_MNIST, HOW_TO_GET_MNIST))
    with pytest.raises(DatasetFormatError, match="holds mnist's files, not fashion-mnist's"):
        load_dataset("fashion-mnist", data_root=tmp_path)


def test_a_folder_with_some_of_the_files_is_called_incomplete_not_missing(tmp_path: Path, monkeypatch) -> None:
    """A copy cut short (or a file replaced by a folder) is there: "not found" would send the user looking for it."""
    from sparsecap.data import list_availability

    monkeypatch.delenv("SPARSECAP_DATA", raising=False)  # no other root to find a complete copy in
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    (tmp_path / "mnist").mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "mnist" / name).write_bytes((real_data(REAL_MNIST, HOW_TO_GET_MNIST) / name).read_bytes())
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").mkdir()
    write_cifar10(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    said = {entry.name.value: entry.location for entry in list_availability(tmp_path) if not entry.available}
    assert said["mnist"] == (f"incomplete: {tmp_path / 'mnist'} lacks train-images-idx3-ubyte, "
                             f"train-labels-idx1-ubyte")
    assert said["cifar10"] == f"incomplete: {tmp_path / 'cifar-10-batches-py'} lacks data_batch_3"
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("mnist", data_root=tmp_path)
    assert f"\nNote: {tmp_path / 'mnist'} lacks train-images-idx3-ubyte, train-labels-idx1-ubyte" in str(error.value)
