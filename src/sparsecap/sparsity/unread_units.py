"""The same network without the hidden units no later layer reads: what evaluation and fixed-mask training compute.

At fixed capacity a wide layer's units mostly have no kept outgoing weight: at width 2^15 the output
layer reads at most 1,280 of the 32,768 hidden units. An unread unit changes no output and no input
gradient, so a network over the read units alone computes the same logits, bit for bit (each kept
weight stays in its row, in its order), at a fraction of the work: the hidden layer's product, the
largest cost of a step, shrinks with it. The weights into an unread unit get an exactly zero gradient,
so SGD with momentum (and no weight decay, which sparsecap does not use) never moves them: training the
narrowed network and writing its weights back gives the full network's training, bit for bit, as long
as the mask stays fixed (a schedule that moves masks reads every unit's gradient). Only chains of
sparse-stored layers are narrowed, where nothing but per-unit modules (a ReLU, or where one was) stands
between two layers; a dense-masked layer costs its dense shape whatever it reads, and is left as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from sparsecap.sparsity.sparse_linear import ReluMovedOn, SparseLinear

_PER_UNIT = (nn.ReLU, ReluMovedOn, nn.Identity)
"""Modules that treat each unit apart, so a unit nobody reads after them is unread before them too. Not
dropout: its draws follow the units' layout, so fewer units would draw another mask and train otherwise."""


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


@dataclass(frozen=True)
class Narrowing:
    """How one sparse layer is narrowed: the kept weights it keeps and the output units it computes."""

    inside: torch.Tensor
    """Which of the layer's kept weights (in its stored order) the narrowed layer holds, in that order."""
    rows: torch.Tensor | None
    """The output units kept, ascending (None: all)."""
    columns: torch.Tensor | None
    """The input units read, ascending (None: all)."""

    def narrowed(self, layer: SparseLinear) -> SparseLinear:
        """`layer` over `rows` and `columns`, its parameters copied."""
        kept = layer.kept[self.inside]
        out_rows, in_columns = kept // layer.in_features, kept % layer.in_features
        out_features, in_features = layer.out_features, layer.in_features
        if self.rows is not None:
            out_rows, out_features = torch.searchsorted(self.rows, out_rows), self.rows.numel()
        if self.columns is not None:
            in_columns, in_features = torch.searchsorted(self.columns, in_columns), self.columns.numel()
        bias = None if layer.bias is None else layer.bias.detach()[self.row_index].clone()
        return type(layer)(in_features, out_features, out_rows * in_features + in_columns,
                           layer.values.detach()[self.inside], bias, layer.structure().bias_column is not None)

    @property
    def row_index(self) -> torch.Tensor | slice:
        """The kept output units as an index of the layer's outputs."""
        return slice(None) if self.rows is None else self.rows

    @torch.no_grad()
    def write_back(self, narrowed: SparseLinear, layer: SparseLinear) -> None:
        """Put the narrowed layer's (trained) weights back where they came from in `layer`."""
        layer.values[self.inside] = narrowed.values
        if layer.bias is not None:
            layer.bias[self.row_index] = narrowed.bias


def _chain_narrowings(model: nn.Module, chain: list[str]) -> dict[str, Narrowing]:
    """Each layer of `chain` that has unread outputs or inputs, last layer first: a layer's read inputs are
    the previous layer's rows."""
    plan: dict[str, Narrowing] = {}
    read: torch.Tensor | None = None  # the last layer's outputs are all read
    for index in range(len(chain) - 1, -1, -1):
        layer = model.get_submodule(chain[index])
        rows = layer.kept // layer.in_features
        inside = torch.ones_like(layer.kept, dtype=torch.bool) if read is None else torch.isin(rows, read)
        inputs = None
        if index > 0:
            reads = torch.unique(layer.kept[inside] % layer.in_features)
            inputs = reads if 0 < reads.numel() < layer.in_features else None
        if read is not None or inputs is not None:
            plan[chain[index]] = Narrowing(inside, read, inputs)
        read = inputs
    return plan


def narrowings(model: nn.Module) -> dict[str, Narrowing]:
    """How each sparse layer of `model` with unread units is narrowed, by name (empty: none has any)."""
    return {name: narrowing for chain in sparse_chains(model)
            for name, narrowing in _chain_narrowings(model, chain).items()}


def narrowed_copy(model: nn.Module, plan: dict[str, Narrowing]) -> nn.Module:
    """A copy of `model` with its layers narrowed by `plan` (`narrowings(model)`, or of a model with the same
    mask); the layers it replaces are never copied whole."""
    replacements = {}
    for name, narrowing in plan.items():
        layer = model.get_submodule(name)
        replacements[id(layer)] = narrowing.narrowed(layer).train(layer.training)
    return copy.deepcopy(model, memo=replacements)  # deepcopy puts each replacement where its layer was


def without_unread_units(model: nn.Module) -> nn.Module:
    """A copy of `model` without the units of its sparse chains that no later layer reads (`model` itself
    where there are none): the same function, for evaluation. Parameters are copied, not shared."""
    plan = narrowings(model)
    return narrowed_copy(model, plan) if plan else model


@contextmanager
def trained_without_unread_units(model: nn.Module) -> Iterator[nn.Module]:
    """The network to train in place of `model` while its mask stays fixed (`model` itself where nothing is
    unread); on exit every trained tensor is written back into `model`, the narrowed layers' weights where
    they came from and all else whole. Hooks that read `model` during training would see it untrained."""
    plan = narrowings(model)
    if not plan:
        yield model
        return
    narrowed = narrowed_copy(model, plan)
    try:
        yield narrowed
    finally:
        for name, narrowing in plan.items():
            narrowing.write_back(narrowed.get_submodule(name), model.get_submodule(name))
        prefixes = tuple(f"{name}." for name in plan)
        with torch.no_grad():
            state = model.state_dict()
            for key, tensor in narrowed.state_dict().items():
                if not key.startswith(prefixes):
                    state[key].copy_(tensor)
        model.train(narrowed.training)
