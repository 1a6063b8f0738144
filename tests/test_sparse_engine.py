"""The sparse engine computes what the dense-masked reference computes, storing the nonzeros only."""

import copy

import pytest
import torch
import torch.nn.functional as functional

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.robustness import evaluate, weight_noise_robustness
from sparsecap.sparsity import (
    Allocation,
    Engine,
    MaskedLinear,
    PruningScope,
    SparseLinear,
    initialize_,
    magnitude_prune_,
    masked_layers,
    set_engine,
    sparse_model_at_init,
    summarize,
)
from sparsecap.sparsity.engine import AUTO_DENSITY_THRESHOLD
from sparsecap.sparsity.sparse_linear import ReluMovedOn, ReluSparseLinear
from sparsecap.studies.checkpoints import load_checkpoint, save_checkpoint
from sparsecap.studies.spec import parse_spec
from sparsecap.training import TrainingConfig, train
from sparsecap.training.multiseed import stack_models

CAPACITY = 64 * 32 + 32 * 32 + 32 * 10  # the dense 2-hidden-layer width-32 digits MLP


def _sparse_mlp(width: int = 256, seed: int = 0) -> torch.nn.Module:
    model = create_model(ModelConfig("mlp", width, 2), dataset_info("digits"))
    return sparse_model_at_init(model, CAPACITY, Allocation.UNIFORM, torch.Generator().manual_seed(seed),
                                torch.Generator().manual_seed(seed + 1))


def _pair(dtype: torch.dtype = torch.float64) -> tuple[torch.nn.Module, torch.nn.Module]:
    dense = _sparse_mlp().to(dtype)
    sparse = set_engine(copy.deepcopy(dense), Engine.SPARSE)
    return dense, sparse


def _batches(count: int, dtype: torch.dtype = torch.float64):
    generator = torch.Generator().manual_seed(7)
    for _ in range(count):
        yield (torch.rand(32, 1, 8, 8, generator=generator, dtype=dtype),
               torch.randint(0, 10, (32,), generator=generator))


def _relative(reference: torch.Tensor, other: torch.Tensor) -> float:
    return float((reference - other).detach().abs().max() / reference.abs().max().clamp_min(1e-30).detach())


def _layers(model: torch.nn.Module) -> list:
    return [layer for _, layer in masked_layers(model)]


def _images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (count, 1, 8, 8), dtype=torch.uint8, generator=generator),
            torch.randint(0, 10, (count,), generator=generator))


def test_the_sparse_engine_stores_only_the_kept_weights_and_converts_back_exactly():
    dense, sparse = _pair()
    assert all(isinstance(layer, SparseLinear) for layer in _layers(sparse))
    kept = sum(int(layer.mask.count_nonzero()) for layer in _layers(dense))
    assert kept == CAPACITY
    state = sparse.state_dict()
    assert not any(name.endswith(("weight", "mask")) for name in state)  # nothing of the dense shape
    assert sum(tensor.numel() for name, tensor in state.items() if name.endswith(("values", "kept"))) == 2 * kept
    for reference, layer in zip(_layers(dense), _layers(sparse), strict=True):
        assert torch.equal(layer.effective_weight(), reference.effective_weight())
        assert torch.equal(layer.mask, reference.mask)
    back = set_engine(copy.deepcopy(sparse), Engine.DENSE)
    assert all(isinstance(layer, MaskedLinear) for layer in _layers(back))
    for (name, reference), (_, tensor) in zip(dense.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(reference, tensor), name
    assert summarize(sparse, CAPACITY) == summarize(dense, CAPACITY)


def test_one_step_gradients_match_the_dense_engine():
    dense, sparse = _pair()
    inputs, labels = next(_batches(1))
    dense_inputs, sparse_inputs = inputs.clone().requires_grad_(), inputs.clone().requires_grad_()
    functional.cross_entropy(dense(dense_inputs), labels).backward()
    functional.cross_entropy(sparse(sparse_inputs), labels).backward()
    assert _relative(dense_inputs.grad, sparse_inputs.grad) < 1e-12
    for reference, layer in zip(_layers(dense), _layers(sparse), strict=True):
        assert _relative(reference.weight.grad, layer._scatter(layer.values.grad)) < 1e-12
        assert _relative(reference.bias.grad, layer.bias.grad) < 1e-12
        assert torch.count_nonzero(reference.weight.grad[reference.mask == 0]) == 0


@pytest.mark.parametrize(("in_features", "out_features", "has_bias", "folds", "gathers"), [
    (7, 23, True, True, False),  # wider out than in: the bias is a column of the CSR matrix
    (23, 7, True, False, False),  # narrower: the bias is added to the product
    (7, 23, False, False, False),
    (60, 3, True, False, True),  # reads under half its inputs: gathers them
    (60, 4, True, True, True),  # gathers 3 inputs, then wider out than in: folds
])
@pytest.mark.parametrize("layer_class", [SparseLinear, ReluSparseLinear])
def test_the_product_and_its_three_gradients_match_the_dense_masked_layer(in_features, out_features, has_bias,
                                                                           folds, gathers, layer_class):
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(out_features, in_features, generator=generator, dtype=torch.float64)
    mask = (torch.rand(out_features, in_features, generator=generator) < 0.15).to(torch.float64)
    if out_features == 4:
        mask[:, 3:] = 0
        mask[:, :3] = 1  # every output reads the same 3 inputs
    mask[2] = 0  # an output with no kept weight: its bias alone
    mask[:, 1] = 0  # an input no kept weight reads: zero input gradient
    bias = torch.randn(out_features, generator=generator, dtype=torch.float64) if has_bias else None
    layer = layer_class.from_dense(weight, mask, bias)
    assert (layer.structure().bias_column is not None) is folds
    assert (layer.structure().live_inputs is not None) is gathers
    inputs = torch.randn(5, in_features, generator=generator, dtype=torch.float64)
    upstream = torch.randn(5, out_features, generator=generator, dtype=torch.float64)
    dense_weight = (weight * mask).requires_grad_()
    dense_bias = None if bias is None else bias.clone().requires_grad_()
    dense_inputs, sparse_inputs = inputs.clone().requires_grad_(), inputs.clone().requires_grad_()
    activated = torch.relu(dense_inputs) if layer_class is ReluSparseLinear else dense_inputs
    expected = functional.linear(activated, dense_weight, dense_bias)
    outputs = layer(sparse_inputs)
    assert _relative(expected, outputs) < 1e-12
    (expected * upstream).sum().backward()
    (outputs * upstream).sum().backward()
    assert _relative(dense_inputs.grad, sparse_inputs.grad) < 1e-12
    assert torch.count_nonzero(sparse_inputs.grad[:, 1]) == 0
    assert _relative(dense_weight.grad * mask, layer._scatter(layer.values.grad)) < 1e-12
    if has_bias:
        assert _relative(dense_bias.grad, layer.bias.grad) < 1e-12


def test_a_sparse_layer_after_a_relu_takes_it_over_and_the_dense_engine_hands_it_back():
    dense, sparse = _pair()
    network = sparse.get_submodule("network")
    assert [type(module) for module in network] == [
        torch.nn.Flatten, SparseLinear, ReluMovedOn, ReluSparseLinear, ReluMovedOn, ReluSparseLinear]
    inputs, _ = next(_batches(1))
    assert _relative(dense(inputs), sparse(inputs)) < 1e-12
    back = set_engine(copy.deepcopy(sparse), Engine.DENSE)
    assert [type(module) for module in back.get_submodule("network")] == [
        type(module) for module in dense.get_submodule("network")]
    assert torch.equal(back(inputs), dense(inputs))


def test_seeds_stacked_as_one_block_diagonal_layer_get_their_own_gradients():
    seeds = [set_engine(_sparse_mlp(seed=seed).to(torch.float64), Engine.SPARSE) for seed in (0, 2)]
    stacked, links = stack_models(seeds)
    assert {layer.block.structure().bias_column is not None for layer, _ in links} == {True, False}  # both paths
    inputs, labels = (torch.cat(pair) for pair in zip(*_batches(2), strict=True))
    stacked_inputs = inputs.clone().requires_grad_()
    logits = stacked(stacked_inputs).reshape(len(labels), -1)
    functional.cross_entropy(logits, labels, reduction="sum").backward()
    for index, (model, rows) in enumerate(zip(seeds, inputs.split(len(labels) // 2), strict=True)):
        seed_inputs = rows.clone().requires_grad_()
        functional.cross_entropy(model(seed_inputs), labels.split(len(labels) // 2)[index], reduction="sum").backward()
        assert _relative(seed_inputs.grad, stacked_inputs.grad.split(len(labels) // 2)[index]) < 1e-12
        for layer, own_tensors in links:
            gradients = [layer.block.values.grad.split(layer.sizes)[index],
                         layer.block.bias.grad[index * layer.out_features:(index + 1) * layer.out_features]]
            for gradient, own in zip(gradients, own_tensors[index], strict=True):
                assert _relative(own.grad, gradient) < 1e-12


def test_fifty_momentum_steps_agree_in_float64_and_removed_weights_stay_zero():
    dense, sparse = _pair()
    optimizers = [torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) for model in (dense, sparse)]
    for inputs, labels in _batches(50):
        for model, optimizer in zip((dense, sparse), optimizers, strict=True):
            loss = functional.cross_entropy(model(inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    untrained = _layers(_sparse_mlp().to(torch.float64))
    for reference, layer, start in zip(_layers(dense), _layers(sparse), untrained, strict=True):
        assert _relative(reference.effective_weight(), layer.effective_weight()) < 1e-5
        assert _relative(reference.bias, layer.bias) < 1e-5
        assert not torch.equal(reference.effective_weight(), start.effective_weight())  # it did train
        assert torch.count_nonzero(reference.weight[reference.mask == 0]) == 0


def test_the_trainer_gives_the_same_run_with_either_engine_in_float32():
    images, labels = _images(320, 3)
    config = TrainingConfig(max_epochs=5, learning_rate=0.05, momentum=0.9, batch_size=32, stop_loss=0.0)
    models = _pair(torch.float32)
    results = [train(model, images, labels, config, torch.Generator().manual_seed(4)) for model in models]
    assert results[0].epochs == results[1].epochs == 5  # 50 steps
    assert results[0].epoch_losses == pytest.approx(results[1].epoch_losses, rel=1e-4)
    for reference, layer in zip(*(_layers(model) for model in models), strict=True):
        assert _relative(reference.effective_weight(), layer.effective_weight()) < 1e-4


def test_auto_stores_sparse_below_the_density_threshold_only():
    model = set_engine(_sparse_mlp(width=256), Engine.AUTO)  # every layer far below the threshold
    assert all(isinstance(layer, SparseLinear) and layer.density < AUTO_DENSITY_THRESHOLD for layer in _layers(model))
    dense = set_engine(create_model(ModelConfig("mlp", 32, 2), dataset_info("digits")), "auto")
    assert all(isinstance(layer, MaskedLinear) for layer in _layers(dense))  # density 1
    assert all(isinstance(layer, MaskedLinear) for layer in _layers(set_engine(_sparse_mlp(), "dense")))
    assert all(isinstance(layer, SparseLinear) for layer in _layers(set_engine(dense, "sparse")))
    with pytest.raises(ValueError, match="'fast' is not a valid Engine"):
        set_engine(dense, "fast")


def test_post_training_pruning_then_auto_evaluates_sparse_with_the_same_results():
    images, labels = _images(256, 5)
    model = create_model(ModelConfig("mlp", 256, 2), dataset_info("digits"))
    initialize_(model, torch.Generator().manual_seed(6))
    model = set_engine(model, Engine.AUTO)
    config = TrainingConfig(max_epochs=2, learning_rate=0.05, batch_size=32, stop_loss=0.0)
    train(model, images, labels, config, torch.Generator().manual_seed(8))
    assert all(isinstance(layer, MaskedLinear) for layer in _layers(model))  # density 1: dense
    magnitude_prune_(model, CAPACITY, PruningScope.LAYERWISE, Allocation.UNIFORM)
    reference = evaluate(model, images, labels, 10)
    model = set_engine(model, Engine.AUTO)
    assert all(isinstance(layer, SparseLinear) for layer in _layers(model))
    sparse = evaluate(model, images, labels, 10)
    assert sparse.accuracy == reference.accuracy
    assert sparse.loss == pytest.approx(reference.loss, rel=1e-5)


def test_masks_set_one_after_another_without_a_forward_pass_between_compute_the_last_one():
    """The index structures follow the positions buffer even when a new buffer lands where a freed one was
    (two `set_mask` calls in a row freed and reallocated it at the same address in 59 of 200 tries)."""
    generator = torch.Generator().manual_seed(0)
    dense = MaskedLinear(50, 40)
    layer = SparseLinear.from_dense(dense.weight, dense.mask, dense.bias)
    inputs = torch.randn(3, 50, generator=generator)
    for _ in range(50):
        layer(inputs)  # builds the structures of the current positions
        for _ in range(2):
            mask = torch.zeros(40 * 50)
            mask[torch.randperm(2000, generator=generator)[:300]] = 1
            layer.set_mask(mask.view(40, 50))
            layer.values.data.normal_(generator=generator)
        expected = functional.linear(inputs, layer.effective_weight(), layer.bias)
        torch.testing.assert_close(layer(inputs), expected)


def test_pruning_a_sparse_stored_model_keeps_the_largest_kept_weights():
    dense, sparse = _pair()
    target = CAPACITY // 2
    dense_counts = magnitude_prune_(dense, target, PruningScope.GLOBAL, Allocation.UNIFORM)
    sparse_counts = magnitude_prune_(sparse, target, PruningScope.GLOBAL, Allocation.UNIFORM)
    assert dense_counts == sparse_counts and sum(sparse_counts) == target
    for reference, layer in zip(_layers(dense), _layers(sparse), strict=True):
        assert torch.equal(reference.effective_weight(), layer.effective_weight())
        assert layer.values.numel() == int(reference.mask.count_nonzero())


def test_weight_noise_and_checkpoints_are_the_same_whatever_the_storage(tmp_path):
    images, labels = _images(300, 9)
    dense, sparse = _pair(torch.float32)
    results = []
    for model in (dense, sparse):
        clean = evaluate(model, images, labels, 10)
        draws = weight_noise_robustness(model, images, labels, 10, [0.5], 3, 0.0, torch.Generator().manual_seed(2), clean)
        results.append([(draw.accuracy, draw.loss) for draw in draws])
    assert [accuracy for accuracy, _ in results[0]] == [accuracy for accuracy, _ in results[1]]
    assert [loss for _, loss in results[0]] == pytest.approx([loss for _, loss in results[1]], rel=1e-5)
    assert len({accuracy for accuracy, _ in results[0]}) > 1  # the draws differ from one another

    save_checkpoint(sparse, tmp_path / "sparse.safetensors", {})
    assert (tmp_path / "sparse.safetensors").stat().st_size < 4 * 8 * CAPACITY
    loaded = load_checkpoint(create_model(ModelConfig("mlp", 256, 2), dataset_info("digits")),
                             tmp_path / "sparse.safetensors")
    for reference, layer in zip(_layers(sparse), _layers(loaded), strict=True):
        assert isinstance(layer, SparseLinear)
        assert torch.equal(reference.effective_weight(), layer.effective_weight())
    assert torch.equal(loaded(images.float()), sparse(images.float()))
    save_checkpoint(dense, tmp_path / "dense.safetensors", {})
    back = load_checkpoint(set_engine(copy.deepcopy(sparse), Engine.SPARSE), tmp_path / "dense.safetensors")
    assert all(isinstance(layer, MaskedLinear) for layer in _layers(back))


def test_spec_engine_defaults_to_dense_and_keeps_old_fingerprints():
    minimal = {"name": "t", "architectures": ["mlp"], "datasets": ["digits"], "widths": [32, 64]}
    spec = parse_spec(minimal, "t")
    assert spec.training.engine is Engine.DENSE and "engine" not in spec.resolved()["training"]
    auto = parse_spec({**minimal, "training": {"engine": "auto"}}, "t")
    assert auto.training.engine is Engine.AUTO and auto.resolved()["training"]["engine"] == "auto"
    assert auto.fingerprint() != spec.fingerprint()


def test_moving_kept_weights_in_place_moves_the_product_and_its_gradients_with_them():
    """A schedule (set, rigl) rewrites the positions buffer in place, same object and size: the cached index
    structures must follow it, or the layer computes the old positions with the reordered values."""
    generator = torch.Generator().manual_seed(3)
    mask = torch.zeros(20 * 30)
    mask[torch.randperm(mask.numel(), generator=generator)[:90]] = 1
    weight = torch.randn(20, 30, generator=generator, dtype=torch.float64)
    bias = torch.randn(20, generator=generator, dtype=torch.float64)
    layer = SparseLinear.from_dense(weight, mask.view(20, 30), bias)
    inputs = torch.randn(4, 30, generator=generator, dtype=torch.float64)
    layer(inputs)  # builds the structures of the first positions
    positions = layer.kept
    dropped, grown = layer.kept[::9].clone(), torch.nonzero(mask == 0).reshape(-1)[::50][:10]
    assert dropped.numel() == grown.numel() == 10
    layer.values.data.add_(1.0)  # every kept weight nonzero, so a stale position shows
    layer.move_kept_(dropped, grown)
    assert layer.kept is positions
    moved = layer.effective_weight()
    assert torch.count_nonzero(moved.view(-1)[dropped]) == 0 and torch.count_nonzero(moved.view(-1)[grown]) == 0
    dense_weight = moved.clone().requires_grad_()
    expected = functional.linear(inputs, dense_weight, layer.bias)
    outputs = layer(inputs)
    assert _relative(expected, outputs) < 1e-12
    upstream = torch.randn(4, 20, generator=generator, dtype=torch.float64)
    (expected * upstream).sum().backward()
    (outputs * upstream).sum().backward()
    assert _relative(dense_weight.grad * layer.mask, layer._scatter(layer.values.grad)) < 1e-12


def test_auto_stores_a_layer_sparse_strictly_below_the_threshold_and_only_on_a_cpu():
    """`auto` is sparse below a density of 0.15 on a CPU (a 20 × 10 layer keeping 29 weights) and dense at it
    (30 kept); off a CPU the sparse engine is slower at every density, so `auto` keeps every layer dense."""
    assert AUTO_DENSITY_THRESHOLD == 0.15
    for kept, device_type, sparse in [(29, "cpu", True), (30, "cpu", False), (29, "cuda", False), (1, "cuda", False)]:
        layer = MaskedLinear(10, 20)
        mask = torch.zeros(200)
        mask[:kept] = 1
        layer.set_mask(mask.view(20, 10))
        model = set_engine(torch.nn.Sequential(layer), Engine.AUTO, device_type)
        assert isinstance(model[0], SparseLinear) is sparse, (kept, device_type)
