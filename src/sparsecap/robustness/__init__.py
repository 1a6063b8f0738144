"""Robustness measures: clean evaluation with per-class recall, weight noise, adversarial attacks."""

from sparsecap.lazy_imports import lazy_package

__getattr__, __all__ = lazy_package(__name__, {
    "adversarial": ["AdversarialResult", "adversarial_robustness", "default_epsilons"],
    "attack_names": ["Attack", "parse_attack"],
    "attacks": ["run_attack"],
    "evaluation": ["Evaluation", "class_recall", "evaluate"],
    "weight_noise": ["NoiseDraw", "add_weight_noise_", "weight_noise_robustness"],
})
