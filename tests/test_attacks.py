"""Adversarial attacks (FGSM, FFGSM, BIM, PGD, APGD) and the adversarial measure of studies."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as functional
from torch import nn

from sparsecap.cli import main
from sparsecap.data import load_dataset
from sparsecap.errors import SparsecapError
from sparsecap.models import ModelConfig, create_model
from sparsecap.robustness import Attack, adversarial_robustness, default_epsilons, parse_attack, run_attack
from sparsecap.robustness.adversarial import CIFAR_EPSILONS, MNIST_LIKE_EPSILONS, attack_generator, sample_indices
from sparsecap.robustness import attacks as attacks_module
from sparsecap.robustness.attacks import apgd, apgd_checkpoints, apgd_halves, bim, ffgsm, fgsm, pgd
from sparsecap.sparsity import Allocation, masked_layers, sparse_model_at_init, weight_count
from sparsecap.studies import StudyDatabase, load_spec, run_study
from sparsecap.training import TrainingConfig, to_pixels, train
from tests.study_helpers import TINY_SPEC, write_spec

BUDGETS = (0.05, 0.1, 0.2, 0.3)


@dataclass(frozen=True)
class Trained:
    model: nn.Module
    pixels: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor

    def accuracy(self, pixels: torch.Tensor) -> float:
        with torch.no_grad():
            return (self.model(pixels).argmax(dim=1) == self.labels).double().mean().item()


def _train(model: nn.Module, epochs: int) -> Trained:
    digits = load_dataset("digits")
    train(model, digits.train_images, digits.train_labels, TrainingConfig(max_epochs=epochs, batch_size=64),
          torch.Generator().manual_seed(0))
    model.eval()
    return Trained(model, to_pixels(digits.test_images), digits.test_labels, digits.test_images)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models here are tiny: one thread is faster, and immune to OpenMP spinning on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained() -> Trained:
    """A dense MLP trained on digits for about a second (test accuracy ~0.97)."""
    torch.manual_seed(0)
    return _train(create_model(ModelConfig("mlp", 64, 1), load_dataset("digits").info), epochs=30)


@pytest.fixture(scope="module")
def trained_sparse() -> Trained:
    """A width-256 MLP masked at initialisation to the width-32 model's weight count, then trained."""
    info = load_dataset("digits").info
    model = create_model(ModelConfig("mlp", 256, 1), info)
    capacity = weight_count(create_model(ModelConfig("mlp", 32, 1), info))
    sparse_model_at_init(model, capacity, Allocation.UNIFORM, torch.Generator().manual_seed(1),
                         torch.Generator().manual_seed(2))
    return _train(model, epochs=15)


@pytest.mark.parametrize("attack", list(Attack))
def test_budget_zero_gives_the_clean_accuracy(trained: Trained, attack: Attack) -> None:
    adversarial = run_attack(trained.model, attack, trained.pixels, trained.labels, 0.0,
                             generator=torch.Generator().manual_seed(0))
    assert torch.equal(adversarial, trained.pixels)
    [result] = adversarial_robustness(trained.model, trained.images, trained.labels, [attack], [0.0], examples=360)
    assert result.robust_accuracy == pytest.approx(trained.accuracy(trained.pixels), abs=1e-12)
    assert result.success_rate == 0.0


@pytest.mark.parametrize("attack", list(Attack))
@pytest.mark.parametrize("epsilon", [0.05, 0.3])
def test_perturbations_stay_within_the_budget_and_the_unit_interval(
    trained: Trained, attack: Attack, epsilon: float
) -> None:
    adversarial = run_attack(trained.model, attack, trained.pixels, trained.labels, epsilon, steps=5,
                             generator=torch.Generator().manual_seed(0))
    assert adversarial.shape == trained.pixels.shape and adversarial.dtype == trained.pixels.dtype
    assert (adversarial - trained.pixels).abs().max().item() <= epsilon + 1e-6
    assert adversarial.min().item() >= 0.0 and adversarial.max().item() <= 1.0
    assert not torch.equal(adversarial, trained.pixels)


def test_fgsm_is_the_hand_computed_signed_gradient_step() -> None:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0]]))
        model.bias.copy_(torch.tensor([0.1, -0.2]))
    pixels = torch.tensor([[0.05, 0.2, 0.95], [0.5, 0.98, 0.4]])
    labels = torch.tensor([0, 1])
    # d CE / d x = W^T (softmax(Wx + b) - onehot(y)), for each example by hand.
    expected = []
    for x, y in zip(pixels.tolist(), labels.tolist(), strict=True):
        z = [sum(w * v for w, v in zip(row, x, strict=True)) + b
             for row, b in zip(model.weight.tolist(), model.bias.tolist(), strict=True)]
        p = np.exp(z) / np.exp(z).sum()
        residual = p - np.eye(2)[y]
        gradient = [sum(model.weight[k, i].item() * residual[k] for k in range(2)) for i in range(3)]
        expected.append([min(1.0, max(0.0, v + 0.1 * np.sign(g))) for v, g in zip(x, gradient, strict=True)])
    assert torch.allclose(fgsm(model, pixels, labels, 0.1), torch.tensor(expected, dtype=torch.float32), atol=1e-7)
    # The clamp to [0, 1] is exercised at both ends.
    assert {0.0, 1.0} <= {value for row in expected for value in row}


def test_a_confident_model_is_still_attacked_along_the_cross_entropy_gradient() -> None:
    """Logit margins of about 300: float32's softmax rounds the true class to 1 and the cross-entropy's gradient
    to exactly 0, which left the pixels unchanged and the examples counted robust. With two classes the
    gradient's direction is W[other] - W[true] whatever the margin."""
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(300 * torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0]]))
        model.bias.zero_()
    pixels = torch.tensor([[0.9, 0.1, 0.3], [0.1, 0.9, 0.6]])
    labels = model(pixels).argmax(dim=1)
    assert labels.tolist() == [0, 1] and (model(pixels).diff(dim=1).abs() > 200).all()
    direction = (model.weight[1 - labels] - model.weight[labels]).sign()
    assert torch.equal(fgsm(model, pixels, labels, 0.1), (pixels + 0.1 * direction).clamp(0, 1))
    for attack in Attack:  # every attack now takes the first example, margin 315, across the boundary
        adversarial = run_attack(model, attack, pixels, labels, 0.3, generator=torch.Generator().manual_seed(0))
        assert model(adversarial).argmax(dim=1)[0] != labels[0], attack


def test_pgd_robust_accuracy_is_below_clean_and_falls_with_the_budget(trained: Trained) -> None:
    results = adversarial_robustness(trained.model, trained.images, trained.labels, ["pgd"], [0.0, *BUDGETS],
                                     examples=360)
    clean = trained.accuracy(trained.pixels)
    accuracies = [result.robust_accuracy for result in results]
    assert accuracies[0] == pytest.approx(clean)
    assert all(accuracy <= clean for accuracy in accuracies)
    assert all(later <= earlier for earlier, later in zip(accuracies, accuracies[1:], strict=False))
    assert accuracies[-1] < 0.5 * clean  # a budget of 0.3 breaks an undefended model
    for result in results[1:]:
        assert result.success_rate == pytest.approx(1 - result.robust_accuracy / clean)


class _Threshold(nn.Module):
    """Class 1 where the one pixel exceeds 0.5, else class 0, with a zero input gradient: PGD's iterates then
    stay at its random start, which can carry a wrongly classified pixel across the threshold."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        above = (pixels.flatten(1) > 0.5).float()
        return torch.cat([1 - above, above], dim=1) * 50 + 0 * pixels.flatten(1)


def test_an_example_counts_as_robust_only_if_it_is_right_both_clean_and_under_attack() -> None:
    images = torch.tensor([230] * 64 + [125] * 64, dtype=torch.uint8).view(128, 1)  # pixels 0.90 and 0.49
    labels = torch.ones(128, dtype=torch.long)  # so the first half is right, the second wrong
    model = _Threshold()
    pixels = images.float() / 255
    attacked = run_attack(model, "pgd", pixels, labels, 0.3, generator=torch.Generator().manual_seed(0))
    right_under_attack = model(attacked).argmax(dim=1) == labels
    assert right_under_attack[:64].all() and 0 < int(right_under_attack[64:].sum()) < 64  # the attack rights some
    (result,) = adversarial_robustness(model, images, labels, ["pgd"], [0.3], examples=128)
    assert result.robust_accuracy == 0.5 and result.success_rate == 0.0


def test_apgd_is_at_least_as_strong_as_pgd(trained: Trained) -> None:
    budgets = [0.05, 0.1, 0.2]
    results = adversarial_robustness(trained.model, trained.images, trained.labels, ["pgd", "apgd"], budgets,
                                     steps=10, examples=360)
    robust = {(result.attack, result.epsilon): result.robust_accuracy for result in results}
    for epsilon in budgets:
        assert robust[Attack.APGD, epsilon] <= robust[Attack.PGD, epsilon] + 0.01, epsilon


def test_apgd_checkpoints_follow_croce_and_hein() -> None:
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99; w_j = ceil(p_j * steps).
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(10) == [3, 5, 6, 7, 8, 9]
    assert apgd_checkpoints(1) == []


def test_apgd_halves_when_oscillating_or_when_stalled_without_a_halving_at_the_last_checkpoint() -> None:
    """Croce & Hein's two conditions, per example: (steps that raised the loss of 4, halved at the last
    checkpoint, best loss now, best loss then) -> halve."""
    cases = {(2, False, 1.0, 0.5): True,   # 2 of 4 < 75 %: oscillating
             (3, False, 1.0, 0.5): False,  # rising, and the best loss improved
             (3, False, 0.5, 0.5): True,   # rising but the best loss stalled, at an unchanged step size
             (3, True, 0.5, 0.5): False}   # stalled, but the step was halved last time: η changed
    increases, halved_last, best, then = (torch.tensor(column) for column in zip(*cases))
    assert apgd_halves(increases, 4, halved_last, best, then).tolist() == list(cases.values())


def test_every_model_gets_the_same_random_start_for_the_same_example(
        trained: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    """Starts do not depend on which examples a model classifies correctly (paired comparisons of models)."""
    starts: dict[bytes, torch.Tensor] = {}
    drawn = []
    original = attacks_module._random_start

    def recorded(clean: torch.Tensor, epsilon: float, generator: torch.Generator | None) -> torch.Tensor:
        start = original(clean, epsilon, generator)
        drawn.append({example.numpy().tobytes(): noisy for example, noisy in zip(clean, start)})
        return start

    monkeypatch.setattr(attacks_module, "_random_start", recorded)
    other = copy.deepcopy(trained.model)
    with torch.no_grad():
        other.get_submodule(masked_layers(other)[-1][0]).bias[0] += 3.0  # now it calls many more examples 0
    for model in (trained.model, other):
        drawn.clear()
        adversarial_robustness(model, trained.images, trained.labels, ["pgd"], [0.1], examples=200)
        for example, start in (pair for batch in drawn for pair in batch.items()):
            assert torch.equal(starts.setdefault(example, start), start)
    assert len(starts) == 200


@pytest.mark.parametrize("attack", list(Attack))
def test_attacks_leave_weights_masks_gradients_and_mode_unchanged(trained_sparse: Trained, attack: Attack) -> None:
    model = trained_sparse.model
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    gradients = [parameter.grad.clone() for parameter in model.parameters()]  # left over from training
    model.train()
    list(model.modules())[-1].eval()  # a module held in eval mode while the model trains keeps its own mode
    modes = [module.training for module in model.modules()]
    try:
        run_attack(model, attack, trained_sparse.pixels, trained_sparse.labels, 0.2,
                   generator=torch.Generator().manual_seed(0))
        adversarial_robustness(model, trained_sparse.images, trained_sparse.labels, [attack], [0.1], examples=50)
        assert [module.training for module in model.modules()] == modes and model.training and not modes[-1]
    finally:
        model.eval()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    for parameter, gradient in zip(model.parameters(), gradients, strict=True):
        assert parameter.requires_grad and torch.equal(parameter.grad, gradient)
    for _, layer in masked_layers(model):
        assert torch.count_nonzero(layer.weight[layer.mask == 0]) == 0


def test_cross_check_against_the_adversarial_robustness_toolbox(trained: Trained) -> None:
    """FGSM and PGD (no random start, same steps and step size) agree with ART's independent implementation."""
    art_classification = pytest.importorskip("art.estimators.classification")
    art_evasion = pytest.importorskip("art.attacks.evasion")
    classifier = art_classification.PyTorchClassifier(
        copy.deepcopy(trained.model), loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    x, y = trained.pixels.numpy(), trained.labels.numpy()
    for epsilon in (0.05, 0.1, 0.2):
        reference = art_evasion.FastGradientMethod(classifier, norm=np.inf, eps=epsilon, batch_size=512).generate(x, y)
        ours = fgsm(trained.model, trained.pixels, trained.labels, epsilon)
        assert trained.accuracy(ours) == pytest.approx(trained.accuracy(torch.from_numpy(reference)), abs=0.006)
        reference = art_evasion.ProjectedGradientDescent(
            classifier, norm=np.inf, eps=epsilon, eps_step=0.25 * epsilon, max_iter=10, num_random_init=0,
            batch_size=512, verbose=False,
        ).generate(x, y)
        ours = pgd(trained.model, trained.pixels, trained.labels, epsilon, steps=10, random_start=False)
        assert trained.accuracy(ours) == pytest.approx(trained.accuracy(torch.from_numpy(reference)), abs=0.006)


def test_sample_is_seeded_and_shared_and_defaults_follow_the_dataset() -> None:
    first, again = sample_indices(360, 100), sample_indices(360, 100)
    assert torch.equal(first, again) and len(set(first.tolist())) == 100
    assert bool((first[1:] > first[:-1]).all()) and int(first.max()) < 360
    assert not torch.equal(first, sample_indices(360, 100, seed=1))
    assert default_epsilons(load_dataset("digits").info) == MNIST_LIKE_EPSILONS == BUDGETS
    from sparsecap.data import dataset_info

    assert default_epsilons(dataset_info("cifar10")) == CIFAR_EPSILONS
    assert CIFAR_EPSILONS[-1] == pytest.approx(8 / 255)


def test_apgd_returns_the_first_misclassified_iterate_or_the_best_one(trained: Trained) -> None:
    adversarial = apgd(trained.model, trained.pixels, trained.labels, 0.1, steps=5,
                       generator=torch.Generator().manual_seed(0))
    assert (adversarial - trained.pixels).abs().max().item() <= 0.1 + 1e-6
    assert trained.accuracy(adversarial) < trained.accuracy(trained.pixels)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: parse_attack("cw"), "unknown attack 'cw'; valid attacks: fgsm, ffgsm, bim, pgd, apgd"),
        (lambda t: run_attack(t.model, "PGD-L2", t.pixels, t.labels, 0.1), "valid attacks: fgsm"),
        (lambda t: run_attack(t.model, "pgd", t.pixels, t.labels, 1.5), "number in [0, 1]"),
        (lambda t: run_attack(t.model, "fgsm", t.pixels, t.labels, -0.1), "number in [0, 1]"),
        (lambda t: run_attack(t.model, "bim", t.pixels, t.labels, 0.1, steps=0), "steps must be an integer >= 1"),
        (lambda t: adversarial_robustness(t.model, t.images, t.labels, ["fgsm"], [0.1], examples=361),
         "test set has 360 examples; set adversarial.examples to a number from 1 to 360"),
    ],
)
def test_bad_input_is_refused_with_what_is_valid(trained: Trained, call, message: str) -> None:
    with pytest.raises(SparsecapError) as error:
        call(trained)
    assert message in str(error.value)


def test_a_sample_larger_than_the_test_set_fails_before_training(tmp_path) -> None:
    spec = load_spec(str(write_spec(tmp_path, TINY_SPEC + "\n[adversarial]\nenabled = true\nexamples = 361\n")))
    with pytest.raises(SparsecapError, match="digits: its test set has 360 examples"):
        run_study(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_quick_adversarial_preset_runs_from_the_cli_and_reports_fig3(tmp_path, capsys) -> None:
    out = tmp_path / "study"
    code = main(["run", "quick-adversarial", "--out", str(out), "--no-progress",
                 "--set", "widths=[16, 64]", "--set", "seeds=[0, 1]", "--set", "training.max_epochs=3", "--set", "adversarial.examples=100",
                 "--set", "weight_noise.draws=1"])
    assert code == 0, capsys.readouterr().err
    database = StudyDatabase(out)
    trials = database.rows("trials")
    rows = database.rows("adversarial")
    assert len(trials) == 2 * 2 * 2
    assert len(rows) == len(trials) * len(Attack) * len(BUDGETS)
    assert {row["attack"] for row in rows} == {attack.value for attack in Attack}
    assert {row["epsilon"] for row in rows} == set(BUDGETS)
    assert {row["examples"] for row in rows} == {100}
    for row in rows:
        assert 0.0 <= row["robust_accuracy"] <= 1.0
        assert row["success_rate"] is None or 0.0 <= row["success_rate"] <= 1.0
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert 'src="adversarial_accuracy.png"' in html
    assert "Robust accuracy under adversarial attacks" in html
    assert (out / "report" / "adversarial_accuracy.png").stat().st_size > 1000


@pytest.mark.parametrize("attack", list(Attack))
def test_every_attack_runs_on_its_inputs_device_alone(attack):
    """Every tensor an attack makes lives where the pixels are: on a GPU a CPU tensor among them fails (APGD's
    per-example state once did). `meta` stands in for a GPU here: no CPU tensor mixes with it, and it has no
    values, so a step that waited for the device (a mask index, `.item()`) fails too."""
    from sparsecap.data import dataset_info

    with torch.device("meta"):
        model = create_model(ModelConfig("mlp", 16, 1), dataset_info("digits"))
    pixels = torch.empty((4, 1, 8, 8), device="meta")
    labels = torch.empty(4, dtype=torch.long, device="meta")
    adversarial = run_attack(model, attack, pixels, labels, 0.1, 3, torch.Generator().manual_seed(0))
    assert adversarial.device.type == "meta" and adversarial.shape == pixels.shape


def _two_class_linear() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 2-class linear model, mid-grey pixels, their labels, and the loss gradient's sign there, which for two
    classes is sign(W[other] - W[true]) at every input: each attack's steps can be worked out by hand."""
    model = nn.Linear(6, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 3.0, -1.0, 0.2], [-1.0, 1.0, 2.0, -0.5, 0.3, 0.9]]))
        model.bias.zero_()
    pixels = torch.full((2, 6), 0.5, dtype=torch.float64)
    pixels[1] += torch.linspace(-0.3, 0.3, 6, dtype=torch.float64)
    labels = torch.tensor([0, 1])
    direction = (model.weight[1 - labels] - model.weight[labels]).detach().sign()
    return model, pixels, labels, direction


def test_the_random_start_is_uniform_over_the_whole_budget() -> None:
    """FFGSM with a zero step returns its start: uniform in [-eps, eps] around the pixels (not one-sided)."""
    model, _, _, _ = _two_class_linear()
    pixels = torch.full((4000, 6), 0.5, dtype=torch.float64)
    labels = torch.zeros(4000, dtype=torch.long)
    offsets = ffgsm(model, pixels, labels, 0.1, torch.Generator().manual_seed(0), step_size=0.0) - pixels
    assert -0.1 <= offsets.min().item() < -0.099 and 0.099 < offsets.max().item() <= 0.1
    assert abs(offsets.mean().item()) < 0.002
    assert offsets.std().item() == pytest.approx(0.1 / math.sqrt(3), rel=0.02)


def test_ffgsm_steps_1_25_eps_from_its_random_start() -> None:
    """Wong et al. (2020): x' = P(start + 1.25 eps sign(g)), the start the same seed draws, not the clean input."""
    model, pixels, labels, direction = _two_class_linear()
    start = ffgsm(model, pixels, labels, 0.1, torch.Generator().manual_seed(3), step_size=0.0)
    expected = torch.minimum(torch.maximum(start + 0.125 * direction, pixels - 0.1), pixels + 0.1)
    assert torch.allclose(ffgsm(model, pixels, labels, 0.1, torch.Generator().manual_seed(3)), expected, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 3, 4])
def test_bim_and_pgd_take_exactly_steps_projected_steps(steps: int) -> None:
    """With a constant gradient sign, `steps` steps of 0.02 move each pixel 0.02 * steps, capped at eps = 0.07."""
    model, pixels, labels, direction = _two_class_linear()
    expected = pixels + min(0.02 * steps, 0.07) * direction
    assert torch.allclose(bim(model, pixels, labels, 0.07, steps=steps, step_size=0.02), expected, atol=1e-12)
    assert torch.allclose(pgd(model, pixels, labels, 0.07, steps=steps, step_size=0.02, random_start=False),
                          expected, atol=1e-12)


class _Recording(nn.Module):
    """A model that keeps every batch it is evaluated on, so a test can read an attack's iterates in order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.inputs: list[torch.Tensor] = []

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.inputs.append(pixels.detach().clone())
        return self.model(pixels)


def _reference_apgd(model: nn.Module, clean: torch.Tensor, start: torch.Tensor, label: torch.Tensor, epsilon: float,
                    steps: int) -> tuple[list[torch.Tensor], torch.Tensor, dict[str, int]]:
    """Croce & Hein's Algorithm 1 for one example, from the paper: step 2 eps, momentum 0.75 (1 on the first
    step), at each checkpoint halve where fewer than 75 % of the steps since the last one raised the loss or,
    without a halving there, the best loss has not risen; a halving restarts from the best point, whose next
    step's momentum is the move there from the iterate before the checkpoint's. Returns the iterates, the
    result (the first misclassified iterate, else the best), and counts of the events the comparison covers."""
    checkpoints = apgd_checkpoints(steps)

    def evaluated(point: torch.Tensor) -> tuple[float, torch.Tensor, int]:
        point = point.clone().requires_grad_(True)
        logits = model(point[None])
        loss = functional.cross_entropy(logits, label[None])
        (gradient,) = torch.autograd.grad(loss, point)
        return loss.item(), gradient, int(logits.argmax())

    def project(point: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(point, clean - epsilon), clean + epsilon).clamp(0.0, 1.0)

    eta, point, previous = 2 * epsilon, start, start
    points, losses, predictions = [], [], []
    best, best_loss, best_gradient = start, -math.inf, torch.zeros_like(start)
    rises, last_checkpoint, best_then, halved_then, compared = 0, 0, -math.inf, False, -math.inf
    events = {"halvings": 0, "restarts_that_move": 0}
    for k in range(steps):
        loss, gradient, predicted = evaluated(point)
        points.append(point), losses.append(loss), predictions.append(predicted)
        rises += k > 0 and loss > compared
        compared = loss
        if loss > best_loss:
            best, best_loss, best_gradient = point, loss, gradient
        if k == 0:
            best_then = best_loss
        if k in checkpoints:
            halve = rises < 0.75 * (k - last_checkpoint) or (not halved_then and best_loss <= best_then)
            if halve:
                events["halvings"] += 1
                events["restarts_that_move"] += not torch.equal(point, best)
                eta, point, gradient, compared = eta / 2, best, best_gradient, best_loss
            rises, last_checkpoint, best_then, halved_then = 0, k, best_loss, halve
        target = project(point + eta * gradient.sign())
        alpha = 1.0 if k == 0 else 0.75
        point, previous = project(point + alpha * (target - point) + (1 - alpha) * (point - previous)), point
    with torch.no_grad():
        logits = model(point[None])
    points.append(point), predictions.append(int(logits.argmax()))
    losses.append(functional.cross_entropy(logits, label[None]).item())
    fooled = [index for index, predicted in enumerate(predictions) if predicted != int(label)]
    best_index = max(range(len(points)), key=lambda index: (losses[index], -index))
    events["fooled"] = len(fooled) > 0
    events["first_fooled_is_not_best"] = bool(fooled) and not torch.equal(points[fooled[0]], points[best_index])
    events["first_fooled_is_not_last"] = bool(fooled) and not torch.equal(points[fooled[0]], points[fooled[-1]])
    return points, points[fooled[0] if fooled else best_index], events


def test_apgd_follows_croce_and_hein_iterate_by_iterate() -> None:
    """Every iterate APGD evaluates, and the point it returns, match a one-example reference of the paper's
    algorithm on a small nonlinear model in float64 (step size, momentum, halving and restarts included)."""
    generator = torch.Generator().manual_seed(1)
    network = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(2 * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    pixels = torch.rand((16, 6), generator=generator, dtype=torch.float64)
    labels = network(pixels).argmax(dim=1).detach()
    model, steps, epsilon = _Recording(network), 10, 0.2
    adversarial = apgd(model, pixels, labels, epsilon, steps=steps, generator=torch.Generator().manual_seed(0))
    assert len(model.inputs) == steps + 1  # one gradient per step, then the last iterate's prediction
    assert (model.inputs[0] - pixels).abs().max().item() <= epsilon
    totals: dict[str, int] = {}
    for index in range(len(labels)):
        points, result, events = _reference_apgd(network, pixels[index], model.inputs[0][index], labels[index],
                                                 epsilon, steps)
        for step, (expected, evaluated) in enumerate(zip(points, model.inputs, strict=True)):
            assert torch.allclose(evaluated[index], expected, atol=1e-12), (index, step)
        assert torch.allclose(adversarial[index], result, atol=1e-12), index
        for name, count in events.items():
            totals[name] = totals.get(name, 0) + int(count)
    # The comparison covers halvings that move the iterate, and both ways of choosing the result.
    assert totals["restarts_that_move"] > 0 and 0 < totals["fooled"] < len(labels)
    assert totals["first_fooled_is_not_best"] > 0 and totals["first_fooled_is_not_last"] > 0


def test_ffgsm_draws_its_random_start_from_the_given_generator_not_the_global_one() -> None:
    """A study seeds its starts by attack and budget (`attack_generator`): torch's global state must not move them."""
    model, _, _, _ = _two_class_linear()
    pixels = torch.rand((64, 6), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    labels = torch.arange(64) % 2
    runs = []
    for global_seed, seed in ((1, 0), (2, 0), (1, 1)):
        with torch.random.fork_rng():
            torch.manual_seed(global_seed)
            generator = torch.Generator().manual_seed(seed)
            runs.append(run_attack(model, Attack.FFGSM, pixels, labels, 0.1, generator=generator))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])  # the start shapes the result: another generator seed moves it


def test_each_attack_and_budget_draws_its_own_random_starts() -> None:
    """Two budgets of one attack sharing their starts would make their robust accuracies correlated draws."""
    def first_draws(attack: Attack, epsilon: float) -> torch.Tensor:
        return torch.rand(8, generator=attack_generator(attack, epsilon))

    assert torch.equal(first_draws(Attack.PGD, 0.1), first_draws(Attack.PGD, 0.1))
    draws = [first_draws(attack, epsilon) for attack in (Attack.PGD, Attack.APGD) for epsilon in (0.1, 0.2, 8 / 255)]
    assert all(not torch.equal(first, second) for index, first in enumerate(draws) for second in draws[index + 1:])
