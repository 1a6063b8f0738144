"""Wall time of a study of 8 small trials: the local executor against Ray, and what Ray adds per trial.

The study: MLP on digits, widths 64 and 256, static and posttrain, 2 seeds, 20 epochs (no early stop).
Measured in one run, each into a fresh directory:
  local               the default executor (one trial after another, torch on every core), twice:
                      the second run counts
  local, 1 thread     the same with torch on one thread, as in a 1-CPU Ray task
  ray, 1 CPU          an already started 1-CPU Ray instance: trials one after another, as local, so
                      (this - local, 1 thread) / 8 is Ray's overhead per trial (task dispatch, the dataset from the
                      object store, the record back); run twice: 'cold' includes the new worker process
                      importing sparsecap and torch, 'warm' reuses it
  ray, 2 CPUs         an already started 2-CPU instance: two trials at a time (cold, then warm)
  ray, 2 CPUs + start what `sparsecap run --executor ray` costs: starting and stopping the instance included
Run: python benchmarks/ray_overhead.py   (needs Ray: pip install 'sparsecap[cluster]')
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sparsecap.devices import cpu_name
from sparsecap.errors import SparsecapError
from sparsecap.studies import parse_spec, run_study
from sparsecap.studies.ray_executor import RayOptions, import_ray
from sparsecap.studies.runner import Executor

SPEC = {
    "name": "ray-overhead",
    "architectures": ["mlp"],
    "datasets": ["digits"],
    "widths": [64, 256],
    "schedules": ["static", "posttrain"],
    "seeds": [0, 1],
    "training": {"max_epochs": 20, "stop_loss": 0.0, "batch_size": 64},
    "weight_noise": {"sigmas": [0.0, 0.5], "draws": 2},
}
TRIALS = 8


def _timed(root: Path, name: str, executor: Executor, options: RayOptions | None = None) -> float:
    spec = parse_spec(SPEC, "benchmark")
    started = time.perf_counter()
    progress = run_study(spec, root / name, executor=executor, ray_options=options)
    seconds = time.perf_counter() - started
    assert progress.ran == TRIALS and not progress.failed
    return seconds


def _on_instance(ray: Any, root: Path, name: str, cpus: int) -> tuple[float, float, float]:
    """Seconds to start a `cpus`-CPU instance, then to run the study on it with new and with reused workers."""
    started = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    startup = time.perf_counter() - started
    try:
        return startup, _timed(root, f"{name}-cold", Executor.RAY), _timed(root, f"{name}-warm", Executor.RAY)
    finally:
        ray.shutdown()


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    try:
        ray = import_ray()
    except SparsecapError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{TRIALS} trials, {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.get_num_threads()} threads, "
          f"load average before: "
          f"{', '.join(f'{load:.2f}' for load in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        _timed(root, "local-first", Executor.LOCAL)
        local = _timed(root, "local", Executor.LOCAL)
        print(f"  local executor:                      {local:6.2f} s  ({local / TRIALS:.2f} s per trial)")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        local_1 = _timed(root, "local-1-thread", Executor.LOCAL)
        torch.set_num_threads(threads)
        print(f"  local executor, 1 torch thread:      {local_1:6.2f} s  ({local_1 / TRIALS:.2f} s per trial)")
        startup_1, cold_1, warm_1 = _on_instance(ray, root, "ray-1", 1)
        print(f"  ray, 1 CPU, instance running:        {cold_1:6.2f} s cold, {warm_1:6.2f} s warm "
              f"(Ray start took {startup_1:.2f} s)")
        startup_2, cold_2, warm_2 = _on_instance(ray, root, "ray-2", 2)
        print(f"  ray, 2 CPUs, instance running:       {cold_2:6.2f} s cold, {warm_2:6.2f} s warm "
              f"(Ray start took {startup_2:.2f} s)")
        whole = _timed(root, "ray-2-start", Executor.RAY, RayOptions(num_cpus=2))
        print(f"  ray, 2 CPUs, start + shutdown:       {whole:6.2f} s  (what `sparsecap run --executor ray` costs)")
        print(f"  Ray overhead per trial (1 CPU vs local, 1 torch thread): {(cold_1 - local_1) / TRIALS:+.2f} s cold, "
              f"{(warm_1 - local_1) / TRIALS:+.2f} s warm")
    print(f"load average after: {', '.join(f'{load:.2f}' for load in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
