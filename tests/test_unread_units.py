"""Evaluation's network without unread units computes the same logits, bit for bit, over fewer units."""

import copy

import pytest
import torch

from sparsecap.data import DatasetInfo, dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.robustness import evaluate
from sparsecap.sparsity import Allocation, Engine, MaskedLinear, masked_layers, set_engine, sparse_model_at_init
from sparsecap.sparsity.unread_units import (
    narrowings,
    sparse_chains,
    trained_without_unread_units,
    without_unread_units,
)
from sparsecap.training import TrainingConfig, train

INFO = dataset_info("digits")


def _model(width: int, depth: int, capacity: int, engine: Engine = Engine.SPARSE,
           info: DatasetInfo = INFO) -> torch.nn.Module:
    model = create_model(ModelConfig("mlp", width, depth), info)
    sparse_model_at_init(model, capacity, Allocation.UNIFORM, torch.Generator().manual_seed(3),
                         torch.Generator().manual_seed(4))
    return set_engine(model, engine).eval()


def _inputs() -> torch.Tensor:
    return torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize(("width", "depth"), [(2048, 1), (1024, 3)])
def test_the_narrowed_network_gives_the_same_logits_bit_for_bit_over_fewer_units(width, depth):
    model = _model(width, depth, capacity=2000)
    before = copy.deepcopy(model.state_dict())
    narrowed = without_unread_units(model)
    widths = [layer.out_features for _, layer in masked_layers(narrowed)][:-1]
    reads = torch.unique(masked_layers(model)[-1][1].kept % width).numel()
    assert widths[-1] == reads < width  # the last hidden layer keeps exactly the units the output reads
    assert all(narrowed_width < width for narrowed_width in widths)
    with torch.no_grad():
        assert torch.equal(narrowed(_inputs()), model(_inputs()))
    assert all(torch.equal(tensor, model.state_dict()[name]) for name, tensor in before.items())  # untouched
    shared = {id(parameter) for parameter in narrowed.parameters()} & {id(parameter) for parameter in model.parameters()}
    assert not shared


def test_input_gradients_through_the_narrowed_network_are_the_same():
    model = _model(1024, 2, capacity=2000)
    narrowed = without_unread_units(model)
    gradients = []
    for network in (model, narrowed):
        inputs = _inputs().requires_grad_()
        torch.nn.functional.cross_entropy(network(inputs), torch.arange(50) % 10).backward()
        gradients.append(inputs.grad)
    assert torch.equal(*gradients)  # what attacks step along


@pytest.mark.parametrize("engine", [Engine.DENSE, Engine.SPARSE])
def test_a_network_with_every_unit_read_or_no_sparse_chain_is_evaluated_as_it_is(engine):
    dense_base = _model(32, 1, capacity=64 * 32 + 32 * 10, engine=engine)  # every unit read
    assert without_unread_units(dense_base) is dense_base
    wide_dense = _model(2048, 1, capacity=2000, engine=Engine.DENSE)
    assert sparse_chains(wide_dense) == [] and without_unread_units(wide_dense) is wide_dense


def test_evaluation_is_the_same_with_and_without_the_unread_units():
    model = _model(2048, 2, capacity=3000)
    generator = torch.Generator().manual_seed(6)
    images = torch.randint(0, 256, (200, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (200,), generator=generator)
    with torch.no_grad():
        logits = torch.cat([model(images[start:start + 100].float() / 255) for start in (0, 100)])
    evaluation = evaluate(model, images, labels, 10)
    assert evaluation.accuracy == (logits.argmax(1) == labels).double().mean().item()
    assert evaluation.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)


@pytest.mark.parametrize(("width", "depth", "info", "capacity"), [
    (2048, 1, INFO, 2000), (1024, 3, INFO, 2000),
    # MNIST's 784 inputs: the full hidden layer (1024 units) folds its bias into its product, the narrowed one
    # (746 read units) would not by its shape alone, and then summed its bias gradient in another order.
    (1024, 1, dataset_info("mnist"), 101_632),
])
def test_training_without_the_unread_units_is_the_same_run_bit_for_bit(width, depth, info, capacity):
    model = _model(width, depth, capacity, info=info).train()
    generator = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (300, *info.input_shape), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (300,), generator=generator)
    config = TrainingConfig(max_epochs=3, batch_size=64, stop_loss=0.0)
    full = copy.deepcopy(model)
    expected = train(full, images, labels, config, torch.Generator().manual_seed(8))
    with trained_without_unread_units(model) as narrowed:
        assert narrowed is not model
        result = train(narrowed, images, labels, config, torch.Generator().manual_seed(8))
    assert result.epoch_losses == expected.epoch_losses
    trained, reference = model.state_dict(), full.state_dict()
    assert trained.keys() == reference.keys()
    assert all(torch.equal(trained[name], reference[name]) for name in reference)
    assert not model.training


def test_a_layer_left_whole_in_a_narrowed_chain_is_trained_and_written_back():
    """The output reads 10 hidden2 units, each reading every hidden1 unit: hidden1 is not narrowed, so its
    training comes back with the rest of the copy's state, not through a narrowing's write-back."""
    model = create_model(ModelConfig("mlp", 32, 2), INFO)
    layers = dict(masked_layers(model))
    output_mask = torch.zeros(10, 32)
    output_mask[:, :10] = 1
    layers["network.output"].set_mask(output_mask)
    model = set_engine(model, Engine.SPARSE).train()
    assert set(narrowings(model)) == {"network.hidden2", "network.output"}
    generator = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (128, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (128,), generator=generator)
    config = TrainingConfig(max_epochs=2, batch_size=64, stop_loss=0.0)
    untrained, full = model.state_dict()["network.hidden1.values"].clone(), copy.deepcopy(model)
    train(full, images, labels, config, torch.Generator().manual_seed(8))
    with trained_without_unread_units(model) as narrowed:
        train(narrowed, images, labels, config, torch.Generator().manual_seed(8))
    trained, reference = model.state_dict(), full.state_dict()
    assert not torch.equal(reference["network.hidden1.values"], untrained)  # it did train
    assert all(torch.equal(trained[name], reference[name]) for name in reference)


def test_a_dropout_between_sparse_layers_ends_the_chain_so_training_stays_the_same_run():
    """Dropout draws its mask over the units it sees: narrowed, the same generator state would drop other
    units. The output reads hidden units 12-15 only, and training is still bit for bit the whole network's."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(MaskedLinear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5), MaskedLinear(16, 2))
    mask = torch.zeros(2, 16)
    mask[:, 12:] = 1
    model[3].set_mask(mask)
    model = set_engine(model, Engine.SPARSE).train()
    inputs, labels = torch.randn(32, 8), torch.randint(0, 2, (32,))
    assert sparse_chains(model) == []

    def step(network: torch.nn.Module) -> None:
        torch.manual_seed(1)
        torch.nn.functional.cross_entropy(network(inputs), labels).backward()
        torch.optim.SGD(network.parameters(), lr=0.1).step()

    whole = copy.deepcopy(model)
    step(whole)
    with trained_without_unread_units(model) as narrowed:
        step(narrowed)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), whole.state_dict().values(), strict=True))
