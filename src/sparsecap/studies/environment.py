"""What reproducing a study takes: the versions it ran with."""

from __future__ import annotations

import platform

import numpy
import torch

import sparsecap


def versions() -> dict[str, str]:
    return {
        "sparsecap": sparsecap.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
