import math
import shutil

import pytest
import torch

from sparsecap.data import dataset_info, load_dataset
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import initialize_
from sparsecap.studies import StudyDatabase, load_spec, run_study
from sparsecap.errors import StudyDirectoryError
from sparsecap.report import write_report
from sparsecap.training import LearningRateSchedule, TrainingConfig, train
from sparsecap.training.trainer import forward_of
from sparsecap.training.divergence import divergence_bound, has_diverged
from tests.study_helpers import TINY_SPEC, write_spec


def _model() -> torch.nn.Module:
    model = create_model(ModelConfig("mlp", 32, 1), dataset_info("digits"))
    initialize_(model, torch.Generator().manual_seed(0))
    return model


def test_training_stops_once_the_epoch_loss_is_below_the_threshold():
    digits = load_dataset("digits")
    config = TrainingConfig(max_epochs=200, learning_rate=0.05, batch_size=32, stop_loss=0.3)
    result = train(_model(), digits.train_images, digits.train_labels, config, torch.Generator().manual_seed(0))
    assert result.epochs < 200
    assert result.epoch_losses[-1] < 0.3 <= min(result.epoch_losses[:-1])


def test_each_epoch_is_reported_by_its_one_based_number_and_the_model_is_left_in_eval_mode():
    """imp rewinds to the weights `on_epoch` reported after epoch k, and evaluation reads batch norm in eval mode."""
    digits = load_dataset("digits")
    config = TrainingConfig(max_epochs=3, learning_rate=0.05, batch_size=32, stop_loss=0.0)
    reported: list[tuple[int, float]] = []
    model = _model()
    result = train(model, digits.train_images, digits.train_labels, config, torch.Generator().manual_seed(0),
                   on_epoch=lambda epoch, loss: reported.append((epoch, loss)))
    assert reported == list(enumerate(result.epoch_losses, start=1)) and result.epochs == 3
    assert not model.training


def test_divergence_is_reported_not_raised():
    digits = load_dataset("digits")
    config = TrainingConfig(max_epochs=5, learning_rate=1e6, batch_size=32, stop_loss=0.0)
    result = train(_model(), digits.train_images, digits.train_labels, config, torch.Generator().manual_seed(0))
    assert result.diverged
    assert math.isnan(result.epoch_losses[-1])


def test_a_finite_loss_far_above_chance_is_divergence():
    assert not has_diverged(math.log(10), 10) and not has_diverged(10 * math.log(10), 10)
    assert has_diverged(10 * math.log(10) + 1e-9, 10) and has_diverged(math.inf, 10) and has_diverged(math.nan, 100)
    assert divergence_bound(100) == pytest.approx(46.05, abs=0.01)


def test_a_blown_up_run_with_finite_losses_stops_as_diverged_and_reports_that_epoch():
    """The diverging epoch reaches `on_epoch` as every other does (a log shows its loss), as in `train_together`."""
    digits = load_dataset("digits")
    config = TrainingConfig(max_epochs=5, learning_rate=30.0, batch_size=32, stop_loss=0.0)
    reported = []
    result = train(_model(), digits.train_images, digits.train_labels, config, torch.Generator().manual_seed(0),
                   on_epoch=lambda epoch, loss: reported.append((epoch, loss)))
    assert result.diverged and result.epochs == 1
    assert math.isfinite(result.epoch_losses[0]) and result.epoch_losses[0] > divergence_bound(10)
    assert reported == [(1, result.epoch_losses[0])]


def test_cosine_schedule_anneals_to_zero(monkeypatch):
    model = _model()
    images = torch.zeros((8, 1, 8, 8), dtype=torch.uint8)
    labels = torch.zeros(8, dtype=torch.int64)
    rates = []
    config = TrainingConfig(max_epochs=4, batch_size=8, stop_loss=0.0, schedule=LearningRateSchedule.COSINE)
    original_step = torch.optim.SGD.step

    def recording_step(self, *arguments, **keywords):
        rates.append(self.param_groups[0]["lr"])
        return original_step(self, *arguments, **keywords)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    train(model, images, labels, config, torch.Generator().manual_seed(0))
    assert rates == [0.01, 0.01 * (1 + math.cos(math.pi / 4)) / 2, 0.005, 0.01 * (1 + math.cos(3 * math.pi / 4)) / 2]


@pytest.mark.parametrize("seeds_together", [False, True])
def test_diverged_trials_are_recorded_as_diverged_and_the_report_says_so(tmp_path, seeds_together):
    spec = load_spec(str(write_spec(tmp_path, TINY_SPEC)), [
        "training.learning_rate=100", f"training.seeds_together={str(seeds_together).lower()}"])
    run_study(spec, tmp_path / "out")
    rows = StudyDatabase(tmp_path / "out").rows("trials")
    assert {row["status"] for row in rows} == {"diverged"} and len(rows) == 8
    with pytest.raises(StudyDirectoryError, match="all 8 trial"):
        write_report(tmp_path / "out")


def test_training_reads_the_device_once_per_epoch_not_per_step(monkeypatch):
    """`.item()` and `.tolist()` wait for an accelerator to finish; a step must not."""
    from sparsecap.training.multiseed import train_together

    digits = load_dataset("digits")
    config = TrainingConfig(max_epochs=3, batch_size=64, stop_loss=0.0)  # 23 steps per epoch
    reads = []
    for method in ("item", "tolist"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method,
                            lambda self, *arguments, _original=original: reads.append(1) or _original(self, *arguments))
    train(_model(), digits.train_images, digits.train_labels, config, torch.Generator().manual_seed(0))
    assert len(reads) == 3
    reads.clear()
    train_together([_model(), _model()], digits.train_images, digits.train_labels, config,
                   [torch.Generator().manual_seed(seed) for seed in (0, 1)])
    assert len(reads) == 3


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="torch.compile's inductor backend needs a C compiler (cc or gcc) on PATH")
def test_compile_trains_the_model_itself_through_torch_compile_to_the_same_numbers_up_to_rounding():
    """About a minute on 2 CPU cores, nearly all of it importing torch._dynamo and compiling."""
    model = _model()
    compiled = forward_of(model, TrainingConfig(compile=True))
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule) and compiled._orig_mod is model
    assert [id(parameter) for parameter in compiled.parameters()] == [id(parameter) for parameter in model.parameters()]
    assert forward_of(model, TrainingConfig()) is model
    digits = load_dataset("digits")
    runs = []
    for compile_model in (False, True):
        torch._dynamo.reset()
        model = _model()
        config = TrainingConfig(max_epochs=1, batch_size=64, stop_loss=0.0, compile=compile_model)
        result = train(model, digits.train_images, digits.train_labels, config, torch.Generator().manual_seed(1))
        runs.append((result.epoch_losses, [parameter.detach().clone() for parameter in model.parameters()]))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it did compile
    (plain_losses, plain), (compiled_losses, compiled) = runs
    assert compiled_losses == pytest.approx(plain_losses, rel=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(plain, compiled, strict=True))


def test_the_step_hook_sees_every_step_but_the_last_and_can_recompute_its_batch_loss():
    """No hook after the last step: a mask moved then would be evaluated with its regrown weights untrained."""
    digits = load_dataset("digits")
    config = TrainingConfig(max_epochs=2, learning_rate=0.05, batch_size=500, stop_loss=0.0)
    steps = []

    def hook(step):
        loss = step.batch_loss()
        assert loss.requires_grad and loss.item() > 0  # differentiable, at the weights just updated
        steps.append((step.number, step.planned, len(step.optimizer.param_groups)))

    result = train(_model(), digits.train_images, digits.train_labels, config, torch.Generator().manual_seed(0),
                   on_step=hook)
    per_epoch = math.ceil(len(digits.train_labels) / 500)
    assert result.epochs == 2 and steps == [(number, 2 * per_epoch, 1) for number in range(1, 2 * per_epoch)]


def test_no_step_hook_runs_after_the_step_that_ends_training_by_the_stopping_rule():
    digits = load_dataset("digits")
    config = TrainingConfig(max_epochs=5, learning_rate=0.05, batch_size=500, stop_loss=100.0)
    numbers = []
    result = train(_model(), digits.train_images, digits.train_labels, config, torch.Generator().manual_seed(0),
                   on_step=lambda step: numbers.append(step.number))
    per_epoch = math.ceil(len(digits.train_labels) / 500)
    assert result.epochs == 1 and numbers == list(range(1, per_epoch))


def test_every_epoch_trains_on_every_example_once_in_a_fresh_order():
    images = torch.arange(64, dtype=torch.uint8).view(64, 1, 1, 1).expand(64, 1, 8, 8).contiguous()
    labels = torch.arange(64) % 10
    orders: list[list[int]] = []
    model = _model()
    model.register_forward_pre_hook(
        lambda _, inputs: orders.append((inputs[0][:, 0, 0, 0] * 255).round().int().tolist()))
    config = TrainingConfig(max_epochs=3, learning_rate=0.01, batch_size=64, stop_loss=0.0)
    train(model, images, labels, config, torch.Generator().manual_seed(0))
    assert len(orders) == 3 and all(sorted(order) == list(range(64)) for order in orders)
    assert orders[0] != orders[1] != orders[2] != orders[0] and orders[0] != list(range(64))


def test_the_epoch_loss_is_the_mean_over_examples_with_a_smaller_last_batch():
    """At learning rate 0 the weights stay put: the epoch's loss is the model's mean cross-entropy over all 70
    examples, the last batch of 6 weighted by 6, not by the batch size."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (70, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (70,), generator=generator)
    model = _model()
    expected = torch.nn.functional.cross_entropy(model(images.float() / 255), labels).item()
    config = TrainingConfig(max_epochs=1, learning_rate=0.0, batch_size=32, stop_loss=0.0)
    result = train(model, images, labels, config, torch.Generator().manual_seed(0))
    assert result.epoch_losses[0] == pytest.approx(expected, rel=1e-5)


def test_sgd_takes_heavy_ball_steps_with_the_configured_momentum():
    """Two steps by hand: v1 = g1, w1 = w0 - lr v1; v2 = 0.9 v1 + g2, w2 = w1 - lr v2 (no dampening)."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (64,), generator=generator)
    model = _model()
    weights = [parameter.detach().clone() for parameter in model.parameters()]
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))  # the trainer's first epoch order
    velocity = None
    reference = _model()
    for batch in order.split(32):
        with torch.no_grad():
            for parameter, weight in zip(reference.parameters(), weights, strict=True):
                parameter.copy_(weight)
        loss = torch.nn.functional.cross_entropy(reference(images[batch].float() / 255), labels[batch])
        grads = torch.autograd.grad(loss, list(reference.parameters()))
        velocity = list(grads) if velocity is None else [0.9 * v + g for v, g in zip(velocity, grads, strict=True)]
        weights = [w - 0.05 * v for w, v in zip(weights, velocity, strict=True)]
    config = TrainingConfig(max_epochs=1, learning_rate=0.05, momentum=0.9, batch_size=32, stop_loss=0.0)
    train(model, images, labels, config, torch.Generator().manual_seed(0))
    for parameter, weight in zip(model.parameters(), weights, strict=True):
        assert torch.allclose(parameter.detach(), weight, atol=1e-6)
