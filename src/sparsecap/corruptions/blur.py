"""Blur corruptions of the CIFAR-10-C suite (spec §2.2), and the primitives MNIST-C reuses."""

from __future__ import annotations

import functools

import numpy as np
from scipy import sparse

from sparsecap.corruptions.ops import (
    correlate_reflect101,
    disk_kernel,
    gaussian,
    motion_blur as imagemagick_motion_blur,
    scale_down,
    truncate_up,
    zoom_blur_operator,
)

CIFAR_GAUSSIAN_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)
CIFAR_GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # sigma, max shift, iterations
CIFAR_DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # radius, alias blur
CIFAR_MOTION = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # radius, sigma
# What numpy's float range yields (the spec's "extra end values"): 7, 12, 16, 21 and 26 factors.
CIFAR_ZOOMS = tuple(np.arange(1, stop, 0.01) for stop in (1.06, 1.11, 1.16, 1.21, 1.26))
OPERATOR_BITS = 40  # 8-bit pixels × 40-bit weights, summed: 48 bits, within float64's 53


def gaussian_blurred(images: np.ndarray, sigma: float, *, vertical_only: bool = False) -> np.ndarray:
    return np.clip(gaussian(scale_down(images), sigma, vertical_only=vertical_only), 0, 1)


def defocused(images: np.ndarray, radius: float, alias_blur: float) -> np.ndarray:
    return np.clip(correlate_reflect101(scale_down(images), disk_kernel(radius, alias_blur)), 0, 1)


@functools.cache
def exact_zoom_operator(side: int, factors: tuple[float, ...]) -> sparse.csr_array:
    """`zoom_blur_operator` with its weights on a grid of 2⁻⁴⁰, each row still summing to exactly 1.

    Times 8-bit integer pixels, every product and partial sum is then a multiple of 2⁻⁴⁰ below 256:
    exact in float64, so no summation order (batch size, kernel, threads) can change a result. Rows
    summing to 1 keep flat areas exactly flat. Sparse: a row has about ten non-zero weights.
    """
    grid = 2.0**OPERATOR_BITS
    steps = np.rint(zoom_blur_operator(side, factors) * grid)
    steps[np.arange(len(steps)), steps.argmax(axis=1)] += grid - steps.sum(axis=1)
    return sparse.csr_array(steps / grid)


def zoom_blurred(images: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Mean of the image and its clipped zooms by every factor (spec §2.2 zoom_blur), in [0, 1].

    The sum of zooms is linear, so it is one (H·W)×(H·W) matrix applied to the whole batch. The sums
    are exact (see `exact_zoom_operator`) and rounded once by the division by 255, so each image's
    result is the same in any batch; it equals the references' float32 loop up to that loop's rounding.
    The weights are non-negative and sum to 1, so the result needs no clipping.
    """
    count, height, width, channels = images.shape
    operator = exact_zoom_operator(height, tuple(float(factor) for factor in factors))
    pixels = images.astype(np.float64).transpose(1, 2, 0, 3).reshape(height * width, count * channels)
    blurred = (operator @ pixels) / 255.0
    return blurred.reshape(height, width, count, channels).transpose(2, 0, 1, 3)


def motion_angles(count: int, rng: np.random.Generator, low: float = -45.0, high: float = 45.0) -> np.ndarray:
    return rng.uniform(low, high, size=count)


def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return truncate_up(gaussian_blurred(images, CIFAR_GAUSSIAN_SIGMA[severity - 1]))


def glass_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blur, then let every pixel of rows/columns 2..H-1 copy itself or its up/left/up-left neighbour.

    The reference's sequential "swap" is a copy from a not-yet-visited pixel (spec §2.2), so each
    iteration is one vectorised gather.
    """
    sigma, shift, iterations = CIFAR_GLASS[severity - 1]
    blurred = (gaussian(scale_down(images), sigma) * 255).astype(np.uint8)
    count, height, width, _ = images.shape
    assert shift == 1, "the copy form of the swap holds for a maximal shift of 1 (every CIFAR severity)"
    first = shift + 1  # the reference visits rows and columns H-shift down to shift+1
    for _ in range(iterations):
        offsets = rng.integers(-shift, shift, size=(count, height - 2 * shift, width - 2 * shift, 2))  # dx, dy
        rows = np.arange(first, height - shift + 1)[None, :, None] + offsets[..., 1]
        cols = np.arange(first, width - shift + 1)[None, None, :] + offsets[..., 0]
        source = blurred[np.arange(count)[:, None, None], rows, cols]
        blurred = blurred.copy()
        blurred[:, first : height - shift + 1, first : width - shift + 1] = source
    return truncate_up(gaussian(scale_down(blurred), sigma))


def defocus_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return truncate_up(defocused(images, *CIFAR_DEFOCUS[severity - 1]))


def motion_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = CIFAR_MOTION[severity - 1]
    return imagemagick_motion_blur(images, radius, sigma, motion_angles(len(images), rng))


def zoom_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return truncate_up(zoom_blurred(images, CIFAR_ZOOMS[severity - 1]))
