"""K CNN seeds trained together as one grouped network equal K seeds trained one by one (up to float rounding)."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import Allocation, masked_layers, set_engine, sparse_model_at_init, weight_count
from sparsecap.training import TrainingConfig, multiseed, train, trainer
from sparsecap.training.config import LearningRateSchedule
from sparsecap.training.multiseed import can_stack, stack_models, train_together
from sparsecap.training.stacked_cnn import stack_cnns, unstackable_module

SEEDS = (0, 1, 2)
# A small learning rate: ResNet18 on random labels is chaotic at lr 0.02 (a 1e-7 relative nudge of the
# initial weights moves one-by-one training by 1e-4 in three epochs), so the different float rounding of
# grouped convolutions would part the runs for some seeds with no error in either.
CONFIG = TrainingConfig(max_epochs=3, learning_rate=0.002, momentum=0.9, batch_size=32, stop_loss=0.0,
                        schedule=LearningRateSchedule.COSINE, augmentation=True)
CNNS = pytest.mark.parametrize("architecture, depth", [("vgg", 11), ("resnet", 18)])
# How far a stacked seed may part from its one-by-one run: a share of how far training moved each tensor, plus
# a little for tensors training barely moves (a convolution's bias before batch norm).
# float32: the grouped convolutions round otherwise, and float32 batch-norm backward cancels, so through
# ResNet18's 20 of them the stem's gradient keeps only a few digits (either run's alike). On this project's
# 2-core AMD EPYC VMs the worst tensor parted by 0.02% (VGG11) and 1.6% (ResNet18) on 2026-12-06, and by 13%
# (VGG11, seed 0) on 2026-12-02. float64 leaves rounding no room: every tensor agreed to 1e-12 of its move,
# so there the test holds stacking to exactness; a seed trained on another's gradient, batch or statistics
# would be off by the whole move in either.
PRECISIONS = pytest.mark.parametrize("dtype, share, slack", [(torch.float32, 0.25, 1e-6), (torch.float64, 1e-9, 1e-12)])


def _model(architecture: str, depth: int, seed: int) -> nn.Module:
    info = dataset_info("cifar10")  # three channels of distinct means: the normalisation is stacked too
    capacity = weight_count(create_model(ModelConfig(architecture, 6, depth), info))  # a different mask per seed
    return sparse_model_at_init(create_model(ModelConfig(architecture, 8, depth), info), capacity,
                                Allocation.UNIFORM, torch.Generator().manual_seed(10 * seed),
                                torch.Generator().manual_seed(10 * seed + 1))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (64,), generator=generator)


def _one_by_one(models: list[nn.Module], config: TrainingConfig) -> list:
    images, labels = _data()
    return [train(model, images, labels, config, torch.Generator().manual_seed(100 + seed))
            for model, seed in zip(models, SEEDS, strict=True)]


def _stopping_epoch(losses: list[float], threshold: float) -> int:
    return next((epoch for epoch, loss in enumerate(losses, start=1) if loss < threshold), len(losses))


def _train_in(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both training paths (one by one and stacked) feed the models pixels of `dtype`."""
    pixels = trainer.to_pixels
    for module in (trainer, multiseed):
        monkeypatch.setattr(module, "to_pixels", lambda images, layout: pixels(images, layout).to(dtype))


@PRECISIONS
@CNNS
def test_cnn_seeds_trained_together_match_one_by_one_and_stop_each_by_its_own_rule(architecture, depth, dtype, share,
                                                                                     slack, monkeypatch):
    _train_in(dtype, monkeypatch)
    initial = [_model(architecture, depth, seed).to(dtype) for seed in SEEDS]
    full = [result.epoch_losses for result in _one_by_one([copy.deepcopy(model) for model in initial], CONFIG)]
    # A threshold at which one seed stops early and one runs on, midway between two neighbouring epoch losses
    # (the widest such gap): the stacked run's rounding moves a loss by far less than that.
    losses = sorted({loss for seed_losses in full for loss in seed_losses})
    gaps = [(high - low, (low + high) / 2) for low, high in zip(losses, losses[1:], strict=False)]
    threshold = max((gap, middle) for gap, middle in gaps
                    if min(_stopping_epoch(seed_losses, middle) for seed_losses in full) < CONFIG.max_epochs
                    == max(_stopping_epoch(seed_losses, middle) for seed_losses in full))[1]
    config = dataclasses.replace(CONFIG, stop_loss=threshold)
    alone = [copy.deepcopy(model) for model in initial]
    expected = _one_by_one(alone, config)
    stops = [_stopping_epoch(losses, threshold) for losses in full]
    assert [result.epochs for result in expected] == stops

    together = [copy.deepcopy(model) for model in initial]
    epochs_seen: list[tuple[int, int]] = []
    results = train_together(together, *_data(), config, [torch.Generator().manual_seed(100 + seed) for seed in SEEDS],
                             lambda epoch, losses: epochs_seen.append((epoch, len(losses))))
    assert epochs_seen == [(epoch, sum(stop >= epoch for stop in stops)) for epoch in range(1, max(stops) + 1)]
    for result, reference, model, single, initial_model in zip(results, expected, together, alone, initial,
                                                               strict=True):
        assert result.epochs == reference.epochs and not result.diverged
        assert result.epoch_losses == pytest.approx(reference.epoch_losses, rel=1e-5)
        state, single_state, start = model.state_dict(), single.state_dict(), initial_model.state_dict()
        assert state.keys() == single_state.keys()
        for name, tensor in state.items():  # weights, masks and batch-norm statistics, step count included
            moved = (single_state[name] - start[name]).abs().max()
            assert (tensor - single_state[name]).abs().max() <= share * moved + slack, name
        for name, layer in masked_layers(model):
            assert torch.count_nonzero(layer.weight[layer.mask == 0]) == 0, name
        assert not model.training


@CNNS
def test_the_grouped_network_computes_each_seed_from_its_own_batch_and_weights(architecture, depth):
    models = [_model(architecture, depth, seed) for seed in SEEDS]
    stacked, links = stack_cnns(models)
    pixels = torch.rand(len(SEEDS) * 8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    outputs = stacked(pixels)  # training mode: batch norm uses each seed's own batch statistics
    assert outputs.shape == (len(SEEDS), 8, 10)
    for model, seed_pixels, seed_outputs in zip(models, pixels.split(8), outputs, strict=True):
        assert torch.allclose(model(seed_pixels), seed_outputs, rtol=1e-4, atol=1e-5)
    assert len(links) == len(masked_layers(models[0])) + sum(isinstance(module, nn.BatchNorm2d)
                                                             for module in models[0].modules())
    assert sum(parameter.numel() for parameter in stacked.parameters()) == len(SEEDS) * sum(
        parameter.numel() for parameter in models[0].parameters())


def test_cnns_with_layers_the_grouping_cannot_keep_apart_are_refused():
    sparse_classifier = set_engine(_model("vgg", 11, 0), "sparse")
    assert can_stack(_model("vgg", 11, 0)) and not can_stack(sparse_classifier)
    with pytest.raises(ValueError, match=r"dense-stored linear layers.*network\.classifier \(SparseLinear\) is not"):
        stack_models([sparse_classifier, set_engine(_model("vgg", 11, 1), "sparse")])
    with_dropout = _model("vgg", 11, 0)
    with_dropout.network.add_module("dropout", nn.Dropout())  # its draws would not be each seed's own
    assert not can_stack(with_dropout)
    with pytest.raises(ValueError, match=r"network\.dropout \(Dropout\) is not"):
        stack_models([with_dropout])


def test_each_seed_starts_from_and_gets_back_its_own_batch_norm_statistics():
    """Seeds rewound to trained weights (IMP) bring running statistics of their own: stacking keeps them apart."""
    models = [_model("vgg", 11, seed) for seed in SEEDS]
    for seed, model in enumerate(models):
        for norm in (module for module in model.modules() if isinstance(module, nn.BatchNorm2d)):
            with torch.no_grad():
                norm.running_mean.uniform_(-1, 1, generator=torch.Generator().manual_seed(seed))
                norm.running_var.uniform_(0.5, 2, generator=torch.Generator().manual_seed(seed + 10))
    _, links = stack_cnns(models)
    for combined, seeds in links:
        for index, own in enumerate(seeds):
            for stacked_tensor, seed_tensor in zip(combined.seed_tensors(index), own, strict=True):
                assert torch.equal(stacked_tensor, seed_tensor)


def test_seeds_whose_input_normalisation_differs_only_in_its_std_are_refused():
    """The stacked network repeats the first seed's mean and std for every seed: another std would be lost."""
    other = _model("vgg", 11, 1)
    with torch.no_grad():
        other.normalize.std.mul_(2)  # the mean stays the first seed's
    assert torch.equal(other.normalize.mean, _model("vgg", 11, 0).normalize.mean)
    with pytest.raises(ValueError, match="share their input normalisation; 'normalize' differs"):
        stack_cnns([_model("vgg", 11, 0), other])


def test_a_convolution_padding_other_than_with_zeros_is_unstackable():
    """The grouped convolution pads with zeros: a reflect-padded seed's outputs would not be its own."""
    reflecting = _model("vgg", 11, 0)
    reflecting.network.conv2.padding_mode = "reflect"
    assert unstackable_module(reflecting) == "network.conv2 (MaskedConv2d)" and not can_stack(reflecting)
    with pytest.raises(ValueError, match=r"network\.conv2 \(MaskedConv2d\) is not"):
        stack_models([reflecting, _model("vgg", 11, 1)])
