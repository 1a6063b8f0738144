"""A registry of architectures and one `create_model` factory (as in timm).

Each architecture says how to build a member of its width or depth family and which model it is
masked back to by default, so the rest of the pipeline never special-cases an architecture.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from sparsecap.data import DatasetInfo
from sparsecap.errors import SparsecapError
from sparsecap.models.mlp import build_mlp
from sparsecap.models.normalize import Normalize

Builder = Callable[[tuple[int, int, int], int, int, int], nn.Module]


@dataclass(frozen=True)
class ArchitectureFamily:
    """How to build one architecture at any width and depth, and the paper's family settings."""

    name: str
    build: Builder
    base_width: int
    """The width family's base (the model every wider one is masked back to)."""
    depth_family_width: int
    """Width at which the depth family is built; its shallowest member is that family's base."""
    depths: tuple[int, ...] | None
    """The depths that exist (None: any depth >= 1)."""
    description: str


@dataclass(frozen=True)
class ModelConfig:
    """One concrete model: architecture, width and depth."""

    architecture: str
    width: int
    depth: int


_REGISTRY: dict[str, ArchitectureFamily] = {}


def register(family: ArchitectureFamily) -> ArchitectureFamily:
    _REGISTRY[family.name] = family
    return family


register(
    ArchitectureFamily(
        name="mlp",
        build=build_mlp,
        base_width=2**7,
        depth_family_width=2**9,
        depths=None,
        description="fully connected, ReLU; width = units per hidden layer, depth = hidden layers",
    )
)


def list_architectures() -> list[str]:
    return sorted(_REGISTRY)


def architecture_family(name: str) -> ArchitectureFamily:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SparsecapError(
            f"unknown architecture {name!r}; valid architectures: {', '.join(list_architectures())}"
        ) from None


def validate_config(config: ModelConfig) -> None:
    """Raise a clear error for a width or depth the architecture cannot take."""
    family = architecture_family(config.architecture)
    if isinstance(config.width, bool) or not isinstance(config.width, int) or config.width < 1:
        raise SparsecapError(f"width must be a positive integer, got {config.width!r}")
    if isinstance(config.depth, bool) or not isinstance(config.depth, int) or config.depth < 1:
        raise SparsecapError(f"depth must be an integer >= 1, got {config.depth!r}")
    if family.depths is not None and config.depth not in family.depths:
        valid = ", ".join(map(str, family.depths))
        raise SparsecapError(f"{family.name} has no depth {config.depth}; valid depths: {valid}")


def create_model(config: ModelConfig, dataset: DatasetInfo) -> nn.Sequential:
    """The model for `dataset`: pixel normalisation followed by the architecture's network."""
    validate_config(config)
    family = architecture_family(config.architecture)
    network = family.build(dataset.input_shape, dataset.num_classes, config.width, config.depth)
    return nn.Sequential(OrderedDict(normalize=Normalize(dataset.mean, dataset.std), network=network))


def width_family_base(architecture: str) -> ModelConfig:
    family = architecture_family(architecture)
    return ModelConfig(architecture, family.base_width, 1)


def depth_family_base(architecture: str) -> ModelConfig:
    family = architecture_family(architecture)
    return ModelConfig(architecture, family.depth_family_width, 1)
