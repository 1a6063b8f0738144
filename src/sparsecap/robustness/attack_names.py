"""The attacks by the names users type, and a study's attack defaults (no torch: specs are checked without it)."""

from __future__ import annotations

import enum

from sparsecap.errors import SparsecapError


DEFAULT_EXAMPLES = 1000
"""Test examples attacked per trial."""
DEFAULT_STEPS = 10
"""Iterations of the iterative attacks (BIM, PGD, APGD)."""


class Attack(str, enum.Enum):
    """The attacks sparsecap implements (`sparsecap.robustness.attacks`); the value is the name users type."""

    FGSM = "fgsm"
    FFGSM = "ffgsm"
    BIM = "bim"
    PGD = "pgd"
    APGD = "apgd"


def valid_attack_names() -> str:
    return ", ".join(attack.value for attack in Attack)


def parse_attack(name: Attack | str) -> Attack:
    """An Attack from its name (any case), failing with the list of valid names."""
    if isinstance(name, Attack):
        return name
    try:
        return Attack(str(name).strip().lower())
    except ValueError:
        raise SparsecapError(f"unknown attack {name!r}; valid attacks: {valid_attack_names()}") from None
