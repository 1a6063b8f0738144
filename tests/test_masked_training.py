import pytest
import torch

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import Allocation, masked_layers, sparse_model_at_init
from sparsecap.sparsity.initialization import effective_fan_in, initialize_
from sparsecap.sparsity.masked import MaskedConv2d, MaskedLinear
from sparsecap.training import TrainingConfig, train


def _sparse_mlp(width: int = 256) -> torch.nn.Module:
    info = dataset_info("digits")
    model = create_model(ModelConfig("mlp", width, 2), info)
    capacity = 64 * 32 + 32 * 32 + 32 * 10
    return sparse_model_at_init(model, capacity, Allocation.UNIFORM, torch.Generator().manual_seed(0),
                                torch.Generator().manual_seed(1))


def test_masked_weights_stay_exactly_zero_through_sgd_with_momentum():
    model = _sparse_mlp()
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (512, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (512,), generator=generator)
    config = TrainingConfig(max_epochs=20, learning_rate=0.05, momentum=0.9, batch_size=32, stop_loss=0.0)
    optimizer_steps = 20 * (512 // 32)
    result = train(model, images, labels, config, generator)
    assert result.epochs == 20 and optimizer_steps == 320
    first = next(layer for _, layer in masked_layers(model))
    assert first.weight.grad is not None
    for _, layer in masked_layers(model):
        removed = layer.mask == 0
        assert removed.any()
        assert torch.count_nonzero(layer.weight[removed]) == 0
        assert torch.count_nonzero(layer.weight.grad[removed]) == 0
        assert torch.count_nonzero(layer.weight[~removed]) == int((~removed).sum())


def test_initialisation_scales_with_effective_fan_in():
    model = _sparse_mlp(width=1024)
    for _, layer in masked_layers(model):
        kept = layer.weight[layer.mask.bool()]
        bound = 1 / max(effective_fan_in(layer), 1.0) ** 0.5
        assert kept.abs().max() <= bound
        # Uniform(-b, b) has standard deviation b / sqrt(3).
        assert abs(kept.std().item() - bound / 3**0.5) < 0.1 * bound


def test_dense_initialisation_matches_pytorch_default_bounds():
    info = dataset_info("digits")
    model = create_model(ModelConfig("mlp", 128, 1), info)
    sparse_model_at_init(model, 64 * 128 + 128 * 10, Allocation.UNIFORM, torch.Generator().manual_seed(0),
                         torch.Generator().manual_seed(0))
    first = next(layer for _, layer in masked_layers(model))
    assert bool(first.mask.all())
    assert first.weight.abs().max() <= 1 / 64**0.5
    assert first.weight.abs().max() > 0.9 / 64**0.5


@pytest.mark.parametrize("layer", [MaskedConv2d(4, 16, 3), MaskedLinear(36, 16)])
def test_kept_weights_and_biases_are_drawn_for_the_kept_fan_in(layer: torch.nn.Module) -> None:
    """Both layers have fan-in 36 (a convolution's counts its kernel area) and keep a quarter of it: weights
    and biases are U(-1/3, 1/3), as a dense layer with 9 inputs would draw them."""
    mask = torch.zeros(layer.weight.numel())
    mask[torch.randperm(mask.numel(), generator=torch.Generator().manual_seed(0))[:mask.numel() // 4]] = 1
    layer.set_mask(mask.view(layer.weight.shape))
    assert effective_fan_in(layer) == 9.0
    initialize_(torch.nn.Sequential(layer), torch.Generator().manual_seed(1))
    kept = layer.weight[layer.mask.bool()]
    assert 0.3 < kept.abs().max() <= 1 / 3 and 0.25 < layer.bias.abs().max() <= 1 / 3
    assert torch.count_nonzero(layer.weight[layer.mask == 0]) == 0
