"""Weather corruptions of the CIFAR-10-C suite (snow, frost, fog, spatter; spec §2.2) and shared primitives."""

from __future__ import annotations

import cv2
import numpy as np

from sparsecap.corruptions import frost as frost_pictures
from sparsecap.corruptions.ops import (
    OPENCV_GREY_WEIGHTS,
    clipped_zoom,
    gaussian,
    motion_blur,
    plasma_fractal,
    scale_down,
    truncate_uint8,
    truncate_up,
)

# loc, scale, zoom, threshold, blur radius, blur sigma, blend
CIFAR_SNOW = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
CIFAR_FROST = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # image weight, frost weight
CIFAR_FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1.0, 2), (1.5, 1.75))  # strength, decay
CIFAR_FOG_MAP = 32
# loc, scale, sigma1, threshold, sigma2 (mud) / intensity (water), mud?
CIFAR_SPATTER = (
    (0.62, 0.1, 0.7, 0.7, 0.5, False),
    (0.65, 0.1, 0.8, 0.7, 0.5, False),
    (0.65, 0.3, 1.0, 0.69, 0.5, False),
    (0.65, 0.1, 0.7, 0.69, 0.6, True),
    (0.65, 0.1, 0.5, 0.68, 0.6, True),
)
WATER = np.array([175, 238, 238], dtype=np.float32) / np.float32(255)  # pale turquoise, RGB
MUD = np.array([63, 42, 20]) / 255.0  # brown, RGB
EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)


def snow_layer(
    count: int, side: int, parameters: tuple[float, ...], rng: np.random.Generator
) -> np.ndarray:
    """The blurred snow flakes, float in [0, 1], (N, side, side, 1): normal field, zoom, threshold, smear.

    Draws: the normal field, then one angle per image on [-135°, -45°].
    """
    loc, scale, zoom, threshold, radius, sigma = parameters[:6]
    field = rng.normal(size=(count, side, side, 1), loc=loc, scale=scale)
    field = clipped_zoom(field, zoom)
    field[field < threshold] = 0
    flakes = (np.clip(field, 0, 1) * 255).astype(np.uint8)
    angles = rng.uniform(-135, -45, size=count)
    return motion_blur(flakes, radius, sigma, angles) / 255.0


def snow(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    parameters = CIFAR_SNOW[severity - 1]
    blend = parameters[6]
    values = scale_down(images, np.float32)
    layer = snow_layer(len(images), images.shape[1], parameters, rng)
    grey = (values @ OPENCV_GREY_WEIGHTS.astype(np.float32))[..., None]
    values = blend * values + (1 - blend) * np.maximum(values, grey * 1.5 + 0.5)
    return truncate_up(values + layer + np.rot90(layer, k=2, axes=(1, 2)))


def frost(images: np.ndarray, severity: int, rng: np.random.Generator, pictures: tuple[np.ndarray, ...]) -> np.ndarray:
    image_weight, frost_weight = CIFAR_FROST[severity - 1]
    crops = frost_pictures.crops(pictures, len(images), images.shape[1], rng)
    return truncate_uint8(image_weight * images.astype(np.float64) + frost_weight * crops)


def fogged(images: np.ndarray, strength: float, decay: float, map_side: int, rng: np.random.Generator,
           chunk: int = 64) -> np.ndarray:
    """Add strength × a plasma fractal (top-left corner of a map_side map), rescaled by M/(M + strength)."""
    values = scale_down(images)
    count, height, width = images.shape[:3]
    fog = np.empty((count, height, width), dtype=np.float64)
    for start in range(0, count, chunk):  # big maps (MNIST: 256²) are drawn a chunk at a time
        stop = min(count, start + chunk)
        fog[start:stop] = plasma_fractal(stop - start, map_side, decay, rng)[:, :height, :width]
    maximum = values.max(axis=(1, 2, 3), keepdims=True)
    values = values + strength * fog[..., None]
    return np.clip(values * maximum / (maximum + strength), 0, 1)


def fog(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    strength, decay = CIFAR_FOG[severity - 1]
    return truncate_up(fogged(images, strength, decay, CIFAR_FOG_MAP, rng))


def liquid_layer(count: int, side: int, loc: float, scale: float, sigma: float, threshold: float,
                 rng: np.random.Generator) -> np.ndarray:
    """The only draw of spatter: a normal field, Gaussian-filtered, values below the threshold zeroed."""
    layer = rng.normal(size=(count, side, side), loc=loc, scale=scale)
    layer = gaussian(layer, sigma)
    layer[layer < threshold] = 0
    return layer


def mud_mask(layer: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    mask = gaussian((layer > threshold).astype(np.float32), sigma)
    mask[mask < 0.8] = 0
    return mask


def _water_drops(layer8: np.ndarray) -> np.ndarray:
    """OpenCV steps 5-10 of water spatter on one uint8 layer: the embossed distance-to-edge map D."""
    distance = 255 - cv2.Canny(layer8, 50, 150)
    distance = cv2.distanceTransform(distance, cv2.DIST_L2, 5)
    _, distance = cv2.threshold(distance, 20, 20, cv2.THRESH_TRUNC)
    distance = cv2.blur(distance, (3, 3)).astype(np.uint8)
    distance = cv2.equalizeHist(distance)
    distance = cv2.filter2D(distance, cv2.CV_8U, EMBOSS)
    return cv2.blur(distance, (3, 3)).astype(np.float32)


def spatter(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    loc, scale, sigma, threshold, last, mud = CIFAR_SPATTER[severity - 1]
    values = scale_down(images, np.float32)
    layer = liquid_layer(len(images), images.shape[1], loc, scale, sigma, threshold, rng)
    if mud:
        mask = mud_mask(layer, threshold, last)[..., None]
        return truncate_up(values * (1 - mask) + MUD.astype(np.float32) * mask)
    # truncate to uint8 as the reference does; values above 1 would wrap (modulo 256), never clip
    layer8 = (np.floor(layer * 255).astype(np.int64) % 256).astype(np.uint8)
    drops = layer8.astype(np.float32) * np.stack([_water_drops(one) for one in layer8])
    peak = drops.max(axis=(1, 2), keepdims=True)
    # an image whose layer has no drop at all (peak 0) gets none (the reference would divide 0 by 0)
    drops = np.divide(drops, peak, out=np.zeros_like(drops), where=peak > 0) * np.float32(last)
    return truncate_up(values + drops[..., None] * WATER)
