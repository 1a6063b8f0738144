"""L-infinity evasion attacks in pixel space: FGSM, FFGSM, BIM, PGD and APGD, batched, in pure PyTorch.

Models take pixels in [0, 1] (normalisation is their first layer), so a budget `epsilon` bounds each
pixel's change in [0, 1] units, and every adversarial example is clamped to [0, 1]. All attacks are
untargeted and maximise the cross-entropy of the true label, along its gradient's direction taken so that
it survives a confident model (`cross_entropy_direction`).

- FGSM (Goodfellow et al. 2015): one signed-gradient step of size epsilon.
- FFGSM (Wong et al. 2020, "fast is better than free"): a uniform random start in [-eps, eps], then one
  signed-gradient step of 1.25·eps, projected back into the budget.
- BIM (Kurakin et al. 2017): `steps` signed-gradient steps from the clean input, each projected.
- PGD (Madry et al. 2018): BIM from a uniform random start in the budget.
  BIM and PGD default to a step size of 2.5·eps/steps (MadryLab's robustness library), not Kurakin's
  1/255: every budget then costs the same `steps` gradients.
- APGD (Croce & Hein 2020, cross-entropy loss): step size 2·eps halved at checkpoints
  w_j = ceil(p_j·steps) (p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)) when
  fewer than 75 % of the steps since the last checkpoint raised the loss, or when the step was not halved
  at the last checkpoint and the best loss has not risen since (`apgd_halves`); on a halving the example
  restarts from its best point, and its next step's momentum term is the move to that point from the
  iterate before the checkpoint's (x_max − x^(k), as in the paper and its authors' code). Each step moves
  0.75 of the way to the projected signed-gradient step plus 0.25 of the previous move (the first step is a
  plain one). `steps` counts gradient evaluations. An example's result is the first iterate the model
  misclassifies, otherwise the iterate of highest loss.

Attacks never change a model: parameters are frozen for the attack (gradients flow to the inputs
only, so no parameter `.grad` is written), the model runs in eval mode, and both are restored after.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as functional
from torch import nn

from sparsecap.errors import SparsecapError
from sparsecap.models.modes import in_eval_mode
from sparsecap.robustness.attack_names import DEFAULT_STEPS, Attack, parse_attack
from sparsecap.training.trainer import loss_accumulator

ITERATIVE_STEP_FACTOR = 2.5
"""BIM and PGD step size = ITERATIVE_STEP_FACTOR · epsilon / steps."""
FFGSM_STEP_FACTOR = 1.25
"""FFGSM step size = FFGSM_STEP_FACTOR · epsilon (Wong et al. 2020)."""
APGD_MOMENTUM = 0.75
APGD_RHO = 0.75
"""APGD halves the step size when fewer than this share of the steps since a checkpoint raised the loss."""


def check_budget(epsilon: float) -> None:
    """An L-infinity budget in pixel units must lie in [0, 1]."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0.0 <= float(epsilon) <= 1.0:
        raise SparsecapError(
            f"attack budget epsilon must be a number in [0, 1] (pixel units; e.g. 0.1 or 8/255), got {epsilon!r}"
        )


def check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SparsecapError(f"attack steps must be an integer >= 1, got {steps!r}")


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (`in_eval_mode`) with every parameter's requires_grad off; both restored on exit."""
    requires_grad = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    for parameter, _ in requires_grad:
        parameter.requires_grad_(False)
    try:
        with in_eval_mode(model):
            yield model
    finally:
        for parameter, flag in requires_grad:
            parameter.requires_grad_(flag)


def _losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy in float64 where the device has it: float32's saturates at 0 beyond a logit
    margin of about 104, float64's only beyond about 745, so APGD can still tell a better iterate."""
    return functional.cross_entropy(logits.detach().to(loss_accumulator(logits.device)), labels, reduction="none")


def cross_entropy_direction(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The cross-entropy's gradient with respect to the logits, softmax(z) - onehot(y), divided by its positive
    per-example scale 1 - p_y: the softmax over the other classes, and -1 at the true one.

    Computed so, it never vanishes. In float32 the softmax rounds p_y to 1 beyond a logit margin of about 104,
    where the gradient itself is exactly 0: a signed-gradient attack would stall there and count a confidently
    classified example as robust (Torchattacks and ART do). Every attack here steps along the sign of the
    pixels' gradient, which a positive factor per example leaves unchanged (examples do not interact in eval
    mode), so where the gradient does not vanish the step is the cross-entropy's own."""
    others = logits.detach().scatter(1, labels[:, None], -math.inf)
    return torch.softmax(others, dim=1).scatter_(1, labels[:, None], -1.0)


def _loss_gradient(
    model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example cross-entropy (`_losses`), the direction of its gradient with respect to the pixels
    (`cross_entropy_direction`), and the predicted classes."""
    inputs = pixels.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(inputs)
        (gradient,) = torch.autograd.grad(logits, inputs, grad_outputs=cross_entropy_direction(logits, labels))
    return _losses(logits, labels), gradient, logits.detach().argmax(dim=1)


def _project(candidate: torch.Tensor, clean: torch.Tensor, epsilon: float | torch.Tensor) -> torch.Tensor:
    """Into the L-infinity ball of radius epsilon around `clean`, then into [0, 1]."""
    return torch.minimum(torch.maximum(candidate, clean - epsilon), clean + epsilon).clamp_(0.0, 1.0)


def _random_start(clean: torch.Tensor, epsilon: float, generator: torch.Generator | None) -> torch.Tensor:
    where = generator.device if generator is not None else clean.device  # the same draws on every device
    noise = (torch.rand(clean.shape, generator=generator, dtype=clean.dtype, device=where) * (2 * epsilon)
             - epsilon).to(clean.device)
    return _project(clean + noise, clean, epsilon)


def fgsm(model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """x + epsilon · sign(∇x L(x, y)), clamped to [0, 1]."""
    check_budget(epsilon)
    with frozen(model):
        _, gradient, _ = _loss_gradient(model, pixels, labels)
        return _project(pixels + epsilon * gradient.sign(), pixels, epsilon)


def ffgsm(
    model: nn.Module,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    generator: torch.Generator | None = None,
    step_size: float | None = None,
) -> torch.Tensor:
    """FGSM from a uniform random start in the budget, with a step of 1.25·eps by default."""
    check_budget(epsilon)
    step = FFGSM_STEP_FACTOR * epsilon if step_size is None else step_size
    with frozen(model):
        start = _random_start(pixels, epsilon, generator)
        _, gradient, _ = _loss_gradient(model, start, labels)
        return _project(start + step * gradient.sign(), pixels, epsilon)


def _iterative(
    model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, epsilon: float, steps: int,
    step_size: float | None, start: torch.Tensor,
) -> torch.Tensor:
    step = ITERATIVE_STEP_FACTOR * epsilon / steps if step_size is None else step_size
    adversarial = start
    for _ in range(steps):
        _, gradient, _ = _loss_gradient(model, adversarial, labels)
        adversarial = _project(adversarial + step * gradient.sign(), pixels, epsilon)
    return adversarial


def bim(
    model: nn.Module,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    steps: int = DEFAULT_STEPS,
    step_size: float | None = None,
) -> torch.Tensor:
    """`steps` projected signed-gradient steps from the clean input (step 2.5·eps/steps by default)."""
    check_budget(epsilon)
    check_steps(steps)
    with frozen(model):
        return _iterative(model, pixels, labels, epsilon, steps, step_size, pixels)


def pgd(
    model: nn.Module,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    steps: int = DEFAULT_STEPS,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """BIM from a uniform random start in the budget (without one it is BIM)."""
    check_budget(epsilon)
    check_steps(steps)
    with frozen(model):
        start = _random_start(pixels, epsilon, generator) if random_start else pixels
        return _iterative(model, pixels, labels, epsilon, steps, step_size, start)


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations w_1 < w_2 < ... (< steps) at which APGD may halve its step size."""
    fractions = [0.0, 0.22]
    while fractions[-1] < 1.0:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    # The tolerance keeps float noise (0.7000000000000001) from pushing a checkpoint one step later.
    points = sorted({math.ceil(fraction * steps - 1e-9) for fraction in fractions[1:]})
    return [point for point in points if 0 < point < steps]


def apgd_halves(increases: torch.Tensor, steps_since: int, halved_last: torch.Tensor, best_loss: torch.Tensor,
                checkpoint_best: torch.Tensor) -> torch.Tensor:
    """Per example, whether APGD halves its step at a checkpoint: fewer than `APGD_RHO` of the `steps_since`
    steps since the last checkpoint raised the loss, or the step size was not halved there (`halved_last`
    false: the step the paper's η^(w_{j-1}) is, the one before that checkpoint's halving, is unchanged) and
    the best loss has not risen since."""
    oscillating = increases < APGD_RHO * steps_since
    stalled = ~halved_last & (best_loss <= checkpoint_best)
    return oscillating | stalled


def apgd(
    model: nn.Module,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    steps: int = DEFAULT_STEPS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """APGD with the cross-entropy loss (Croce & Hein 2020); see the module docstring for the schedule."""
    check_budget(epsilon)
    check_steps(steps)
    checkpoints = set(apgd_checkpoints(steps))
    n = len(labels)
    shape = (n,) + (1,) * (pixels.dim() - 1)  # per-example scalars broadcast over pixels
    with frozen(model):
        current = _random_start(pixels, epsilon, generator)
        previous = current
        device = pixels.device  # every per-example tensor where the pixels are (a GPU's: no copy per step)
        step = torch.full(shape, 2.0 * epsilon, dtype=pixels.dtype, device=device)
        best, best_gradient = current, torch.zeros_like(pixels)
        best_loss = torch.full((n,), -math.inf, dtype=loss_accumulator(device), device=device)
        found = torch.zeros(n, dtype=torch.bool, device=device)
        result = current
        last_loss = torch.full((n,), -math.inf, dtype=loss_accumulator(device), device=device)
        increases = torch.zeros(n, dtype=torch.long, device=device)
        last_checkpoint, checkpoint_best = 0, best_loss.clone()
        halved_last = torch.zeros(n, dtype=torch.bool, device=device)

        def record(point: torch.Tensor, losses: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
            """Keep the first misclassified iterate and the best-loss one; True where `point` is the new best."""
            nonlocal found, best, best_loss, result
            fooled = (predictions != labels) & ~found
            result = torch.where(fooled.view(shape), point, result)  # a mask index would wait for the device
            found = found | fooled
            better = losses > best_loss
            best = torch.where(better.view(shape), point, best)
            best_loss = torch.where(better, losses, best_loss)
            return better

        for iteration in range(steps):
            losses, gradient, predictions = _loss_gradient(model, current, labels)
            if iteration > 0:
                increases += losses > last_loss
            better = record(current, losses, predictions)
            best_gradient = torch.where(better.view(shape), gradient, best_gradient)
            last_loss = losses
            if iteration == 0:
                checkpoint_best = best_loss.clone()  # f_max at w_0 = 0 is the loss of the start
            if iteration in checkpoints:
                halve = apgd_halves(increases, iteration - last_checkpoint, halved_last, best_loss, checkpoint_best)
                step = torch.where(halve.view(shape), step / 2, step)
                restart = halve.view(shape)
                current = torch.where(restart, best, current)
                gradient = torch.where(restart, best_gradient, gradient)
                last_loss = torch.where(halve, best_loss, last_loss)
                increases.zero_()
                last_checkpoint, checkpoint_best, halved_last = iteration, best_loss.clone(), halve
            target = _project(current + step * gradient.sign(), pixels, epsilon)
            momentum = 1.0 if iteration == 0 else APGD_MOMENTUM
            moved = _project(
                current + momentum * (target - current) + (1 - momentum) * (current - previous), pixels, epsilon
            )
            previous, current = current, moved
        with torch.no_grad():
            logits = model(current)
        record(current, _losses(logits, labels), logits.argmax(dim=1))
        return torch.where(found.view(shape), result, best)


def run_attack(
    model: nn.Module,
    attack: Attack | str,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    steps: int = DEFAULT_STEPS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Adversarial pixels for `pixels` (in [0, 1]) under `attack` with its documented defaults.

    `steps` applies to BIM, PGD and APGD; `generator` drives the random starts (FFGSM, PGD, APGD).
    """
    attack = parse_attack(attack)
    check_budget(epsilon)
    check_steps(steps)
    if attack is Attack.FGSM:
        return fgsm(model, pixels, labels, epsilon)
    if attack is Attack.FFGSM:
        return ffgsm(model, pixels, labels, epsilon, generator)
    if attack is Attack.BIM:
        return bim(model, pixels, labels, epsilon, steps)
    if attack is Attack.PGD:
        return pgd(model, pixels, labels, epsilon, steps, generator=generator)
    return apgd(model, pixels, labels, epsilon, steps, generator=generator)
