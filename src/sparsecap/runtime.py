"""How a study's trials run on this machine, never what they compute: device, worker processes, threads.

One `Runtime` value is made by the command line and passed down to every executor; the process that
trains applies it, because torch's thread count belongs to a process. The thread count changes float
reduction order, hence the last bits of every result, so each trial records the count it ran with.

The policy (`benchmarks/threads.py`, docs/performance.md): a small model trains fastest on one thread,
and a second thread only waits for a core when another process holds one; a large model gains from
every core. Idle OpenMP threads sleep instead of spinning (`OMP_WAIT_POLICY=PASSIVE`), so a threaded
trial does not burn the cores another process needs.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field, replace
from pathlib import Path

WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"
THREADED_FROM_MULTIPLY_ACCUMULATES = 100_000
"""Dense multiply-accumulates per example from which a trial gets every core (below: one thread).
benchmarks/threads.py on 2 cores: the base MLP (9,472) is 2.7x slower on two sleeping-wait threads than
on one; the width-2^10 MLP (0.8 M), width 2^13 (6.5 M) and VGG11 at width 16 (9.9 M) are 1.4-1.5x faster
on two when the machine is quiet, and within 1.1x of one thread when another process holds a core."""


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


HEAP_REUSE_LIMIT_BYTES = 32 * 2**20
"""Freed blocks up to this size stay in the heap for reuse: glibc's largest mmap threshold on 64-bit."""
HEAP_KEPT_FREE_BYTES = 2**30
"""Free memory at the heap's top that is kept rather than returned (128 MiB still let the width-2^15 step
fault 205 times per step)."""
_MALLOC_TRIM_THRESHOLD, _MALLOC_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


def physical_memory_bytes() -> int:
    """This machine's memory: what a model built here can never exceed."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def reuse_freed_memory() -> bool:
    """Keep freed tensors of up to 32 MiB in this process's heap, so each training step reuses the pages
    of the last step's activations; True where that was set (glibc), False elsewhere (nothing changed).

    glibc's default hands large freed blocks back to the OS and faults them in again, zero-filled, at the
    next allocation: at width 2^15 the sparse step page-faulted 409 times per step, and some runs took 3x
    their fastest step (benchmarks/sparse_engine.py reports faults per step; docs/performance.md). The
    heap then holds what a step's peak needed, which the process needs again at the next step anyway.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    return bool(mallopt(_MALLOC_MMAP_THRESHOLD, HEAP_REUSE_LIMIT_BYTES)) and bool(
        mallopt(_MALLOC_TRIM_THRESHOLD, HEAP_KEPT_FREE_BYTES))


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
    """Trial processes of the local executor (`--workers`); None: one per physical core (one per GPU on
    CUDA), at most one per group of the study (a count fixed by the spec, so a resumed study runs with the
    same threads)."""
    device: str = "cpu"
    """Where trials run (`sparsecap.devices.resolve`): cpu, cuda (every CUDA device), cuda:N or mps."""
    devices: tuple[str, ...] = ("cpu",)
    """The concrete devices `device` stands for, one per worker in turn (`sparsecap.devices.devices_of`)."""
    max_retries: int = 2
    """Reruns of a trial group whose process died (killed, out of memory, a lost Ray node) before its
    trials are recorded failed (`--max-retries`), by either executor."""

    def workers_for(self, groups: int) -> int:
        if self.workers is not None:
            return self.workers
        per_machine = physical_cores() if self.device == "cpu" else len(self.devices)
        return max(1, min(per_machine, groups))

    def threads_for(self, multiply_accumulates: int) -> int:
        if self.threads is not None:
            return self.threads
        return self.cores if multiply_accumulates >= THREADED_FROM_MULTIPLY_ACCUMULATES else 1

    def for_process(self, cores: int, device: str) -> Runtime:
        """The runtime of one trial process: `cores` cores (its share, or a Ray task's reservation) and one
        concrete device."""
        return replace(self, cores=max(1, cores), workers=1, device=device, devices=(device,))
