"""Which engine computes a model's masked linear layers: dense weight × mask, or the sparse engine.

A study picks `engine = dense | sparse | auto`; `set_engine` swaps each `MaskedLinear` for the
equivalent `SparseLinear` (or back), moving the kept weights over exactly, so every engine computes the
same function (up to the order of float additions). Convolutions stay dense: a masked convolution's
sparsity is over (out, in, kernel height, kernel width) and would need a sparse im2col product, for
which PyTorch has no CPU kernel. See docs/performance.md for the measurements behind the threshold.

A sparse layer right after a ReLU in a `Sequential` takes the ReLU over (`ReluSparseLinear`, with
`ReluMovedOn` left where the ReLU was), and a dense one hands it back: the same function, in fewer
passes over the hidden layer.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from sparsecap.sparsity.engine_choice import Engine
from sparsecap.sparsity.masked import MaskedLinear, masked_layers
from sparsecap.sparsity.sparse_linear import ReluMovedOn, ReluSparseLinear, SparseLinear

AUTO_DENSITY_THRESHOLD = 0.15
"""On a CPU, `auto` makes a layer sparse below this kept fraction (benchmarks/sparse_engine.py: the sparse
engine is faster from density 0.125 (width 2^10) down, about even at 0.25, slower at 0.5 and 1;
docs/performance.md). On other devices `auto` keeps every layer dense: on an H200 the sparse engine's MLP
epoch took 1.4-1.7x the dense one's at every density from 1/4 to 1/256, without its unread units too
(benchmarks/gpu.py part (c)); dense steps are also the ones replayed as CUDA graphs."""


def _to_masked(layer: SparseLinear) -> MaskedLinear:
    masked = MaskedLinear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    masked.to(layer.values.dtype)
    with torch.no_grad():
        masked.mask.copy_(layer.mask)
        masked.weight.copy_(layer.effective_weight())
        if layer.bias is not None:
            masked.bias.copy_(layer.bias)
    return masked


def replace_module(model: nn.Module, name: str, layer: nn.Module, replacement: nn.Module) -> nn.Module:
    """Put `replacement` where `name` is; returns the model (the replacement itself if `name` is the root)."""
    replacement.train(layer.training)
    if not name:
        return replacement
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, replacement)
    return model


def _relu_before(model: nn.Module, name: str) -> str | None:
    """The name of the ReLU (or of the place of one a sparse layer took over) right before layer `name` in
    its `Sequential`, if there is one."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if name else None
    if not isinstance(parent, nn.Sequential):
        return None
    names = list(parent._modules)
    index = names.index(child)
    before = parent._modules[names[index - 1]] if index > 0 else None
    if not isinstance(before, nn.ReLU | ReluMovedOn):
        return None
    return f"{parent_name}.{names[index - 1]}" if parent_name else names[index - 1]


def sparse_layer_class(model: nn.Module, name: str) -> type[SparseLinear]:
    """How layer `name` is stored sparse: taking over the ReLU before it, if one is."""
    return ReluSparseLinear if _relu_before(model, name) is not None else SparseLinear


def install_linear(model: nn.Module, name: str, layer: nn.Module,
                   replacement: MaskedLinear | SparseLinear) -> nn.Module:
    """`replace_module` for a linear layer, moving the ReLU before it into a `ReluSparseLinear` or back out."""
    relu = _relu_before(model, name)
    if relu is not None:
        activation = ReluMovedOn() if isinstance(replacement, ReluSparseLinear) else nn.ReLU()
        model = replace_module(model, relu, model.get_submodule(relu), activation)
    return replace_module(model, name, layer, replacement)


def set_engine(model: nn.Module, engine: Engine | str, device_type: str = "cpu") -> nn.Module:
    """Store every masked linear layer for `engine` (in place) on a device of `device_type`; returns the model.

    Call it before building an optimiser: swapping a layer replaces its Parameters.
    """
    engine = Engine(engine)
    threshold = AUTO_DENSITY_THRESHOLD if device_type == "cpu" else 0.0
    for name, layer in masked_layers(model):
        if not isinstance(layer, MaskedLinear | SparseLinear):
            continue
        sparse = engine is Engine.SPARSE or (engine is Engine.AUTO and layer.density < threshold)
        if sparse and isinstance(layer, MaskedLinear):
            stored = sparse_layer_class(model, name).from_dense(layer.weight, layer.mask, layer.bias)
            model = install_linear(model, name, layer, stored)
        elif not sparse and isinstance(layer, SparseLinear):
            model = install_linear(model, name, layer, _to_masked(layer))
    return model


def match_stored_form(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Store each linear layer the way `state` holds it (kept values or dense weight), ready to load it."""
    for name, layer in masked_layers(model):
        prefix = f"{name}." if name else ""
        if isinstance(layer, MaskedLinear) and prefix + "kept" in state:
            kept = state[prefix + "kept"]
            empty = sparse_layer_class(model, name)(
                layer.in_features, layer.out_features, kept, torch.zeros(kept.shape, dtype=layer.weight.dtype),
                None if layer.bias is None else torch.zeros_like(layer.bias))
            model = install_linear(model, name, layer, empty)
        elif isinstance(layer, SparseLinear) and prefix + "weight" in state:
            model = install_linear(model, name, layer, _to_masked(layer))
    return model
