"""Model weights and masks on disk as safetensors: loading a checkpoint cannot execute code."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save
from torch import nn

from sparsecap.data.corrupted import sha256_of
from sparsecap.sparsity import match_stored_form
from sparsecap.studies.database import FAILED

CHECKPOINTS_DIRECTORY = "checkpoints"
"""Where, under a study's storage (`--storage`, else the study directory), its trials' checkpoints go."""


def checkpoint_path(storage: Path, trial_id: str) -> Path:
    return Path(storage) / CHECKPOINTS_DIRECTORY / f"{trial_id}.safetensors"


def save_checkpoint(model: nn.Module, path: Path, metadata: dict[str, str]) -> str:
    """Write atomically (temporary file, then rename) so a killed run never leaves half a checkpoint.

    Returns the file's SHA-256, which the database keeps so that a damaged file is noticed later.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial")
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    # One metadata entry: safetensors writes several in hash order, so the same trial would give files that
    # differ byte for byte, and a checksum would tell two identical runs apart.
    data = save(tensors, metadata={"sparsecap": json.dumps(metadata, sort_keys=True)})
    # Written here rather than by safetensors' save_file, which makes the file private to its owner (mode 0600)
    # whatever the umask: a study directory shared with a group would hold checkpoints only one user can load.
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return hashlib.sha256(data).hexdigest()


def checkpoint_problem(path: Path, sha256: str | None) -> str | None:
    """What is wrong with a recorded checkpoint ("missing", "damaged: ..."), or None if it is as written.

    A record from before checksums were kept (`sha256` None) can only be checked for presence.
    """
    if not path.is_file():
        return "missing"
    if sha256 is not None and sha256_of(path) != sha256:
        return "damaged: its SHA-256 differs from the one recorded when it was written (truncated or altered)"
    return None


def kept_checkpoint_problems(trials: Iterable[Mapping[str, Any]], storage: Path) -> dict[str, str]:
    """The trials a study keeps (all but failed ones) whose checkpoint under `storage` is missing or no longer what
    was written: trial id -> `checkpoint_problem`. A resume trains them again; a report names them."""
    problems = {}
    for trial in trials:
        if trial["status"] != FAILED:
            problem = checkpoint_problem(storage / trial["checkpoint"], trial["checkpoint_sha256"])
            if problem is not None:
                problems[trial["trial_id"]] = problem
    return problems


def load_checkpoint(model: nn.Module, path: Path) -> nn.Module:
    """Load weights and masks saved by `save_checkpoint` into a model of the same configuration.

    Sparse-engine layers are saved as their kept values and positions; the model's layers are stored
    the same way before loading, so use the returned model.
    """
    state = load_file(str(path))
    model = match_stored_form(model, state)
    model.load_state_dict(state)
    return model
