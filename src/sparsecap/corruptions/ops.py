"""Shared building blocks of the corruptions (spec §0-§1), vectorised over a batch of images.

Every function here takes a batch: images are channels-last arrays (N, H, W, C), grey images having
C = 1. Section numbers refer to the corruption specification (docs/corruptions.md describes how the
project follows it).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from scipy import ndimage
from skimage import color as skcolor

# --------------------------------------------------------------------------------------------- scaling


def scale_down(images: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """uint8 0..255 -> float in [0, 1] ("scale down", §0)."""
    return images.astype(dtype) / dtype(255.0)


def truncate_up(values: np.ndarray) -> np.ndarray:
    """Clip to [0, 1], multiply by 255 and truncate to uint8: the CIFAR generator's output cast (§1.1)."""
    return (np.clip(values, 0, 1) * 255).astype(np.uint8)


def truncate_uint8(values: np.ndarray) -> np.ndarray:
    """Clip values already in 0..255 units and truncate to uint8 (§1.1, CIFAR)."""
    return np.clip(values, 0, 255).astype(np.uint8)


def round_up(values: np.ndarray) -> np.ndarray:
    """Clip to [0, 1], multiply by 255, round to nearest and cast: how MNIST-C values are stored (§1.1)."""
    return round_uint8(np.clip(values, 0, 1) * 255)


def round_uint8(values: np.ndarray) -> np.ndarray:
    """Round values in 0..255 units to nearest, clip and cast (§1.1, MNIST)."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------- filtering


def gaussian(images: np.ndarray, sigma: float, *, vertical_only: bool = False) -> np.ndarray:
    """scikit-image 0.18 `filters.gaussian(..., multichannel=True)` on every image of the batch (§1.2).

    Edge replication, truncate 4. Spatial axes are 1 and 2; with `vertical_only` (the MNIST-C
    behaviour on 2-D images) only axis 1, the rows, is blurred.
    """
    sigmas = (0.0, sigma, 0.0 if vertical_only else sigma) + (0.0,) * (images.ndim - 3)
    return ndimage.gaussian_filter(images, sigmas, mode="nearest", truncate=4.0)


@functools.cache
def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The antialiased disk of defocus blur (§1.3), float32, not renormalised after smoothing."""
    if radius <= 8:
        offsets, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        offsets, ksize = np.arange(-radius, radius + 1), (5, 5)
    x, y = np.meshgrid(offsets, offsets)
    disk = np.array((x**2 + y**2) <= radius**2, dtype=np.float32)
    disk /= np.sum(disk)
    kernel = cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)
    kernel.setflags(write=False)
    return kernel


def correlate_reflect101(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """OpenCV `filter2D` (correlation, reflect-101 border) of every channel of every image."""
    weights = kernel.astype(np.float64)[None, :, :, None]
    return ndimage.correlate(images, weights, mode="mirror")


# --------------------------------------------------------------------------------------------- zoom


def clipped_zoom(images: np.ndarray, factor: float) -> np.ndarray:
    """Centre-crop zoom (§1.4) of square images, vectorised: scipy order-1 zoom of the central block."""
    side = images.shape[1]
    crop = int(math.ceil(side / factor))
    top = (side - crop) // 2
    block = images[:, top : top + crop, top : top + crop]
    zoom = (1.0, factor, factor) + (1.0,) * (images.ndim - 3)
    zoomed = ndimage.zoom(block, zoom, order=1)
    trim = (zoomed.shape[1] - side) // 2
    return zoomed[:, trim : trim + side, trim : trim + side]


@functools.cache
def clipped_zoom_matrix(side: int, factor: float) -> np.ndarray:
    """The clipped zoom of one axis as a side×side matrix: `clipped_zoom(x) = M x Mᵀ` on each image.

    Built from SciPy's order-1 zoom rule (output o samples input o·(c−1)/(n_out−1), no prefilter), so
    it reproduces `clipped_zoom` to rounding error (a test checks this).
    """
    crop = int(math.ceil(side / factor))
    top = (side - crop) // 2
    n_out = round(crop * factor)
    trim = (n_out - side) // 2
    ratio = (crop - 1) / (n_out - 1) if n_out > 1 else 0.0
    matrix = np.zeros((side, side))
    for row in range(side):
        position = (row + trim) * ratio
        low = int(np.floor(position))
        fraction = position - low
        matrix[row, top + low] += 1 - fraction
        if fraction:
            matrix[row, top + min(low + 1, crop - 1)] += fraction
    return matrix


@functools.cache
def zoom_blur_operator(side: int, factors: tuple[float, ...]) -> np.ndarray:
    """(I + Σ_f M_f ⊗ M_f) / (F + 1) on flattened side×side images: zoom blur as one linear map."""
    total = np.eye(side * side)
    for factor in factors:
        matrix = clipped_zoom_matrix(side, factor)
        total += np.kron(matrix, matrix)
    total /= len(factors) + 1
    total.setflags(write=False)
    return total


# ---------------------------------------------------------------------------------- plasma fractal


def plasma_fractal(count: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """`count` diamond-square height maps on a periodic size×size grid, each normalised to [0, 1] (§1.5)."""
    if size & (size - 1):
        raise ValueError(f"plasma fractal side must be a power of two, got {size}")
    maps = np.empty((count, size, size), dtype=np.float64)
    maps[:, 0, 0] = 0.0
    step = size
    wibble = 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        # square step: centres from the four corners around them
        corners = maps[:, 0:size:step, 0:size:step]
        square = corners + np.roll(corners, shift=-1, axis=1)
        square += np.roll(square, shift=-1, axis=2)
        maps[:, half:size:step, half:size:step] = wibbled_mean(square)
        # diamond step: edge midpoints from the two centres and two corners beside them
        centres = maps[:, half:size:step, half:size:step]
        corners = maps[:, 0:size:step, 0:size:step]
        horizontal = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:size:step, half:size:step] = wibbled_mean(horizontal)
        vertical = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:size:step, 0:size:step] = wibbled_mean(vertical)
        step //= 2
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


# ------------------------------------------------------------------------------------ motion blur


def motion_blur(images: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick 6.9 Q16 `MotionBlurImage` on uint8 images, one angle (degrees) per image (§1.6).

    A one-sided Gaussian smear: pixel (r, c) averages the pixels at (r + o_y(i), c + o_x(i)),
    i = 0..n-1, clamped to the image, in 16-bit quanta; the 8-bit result is floor(round(S) / 257).
    """
    count, height, width, channels = images.shape
    length = 2 * math.ceil(radius) + 1
    steps = np.arange(length, dtype=np.float64)
    weights = np.exp(-(steps**2) / (2.0 * sigma * sigma))
    weights /= weights.sum()
    theta = np.radians(np.asarray(angles, dtype=np.float64))[:, None]
    offset_x = np.ceil(steps[None, :] * np.cos(theta) - 0.5).astype(np.int64)  # (N, n)
    offset_y = np.ceil(steps[None, :] * np.sin(theta) - 0.5).astype(np.int64)
    flat = images.reshape(count, height * width, channels).astype(np.float64) * 257.0
    rows, cols = np.arange(height), np.arange(width)
    total = np.zeros((count, height * width, channels), dtype=np.float64)
    for step in range(length):
        r = np.clip(rows[None, :] + offset_y[:, step, None], 0, height - 1)  # (N, H)
        c = np.clip(cols[None, :] + offset_x[:, step, None], 0, width - 1)  # (N, W)
        index = (r[:, :, None] * width + c[:, None, :]).reshape(count, height * width, 1)
        total += weights[step] * np.take_along_axis(flat, index, axis=1)
    quanta = np.floor(total + 0.5)
    return (quanta // 257).astype(np.uint8).reshape(images.shape)


# ------------------------------------------------------------------------------- salt and pepper


def salt_and_pepper(values: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """scikit-image `random_noise(mode='s&p')` on float values in [0, 1], element-wise (§1.7)."""
    flipped = rng.random(values.shape) < amount
    salted = rng.random(values.shape) < 0.5
    return np.clip(np.where(flipped, salted.astype(values.dtype), values), 0, 1)


# ---------------------------------------------------------------------------------------- colour


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """scikit-image `rgb2hsv` over a batch (N, H, W, 3) (§1.8)."""
    return skcolor.rgb2hsv(rgb, channel_axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    return skcolor.hsv2rgb(hsv, channel_axis=-1)


SKIMAGE_GREY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])
OPENCV_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """scikit-image `rgb2gray`: (N, H, W, 3) -> (N, H, W)."""
    return rgb @ SKIMAGE_GREY_WEIGHTS.astype(rgb.dtype)


# -------------------------------------------------------------------------------------- line mask


def line_mask(c0: float, r0: float, c1: float, r1: float, side: int = 28) -> np.ndarray:
    """The anti-aliased line of MNIST-C line, dotted line and zigzag (§1.9), side×side float64."""
    if c1 == c0:
        return np.zeros((side, side))
    cols = np.linspace(0, side - 1, side)[None, :]
    rows = np.linspace(0, side - 1, side)[:, None]
    slope = (r1 - r0) / (c1 - c0)
    distance = np.clip(np.abs(rows - (slope * (cols - c0) + r0)), 0, 2.3 - 1e-10)
    mask = np.clip(np.log(1 - distance / 2.3) + 1, 0, 1)
    mask[:, : int(np.floor(c0))] = 0
    mask[:, int(np.ceil(c1)) :] = 0
    return np.clip(mask, 0, 1)


# ------------------------------------------------------------------------------------- resampling


def bilinear_zero(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample (N, H, W) images at per-image positions (N, H, W) with bilinear interpolation.

    Neighbours outside the image count as 0: SciPy's `map_coordinates(order=1, mode='grid-constant')`,
    which is what scikit-image's `warp` does with mode 'constant' (§3.2, geometric warps).
    """
    count, height, width = images.shape
    padded = np.zeros((count, height + 2, width + 2), dtype=np.float64)
    padded[:, 1:-1, 1:-1] = images
    r = np.clip(rows + 1.0, 0.0, height + 1.0)
    c = np.clip(cols + 1.0, 0.0, width + 1.0)
    outside = (rows <= -1) | (rows >= height) | (cols <= -1) | (cols >= width)
    r0 = np.minimum(np.floor(r).astype(np.int64), height)
    c0 = np.minimum(np.floor(c).astype(np.int64), width)
    fr, fc = r - r0, c - c0
    flat = padded.reshape(count, -1)
    stride = width + 2

    def at(rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
        return np.take_along_axis(flat, (rr * stride + cc).reshape(count, -1), axis=1).reshape(rows.shape)

    value = (
        at(r0, c0) * (1 - fr) * (1 - fc)
        + at(r0, c0 + 1) * (1 - fr) * fc
        + at(r0 + 1, c0) * fr * (1 - fc)
        + at(r0 + 1, c0 + 1) * fr * fc
    )
    return np.where(outside, 0.0, value)


def affine_warp_zero(images: np.ndarray, matrices: np.ndarray, translations: np.ndarray) -> np.ndarray:
    """scikit-image `warp(image, AffineTransform)` with the transform as the inverse map, order 1.

    Output pixel (x = column, y = row) samples the input at A·(x, y) + t; one A (N, 2, 2) and t (N, 2)
    per image. The result is clipped to [min(0, image min), image max] as scikit-image does.
    """
    count, height, width = images.shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    a = matrices[:, :, :, None, None]
    src_x = a[:, 0, 0] * x + a[:, 0, 1] * y + translations[:, 0, None, None]
    src_y = a[:, 1, 0] * x + a[:, 1, 1] * y + translations[:, 1, None, None]
    warped = bilinear_zero(images, src_y, src_x)
    low = np.minimum(images.min(axis=(1, 2), keepdims=True), 0.0)
    high = images.max(axis=(1, 2), keepdims=True)
    return np.clip(warped, low, high)
