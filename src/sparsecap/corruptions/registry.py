"""The two corruption suites and their typed entry point, `corrupt`.

Array convention: **channels-last uint8 batches (N, H, W, C)**, as the published corrupted datasets
store them (MNIST-C (N, 28, 28, 1), CIFAR-10-C (N, 32, 32, 3)); the data layer's (N, C, H, W) tensors
are converted at the boundary with `to_channels_last` / `to_channels_first`. Each corruption is a pure
function of (images, severity, numpy Generator): the same images, severity and generator state give the
same output in any process. Random draws are made for the whole batch at once, so the output for one
image depends on its position in the batch and on the batch's size (fixed chunks make it reproducible).
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparsecap.corruptions import frost as frost_module
from sparsecap.corruptions import pessimal
from sparsecap.errors import CorruptionError

SEVERITIES = (1, 2, 3, 4, 5)
# Version of the corruption specification this implements, with this implementation's revision:
# a change to either changes every manifest and cache key.
SPEC_VERSION = "corruptions.md@0d14f068efe4/2"


class Suite(str, enum.Enum):
    """A family of corruptions with its image geometry; the value is the name users type."""

    MNIST_C = "mnist-c"
    CIFAR_C = "cifar-c"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the images the suite takes."""
        return (28, 28, 1) if self is Suite.MNIST_C else (32, 32, 3)


class Kind(str, enum.Enum):
    """The paper's grouping of corruptions, used to order and colour the breakdown figures."""

    NOISE = "noise"
    BLUR = "blur"
    WEATHER = "weather"
    DIGITAL = "digital"
    GEOMETRIC = "geometric"
    OVERLAY = "overlay"


CorruptionFunction = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """One corruption of one suite.

    `published`: in the published data set (MNIST-C's 15 plus identity; CIFAR-10-C's 15 benchmark
    corruptions; the 4 extra CIFAR ones are not). `published_severity`: MNIST-C's single severity
    (None for those with no severity). `has_severity`: False where every severity gives the same
    result (identity, stripe, the lines, canny edges, pessimal noise): severities 1-5 are still accepted.
    `needs_frost`, `needs_pessimal_matrix`: the function also takes the frost pictures or the
    pessimal-noise matrix, files the user supplies (see `assets`).
    """

    name: str
    suite: Suite
    kind: Kind
    implementation: str
    """`module.function` under sparsecap.corruptions, imported on first use: the implementations pull in SciPy,
    scikit-image and OpenCV, which checking a spec's corruption names must not pay for."""
    random: bool
    published: bool
    has_severity: bool = True
    published_severity: int | None = None
    needs_frost: bool = False
    needs_pessimal_matrix: bool = False

    def __call__(
        self,
        images: np.ndarray,
        severity: int,
        rng: np.random.Generator,
        *,
        frost_directory: Path | str | None = None,
        pessimal_matrix: Path | str | None = None,
    ) -> np.ndarray:
        """Corrupt a batch (N, H, W, C) of uint8 images; returns uint8 of the same shape."""
        check_images(images, self.suite)
        check_severity(severity, self)
        if not isinstance(rng, np.random.Generator):
            raise CorruptionError(
                f"{self.name}: rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), "
                f"got {type(rng).__name__}"
            )
        if len(images) == 0:
            return images.copy()
        assets = self.assets(frost_directory=frost_directory, pessimal_matrix=pessimal_matrix)
        result = self.function(images, severity, rng, *assets)
        assert result.dtype == np.uint8 and result.shape == images.shape, (self.name, result.dtype, result.shape)
        return result

    def assets(
        self, *, frost_directory: Path | str | None = None, pessimal_matrix: Path | str | None = None
    ) -> tuple[np.ndarray | tuple[np.ndarray, ...], ...]:
        """The user-supplied data the function takes after (images, severity, rng), loaded and checked.

        Raises an `AssetUnavailableError` when it is missing or unusable: callers writing a whole suite
        catch it to skip the corruption with the message.
        """
        if self.needs_frost:
            side = self.suite.image_shape[0]
            return (frost_module.load_pictures(frost_directory, grey=self.suite is Suite.MNIST_C, side=side),)
        if self.needs_pessimal_matrix:
            return (pessimal.load_matrix(pessimal_matrix),)
        return ()

    @property
    def function(self) -> CorruptionFunction:
        module, function = self.implementation.split(".")
        return getattr(importlib.import_module(f"sparsecap.corruptions.{module}"), function)

    @property
    def severities(self) -> tuple[int, ...]:
        """Severities worth generating: all five, or just 1 where the severity changes nothing."""
        return SEVERITIES if self.has_severity else (1,)


def check_images(images: object, suite: Suite) -> None:
    """Raise CorruptionError unless `images` is a uint8 (N, H, W, C) batch of the suite's geometry."""
    expected = suite.image_shape
    if not isinstance(images, np.ndarray):
        raise CorruptionError(f"images must be a numpy array (N, H, W, C), got {type(images).__name__}")
    if images.dtype != np.uint8:
        hint = ""
        if np.issubdtype(images.dtype, np.floating) and images.size and float(np.nanmax(images)) <= 1.0:
            hint = " (values look like [0, 1]: multiply by 255 and round)"
        raise CorruptionError(f"images must be uint8 in 0..255, got dtype {images.dtype}{hint}")
    if images.ndim != 4 or images.shape[1:] != expected:
        channels_first = images.ndim == 4 and images.shape[1:] == (expected[2], *expected[:2])
        hint = " (channels-first: convert with sparsecap.corruptions.to_channels_last)" if channels_first else ""
        raise CorruptionError(
            f"{suite.value} takes uint8 images of shape (N, {', '.join(map(str, expected))}) "
            f"(channels last), got shape {images.shape}{hint}"
        )


def check_severity(severity: object, corruption: Corruption) -> None:
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer) or severity not in SEVERITIES:
        raise CorruptionError(f"{corruption.name}: severity must be an integer from 1 to 5, got {severity!r}")


# The published MNIST-C's single severity of each corruption (spec §3.1); None: no severity.
MNIST_C_PUBLISHED_SEVERITY: dict[str, int | None] = {
    "identity": None, "shot_noise": 5, "impulse_noise": 4, "glass_blur": 1, "motion_blur": 1, "shear": 2,
    "scale": 3, "rotate": 2, "brightness": 5, "translate": 3, "stripe": None, "fog": 5, "spatter": 4,
    "dotted_line": None, "zigzag": None, "canny_edges": None,
}


def _cifar(name: str, kind: Kind, implementation: str, random: bool, published: bool = True,
           **extra: object) -> Corruption:
    return Corruption(name, Suite.CIFAR_C, kind, implementation, random, published, **extra)


def _mnist(name: str, kind: Kind, random: bool, **extra: object) -> Corruption:
    """An MNIST-C corruption, implemented by the function of its name in `mnist_c`."""
    return Corruption(
        name, Suite.MNIST_C, kind, f"mnist_c.{name}", random, name in MNIST_C_PUBLISHED_SEVERITY,
        published_severity=MNIST_C_PUBLISHED_SEVERITY.get(name), **extra,
    )


_N, _B, _W, _D, _G, _O = Kind.NOISE, Kind.BLUR, Kind.WEATHER, Kind.DIGITAL, Kind.GEOMETRIC, Kind.OVERLAY
# In the order the reference generator writes them: the 15 benchmark corruptions, then the 4 extra.
_CIFAR_C = (
    _cifar("gaussian_noise", _N, "noise.gaussian_noise", True),
    _cifar("shot_noise", _N, "noise.shot_noise", True),
    _cifar("impulse_noise", _N, "noise.impulse_noise", True),
    _cifar("defocus_blur", _B, "blur.defocus_blur", False),
    _cifar("glass_blur", _B, "blur.glass_blur", True),
    _cifar("motion_blur", _B, "blur.motion_blur", True),
    _cifar("zoom_blur", _B, "blur.zoom_blur", False),
    _cifar("snow", _W, "weather.snow", True),
    _cifar("frost", _W, "weather.frost", True, needs_frost=True),
    _cifar("fog", _W, "weather.fog", True),
    _cifar("brightness", _W, "digital.brightness", False),
    _cifar("contrast", _D, "digital.contrast", False),
    _cifar("elastic_transform", _D, "digital.elastic_transform", True),
    _cifar("pixelate", _D, "digital.pixelate", False),
    _cifar("jpeg_compression", _D, "digital.jpeg_compression", False),
    _cifar("speckle_noise", _N, "noise.speckle_noise", True, published=False),
    _cifar("gaussian_blur", _B, "blur.gaussian_blur", False, published=False),
    _cifar("spatter", _W, "weather.spatter", True, published=False),
    _cifar("saturate", _D, "digital.saturate", False, published=False),
)
# The published 15 and identity in the reference module's CORRUPTIONS order, then the rest of its functions.
_MNIST_C = (
    _mnist("identity", _O, False, has_severity=False),
    _mnist("shot_noise", _N, True),
    _mnist("impulse_noise", _N, True),
    _mnist("glass_blur", _B, True),
    _mnist("motion_blur", _B, True),
    _mnist("shear", _G, True),
    _mnist("scale", _G, False),
    _mnist("rotate", _G, True),
    _mnist("brightness", _W, False),
    _mnist("translate", _G, True),
    _mnist("stripe", _O, False, has_severity=False),
    _mnist("fog", _W, True),
    _mnist("spatter", _W, True),
    _mnist("dotted_line", _O, True, has_severity=False),
    _mnist("zigzag", _O, True, has_severity=False),
    _mnist("canny_edges", _O, False, has_severity=False),
    _mnist("gaussian_noise", _N, True),
    _mnist("speckle_noise", _N, True),
    _mnist("pessimal_noise", _N, True, has_severity=False, needs_pessimal_matrix=True),
    _mnist("gaussian_blur", _B, False),
    _mnist("defocus_blur", _B, False),
    _mnist("zoom_blur", _B, False),
    _mnist("snow", _W, True),
    _mnist("frost", _W, True, needs_frost=True),
    _mnist("contrast", _D, False),
    _mnist("saturate", _D, False),
    _mnist("jpeg_compression", _D, False),
    _mnist("pixelate", _D, False),
    _mnist("elastic_transform", _D, True),
    _mnist("quantize", _D, False),
    _mnist("line", _O, True, has_severity=False),
    _mnist("inverse", _O, False, has_severity=False),
)
_REGISTRY: dict[Suite, dict[str, Corruption]] = {
    Suite.CIFAR_C: {corruption.name: corruption for corruption in _CIFAR_C},
    Suite.MNIST_C: {corruption.name: corruption for corruption in _MNIST_C},
}


def parse_suite(suite: Suite | str) -> Suite:
    try:
        return Suite(suite.value if isinstance(suite, Suite) else str(suite).strip().lower())
    except ValueError:
        raise CorruptionError(
            f"unknown corruption suite {suite!r}; valid suites: {', '.join(s.value for s in Suite)}"
        ) from None


def list_corruptions(suite: Suite | str, *, published_only: bool = False) -> list[str]:
    """Names of a suite's corruptions, in the reference generators' order."""
    corruptions = _REGISTRY[parse_suite(suite)].values()
    return [corruption.name for corruption in corruptions if corruption.published or not published_only]


def get_corruption(name: str, suite: Suite | str) -> Corruption:
    """The corruption called `name` in `suite`; unknown names fail with the list of valid ones."""
    parsed = parse_suite(suite)
    try:
        return _REGISTRY[parsed][name]
    except KeyError:
        raise CorruptionError(
            f"unknown {parsed.value} corruption {name!r}; valid names: {', '.join(list_corruptions(parsed))}"
        ) from None


def corrupt(
    images: np.ndarray,
    name: str,
    severity: int,
    rng: np.random.Generator,
    *,
    suite: Suite | str,
    frost_directory: Path | str | None = None,
    pessimal_matrix: Path | str | None = None,
) -> np.ndarray:
    """Apply one corruption of `suite` at `severity` (1-5) to uint8 images (N, H, W, C)."""
    return get_corruption(name, suite)(images, severity, rng, frost_directory=frost_directory,
                                       pessimal_matrix=pessimal_matrix)


def suite_for_dataset(dataset: str) -> Suite:
    """The suite whose geometry a dataset has: MNIST-C for (Fashion-)MNIST, CIFAR-C for CIFAR-10/100."""
    suites = {"mnist": Suite.MNIST_C, "fashion-mnist": Suite.MNIST_C, "cifar10": Suite.CIFAR_C,
              "cifar100": Suite.CIFAR_C}
    key = getattr(dataset, "value", dataset)
    if key not in suites:
        raise CorruptionError(
            f"no corruption suite for dataset {key!r}: the corruptions are defined for 28×28 grey images "
            f"(mnist, fashion-mnist: MNIST-C) and 32×32 colour images (cifar10, cifar100: CIFAR-C)"
        )
    return suites[key]


def to_channels_last(images: np.ndarray | Sequence) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W, C) (accepts a torch tensor too), contiguous."""
    array = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1))


def to_channels_first(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W), contiguous."""
    return np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2))
