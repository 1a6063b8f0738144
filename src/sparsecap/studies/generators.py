"""The independent random streams each trial draws from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TrialGenerators:
    """One generator per source of randomness, so changing one (e.g. the mask) leaves the others alone."""

    initialization: torch.Generator
    mask: torch.Generator
    data_order: torch.Generator
    weight_noise: torch.Generator
    mask_updates: torch.Generator
    """Where a moving-mask schedule (set) regrows."""


def trial_generators(seed: int, noise_device: str = "cpu") -> TrialGenerators:
    """The trial's generators, all on the CPU (the same masks, initial weights and data order on every
    device) except the weight noise's, on `noise_device`: a CPU draw of 26 M numbers per draw at width 2^15
    costs more than the evaluation it feeds, so noise draws are reproducible per device type, not across."""
    # Spawned children depend on their index only: the fifth stream leaves the first four's draws unchanged.
    streams = np.random.SeedSequence(seed).spawn(5)
    initialization, mask, data_order, noise, mask_updates = (int(stream.generate_state(1)[0]) for stream in streams)
    return TrialGenerators(*(torch.Generator().manual_seed(value) for value in (initialization, mask, data_order)),
                           torch.Generator(device=noise_device).manual_seed(noise),
                           torch.Generator().manual_seed(mask_updates))
