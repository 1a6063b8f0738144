"""The MNIST-C suite (spec §3): 28×28 grey images, (N, 28, 28, 1) uint8 in and out.

The reference functions return float32 in 0..255; like the published files, results are rounded to
nearest and clipped (spec §1.1). Blurs through scikit-image's `gaussian` run down the rows only, as the
reference's `multichannel=True` on 2-D images does (spec §1.2). `pessimal_noise` takes the reference's
196×196 matrix, which the user supplies (`sparsecap.corruptions.pessimal`); it is not in the published 15.
"""

from __future__ import annotations

import numpy as np
from skimage import feature

from sparsecap.corruptions import frost as frost_pictures
from sparsecap.corruptions.blur import defocused, gaussian_blurred, motion_angles, zoom_blurred
from sparsecap.corruptions.digital import contrasted, elastic, jpeg, pixelated
from sparsecap.corruptions.noise import add_gaussian, impulse, poisson, speckle
from sparsecap.corruptions.ops import (
    affine_warp_zero,
    gaussian,
    hsv_to_rgb,
    line_mask,
    motion_blur as imagemagick_motion_blur,
    rgb_to_grey,
    rgb_to_hsv,
    round_uint8,
    round_up,
    scale_down,
)
from sparsecap.corruptions.weather import fogged, liquid_layer, mud_mask, snow_layer

SIDE = 28
CENTRE = 13.5

GAUSSIAN_STD = (0.08, 0.12, 0.18, 0.26, 0.38)
SHOT_PHOTONS = (60, 25, 12, 5, 3)
IMPULSE_AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)
SPECKLE_STD = (0.15, 0.2, 0.35, 0.45, 0.6)
PESSIMAL_TILE = 14
PESSIMAL_NORM = 10.63 / 4  # as the reference: the norm of the 14×14 tile, before it is repeated 2×2
GAUSSIAN_SIGMA = (1, 2, 3, 4, 6)
GLASS = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))  # sigma, max shift, iterations
DEFOCUS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))  # radius, alias blur
MOTION = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))  # radius, sigma
ZOOMS = tuple(np.arange(1, stop, step) for stop, step in
              ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)))
FOG = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))  # strength, decay
FOG_MAP = 256
FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))  # image weight, frost weight
# loc, scale, zoom, threshold, blur radius, blur sigma, blend
SNOW = (
    (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
    (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
    (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
    (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
)
SPATTER = (  # loc, scale, sigma1, threshold, sigma2 (always mud, grey 63/255)
    (0.65, 0.3, 4, 0.69, 0.6),
    (0.65, 0.3, 3, 0.68, 0.6),
    (0.65, 0.3, 2, 0.68, 0.5),
    (0.65, 0.3, 1, 0.65, 1.5),
    (0.67, 0.4, 1, 0.65, 1.5),
)
MUD_GREY = 63 / 255
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
SATURATE = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))  # multiplier, offset (on H, S and V)
JPEG_QUALITY = (25, 18, 15, 10, 7)
PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)
ELASTIC = ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))  # × 28
QUANTIZE_BITS = (5, 4, 3, 2, 1)
WARP_ANGLE = (0.2, 0.4, 0.6, 0.8, 1.0)  # shear and rotate, radians
SCALE = tuple(1 / factor for factor in (0.9, 0.8, 0.7, 0.6, 0.5))
TRANSLATE = (1, 2, 3, 4, 5)
STRIPE_COLUMNS = np.r_[0:7, 21:28]
DASH_COLUMNS = np.array([column for start in range(2, 28, 4) for column in (start, start + 1)])

def _grey(images: np.ndarray) -> np.ndarray:
    return images[..., 0]


def _channel(grey: np.ndarray) -> np.ndarray:
    return grey[..., None]


# ------------------------------------------------------------------------------------------- noise


def identity(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return images.copy()


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return round_up(add_gaussian(images, GAUSSIAN_STD[severity - 1], rng))


def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return round_up(poisson(images, SHOT_PHOTONS[severity - 1], rng))


def impulse_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return round_up(impulse(images, IMPULSE_AMOUNT[severity - 1], rng))


def speckle_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return round_up(speckle(images, SPECKLE_STD[severity - 1], rng))


def pessimal_noise(images: np.ndarray, severity: int, rng: np.random.Generator, matrix: np.ndarray) -> np.ndarray:
    """Standard normals through the pessimal matrix, rescaled to norm 2.6575, tiled 2×2 and added.

    The severity is ignored, as in the reference: the matrix, not a level, sets how harmful the noise is.
    """
    noise = rng.standard_normal((len(images), matrix.shape[0])) @ matrix
    noise *= PESSIMAL_NORM / np.linalg.norm(noise, axis=1, keepdims=True)
    tile = noise.reshape(-1, PESSIMAL_TILE, PESSIMAL_TILE)
    return round_up(scale_down(images) + _channel(np.tile(tile, (1, 2, 2))))


# -------------------------------------------------------------------------------------------- blur


def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return round_up(gaussian_blurred(images, GAUSSIAN_SIGMA[severity - 1], vertical_only=True))


def glass_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Vertical blur, then random true swaps of pixels (h, w) and (h+dy, w+dx), then blur again.

    Swaps can reach pixels already visited, so positions are processed in the reference's order
    (rows, then columns, downwards from 28-δ to δ+1), each one vectorised across the batch.
    """
    sigma, shift, iterations = GLASS[severity - 1]
    count = len(images)
    blurred = (gaussian(scale_down(images), sigma, vertical_only=True) * 255).astype(np.uint8)
    flat = _grey(blurred).reshape(count, SIDE * SIDE).copy()
    visit = [(h, w) for h in range(SIDE - shift, shift, -1) for w in range(SIDE - shift, shift, -1)]
    for _ in range(iterations):
        swaps = rng.random((len(visit), count)) < 0.5  # the coin of every position
        offsets = rng.integers(-shift, shift, size=(len(visit), count, 2))  # (dx, dy), used where the coin says
        for position, (h, w) in enumerate(visit):
            chosen = np.flatnonzero(swaps[position])
            here = h * SIDE + w
            there = (h + offsets[position, chosen, 1]) * SIDE + (w + offsets[position, chosen, 0])
            mine = flat[chosen, here]
            flat[chosen, here] = flat[chosen, there]
            flat[chosen, there] = mine
    swapped = _channel(flat.reshape(count, SIDE, SIDE))
    return round_up(gaussian(scale_down(swapped), sigma, vertical_only=True))


def defocus_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return round_up(defocused(images, *DEFOCUS[severity - 1]))


def motion_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = MOTION[severity - 1]
    return imagemagick_motion_blur(images, radius, sigma, motion_angles(len(images), rng))


def zoom_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return round_up(zoom_blurred(images, ZOOMS[severity - 1]))


# ----------------------------------------------------------------------------------------- weather


def fog(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    strength, decay = FOG[severity - 1]
    return round_up(fogged(images, strength, decay, FOG_MAP, rng))


def frost(images: np.ndarray, severity: int, rng: np.random.Generator, pictures: tuple[np.ndarray, ...]) -> np.ndarray:
    image_weight, frost_weight = FROST[severity - 1]
    crops = frost_pictures.crops(pictures, len(images), SIDE, rng)
    return round_uint8(np.clip(image_weight * images.astype(np.float64) + frost_weight * _channel(crops), 0, 255))


def snow(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    parameters = SNOW[severity - 1]
    blend = parameters[6]
    values = scale_down(images, np.float32)
    layer = snow_layer(len(images), SIDE, parameters, rng)
    values = blend * values + (1 - blend) * np.maximum(values, 1.5 * values + 0.5)
    return round_up(values + layer + np.rot90(layer, k=2, axes=(1, 2)))


def spatter(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    loc, scale, sigma, threshold, mud_sigma = SPATTER[severity - 1]
    values = scale_down(images, np.float32)
    layer = liquid_layer(len(images), SIDE, loc, scale, sigma, threshold, rng)
    mask = _channel(mud_mask(layer, threshold, mud_sigma))
    return round_up(values * (1 - mask) + MUD_GREY * mask)


# ----------------------------------------------------------------------------------------- digital


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return round_up(contrasted(images, CONTRAST[severity - 1], per_channel=False))


def _through_hsv(images: np.ndarray, change) -> np.ndarray:  # noqa: ANN001 - in-place change of an HSV batch
    """Grey -> RGB -> HSV, change, -> RGB -> grey (scikit-image weights), as the reference does."""
    rgb = np.repeat(scale_down(images), 3, axis=-1)
    hsv = rgb_to_hsv(rgb)
    change(hsv)
    return round_up(_channel(rgb_to_grey(hsv_to_rgb(hsv))))


def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    def brighten(hsv: np.ndarray) -> None:
        hsv[..., 2] = np.clip(hsv[..., 2] + BRIGHTNESS[severity - 1], 0, 1)

    return _through_hsv(images, brighten)


def saturate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    multiplier, offset = SATURATE[severity - 1]

    def change(hsv: np.ndarray) -> None:
        hsv[...] = np.clip(hsv * multiplier + offset, 0, 1)

    return _through_hsv(images, change)


def jpeg_compression(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return jpeg(images, JPEG_QUALITY[severity - 1])


def pixelate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return pixelated(images, PIXELATE[severity - 1])


def elastic_transform(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    alpha, sigma, jitter = (SIDE * value for value in ELASTIC[severity - 1])
    return round_up(elastic(images, alpha, sigma, jitter, rng, constant_border=True))


def quantize(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    levels = np.float32(2 ** QUANTIZE_BITS[severity - 1] - 1)
    steps = np.round(images.astype(np.float32) * levels / np.float32(255))
    return round_uint8(steps * (np.float32(255) / levels))


# ------------------------------------------------------------------------------------------- warps


def _warp(images: np.ndarray, matrices: np.ndarray, translations: np.ndarray | None = None) -> np.ndarray:
    """Affine warp about the centre (13.5, 13.5) unless explicit translations are given."""
    if translations is None:
        translations = CENTRE * (1 - matrices.sum(axis=2))  # t = 13.5 (1 - a11 - a12, 1 - a21 - a22)
    warped = affine_warp_zero(_grey(scale_down(images)), matrices, translations)
    return round_up(_channel(warped))


def _signs(count: int, rng: np.random.Generator, per_image: int = 1) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=(count, per_image))


def shear(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """scikit-image 0.18's `AffineTransform(shear=c)`: [[1, -sin c], [0, cos c]], sign drawn per image."""
    angle = WARP_ANGLE[severity - 1] * _signs(len(images), rng)[:, 0]
    matrices = np.zeros((len(images), 2, 2))
    matrices[:, 0, 0] = 1
    matrices[:, 0, 1] = -np.sin(angle)
    matrices[:, 1, 1] = np.cos(angle)
    return _warp(images, matrices)


def rotate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    angle = WARP_ANGLE[severity - 1] * _signs(len(images), rng)[:, 0]
    cos, sin = np.cos(angle), np.sin(angle)
    matrices = np.stack([np.stack([cos, -sin], axis=1), np.stack([sin, cos], axis=1)], axis=1)
    return _warp(images, matrices)


def scale(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    matrices = np.broadcast_to(SCALE[severity - 1] * np.eye(2), (len(images), 2, 2))
    return _warp(images, matrices)


def translate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    shifts = TRANSLATE[severity - 1] * _signs(len(images), rng, per_image=2)
    return _warp(images, np.broadcast_to(np.eye(2), (len(images), 2, 2)), shifts)


# ------------------------------------------------------------------------------------------- lines


def _add_masks(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return round_up(scale_down(images) + _channel(masks))


def line(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    count = len(images)
    c0 = rng.integers(0, 5, size=count)
    c1 = rng.integers(22, 27, size=count)
    rows = rng.integers(0, 27, size=(count, 2))
    masks = np.stack([line_mask(c0[i], rows[i, 0], c1[i], rows[i, 1]) for i in range(count)])
    return _add_masks(images, masks)


def dotted_line(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    rows = rng.integers(0, 27, size=(len(images), 2))
    masks = np.stack([line_mask(0, r0, 27, r1) for r0, r1 in rows])
    dashed = np.zeros_like(masks)
    dashed[:, :, DASH_COLUMNS] = masks[:, :, DASH_COLUMNS]
    return _add_masks(images, dashed)


def zigzag_points(r0: int, r1: int) -> np.ndarray:
    """The zigzag's corner points (column, row) from column 2, row r0 towards column 25, row r1."""
    theta = np.arctan((r1 - r0) / 23)
    length = 23 / np.cos(theta)
    amplitude, half_period = 2, 2
    points = [(0.0, 0.0)]
    for i in range(int((length - half_period) // (2 * half_period)) + 1):
        points.append(((2 * i + 1) * half_period, (-1) ** i * amplitude))
    whole = 2 * half_period * np.floor(length / (2 * half_period))
    if length != whole:
        points.append((length, points[-1][1] / (2 * (length - whole))))
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return np.array(points) @ rotation.T + np.array([2.0, r0])


def zigzag(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    count = len(images)
    r0 = rng.integers(0, 27, size=count)
    r1 = r0 + rng.integers(-5, 5, size=count)
    values = _grey(scale_down(images)).copy()
    for index in range(count):
        points = zigzag_points(int(r0[index]), int(r1[index]))
        for (c_start, r_start), (c_end, r_end) in zip(points[:-1], points[1:], strict=True):
            values[index] = np.clip(values[index] + line_mask(c_start, r_start, c_end, r_end), 0, 1)
    return round_up(_channel(values))


# -------------------------------------------------------------------------------------- the others


def inverse(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return 255 - images


def stripe(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    result = images.copy()
    result[:, :, STRIPE_COLUMNS] = 255 - images[:, :, STRIPE_COLUMNS]
    return result


def canny_edges(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """scikit-image `feature.canny` with its defaults (σ 1, thresholds 0.1 / 0.2), edges 255."""
    values = _grey(scale_down(images))
    edges = np.stack([feature.canny(image) for image in values])
    return _channel(edges.astype(np.uint8) * 255)
