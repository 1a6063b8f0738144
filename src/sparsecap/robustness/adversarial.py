"""Adversarial robustness as a measure of a study: robust accuracy under each attack at each budget.

Every model of a study is attacked on the same seeded sample of test examples (drawn from a fixed
study-level seed, not the trial's), and every random start is drawn from a generator seeded by the
attack and the budget only, so models are compared on exactly the same inputs and starts: every example
of the sample is attacked, in the same batches, so the generator gives each example the same start
whichever examples a model gets right.

An example counts as robust when the model classifies it correctly both clean and under the attack
(the clean input lies inside every budget), so robust accuracy never exceeds clean accuracy; the attack
on a misclassified example counts for nothing (it costs what a model classifying it correctly would).
The success rate is the share of the correctly classified examples the attack fools.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sparsecap.data import DatasetInfo
from sparsecap.devices import memory_format
from sparsecap.errors import SparsecapError
from sparsecap.robustness.attack_names import DEFAULT_EXAMPLES, DEFAULT_STEPS, Attack, parse_attack
from sparsecap.robustness.attacks import check_budget, check_steps, frozen, run_attack
from sparsecap.sparsity.unread_units import without_unread_units
from sparsecap.training import to_pixels

SAMPLE_SEED = 0
"""The study-level seed of the test sample and of the attacks' random starts."""
MNIST_LIKE_EPSILONS = (0.05, 0.1, 0.2, 0.3)
"""Default budgets for single-channel datasets (MNIST, Fashion-MNIST, digits)."""
CIFAR_EPSILONS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
"""Default budgets for colour datasets (CIFAR-10/100)."""
BATCH_SIZE = 500


@dataclass(frozen=True)
class AdversarialResult:
    attack: Attack
    epsilon: float
    robust_accuracy: float
    """Share of the sample classified correctly both clean and under the attack."""
    success_rate: float
    """Share of the correctly classified examples the attack fools (NaN when none is correct)."""
    examples: int


def default_epsilons(info: DatasetInfo) -> tuple[float, ...]:
    """The documented default budgets for a dataset: by its number of channels."""
    return MNIST_LIKE_EPSILONS if info.input_shape[0] == 1 else CIFAR_EPSILONS


def check_sample_size(examples: int, test_size: int, dataset: str) -> None:
    """Refuse a sample larger than the test set (or not positive) with a message saying what is possible."""
    if isinstance(examples, bool) or not isinstance(examples, int) or not 1 <= examples <= test_size:
        raise SparsecapError(
            f"adversarial sample size {examples!r} is not possible for {dataset}: its test set has "
            f"{test_size} examples; set adversarial.examples to a number from 1 to {test_size}"
        )


def sample_indices(test_size: int, examples: int, seed: int = SAMPLE_SEED) -> torch.Tensor:
    """`examples` distinct test indices (ascending), the same for the same seed and test size."""
    check_sample_size(examples, test_size, "this dataset")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(test_size, generator=generator)[:examples].sort().values


def attack_generator(attack: Attack, epsilon: float) -> torch.Generator:
    """The random-start generator of one (attack, budget): independent of the model and the trial."""
    key = (list(Attack).index(attack), round(epsilon * 1e9))
    stream = np.random.SeedSequence(SAMPLE_SEED, spawn_key=key)
    return torch.Generator().manual_seed(int(stream.generate_state(1)[0]))


def _predict(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    with frozen(model), torch.no_grad():
        return torch.cat([model(batch).argmax(dim=1) for batch in pixels.split(BATCH_SIZE)])


def adversarial_robustness(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: Sequence[Attack | str],
    epsilons: Sequence[float],
    *,
    steps: int = DEFAULT_STEPS,
    examples: int = DEFAULT_EXAMPLES,
) -> list[AdversarialResult]:
    """Robust accuracy and success rate of every attack at every budget on a seeded sample of uint8 `images`.

    The model (weights, masks, train/eval mode) is left exactly as it was. The attacks run on it without its
    unread hidden units (`without_unread_units`), whose logits and input gradients are bit for bit its own.
    """
    model = without_unread_units(model)
    parsed = [parse_attack(attack) for attack in attacks]
    for epsilon in epsilons:
        check_budget(epsilon)
    check_steps(steps)
    indices = sample_indices(len(labels), examples).to(labels.device)
    pixels, targets = to_pixels(images[indices], memory_format(model, images.device)), labels[indices]
    correct = _predict(model, pixels) == targets
    n_correct = int(correct.sum())
    results = []
    for attack in parsed:
        for epsilon in epsilons:
            generator = attack_generator(attack, float(epsilon))
            fooled = 0
            for start in range(0, examples, BATCH_SIZE):
                batch = slice(start, start + BATCH_SIZE)
                adversarial = run_attack(model, attack, pixels[batch], targets[batch], float(epsilon), steps, generator)
                fooled += int(((_predict(model, adversarial) != targets[batch]) & correct[batch]).sum())
            results.append(
                AdversarialResult(
                    attack=attack,
                    epsilon=float(epsilon),
                    robust_accuracy=(n_correct - fooled) / examples,
                    success_rate=fooled / n_correct if n_correct else math.nan,
                    examples=examples,
                )
            )
    return results
