"""The corruptions (MNIST-C, CIFAR-10-C suites), their errors, the written layouts and the protocol."""

from __future__ import annotations

import colorsys
import gzip
import hashlib
import json
import pickle
import re
import shutil
import struct

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from sparsecap import __version__
from sparsecap.cli import main
from sparsecap.corruptions import (
    Suite,
    corrupt,
    get_corruption,
    list_corruptions,
    suite_for_dataset,
    to_channels_last,
)
from sparsecap.corruptions import blur as cifar_blur
from sparsecap.corruptions import frost as frost_pictures
from sparsecap.corruptions import datasets as datasets_module
from sparsecap.corruptions import mnist_c, ops
from sparsecap.corruptions import protocol as protocol_module
from sparsecap.corruptions.datasets import CHUNK_SIZE, write_corrupted_dataset
from sparsecap.corruptions.gallery import colour_images, draw_grid, grid_rows, scene_images
from sparsecap.corruptions.pessimal import load_matrix
from sparsecap.corruptions.protocol import (
    _SAMPLE_STREAM,
    CorruptedEntry,
    EvaluationInputs,
    ProtocolConfig,
    name_key,
    prepare_inputs,
    sample_indices,
)
from sparsecap.data import dataset_info
from sparsecap.data.corrupted import (
    CIFAR_C_PUBLISHED,
    MNIST_C_PUBLISHED,
    CorruptedLayout,
    check_complete,
    describe_availability,
    load_corrupted,
    locate_corrupted,
    read_cifar_c,
    read_mnist_c,
)
from sparsecap.data.registry import DatasetName, ImageDataset
from sparsecap.errors import (
    CorruptionError,
    DatasetFormatError,
    DatasetNotFoundError,
    FrostUnavailableError,
    PessimalMatrixUnavailableError,
)
from sparsecap.models import ModelConfig, create_model
from sparsecap.robustness.corrupted_data import corrupted_data_robustness
from sparsecap.studies import StudyDatabase, load_spec
from sparsecap.studies.corruption_measure import corruption_rows, skipped_corruptions
from sparsecap.studies.progress import ProgressStyle

SUITES = (Suite.MNIST_C, Suite.CIFAR_C)
ALL = [(suite, name) for suite in SUITES for name in list_corruptions(suite)]


def _digits(count: int, seed: int = 0) -> np.ndarray:
    """MNIST-like 28×28 grey images: a bright blurred stroke on black, uint8 (N, 28, 28, 1)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 28, 28))
    for index in range(count):
        r0, r1 = rng.integers(5, 23, 2)
        rows = np.linspace(r0, r1, 40).round().astype(int)
        cols = np.linspace(rng.integers(5, 10), rng.integers(18, 23), 40).round().astype(int)
        images[index, rows, cols] = 1
        images[index, 5:23, 14] = 1
    images = ndimage.gaussian_filter(images, (0, 0.8, 0.8))
    return np.rint(255 * np.clip(images / images.max(axis=(1, 2), keepdims=True) * 1.3, 0, 1)).astype(np.uint8)[
        ..., None
    ]


def _colour(count: int, seed: int = 0) -> np.ndarray:
    """32×32 colour images with structure (smooth fields plus edges), uint8 (N, 32, 32, 3)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((count, 32, 32, 3)), (0, 3, 3, 0))
    field = (field - field.min()) / (field.max() - field.min())
    field[:, 8:20, 10:22] = rng.random((count, 1, 1, 3))
    return np.rint(255 * field).astype(np.uint8)


IMAGES = {Suite.MNIST_C: _digits(4), Suite.CIFAR_C: _colour(4)}


@pytest.fixture(scope="module")
def frost_dir(tmp_path_factory):
    """A frost directory of five synthetic pictures with the reference names and sizes."""
    directory = tmp_path_factory.mktemp("frost")
    rng = np.random.default_rng(0)
    sizes = ((600, 900), (315, 560), (315, 560), (350, 527), (495, 660))
    for name, (height, width) in zip(("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"), sizes,
                                     strict=True):
        picture = ndimage.gaussian_filter(rng.random((height, width, 3)), (2, 2, 0)) * 255
        cv2.imwrite(str(directory / name), picture.astype(np.uint8))
    return directory


def pessimal_matrix_file(path, matrix, protocol=3):
    """The matrix pickled as the reference ships it: a bare numpy array, by Python 3.7's default protocol 3."""
    path.write_bytes(pickle.dumps(matrix, protocol=protocol))
    return path


@pytest.fixture(scope="module")
def pessimal_matrix(tmp_path_factory):
    return pessimal_matrix_file(tmp_path_factory.mktemp("pessimal") / "pessimal_noise_matrix", seeded_pessimal_matrix())


def seeded_pessimal_matrix() -> np.ndarray:
    """A seeded random 196×196 float32 matrix. Its positive entries correlate the 196 outputs, so the noise
    spreads evenly over the tile and a mid-grey image is never clipped."""
    return np.random.default_rng(0).uniform(0.5, 1.0, (196, 196)).astype(np.float32)


def _run(suite, name, images, severity, seed, frost_dir, pessimal_matrix=None):
    return corrupt(images, name, severity, np.random.default_rng(seed), suite=suite, frost_directory=frost_dir,
                   pessimal_matrix=pessimal_matrix)


# ------------------------------------------------------------------------------------------ contracts


def test_the_suites_have_the_specified_members():
    assert len(list_corruptions(Suite.CIFAR_C)) == 19
    assert list_corruptions(Suite.CIFAR_C) == list(CIFAR_C_PUBLISHED)
    assert len(list_corruptions(Suite.CIFAR_C, published_only=True)) == 15
    assert list_corruptions(Suite.MNIST_C, published_only=True) == list(MNIST_C_PUBLISHED)
    published = {name: get_corruption(name, Suite.MNIST_C).published_severity for name in MNIST_C_PUBLISHED}
    assert published == {
        "identity": None, "shot_noise": 5, "impulse_noise": 4, "glass_blur": 1, "motion_blur": 1, "shear": 2,
        "scale": 3, "rotate": 2, "brightness": 5, "translate": 3, "stripe": None, "fog": 5, "spatter": 4,
        "dotted_line": None, "zigzag": None, "canny_edges": None,
    }


def test_cifar_c_kinds_follow_the_benchmarks_four_groups():
    """The breakdown figures group CIFAR-10-C as Hendrycks & Dietterich do: brightness is weather, not digital."""
    kinds = {name: get_corruption(name, Suite.CIFAR_C).kind.value
             for name in list_corruptions(Suite.CIFAR_C, published_only=True)}
    assert kinds == {
        "gaussian_noise": "noise", "shot_noise": "noise", "impulse_noise": "noise", "defocus_blur": "blur",
        "glass_blur": "blur", "motion_blur": "blur", "zoom_blur": "blur", "snow": "weather", "frost": "weather",
        "fog": "weather", "brightness": "weather", "contrast": "digital", "elastic_transform": "digital",
        "pixelate": "digital", "jpeg_compression": "digital",
    }


def test_corruptions_without_a_severity_are_generated_once_and_really_ignore_it(pessimal_matrix):
    """Only corruptions whose output no severity changes are written at one severity; the others need all five."""
    no_severity = {name for name in list_corruptions(Suite.MNIST_C)
                   if get_corruption(name, Suite.MNIST_C).severities == (1,)}
    assert no_severity == {"identity", "stripe", "dotted_line", "zigzag", "canny_edges", "pessimal_noise", "line",
                           "inverse"}
    assert all(get_corruption(name, Suite.CIFAR_C).severities == (1, 2, 3, 4, 5)
               for name in list_corruptions(Suite.CIFAR_C))
    images = IMAGES[Suite.MNIST_C]
    for name in no_severity:
        mild, severe = (_run(Suite.MNIST_C, name, images, severity, 0, None, pessimal_matrix) for severity in (1, 5))
        assert np.array_equal(mild, severe), name


def test_a_batch_of_one_image_is_corrupted():
    """Only an empty batch skips the corruption (`test_an_empty_batch_gives_an_empty_batch`): a single image is
    as much a batch as any other."""
    one = IMAGES[Suite.MNIST_C][:1]
    assert np.array_equal(corrupt(one, "inverse", 1, np.random.default_rng(0), suite="mnist-c"), 255 - one)


@pytest.mark.parametrize(("dataset", "suite"), [("mnist", Suite.MNIST_C), ("fashion-mnist", Suite.MNIST_C),
                                                (DatasetName.FASHION_MNIST, Suite.MNIST_C),
                                                ("cifar10", Suite.CIFAR_C), ("cifar100", Suite.CIFAR_C)])
def test_each_dataset_gets_the_suite_of_its_geometry(dataset, suite):
    """Fashion-MNIST is 28×28 grey like MNIST, so it takes MNIST-C; a suite of another geometry would refuse it."""
    assert suite_for_dataset(dataset) is suite


def test_suite_names_are_read_as_users_type_them():
    """A suite typed by hand: case and surrounding spaces do not matter."""
    assert list_corruptions(" MNIST-C ") == list_corruptions(Suite.MNIST_C)
    assert get_corruption("fog", "Cifar-C") is get_corruption("fog", Suite.CIFAR_C)


@pytest.mark.parametrize(("suite", "name"), ALL, ids=[f"{suite.value}-{name}" for suite, name in ALL])
def test_every_severity_returns_uint8_of_the_same_shape_and_seeds_reproduce(suite, name, frost_dir, pessimal_matrix):
    images = IMAGES[suite]
    corruption = get_corruption(name, suite)
    for severity in range(1, 6):
        first = _run(suite, name, images, severity, 1, frost_dir, pessimal_matrix)
        assert first.dtype == np.uint8 and first.shape == images.shape
        again = _run(suite, name, images, severity, 1, frost_dir, pessimal_matrix)
        assert np.array_equal(first, again), "same seed, same output"
    other = _run(suite, name, images, 5, 2, frost_dir, pessimal_matrix)
    if corruption.random:
        assert not np.array_equal(first, other), "different seeds should differ for a random corruption"
    else:
        assert np.array_equal(first, other), "a deterministic corruption ignores the generator"
    assert not np.shares_memory(first, images)


def test_identity_leaves_images_unchanged():
    images = IMAGES[Suite.MNIST_C]
    for severity in range(1, 6):
        assert np.array_equal(_run(Suite.MNIST_C, "identity", images, severity, 0, None), images)


MONOTONE = [
    (Suite.CIFAR_C, name)
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur", "defocus_blur",
                 "zoom_blur", "contrast", "motion_blur")
] + [
    (Suite.MNIST_C, name)
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur", "zoom_blur",
                 "contrast", "brightness", "scale")
]


@pytest.mark.parametrize(("suite", "name"), MONOTONE, ids=[f"{s.value}-{n}" for s, n in MONOTONE])
def test_mean_change_grows_with_severity(suite, name):
    images = _digits(12, 1) if suite is Suite.MNIST_C else _colour(12, 1)
    changes = [
        np.abs(_run(suite, name, images, severity, 3, None).astype(int) - images).mean() for severity in range(1, 6)
    ]
    # non-decreasing, and strictly growing overall (CIFAR motion blur 3 and 4 differ only in a kernel tail
    # of weight e^-18, so they coincide)
    assert all(low <= high for low, high in zip(changes, changes[1:], strict=False)), changes
    assert sum(low < high for low, high in zip(changes, changes[1:], strict=False)) >= 3, changes


# ------------------------------------------------------------------------- independent values, small inputs


def test_cifar_contrast_matches_a_direct_computation():
    images = IMAGES[Suite.CIFAR_C]
    for severity, factor in enumerate((0.75, 0.5, 0.4, 0.3, 0.15), start=1):
        x = images / 255.0
        means = x.mean(axis=(1, 2), keepdims=True)  # per image and channel
        expected = (np.clip((x - means) * factor + means, 0, 1) * 255).astype(np.uint8)  # truncated
        assert np.array_equal(_run(Suite.CIFAR_C, "contrast", images, severity, 0, None), expected)


def test_cifar_brightness_matches_colorsys_hsv():
    images = IMAGES[Suite.CIFAR_C][:2]
    for severity, shift in ((1, 0.05), (5, 0.3)):
        expected = np.empty_like(images)
        for index in np.ndindex(images.shape[:3]):
            h, s, v = colorsys.rgb_to_hsv(*(images[index] / 255.0))
            rgb = colorsys.hsv_to_rgb(h, s, min(1.0, v + shift))
            expected[index] = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
        result = _run(Suite.CIFAR_C, "brightness", images, severity, 0, None)
        difference = np.abs(result.astype(int) - expected)
        assert difference.max() <= 1 and (difference == 0).mean() > 0.99  # float rounding before truncation


def test_mnist_brightness_is_a_clipped_shift_for_grey_images():
    images = IMAGES[Suite.MNIST_C]
    for severity, shift in enumerate((0.1, 0.2, 0.3, 0.4, 0.5), start=1):
        expected = np.rint(np.clip(images / 255 + shift, 0, 1) * 255)
        assert np.abs(_run(Suite.MNIST_C, "brightness", images, severity, 0, None) - expected).max() <= 1


def _pillow_box(side_in: int, side_out: int) -> np.ndarray:
    """Pillow's BOX resampling weights: equal weights on the input pixels whose centres fall in the box."""
    scale = side_in / side_out
    stretch = max(scale, 1.0)
    weights = np.zeros((side_out, side_in))
    for out in range(side_out):
        centre = (out + 0.5) * scale
        for pixel in range(side_in):
            weights[out, pixel] = -0.5 < (pixel + 0.5 - centre) / stretch <= 0.5
    return weights / weights.sum(axis=1, keepdims=True)


def _two_pass(images: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rows then columns, each pass rounded half up to 8 bits, as Pillow does."""
    across = np.floor(np.einsum("lk,njkc->njlc", weights, images) + 0.5)
    return np.floor(np.einsum("ij,njkc->nikc", weights, across) + 0.5)


def test_pixelate_is_block_means_for_a_whole_ratio():
    images = IMAGES[Suite.MNIST_C]  # severity 2: BOX 28 -> 14 -> 28: 2×2 means, then each repeated 2×2
    pairs = np.floor(images[..., 0].reshape(-1, 28, 14, 2).astype(float).mean(axis=3) + 0.5)
    blocks = np.floor(pairs.reshape(-1, 14, 2, 14).mean(axis=2) + 0.5)
    expected = np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2)[..., None]
    assert np.array_equal(_run(Suite.MNIST_C, "pixelate", images, 2, 0, None), expected.astype(np.uint8))


def test_cifar_pixelate_matches_box_resampling():
    images = IMAGES[Suite.CIFAR_C][:2]
    for severity, side in ((1, 30), (4, 24), (5, 20)):
        small = _two_pass(images.astype(float), _pillow_box(32, side))
        expected = _two_pass(small, _pillow_box(side, 32))
        result = _run(Suite.CIFAR_C, "pixelate", images, severity, 0, None)
        assert np.abs(result - expected).max() <= 1 and (result == expected).mean() > 0.99


def test_opencv_is_4_whose_warp_affine_rounds_positions_to_1_32_pixel():
    """elastic_transform matches the references only with OpenCV 4's warpAffine, which rounds sample positions
    to 1/32 pixel (spec §2.2); OpenCV 5 samples exactly, hence the pin opencv-python-headless<5."""
    assert cv2.__version__.split(".")[0] == "4", f"OpenCV {cv2.__version__} installed; pyproject.toml pins <5"
    ramp = np.tile(np.arange(32, dtype=np.float32), (32, 1))
    shifted = cv2.warpAffine(ramp, np.float32([[1, 0, 0.01], [0, 1, 0]]), (32, 32), borderMode=cv2.BORDER_REFLECT_101)
    assert np.array_equal(shifted, ramp), "a shift of 0.01 pixel rounds to 0/32"


@pytest.mark.parametrize(("suite", "quality"), [(Suite.MNIST_C, (25, 18, 15, 10, 7)), (Suite.CIFAR_C, (80, 65, 58, 50, 40))])
def test_jpeg_matches_opencv_libjpeg_at_the_specified_quality(suite, quality):
    images = IMAGES[suite]
    for severity, level in enumerate(quality, start=1):
        expected = []
        for image in images:
            bgr = image[..., 0] if suite is Suite.MNIST_C else image[..., ::-1]
            decoded = cv2.imdecode(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, level])[1], cv2.IMREAD_UNCHANGED)
            expected.append(decoded[..., None] if suite is Suite.MNIST_C else decoded[..., ::-1])
        result = _run(suite, "jpeg_compression", images, severity, 0, None)
        assert np.abs(result.astype(int) - np.stack(expected)).max() <= 1


def test_stripe_inverse_and_quantize_by_hand():
    images = IMAGES[Suite.MNIST_C]
    striped = _run(Suite.MNIST_C, "stripe", images, 1, 0, None)
    assert np.array_equal(striped[:, :, :7], 255 - images[:, :, :7])
    assert np.array_equal(striped[:, :, 7:21], images[:, :, 7:21])
    assert np.array_equal(striped[:, :, 21:], 255 - images[:, :, 21:])
    assert np.array_equal(_run(Suite.MNIST_C, "inverse", images, 1, 0, None), 255 - images)
    assert np.array_equal(_run(Suite.MNIST_C, "quantize", images, 5, 0, None), np.where(images >= 128, 255, 0))


def test_motion_blur_matches_a_pixel_by_pixel_smear():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(1, 7, 9, 2), dtype=np.uint8)
    radius, sigma = 3, 1.5
    for angle in (-135.0, -60.0, 0.0, 30.0, 45.0):
        steps = np.arange(2 * 3 + 1)
        weights = np.exp(-(steps**2) / (2 * sigma**2))
        weights /= weights.sum()
        theta = np.radians(angle)
        expected = np.empty_like(image)
        for r, c, k in np.ndindex(7, 9, 2):
            total = 0.0
            for step, weight in zip(steps, weights, strict=True):
                rr = min(max(r + int(np.ceil(step * np.sin(theta) - 0.5)), 0), 6)
                cc = min(max(c + int(np.ceil(step * np.cos(theta) - 0.5)), 0), 8)
                total += weight * 257.0 * image[0, rr, cc, k]
            expected[0, r, c, k] = int(np.floor(total + 0.5)) // 257
        assert np.array_equal(ops.motion_blur(image, radius, sigma, np.array([angle])), expected)


def test_cifar_glass_blur_gather_equals_the_reference_swap_loop():
    """The reference's sequential aliasing 'swap' on an H×W×3 array is a copy; check the gather against it."""
    images = IMAGES[Suite.CIFAR_C][:2]
    for severity in (2, 4):
        sigma, shift, iterations = cifar_blur.CIFAR_GLASS[severity - 1]
        result = _run(Suite.CIFAR_C, "glass_blur", images, severity, 7, None)
        rng = np.random.default_rng(7)  # replay the same draws, consumed in the same order
        x = (ops.gaussian(images / 255.0, sigma) * 255).astype(np.uint8)
        for _ in range(iterations):
            offsets = rng.integers(-shift, shift, size=(len(images), 30, 30, 2))
            for n in range(len(images)):
                image = x[n]
                for h in range(31, 1, -1):
                    for w in range(31, 1, -1):
                        dx, dy = offsets[n, h - 2, w - 2]
                        image[h, w], image[h + dy, w + dx] = image[h + dy, w + dx], image[h, w]  # numpy views
        expected = (np.clip(ops.gaussian(x / 255.0, sigma), 0, 1) * 255).astype(np.uint8)
        assert np.array_equal(result, expected)


def test_zoom_blur_operator_equals_scipy_clipped_zooms():
    values = IMAGES[Suite.CIFAR_C].astype(np.float64) / 255
    for factor in (1.0, 1.01, 1.07, 1.25, 1.75):
        matrix = ops.clipped_zoom_matrix(32, factor)
        assert np.allclose(np.einsum("ij,njkc,lk->nilc", matrix, values, matrix), ops.clipped_zoom(values, factor))
    assert [len(factors) for factors in cifar_blur.CIFAR_ZOOMS] == [7, 12, 16, 21, 26]


@pytest.mark.parametrize(("images", "zooms"), [(_digits(24), mnist_c.ZOOMS), (_colour(24), cifar_blur.CIFAR_ZOOMS)],
                         ids=["mnist-c", "cifar-c"])
def test_zoom_blur_is_the_exact_mean_of_zooms_whatever_the_batch(images, zooms):
    flat = np.arange(256, dtype=np.uint8)[:, None, None, None] * np.ones((1, *images.shape[1:]), np.uint8)
    for factors in zooms:
        whole = cifar_blur.zoom_blurred(images, factors)
        alone = np.concatenate([cifar_blur.zoom_blurred(images[index : index + 1], factors)
                                for index in range(len(images))])
        assert np.array_equal(whole, alone)  # bit for bit: no summation order depends on the batch
        assert np.array_equal(whole[::-1], cifar_blur.zoom_blurred(images[::-1], factors))
        values = images / 255.0
        mean = (values + sum(ops.clipped_zoom(values, factor) for factor in factors)) / (len(factors) + 1)
        assert np.abs(whole - mean).max() < 1e-9  # the spec's formula, without float32 rounding
        assert np.array_equal(ops.truncate_up(cifar_blur.zoom_blurred(flat, factors)), flat)


def test_disk_kernel_has_the_specified_grid_blur_and_sums():
    """Spec §1.3: a 17×17 grid blurred 3×3 up to r = 8 (sum 1.013, not renormalised), 21×21 blurred 5×5 for r = 10
    (sum 1.011), and for r < 1 just a 3×3 Gaussian of the alias σ at the centre."""
    assert ops.disk_kernel(8, 0.5).shape == (17, 17) and ops.disk_kernel(10, 0.5).shape == (21, 21)
    assert ops.disk_kernel(8, 0.5).sum() == pytest.approx(1.013, abs=5e-4)
    assert ops.disk_kernel(10, 0.5).sum() == pytest.approx(1.011, abs=5e-4)
    disk = (np.add.outer(np.arange(-8, 9) ** 2, np.arange(-8, 9) ** 2) <= 64).astype(np.float32)
    expected = cv2.GaussianBlur(disk / disk.sum(), (3, 3), 0.5)  # reflect-101 border, as OpenCV's default
    np.testing.assert_allclose(ops.disk_kernel(8, 0.5), expected, rtol=0, atol=1e-7)
    gaussian = cv2.getGaussianKernel(3, 0.4).astype(np.float32)
    point = np.zeros((17, 17), np.float32)
    point[7:10, 7:10] = gaussian @ gaussian.T
    np.testing.assert_allclose(ops.disk_kernel(0.3, 0.4), point, rtol=0, atol=1e-7)


def test_warps_leave_what_comes_from_outside_black_even_on_images_without_black():
    """Samples wholly outside the image are 0 (scikit-image's constant mode), not clipped up to the image's own
    minimum: a shrunk uniform grey image (e.g. a Fashion-MNIST item filling the frame) gets a black border."""
    grey = np.full((1, 28, 28, 1), 128, np.uint8)
    shrunk = _run(Suite.MNIST_C, "scale", grey, 5, 0, None)[0, ..., 0]  # content halved about (13.5, 13.5)
    assert (shrunk[:5] == 0).all() and (shrunk[:, -5:] == 0).all()
    assert (shrunk[10:18, 10:18] == 128).all()


def test_warps_follow_the_inverse_map():
    images = IMAGES[Suite.MNIST_C]
    translated = _run(Suite.MNIST_C, "translate", images, 1, 0, None)  # 1 px, signs drawn per image
    rolled = [
        np.roll(np.roll(images[n, ..., 0], dy, axis=0), dx, axis=1)
        for n in range(len(images))
        for dy in (-1, 1)
        for dx in (-1, 1)
    ]
    for n in range(len(images)):  # the content moves by one pixel in each direction (edges aside)
        assert any(np.array_equal(translated[n, 2:-2, 2:-2, 0], candidate[2:-2, 2:-2]) for candidate in rolled[4 * n : 4 * n + 4])
    centre = np.zeros((1, 28, 28, 1), dtype=np.uint8)
    centre[0, 13:15, 13:15] = 255
    for name in ("scale", "rotate", "shear"):  # these keep (13.5, 13.5) fixed
        assert _run(Suite.MNIST_C, name, centre, 3, 0, None)[0, 13:15, 13:15].min() > 100


# --------------------------------------------------------------------------------------------- errors


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(CorruptionError, match="valid names: gaussian_noise, shot_noise"):
        corrupt(IMAGES[Suite.CIFAR_C], "gausian_noise", 1, np.random.default_rng(0), suite="cifar-c")
    with pytest.raises(CorruptionError, match="valid suites: mnist-c, cifar-c"):
        list_corruptions("imagenet-c")


@pytest.mark.parametrize("severity", [0, 6, 2.0, "3", True])
def test_severity_outside_one_to_five_is_refused(severity):
    with pytest.raises(CorruptionError, match="severity must be an integer from 1 to 5"):
        corrupt(IMAGES[Suite.CIFAR_C], "contrast", severity, np.random.default_rng(0), suite="cifar-c")


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (IMAGES[Suite.CIFAR_C] / 255.0, "uint8 in 0..255, got dtype float64 \\(values look like \\[0, 1\\]"),
        (IMAGES[Suite.CIFAR_C].astype(np.int64), "got dtype int64"),
        (IMAGES[Suite.CIFAR_C].transpose(0, 3, 1, 2), "channels-first"),
        (IMAGES[Suite.CIFAR_C][0], "shape \\(N, 32, 32, 3\\)"),
        (IMAGES[Suite.MNIST_C], "got shape \\(4, 28, 28, 1\\)"),
        (IMAGES[Suite.CIFAR_C][..., :1], "got shape \\(4, 32, 32, 1\\)"),
        ([[1, 2]], "numpy array"),
    ],
)
def test_wrong_dtype_range_or_shape_is_refused(images, message):
    with pytest.raises(CorruptionError, match=message):
        corrupt(images, "contrast", 1, np.random.default_rng(0), suite="cifar-c")


@pytest.mark.parametrize("rng", [np.random.RandomState(0), 0, None])
def test_a_generator_is_required(rng):
    """Legacy RandomState, a seed or None would draw differently (or not at all) from the documented streams."""
    with pytest.raises(CorruptionError, match="rng must be a numpy.random.Generator"):
        corrupt(IMAGES[Suite.CIFAR_C], "gaussian_noise", 1, rng, suite="cifar-c")


@pytest.mark.parametrize(("suite", "name"), ALL, ids=[f"{suite.value}-{name}" for suite, name in ALL])
def test_an_empty_batch_gives_an_empty_batch(suite, name):
    """A chunk of zero images (e.g. a sample smaller than the chunking) must not fail inside a corruption."""
    empty = np.zeros((0, *suite.image_shape), np.uint8)
    result = corrupt(empty, name, 3, np.random.default_rng(0), suite=suite)
    assert result.dtype == np.uint8 and result.shape == empty.shape


def test_a_dataset_without_a_suite_is_refused():
    with pytest.raises(CorruptionError, match="no corruption suite for dataset 'svhn'"):
        suite_for_dataset("svhn")


def test_frost_without_usable_pictures(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARSECAP_FROST", raising=False)
    images = IMAGES[Suite.CIFAR_C]
    with pytest.raises(FrostUnavailableError, match=r"--frost-dir DIR to sparsecap corrupt, or set \$SPARSECAP_FROST="
                                                    r"DIR \(also read by sparsecap run\)"):
        corrupt(images, "frost", 1, np.random.default_rng(0), suite="cifar-c")
    with pytest.raises(FrostUnavailableError, match="holds no pictures"):
        corrupt(images, "frost", 1, np.random.default_rng(0), suite="cifar-c", frost_directory=tmp_path)
    (tmp_path / "frost1.png").write_bytes(b"not a png")
    with pytest.raises(FrostUnavailableError, match="cannot be read"):
        corrupt(images, "frost", 1, np.random.default_rng(0), suite="cifar-c", frost_directory=tmp_path)
    small = tmp_path / "small"
    small.mkdir()
    cv2.imwrite(str(small / "tiny.png"), np.zeros((100, 100, 3), np.uint8))  # 20×20 after the 0.2 resize
    with pytest.raises(FrostUnavailableError, match="too small"):
        corrupt(images, "frost", 1, np.random.default_rng(0), suite="cifar-c", frost_directory=small)
    with pytest.raises(FrostUnavailableError, match="does not exist"):
        corrupt(images, "frost", 1, np.random.default_rng(0), suite="cifar-c", frost_directory=tmp_path / "nowhere")
    exact = tmp_path / "exact"
    exact.mkdir()
    cv2.imwrite(str(exact / "exact.png"), np.zeros((28, 40), np.uint8))  # MNIST crops 28×28 at offsets 0..H-29
    with pytest.raises(FrostUnavailableError, match="too small"):
        corrupt(IMAGES[Suite.MNIST_C], "frost", 1, np.random.default_rng(0), suite="mnist-c", frost_directory=exact)


def test_a_partial_set_of_frost_pictures_is_used_whole_but_for_the_unused_frost6(tmp_path, frost_dir):
    partial = shutil.copytree(frost_dir, tmp_path / "partial")
    (partial / "frost5.jpg").rename(partial / "frost6.jpg")
    shutil.copy(partial / "frost1.png", partial / "my_frost.png")
    assert [path.name for path in frost_pictures.picture_files(partial)] == [
        "frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "my_frost.png"]


def test_frost_pictures_replaced_in_place_are_decoded_afresh(tmp_path, frost_dir):
    """The pixels used must match `pictures_digest`, which labels manifests and the protocol's cache."""
    replaced = shutil.copytree(frost_dir, tmp_path / "replaced")
    images = IMAGES[Suite.CIFAR_C]
    before = _run(Suite.CIFAR_C, "frost", images, 3, 0, replaced)
    old_digest = frost_pictures.pictures_digest(replaced)
    for path in frost_pictures.picture_files(replaced):
        cv2.imwrite(str(path), 255 - cv2.imread(str(path)))
    fresh = shutil.copytree(replaced, tmp_path / "fresh")  # the new pictures where none was loaded before
    assert frost_pictures.pictures_digest(replaced) == frost_pictures.pictures_digest(fresh) != old_digest
    after = _run(Suite.CIFAR_C, "frost", images, 3, 0, replaced)
    assert not np.array_equal(after, before)
    assert np.array_equal(after, _run(Suite.CIFAR_C, "frost", images, 3, 0, fresh))


def test_pessimal_noise_adds_one_tile_of_norm_2_6575_repeated_2x2(pessimal_matrix):
    grey = np.full((5, 28, 28, 1), 128, np.uint8)
    corrupted = _run(Suite.MNIST_C, "pessimal_noise", grey, 1, 7, None, pessimal_matrix)
    assert corrupted.dtype == np.uint8 and corrupted.shape == grey.shape
    assert 0 < corrupted.min() and corrupted.max() < 255, "mid-grey is not clipped: the noise is seen whole"
    noise = (corrupted[..., 0].astype(np.float64) - 128) / 255
    tiles = noise.reshape(5, 2, 14, 2, 14)
    for row, column in ((0, 1), (1, 0), (1, 1)):
        assert np.array_equal(tiles[:, row, :, column], tiles[:, 0, :, 0])
    norms = np.linalg.norm(tiles[:, 0, :, 0].reshape(5, -1), axis=1)
    assert norms == pytest.approx(np.full(5, 10.63 / 4), abs=0.01)  # up to the rounding to uint8
    assert not np.array_equal(tiles[0, 0, :, 0], tiles[1, 0, :, 0]), "a fresh draw for every image"
    # the row vector of 196 standard normals times the matrix (not the matrix times it), rescaled and tiled
    draws = np.random.default_rng(7).standard_normal((5, 196)) @ load_matrix(pessimal_matrix)
    tile = (draws * (10.63 / 4) / np.linalg.norm(draws, axis=1, keepdims=True)).reshape(5, 14, 14)
    assert np.array_equal(corrupted[..., 0], np.rint((128 / 255 + np.tile(tile, (1, 2, 2))) * 255))


def test_pessimal_noise_ignores_the_severity_and_is_not_in_the_published_set(pessimal_matrix):
    images = IMAGES[Suite.MNIST_C]
    first = _run(Suite.MNIST_C, "pessimal_noise", images, 1, 3, None, pessimal_matrix)
    for severity in range(2, 6):
        assert np.array_equal(_run(Suite.MNIST_C, "pessimal_noise", images, severity, 3, None, pessimal_matrix), first)
    assert not np.array_equal(_run(Suite.MNIST_C, "pessimal_noise", images, 1, 4, None, pessimal_matrix), first)
    corruption = get_corruption("pessimal_noise", Suite.MNIST_C)
    assert corruption.severities == (1,) and not corruption.published and corruption.published_severity is None
    assert "pessimal_noise" not in list_corruptions(Suite.MNIST_C, published_only=True)
    assert "pessimal_noise" not in ProtocolConfig.default(Suite.MNIST_C).corruptions


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_the_pessimal_matrix_file_loads_from_any_pickle_protocol(tmp_path, protocol):
    matrix = np.random.default_rng(1).standard_normal((196, 196)).astype(np.float32)
    loaded = load_matrix(pessimal_matrix_file(tmp_path / "pessimal_noise_matrix", matrix, protocol))
    assert loaded.dtype == np.float32 and np.array_equal(loaded, matrix) and not loaded.flags.writeable


def test_pessimal_matrix_missing_or_malformed(tmp_path, monkeypatch, pessimal_matrix):
    monkeypatch.delenv("SPARSECAP_PESSIMAL_MATRIX", raising=False)
    images = IMAGES[Suite.MNIST_C]

    def pessimal(path=None):
        return corrupt(images, "pessimal_noise", 1, np.random.default_rng(0), suite="mnist-c", pessimal_matrix=path)

    with pytest.raises(PessimalMatrixUnavailableError,
                       match=r"--pessimal-matrix FILE to sparsecap corrupt, or set \$SPARSECAP_PESSIMAL_MATRIX=FILE \(also"):
        pessimal()
    with pytest.raises(PessimalMatrixUnavailableError, match="does not exist or is not a file"):
        pessimal(tmp_path / "nowhere")
    wrong = tmp_path / "wrong"
    pessimal_matrix_file(wrong, np.ones((14, 14), np.float32))
    with pytest.raises(PessimalMatrixUnavailableError,
                       match="expected a 196×196 float32 numpy array.*found dtype float32, shape \\(14, 14\\)"):
        pessimal(wrong)
    pessimal_matrix_file(wrong, np.ones((196, 196), np.int64))
    with pytest.raises(PessimalMatrixUnavailableError, match="found dtype int64, shape \\(196, 196\\)"):
        pessimal(wrong)
    pessimal_matrix_file(wrong, [[1.0] * 196] * 196)
    with pytest.raises(PessimalMatrixUnavailableError, match="found a pickled list"):
        pessimal(wrong)
    pessimal_matrix_file(wrong, np.full((196, 196), np.nan, np.float32))
    with pytest.raises(PessimalMatrixUnavailableError, match="must be finite and not all zero"):
        pessimal(wrong)
    wrong.write_bytes(pessimal_matrix.read_bytes()[:1000])
    with pytest.raises(PessimalMatrixUnavailableError, match="truncated or corrupt pickle"):
        pessimal(wrong)
    marker = tmp_path / "pwned"
    wrong.write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())  # protocol 0: os.system("touch ...")
    with pytest.raises(PessimalMatrixUnavailableError, match="refers to .*system; the pessimal-noise matrix may only"):
        pessimal(wrong)
    assert not marker.exists()
    monkeypatch.setenv("SPARSECAP_PESSIMAL_MATRIX", str(pessimal_matrix))
    assert np.array_equal(pessimal(), pessimal(pessimal_matrix))


# ----------------------------------------------------------------------------- layouts and the protocol


def _dataset(name: DatasetName, images_nhwc: np.ndarray, labels: np.ndarray) -> ImageDataset:
    chw = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
    tensor_labels = torch.from_numpy(labels.astype(np.int64))
    return ImageDataset(dataset_info(name), chw, tensor_labels, chw, tensor_labels, "test images")


def test_written_layouts_round_trip_through_the_readers(tmp_path, frost_dir):
    labels = np.arange(6) % 10
    mnist = _dataset(DatasetName.MNIST, _digits(6), labels)
    summary = write_corrupted_dataset(mnist, tmp_path / "mnist_c", corruptions=["identity", "shot_noise", "stripe"],
                                      seed=3, progress=ProgressStyle.NONE, include_train=True)
    assert summary.written == {"identity": [1], "shot_noise": [5], "stripe": [1]}
    assert check_complete(tmp_path / "mnist_c", CorruptedLayout.MNIST_C) == ["identity", "shot_noise", "stripe"]
    for split in ("test", "train"):
        identity = read_mnist_c(tmp_path / "mnist_c", "identity", split)
        assert np.array_equal(identity.images, _digits(6)) and np.array_equal(identity.labels, labels)
    shot = read_mnist_c(tmp_path / "mnist_c", "shot_noise")
    expected = corrupt(_digits(6), "shot_noise", 5, np.random.default_rng(
        np.random.SeedSequence([3, *_keys("mnist-c", "shot_noise"), 5, name_key("test"), 0])), suite="mnist-c")
    assert np.array_equal(shot.images, expected) and shot.labels.dtype == np.int64
    manifest = json.loads((tmp_path / "mnist_c" / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["spec_version"].startswith("corruptions.md@")
    assert set(manifest["sha256"]) >= {"shot_noise/test_images.npy", "shot_noise/test_labels.npy"}

    colour = _colour(5)
    cifar = _dataset(DatasetName.CIFAR10, colour, np.arange(5))
    write_corrupted_dataset(cifar, tmp_path / "CIFAR-10-C", corruptions=["contrast", "frost"],
                            frost_directory=frost_dir, progress=ProgressStyle.NONE)
    stacked = read_cifar_c(tmp_path / "CIFAR-10-C", "contrast")
    assert stacked.images.shape == (25, 32, 32, 3) and np.array_equal(stacked.labels, np.tile(np.arange(5), 5))
    assert stacked.severities == (1, 2, 3, 4, 5)
    for severity in range(1, 6):
        block = read_cifar_c(tmp_path / "CIFAR-10-C", "contrast", severity)
        assert np.array_equal(block.images, corrupt(colour, "contrast", severity, np.random.default_rng(0),
                                                    suite="cifar-c"))
    assert read_cifar_c(tmp_path / "CIFAR-10-C", "frost", 3).images.shape == (5, 32, 32, 3)
    found = load_corrupted("cifar10-c", "contrast", tmp_path, severity=2)  # found in a data root
    assert np.array_equal(found.images, stacked.images[5:10]) and found.severities == (2,)
    assert np.array_equal(load_corrupted("mnist-c", "stripe", tmp_path).images, read_mnist_c(
        tmp_path / "mnist_c", "stripe").images)


def test_a_rerun_into_one_directory_adds_corruptions_made_alike_and_refuses_others(tmp_path, monkeypatch):
    """The manifest describes every file of the directory: a rerun with the same settings adds its corruptions
    to it (and writes a repeated name once); one whose images or labels would differ (another seed or limit)
    is refused before it overwrites anything, and so are .npy files no manifest describes."""
    monkeypatch.delenv("SPARSECAP_FROST", raising=False)
    out = tmp_path / "mnist_c"
    mnist = _dataset(DatasetName.MNIST, _digits(6), np.arange(6))
    write_corrupted_dataset(mnist, out, corruptions=["fog"], seed=0, limit=5, progress=ProgressStyle.NONE)
    added = write_corrupted_dataset(mnist, out, corruptions=["shot_noise", "shot_noise"], seed=0, limit=5,
                                    progress=ProgressStyle.NONE)
    assert added.written == {"shot_noise": [5]}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["corruptions"] == {"fog": [5], "shot_noise": [5]}
    assert set(manifest["sha256"]) == {f"{name}/test_{part}.npy" for name in ("fog", "shot_noise")
                                       for part in ("images", "labels")}
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    for setting, message in [({"seed": 3}, "seed 0 \\(this run: 3\\)"), ({"limit": 6}, "limit 5 \\(this run: 6\\)")]:
        with pytest.raises(CorruptionError, match=f"other settings: {message}; .* nothing was written"):
            write_corrupted_dataset(mnist, out, corruptions=["fog"], progress=ProgressStyle.NONE,
                                    **{"seed": 0, "limit": 5, **setting})
    fashion = _dataset(DatasetName.FASHION_MNIST, _digits(6), np.arange(6))  # MNIST-C's layout, other images
    with pytest.raises(CorruptionError, match="other settings: dataset 'mnist' \\(this run: 'fashion-mnist'\\)"):
        write_corrupted_dataset(fashion, out, corruptions=["fog"], seed=0, limit=5, progress=ProgressStyle.NONE)
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    (out / "manifest.json").unlink()
    with pytest.raises(CorruptionError, match="holds .npy files that sparsecap corrupt did not write"):
        write_corrupted_dataset(mnist, out, corruptions=["fog"], seed=0, limit=5, progress=ProgressStyle.NONE)


@pytest.mark.parametrize("severity", [0, 9])
def test_a_severity_outside_1_to_5_is_refused_before_anything_is_written(tmp_path, severity):
    """0 too: not taken for "no severity given", which would write each corruption's published one."""
    mnist = _dataset(DatasetName.MNIST, _digits(6), np.arange(6))
    with pytest.raises(CorruptionError, match=f"severity {severity}: expected 1 to 5"):
        write_corrupted_dataset(mnist, tmp_path / "out", corruptions=["fog"], severity=severity,
                                progress=ProgressStyle.NONE)
    assert not (tmp_path / "out").exists()


def test_a_stopped_run_keeps_its_finished_corruptions_and_the_rerun_writes_only_the_rest(tmp_path, monkeypatch):
    """The manifest is written after each corruption: a rerun of the same command is taken, not refused, and
    keeps what is there (its files are what it would write again)."""
    monkeypatch.delenv("SPARSECAP_FROST", raising=False)
    out, written = tmp_path / "mnist_c", []
    mnist = _dataset(DatasetName.MNIST, _digits(6), np.arange(6))
    real = datasets_module._write_corruption

    def stopped_at_the_second(directory, name, *arguments):
        if name == "rotate":
            raise KeyboardInterrupt
        written.append(name)
        real(directory, name, *arguments)

    monkeypatch.setattr(datasets_module, "_write_corruption", stopped_at_the_second)
    names = ["shot_noise", "rotate"]
    with pytest.raises(KeyboardInterrupt):
        datasets_module.write_corrupted_dataset(mnist, out, corruptions=names, progress=ProgressStyle.NONE)
    assert json.loads((out / "manifest.json").read_text())["corruptions"] == {"shot_noise": [5]}
    shot = (out / "shot_noise" / "test_images.npy").read_bytes()
    monkeypatch.setattr(datasets_module, "_write_corruption", real)
    rerun = datasets_module.write_corrupted_dataset(mnist, out, corruptions=names, progress=ProgressStyle.NONE)
    assert rerun.kept == {"shot_noise": [5]} and rerun.written == {"rotate": [2]}
    assert written == ["shot_noise"] and (out / "shot_noise" / "test_images.npy").read_bytes() == shot
    assert check_complete(out, CorruptedLayout.MNIST_C) == ["rotate", "shot_noise"]
    (out / "rotate" / "test_images.npy").unlink()  # a corruption whose files are gone is written again
    assert datasets_module.write_corrupted_dataset(mnist, out, corruptions=["rotate"],
                                                   progress=ProgressStyle.NONE).written == {"rotate": [2]}


def _keys(*texts):
    return [name_key(text) for text in texts]


def test_frost_is_skipped_from_the_default_set_without_pictures_and_refused_when_named(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARSECAP_FROST", raising=False)
    cifar = _dataset(DatasetName.CIFAR10, _colour(1), np.arange(1))
    summary = write_corrupted_dataset(cifar, tmp_path / "default", progress=ProgressStyle.NONE)
    assert "fog" in summary.written and "frost" not in summary.written and "--frost-dir" in summary.skipped["frost"]
    assert json.loads((tmp_path / "default" / "manifest.json").read_text())["skipped"]["frost"].startswith("frost needs")
    with pytest.raises(CorruptionError, match="--frost-dir.*; nothing was written"):
        write_corrupted_dataset(cifar, tmp_path / "named", corruptions=["fog", "frost"], progress=ProgressStyle.NONE)
    assert not (tmp_path / "named").exists()


def test_pessimal_noise_is_refused_without_its_matrix_when_writing_and_skipped_in_the_protocol(
        tmp_path, monkeypatch, pessimal_matrix):
    monkeypatch.delenv("SPARSECAP_PESSIMAL_MATRIX", raising=False)
    mnist = _dataset(DatasetName.MNIST, _digits(3), np.arange(3))
    names = ["pessimal_noise", "identity"]
    with pytest.raises(CorruptionError, match="--pessimal-matrix.*; nothing was written"):
        write_corrupted_dataset(mnist, tmp_path / "without", corruptions=names, progress=ProgressStyle.NONE)
    assert not (tmp_path / "without").exists()
    summary = write_corrupted_dataset(mnist, tmp_path / "with", corruptions=names, pessimal_matrix=pessimal_matrix,
                                      progress=ProgressStyle.NONE)
    assert summary.written == {"pessimal_noise": [1], "identity": [1]} and summary.skipped == {}
    manifest = json.loads((tmp_path / "with" / "manifest.json").read_text())
    assert manifest["pessimal_matrix"] == hashlib.sha256(pessimal_matrix.read_bytes()).hexdigest()
    assert read_mnist_c(tmp_path / "with", "pessimal_noise").images.shape == (3, 28, 28, 1)

    config = ProtocolConfig(Suite.MNIST_C, corruptions=tuple(names), sample_size=3, draws=2)
    without = prepare_inputs(tmp_path / "cache", "mnist", _digits(3), config)
    assert [entry.corruption for entry in without] == ["identity"] and "pessimal_noise" in without.skipped
    with_matrix = prepare_inputs(tmp_path / "cache", "mnist", _digits(3), config, pessimal_matrix=pessimal_matrix)
    assert with_matrix.directory != without.directory and with_matrix.skipped == {}
    entry = next(entry for entry in with_matrix if entry.corruption == "pessimal_noise")
    assert entry.severity == 1 and entry.images.shape == (2, 3, 28, 28, 1)


def test_readers_refuse_missing_and_mismatched_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="holds no mnist-c corruptions"):
        check_complete(tmp_path, CorruptedLayout.MNIST_C)
    folder = tmp_path / "fog"
    folder.mkdir()
    np.save(folder / "test_images.npy", np.zeros((4, 28, 28, 1), np.uint8))
    with pytest.raises(DatasetNotFoundError, match="test_labels.npy is missing"):
        read_mnist_c(tmp_path, "fog")
    (folder / "test_labels.npy").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match="test_labels.npy is not a readable .npy array"):
        read_mnist_c(tmp_path, "fog")
    (folder / "test_labels.npy").write_bytes(b"0,1,2,3\n")  # a text file under the name
    with pytest.raises(DatasetFormatError) as error:
        read_mnist_c(tmp_path, "fog")
    assert str(error.value).endswith("test_labels.npy is not a readable .npy array (it does not start as a .npy "
                                     "file does)")  # not numpy's advice to allow pickles
    np.save(folder / "test_labels.npy", np.zeros(3, np.uint8))
    with pytest.raises(DatasetFormatError, match="expected 4 labels"):
        read_mnist_c(tmp_path, "fog")
    np.save(folder / "test_labels.npy", np.zeros((4, 1), np.uint8))  # the right count, in a column
    with pytest.raises(DatasetFormatError, match="expected 4 labels .* got shape \\(4, 1\\)"):
        check_complete(tmp_path, CorruptedLayout.MNIST_C)
    np.save(folder / "test_labels.npy", np.zeros(4, np.uint8))
    np.save(folder / "test_images.npy", np.zeros((4, 28, 28, 1), np.float32))
    with pytest.raises(DatasetFormatError, match="expected uint8 images .*, got float32 \\(4, 28, 28, 1\\)"):
        read_mnist_c(tmp_path, "fog")
    np.save(folder / "test_images.npy", np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DatasetFormatError, match="expected uint8 images of shape \\(N, 28, 28, 1\\)"):
        read_mnist_c(tmp_path, "fog")
    with pytest.raises(DatasetNotFoundError, match="corruptions there: "):
        read_mnist_c(tmp_path, "zigzag")
    np.save(tmp_path / "snow.npy", np.zeros((12, 32, 32, 3), np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros(12, np.uint8))
    with pytest.raises(DatasetFormatError, match="not five equal blocks"):
        read_cifar_c(tmp_path, "snow")
    np.save(tmp_path / "snow.npy", np.zeros((10, 32, 32, 3), np.uint8))
    np.save(tmp_path / "labels.npy", np.arange(10, dtype=np.uint8))
    with pytest.raises(DatasetFormatError, match="do not repeat the same labels"):
        read_cifar_c(tmp_path, "snow")


def test_cifar_c_labels_must_repeat_in_every_block_and_severities_are_one_to_five(tmp_path):
    """The last severity block's labels are checked too, and severity 0 is no block (not an empty one)."""
    np.save(tmp_path / "snow.npy", np.zeros((10, 32, 32, 3), np.uint8))
    np.save(tmp_path / "labels.npy", np.array([4, 7] * 4 + [7, 4], np.uint8))
    with pytest.raises(DatasetFormatError, match="do not repeat the same labels"):
        read_cifar_c(tmp_path, "snow")
    np.save(tmp_path / "labels.npy", np.array([4, 7] * 5, np.uint8))
    for severity in (0, 6):
        with pytest.raises(DatasetFormatError, match=f"severity must be 1-5, got {severity}"):
            read_cifar_c(tmp_path, "snow", severity)


def test_cifar100_c_is_read_from_its_own_folder_not_cifar10_cs(tmp_path):
    """Both published folders may sit in one data root: CIFAR-100 models must meet CIFAR-100-C's images."""
    for folder, fill, count in (("CIFAR-10-C", 10, 5), ("CIFAR-100-C", 100, 10)):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "fog.npy", np.full((count, 32, 32, 3), fill, np.uint8))
        np.save(tmp_path / folder / "labels.npy", np.zeros(count, np.uint8))
    assert CorruptedLayout.CIFAR100_C.folder == "CIFAR-100-C" and CorruptedLayout.MNIST_C.folder == "mnist_c"
    found = load_corrupted("cifar100-c", "fog", tmp_path, severity=1)
    assert found.images.shape == (2, 32, 32, 3) and int(found.images.max()) == 100
    assert int(load_corrupted("cifar10-c", "fog", tmp_path).images.max()) == 10


def test_readers_refuse_a_file_of_zero_images_naming_it(tmp_path):
    np.save(tmp_path / "snow.npy", np.zeros((0, 32, 32, 3), np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros(0, np.uint8))
    message = re.escape(f"{tmp_path / 'snow.npy'}: holds 0 images")
    with pytest.raises(DatasetFormatError, match=message):
        read_cifar_c(tmp_path, "snow")
    with pytest.raises(DatasetFormatError, match=message):
        check_complete(tmp_path, CorruptedLayout.CIFAR10_C)
    images, labels = tmp_path / "fog" / "test_images.npy", tmp_path / "fog" / "test_labels.npy"
    images.parent.mkdir()
    np.save(images, np.zeros((0, 28, 28, 1), np.uint8))
    np.save(labels, np.zeros(0, np.uint8))
    with pytest.raises(DatasetFormatError, match=re.escape(f"{images}: holds 0 images")):
        read_mnist_c(tmp_path, "fog")


def test_the_protocol_sample_is_the_same_for_every_model_and_cached_once(tmp_path):
    images = to_channels_last(_digits(30).transpose(0, 3, 1, 2))
    config = ProtocolConfig.default(Suite.MNIST_C, sample_size=12, draws=2, seed=5)
    assert [name for name, _, _ in config.plan()] == list(MNIST_C_PUBLISHED)
    assert dict((name, severity) for name, severity, _ in config.plan())["fog"] == 5
    first = prepare_inputs(tmp_path, "mnist", images, config)
    # another model (another trial, another process) gets the cached inputs: the same indices and pixels
    cached = sorted(path.name for path in first.directory.iterdir())
    second = prepare_inputs(tmp_path, "mnist", images, config)
    assert second.directory == first.directory and sorted(p.name for p in second.directory.iterdir()) == cached
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.images, b.images)
        assert len(a.indices) == 12 and len(set(a.indices.tolist())) == 12
        assert a.images.shape == ((2 if get_corruption(a.corruption, Suite.MNIST_C).random else 1), 12, 28, 28, 1)
    shot = next(entry for entry in first if entry.corruption == "shot_noise")
    assert not np.array_equal(shot.images[0], shot.images[1]), "draws are independent"
    assert np.array_equal(shot.indices, sample_indices(30, 12, 5, "shot_noise", 5))
    other_seed = prepare_inputs(tmp_path, "mnist", images, ProtocolConfig.default(Suite.MNIST_C, sample_size=12,
                                                                                  draws=2, seed=6))
    assert other_seed.directory != first.directory
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([first.directory.name, other_seed.directory.name])



@pytest.mark.parametrize("damage", ["truncated array", "array header damaged", "manifest not JSON",
                                    "manifest without entries", "manifest not an object"])
def test_a_damaged_cache_is_generated_again_with_the_same_inputs(tmp_path, capsys, damage):
    pixels = _digits(30).transpose(0, 3, 1, 2)
    config = ProtocolConfig.default(Suite.MNIST_C, sample_size=12, draws=2, seed=5)
    first = prepare_inputs(tmp_path, "mnist", pixels, config)
    expected = [np.array(entry.images) for entry in first]
    if damage == "truncated array":
        path = first.directory / "rotate-s2.npy"
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "array header damaged":
        path = first.directory / "rotate-s2-indices.npy"
        path.write_bytes(b"\x00" * 16 + path.read_bytes()[16:])
    else:
        content = {"manifest not JSON": "{not json", "manifest without entries": "{}", "manifest not an object": "[]"}
        (first.directory / "manifest.json").write_text(content[damage])
    again = prepare_inputs(tmp_path, "mnist", pixels, config)
    err = capsys.readouterr().err
    assert f"the cached corrupted inputs in {first.directory} are damaged" in err
    assert "allow_pickle" not in err  # numpy's advice for a damaged header: never for a cache
    assert again.directory == first.directory
    assert all(np.array_equal(entry.images, images) for entry, images in zip(again, expected, strict=True))


def test_cached_inputs_are_found_from_a_device_tensor_whose_pixels_this_process_cannot_read(tmp_path):
    """A trial on a GPU passes its test set as a CUDA tensor, which has no `.numpy()`: once the study has
    generated the inputs, only the count is read (here a tensor on the `meta` device, which has no pixels)."""
    pixels = _digits(30).transpose(0, 3, 1, 2)
    config = ProtocolConfig.default(Suite.MNIST_C, sample_size=12, draws=2, seed=5)
    generated = prepare_inputs(tmp_path, "mnist", torch.from_numpy(pixels), config)
    unreadable = torch.empty(pixels.shape, dtype=torch.uint8, device="meta")
    with pytest.raises(NotImplementedError):
        unreadable.cpu()
    found = prepare_inputs(tmp_path, "mnist", unreadable, config)
    assert found.directory == generated.directory
    assert all(np.array_equal(a.images, b.images) for a, b in zip(generated, found, strict=True))


# ------------------------------------------------------------------------------------------- the study


def _write_idx_mnist(directory, train: int, test: int) -> None:
    directory.mkdir(parents=True)
    for split, count, seed in (("train", train, 0), ("t10k", test, 1)):
        images = _digits(count, seed)[..., 0]
        labels = (np.arange(count) % 10).astype(np.uint8)
        images[np.arange(count), labels * 2 + 4, 2:26] = 255  # a class-dependent bar: learnable in one epoch
        with gzip.open(directory / f"{split}-images-idx3-ubyte.gz", "wb") as file:
            file.write(struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes())
        with gzip.open(directory / f"{split}-labels-idx1-ubyte.gz", "wb") as file:
            file.write(struct.pack(">II", 2049, count) + labels.tobytes())


@pytest.mark.slow
def test_the_corruptions_preset_runs_from_the_cli_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPARSECAP_DATA", raising=False)
    _write_idx_mnist(tmp_path / "data" / "mnist", train=300, test=90)
    generated = []
    original = protocol_module.corruption_rng
    monkeypatch.setattr(protocol_module, "corruption_rng", lambda *args: generated.append(args) or original(*args))
    study = tmp_path / "study"
    command = ["run", "quick-corruptions", "--out", str(study), "--data-root", str(tmp_path / "data"), "--no-progress",
               "--set", "widths=[16, 32]", "--set", "train_examples=300", "--set", "training.max_epochs=1", "--set", "weight_noise.draws=1",
               "--set", "corruptions.sample_size=40", "--set", "corruptions.draws=2"]
    assert main(command) == 0, capsys.readouterr().err

    plan = ProtocolConfig.default(Suite.MNIST_C, sample_size=40, draws=2).plan()
    assert len(generated) == sum(draws for _, _, draws in plan)  # generated once, for both models
    assert [path.name for path in (study / "corruptions").iterdir()] == [
        next((study / "corruptions").iterdir()).name  # one cache entry: mnist, seed 0
    ]
    rows = StudyDatabase(study).rows("corruption")
    by_trial: dict[str, set] = {}
    for row in rows:
        by_trial.setdefault(row["trial_id"], set()).add((row["corruption"], row["severity"], row["draw"]))
        assert 0.0 <= row["accuracy"] <= 1.0
    assert len(by_trial) == 2
    assert all(keys == {(name, severity, draw) for name, severity, draws in plan for draw in range(draws)}
               for keys in by_trial.values())
    page = (study / "report" / "index.html").read_text()
    assert 'id="corrupted_accuracy"' in page and 'id="corruption_breakdown"' in page
    assert (study / "report" / "corruption_breakdown.png").stat().st_size > 10_000

    generated.clear()  # a resumed run finds everything done and regenerates nothing
    assert main(command) == 0
    assert generated == []


def test_a_study_says_once_what_its_default_set_skips_and_refuses_a_named_corruption_it_cannot_make(monkeypatch):
    monkeypatch.delenv("SPARSECAP_FROST", raising=False)
    monkeypatch.delenv("SPARSECAP_PESSIMAL_MATRIX", raising=False)
    cifar = ["datasets=[\"cifar10\"]", "architectures=[\"vgg\"]", "widths=[16]", "corruptions.enabled=true"]
    (line,) = skipped_corruptions(load_spec("quick", cifar))
    assert line.startswith("corruptions: frost skipped for cifar10: frost needs the frost pictures")
    assert line.endswith("set $SPARSECAP_FROST=DIR (also read by sparsecap run)")
    assert skipped_corruptions(load_spec("quick-corruptions")) == []  # MNIST-C's set needs no file
    named = load_spec("quick-corruptions", ["corruptions.corruptions=[\"identity\", \"pessimal_noise\"]"])
    with pytest.raises(CorruptionError, match=r"\[corruptions\] on mnist: pessimal_noise needs .*; nothing was run"):
        skipped_corruptions(named)


def test_corrupted_accuracy_and_loss_use_each_entrys_own_labels_and_every_draw(tmp_path):
    """Each entry's images are scored against the labels of its sample indices (not the first n labels), once
    per draw, with accuracy and mean cross-entropy computed here from the model's logits on (N, C, H, W) pixels."""
    torch.manual_seed(0)
    model = create_model(ModelConfig("mlp", 16, 1), dataset_info("digits")).eval()
    rng = np.random.default_rng(0)
    test_labels = torch.from_numpy(rng.integers(0, 10, 50))
    entries = [CorruptedEntry("shot_noise", 1, np.array([3, 7, 20, 41, 49]),
                              rng.integers(0, 256, (2, 5, 8, 8, 1), dtype=np.uint8)),
               CorruptedEntry("identity", 1, np.array([0, 10, 11]),
                              rng.integers(0, 256, (1, 3, 8, 8, 1), dtype=np.uint8))]

    def logits(images: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return model(torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255))

    for entry in entries:  # the first draw of each entry is classified right: a label mix-up shows
        test_labels[entry.indices] = logits(entry.images[0]).argmax(1)
    inputs = EvaluationInputs(tmp_path, "digits", ProtocolConfig.default(Suite.MNIST_C), entries)
    results = corrupted_data_robustness(model, inputs, test_labels, 10)
    assert [(result.corruption, result.draw) for result in results] == [("shot_noise", 0), ("shot_noise", 1),
                                                                        ("identity", 0)]
    expected = [((logits(images).argmax(1) == test_labels[entry.indices]).double().mean().item(),
                 torch.nn.functional.cross_entropy(logits(images), test_labels[entry.indices]).item())
                for entry in entries for images in entry.images]
    assert expected[0][0] == expected[2][0] == 1.0 and expected[1][0] < 1.0
    for result, (accuracy, loss) in zip(results, expected, strict=True):
        assert result.accuracy == pytest.approx(accuracy, abs=1e-12) and result.loss == pytest.approx(loss, rel=1e-5)


def test_an_infinite_corrupted_data_loss_is_recorded_as_null(tmp_path):
    """Logits of ±3e38 overflow the cross-entropy of every image not of class 0: the row keeps its accuracy and
    stores the loss as NULL, not inf."""
    spec = load_spec("quick-corruptions", ['corruptions.corruptions=["identity"]', "corruptions.sample_size=6",
                                           "corruptions.draws=1"])
    images, labels = torch.from_numpy(_digits(6).transpose(0, 3, 1, 2).copy()), torch.arange(6)
    dataset = ImageDataset(dataset_info("mnist"), images, labels, images, labels, "test")
    torch.manual_seed(0)
    model = create_model(ModelConfig("mlp", 16, 1), dataset_info("mnist"))
    with torch.no_grad():
        model.network.output.bias.copy_(torch.tensor([3e38] + [-3e38] * 9))
    assert corruption_rows(spec, model, dataset, tmp_path, False) == [
        {"corruption": "identity", "severity": 1, "draw": 0, "accuracy": pytest.approx(1 / 6), "loss": None}]


# ------------------------------------------------------------------- the protocol's seeds, cache key, layouts


def test_protocol_entries_are_the_seeded_sample_corrupted_per_severity_and_draw(tmp_path):
    """Each CIFAR-C severity has its own file and sample, and its images are the spec's derivation from the
    protocol seed: a severity overwriting another's file, or a seed left out, would change what models see."""
    images = _colour(9)
    config = ProtocolConfig(Suite.CIFAR_C, corruptions=("shot_noise",), severities=(2, 4), sample_size=4, draws=2,
                            seed=7)
    inputs = prepare_inputs(tmp_path, "cifar10", images.transpose(0, 3, 1, 2), config)
    assert [(entry.corruption, entry.severity) for entry in inputs] == [("shot_noise", 2), ("shot_noise", 4)]
    for entry in inputs:
        rng = np.random.default_rng(np.random.SeedSequence([7, _SAMPLE_STREAM, name_key("shot_noise"), entry.severity]))
        assert np.array_equal(entry.indices, np.sort(rng.choice(9, size=4, replace=False)))
        for draw in range(2):
            expected = corrupt(images[entry.indices], "shot_noise", entry.severity, np.random.default_rng(
                np.random.SeedSequence([7, *_keys("cifar-c", "shot_noise"), entry.severity, draw])), suite="cifar-c")
            assert np.array_equal(entry.images[draw], expected)


def test_the_sample_depends_on_seed_corruption_and_severity_and_covers_a_small_test_set():
    """Sorted, without repeats; a new protocol seed draws a new sample; a test set no larger than the sample
    is used whole (indices 0..N-1, never past its end)."""
    base = sample_indices(10_000, 100, 0, "fog", 2)
    assert np.all(np.diff(base) > 0) and base.max() < 10_000
    for other in (sample_indices(10_000, 100, 1, "fog", 2), sample_indices(10_000, 100, 0, "fog", 4),
                  sample_indices(10_000, 100, 0, "snow", 2)):
        assert not np.array_equal(base, other)
    assert np.array_equal(sample_indices(5, 8, 0, "fog", 2), np.arange(5))
    assert np.array_equal(sample_indices(5, 5, 3, "fog", 2), np.arange(5))


def test_the_cache_key_changes_with_everything_the_inputs_depend_on(monkeypatch):
    """A cached input must not be reused after the test set, the frost pictures or the spec version change."""
    config = ProtocolConfig(Suite.CIFAR_C, corruptions=("frost", "fog"))
    key = protocol_module.cache_key("cifar10", config, 10_000, "a" * 64)
    assert key.startswith("cifar10-seed0-") and key == protocol_module.cache_key("cifar10", config, 10_000, "a" * 64)
    assert key != protocol_module.cache_key("cifar10", config, 9_999, "a" * 64)
    assert key != protocol_module.cache_key("cifar10", config, 10_000, "b" * 64)
    assert key != protocol_module.cache_key("cifar10", config, 10_000, None)
    more_draws = ProtocolConfig(Suite.CIFAR_C, ("frost", "fog"), draws=4)
    assert key != protocol_module.cache_key("cifar10", more_draws, 10_000, "a" * 64)
    monkeypatch.setattr(protocol_module, "SPEC_VERSION", protocol_module.SPEC_VERSION + "-next")
    assert key != protocol_module.cache_key("cifar10", config, 10_000, "a" * 64)


def test_new_frost_pictures_make_a_new_protocol_cache(tmp_path, frost_dir):
    """The same study with other frost pictures must not read the inputs made with the old ones."""
    config = ProtocolConfig(Suite.CIFAR_C, corruptions=("frost",), severities=(3,), sample_size=2, draws=1)
    first = prepare_inputs(tmp_path / "cache", "cifar10", _colour(3), config, frost_directory=frost_dir)
    inverted = shutil.copytree(frost_dir, tmp_path / "inverted")
    for path in frost_pictures.picture_files(inverted):
        cv2.imwrite(str(path), 255 - cv2.imread(str(path)))
    second = prepare_inputs(tmp_path / "cache", "cifar10", _colour(3), config, frost_directory=inverted)
    assert second.directory != first.directory
    assert not np.array_equal(first.entries[0].images, second.entries[0].images)


def test_written_mnist_c_uses_a_generator_per_chunk_a_chosen_severity_and_the_limit(tmp_path, monkeypatch):
    """Chunks past the first get their own noise (not a copy of chunk 0's), --severity is the one written, and
    --limit cuts images and labels alike."""
    count = CHUNK_SIZE + 3
    images, labels = np.full((count, 28, 28, 1), 128, np.uint8), np.arange(count) % 10
    mnist = _dataset(DatasetName.MNIST, images, labels)
    summary = write_corrupted_dataset(mnist, tmp_path / "all", corruptions=["shot_noise"], severity=2, seed=1,
                                      progress=ProgressStyle.NONE)
    assert summary.written == {"shot_noise": [2]}
    written = read_mnist_c(tmp_path / "all", "shot_noise").images
    for chunk, start in enumerate((0, CHUNK_SIZE)):
        part = images[start : start + CHUNK_SIZE]
        expected = corrupt(part, "shot_noise", 2, np.random.default_rng(np.random.SeedSequence(
            [1, *_keys("mnist-c", "shot_noise"), 2, name_key("test"), chunk])), suite="mnist-c")
        assert np.array_equal(written[start : start + CHUNK_SIZE], expected)
    assert not np.array_equal(written[CHUNK_SIZE:], written[: count - CHUNK_SIZE])
    write_corrupted_dataset(mnist, tmp_path / "few", corruptions=["identity"], limit=4, progress=ProgressStyle.NONE)
    few = read_mnist_c(tmp_path / "few", "identity")
    assert few.images.shape == (4, 28, 28, 1) and np.array_equal(few.labels, labels[:4])
    for bad in ({"limit": 0}, {"severity": 6}):
        with pytest.raises(CorruptionError):
            write_corrupted_dataset(mnist, tmp_path / "bad", corruptions=["identity"], progress=ProgressStyle.NONE,
                                    **bad)
    cifar = _dataset(DatasetName.CIFAR10, _colour(2), np.arange(2))
    with pytest.raises(CorruptionError, match="MNIST-C only"):
        write_corrupted_dataset(cifar, tmp_path / "bad", corruptions=["fog"], severity=2, progress=ProgressStyle.NONE)
    with pytest.raises(CorruptionError, match="CIFAR-10-C and CIFAR-100-C hold the test split only"):
        write_corrupted_dataset(cifar, tmp_path / "bad", corruptions=["fog"], include_train=True,
                                progress=ProgressStyle.NONE)
    assert not (tmp_path / "bad").exists()


def test_a_written_cifar_c_manifest_records_the_frost_pictures_used(tmp_path, frost_dir):
    cifar = _dataset(DatasetName.CIFAR10, _colour(2), np.arange(2))
    write_corrupted_dataset(cifar, tmp_path / "with", corruptions=["frost"], frost_directory=frost_dir,
                            progress=ProgressStyle.NONE)
    manifest = json.loads((tmp_path / "with" / "manifest.json").read_text())
    assert manifest["frost_pictures"] == frost_pictures.pictures_digest(frost_dir)
    assert manifest["layout"] == "cifar-c" and manifest["corruptions"] == {"frost": [1, 2, 3, 4, 5]}


def test_a_study_without_the_corruption_measure_announces_no_skipped_corruption(monkeypatch):
    monkeypatch.delenv("SPARSECAP_FROST", raising=False)
    spec = load_spec("quick", ["datasets=[\"cifar10\"]", "architectures=[\"vgg\"]", "widths=[16]"])
    assert not spec.corruptions.enabled and skipped_corruptions(spec) == []


def test_a_frost_directory_without_pictures_skips_frost_and_corrupts_the_rest(tmp_path):
    """The study announces frost as skipped for an empty SPARSECAP_FROST directory: the protocol must then skip
    it too (reported in `skipped`), not fail on the pictures' checksum before any corruption is made."""
    (tmp_path / "frost").mkdir()
    config = ProtocolConfig(Suite.CIFAR_C, corruptions=("contrast", "frost"), sample_size=2, draws=1)
    inputs = prepare_inputs(tmp_path / "cache", "cifar10", np.zeros((3, 32, 32, 3), np.uint8), config,
                            frost_directory=tmp_path / "frost")
    assert set(inputs.skipped) == {"frost"} and "holds no pictures" in inputs.skipped["frost"]
    assert {entry.corruption for entry in inputs} == {"contrast"}


def _png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_gallery_grid_has_a_row_per_drawable_corruption_and_a_clean_column_then_one_per_severity(tmp_path, monkeypatch):
    """The docs' grid: frost without pictures is left out and returned; the figure's size (0.62 in per column,
    0.66 in per row, at 90 dpi) counts the rows drawn and each image's clean column plus its severities."""
    monkeypatch.delenv("SPARSECAP_FROST", raising=False)
    path = tmp_path / "grid.png"
    assert draw_grid(scene_images()[:1], Suite.CIFAR_C, path, severities=(1, 5)) == ["frost"]
    rows, columns = len(list_corruptions(Suite.CIFAR_C)) - 1, 1 + 2
    width, height = _png_size(path)
    assert abs(width - (0.62 * columns + 1.6) * 90) < 1 and abs(height - (0.66 * rows + 0.7) * 90) < 1


@pytest.mark.parametrize(("images", "severities", "message"), [
    (np.zeros((1, 32, 32, 3), np.uint8), (1, 0), "severity must be an integer from 1 to 5, got 0"),
    (np.zeros((1, 32, 32, 3), np.float32), (1,), "images must be uint8 in 0..255, got dtype float32"),
    (np.zeros((1, 28, 28, 1), np.uint8), (1,), "cifar-c takes uint8 images of shape (N, 32, 32, 3)"),
])
def test_gallery_refuses_bad_input_naming_it_before_drawing(tmp_path, images, severities, message):
    with pytest.raises(CorruptionError, match=re.escape(message)):
        draw_grid(images, Suite.CIFAR_C, tmp_path / "grid.png", severities=severities)
    assert not (tmp_path / "grid.png").exists()


def test_gallery_colour_images_put_a_saturated_digit_over_a_textured_background():
    """Where the digit is full (255) the picture is the digit's colour, one channel at 255; where it is empty,
    the background, which varies over the picture."""
    full, empty = np.full((3, 28, 28), 255, np.uint8), np.zeros((3, 28, 28), np.uint8)
    digit = colour_images(full, np.random.default_rng(0))
    assert digit.shape == (3, 32, 32, 3) and digit.dtype == np.uint8
    assert (digit == digit[:, :1, :1]).all() and (digit[:, 0, 0].max(axis=-1) == 255).all()
    background = colour_images(empty, np.random.default_rng(0))
    assert (background.reshape(3, -1, 3).std(axis=1) > 5).all()
    assert np.array_equal(background, colour_images(empty, np.random.default_rng(0)))


def test_gallery_scenes_show_a_yellow_sun_in_a_blue_sky_and_a_red_car():
    scenes = scene_images()
    assert scenes.shape == (2, 32, 32, 3) and scenes.dtype == np.uint8
    sun, sky, car = scenes[0, 8, 23].astype(int), scenes[0, 2, 5].astype(int), scenes[1, 19, 16].astype(int)
    assert sun[0] > 200 and sun[1] > 200 and sun[2] < 100
    assert sky[2] > sky[1] > sky[0] and car[0] > 200 and max(car[1:]) < 50


def test_gallery_columns_differ_by_severity_only_for_corruptions_that_have_one():
    """Severity-less random corruptions (MNIST-C's lines) are drawn alike in every column; the others are not."""
    digits = np.zeros((2, 28, 28, 1), np.uint8)
    digits[:, 8:20, 12:16] = 255
    rows, skipped = grid_rows(digits, Suite.MNIST_C, (1, 3, 5), 0, None)
    by_name = {label.split("\n")[0].removesuffix(" (extra)"): row for label, row in rows}
    for name in ("dotted_line", "zigzag", "line"):
        assert all(np.array_equal(by_name[name][0], column) for column in by_name[name][1:]), name
    assert not np.array_equal(by_name["shot_noise"][0], by_name["shot_noise"][2])
    assert len(rows) + len(skipped) == len(list_corruptions(Suite.MNIST_C))


@pytest.mark.parametrize(("count", "severities"), [(0, (1,)), (1, ())])
def test_gallery_refuses_an_empty_grid(tmp_path, count, severities):
    with pytest.raises(CorruptionError, match="a grid needs at least one image and one severity"):
        draw_grid(np.zeros((count, 32, 32, 3), np.uint8), Suite.CIFAR_C, tmp_path / "grid.png", severities=severities)
    assert not (tmp_path / "grid.png").exists()


def test_gallery_colour_images_refuse_digits_of_another_shape():
    with pytest.raises(CorruptionError, match=re.escape("shape (N, 28, 28), got (1, 9, 9)")):
        colour_images(np.zeros((1, 9, 9), np.uint8), np.random.default_rng(0))


def test_a_rerun_with_other_frost_pictures_writes_frost_again_instead_of_keeping_it(tmp_path, frost_dir):
    """Frost's files depend on the pictures: a rerun given other pictures must not keep the old frost."""
    cifar = _dataset(DatasetName.CIFAR10, _colour(2), np.arange(2))
    out = tmp_path / "CIFAR-10-C"
    write_corrupted_dataset(cifar, out, corruptions=["frost"], frost_directory=frost_dir, progress=ProgressStyle.NONE)
    same = write_corrupted_dataset(cifar, out, corruptions=["frost"], frost_directory=frost_dir,
                                   progress=ProgressStyle.NONE)
    assert same.kept == {"frost": [1, 2, 3, 4, 5]} and same.written == {}
    inverted = shutil.copytree(frost_dir, tmp_path / "inverted")
    for path in frost_pictures.picture_files(inverted):
        cv2.imwrite(str(path), 255 - cv2.imread(str(path)))
    other = write_corrupted_dataset(cifar, out, corruptions=["frost"], frost_directory=inverted,
                                    progress=ProgressStyle.NONE)
    assert other.kept == {} and other.written == {"frost": [1, 2, 3, 4, 5]}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["frost_pictures"] == frost_pictures.pictures_digest(inverted)


def test_a_rerun_that_writes_a_skipped_corruption_no_longer_lists_it_as_skipped(tmp_path, monkeypatch, frost_dir):
    monkeypatch.delenv("SPARSECAP_FROST", raising=False)
    cifar = _dataset(DatasetName.CIFAR10, _colour(1), np.arange(1))
    out = tmp_path / "CIFAR-10-C"
    write_corrupted_dataset(cifar, out, progress=ProgressStyle.NONE)
    assert "frost" in json.loads((out / "manifest.json").read_text())["skipped"]
    rerun = write_corrupted_dataset(cifar, out, frost_directory=frost_dir, progress=ProgressStyle.NONE)
    assert rerun.written == {"frost": [1, 2, 3, 4, 5]}
    manifest = json.loads((out / "manifest.json").read_text())
    assert "frost" in manifest["corruptions"] and "frost" not in manifest["skipped"]


def test_a_folder_without_test_images_is_not_taken_for_an_mnist_c_corruption(tmp_path):
    out = tmp_path / "mnist_c"
    write_corrupted_dataset(_dataset(DatasetName.MNIST, _digits(3), np.arange(3)), out, corruptions=["identity"],
                            progress=ProgressStyle.NONE)
    (out / "notes").mkdir()  # e.g. a folder of the user's beside the corruptions
    np.save(out / "notes" / "train_images.npy", np.zeros((1, 28, 28, 1), np.uint8))
    assert check_complete(out, CorruptedLayout.MNIST_C) == ["identity"]


def test_datasets_availability_counts_the_published_corruptions_missing(tmp_path):
    write_corrupted_dataset(_dataset(DatasetName.MNIST, _digits(3), np.arange(3)), tmp_path / "mnist_c",
                            corruptions=["identity", "fog"], progress=ProgressStyle.NONE)
    location, text = describe_availability(CorruptedLayout.MNIST_C, [tmp_path])
    assert location == tmp_path / "mnist_c"
    assert text == f"{tmp_path / 'mnist_c'} (2 corruptions, {len(MNIST_C_PUBLISHED) - 2} published ones missing)"


def test_readers_refuse_labels_that_are_not_integers(tmp_path):
    folder = tmp_path / "fog"
    folder.mkdir()
    np.save(folder / "test_images.npy", np.zeros((2, 28, 28, 1), np.uint8))
    np.save(folder / "test_labels.npy", np.array([0.5, 1.5]))
    with pytest.raises(DatasetFormatError, match="labels must be integers, got float64"):
        read_mnist_c(tmp_path, "fog")


def test_loading_a_corrupted_set_reads_the_split_asked_for(tmp_path):
    out = tmp_path / "mnist_c"
    write_corrupted_dataset(_dataset(DatasetName.MNIST, _digits(4), np.arange(4)), out, corruptions=["identity"],
                            include_train=True, progress=ProgressStyle.NONE)
    np.save(out / "identity" / "train_labels.npy", np.array([9, 8, 7, 6], np.uint8))  # tells the splits apart
    assert load_corrupted("mnist-c", "identity", tmp_path, split="train").labels.tolist() == [9, 8, 7, 6]
    assert load_corrupted("mnist-c", "identity", tmp_path).labels.tolist() == [0, 1, 2, 3]


def test_corruption_rows_hold_one_row_per_draw(tmp_path):
    spec = load_spec("quick-corruptions", ['corruptions.corruptions=["identity", "shot_noise"]',
                                           "corruptions.sample_size=4", "corruptions.draws=2"])
    images, labels = torch.from_numpy(_digits(6).transpose(0, 3, 1, 2).copy()), torch.arange(6)
    dataset = ImageDataset(dataset_info("mnist"), images, labels, images, labels, "test")
    torch.manual_seed(0)
    model = create_model(ModelConfig("mlp", 16, 1), dataset_info("mnist"))
    rows = corruption_rows(spec, model, dataset, tmp_path, False)
    keys = [(row["corruption"], row["severity"], row["draw"]) for row in rows]
    assert len(keys) == len(set(keys)) and {draw for _, _, draw in keys} == {0, 1}


def test_a_rerun_that_writes_nothing_still_records_what_it_skipped(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARSECAP_FROST", raising=False)
    cifar = _dataset(DatasetName.CIFAR10, _colour(1), np.arange(1))
    out = tmp_path / "CIFAR-10-C"
    named = [name for name in list_corruptions(Suite.CIFAR_C) if name != "frost"]
    write_corrupted_dataset(cifar, out, corruptions=named, progress=ProgressStyle.NONE)
    assert json.loads((out / "manifest.json").read_text())["skipped"] == {}
    rerun = write_corrupted_dataset(cifar, out, progress=ProgressStyle.NONE)  # the default set: frost skipped
    assert rerun.written == {} and set(rerun.kept) == set(named)
    assert set(json.loads((out / "manifest.json").read_text())["skipped"]) == {"frost"}


def test_progress_lines_name_each_corruption_this_run_writes_once(tmp_path, capsys):
    """Without a terminal, one line per corruption written: a repeated name is one, one an earlier run wrote
    alike is none (the count is of this run's), and a CIFAR-C file's line lists its five severities. With a
    bar, the bar counts every image of every severity and no line is added."""
    mnist = _dataset(DatasetName.MNIST, _digits(2), np.arange(2))
    out = tmp_path / "mnist_c"
    write_corrupted_dataset(mnist, out, corruptions=["identity"], progress=ProgressStyle.NONE)
    capsys.readouterr()
    rerun = write_corrupted_dataset(mnist, out, corruptions=["identity", "stripe", "stripe"],
                                    progress=ProgressStyle.LINES)
    assert capsys.readouterr().err.splitlines() == ["[1/1] stripe written at severity 1"]
    assert rerun.kept == {"identity": [1]} and rerun.written == {"stripe": [1]}
    cifar = _dataset(DatasetName.CIFAR10, _colour(2), np.arange(2))
    write_corrupted_dataset(cifar, tmp_path / "lines", corruptions=["contrast"], progress=ProgressStyle.LINES)
    assert capsys.readouterr().err.splitlines() == ["[1/1] contrast written at severities 1, 2, 3, 4, 5"]
    write_corrupted_dataset(cifar, tmp_path / "bar", corruptions=["contrast"], progress=ProgressStyle.BARS)
    err = capsys.readouterr().err
    assert "corrupting cifar10: 100%" in err and " 10/10 " in err and "written at" not in err


def test_the_train_split_is_written_from_the_train_images_and_every_file_is_checksummed(tmp_path):
    """--train writes the train images and labels (not the test ones again) into a new directory, however deep;
    the manifest holds the SHA-256 of each of the four files; labels are stored as uint8, as in the published
    MNIST-C; and a directory holding both splits takes no rerun of the test split alone."""
    train, test = _digits(3, seed=1), _digits(2, seed=2)
    mnist = ImageDataset(dataset_info(DatasetName.MNIST), torch.from_numpy(train.transpose(0, 3, 1, 2).copy()),
                         torch.tensor([7, 8, 9]), torch.from_numpy(test.transpose(0, 3, 1, 2).copy()),
                         torch.tensor([1, 2]), "test images")
    out = tmp_path / "sets" / "written" / "mnist_c"
    write_corrupted_dataset(mnist, out, corruptions=["identity"], include_train=True, progress=ProgressStyle.NONE)
    for split, images, labels in (("train", train, [7, 8, 9]), ("test", test, [1, 2])):
        written = read_mnist_c(out, "identity", split)
        assert np.array_equal(written.images, images) and written.labels.tolist() == labels
        assert np.load(out / "identity" / f"{split}_labels.npy").dtype == np.uint8
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sha256"] == {
        f"identity/{split}_{part}.npy": hashlib.sha256((out / "identity" / f"{split}_{part}.npy").read_bytes())
        .hexdigest() for split in ("test", "train") for part in ("images", "labels")
    }
    (out / "identity" / "train_labels.npy").unlink()  # a split's file gone: the corruption is written again
    assert write_corrupted_dataset(mnist, out, corruptions=["identity"], include_train=True,
                                   progress=ProgressStyle.NONE).written == {"identity": [1]}
    with pytest.raises(CorruptionError, match="splits \\['test', 'train'\\] \\(this run: \\['test'\\]\\)"):
        write_corrupted_dataset(mnist, out, corruptions=["stripe"], progress=ProgressStyle.NONE)


def test_a_cifar_c_manifest_checksums_the_labels_and_a_rerun_rewrites_a_corruption_without_them(tmp_path):
    cifar = _dataset(DatasetName.CIFAR10, _colour(2), np.arange(2))
    out = tmp_path / "CIFAR-10-C"
    write_corrupted_dataset(cifar, out, corruptions=["contrast"], progress=ProgressStyle.NONE)
    assert set(json.loads((out / "manifest.json").read_text())["sha256"]) == {"contrast.npy", "labels.npy"}
    assert check_complete(out, CorruptedLayout.CIFAR10_C) == ["contrast"]  # labels.npy is no corruption
    (out / "labels.npy").unlink()
    assert write_corrupted_dataset(cifar, out, corruptions=["contrast"],
                                   progress=ProgressStyle.NONE).written == {"contrast": [1, 2, 3, 4, 5]}
    assert read_cifar_c(out, "contrast").labels.tolist() == [0, 1] * 5


def test_a_rerun_at_another_severity_writes_the_corruption_again(tmp_path):
    mnist = _dataset(DatasetName.MNIST, _digits(2), np.arange(2))
    out = tmp_path / "mnist_c"
    write_corrupted_dataset(mnist, out, corruptions=["shot_noise"], progress=ProgressStyle.NONE)
    rerun = write_corrupted_dataset(mnist, out, corruptions=["shot_noise"], severity=2, progress=ProgressStyle.NONE)
    assert rerun.kept == {} and rerun.written == {"shot_noise": [2]}
    assert json.loads((out / "manifest.json").read_text())["corruptions"] == {"shot_noise": [2]}


def test_a_rerun_keeps_pessimal_noise_only_when_made_from_the_same_matrix(tmp_path, pessimal_matrix):
    """As for frost's pictures: other matrix, other pixels; and a rerun that writes only corruptions reading no
    matrix keeps the recorded checksum of the one the directory's pessimal_noise was made from."""
    mnist = _dataset(DatasetName.MNIST, _digits(2), np.arange(2))
    out = tmp_path / "mnist_c"
    write_corrupted_dataset(mnist, out, corruptions=["pessimal_noise"], pessimal_matrix=pessimal_matrix,
                            progress=ProgressStyle.NONE)
    added = write_corrupted_dataset(mnist, out, corruptions=["pessimal_noise", "identity"],
                                    pessimal_matrix=pessimal_matrix, progress=ProgressStyle.NONE)
    assert added.kept == {"pessimal_noise": [1]} and added.written == {"identity": [1]}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pessimal_matrix"] == hashlib.sha256(pessimal_matrix.read_bytes()).hexdigest()
    assert (manifest["source"], manifest["sparsecap_version"]) == ("test images", __version__)
    other = pessimal_matrix_file(tmp_path / "other_matrix", seeded_pessimal_matrix()[::-1].copy())
    rerun = write_corrupted_dataset(mnist, out, corruptions=["pessimal_noise"], pessimal_matrix=other,
                                    progress=ProgressStyle.NONE)
    assert rerun.kept == {} and rerun.written == {"pessimal_noise": [1]}
    assert json.loads((out / "manifest.json").read_text())["pessimal_matrix"] == hashlib.sha256(
        other.read_bytes()).hexdigest()


def test_reruns_keep_what_earlier_runs_skipped_and_wrote(tmp_path, monkeypatch, frost_dir):
    """A rerun naming other corruptions keeps the earlier run's skipped ones listed; a rerun of the default set
    whose frost directory has lost its pictures skips frost without failing and keeps the frost written."""
    monkeypatch.delenv("SPARSECAP_FROST", raising=False)
    cifar = _dataset(DatasetName.CIFAR10, _colour(1), np.arange(1))
    out = tmp_path / "CIFAR-10-C"
    write_corrupted_dataset(cifar, out, progress=ProgressStyle.NONE)
    fog = write_corrupted_dataset(cifar, out, corruptions=["fog"], progress=ProgressStyle.NONE)
    assert fog.kept == {"fog": [1, 2, 3, 4, 5]} and fog.written == {}
    assert set(json.loads((out / "manifest.json").read_text())["skipped"]) == {"frost"}
    write_corrupted_dataset(cifar, out, corruptions=["frost"], frost_directory=frost_dir, progress=ProgressStyle.NONE)
    before = json.loads((out / "manifest.json").read_text())
    (tmp_path / "emptied").mkdir()
    rerun = write_corrupted_dataset(cifar, out, frost_directory=tmp_path / "emptied", progress=ProgressStyle.NONE)
    assert rerun.written == {} and set(rerun.skipped) == {"frost"} and "frost" not in rerun.kept
    after = json.loads((out / "manifest.json").read_text())
    assert after["corruptions"]["frost"] == [1, 2, 3, 4, 5] and after["skipped"] == {}
    assert after["sha256"] == before["sha256"] and after["frost_pictures"] == before["frost_pictures"]


@pytest.mark.parametrize(("content", "message"), [("{not json", "cannot be read"),
                                                   ("[]", "is not a manifest of sparsecap corrupt"),
                                                   (None, "Is a directory")])
def test_an_unreadable_manifest_of_an_earlier_run_is_refused_before_anything_is_written(tmp_path, content, message):
    """None: manifest.json is a directory, which is no manifest to add to (nor one this run could write)."""
    out = tmp_path / "mnist_c"
    out.mkdir()
    if content is None:
        (out / "manifest.json").mkdir()
    else:
        (out / "manifest.json").write_text(content)
    mnist = _dataset(DatasetName.MNIST, _digits(2), np.arange(2))
    with pytest.raises(CorruptionError, match=f"{message}.*nothing was written"):
        write_corrupted_dataset(mnist, out, corruptions=["identity"], progress=ProgressStyle.NONE)
    assert [path.name for path in out.iterdir()] == ["manifest.json"]


def test_the_protocol_cache_does_not_depend_on_files_its_corruptions_do_not_read(tmp_path, monkeypatch, frost_dir,
                                                                                 pessimal_matrix):
    """Setting SPARSECAP_FROST or a pessimal matrix must not regenerate a study's inputs that use neither."""
    monkeypatch.delenv("SPARSECAP_FROST", raising=False)
    monkeypatch.delenv("SPARSECAP_PESSIMAL_MATRIX", raising=False)
    config = ProtocolConfig(Suite.MNIST_C, corruptions=("identity",), sample_size=2, draws=1)
    plain = prepare_inputs(tmp_path, "mnist", _digits(3), config)
    with_files = prepare_inputs(tmp_path, "mnist", _digits(3), config, frost_directory=frost_dir,
                                pessimal_matrix=pessimal_matrix)
    assert with_files.directory == plain.directory and len(list(tmp_path.iterdir())) == 1


def test_a_generation_stopped_midway_leaves_nothing_that_stops_the_next(tmp_path):
    """An interrupted run leaves `<key>.partial` behind: the next one starts it afresh."""
    config = ProtocolConfig(Suite.MNIST_C, corruptions=("identity", "rotate"), sample_size=2, draws=1)
    first = prepare_inputs(tmp_path, "mnist", _digits(3), config)
    expected = [np.array(entry.images) for entry in first]
    shutil.rmtree(first.directory)
    partial = first.directory.with_name(first.directory.name + ".partial")
    partial.mkdir()
    (partial / "rotate-s2.npy").write_bytes(b"stale")
    again = prepare_inputs(tmp_path, "mnist", _digits(3), config)
    assert again.directory == first.directory and not partial.exists()
    assert all(np.array_equal(entry.images, images) for entry, images in zip(again, expected, strict=True))


def test_the_first_data_root_holding_a_corrupted_set_is_used_and_every_place_looked_in_is_named(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for root, fill in ((first, 1), (second, 2)):
        (root / "mnist_c" / "fog").mkdir(parents=True)
        np.save(root / "mnist_c" / "fog" / "test_images.npy", np.full((1, 28, 28, 1), fill, np.uint8))
        np.save(root / "mnist_c" / "fog" / "test_labels.npy", np.zeros(1, np.uint8))
    assert locate_corrupted(CorruptedLayout.MNIST_C, [first, second]) == first / "mnist_c"
    assert int(load_corrupted("mnist-c", "fog", first).images.max()) == 1
    _, text = describe_availability(CorruptedLayout.CIFAR10_C, [first, second])
    assert text.startswith(f"not found (looked for {first / 'CIFAR-10-C'}, {second / 'CIFAR-10-C'};")
    with pytest.raises(DatasetNotFoundError, match="unknown corrupted dataset 'mnist'; valid names: mnist-c, "
                                                   "cifar10-c, cifar100-c"):
        load_corrupted("mnist", "fog", first)


def test_a_complete_set_is_described_without_a_count_of_missing_ones(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    for name in CIFAR_C_PUBLISHED:  # names only: the files are not opened
        (folder / f"{name}.npy").write_bytes(b"")
    (folder / "labels.npy").write_bytes(b"")
    assert describe_availability(CorruptedLayout.CIFAR10_C, [tmp_path]) == (folder, f"{folder} (19 corruptions)")
