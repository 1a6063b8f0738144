"""Architectures: a registry of families and one factory."""

from sparsecap.lazy_imports import lazy_package

__getattr__, __all__ = lazy_package(__name__, {
    "architectures": [
        "ArchitectureFamily",
        "ModelConfig",
        "architecture_family",
        "default_base",
        "depth_family_base",
        "list_architectures",
        "list_models",
        "parse_model_name",
        "validate_config",
        "validate_input",
        "width_family_base",
    ],
    "registry": ["create_model", "create_shape_only_model"],
})
