import dataclasses

import pytest
import torch
from torch import nn

from sparsecap.cli import main
from sparsecap.data import dataset_info
from sparsecap.errors import SparsecapError
from sparsecap.models import ModelConfig, architecture_family, create_model, default_base, validate_input
from sparsecap.models.normalize import Normalize
from sparsecap.sparsity import (
    Allocation,
    MaskGranularity,
    PruningScope,
    allocate,
    initialize_,
    magnitude_prune_,
    mask_to_capacity,
    masked_layers,
    weight_count,
)
from sparsecap.sparsity.masked import layer_shapes
from sparsecap.studies import StudyDatabase
from sparsecap.training import TrainingConfig, train
from sparsecap.training.augmentation import random_crop_and_flip
from tests.dataset_files import write_cifar10

CIFAR10 = dataset_info("cifar10")
MEMBERS = [("vgg", 11), ("vgg", 13), ("vgg", 16), ("resnet", 18), ("resnet", 34), ("resnet", 50)]


def _conv(in_channels: int, out_channels: int, kernel: int, bias: bool) -> int:
    return in_channels * out_channels * kernel * kernel + (out_channels if bias else 0)


def _norm(channels: int) -> int:
    return 2 * channels


def _vgg_parameters(layout: list[int], classes: int = 10) -> int:
    total, channels = 0, 3
    for out_channels in layout:
        total += _conv(channels, out_channels, 3, True) + _norm(out_channels)
        channels = out_channels
    return total + channels * classes + classes


def _resnet_parameters(blocks: list[int], bottleneck: bool, classes: int = 10) -> int:
    total, channels = _conv(3, 64, 3, False) + _norm(64), 64
    for stage, count in enumerate(blocks):
        planes = 64 * 2**stage
        out_channels = planes * 4 if bottleneck else planes
        for index in range(count):
            if bottleneck:
                total += _conv(channels, planes, 1, False) + _conv(planes, planes, 3, False)
                total += _conv(planes, out_channels, 1, False) + _norm(planes) * 2 + _norm(out_channels)
            else:
                total += _conv(channels, planes, 3, False) + _conv(planes, planes, 3, False) + _norm(planes) * 2
            if channels != out_channels or (stage > 0 and index == 0):
                total += _conv(channels, out_channels, 1, False) + _norm(out_channels)
            channels = out_channels
    return total + channels * classes + classes


EXPECTED_DENSE_PARAMETERS = {
    # Layer by layer, and the counts commonly quoted for the CIFAR variants of these networks.
    ("vgg", 11): (_vgg_parameters([64, 128, 256, 256, 512, 512, 512, 512]), 9_231_114),
    ("vgg", 13): (_vgg_parameters([64, 64, 128, 128, 256, 256, 512, 512, 512, 512]), 9_416_010),
    ("vgg", 16): (_vgg_parameters([64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]), 14_728_266),
    ("resnet", 18): (_resnet_parameters([2, 2, 2, 2], False), 11_173_962),
    ("resnet", 34): (_resnet_parameters([3, 4, 6, 3], False), 21_282_122),
    ("resnet", 50): (_resnet_parameters([3, 4, 6, 3], True), 23_520_842),
}


@pytest.mark.parametrize(("architecture", "depth"), MEMBERS)
def test_vanilla_parameter_counts(architecture, depth):
    model = create_model(ModelConfig(architecture, 64, depth), CIFAR10)
    counted = sum(parameter.numel() for parameter in model.parameters())
    layer_by_layer, standard = EXPECTED_DENSE_PARAMETERS[(architecture, depth)]
    assert counted == layer_by_layer == standard


# The standard VGG configurations ("M": max-pool), as in Simonyan & Zisserman's table 1 (A, B, D).
STANDARD_VGG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def _input_sizes_and_channels(model: nn.Module, inputs: torch.Tensor, kind: type[nn.Module]) -> list[tuple[int, int]]:
    """(input height, output channels) of each `kind` layer in forward order."""
    seen: list[tuple[int, int]] = []
    hooks = [module.register_forward_hook(lambda layer, args, output: seen.append((args[0].shape[-1], output.shape[1])))
             for module in model.modules() if isinstance(module, kind)]
    model.eval()(inputs)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("depth", [11, 13, 16])
@pytest.mark.parametrize("width", [16, 64])
def test_vgg_convolutions_sit_between_the_standard_pools_at_every_width(depth, width):
    """Parameter counts cannot see where pools are; the resolution each convolution runs at can."""
    expected, size = [], 32
    for entry in STANDARD_VGG[depth]:
        if entry == "M":
            size //= 2
        else:
            expected.append((size, entry * width // 64))
    model = create_model(ModelConfig("vgg", width, depth), CIFAR10)
    assert _input_sizes_and_channels(model, torch.rand(1, 3, 32, 32), nn.Conv2d) == expected


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_resnet_blocks_are_conv_norm_relu_and_end_in_a_relu_after_the_sum(depth):
    """He et al.: ReLU after each inner convolution's norm, none before the addition, one after it."""
    model = create_model(ModelConfig("resnet", 4, depth), CIFAR10).network
    kinds = [type(layer) for layer in model.stem]
    assert kinds[1:] == [nn.BatchNorm2d, nn.ReLU] and issubclass(kinds[0], nn.Conv2d)
    blocks = [block for stage in ("stage1", "stage2", "stage3", "stage4") for block in getattr(model, stage)]
    assert len(blocks) == {18: 8, 34: 16, 50: 16}[depth]
    units = 3 if depth == 50 else 2
    for block in blocks:
        kinds = [type(layer) for layer in block.residual]
        expected = [nn.BatchNorm2d, nn.ReLU] * (units - 1) + [nn.BatchNorm2d]
        assert [kind for kind in kinds if not issubclass(kind, nn.Conv2d)] == expected
        outputs = block.eval()(torch.randn(2, block.residual[0].in_channels, 8, 8))
        assert outputs.min() >= 0 and (outputs == 0).any()


def test_mlp_width_and_depth_give_the_layers_the_readme_promises():
    """width = units per hidden layer, depth = hidden layers, each followed by a ReLU; then the logits."""
    network = create_model(ModelConfig("mlp", 32, 3), dataset_info("mnist")).network
    linear = [(name, tuple(layer.weight.shape)) for name, layer in network.named_children() if hasattr(layer, "weight")]
    assert linear == [("hidden1", (32, 784)), ("hidden2", (32, 32)), ("hidden3", (32, 32)), ("output", (10, 32))]
    kinds = [type(layer).__name__ for layer in network]
    assert kinds == ["Flatten"] + ["MaskedLinear", "ReLU"] * 3 + ["MaskedLinear"]


def test_normalize_subtracts_each_channels_mean_and_divides_by_its_std():
    pixels = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    normalized = Normalize(CIFAR10.mean, CIFAR10.std)(pixels)
    expected = [(value - mean) / std for value, mean, std in zip((0.0, 0.5, 1.0), CIFAR10.mean, CIFAR10.std)]
    assert torch.allclose(normalized[1, :, 1, 0], torch.tensor(expected))
    assert create_model(ModelConfig("vgg", 4, 11), CIFAR10).normalize.std.flatten().tolist() == pytest.approx(
        list(CIFAR10.std))


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "cifar100"])
@pytest.mark.parametrize(("architecture", "depth"), MEMBERS)
def test_output_shapes_for_both_input_shapes(architecture, depth, dataset):
    info = dataset_info(dataset)
    model = create_model(ModelConfig(architecture, 8, depth), info).eval()
    assert model(torch.rand(2, *info.input_shape)).shape == (2, info.num_classes)


@pytest.mark.parametrize(("architecture", "depth"), MEMBERS)
def test_images_larger_than_cifars_pass_as_validation_promises(architecture, depth):
    """Any image of at least 8×8 pixels: VGG's five pools leave 2×2 of a 48×48 image, which its global
    average pool takes (as ResNet's does)."""
    info = dataclasses.replace(dataset_info("cifar10"), input_shape=(3, 48, 48))
    validate_input(architecture_family(architecture), info.input_shape)
    model = create_model(ModelConfig(architecture, 8, depth), info).eval()
    assert model(torch.rand(2, 3, 48, 48)).shape == (2, 10)


@pytest.mark.parametrize("allocation", list(Allocation))
@pytest.mark.parametrize(("architecture", "depth"), MEMBERS)
@pytest.mark.parametrize("width", [24, 32])
def test_exact_nonzero_totals(architecture, depth, width, allocation):
    """Wider than every default base (width 16), so each model really loses weights to its mask."""
    config = ModelConfig(architecture, width, depth)
    capacity = weight_count(create_model(default_base(config), CIFAR10))
    model = create_model(config, CIFAR10)
    assert capacity < weight_count(model)
    mask_to_capacity(model, capacity, allocation, torch.Generator().manual_seed(width))
    assert sum(int(layer.mask.count_nonzero()) for _, layer in masked_layers(model)) == capacity


def test_default_bases_are_the_papers():
    assert default_base(ModelConfig("vgg", 64, 11)) == ModelConfig("vgg", 16, 11)
    assert default_base(ModelConfig("vgg", 64, 16)) == ModelConfig("vgg", 64, 11)
    assert default_base(ModelConfig("resnet", 64, 50)) == ModelConfig("resnet", 64, 18)


@pytest.mark.parametrize(("architecture", "depth"), [("vgg", 13), ("resnet", 34)])
def test_whole_kernel_masks_stay_within_one_kernel_of_the_target(architecture, depth):
    config = ModelConfig(architecture, 16, depth)
    capacity = weight_count(create_model(default_base(config), CIFAR10)) - 5  # force rounding
    model = create_model(config, CIFAR10)
    counts = mask_to_capacity(model, capacity, Allocation.UNIFORM, torch.Generator().manual_seed(0),
                              MaskGranularity.KERNEL)
    assert 0 <= capacity - sum(counts) < 9
    for _, layer in masked_layers(model):
        if layer.mask.dim() == 4:
            per_kernel = layer.mask.sum(dim=(2, 3))
            kernel_size = layer.mask.shape[2] * layer.mask.shape[3]
            assert bool(((per_kernel == 0) | (per_kernel == kernel_size)).all())


def test_staggered_allocation_on_a_small_cnn_by_hand():
    # VGG11 at width 8 on 1x8x8 inputs, masked to VGG11 at width 4 (36,356 weights). Layer sizes:
    # conv1 72, conv2 1,152, conv3 4,608, conv4 9,216, conv5 18,432, conv6-8 36,864, classifier 640.
    # Water-filling: 72, 640, 1,152 and 4,608 fit under the level; the other five layers share
    # 36,356 - 6,472 = 29,884, i.e. 5,976.8 each: four get 5,977 (largest layers first), conv4 5,976.
    info = dataset_info("digits")
    capacity = weight_count(create_model(ModelConfig("vgg", 4, 11), info))
    assert capacity == 36_356
    shapes = layer_shapes(create_model(ModelConfig("vgg", 8, 11), info))
    assert allocate(shapes, capacity, Allocation.STAGGERED) == [72, 1152, 4608, 5976, 5977, 5977, 5977, 5977, 640]


def test_masks_hold_through_training_with_momentum():
    info = dataset_info("digits")
    model = create_model(ModelConfig("resnet", 8, 18), info)
    capacity = weight_count(create_model(ModelConfig("resnet", 4, 18), info))
    mask_to_capacity(model, capacity, Allocation.ERK, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (64,), generator=generator)
    config = TrainingConfig(max_epochs=3, learning_rate=0.1, batch_size=16, stop_loss=0.0, augmentation=True)
    train(model, images, labels, config, generator)
    for _, layer in masked_layers(model):
        assert torch.count_nonzero(layer.weight[layer.mask == 0]) == 0
    assert sum(int(layer.weight.count_nonzero()) for _, layer in masked_layers(model)) == capacity


def test_inputs_too_small_and_missing_members_are_refused():
    with pytest.raises(SparsecapError, match="at least 8x8"):
        validate_input(architecture_family("vgg"), (3, 4, 4))
    with pytest.raises(SparsecapError, match="3x32x4 inputs"):  # the smaller side decides, whichever it is
        validate_input(architecture_family("vgg"), (3, 32, 4))
    validate_input(architecture_family("vgg"), (3, 8, 32))
    with pytest.raises(SparsecapError, match="valid depths: 11, 13, 16"):
        create_model(ModelConfig("vgg", 16, 19), CIFAR10)


def test_augmentation_crops_and_flips_within_the_padded_image():
    images = torch.arange(4 * 2 * 6 * 6, dtype=torch.uint8).view(4, 2, 6, 6)
    unpadded = random_crop_and_flip(images, torch.Generator().manual_seed(0), padding=0)
    for original, augmented in zip(images, unpadded):
        assert torch.equal(augmented, original) or torch.equal(augmented, original.flip(-1))
    shifted = random_crop_and_flip(images, torch.Generator().manual_seed(0), padding=2)
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    assert set(shifted.unique().tolist()) <= set(images.unique().tolist()) | {0}



def test_augmentation_draws_every_4_pixel_crop_and_a_fair_flip_independently_per_image():
    """CIFAR practice: zero padding of 4, each of the 9×9 offsets equally likely, a horizontal flip with
    probability 1/2, all drawn per image; each output is identified among the 162 candidates computed here."""
    count, size, padding = 8100, 6, 4  # every crop keeps some of the image: no two candidates alike
    image = torch.arange(1, size * size + 1, dtype=torch.uint8).view(1, size, size)  # distinct and nonzero
    augmented = random_crop_and_flip(image.expand(count, 1, size, size).contiguous(), torch.Generator().manual_seed(0))
    padded = nn.functional.pad(image, (padding,) * 4)
    candidates = {(top, left, flip): crop.flip(-1) if flip else crop
                  for top in range(2 * padding + 1) for left in range(2 * padding + 1) for flip in (False, True)
                  for crop in [padded[:, top:top + size, left:left + size]]}
    keys, stacked = list(candidates), torch.stack(list(candidates.values()))
    matches = (augmented[:, None] == stacked[None]).flatten(2).all(-1)  # (count, candidates)
    assert bool((matches.sum(1) == 1).all())  # every output is exactly one crop of the zero-padded image
    drawn = [keys[index] for index in matches.int().argmax(1).tolist()]
    offsets = torch.tensor([[top, left] for top, left, _ in drawn])
    flips = torch.tensor([flip for _, _, flip in drawn])
    per_offset = torch.bincount(offsets[:, 0] * (2 * padding + 1) + offsets[:, 1], minlength=81)
    assert len(per_offset) == 81 and int(per_offset.min()) > 50 and int(per_offset.max()) < 160  # 100 expected
    assert 0.47 < flips.float().mean().item() < 0.53  # 1/2 ± 4 standard deviations
    assert 0.47 < flips[offsets[:, 0] == offsets[:, 1]].float().mean().item() < 0.6  # not tied to the offset
    assert abs(torch.corrcoef(offsets.T.float())[0, 1].item()) < 0.05  # rows and columns drawn apart


@pytest.mark.slow
def test_cnn_smoke_runs_from_the_cli_and_reports_cnn_panels(tmp_path, capsys):
    write_cifar10(tmp_path / "data" / "cifar-10-batches-py", per_train_batch=120, test=300)
    out = tmp_path / "out"
    code = main(["run", "cnn-smoke", "--data-root", str(tmp_path / "data"), "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    trials = StudyDatabase(out).rows("trials")
    assert {(row["architecture"], row["width"]) for row in trials} == {
        ("vgg", 16), ("vgg", 32), ("resnet", 16), ("resnet", 32)
    }
    assert len(trials) == 8
    assert {row["nonzero_weights"] == row["base_nonzero"] for row in trials} == {True}
    page = (out / "report" / "index.html").read_text()
    assert "vgg · cifar10" in page and "resnet · cifar10" in page


def test_post_training_pruning_of_a_cnn_keeps_the_base_count_of_largest_weights():
    info = dataset_info("digits")
    model = create_model(ModelConfig("vgg", 8, 13), info)
    initialize_(model, torch.Generator().manual_seed(0))
    capacity = weight_count(create_model(ModelConfig("vgg", 8, 11), info))
    before = [layer.weight.detach().clone() for _, layer in masked_layers(model)]
    magnitude_prune_(model, capacity, PruningScope.GLOBAL, Allocation.UNIFORM)
    kept = torch.cat([layer.mask.bool().flatten() for _, layer in masked_layers(model)])
    magnitudes = torch.cat([weight.abs().flatten() for weight in before])
    assert int(kept.sum()) == capacity
    assert magnitudes[kept].min() >= magnitudes[~kept].max()
