"""`[training] precision`: the arithmetic of one training run, set for it and undone after it."""

import copy

import pytest
import torch
import torch.nn.functional as functional

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import Allocation, Engine, initialize_, set_engine, sparse_model_at_init
from sparsecap.training import Precision, TrainingConfig, numeric_precision, to_pixels, train
from sparsecap.training.multiseed import train_together
from sparsecap.training.precision import bfloat16_emulated

CAPACITY = 64 * 32 + 32 * 10  # the dense width-32 digits MLP


def _model(seed: int = 0, engine: Engine = Engine.DENSE, architecture: str = "mlp") -> torch.nn.Module:
    """A static-sparse width-128 MLP, or a dense VGG11 at width 8 (convolutions and batch norm)."""
    if architecture == "vgg":
        vgg = create_model(ModelConfig("vgg", 8, 11), dataset_info("digits"))
        initialize_(vgg, torch.Generator().manual_seed(seed))
        return vgg
    model = create_model(ModelConfig("mlp", 128, 1), dataset_info("digits"))
    sparse_model_at_init(model, CAPACITY, Allocation.UNIFORM, torch.Generator().manual_seed(seed),
                         torch.Generator().manual_seed(seed + 1))
    return set_engine(model, engine)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return (torch.randint(0, 256, (192, 1, 8, 8), dtype=torch.uint8, generator=generator),
            torch.randint(0, 10, (192,), generator=generator))


def _config(precision: Precision, epochs: int = 3) -> TrainingConfig:
    return TrainingConfig(max_epochs=epochs, learning_rate=0.1, batch_size=32, stop_loss=0.0, precision=precision)


def _trained(precision: Precision, engine: Engine = Engine.DENSE, architecture: str = "mlp", epochs: int = 3,
             ) -> tuple[torch.nn.Module, list[float]]:
    model = _model(engine=engine, architecture=architecture)
    result = train(model, *_data(), _config(precision, epochs), torch.Generator().manual_seed(5))
    return model, result.epoch_losses


def _flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.fixture
def saved_flags():
    before = _flags()
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("outside", [(False, True), (True, False)])
def test_tensor_float_is_on_for_tf32_only_and_the_process_settings_come_back(saved_flags, outside):
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = outside
    for precision, inside in [(Precision.TF32, (True, True)), (Precision.FLOAT32, (False, False)),
                              (Precision.BFLOAT16, (False, False))]:
        with numeric_precision(precision, "cpu"):
            assert _flags() == inside, precision
        assert _flags() == outside
    with pytest.raises(ZeroDivisionError), numeric_precision(Precision.TF32, "cuda:0"):
        1 / 0
    assert _flags() == outside  # restored when the run raised too


def test_bfloat16_autocasts_products_on_the_run_device_and_float32_switches_an_outer_autocast_off():
    left, right = torch.rand(4, 8), torch.rand(8, 2)
    with numeric_precision(Precision.BFLOAT16, torch.device("cpu")):
        assert (left @ right).dtype == torch.bfloat16
        with numeric_precision(Precision.FLOAT32, "cpu"):
            assert (left @ right).dtype == torch.float32
    assert (left @ right).dtype == torch.float32


@pytest.mark.parametrize("architecture", ["mlp", pytest.param("vgg", marks=pytest.mark.slow)])  # CPU bf16: slow
def test_bfloat16_training_is_autocast_around_each_forward_pass(architecture):
    """What `train` computes at bfloat16 is the textbook mixed-precision loop (autocast around the forward
    pass and the loss only, float32 weights and optimiser), to the bit, though its context covers backward
    and the whole run (where autocast's weight cache would hand every step stale bfloat16 biases)."""
    model, losses = _trained(Precision.BFLOAT16, architecture=architecture, epochs=2)
    reference = _model(architecture=architecture)
    images, labels = _data()
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(5)
    for _ in range(2):
        for batch in torch.randperm(len(labels), generator=generator).split(32):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = functional.cross_entropy(reference(to_pixels(images[batch])), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    for (name, parameter), other in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert parameter.dtype == torch.float32 and torch.equal(parameter, other), name
    assert losses != _trained(Precision.FLOAT32, architecture=architecture, epochs=2)[1]  # another arithmetic


def test_tf32_on_a_cpu_computes_exactly_as_float32():
    tf32, tf32_losses = _trained(Precision.TF32)
    float32, float32_losses = _trained(Precision.FLOAT32)
    assert tf32_losses == float32_losses
    assert all(torch.equal(a, b) for a, b in zip(tf32.parameters(), float32.parameters(), strict=True))


def test_the_sparse_engine_keeps_its_products_in_float32_under_bfloat16():
    # Every layer of this MLP is sparse-stored, and CSR products have no bfloat16 kernels: it trains as float32.
    assert _trained(Precision.BFLOAT16, Engine.SPARSE)[1] == _trained(Precision.FLOAT32, Engine.SPARSE)[1]


def test_seeds_trained_together_at_bfloat16_match_one_by_one_to_bfloat16_rounding():
    images, labels = _data()
    config = _config(Precision.BFLOAT16)
    alone = [_model(seed) for seed in (0, 1)]
    together = copy.deepcopy(alone)
    expected = [train(model, images, labels, config, torch.Generator().manual_seed(9 + seed))
                for seed, model in enumerate(alone)]
    results = train_together(together, images, labels, config,
                             [torch.Generator().manual_seed(9 + seed) for seed in range(2)])
    for result, reference in zip(results, expected, strict=True):
        assert result.epoch_losses == pytest.approx(reference.epoch_losses, rel=2e-2)
        assert result.epoch_losses != _trained(Precision.FLOAT32)[1]


def test_bfloat16_is_never_called_emulated_off_the_cpu():
    assert not bfloat16_emulated("cuda:0") and not bfloat16_emulated(torch.device("mps"))
