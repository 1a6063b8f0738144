"""`sparsecap datasets --verify`: real files verify, any changed byte is named, and the command says so."""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sparsecap.cli import main
from sparsecap.corruptions.datasets import write_corrupted_dataset
from sparsecap.data import DatasetName, load_dataset
from sparsecap.data.corrupted import CorruptedLayout
from sparsecap.data.idx import IDX_FILE_NAMES
from sparsecap.data.integrity import verify_corrupted, verify_dataset
from sparsecap.studies.progress import ProgressStyle
from tests.dataset_files import SHARED_DATA, real_data, write_cifar10

REAL_MNIST = SHARED_DATA / "mnist"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def _plain_mnist_copy(directory: Path) -> Path:
    """Real MNIST, gunzipped into `directory` (the plain form the loader prefers)."""
    source = real_data(REAL_MNIST, "../shared/data/mnist beside the repository (see its README.md)")
    directory.mkdir()
    for name in IDX_FILE_NAMES:
        (directory / name).write_bytes(gzip.decompress((source / f"{name}.gz").read_bytes()))
    return directory


def test_real_mnist_verifies_gzipped_and_plain():
    assert verify_dataset(DatasetName.MNIST, real_data(REAL_MNIST, "../shared/data/mnist")).verified


def test_one_changed_pixel_of_mnist_is_named(tmp_path):
    directory = _plain_mnist_copy(tmp_path / "mnist")
    assert verify_dataset(DatasetName.MNIST, directory).verified
    images = directory / "t10k-images-idx3-ubyte"
    content = bytearray(images.read_bytes())
    content[16 + 28 * 14 + 14] ^= 1  # one pixel of the first test image, format intact
    images.write_bytes(bytes(content))
    verification = verify_dataset(DatasetName.MNIST, directory)
    assert len(verification.problems) == 1
    assert verification.problems[0].startswith(f"{images}: content differs from the published SHA-256")


def test_a_damaged_gzip_stream_and_a_missing_file_are_named(tmp_path):
    directory = tmp_path / "mnist"
    shutil.copytree(real_data(REAL_MNIST, "../shared/data/mnist"), directory)
    damaged = directory / "train-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-100])
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    problems = verify_dataset(DatasetName.MNIST, directory).problems
    assert len(problems) == 2
    assert problems[0].startswith(f"{damaged}: damaged gzip stream")
    assert problems[1] == f"{directory}: t10k-labels-idx1-ubyte (plain or .gz) is missing"


def test_debians_recompressed_fashion_mnist_verifies_by_its_content():
    """Debian's .gz files are not the published ones (other MD5s); their decoded bytes are."""
    directory = real_data(FASHION_SYSTEM_DIR, "apt-get install dataset-fashion-mnist")
    assert verify_dataset(DatasetName.FASHION_MNIST, directory).verified


def test_cifar_batches_are_compared_with_the_published_md5s(tmp_path):
    """Random batches in the real format load, but are not CIFAR-10: every batch is named."""
    directory = tmp_path / "cifar-10-batches-py"
    write_cifar10(directory)
    (directory / "test_batch").unlink()
    verification = verify_dataset(DatasetName.CIFAR10, directory)
    assert verification.checked == "6 batches against their published MD5s"
    assert [problem.split(":")[0] for problem in verification.problems] == [
        str(directory / f"data_batch_{index}") for index in range(1, 6)] + [str(directory / "test_batch")]
    assert "content differs from the published MD5" in verification.problems[0]
    assert "No such file" in verification.problems[-1]


@pytest.fixture
def written_mnist_c(tmp_path) -> Path:
    out = tmp_path / "mnist_c"
    mnist = load_dataset("mnist", data_root=real_data(REAL_MNIST, "../shared/data/mnist").parent)
    write_corrupted_dataset(mnist, out, corruptions=["fog", "shot_noise"], seed=0, limit=4,
                            progress=ProgressStyle.NONE)
    return out


def test_a_written_corrupted_set_is_checked_against_its_manifest(written_mnist_c):
    assert verify_corrupted(CorruptedLayout.MNIST_C, written_mnist_c).verified
    changed = written_mnist_c / "fog" / "test_images.npy"
    array = np.load(changed)
    array[0, 0, 0, 0] ^= 1
    np.save(changed, array)
    (written_mnist_c / "shot_noise" / "test_labels.npy").unlink()
    (written_mnist_c / "zigzag").mkdir()
    np.save(written_mnist_c / "zigzag" / "test_images.npy", array)
    verification = verify_corrupted(CorruptedLayout.MNIST_C, written_mnist_c)
    assert verification.checked == "4 files against the SHA-256 in its manifest.json"
    assert len(verification.problems) == 3
    assert verification.problems[0].startswith(f"{changed}: content differs from the SHA-256 in manifest.json")
    assert verification.problems[1] == (f"{written_mnist_c / 'shot_noise' / 'test_labels.npy'}: missing (listed in "
                                        f"manifest.json)")
    assert verification.problems[2] == f"{written_mnist_c / 'zigzag' / 'test_images.npy'}: not listed in manifest.json"


def test_a_set_without_manifest_has_its_format_checked(written_mnist_c):
    """As the published MNIST-C comes: no checksums, so every file is read and checked instead."""
    (written_mnist_c / "manifest.json").unlink()
    assert verify_corrupted(CorruptedLayout.MNIST_C, written_mnist_c).checked == (
        "the format of 2 corruptions (no manifest: no checksums to compare)")
    np.save(written_mnist_c / "fog" / "test_labels.npy", np.zeros(3, dtype=np.int64))  # 4 images
    verification = verify_corrupted(CorruptedLayout.MNIST_C, written_mnist_c)
    assert verification.problems and "expected 4 labels" in verification.problems[0]


@pytest.mark.parametrize(("content", "said"), [
    ({"sha256": ["fog"]}, "has no sha256 table of files"),
    (["fog"], "holds a JSON list, not an object"),
    ({"seed": 0}, "has no sha256 table of files"),
    ({"sha256": {"fog/test_images.npy": 5}}, "the SHA-256 of fog/test_images.npy is 5, not 64 hexadecimal digits"),
    ("{not json", "not JSON"),
])
def test_a_damaged_manifest_is_a_problem_not_a_crash(written_mnist_c, content, said):
    manifest = written_mnist_c / "manifest.json"
    manifest.write_text(content if isinstance(content, str) else json.dumps(content))
    (problem,) = verify_corrupted(CorruptedLayout.MNIST_C, written_mnist_c).problems
    assert problem == f"{manifest}: {said}: the manifest is damaged"


def test_a_manifest_that_is_a_directory_is_no_manifest_verified(written_mnist_c):
    manifest = written_mnist_c / "manifest.json"
    manifest.unlink()
    manifest.mkdir()
    (problem,) = verify_corrupted(CorruptedLayout.MNIST_C, written_mnist_c).problems
    assert problem.startswith(f"{manifest}: unreadable (")


def test_fashion_mnists_files_where_mnists_are_looked_for_are_named_as_such():
    directory = real_data(FASHION_SYSTEM_DIR, "apt-get install dataset-fashion-mnist")
    problems = verify_dataset(DatasetName.MNIST, directory).problems
    assert problems[0] == (f"{directory / 'train-images-idx3-ubyte.gz'}: holds fashion-mnist's published "
                           f"train-images-idx3-ubyte, not mnist's")
    assert len(problems) == 4


def test_datasets_verify_names_what_differs_and_exits_1(capsys, tmp_path, monkeypatch, written_mnist_c):
    monkeypatch.delenv("SPARSECAP_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _plain_mnist_copy(tmp_path / "mnist")
    assert main(["datasets", "--data-root", str(tmp_path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"mnist          verified   {tmp_path / 'mnist'}: 4 files against the published SHA-256")
    assert "\nmnist-c        verified   " in out and "\ncifar10        missing    " in out

    (tmp_path / "mnist" / "train-labels-idx1-ubyte").write_bytes(
        gzip.decompress((REAL_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()))  # a valid IDX file, the wrong one
    assert main(["datasets", "--data-root", str(tmp_path), "--verify"]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("mnist          DIFFERS    ")
    assert lines[1].strip().startswith(f"{tmp_path / 'mnist' / 'train-labels-idx1-ubyte'}: content differs")
    assert err.startswith("error: mnist: not the published files")


def test_a_manifest_naming_files_outside_its_directory_reads_none_of_them(written_mnist_c, tmp_path):
    outside = tmp_path / "secret.npy"
    np.save(outside, np.zeros(3))
    manifest = json.loads((written_mnist_c / "manifest.json").read_text())
    manifest["sha256"]["../secret.npy"] = "0" * 64
    manifest["sha256"][str(outside)] = "0" * 64
    (written_mnist_c / "manifest.json").write_text(json.dumps(manifest))
    problems = verify_corrupted(CorruptedLayout.MNIST_C, written_mnist_c).problems
    assert problems == (f"manifest.json lists '../secret.npy', which is not a file of {written_mnist_c}: the "
                        f"manifest is damaged",
                        f"manifest.json lists '{outside}', which is not a file of {written_mnist_c}: the manifest "
                        f"is damaged")


def test_a_cifar_tarball_read_in_place_is_compared_with_the_published_md5(tmp_path):
    tarball = tmp_path / "cifar-100-python.tar.gz"
    tarball.write_bytes(gzip.compress(b"not the published archive"))
    verification = verify_dataset(DatasetName.CIFAR100, tarball)
    assert verification.checked == "the tarball against its published MD5"
    (problem,) = verification.problems
    assert problem.startswith(f"{tarball}: content differs from the published MD5 (")
    assert problem.endswith("expected eb9058c3a382…)")
