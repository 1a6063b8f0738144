"""Architectures: a registry of families and one factory."""

from sparsecap.models.registry import (
    ArchitectureFamily,
    ModelConfig,
    architecture_family,
    create_model,
    depth_family_base,
    list_architectures,
    validate_config,
    width_family_base,
)

__all__ = [
    "ArchitectureFamily",
    "ModelConfig",
    "architecture_family",
    "create_model",
    "depth_family_base",
    "list_architectures",
    "validate_config",
    "width_family_base",
]
