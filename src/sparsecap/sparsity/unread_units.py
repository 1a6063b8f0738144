"""The same network without the hidden units no later layer reads: what evaluation computes.

At fixed capacity a wide layer's units mostly have no kept outgoing weight: at width 2^15 the output
layer reads at most 1,280 of the 32,768 hidden units. An unread unit changes no output and no input
gradient, so a network over the read units alone computes the same logits, bit for bit (each kept
weight stays in its row, in its order), at a fraction of the work: the hidden layer's product, the
largest cost of a forward pass, shrinks with it. Only chains of sparse-stored layers are narrowed, where
nothing but per-unit modules (a ReLU, or where one was) stands between two layers; a dense-masked layer
costs its dense shape whatever it reads, and is left as it is.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from sparsecap.sparsity.engine import replace_module
from sparsecap.sparsity.sparse_linear import ReluMovedOn, SparseLinear

_PER_UNIT = (nn.ReLU, ReluMovedOn, nn.Identity, nn.Dropout)
"""Modules that treat each unit apart, so a unit nobody reads after them is unread before them too."""


def sparse_chains(model: nn.Module) -> list[list[str]]:
    """Names of runs of two or more sparse layers, each run consecutive in one `Sequential` with only
    per-unit modules between its layers."""
    chains = []
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        run: list[str] = []
        for child_name, child in parent.named_children():
            if isinstance(child, SparseLinear):
                run.append(f"{parent_name}.{child_name}" if parent_name else child_name)
            elif not isinstance(child, _PER_UNIT):
                chains.append(run)
                run = []
        chains.append(run)
    return [run for run in chains if len(run) > 1]


def restricted(layer: SparseLinear, rows: torch.Tensor | None, columns: torch.Tensor | None) -> SparseLinear:
    """`layer` over its output units `rows` and input units `columns` (ascending; None: all), keeping the
    kept weights inside them in their order. Every kept weight must lie in `columns`."""
    out_rows, in_columns = layer.kept // layer.in_features, layer.kept % layer.in_features
    inside = torch.ones_like(layer.kept, dtype=torch.bool) if rows is None else torch.isin(out_rows, rows)
    out_rows, in_columns = out_rows[inside], in_columns[inside]
    out_features, in_features = layer.out_features, layer.in_features
    if rows is not None:
        out_rows, out_features = torch.searchsorted(rows, out_rows), rows.numel()
    if columns is not None:
        in_columns, in_features = torch.searchsorted(columns, in_columns), columns.numel()
    bias = None if layer.bias is None else layer.bias.detach().clone() if rows is None else layer.bias.detach()[rows]
    return type(layer)(in_features, out_features, out_rows * in_features + in_columns,
                       layer.values.detach()[inside], bias)


def without_unread_units(model: nn.Module) -> nn.Module:
    """A copy of `model` without the units of its sparse chains that no later layer reads (`model` itself
    where there are none): the same function, for evaluation. Parameters are copied, not shared."""
    chains = sparse_chains(model)
    narrowed = None
    for chain in chains:
        layers = [model.get_submodule(name) for name in chain]
        read: torch.Tensor | None = None  # the last layer's outputs are all read
        replacements: dict[str, SparseLinear] = {}
        for index in range(len(chain) - 1, -1, -1):
            layer = layers[index]
            inputs = None
            if index > 0:
                rows = layer.kept // layer.in_features
                kept = layer.kept if read is None else layer.kept[torch.isin(rows, read)]
                reads = torch.unique(kept % layer.in_features)
                inputs = reads if 0 < reads.numel() < layer.in_features else None
            if read is not None or inputs is not None:
                replacements[chain[index]] = restricted(layer, read, inputs)
            read = inputs
        if replacements:
            narrowed = narrowed if narrowed is not None else copy.deepcopy(model)
            for name, replacement in replacements.items():
                narrowed = replace_module(narrowed, name, narrowed.get_submodule(name), replacement)
    return model if narrowed is None else narrowed
