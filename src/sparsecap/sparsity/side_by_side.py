"""K sparse networks of one architecture as one network computing all K on the same input: for evaluating
several weight-noise draws in one pass over the test set.

The first layer of the K networks is one layer with their output units one after another (each network's
rows in turn, reading the shared input once); every later layer is block-diagonal, network k's block
reading network k's units. Each output unit keeps its kept weights in their order, so every network's
logits are bit for bit its own. Evaluating K draws this way converts, normalises and lays out each test
batch once instead of K times, which is most of a pass's cost once a network is narrowed to the units
it reads (`sparsecap.sparsity.unread_units`): at width 2^15 a pass's product is 5,200 multiply-adds per
image against 784 pixels to prepare.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from sparsecap.sparsity.engine import replace_module
from sparsecap.sparsity.masked import masked_layers
from sparsecap.sparsity.sparse_linear import SparseLinear
from sparsecap.sparsity.unread_units import sparse_chains


def _joined(layers: Sequence[SparseLinear], kept: list[torch.Tensor], in_features: int) -> SparseLinear:
    biases = [layer.bias for layer in layers]
    return type(layers[0])(
        in_features, len(layers) * layers[0].out_features, torch.cat(kept),
        torch.cat([layer.values.detach() for layer in layers]),
        None if biases[0] is None else torch.cat([bias.detach() for bias in biases]))


def stacked_outputs(layers: Sequence[SparseLinear]) -> SparseLinear:
    """The layers' output units one after another, all reading the same inputs."""
    size = layers[0].out_features * layers[0].in_features
    return _joined(layers, [index * size + layer.kept for index, layer in enumerate(layers)], layers[0].in_features)


def block_diagonal(layers: Sequence[SparseLinear]) -> SparseLinear:
    """The layers as one block-diagonal layer: layer k reads inputs and writes outputs of block k."""
    out_features, in_features = layers[0].out_features, layers[0].in_features
    stacked_in = len(layers) * in_features
    kept = [(index * out_features + layer.kept // in_features) * stacked_in + index * in_features
            + layer.kept % in_features for index, layer in enumerate(layers)]  # ascending: block by block
    return _joined(layers, kept, stacked_in)


def can_run_side_by_side(model: nn.Module) -> bool:
    """Whether `model` is one chain of sparse layers (an MLP on the sparse engine), which `side_by_side` joins."""
    chains = sparse_chains(model)
    return len(chains) == 1 and chains[0] == [name for name, _ in masked_layers(model)]


def side_by_side(models: Sequence[nn.Module]) -> nn.Module:
    """One network whose logits for a batch are the K `models`' logits side by side, (batch, K × classes).
    The models must be alike (`can_run_side_by_side`) but for their weights; other modules (the input's
    normalisation) are the first model's."""
    chain = sparse_chains(models[0])[0]
    joined = copy.deepcopy(models[0])
    for index, name in enumerate(chain):
        layers = [model.get_submodule(name) for model in models]
        combined = stacked_outputs(layers) if index == 0 else block_diagonal(layers)
        joined = replace_module(joined, name, joined.get_submodule(name), combined)
    return joined
