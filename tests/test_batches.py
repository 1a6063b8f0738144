"""An epoch's batches: every example once, and never a lone last example for batch norm to normalise."""

import copy

import pytest
import torch

from sparsecap.data import dataset_info, load_dataset
from sparsecap.models import ModelConfig, create_model
from sparsecap.training import TrainingConfig, train
from sparsecap.training.batches import epoch_batches, smallest_batch
from sparsecap.training.multiseed import train_together


@pytest.mark.parametrize(("examples", "batch_size", "smallest", "sizes"), [
    (10, 4, 1, [4, 4, 2]),
    (9, 4, 1, [4, 4, 1]),   # without batch norms a lone example is a batch like any other
    (9, 4, 2, [4, 5]),      # with them it joins the batch before
    (1, 4, 2, [1]),         # nothing to join
    (8, 4, 2, [4, 4]),
])
def test_a_last_batch_below_the_smallest_joins_the_one_before(examples, batch_size, smallest, sizes):
    order = torch.randperm(examples, generator=torch.Generator().manual_seed(0))
    batches = epoch_batches(order, batch_size, smallest)
    assert [len(batch) for batch in batches] == sizes
    assert torch.equal(torch.cat(batches), order)


def test_models_with_batch_norms_need_two_examples_a_batch():
    info = dataset_info("digits")
    assert [smallest_batch(create_model(ModelConfig(name, 8, depth), info))
            for name, depth in (("mlp", 1), ("vgg", 11), ("resnet", 18))] == [1, 2, 2]


def test_a_cnn_on_digits_trains_where_the_last_batch_would_hold_one_image():
    """1,437 digits in batches of 359 leave one image over; VGG's last stages are 1×1 on 8×8 inputs."""
    digits = load_dataset("digits")
    assert len(digits.train_labels) % 359 == 1
    torch.manual_seed(0)
    model = create_model(ModelConfig("vgg", 4, 11), digits.info)
    config = TrainingConfig(max_epochs=1, batch_size=359, stop_loss=0.0)
    result = train(model, digits.train_images, digits.train_labels, config, torch.Generator().manual_seed(1))
    assert result.epochs == 1 and not result.diverged


def test_seeds_trained_together_cut_their_epochs_as_one_by_one():
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (64,), generator=generator)
    config = TrainingConfig(max_epochs=2, learning_rate=0.002, batch_size=63, stop_loss=0.0)  # 63 + 1
    torch.manual_seed(0)
    models = [create_model(ModelConfig("vgg", 4, 11), dataset_info("cifar10")) for _ in range(2)]
    alone = [train(copy.deepcopy(model), images, labels, config, torch.Generator().manual_seed(seed))
             for seed, model in enumerate(models)]
    together = train_together(models, images, labels, config, [torch.Generator().manual_seed(seed) for seed in (0, 1)])
    for stacked, single in zip(together, alone, strict=True):
        assert stacked.epoch_losses == pytest.approx(single.epoch_losses, rel=1e-5)
