"""K sparse networks joined side by side compute each network's own logits, bit for bit, in one pass."""

import copy

import pytest
import torch

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.robustness import evaluate, weight_noise_robustness
from sparsecap.robustness.weight_noise import add_weight_noise_, evaluations_at
from sparsecap.sparsity import Allocation, Engine, set_engine, sparse_model_at_init
from sparsecap.sparsity.side_by_side import can_run_side_by_side, side_by_side
from sparsecap.sparsity.unread_units import without_unread_units

INFO = dataset_info("digits")


def _model(width: int, depth: int, engine: Engine = Engine.SPARSE, seed: int = 3) -> torch.nn.Module:
    model = create_model(ModelConfig("mlp", width, depth), INFO)
    sparse_model_at_init(model, 2500, Allocation.UNIFORM, torch.Generator().manual_seed(seed),
                         torch.Generator().manual_seed(seed + 1))
    return set_engine(model, engine).eval()


def _noisy_copies(model: torch.nn.Module, count: int) -> list[torch.nn.Module]:
    copies = [copy.deepcopy(model) for _ in range(count)]
    generator = torch.Generator().manual_seed(9)
    for each in copies:
        add_weight_noise_(each, 0.5, 0.0, generator)
    return copies


@pytest.mark.parametrize(("width", "depth", "narrowed"), [(1024, 1, True), (512, 3, True), (64, 2, False)])
def test_each_network_side_by_side_gives_its_own_logits_bit_for_bit(width, depth, narrowed):
    models = _noisy_copies(_model(width, depth), 3)
    if narrowed:
        models = [without_unread_units(model) for model in models]
    joined = side_by_side(models)
    inputs = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = joined(inputs).reshape(40, 3, -1)
        for index, model in enumerate(models):
            assert torch.equal(logits[:, index], model(inputs))


def test_only_an_mlp_on_the_sparse_engine_runs_side_by_side():
    assert can_run_side_by_side(_model(256, 2))
    assert not can_run_side_by_side(_model(256, 2, Engine.DENSE))
    vgg = create_model(ModelConfig("vgg", 8, 11), dataset_info("cifar10"))
    assert not can_run_side_by_side(set_engine(vgg, Engine.SPARSE))  # convolutions stay dense


@pytest.mark.parametrize("engine", [Engine.SPARSE, Engine.DENSE])  # side by side, and in turn
def test_weight_noise_gives_each_draw_what_it_gives_evaluated_alone(engine):
    model = _model(1024, 1, engine)
    generator = torch.Generator().manual_seed(6)
    images = torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (300,), generator=generator)
    clean = evaluate(model, images, labels, 10)
    sigmas, draws = [0.0, 0.3, 0.7], 3
    results = weight_noise_robustness(model, images, labels, 10, sigmas, draws, 0.0, torch.Generator().manual_seed(4),
                                      clean)
    expected, alone = [], torch.Generator().manual_seed(4)
    for sigma in sigmas[1:]:
        for _ in range(evaluations_at(sigma, draws)):
            noisy = copy.deepcopy(model)
            add_weight_noise_(noisy, sigma, 0.0, alone)
            expected.append(evaluate(noisy, images, labels, 10))
    assert [(result.sigma, result.draw) for result in results] == [(0.0, 0)] + [
        (sigma, draw) for sigma in sigmas[1:] for draw in range(draws)]
    for result, reference in zip(results[1:], expected, strict=True):
        assert result.accuracy == reference.accuracy
        assert result.loss == pytest.approx(reference.loss, rel=1e-6)
        # each loss is within 1e-6 of ~2.3, so their difference is within 5e-6
        assert result.delta_loss == pytest.approx(reference.loss - clean.loss, abs=5e-6)
