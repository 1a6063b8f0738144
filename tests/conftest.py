"""The test suite runs under sparsecap's thread policy (sparsecap.runtime), so it stays fast when another
process holds a core: idle OpenMP threads sleep, and the suite's small models train on one thread."""

import os

from sparsecap.runtime import prefer_passive_waiting

prefer_passive_waiting(os.environ)  # before torch is imported: OpenMP reads it once

import torch  # noqa: E402 - after the wait policy, on purpose

torch.set_num_threads(1)
