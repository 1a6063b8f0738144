"""CUDA-graph training steps: where they apply, and the rehearsal that must leave no trace (on the CPU; the
recording and replay themselves need a GPU: benchmarks/gpu.py compares graphed with eager training there)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as functional
from torch import nn

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import Allocation, set_engine, sparse_model_at_init, weight_count
from sparsecap.training import TrainingConfig
from sparsecap.training.graphed_steps import graphs_apply, rehearse, steps_for


def _model(architecture: str) -> nn.Module:
    info = dataset_info("cifar10")
    width, depth = (8, 11) if architecture == "vgg" else (64, 1)
    capacity = weight_count(create_model(ModelConfig(architecture, width // 2, depth), info))
    return sparse_model_at_init(create_model(ModelConfig(architecture, width, depth), info), capacity,
                                Allocation.UNIFORM, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))


def _stepper(model: nn.Module):
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (64,), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_sum = torch.zeros((), dtype=torch.float64)

    def step(indices: torch.Tensor) -> torch.Tensor:
        logits = model(images.index_select(0, indices).float().div_(255))
        loss = functional.cross_entropy(logits, labels.index_select(0, indices))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum.add_(loss.detach().double() * len(indices))
        return logits

    return step, optimizer, loss_sum


def _state(model: nn.Module, optimizer: torch.optim.Optimizer, loss_sum: torch.Tensor) -> list[torch.Tensor]:
    momentum = [optimizer.state[parameter]["momentum_buffer"] for parameter in model.parameters()]
    return [*(tensor.clone() for tensor in model.state_dict().values()), *momentum, loss_sum.clone()]


@pytest.mark.parametrize("architecture", ["mlp", "vgg"])  # vgg: batch-norm statistics and their step count
@pytest.mark.parametrize("trained_before", [0, 2])  # momentum buffers created by the rehearsal, or already there
def test_a_rehearsed_run_equals_the_plain_one_to_the_bit(architecture, trained_before):
    batches = torch.arange(64).flip(0).split(16)
    runs = []
    for rehearsed in (False, True):
        model = _model(architecture)
        step, optimizer, loss_sum = _stepper(model)
        for batch in batches[:trained_before]:
            step(batch)
        if rehearsed:
            rehearse(step, batches[trained_before], model, optimizer, [loss_sum])
            assert all(parameter.grad is None for parameter in model.parameters())
        for batch in batches[trained_before:]:
            step(batch)
        runs.append(_state(model, optimizer, loss_sum))
    plain, rehearsed = runs
    assert len(plain) == len(rehearsed)
    assert all(torch.equal(first, second) for first, second in zip(plain, rehearsed, strict=True))


def test_a_rehearsal_changes_nothing_it_was_given():
    model = _model("vgg")
    step, optimizer, loss_sum = _stepper(model)
    step(torch.arange(16))
    before = _state(model, optimizer, loss_sum)
    rehearse(step, torch.arange(16, 32), model, optimizer, [loss_sum], rehearsals=3)
    assert all(torch.equal(first, second) for first, second in zip(before, _state(model, optimizer, loss_sum),
                                                                   strict=True))


def test_graphs_apply_on_cuda_only_where_nothing_in_a_step_is_decided_on_the_host():
    config, cuda = TrainingConfig(), torch.device("cuda", 0)
    dense, sparse = _model("mlp"), set_engine(_model("mlp"), "sparse")
    assert graphs_apply(dense, config, cuda, hooked=False)
    assert not graphs_apply(dense, config, torch.device("cpu"), hooked=False)
    assert not graphs_apply(dense, config, cuda, hooked=True)  # set and rigl move the mask between steps
    assert not graphs_apply(dense, dataclasses.replace(config, augmentation=True), cuda, hooked=False)
    assert not graphs_apply(dense, dataclasses.replace(config, compile=True), cuda, hooked=False)
    assert not graphs_apply(sparse, config, cuda, hooked=False)


def test_off_cuda_the_step_is_run_as_it_is():
    model = _model("mlp")
    step, optimizer, loss_sum = _stepper(model)
    assert steps_for(step, model, optimizer, [loss_sum], TrainingConfig(), torch.device("cpu"), hooked=False) is step
