"""The architecture families and their settings: names, base widths and depths, the depths that exist, input limits.

Facts only, no torch, so a spec is checked without importing it; `sparsecap.models.registry` builds the models.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsecap.errors import SparsecapError
from sparsecap.models.layouts import RESNET_LAYOUTS, VGG_LAYOUTS


@dataclass(frozen=True)
class ArchitectureFamily:
    """One architecture at any width and depth, and the paper's family settings."""

    name: str
    base_width: int
    """The width family's base (the model every wider one is masked back to)."""
    depth_family_width: int
    """Width at which the depth family is built; its shallowest member is that family's base."""
    depths: tuple[int, ...] | None
    """The depths that exist (None: any depth >= 1); named members such as vgg16 are depth 16."""
    description: str
    min_input_size: int = 1
    """Smallest image height and width the network can take."""
    batch_norm: bool = False
    """Whether it has batch norms, whose statistics evaluation may recompute (`[training] batch_norm_statistics`)."""

    @property
    def base_depth(self) -> int:
        """The shallowest member: the depth family's base, and the depth of the width family."""
        return min(self.depths) if self.depths else 1


@dataclass(frozen=True)
class ModelConfig:
    """One concrete model: architecture, width and depth."""

    architecture: str
    width: int
    depth: int


_FAMILIES: dict[str, ArchitectureFamily] = {
    family.name: family
    for family in (
        ArchitectureFamily(
            name="mlp",
            base_width=2**7,
            depth_family_width=2**9,
            depths=None,
            description="fully connected, ReLU; width = units per hidden layer, depth = hidden layers",
        ),
        ArchitectureFamily(
            name="vgg",
            base_width=16,
            depth_family_width=64,
            depths=tuple(sorted(VGG_LAYOUTS)),
            description="CIFAR-style VGG11/13/16 with batch norm; width = first layer's channels (64: vanilla)",
            min_input_size=8,
            batch_norm=True,
        ),
        ArchitectureFamily(
            name="resnet",
            base_width=16,
            depth_family_width=64,
            depths=tuple(sorted(RESNET_LAYOUTS)),
            description="CIFAR-style ResNet18/34 (basic) and 50 (bottleneck); width = stem channels (64: vanilla)",
            min_input_size=8,
            batch_norm=True,
        ),
    )
}


def list_architectures() -> list[str]:
    return sorted(_FAMILIES)


def list_models() -> list[str]:
    """Every name `parse_model_name` takes: the families and their named members (vgg11, resnet50, ...)."""
    members = [f"{family.name}{depth}" for family in _FAMILIES.values() for depth in family.depths or ()]
    return list_architectures() + members


def parse_model_name(name: str) -> tuple[ArchitectureFamily, int | None]:
    """A family name ("vgg") or a named member ("vgg16" → vgg at depth 16)."""
    if name in _FAMILIES:
        return _FAMILIES[name], None
    for family in _FAMILIES.values():
        suffix = name.removeprefix(family.name)
        if suffix != name and suffix.isdigit() and family.depths and int(suffix) in family.depths:
            return family, int(suffix)
    raise SparsecapError(f"unknown architecture {name!r}; valid: {', '.join(list_models())}")


def architecture_family(name: str) -> ArchitectureFamily:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise SparsecapError(
            f"unknown architecture {name!r}; valid architectures: {', '.join(list_architectures())}"
        ) from None


MAX_ANY_DEPTH = 1024
"""The deepest member built of a family with any depth (MLP hidden layers). The paper's depth family stops at 8;
a model of a million layers would take minutes to build before a check of its size could refuse it."""


def depth_problem(family: ArchitectureFamily, depth: int) -> str | None:
    """Why `family` has no member of `depth` (None: it has one)."""
    if family.depths is not None and depth not in family.depths:
        return f"{family.name} has no depth {depth}; valid depths: {', '.join(map(str, family.depths))}"
    if family.depths is None and depth > MAX_ANY_DEPTH:
        return f"{family.name} has no depth {depth}: sparsecap builds 1 to {MAX_ANY_DEPTH} hidden layers"
    return None


def validate_config(config: ModelConfig) -> None:
    """Raise a clear error for a width or depth the architecture cannot take."""
    family = architecture_family(config.architecture)
    if isinstance(config.width, bool) or not isinstance(config.width, int) or config.width < 1:
        raise SparsecapError(f"width must be a positive integer, got {config.width!r}")
    if isinstance(config.depth, bool) or not isinstance(config.depth, int) or config.depth < 1:
        raise SparsecapError(f"depth must be an integer >= 1, got {config.depth!r}")
    problem = depth_problem(family, config.depth)
    if problem is not None:
        raise SparsecapError(problem)


def validate_input(family: ArchitectureFamily, input_shape: tuple[int, int, int]) -> None:
    if min(input_shape[1:]) < family.min_input_size:
        raise SparsecapError(
            f"{family.name} cannot take {'x'.join(map(str, input_shape))} inputs: images must be at least "
            f"{family.min_input_size}x{family.min_input_size} pixels"
        )


def width_family_base(architecture: str) -> ModelConfig:
    family = architecture_family(architecture)
    return ModelConfig(architecture, family.base_width, family.base_depth)


def depth_family_base(architecture: str) -> ModelConfig:
    family = architecture_family(architecture)
    return ModelConfig(architecture, family.depth_family_width, family.base_depth)


def default_base(config: ModelConfig) -> ModelConfig:
    """What a model is masked to by default: a deeper member, to the shallowest at the same width (depth
    family); the shallowest member, to the same architecture at the family's base width (width family)."""
    family = architecture_family(config.architecture)
    if config.depth != family.base_depth:
        return ModelConfig(config.architecture, config.width, family.base_depth)
    return width_family_base(config.architecture)
