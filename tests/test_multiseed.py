"""K seeds trained together equal K seeds trained one by one (up to float rounding)."""

import copy
import dataclasses

import pytest
import torch

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import Allocation, initialize_, masked_layers, set_engine, sparse_model_at_init
from sparsecap.training import TrainingConfig, train
from sparsecap.sparsity.flops import dense_multiply_accumulates
from sparsecap.training.multiseed import (
    CNN_STACKING_LIMIT,
    STACKED_ACTIVATIONS_LIMIT,
    can_stack,
    stack_models,
    stacking_pays,
    stacks_here,
    train_together,
)

CAPACITY = 64 * 32 + 32 * 32 + 32 * 10


def _model(seed: int) -> torch.nn.Module:
    model = create_model(ModelConfig("mlp", 128, 2), dataset_info("digits"))
    return sparse_model_at_init(model, CAPACITY, Allocation.UNIFORM, torch.Generator().manual_seed(10 * seed),
                                torch.Generator().manual_seed(10 * seed + 1))


def _data():
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (128, 1, 8, 8), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (128,), generator=generator)


def _compare(config: TrainingConfig, seeds: list[int], engine: str = "dense") -> list:
    images, labels = _data()
    alone = [set_engine(_model(seed), engine) for seed in seeds]
    together = [copy.deepcopy(model) for model in alone]
    expected = [train(model, images, labels, config, torch.Generator().manual_seed(100 + seed))
                for model, seed in zip(alone, seeds, strict=True)]
    epochs_seen: list[tuple[int, int]] = []
    results = train_together(together, images, labels, config,
                             [torch.Generator().manual_seed(100 + seed) for seed in seeds],
                             lambda epoch, losses: epochs_seen.append((epoch, len(losses))))
    assert epochs_seen[0] == (1, len(seeds)) and len(epochs_seen) == max(result.epochs for result in results)
    for result, reference, model, single in zip(results, expected, together, alone, strict=True):
        assert result.epochs == reference.epochs and not result.diverged
        assert result.epoch_losses == pytest.approx(reference.epoch_losses, rel=1e-5)
        for (name, parameter), (_, other) in zip(model.named_parameters(), single.named_parameters(), strict=True):
            assert torch.allclose(parameter, other, rtol=1e-4, atol=1e-6), name
        for _, layer in masked_layers(model):
            assert torch.count_nonzero(layer.effective_weight()[layer.mask == 0]) == 0
    return expected


def test_seeds_trained_together_match_one_by_one_and_stop_each_by_its_own_rule():
    config = TrainingConfig(max_epochs=4, learning_rate=0.2, momentum=0.9, batch_size=32, stop_loss=0.0)
    full = _compare(config, [0, 1, 2])
    # A threshold near seed 0's second-epoch loss (augmented, so the runs differ): it stops before the end.
    threshold = full[0].epoch_losses[1] + 1e-6
    stopped = _compare(TrainingConfig(**{**config.__dict__, "stop_loss": threshold, "augmentation": True}), [0, 1])
    assert stopped[0].epochs < config.max_epochs


def test_sparse_stored_seeds_train_together_as_one_block_diagonal_layer():
    config = TrainingConfig(max_epochs=3, learning_rate=0.2, momentum=0.9, batch_size=32, stop_loss=0.0)
    _compare(config, [0, 1, 2], engine="sparse")
    stacked, _ = stack_models([set_engine(_model(seed), "sparse") for seed in (0, 1)])
    assert sum(parameter.numel() for parameter in stacked.parameters()) == 2 * (CAPACITY + 128 * 2 + 10)


def test_dense_base_models_train_together_without_masks():
    models = [create_model(ModelConfig("mlp", 32, 1), dataset_info("digits")) for _ in range(2)]
    for seed, model in enumerate(models):
        initialize_(model, torch.Generator().manual_seed(seed))
    config = TrainingConfig(max_epochs=2, learning_rate=0.1, batch_size=32, stop_loss=0.0)
    images, labels = _data()
    alone = [copy.deepcopy(model) for model in models]
    for seed, model in enumerate(alone):
        train(model, images, labels, config, torch.Generator().manual_seed(seed))
    train_together(models, images, labels, config, [torch.Generator().manual_seed(seed) for seed in range(2)])
    for model, single in zip(models, alone, strict=True):
        for parameter, other in zip(model.parameters(), single.parameters(), strict=True):
            assert torch.allclose(parameter, other, rtol=1e-4, atol=1e-6)


def test_models_with_other_weights_than_linear_layers_are_refused():
    normed = torch.nn.Sequential(_model(0), torch.nn.LayerNorm(10))  # neither MLP nor CNN (see test_stacked_cnn.py)
    assert not can_stack(normed) and can_stack(_model(0))
    with pytest.raises(ValueError, match="every weight is in a linear layer.*'1.weight' is not"):
        train_together([normed], *_data(), TrainingConfig(max_epochs=1), [torch.Generator()])
    mixed = [_model(0), set_engine(_model(1), "sparse")]
    with pytest.raises(ValueError, match="dense in one seed and sparse in another"):
        train_together(mixed, *_data(), TrainingConfig(max_epochs=1), [torch.Generator(), torch.Generator()])


def test_seeds_are_stacked_only_while_their_activations_stay_small():
    info = dataset_info("mnist")
    base, wide = (create_model(ModelConfig("mlp", width, 1), info) for width in (128, 8192))
    assert stacking_pays(base, 5, 128)  # 5 × 128 × 138 floats
    assert not stacking_pays(wide, 5, 128)  # 5 × 128 × 8202 floats: 21 MB
    assert stacking_pays(wide, 1, 16)
    assert 5 * 128 * (1024 + 10) * 4 <= STACKED_ACTIVATIONS_LIMIT < 5 * 128 * (2048 + 10) * 4


def test_small_cnn_seeds_stack_off_the_cpu_only_and_mlp_seeds_while_their_activations_stay_small():
    info = dataset_info("cifar10")
    with torch.device("meta"):  # as the study decides: from the shapes alone
        vgg, large_vgg, base, wide = (create_model(ModelConfig(*config), info) for config in (
            ("vgg", 16, 11), ("vgg", 64, 11), ("mlp", 128, 1), ("mlp", 8192, 1)))
    size = {id(model): dense_multiply_accumulates(model, info.input_shape) for model in (vgg, large_vgg, base, wide)}

    def stacks(model, count, device):
        return stacks_here(model, count, 128, device, size[id(model)])

    assert [stacks(vgg, 5, device) for device in ("cpu", "cuda", "mps")] == [False, True, True]
    assert not stacks(vgg, 1, "cuda")  # one seed: nothing to stack
    assert size[id(large_vgg)] > CNN_STACKING_LIMIT > size[id(vgg)] and not stacks(large_vgg, 5, "cuda")
    assert stacks(base, 5, "cpu") and not stacks(wide, 5, "cpu")
    vgg.network.add_module("dropout", torch.nn.Dropout())
    assert not stacks(vgg, 5, "cuda")


def test_a_seed_that_diverges_stops_there_as_alone_while_the_others_train_on():
    """A diverged seed's result is that of its diverging epoch, as `train` gives it; training on would change it."""
    config = TrainingConfig(max_epochs=3, learning_rate=0.2, momentum=0.9, batch_size=32, stop_loss=0.0)
    images, labels = _data()
    initial = [_model(seed) for seed in (0, 1, 2)]
    with torch.no_grad():
        initial[1].network.output.weight.mul_(1e4)  # logits in the thousands: an epoch loss far beyond the bound
    alone = [copy.deepcopy(model) for model in initial]
    expected = [train(model, images, labels, config, torch.Generator().manual_seed(100 + seed))
                for seed, model in enumerate(alone)]
    assert [result.diverged for result in expected] == [False, True, False]
    assert [result.epochs for result in expected] == [3, 1, 3]
    together, reported = [copy.deepcopy(model) for model in initial], []
    results = train_together(together, images, labels, config,
                             [torch.Generator().manual_seed(100 + seed) for seed in range(3)],
                             lambda epoch, losses: reported.append((epoch, len(losses), max(losses))))
    # The diverging epoch is reported with the seeds still training, its loss the worst, as `train` reports it.
    assert [row[:2] for row in reported] == [(1, 3), (2, 2), (3, 2)]
    assert reported[0][2] == results[1].epoch_losses[0]
    for result, reference, model, single in zip(results, expected, together, alone, strict=True):
        assert result.epochs == reference.epochs and result.diverged == reference.diverged
        assert result.epoch_losses == pytest.approx(reference.epoch_losses, rel=1e-5)
        for (name, parameter), (_, other) in zip(model.named_parameters(), single.named_parameters(), strict=True):
            assert torch.allclose(parameter, other, rtol=1e-4, atol=1e-6), name


def test_a_stopped_seed_draws_no_more_augmentation_so_its_data_order_continues_as_alone():
    """Fine-tuning and IMP rounds go on drawing from each seed's generator: it must end where `train` leaves it."""
    config = TrainingConfig(max_epochs=4, learning_rate=0.2, momentum=0.9, batch_size=32, stop_loss=0.0,
                            augmentation=True)
    images, labels = _data()
    full = [train(_model(seed), images, labels, config, torch.Generator().manual_seed(100 + seed)).epoch_losses
            for seed in (0, 1)]
    # Between the two seeds' first-epoch losses: seed 1 stops after its first epoch, seed 0 trains on.
    stopping = dataclasses.replace(config, stop_loss=(full[0][0] + full[1][0]) / 2)
    alone = [torch.Generator().manual_seed(100 + seed) for seed in (0, 1)]
    expected = [train(_model(seed), images, labels, stopping, generator)
                for seed, generator in zip((0, 1), alone, strict=True)]
    assert [result.epochs for result in expected] == [2, 1]
    together = [torch.Generator().manual_seed(100 + seed) for seed in (0, 1)]
    results = train_together([_model(seed) for seed in (0, 1)], images, labels, stopping, together)
    assert [result.epochs for result in results] == [2, 1]
    for generator, reference in zip(together, alone, strict=True):
        assert torch.equal(generator.get_state(), reference.get_state())


def test_seeds_whose_fixed_buffers_differ_are_refused_naming_the_buffer():
    """The stacked model keeps the first seed's buffers: another seed's own input normalisation would be lost."""
    other = _model(1)
    with torch.no_grad():
        other.normalize.std.mul_(2)
    with pytest.raises(ValueError, match="share their fixed buffers; 'normalize.std' differs"):
        stack_models([_model(0), other])
    stack_models([_model(0), _model(1)])  # masks differ too, but are stacked: no refusal
