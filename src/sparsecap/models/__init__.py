"""Architectures: a registry of families and one factory."""

from sparsecap.models.registry import (
    ArchitectureFamily,
    ModelConfig,
    architecture_family,
    create_model,
    default_base,
    depth_family_base,
    list_architectures,
    list_models,
    parse_model_name,
    validate_config,
    validate_input,
    width_family_base,
)

__all__ = [
    "ArchitectureFamily",
    "ModelConfig",
    "architecture_family",
    "create_model",
    "default_base",
    "depth_family_base",
    "list_architectures",
    "list_models",
    "parse_model_name",
    "validate_config",
    "validate_input",
    "width_family_base",
]
