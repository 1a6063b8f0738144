import copy

import pytest
import torch
from torch import nn

from sparsecap.data import dataset_info, load_dataset
from sparsecap.models import ModelConfig, architecture_family, create_model, list_architectures
from sparsecap.robustness import evaluate
from sparsecap.sparsity import initialize_
from sparsecap.sparsity.masked import MaskedConv2d
from sparsecap.studies import StudyDatabase, expand, parse_spec, run_study
from sparsecap.studies.checkpoints import load_checkpoint
from sparsecap.studies.execute import prepare_model
from sparsecap.training import recompute_batch_norm_statistics, to_pixels


def _images(count: int, generator: torch.Generator, shape: tuple[int, ...] = (1, 8, 8)) -> torch.Tensor:
    return torch.randint(0, 256, (count, *shape), dtype=torch.uint8, generator=generator)


def test_a_channel_no_kept_weight_feeds_normalises_as_in_training_once_recomputed():
    """The failure seen at 1.6% density: a dead channel outputs its bias; a running mean a little off it,
    over a running variance decayed to ~0, shifts the channel by ~300× the lag in eval mode only."""
    convolution = MaskedConv2d(1, 2, 3, padding=1)
    mask = torch.ones(2, 1, 3, 3)
    mask[0] = 0  # channel 0: no kept weight, its output is its bias everywhere
    convolution.set_mask(mask)
    network = nn.Sequential(convolution, nn.BatchNorm2d(2))
    with torch.no_grad():
        convolution.bias[0] = 1.0
        network[1].running_mean[0], network[1].running_var[0] = 0.99, 1e-40  # as training leaves them
    images = _images(32, torch.Generator().manual_seed(0))
    network.eval()
    with torch.no_grad():
        stale = network(to_pixels(images))[:, 0]
    assert stale.abs().min() > 3  # β = 0 shifted by 0.01 / √ε
    recompute_batch_norm_statistics(network, images, batch_size=8)
    assert not network.training
    with torch.no_grad():
        assert network(to_pixels(images))[:, 0].abs().max() < 1e-3  # training's β, up to float rounding


def test_recomputed_statistics_are_those_of_the_whole_set_over_equal_batches():
    torch.manual_seed(0)
    model = create_model(ModelConfig("vgg", 4, 11), dataset_info("digits"))
    initialize_(model, torch.Generator().manual_seed(1))
    images = _images(64, torch.Generator().manual_seed(2))
    first_norm = model.network.norm1
    with torch.no_grad():
        first_norm.running_mean.fill_(5.0)
        convolved = model.network.conv1(model.normalize(to_pixels(images)))
    recompute_batch_norm_statistics(model, images, batch_size=16)
    torch.testing.assert_close(first_norm.running_mean, convolved.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    batch_variances = torch.stack([part.var((0, 2, 3)) for part in convolved.split(16)])  # unbiased, as torch keeps
    torch.testing.assert_close(first_norm.running_var, batch_variances.mean(0), rtol=1e-5, atol=1e-7)



def test_a_set_that_does_not_fill_its_batches_is_cut_into_batches_one_image_apart_weighed_alike():
    """10 images at batch size 4 are 3 batches of 4, 3 and 3 (not 4, 4 and 2, which would count the last two
    images twice as much): the running mean is the equal-weight mean of those batches' means, all images seen."""
    model = create_model(ModelConfig("vgg", 4, 11), dataset_info("digits"))
    initialize_(model, torch.Generator().manual_seed(1))
    model.eval()  # as after training: it stays in eval mode
    images = _images(10, torch.Generator().manual_seed(2))
    with torch.no_grad():
        convolved = model.network.conv1(model.normalize(to_pixels(images)))
    recompute_batch_norm_statistics(model, images, batch_size=4)
    means = [convolved[start:stop].mean((0, 2, 3)) for start, stop in ((0, 4), (4, 7), (7, 10))]
    torch.testing.assert_close(model.network.norm1.running_mean, torch.stack(means).mean(0), rtol=1e-5, atol=1e-6)
    assert not model.training and int(model.network.norm1.num_batches_tracked) == 3

def test_after_recomputing_eval_mode_computes_what_training_mode_does_on_the_same_batch():
    model = create_model(ModelConfig("resnet", 4, 18), dataset_info("digits"))
    initialize_(model, torch.Generator().manual_seed(0))
    images = _images(1024, torch.Generator().manual_seed(1))
    in_training = copy.deepcopy(model).train()
    with torch.no_grad():
        expected = in_training(to_pixels(images))
        stale = (model.eval()(to_pixels(images)) - expected).abs().max()  # fresh statistics: means 0, variances 1
        recompute_batch_norm_statistics(model, images, batch_size=1024)
        recomputed = (model(to_pixels(images)) - expected).abs().max()
    # Not to the bit: eval mode divides by the unbiased variance, n/(n − 1) times the batch's, where the last
    # stage's 1×1 maps leave n = 1024 values per channel.
    assert stale > 1 and recomputed < stale / 100


@pytest.mark.parametrize("architecture", list_architectures())
def test_the_registry_says_which_architectures_have_batch_norms(architecture):
    model = create_model(ModelConfig(architecture, architecture_family(architecture).base_width,
                                     architecture_family(architecture).base_depth), dataset_info("digits"))
    has_norms = any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())
    assert architecture_family(architecture).batch_norm == has_norms


def _vgg_study(statistics: str):
    return parse_spec({
        "name": "statistics", "architectures": ["vgg"], "datasets": ["digits"], "widths": [4, 16], "seeds": [0],
        "training": {"max_epochs": 1, "batch_size": 64, "batch_norm_statistics": statistics},
        "weight_noise": {"sigmas": [0.0], "draws": 1},
    }, "test")


@pytest.mark.slow
def test_a_study_measures_and_saves_its_models_with_the_statistics_of_their_final_weights(tmp_path):
    dataset = load_dataset("digits")
    first_convolutions = {}
    for statistics in ("recomputed", "running"):
        spec = _vgg_study(statistics)
        run_study(spec, tmp_path / statistics)
        [row] = [row for row in StudyDatabase(tmp_path / statistics).rows("trials") if row["width"] == 16]
        trial = next(trial for trial in expand(spec) if trial.trial_id == row["trial_id"])
        model = load_checkpoint(prepare_model(spec, trial, dataset)[0], tmp_path / statistics / row["checkpoint"])
        assert evaluate(model, dataset.test_images, dataset.test_labels, 10).accuracy == row["test_accuracy"]
        with torch.no_grad():
            convolved = model.network.conv1(model.normalize(to_pixels(dataset.train_images)))
        first_convolutions[statistics] = model.network.norm1.running_mean, convolved.mean((0, 2, 3))
    saved, of_training_set = first_convolutions["recomputed"]
    torch.testing.assert_close(saved, of_training_set, rtol=1e-4, atol=1e-5)
    saved, of_training_set = first_convolutions["running"]
    assert not torch.allclose(saved, of_training_set, rtol=1e-4, atol=1e-5)  # a running average trails
