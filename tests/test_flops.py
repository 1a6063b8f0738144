"""Multiply-accumulates per image, counted from layer shapes: by hand for an MLP and a convolution."""

import torch
from torch import nn

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import Allocation, sparse_model_at_init
from sparsecap.sparsity.flops import MultiplyAccumulates, dense_multiply_accumulates, multiply_accumulates
from sparsecap.sparsity.masked import MaskedConv2d, MaskedLinear


def test_an_mlp_applies_each_weight_once_per_image_on_any_device():
    info = dataset_info("mnist")
    expected = 784 * 256 + 256 * 256 + 256 * 10
    with torch.device("meta"):
        shape_only = create_model(ModelConfig("mlp", 256, 2), info)
    assert dense_multiply_accumulates(shape_only, info.input_shape) == expected
    assert dense_multiply_accumulates(create_model(ModelConfig("mlp", 256, 2), info), info.input_shape) == expected


def test_a_convolution_applies_its_weights_at_every_output_pixel_and_masks_count_nonzeros():
    info = dataset_info("cifar10")
    model = create_model(ModelConfig("vgg", 8, 11), info)
    first = model.get_submodule("network.conv1")  # 3x3 convolution of the 32x32 input, padding 1
    assert first.weight.shape == (8, 3, 3, 3)
    with torch.device("meta"):
        shape_only = create_model(ModelConfig("vgg", 8, 11), info)
    counted = dense_multiply_accumulates(model, info.input_shape)
    assert counted == dense_multiply_accumulates(shape_only, info.input_shape)
    assert counted > 8 * 3 * 9 * 32 * 32  # the first layer alone, at all 1,024 output pixels
    sparse_model_at_init(model, 5000, Allocation.UNIFORM, torch.Generator().manual_seed(0),
                         torch.Generator().manual_seed(1))
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    both = multiply_accumulates(model, info.input_shape)
    assert both.dense == counted and 0 < both.nonzero < counted
    # Counting runs a forward pass: in eval mode, so the model's batch-norm statistics are left as they were.
    assert model.training and all(torch.equal(tensor, state[name]) for name, tensor in model.state_dict().items())


def test_a_small_masked_network_counts_by_hand() -> None:
    """Exact counts: a stride-2 convolution applies its weights at each of its 3x3 output pixels (not per
    output channel too), a linear layer once, and the nonzero count scales kept weights the same way."""
    model = nn.Sequential(MaskedConv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), MaskedLinear(18, 4))
    conv, linear = model[0], model[3]
    conv_mask = torch.zeros(2, 1, 3, 3)
    conv_mask.view(-1)[:5] = 1
    linear_mask = torch.zeros(4, 18)
    linear_mask.view(-1)[::8] = 1  # 9 of 72
    conv.set_mask(conv_mask)
    linear.set_mask(linear_mask)
    counted = multiply_accumulates(model, (1, 6, 6))  # 6x6 input, stride 2, padding 1: 3x3 outputs
    assert counted == MultiplyAccumulates(dense=2 * 1 * 9 * 9 + 18 * 4, nonzero=5 * 9 + 9)
    assert dense_multiply_accumulates(model, (1, 6, 6)) == 162 + 72
