"""Corrupted-data robustness: the MNIST-C and CIFAR-10-C / CIFAR-100-C corruptions, implemented here.

Images are channels-last uint8 batches (N, H, W, C); see `sparsecap.corruptions.registry`. The
specification followed is the project's corruption spec (names, algorithms, per-severity parameters,
randomness); how it is followed, and where it is not, is in docs/corruptions.md.
"""

from sparsecap.lazy_imports import lazy_package

__getattr__, __all__ = lazy_package(__name__, {
    "frost": ["FROST_ENV_VAR", "frost_directory"],
    "registry": ["SEVERITIES", "SPEC_VERSION", "Corruption", "Kind", "Suite", "check_images", "corrupt",
                 "get_corruption", "list_corruptions", "parse_suite", "suite_for_dataset", "to_channels_first",
                 "to_channels_last"],
})
