"""Robustness measures: clean evaluation with per-class recall, weight noise."""

from sparsecap.robustness.evaluation import Evaluation, class_recall, evaluate
from sparsecap.robustness.weight_noise import NoiseDraw, add_weight_noise_, weight_noise_robustness

__all__ = ["Evaluation", "NoiseDraw", "add_weight_noise_", "class_recall", "evaluate", "weight_noise_robustness"]
