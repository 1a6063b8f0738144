"""Checkpoints: weights and masks round-trip, the returned digest is the file's, and the file is as shareable
as the user's umask makes any other file."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.data.corrupted import sha256_of
from sparsecap.studies.checkpoints import (
    checkpoint_problem,
    kept_checkpoint_problems,
    load_checkpoint,
    save_checkpoint,
)
from sparsecap.studies.database import DIVERGED, FAILED, FINISHED


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(ModelConfig("mlp", 32, 1), dataset_info("digits"))


def test_a_checkpoint_loads_back_the_same_weights_and_its_digest_is_the_files(tmp_path):
    path = tmp_path / "checkpoints" / "trial.safetensors"
    digest = save_checkpoint(_model(0), path, {"trial_id": "trial"})
    assert digest == sha256_of(path) and checkpoint_problem(path, digest) is None
    assert not path.with_suffix(".partial").exists()
    loaded = load_checkpoint(_model(1), path)
    for name, tensor in _model(0).state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    path.write_bytes(path.read_bytes()[:-8])
    assert checkpoint_problem(path, digest).startswith("damaged")


def test_every_kept_trials_checkpoint_is_checked_a_diverged_ones_too(tmp_path):
    """A diverged trial is kept (its curve ends there), so its missing checkpoint is trained again like a finished
    one's; a failed trial has none to check."""
    digest = save_checkpoint(_model(0), tmp_path / "present.safetensors", {"trial_id": "present"})
    rows = [{"trial_id": trial_id, "status": status, "checkpoint": f"{trial_id}.safetensors", "checkpoint_sha256": sha}
            for trial_id, status, sha in [("present", FINISHED, digest), ("finished", FINISHED, digest),
                                          ("diverged", DIVERGED, digest), ("failed", FAILED, None)]]
    assert kept_checkpoint_problems(rows, tmp_path) == {"finished": "missing", "diverged": "missing"}


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_a_checkpoints_mode_follows_the_umask(tmp_path, umask):
    """safetensors' own writer makes every file 0600: a study directory shared with a group would hold
    checkpoints that only their writer can load."""
    before = os.umask(umask)
    try:
        save_checkpoint(_model(0), tmp_path / "trial.safetensors", {})
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "trial.safetensors").stat().st_mode) == 0o666 & ~umask
