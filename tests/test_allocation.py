import math

import pytest
import torch

from sparsecap.data import dataset_info
from sparsecap.errors import AllocationError
from sparsecap.models import ModelConfig, create_model, depth_family_base, width_family_base
from sparsecap.sparsity import (
    Allocation,
    allocate,
    layer_shapes,
    mask_to_capacity,
    masked_layers,
    parse_allocation,
    weight_count,
)
from sparsecap.sparsity.allocation import whole_kernel_counts

MNIST = dataset_info("mnist")
WIDTHS = [2**exponent for exponent in range(7, 16)]
DEPTHS = [1, 2, 4, 8]


def _capacity(config: ModelConfig) -> int:
    return weight_count(create_model(config, MNIST))


def test_base_capacity_is_the_papers_count():
    assert _capacity(width_family_base("mlp")) == 784 * 128 + 128 * 10 == 101_632


@pytest.mark.parametrize("allocation", list(Allocation))
@pytest.mark.parametrize("width", WIDTHS)
def test_width_family_masks_hold_exactly_the_base_count(width, allocation):
    model = create_model(ModelConfig("mlp", width, 1), MNIST)
    planned = allocate(layer_shapes(model), 101_632, allocation)
    mask_to_capacity(model, 101_632, allocation, torch.Generator().manual_seed(width))
    assert sum(planned) == 101_632
    assert [int(layer.mask.count_nonzero()) for _, layer in masked_layers(model)] == planned


@pytest.mark.parametrize("allocation", list(Allocation))
@pytest.mark.parametrize("depth", DEPTHS)
def test_depth_family_masks_hold_exactly_the_base_count(depth, allocation):
    capacity = _capacity(depth_family_base("mlp"))
    assert capacity == 784 * 512 + 512 * 10
    model = create_model(ModelConfig("mlp", 512, depth), MNIST)
    mask_to_capacity(model, capacity, allocation, torch.Generator().manual_seed(depth))
    assert sum(int(layer.mask.count_nonzero()) for _, layer in masked_layers(model)) == capacity


def test_staggered_worked_example():
    # Layers of 40, 24 and 12 weights, 40 to keep. Water-filling from the top: the 12-weight layer
    # fits under any level, so the other two share 40 - 12 = 28 evenly: 14 each (below 24 and 40).
    assert allocate([(4, 10), (6, 4), (2, 6)], 40, Allocation.STAGGERED) == [14, 14, 12]
    # 41 to keep: level 14.5; the half weight goes to the larger of the two tied layers.
    assert allocate([(4, 10), (6, 4), (2, 6)], 41, Allocation.STAGGERED) == [15, 14, 12]
    # 70 to keep: the largest layer alone is cut, down to 70 - 24 - 12 = 34 (still above 24).
    assert allocate([(4, 10), (6, 4), (2, 6)], 70, Allocation.STAGGERED) == [34, 24, 12]


def test_uniform_gives_every_layer_the_same_density_up_to_rounding():
    shapes = [(300, 784), (300, 300), (10, 300)]
    counts = allocate(shapes, 50_000, Allocation.UNIFORM)
    assert sum(counts) == 50_000
    density = 50_000 / sum(math.prod(shape) for shape in shapes)
    for count, shape in zip(counts, shapes):
        assert abs(count - density * math.prod(shape)) < 1


def test_erk_keeps_small_layers_denser_and_caps_at_dense():
    counts = allocate([(4096, 784), (10, 4096)], 101_632, Allocation.ERK)
    assert sum(counts) == 101_632
    assert counts[1] / (10 * 4096) > counts[0] / (4096 * 784)
    counts = allocate([(1000, 1000), (2, 3)], 500_000, Allocation.ERK)
    assert counts == [499_994, 6]


@pytest.mark.parametrize("allocation", list(Allocation))
def test_target_above_the_model_size_is_refused(allocation):
    with pytest.raises(AllocationError, match="only 76 weights"):
        allocate([(4, 10), (6, 4), (2, 6)], 77, allocation)


def test_whole_kernels_fill_the_target_exactly_where_single_weights_can():
    # A 2x1x3x3 convolution (kernels of 9) asked for 17 weights, a 10x4 linear layer (kernels of 1) for 3: the
    # convolution rounds down to 1 kernel, 8 weights short, which no kernel of 9 fits; the linear layer takes all 8.
    assert whole_kernel_counts([17, 3], [(2, 1, 3, 3), (10, 4)], 20) == [1, 11]


def test_whole_kernels_go_first_to_the_layer_rounded_down_most():
    # Two 4x1x3x3 convolutions asked for 10 and 17 weights: both round down to 1 kernel, 9 short, which fits one
    # more kernel; the second lost 8/9 of one to rounding, the first 1/9.
    assert whole_kernel_counts([10, 17], [(4, 1, 3, 3), (4, 1, 3, 3)], 27) == [1, 2]


def test_unknown_allocation_lists_the_valid_ones():
    with pytest.raises(AllocationError, match="uniform, staggered, erk"):
        parse_allocation("random")


def test_erk_counts_are_proportional_to_each_layers_sum_of_dimensions():
    """ERK (Evci et al. 2020) gives a layer density ∝ (sum of dims) / (product of dims), so its count ∝ the sum of
    its dims, kernel dims included for a convolution; here no layer reaches density 1."""
    shapes = [(16, 8, 3, 3), (8, 4, 3, 3), (10, 64)]  # sums 30, 18, 74 (122 in all); 610 = 5 × 122
    assert allocate(shapes, 610, Allocation.ERK) == [150, 90, 370]


def test_erk_makes_a_layer_over_density_one_dense_and_rescales_the_rest():
    """Sums 20 and 200: the 10×10 layer would get 1320 / 11 = 120 > 100 weights, so it is dense and the other
    layer takes the remaining 1220 (not 1200)."""
    assert allocate([(10, 10), (100, 100)], 1320, Allocation.ERK) == [100, 1220]
