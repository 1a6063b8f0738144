import pytest
import torch

from sparsecap.data import dataset_info
from sparsecap.errors import AllocationError
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import Allocation, PruningScope, initialize_, magnitude_prune_, masked_layers, allocate
from sparsecap.sparsity.ranking import top_mask


def _dense_model() -> torch.nn.Module:
    model = create_model(ModelConfig("mlp", 64, 2), dataset_info("digits"))
    initialize_(model, torch.Generator().manual_seed(0))
    return model


def _weights(model):
    return [layer.weight.detach().clone() for _, layer in masked_layers(model)]


@pytest.mark.parametrize("allocation", list(Allocation))
def test_layerwise_pruning_keeps_exactly_each_layers_largest_magnitudes(allocation):
    model = _dense_model()
    before = _weights(model)
    counts = magnitude_prune_(model, 2000, PruningScope.LAYERWISE, allocation)
    assert counts == allocate([w.shape for w in before], 2000, allocation)
    for original, (_, layer), count in zip(before, masked_layers(model), counts):
        kept = layer.mask.bool()
        assert int(kept.sum()) == count
        assert torch.equal(layer.weight[kept], original[kept])
        assert torch.count_nonzero(layer.weight[~kept]) == 0
        if 0 < count < kept.numel():
            assert original[kept].abs().min() >= original[~kept].abs().max()


def test_global_pruning_keeps_exactly_the_largest_magnitudes_overall():
    model = _dense_model()
    before = torch.cat([weight.flatten() for weight in _weights(model)])
    magnitude_prune_(model, 1500, PruningScope.GLOBAL, Allocation.UNIFORM)
    kept = torch.cat([layer.mask.bool().flatten() for _, layer in masked_layers(model)])
    assert int(kept.sum()) == 1500
    assert before[kept].abs().min() >= before[~kept].abs().max()
    after = torch.cat([layer.weight.detach().flatten() for _, layer in masked_layers(model)])
    assert torch.equal(after[kept], before[kept])
    assert torch.count_nonzero(after[~kept]) == 0


@pytest.mark.parametrize("scope", list(PruningScope))
def test_pruning_to_more_weights_than_the_model_has_is_refused_in_either_scope(scope):
    model = _dense_model()
    size = sum(layer.mask.numel() for _, layer in masked_layers(model))
    with pytest.raises(AllocationError, match=f"cannot keep {size + 1} nonzero weights"):
        magnitude_prune_(model, size + 1, scope, Allocation.UNIFORM)


def test_pruning_masks_are_made_where_the_weights_are():
    """On a GPU the kept positions are found there, and a CPU mask cannot be indexed by them (`meta` stands in
    for the GPU)."""
    kept = top_mask(torch.empty((5, 7), device="meta"), 3)
    assert kept.device.type == "meta" and kept.shape == (5, 7)
