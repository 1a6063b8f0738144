"""Multiplicative Gaussian weight noise (paper Section 2).

Each weight w_i gets z_i ~ N(mu, (w_i sigma)^2) added, i.e. w_i + mu + sigma * w_i * eps_i with standard
normal eps_i. Noise is applied only where the mask keeps a weight, so a pruned connection stays
pruned (a masked weight is zero, and with mu = 0 its noise would be zero anyway). The normals come from the
generator's device and are used on the weights'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from sparsecap.devices import memory_format
from sparsecap.robustness.evaluation import Evaluation, evaluate, evaluate_side_by_side, evaluation_batch_size
from sparsecap.sparsity import masked_layers
from sparsecap.sparsity.side_by_side import can_run_side_by_side, side_by_side
from sparsecap.sparsity.unread_units import narrowed_copy, narrowings


@dataclass(frozen=True)
class NoiseDraw:
    sigma: float
    draw: int
    accuracy: float
    loss: float
    delta_loss: float
    """L(w + z) - L(w) on the test set; +inf where the noisy loss overflowed."""


@torch.no_grad()
def add_weight_noise_(model: nn.Module, sigma: float, mean: float, generator: torch.Generator) -> None:
    """Perturb every kept weight of the maskable layers in place."""
    for _, layer in masked_layers(model):
        # One normal per kept weight, in row-major order whatever the storage: every engine sees the same
        # perturbation, and a draw costs the nonzeros, not the dense shape (26 M numbers at width 2^15).
        normals = torch.randn(layer.kept_count, generator=generator, device=generator.device)
        epsilon = layer.kept_to_stored_layout(normals.to(layer.stored_weight.device))
        weight = layer.stored_weight
        weight.add_((mean + sigma * weight * epsilon) * layer.stored_mask)


def evaluations_at(sigma: float, draws: int) -> int:
    """Draws evaluated at `sigma`: one at 0, which is deterministic (every draw adds the same mean)."""
    return draws if sigma else 1


def overflowed_as_infinite(loss: float) -> float:
    """A noisy model's mean loss, +inf where it is not finite. Weights and inputs are finite, so a NaN loss
    means activations overflowed (inf - inf in the softmax): the worst outcome of a draw, not a missing one."""
    return loss if math.isfinite(loss) else math.inf


Restore = Callable[[], None]


@contextmanager
def _perturbed(model: nn.Module, sigma: float, mean: float, generator: torch.Generator,
               restore: Restore) -> Iterator[nn.Module]:
    """`model` with one draw of noise, restored on exit."""
    add_weight_noise_(model, sigma, mean, generator)
    try:
        yield model
    finally:
        restore()


def _draws_in_turn(model: nn.Module, sigma: float, mean: float, count: int, generator: torch.Generator,
                   restore: Restore, evaluated: Callable[[nn.Module], Evaluation]) -> list[Evaluation]:
    evaluations = []
    for _ in range(count):
        with _perturbed(model, sigma, mean, generator, restore) as noisy:
            evaluations.append(evaluated(noisy))
    return evaluations


def _draws_side_by_side(model: nn.Module, sigma: float, mean: float, count: int, generator: torch.Generator,
                        restore: Restore, images: torch.Tensor, labels: torch.Tensor,
                        num_classes: int) -> list[Evaluation]:
    """The `count` draws as one network (`side_by_side`) over the units some layer reads: one pass over the
    test set, in batches whose joined activations fit the caches. Each draw's logits are bit for bit those
    it has alone, so its accuracy is; its mean loss is summed over other batches, which moves its last bits.
    At width 2^15 (benchmarks/evaluation.py) five draws took 0.07 s together against 0.12 s one by one."""
    plan = narrowings(model)  # one mask for every draw
    noisy = []
    for _ in range(count):
        with _perturbed(model, sigma, mean, generator, restore) as perturbed:
            noisy.append(narrowed_copy(perturbed, plan))
    joined = side_by_side(noisy)
    return evaluate_side_by_side(joined, count, images, labels, num_classes,
                                 evaluation_batch_size(joined, images.device), memory_format(model, images.device))


def weight_noise_robustness(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    sigmas: Sequence[float],
    draws: int,
    mean: float,
    generator: torch.Generator,
    clean: Evaluation,
    on_draw: Callable[[], None] | None = None,
) -> list[NoiseDraw]:
    """Accuracy and loss increase for `draws` independent perturbations per sigma; the model is restored.

    sigma = 0 is deterministic (every draw adds the same `mean`), so it is evaluated once, as draw 0, and
    with `mean` = 0 not at all: that model is the clean one. Only the perturbed weights are copied back (in
    place): masks stay untouched, so nothing derived from them (the sparse engine's index structures) is
    rebuilt per draw. An MLP on the sparse engine has a sigma's draws evaluated side by side, in one pass
    (`sparsecap.sparsity.side_by_side`): the same accuracies as evaluated alone, losses to float rounding.
    """
    weights = [layer.stored_weight for _, layer in masked_layers(model)]
    originals = [weight.detach().clone() for weight in weights]

    @torch.no_grad()
    def restore() -> None:
        for weight, original in zip(weights, originals, strict=True):
            weight.copy_(original)

    together = can_run_side_by_side(model)
    results = []
    for sigma in sigmas:
        if sigma == 0 and mean == 0:
            results.append(NoiseDraw(sigma, 0, clean.accuracy, clean.loss, 0.0))
            if on_draw is not None:
                on_draw()
            continue
        count = evaluations_at(sigma, draws)
        if together:
            evaluations = _draws_side_by_side(model, sigma, mean, count, generator, restore, images, labels,
                                              num_classes)
        else:
            evaluations = _draws_in_turn(model, sigma, mean, count, generator, restore,
                                         lambda noisy: evaluate(noisy, images, labels, num_classes))
        for draw, noisy in enumerate(evaluations):
            loss = overflowed_as_infinite(noisy.loss)
            results.append(NoiseDraw(sigma, draw, noisy.accuracy, loss, loss - clean.loss))
            if on_draw is not None:
                on_draw()
    return results
