"""Connectivity measures on hand-built masks whose answers are known by hand, and on the real models."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import random_mask, set_engine, summarize
from sparsecap.sparsity.connectivity import (
    Edge,
    UnitLayer,
    measure_connectivity,
    measure_graph,
    unit_graph,
)
from sparsecap.sparsity.masked import MaskedLinear, masked_layers

DIGITS = dataset_info("digits")
CIFAR10 = dataset_info("cifar10")


def chain(*adjacencies: list[list[int]]) -> list[UnitLayer]:
    """Input units, then one layer per adjacency (target units × source units)."""
    matrices = [torch.tensor(adjacency, dtype=torch.float32) for adjacency in adjacencies]
    graph = [UnitLayer("input", matrices[0].shape[1], ())]
    for index, matrix in enumerate(matrices, start=1):
        graph.append(UnitLayer(f"layer{index}", matrix.shape[0], (Edge(index - 1, matrix),)))
    return graph


def test_a_dense_chain_keeps_every_path_and_unit() -> None:
    measured = measure_graph(chain([[1, 1, 1]] * 4, [[1] * 4] * 2))
    assert measured.path_fraction_log10 == pytest.approx(0.0, abs=1e-12)
    assert [(layer.units, layer.effective_units) for layer in measured.hidden_layers] == [(4, 4)]
    assert measured.min_effective_width_fraction == 1.0
    assert measured.ineffective_units == 0


def test_a_cut_layer_leaves_no_path_and_no_effective_unit() -> None:
    measured = measure_graph(chain([[1, 1]] * 3, [[0, 0, 0]] * 3, [[1, 1, 1]]))
    assert measured.path_fraction_log10 == -math.inf
    assert [layer.effective_units for layer in measured.hidden_layers] == [0, 0]
    assert measured.min_effective_width_fraction == 0.0
    assert measured.ineffective_units == 6


def test_path_counts_of_a_small_example() -> None:
    # Hidden unit 0 reads both inputs, unit 1 input 1 only; the second hidden layer: unit 0 reads both,
    # unit 1 reads hidden unit 1; the logit reads both. Paths: 3 into h2[0], 1 into h2[1]: 4 of 2·2·2 = 8.
    measured = measure_graph(chain([[1, 1], [0, 1]], [[1, 1], [0, 1]], [[1, 1]]))
    assert measured.path_fraction_log10 == pytest.approx(math.log10(4 / 8))
    assert measured.min_effective_width_fraction == 1.0


def test_a_unit_with_input_but_no_output_path_is_not_effective() -> None:
    measured = measure_graph(chain([[1, 1]] * 3, [[1, 1, 0]]))
    assert [layer.effective_units for layer in measured.hidden_layers] == [2]
    assert measured.min_effective_width_fraction == pytest.approx(2 / 3)
    assert measured.path_fraction_log10 == pytest.approx(math.log10(4 / 6))


def test_a_unit_reached_only_through_a_dead_unit_has_no_input_path() -> None:
    # h1[1] reads nothing; h2[1] reads only h1[1]: it has weights in, but no path from the input.
    measured = measure_graph(chain([[1, 1], [0, 0]], [[1, 0], [0, 1]], [[1, 1]]))
    assert [layer.effective_units for layer in measured.hidden_layers] == [1, 1]
    assert measured.ineffective_units == 2


def test_a_skip_connection_carries_paths_past_a_cut_residual_branch() -> None:
    full, cut = torch.ones(2, 2), torch.zeros(2, 2)
    graph = [
        UnitLayer("input", 2, ()),
        UnitLayer("stem", 2, (Edge(0, full),)),
        UnitLayer("residual", 2, (Edge(1, cut),)),
        UnitLayer("block", 2, (Edge(2, None), Edge(1, None))),
        UnitLayer("logit", 1, (Edge(3, torch.ones(1, 2)),)),
    ]
    measured = measure_graph(graph)
    # Kept: the skip's 2 paths into each block unit, 4 in all. Dense: stem 2 each, residual 4 each,
    # block 4 + 2 = 6 each, logit 2 · 6 = 12.
    assert measured.path_fraction_log10 == pytest.approx(math.log10(4 / 12))
    assert [layer.effective_units for layer in measured.hidden_layers] == [2, 0, 2]
    assert measured.min_effective_width_fraction == 0.0


def test_very_deep_chains_neither_overflow_nor_underflow() -> None:
    # 200 layers of 64 units, each reading 32 units of the previous layer (a circulant band): 64^200
    # dense paths (10^361, beyond float64), of which exactly 2^-200 survive.
    units = torch.arange(64)
    band = (((units[None, :] - units[:, None]) % 64) < 32).float()
    layers = [UnitLayer("input", 64, ())]
    layers += [UnitLayer(f"layer{index}", 64, (Edge(index - 1, band),)) for index in range(1, 201)]
    measured = measure_graph(layers)
    assert measured.path_fraction_log10 == pytest.approx(200 * math.log10(0.5), rel=1e-9)
    assert measured.min_effective_width_fraction == 1.0
    layers[-1] = UnitLayer("layer200", 64, (Edge(199, torch.ones(64, 64)),))
    assert measure_graph(layers).path_fraction_log10 == pytest.approx(199 * math.log10(0.5), rel=1e-9)


@pytest.mark.parametrize(("architecture", "width", "depth", "dataset"), [
    ("mlp", 16, 3, DIGITS), ("vgg", 8, 11, CIFAR10), ("resnet", 4, 18, CIFAR10), ("resnet", 4, 50, CIFAR10),
])
def test_dense_models_keep_every_path(architecture: str, width: int, depth: int, dataset) -> None:
    measured = measure_connectivity(create_model(ModelConfig(architecture, width, depth), dataset))
    assert measured.path_fraction_log10 == pytest.approx(0.0, abs=1e-9)
    assert measured.ineffective_units == 0


def test_resnet_graph_sums_each_block_over_its_residual_and_shortcut() -> None:
    graph = unit_graph(create_model(ModelConfig("resnet", 4, 18), CIFAR10))
    names = [layer.name for layer in graph]
    first_block = graph[names.index("network.stage1.0")]
    assert [graph[edge.source].name for edge in first_block.inputs] == ["network.stage1.0.residual.3", "network.stem.0"]
    projected = graph[names.index("network.stage2.0")]  # stride 2, 4 → 8 channels: a projection shortcut
    assert [graph[edge.source].name for edge in projected.inputs] == [
        "network.stage2.0.residual.3", "network.stage2.0.shortcut.0"]
    assert names[0] == "input" and graph[0].units == 3 and names[-1] == "network.classifier"


def test_cutting_a_resnet_shortcut_and_residual_severs_the_network() -> None:
    model = create_model(ModelConfig("resnet", 4, 18), CIFAR10)
    layers = dict(masked_layers(model))
    for name in ("network.stage2.0.residual.3", "network.stage2.0.shortcut.0"):
        layers[name].set_mask(torch.zeros_like(layers[name].mask))
    assert measure_connectivity(model).path_fraction_log10 == -math.inf
    layers["network.stage2.0.shortcut.0"].set_mask(torch.ones_like(layers["network.stage2.0.shortcut.0"].mask))
    assert math.isfinite(measure_connectivity(model).path_fraction_log10)


def test_one_kept_kernel_weight_joins_two_channels() -> None:
    model = create_model(ModelConfig("vgg", 8, 11), CIFAR10)
    for _, layer in masked_layers(model):
        if layer.mask.dim() == 4:
            centre_only = torch.zeros_like(layer.mask)
            centre_only[:, :, 1, 1] = 1
            layer.set_mask(centre_only)
    assert measure_connectivity(model).path_fraction_log10 == pytest.approx(0.0, abs=1e-9)


def test_mlp_units_cut_off_by_the_mask_are_counted_on_both_engines() -> None:
    model = create_model(ModelConfig("mlp", 32, 2), DIGITS)
    layers = dict(masked_layers(model))
    generator = torch.Generator().manual_seed(0)
    for _, layer in layers.items():
        layer.set_mask(random_mask(layer.mask.shape, layer.mask.numel() // 3, generator).float())
    unread = layers["network.hidden2"].mask.clone()
    unread[:, :5] = 0  # five units of hidden1 feed nothing
    layers["network.hidden2"].set_mask(unread)
    dense_engine = measure_connectivity(model)
    assert dense_engine.hidden_layers[0].effective_units <= 27
    assert dense_engine.min_effective_width_fraction <= 27 / 32
    assert measure_connectivity(set_engine(model, "sparse")) == dense_engine


def test_a_structure_it_cannot_follow_is_refused() -> None:
    class Parallel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.left, self.right = MaskedLinear(4, 4), MaskedLinear(4, 4)

    model = nn.Sequential(OrderedDict(first=MaskedLinear(2, 4), branches=Parallel()))
    with pytest.raises(ValueError, match="cannot follow units through branches"):
        unit_graph(model)


def test_the_summary_counts_broken_hidden_connections_by_hand() -> None:
    """A 3-4-2 chain: hidden unit 3 reads no input, hidden units 0 and 1 feed no logit. The first layer's
    unread input 2 (an image feature) and logit 1, which reads nothing, are not hidden and count for nothing."""
    model = nn.Sequential(MaskedLinear(3, 4), nn.ReLU(), MaskedLinear(4, 2))
    model[0].set_mask(torch.tensor([[1.0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]]))
    model[2].set_mask(torch.tensor([[0.0, 0, 1, 1], [0, 0, 0, 0]]))
    summary = summarize(model, 10)
    assert [(layer.outputs_without_input, layer.inputs_unread) for layer in summary.layers] == [(1, 1), (1, 2)]
    assert summary.disconnected_units == 3
    assert (summary.total_weights, summary.total_nonzero, summary.unmasked_parameters) == (20, 6, 6)
    assert [layer.density for layer in summary.layers] == [4 / 12, 2 / 8]
    assert measure_connectivity(model).ineffective_units == 3  # each cut off on one side only
