"""How a study's trials run on this machine, never what they compute: worker processes, torch threads.

One `Runtime` value is made by the command line and passed down to every executor; the process that
trains applies it, because torch's thread count belongs to a process. The thread count changes float
reduction order, hence the last bits of every result, so each trial records the count it ran with.

The policy (`benchmarks/threads.py`, docs/performance.md): a small model trains fastest on one thread,
and a second thread only waits for a core when another process holds one; a large model gains from
every core. Idle OpenMP threads sleep instead of spinning (`OMP_WAIT_POLICY=PASSIVE`), so a threaded
trial does not burn the cores another process needs.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"
THREADED_FROM_MULTIPLY_ACCUMULATES = 1_000_000
"""Dense multiply-accumulates per example from which a trial gets every core (below: one thread).
benchmarks/threads.py: the base MLP (9,472) is 1.2-3x slower on two threads, the width-2^13 MLP
(6.5 M) and VGG11 at width 16 (9.9 M) are 1.1-1.5x faster on two on a quiet machine."""


def available_cores() -> int:
    """The cores this process may run on (its affinity mask: what a container or `taskset` allows)."""
    return len(os.sched_getaffinity(0))


def physical_cores() -> int:
    """Cores this process may use, the hyper-threads of one core counted once (Linux topology, else CPUs):
    two trials on the two hyper-threads of one core share its arithmetic units."""
    allowed = os.sched_getaffinity(0)
    cores = set()
    for cpu in allowed:
        try:
            cores.add(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip())
        except OSError:
            return len(allowed)
    return len(cores)


def prefer_passive_waiting(environment: MutableMapping[str, str]) -> None:
    """Let idle OpenMP threads sleep, unless the user chose otherwise; OpenMP reads this once, when torch
    is loaded, so it must be set before that (the CLI does it first thing, the test suite in conftest)."""
    environment.setdefault(WAIT_POLICY_VARIABLE, "PASSIVE")


@dataclass(frozen=True)
class Runtime:
    """Where and how trials run: the same spec and seed give the same numbers for the same `Runtime`."""

    threads: int | None = None
    """torch threads per trial (`--threads`); None: chosen per trial from the model's size."""
    cores: int = field(default_factory=available_cores)
    """The cores one trial may use (a Ray task: the CPUs it reserved)."""
    workers: int | None = None
    """Trial processes of the local executor (`--workers`); None: one per physical core, at most one per
    group of the study (a count fixed by the spec, so a resumed study runs with the same threads)."""

    def workers_for(self, groups: int) -> int:
        if self.workers is not None:
            return self.workers
        return max(1, min(physical_cores(), groups))

    def threads_for(self, multiply_accumulates: int) -> int:
        if self.threads is not None:
            return self.threads
        return self.cores if multiply_accumulates >= THREADED_FROM_MULTIPLY_ACCUMULATES else 1

    def on_cores(self, cores: int) -> Runtime:
        """The same choice for a process that may use `cores` cores (a worker's share, a Ray task's reservation)."""
        return Runtime(self.threads, max(1, cores), 1)
