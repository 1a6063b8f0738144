"""Each architecture's builder and one `create_model` factory (as in timm).

The families' settings live in `sparsecap.models.architectures` (no torch); here each family name maps to
the function that builds a member of its width or depth family, so the rest of the pipeline never
special-cases an architecture.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from sparsecap.data import DatasetInfo
from sparsecap.models.architectures import ModelConfig, architecture_family, validate_config, validate_input
from sparsecap.models.mlp import build_mlp
from sparsecap.models.normalize import Normalize
from sparsecap.models.resnet import build_resnet
from sparsecap.models.vgg import build_vgg

Builder = Callable[[tuple[int, int, int], int, int, int], nn.Module]
"""(input shape, classes, width, depth) → the network."""

_BUILDERS: dict[str, Builder] = {"mlp": build_mlp, "vgg": build_vgg, "resnet": build_resnet}


def create_model(config: ModelConfig, dataset: DatasetInfo) -> nn.Sequential:
    """The model for `dataset`: pixel normalisation followed by the architecture's network."""
    validate_config(config)
    family = architecture_family(config.architecture)
    validate_input(family, dataset.input_shape)
    network = _BUILDERS[family.name](dataset.input_shape, dataset.num_classes, config.width, config.depth)
    return nn.Sequential(OrderedDict(normalize=Normalize(dataset.mean, dataset.std), network=network))


def create_shape_only_model(config: ModelConfig, dataset: DatasetInfo) -> nn.Sequential:
    """The model on torch's meta device: its shapes and layer kinds without storage, so the weights of a model
    of any size are counted, and its running plan chosen, at no cost and without running out of memory."""
    with torch.device("meta"):
        return create_model(config, dataset)
