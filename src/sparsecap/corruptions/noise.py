"""Noise corruptions of the CIFAR-10-C suite (spec §2.2), and the primitives MNIST-C reuses.

Each suite function maps uint8 images (N, H, W, C) to uint8 of the same shape; `severity` is 1..5.
Primitives return floats in [0, 1] and leave the output cast to the suite (truncate for CIFAR,
round for MNIST, spec §1.1).
"""

from __future__ import annotations

import numpy as np

from sparsecap.corruptions.ops import salt_and_pepper, scale_down, truncate_up

CIFAR_GAUSSIAN_STD = (0.04, 0.06, 0.08, 0.09, 0.10)
CIFAR_SHOT_PHOTONS = (500, 250, 100, 75, 50)
CIFAR_IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)
CIFAR_SPECKLE_STD = (0.06, 0.10, 0.12, 0.16, 0.20)


def add_gaussian(images: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    values = scale_down(images)
    return np.clip(values + rng.normal(size=values.shape, scale=std), 0, 1)


def poisson(images: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    values = scale_down(images)
    return np.clip(rng.poisson(values * photons) / photons, 0, 1)


def impulse(images: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    return salt_and_pepper(scale_down(images), amount, rng)


def speckle(images: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    values = scale_down(images)
    return np.clip(values + values * rng.normal(size=values.shape, scale=std), 0, 1)


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return truncate_up(add_gaussian(images, CIFAR_GAUSSIAN_STD[severity - 1], rng))


def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return truncate_up(poisson(images, CIFAR_SHOT_PHOTONS[severity - 1], rng))


def impulse_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return truncate_up(impulse(images, CIFAR_IMPULSE_AMOUNT[severity - 1], rng))


def speckle_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return truncate_up(speckle(images, CIFAR_SPECKLE_STD[severity - 1], rng))
