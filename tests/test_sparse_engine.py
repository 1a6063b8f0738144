"""The sparse engine computes what the dense-masked reference computes, at the nonzeros only."""

import copy

import pytest
import torch
import torch.nn.functional as functional

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.robustness import evaluate
from sparsecap.sparsity import (
    Allocation,
    Engine,
    PruningScope,
    initialize_,
    magnitude_prune_,
    masked_layers,
    set_engine,
    sparse_model_at_init,
)
from sparsecap.sparsity.sparse_linear import AUTO_DENSITY_THRESHOLD, SGD, uses_sparse
from sparsecap.studies.spec import parse_spec
from sparsecap.training import TrainingConfig, train

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


def test_one_step_gradients_match_the_dense_engine():
    dense, sparse = _pair()
    inputs, labels = next(_batches(1))
    dense_inputs, sparse_inputs = inputs.clone().requires_grad_(), inputs.clone().requires_grad_()
    functional.cross_entropy(dense(dense_inputs), labels).backward()
    functional.cross_entropy(sparse(sparse_inputs), labels).backward()
    assert _relative(dense_inputs.grad, sparse_inputs.grad) < 1e-12
    for (name, reference), (_, parameter) in zip(dense.named_parameters(), sparse.named_parameters(), strict=True):
        grad = parameter.grad.to_dense() if parameter.grad.is_sparse else parameter.grad
        assert _relative(reference.grad, grad) < 1e-12, name
    for _, layer in masked_layers(sparse):
        assert layer.weight.grad.is_sparse  # only the kept positions
        assert torch.count_nonzero(layer.weight.grad.to_dense()[layer.mask == 0]) == 0


@pytest.mark.parametrize("optimizer_class", [torch.optim.SGD, SGD])
def test_fifty_momentum_steps_agree_in_float64_and_masked_weights_stay_zero(optimizer_class):
    dense, sparse = _pair()
    optimizers = [optimizer_class(model.parameters(), lr=0.05, momentum=0.9) for model in (dense, sparse)]
    for inputs, labels in _batches(50):
        for model, optimizer in zip((dense, sparse), optimizers, strict=True):
            loss = functional.cross_entropy(model(inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    for (name, reference), (_, parameter) in zip(dense.named_parameters(), sparse.named_parameters(), strict=True):
        assert _relative(reference, parameter) < 1e-5, name
        assert not torch.equal(reference, _sparse_mlp().to(torch.float64).state_dict()[name])  # it did train
    for _, layer in masked_layers(sparse):
        assert torch.count_nonzero(layer.weight[layer.mask == 0]) == 0


def test_the_trainer_gives_the_same_run_with_either_engine_in_float32():
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (320, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (320,), generator=generator)
    config = TrainingConfig(max_epochs=5, learning_rate=0.05, momentum=0.9, batch_size=32, stop_loss=0.0)
    results = []
    models = _pair(torch.float32)
    for model in models:
        results.append(train(model, images, labels, config, torch.Generator().manual_seed(4)))
    assert results[0].epochs == results[1].epochs == 5  # 50 steps
    assert results[0].epoch_losses == pytest.approx(results[1].epoch_losses, rel=1e-4)
    for (name, reference), (_, parameter) in zip(*(model.named_parameters() for model in models), strict=True):
        assert _relative(reference, parameter) < 1e-4, name
    for _, layer in masked_layers(models[1]):
        assert torch.count_nonzero(layer.weight[layer.mask == 0]) == 0


def test_auto_picks_the_sparse_engine_below_the_density_threshold_only():
    model = set_engine(_sparse_mlp(width=256), Engine.AUTO)  # every layer far below the threshold
    layers = [layer for _, layer in masked_layers(model)]
    assert all(layer.engine is Engine.AUTO for layer in layers)
    assert all(float(layer.mask.mean()) < AUTO_DENSITY_THRESHOLD and uses_sparse(layer) for layer in layers)
    dense = set_engine(create_model(ModelConfig("mlp", 32, 2), dataset_info("digits")), "auto")
    assert not any(uses_sparse(layer) for _, layer in masked_layers(dense))  # density 1
    assert not any(uses_sparse(layer) for _, layer in masked_layers(set_engine(_sparse_mlp(), "dense")))
    assert all(uses_sparse(layer) for _, layer in masked_layers(set_engine(dense, "sparse")))


def test_a_changed_mask_is_picked_up_and_post_training_pruning_evaluates_the_same():
    generator = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (256, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (256,), generator=generator)
    model = create_model(ModelConfig("mlp", 256, 2), dataset_info("digits"))
    initialize_(model, torch.Generator().manual_seed(6))
    set_engine(model, Engine.AUTO)
    config = TrainingConfig(max_epochs=2, learning_rate=0.05, batch_size=32, stop_loss=0.0)
    train(model, images, labels, config, torch.Generator().manual_seed(8))  # dense: density 1
    assert not any(uses_sparse(layer) for _, layer in masked_layers(model))
    magnitude_prune_(model, CAPACITY, PruningScope.LAYERWISE, Allocation.UNIFORM)
    assert all(uses_sparse(layer) for _, layer in masked_layers(model))  # the new mask, rebuilt
    sparse = evaluate(model, images, labels, 10)
    reference = evaluate(set_engine(model, Engine.DENSE), images, labels, 10)
    assert sparse.accuracy == reference.accuracy
    assert sparse.loss == pytest.approx(reference.loss, rel=1e-5)


def test_spec_engine_defaults_to_dense_and_keeps_old_fingerprints():
    minimal = {"name": "t", "architectures": ["mlp"], "datasets": ["digits"], "widths": [32, 64]}
    spec = parse_spec(minimal, "t")
    assert spec.training.engine is Engine.DENSE and "engine" not in spec.resolved()["training"]
    auto = parse_spec({**minimal, "training": {"engine": "auto"}}, "t")
    assert auto.training.engine is Engine.AUTO and auto.resolved()["training"]["engine"] == "auto"
    assert auto.fingerprint() != spec.fingerprint()
