"""Model weights and masks on disk as safetensors: loading a checkpoint cannot execute code."""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from sparsecap.sparsity import match_stored_form


def save_checkpoint(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write atomically (temporary file, then rename) so a killed run never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial")
    tensors = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(tensors, str(temporary), metadata=metadata)
    os.replace(temporary, path)


def load_checkpoint(model: nn.Module, path: Path) -> nn.Module:
    """Load weights and masks saved by `save_checkpoint` into a model of the same configuration.

    Sparse-engine layers are saved as their kept values and positions; the model's layers are stored
    the same way before loading, so use the returned model.
    """
    state = load_file(str(path))
    model = match_stored_form(model, state)
    model.load_state_dict(state)
    return model
