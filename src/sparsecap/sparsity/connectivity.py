"""How well a mask keeps the network connected: the paths from input to output that survive it.

The paper explains the collapse at extreme sparsity by "loose connectivity between layers"; these
measures put a number on it. The network is read as a graph of *units*: the input features, then each
masked layer's outputs (neurons of a linear layer, channels of a convolution). Two units are joined when
a kept weight joins them; for a convolution, when any weight of the kernel between the two channels is
kept (spatial positions are not followed). A residual block's output is the sum of its two branches: its
units are joined to the last residual layer's and to the shortcut's outputs one to one, so paths through
the skip connections count. Unmasked layers (normalisation, pooling, activations) keep units as they are.

- `path_fraction_log10`: log10 of (input-to-output paths through kept weights) / (those of the dense
  network); -inf when no path survives. Counts are carried as max-normalised vectors with a log10 scale
  per layer, so they cannot overflow at width 2^15 or in a 50-layer ResNet.
- effective units of a layer: those on at least one input-to-output path (an input path and an output
  path); `min_effective_width_fraction` is the smallest effective / all over the hidden layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sparsecap.models.resnet import ResidualBlock
from sparsecap.sparsity.masked import MaskedConv2d, MaskedLayer, MaskedLinear, masked_layers
from sparsecap.sparsity.sparse_linear import SparseLinear


@dataclass(frozen=True)
class Edge:
    """Units of `source` feeding a layer: through `adjacency` (target units × source units, 1 where joined),
    or one to one where it is None (a skip connection, never masked)."""

    source: int
    adjacency: torch.Tensor | None


@dataclass(frozen=True)
class UnitLayer:
    """A layer of units and what feeds it; a graph lists its layers inputs first, outputs last."""

    name: str
    units: int
    inputs: tuple[Edge, ...]


@dataclass(frozen=True)
class LayerConnectivity:
    name: str
    units: int
    effective_units: int
    """Units on at least one input-to-output path."""


@dataclass(frozen=True)
class Connectivity:
    hidden_layers: tuple[LayerConnectivity, ...]
    """Every layer but the input features and the logits, in graph order."""
    path_fraction_log10: float

    @property
    def ineffective_units(self) -> int:
        """Hidden units cut off from the input or from the output: they cannot affect a prediction."""
        return sum(layer.units - layer.effective_units for layer in self.hidden_layers)

    @property
    def min_effective_width_fraction(self) -> float:
        """The narrowest hidden layer once cut-off units are removed, relative to its width (1.0 without one)."""
        return min((layer.effective_units / layer.units for layer in self.hidden_layers), default=1.0)


def _propagate(edge: Edge, values: torch.Tensor) -> torch.Tensor:
    return values if edge.adjacency is None else edge.adjacency @ values


def _propagate_back(edge: Edge, values: torch.Tensor) -> torch.Tensor:
    return values if edge.adjacency is None else values @ edge.adjacency


def _device(graph: Sequence[UnitLayer]) -> torch.device:
    """Where the masks are: the measures run beside them."""
    adjacencies = (edge.adjacency for layer in graph for edge in layer.inputs if edge.adjacency is not None)
    return next((adjacency.device for adjacency in adjacencies), torch.device("cpu"))


def _reachable(graph: Sequence[UnitLayer]) -> list[torch.Tensor]:
    """Per layer, which units have a path from the input. Exact: sums of 0/1 indicators, no underflow."""
    reached = [torch.ones(graph[0].units, dtype=torch.bool, device=_device(graph))]
    for layer in graph[1:]:
        reached.append(sum(_propagate(edge, reached[edge.source].to(_dtype(edge))) for edge in layer.inputs) > 0)
    return reached


def _coreachable(graph: Sequence[UnitLayer]) -> list[torch.Tensor]:
    """Per layer, which units have a path to the output (the last layer)."""
    device = _device(graph)
    toward_output = [torch.zeros(layer.units, dtype=torch.bool, device=device) for layer in graph]
    toward_output[-1].fill_(True)
    for target in reversed(range(len(graph))):
        for edge in graph[target].inputs:
            toward_output[edge.source] |= _propagate_back(edge, toward_output[target].to(_dtype(edge))) > 0
    return toward_output


def _dtype(edge: Edge) -> torch.dtype:
    return torch.float32 if edge.adjacency is None else edge.adjacency.dtype


def _log10_sum(logs: Sequence[float]) -> float:
    """log10 of the sum of 10**log over `logs` (-inf for none), without leaving log space."""
    finite = [value for value in logs if value != -math.inf]
    if not finite:
        return -math.inf
    top = max(finite)
    return top + math.log10(sum(10 ** (value - top) for value in finite))


def path_fraction_log10(graph: Sequence[UnitLayer]) -> float:
    """log10 of the fraction of the dense network's input-to-output paths that the graph keeps.

    Each layer's path counts are a vector scaled to a maximum of 1 times 10**scale. In the dense network
    every unit of a layer has the same count (by induction: full connections and one-to-one skips keep a
    uniform count uniform), so its count is one log10 number per layer.
    """
    vectors: list[torch.Tensor] = []
    scales: list[float] = []
    dense: list[float] = []
    for layer in graph:
        if not layer.inputs:  # input features: one path each
            vectors.append(torch.ones(layer.units, dtype=torch.float64, device=_device(graph)))
            scales.append(0.0)
            dense.append(0.0)
            continue
        live = [edge for edge in layer.inputs if scales[edge.source] != -math.inf]
        top = max((scales[edge.source] for edge in live), default=-math.inf)
        counts = torch.zeros(layer.units, dtype=torch.float64, device=vectors[0].device)
        for edge in live:
            carried = _propagate(edge, vectors[edge.source].to(_dtype(edge))).double()
            counts += carried * 10 ** (scales[edge.source] - top)
        peak = float(counts.max())
        vectors.append(counts / peak if peak > 0 else counts)
        scales.append(top + math.log10(peak) if peak > 0 else -math.inf)
        dense.append(_log10_sum([
            dense[edge.source] + (0.0 if edge.adjacency is None else math.log10(graph[edge.source].units))
            for edge in layer.inputs
        ]))
    kept = float(vectors[-1].sum())
    if kept == 0 or scales[-1] == -math.inf:
        return -math.inf
    return scales[-1] + math.log10(kept) - dense[-1] - math.log10(graph[-1].units)


def measure_graph(graph: Sequence[UnitLayer]) -> Connectivity:
    """The connectivity measures of a unit graph (inputs first, outputs last)."""
    if len(graph) < 2 or graph[0].inputs or not all(layer.inputs for layer in graph[1:]):
        raise ValueError("a unit graph starts with its input layer (no inputs) followed by fed layers")
    on_path = [forward & backward for forward, backward in zip(_reachable(graph), _coreachable(graph), strict=True)]
    hidden = tuple(
        LayerConnectivity(layer.name, layer.units, int(effective.sum()))
        for layer, effective in zip(graph[1:-1], on_path[1:-1], strict=True)
    )
    return Connectivity(hidden_layers=hidden, path_fraction_log10=path_fraction_log10(graph))


def _unit_adjacency(layer: MaskedLayer) -> torch.Tensor:
    """(out units, in units), 1 where any kept weight joins them: a convolution's kernel counts as one."""
    mask = layer.mask.detach().float()
    return mask.amax(dim=(2, 3)) if mask.dim() == 4 else mask


def unit_graph(model: nn.Module) -> list[UnitLayer]:
    """The unit graph of a sparsecap model: a chain of masked layers, with residual blocks as sums."""
    graph: list[UnitLayer] = []

    def add(name: str, units: int, inputs: tuple[Edge, ...]) -> int:
        graph.append(UnitLayer(name, units, inputs))
        return len(graph) - 1

    def walk(name: str, module: nn.Module, source: int | None) -> int | None:
        if isinstance(module, MaskedLinear | MaskedConv2d | SparseLinear):
            adjacency = _unit_adjacency(module)
            if source is None:
                source = add("input", adjacency.shape[1], ())
            if adjacency.shape[1] != graph[source].units:
                raise ValueError(f"cannot follow units into {name}: it reads {adjacency.shape[1]} units, but "
                                 f"{graph[source].name} has {graph[source].units}")
            return add(name, adjacency.shape[0], (Edge(source, adjacency),))
        if isinstance(module, ResidualBlock):
            if source is None:
                raise ValueError(f"residual block {name} comes before any masked layer")
            branches = [walk(f"{name}.residual", module.residual, source),
                        walk(f"{name}.shortcut", module.shortcut, source)]
            return add(name, graph[branches[0]].units, tuple(Edge(branch, None) for branch in branches))
        if isinstance(module, nn.Sequential):
            for child_name, child in module.named_children():
                source = walk(f"{name}.{child_name}" if name else child_name, child, source)
            return source
        if masked_layers(module):
            raise ValueError(f"cannot follow units through {name} ({type(module).__name__}): only chains of "
                             f"layers and residual blocks are understood")
        return source  # unmasked layers keep units as they are

    walk("", model, None)
    if not graph:
        raise ValueError("the model has no masked layer, so no unit graph")
    return graph


def measure_connectivity(model: nn.Module) -> Connectivity:
    """The connectivity measures of `model`'s masks."""
    return measure_graph(unit_graph(model))
