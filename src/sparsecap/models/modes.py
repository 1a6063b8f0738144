"""A model in eval mode for a while, every module's own mode given back after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def in_eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode; on exit each module gets back its own mode, not the root's for all: a model may
    hold some modules in eval mode while it trains, as frozen batch norms are."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
