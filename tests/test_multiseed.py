"""K seeds trained together equal K seeds trained one by one (up to float rounding)."""

import copy

import pytest
import torch

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import Allocation, masked_layers, set_engine, sparse_model_at_init
from sparsecap.training import TrainingConfig, train
from sparsecap.training.multiseed import train_together

CAPACITY = 64 * 32 + 32 * 32 + 32 * 10


def _model(seed: int) -> torch.nn.Module:
    model = create_model(ModelConfig("mlp", 128, 2), dataset_info("digits"))
    return sparse_model_at_init(model, CAPACITY, Allocation.UNIFORM, torch.Generator().manual_seed(10 * seed),
                                torch.Generator().manual_seed(10 * seed + 1))


def _data():
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (128, 1, 8, 8), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (128,), generator=generator)


def _compare(config: TrainingConfig, seeds: list[int]) -> list:
    images, labels = _data()
    alone = [_model(seed) for seed in seeds]
    together = [copy.deepcopy(model) for model in alone]
    expected = [train(model, images, labels, config, torch.Generator().manual_seed(100 + seed))
                for model, seed in zip(alone, seeds, strict=True)]
    results = train_together(together, images, labels, config,
                             [torch.Generator().manual_seed(100 + seed) for seed in seeds])
    for result, reference, model, single in zip(results, expected, together, alone, strict=True):
        assert result.epochs == reference.epochs and not result.diverged
        assert result.epoch_losses == pytest.approx(reference.epoch_losses, rel=1e-5)
        for (name, parameter), (_, other) in zip(model.named_parameters(), single.named_parameters(), strict=True):
            assert torch.allclose(parameter, other, rtol=1e-4, atol=1e-6), name
        for _, layer in masked_layers(model):
            assert torch.count_nonzero(layer.weight[layer.mask == 0]) == 0
    return expected


def test_seeds_trained_together_match_one_by_one_and_stop_each_by_its_own_rule():
    config = TrainingConfig(max_epochs=4, learning_rate=0.2, momentum=0.9, batch_size=32, stop_loss=0.0)
    full = _compare(config, [0, 1, 2])
    # A threshold near seed 0's second-epoch loss (augmented, so the runs differ): it stops before the end.
    threshold = full[0].epoch_losses[1] + 1e-6
    stopped = _compare(TrainingConfig(**{**config.__dict__, "stop_loss": threshold, "augmentation": True}), [0, 1])
    assert stopped[0].epochs < config.max_epochs


def test_the_sparse_engine_is_refused():
    with pytest.raises(ValueError, match="dense engine"):
        train_together([set_engine(_model(0), "sparse")], *_data(), TrainingConfig(max_epochs=1),
                       [torch.Generator()])
