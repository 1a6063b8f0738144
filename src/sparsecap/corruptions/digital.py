"""Digital corruptions of the CIFAR-10-C suite (brightness, contrast, saturate, JPEG, pixelate, elastic)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from sparsecap.corruptions.ops import hsv_to_rgb, rgb_to_hsv, scale_down, truncate_up

CIFAR_BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
CIFAR_CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
CIFAR_SATURATE = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))  # multiplier, offset
CIFAR_JPEG_QUALITY = (80, 65, 58, 50, 40)
CIFAR_PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
# alpha (displacement), sigma (smoothing), affine jitter, as fractions of the side (spec §2.2)
CIFAR_ELASTIC = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))


def contrasted(images: np.ndarray, factor: float, *, per_channel: bool = True) -> np.ndarray:
    values = scale_down(images)
    axes = (1, 2) if per_channel else (1, 2, 3)
    means = values.mean(axis=axes, keepdims=True)
    return np.clip((values - means) * factor + means, 0, 1)


def _pil_mode(images: np.ndarray) -> str:
    return "L" if images.shape[-1] == 1 else "RGB"


def _per_image(images: np.ndarray, transform) -> np.ndarray:  # noqa: ANN001 - PIL image -> PIL image
    """Apply a PIL transform to every image; grey images travel as mode L, colour as RGB."""
    mode = _pil_mode(images)
    out = np.empty_like(images)
    for index, image in enumerate(images):
        picture = Image.fromarray(image[..., 0] if mode == "L" else image, mode=mode)
        result = np.asarray(transform(picture))
        out[index] = result[..., None] if mode == "L" else result
    return out


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    """Pillow JPEG round trip at `quality`, other settings Pillow's defaults (4:2:0 for RGB)."""

    def round_trip(picture: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=quality)
        buffer.seek(0)
        return Image.open(buffer).convert(picture.mode)

    return _per_image(images, round_trip)


def pixelated(images: np.ndarray, factor: float) -> np.ndarray:
    """Pillow BOX resize down to floor(side · factor), then BOX back up."""
    side = images.shape[1]
    small = int(side * factor)
    return _per_image(
        images, lambda picture: picture.resize((small, small), Image.BOX).resize((side, side), Image.BOX)
    )


def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    hsv = rgb_to_hsv(scale_down(images))
    hsv[..., 2] = np.clip(hsv[..., 2] + CIFAR_BRIGHTNESS[severity - 1], 0, 1)
    return truncate_up(hsv_to_rgb(hsv))


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return truncate_up(contrasted(images, CIFAR_CONTRAST[severity - 1]))


def saturate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    multiplier, offset = CIFAR_SATURATE[severity - 1]
    hsv = rgb_to_hsv(scale_down(images))
    hsv[..., 1] = np.clip(hsv[..., 1] * multiplier + offset, 0, 1)
    return truncate_up(hsv_to_rgb(hsv))


def jpeg_compression(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return jpeg(images, CIFAR_JPEG_QUALITY[severity - 1])


def pixelate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return pixelated(images, CIFAR_PIXELATE[severity - 1])


def elastic(
    images: np.ndarray,
    alpha: float,
    sigma: float,
    jitter: float,
    rng: np.random.Generator,
    *,
    constant_border: bool,
) -> np.ndarray:
    """Random affine (OpenCV) then a smoothed random displacement field (SciPy), float32 in [0, 1].

    Draws per image, in the spec's order: the 3×2 affine jitter; then, for the whole batch, the dx
    fields and the dy fields. CIFAR reflects at borders; MNIST (`constant_border`) fills with 0.
    """
    count, height, width, channels = images.shape
    values = scale_down(images, np.float32)
    centre = np.float32(height) // 2
    size = min(height, width) // 3
    reference = np.float32(
        [[centre + size, centre + size], [centre + size, centre - size], [centre - size, centre - size]]
    )
    jittered = reference[None] + rng.uniform(-jitter, jitter, size=(count, 3, 2)).astype(np.float32)
    border = cv2.BORDER_CONSTANT if constant_border else cv2.BORDER_REFLECT_101
    warped = np.empty_like(values)
    for index in range(count):
        matrix = cv2.getAffineTransform(reference, jittered[index])
        result = cv2.warpAffine(values[index], matrix, (width, height), borderMode=border)
        warped[index] = result.reshape(height, width, channels)
    shifts = []
    for _ in range(2):  # dx, then dy
        field = rng.uniform(-1, 1, size=(count, height, width))
        smoothed = ndimage.gaussian_filter(field, (0, sigma, sigma), mode="reflect", truncate=3.0)
        shifts.append((smoothed * alpha).astype(np.float32)[..., None])
    dx, dy = shifts
    mode = "constant" if constant_border else "reflect"
    sampled = np.empty_like(warped)
    y, x, z = np.meshgrid(np.arange(height), np.arange(width), np.arange(channels), indexing="ij")
    for index in range(count):  # SciPy's own order-1 sampler, image by image (bounded memory)
        coordinates = np.stack([y + dy[index], x + dx[index], z]).reshape(3, -1)
        sampled[index] = ndimage.map_coordinates(warped[index], coordinates, order=1, mode=mode).reshape(
            height, width, channels
        )
    return np.clip(sampled, 0, 1)


def elastic_transform(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    side = images.shape[1]
    alpha, sigma, jitter = (side * value for value in CIFAR_ELASTIC[severity - 1])
    return truncate_up(elastic(images, alpha, sigma, jitter, rng, constant_border=False))
