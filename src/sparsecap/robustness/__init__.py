"""Robustness measures: clean evaluation with per-class recall, weight noise, adversarial attacks."""

from sparsecap.robustness.adversarial import AdversarialResult, adversarial_robustness, default_epsilons
from sparsecap.robustness.attacks import Attack, parse_attack, run_attack
from sparsecap.robustness.evaluation import Evaluation, class_recall, evaluate
from sparsecap.robustness.weight_noise import NoiseDraw, add_weight_noise_, weight_noise_robustness

__all__ = [
    "AdversarialResult",
    "Attack",
    "Evaluation",
    "NoiseDraw",
    "add_weight_noise_",
    "adversarial_robustness",
    "class_recall",
    "default_epsilons",
    "evaluate",
    "parse_attack",
    "run_attack",
    "weight_noise_robustness",
]
