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


def trial_generators(seed: int) -> TrialGenerators:
    streams = np.random.SeedSequence(seed).spawn(4)
    generators = [torch.Generator().manual_seed(int(stream.generate_state(1)[0])) for stream in streams]
    return TrialGenerators(*generators)
