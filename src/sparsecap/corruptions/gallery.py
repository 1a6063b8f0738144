"""Picture grids of a suite's corruptions (docs/corruptions-*.png): every corruption at chosen severities.

Also the sample images the grids and the benchmark use where CIFAR is not available offline:
32×32 colour pictures synthesised from MNIST digits and simple scenes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import ndimage

from sparsecap.corruptions.registry import SEVERITIES, Suite, get_corruption, list_corruptions
from sparsecap.errors import AssetUnavailableError, CorruptionError


def colour_images(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """32×32×3 uint8 pictures from (N, 28, 28) digits: a coloured digit over a textured colour background.

    Each picture gets a smooth random colour field (a blurred noise, like a photograph's background),
    a brighter gradient, and the digit upsampled to 32×32 in a random saturated colour.
    """
    if digits.ndim != 3 or digits.shape[1:] != (28, 28):
        raise CorruptionError(f"colour_images takes digits of shape (N, 28, 28), got {digits.shape}")
    count = len(digits)
    zoomed = ndimage.zoom(digits.astype(np.float64) / 255, (1, 32 / 28, 32 / 28), order=1)[:, :32, :32]
    background = ndimage.gaussian_filter(rng.random((count, 32, 32, 3)), (0, 4, 4, 0))
    background = (background - background.min(axis=(1, 2, 3), keepdims=True))
    background /= background.max(axis=(1, 2, 3), keepdims=True)
    ramp = np.linspace(0.15, 0.85, 32)[None, :, None, None] * rng.random((count, 1, 1, 3))
    background = 0.55 * background + 0.45 * ramp
    colour = rng.random((count, 1, 1, 3))
    colour[np.arange(count), 0, 0, rng.integers(0, 3, count)] = 1.0  # one channel full: a saturated colour
    alpha = zoomed[..., None]
    return np.clip(np.rint(255 * ((1 - alpha) * background + alpha * colour)), 0, 255).astype(np.uint8)


def scene_images() -> np.ndarray:
    """Two hand-made 32×32 scenes: sky, grass and a sun; a red car-like box on a grey road."""
    y, x = np.mgrid[0:32, 0:32] / 31.0
    sky = np.stack([0.35 + 0.3 * y, 0.55 + 0.3 * y, 0.95 - 0.1 * y], axis=-1)
    scene = np.where((y > 0.62)[..., None], np.stack([0.2 + 0.1 * x, 0.6 - 0.2 * y, 0.15 + 0 * x], -1), sky)
    sun = (x - 0.75) ** 2 + (y - 0.25) ** 2 < 0.012
    scene[sun] = (1.0, 0.9, 0.3)
    road = np.stack([0.45 + 0 * x, 0.45 + 0 * x, 0.5 + 0 * x], axis=-1)
    road[y < 0.45] = np.stack([0.6 + 0.2 * y, 0.75 + 0.1 * x, 0.9 + 0 * x], axis=-1)[y < 0.45]
    car = (np.abs(x - 0.5) < 0.3) & (np.abs(y - 0.6) < 0.12)
    road[car] = (0.85, 0.1, 0.1)
    road[(np.abs(x - 0.5) < 0.18) & (np.abs(y - 0.43) < 0.07)] = (0.6, 0.8, 1.0)
    for wheel in (0.32, 0.68):
        road[(x - wheel) ** 2 + (y - 0.74) ** 2 < 0.004] = (0.05, 0.05, 0.05)
    return np.rint(np.stack([scene, road]) * 255).astype(np.uint8)


def _column_rng(seed: int, severity: int, has_severity: bool) -> np.random.Generator:
    """A severity column's generator: one per severity, but one for all columns where severity changes nothing,
    so that a reader does not take a new random draw for an effect of severity."""
    return np.random.default_rng([seed, severity if has_severity else 0])


def grid_rows(
    images: np.ndarray,
    suite: Suite,
    severities: Sequence[int],
    seed: int,
    frost_directory: Path | str | None,
) -> tuple[list[tuple[str, list[np.ndarray]]], list[str]]:
    """A grid's rows, (label, the images corrupted at each severity), and the corruptions left out: frost without
    pictures, pessimal_noise without its matrix. A corruption without severity is alike in every column."""
    if not len(images) or not severities:
        raise CorruptionError(f"a grid needs at least one image and one severity, got {len(images)} image(s) "
                              f"and severities {tuple(severities)}")
    skipped = []
    rows = []
    for name in list_corruptions(suite):
        corruption = get_corruption(name, suite)
        try:
            row = [
                corruption(images, severity, _column_rng(seed, severity, corruption.has_severity),
                           frost_directory=frost_directory)
                for severity in severities
            ]
        except AssetUnavailableError:
            skipped.append(name)
            continue
        label = name + ("" if corruption.published else " (extra)")
        if corruption.published_severity is not None:
            label += f"\npublished: {corruption.published_severity}"
        rows.append((label, row))
    return rows, skipped


def draw_grid(
    images: np.ndarray,
    suite: Suite,
    path: Path,
    *,
    severities: Sequence[int] = (1, 3, 5),
    seed: int = 0,
    frost_directory: Path | str | None = None,
    title: str = "",
) -> list[str]:
    """One row per corruption (`grid_rows`): for each image, the clean image then the chosen severities.
    Returns the names of the corruptions left out."""
    rows, skipped = grid_rows(images, suite, severities, seed, frost_directory)
    columns = len(images) * (1 + len(severities))
    figure = Figure(figsize=(0.62 * columns + 1.6, 0.66 * len(rows) + 0.7), layout="constrained")
    axes = figure.subplots(len(rows), columns, squeeze=False)
    grey = images.shape[-1] == 1
    for row_index, (label, corrupted) in enumerate(rows):
        for image_index in range(len(images)):
            panels = [images[image_index]] + [result[image_index] for result in corrupted]
            headings = ["clean"] + [f"sev {severity}" for severity in severities]
            for offset, (panel, heading) in enumerate(zip(panels, headings, strict=True)):
                axis = axes[row_index, image_index * (1 + len(severities)) + offset]
                axis.imshow(panel[..., 0] if grey else panel, cmap="gray" if grey else None, vmin=0, vmax=255,
                            interpolation="nearest")
                axis.set_xticks([])
                axis.set_yticks([])
                if row_index == 0:
                    axis.set_title(heading, fontsize=7)
                if offset == 0 and image_index == 0:
                    axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    figure.suptitle(title or f"{suite.value}: every corruption at severities {', '.join(map(str, severities))}",
                    fontsize=10)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=90, facecolor="white")
    return skipped


__all__ = ["SEVERITIES", "colour_images", "draw_grid", "grid_rows", "scene_images"]
