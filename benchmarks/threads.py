"""Which torch thread setting keeps training fast when the machine is quiet and when it is shared.

    python benchmarks/threads.py            # quiet, then with one busy process (about 5 minutes on 2 cores)
    python benchmarks/threads.py --repeat 3 # each measurement three times, the median kept

Every (setting, workload) runs in a fresh subprocess, because OpenMP reads its environment
(OMP_WAIT_POLICY) once, when torch is loaded. Each child times a fixed number of training steps
(forward, cross-entropy, backward, SGD with momentum) on in-memory data and prints the wall time;
wall time, not the fastest step, because waiting for a busy core is exactly the cost being measured.
Two tables per condition:

- one trial: each setting training one model in one process (what `--workers 1` does);
- a study of 4 trials of that model: one process training them one after another (each setting: 4 times
  its one-trial time), against sparsecap's default, one worker process per core with the thread policy
  on its share of the cores (`--workers auto`), measured as the wall time of the workers side by side.
"Busy" runs the same children while one other process (`python -c 'while True: pass'`) keeps a core
busy, as a user's other job would. Ratios are to the best setting of each workload under the same
condition, measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass

CHILD = r"""
import json, sys, time
import torch
import torch.nn.functional as functional
from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model, default_base
from sparsecap.sparsity import Allocation, mask_to_capacity, weight_count

from sparsecap.runtime import Runtime
from sparsecap.sparsity.flops import dense_multiply_accumulates

threads, architecture, width, depth, dataset, steps = sys.argv[1:]
info = dataset_info(dataset)
config = ModelConfig(architecture, int(width), int(depth))
model = create_model(config, info)
if threads.startswith("policy"):  # what a study does (sparsecap.studies.execute), on `cores` cores
    cores = int(threads.partition(":")[2])
    torch.set_num_threads(Runtime(cores=cores).threads_for(dense_multiply_accumulates(model, info.input_shape)))
elif threads != "default":
    torch.set_num_threads(int(threads))
mask_to_capacity(model, weight_count(create_model(default_base(config), info)), Allocation.UNIFORM,
                 torch.Generator().manual_seed(0))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
generator = torch.Generator().manual_seed(0)
images = torch.rand(128, *info.input_shape, generator=generator)
labels = torch.randint(0, info.num_classes, (128,), generator=generator)

def step():
    optimizer.zero_grad(set_to_none=True)
    functional.cross_entropy(model(images), labels).backward()
    optimizer.step()

step()
print("ready", flush=True)
sys.stdin.readline()  # every child of a measurement starts training at once
started = time.perf_counter()
for _ in range(int(steps)):
    step()
print(json.dumps({"seconds": time.perf_counter() - started, "threads": torch.get_num_threads()}))
"""


@dataclass(frozen=True)
class Setting:
    name: str
    threads: str
    environment: dict[str, str]


SETTINGS = (
    Setting("torch default (all cores, spinning)", "default", {}),
    Setting("all cores, OMP_WAIT_POLICY=PASSIVE", str(os.cpu_count()), {"OMP_WAIT_POLICY": "PASSIVE"}),
    Setting("1 thread", "1", {}),
    Setting("sparsecap's thread policy", f"policy:{os.cpu_count()}", {"OMP_WAIT_POLICY": "PASSIVE"}),
)
WORKLOADS = (  # (label, architecture, width, depth, dataset, steps): the quick study's size up to a CNN
    ("mlp 2^7 digits", "mlp", 128, 1, "digits", 1500),
    ("mlp 2^10 mnist", "mlp", 1024, 1, "mnist", 300),
    ("mlp 2^13 mnist", "mlp", 8192, 1, "mnist", 60),
    ("vgg11 w16 cifar10", "vgg", 16, 11, "cifar10", 8),
)


STUDY_TRIALS = 4


def _children(setting: Setting, workload: tuple, count: int, trials_each: int) -> float:
    """Training time of `count` child processes started together, each training `trials_each` trials' steps:
    the slowest child's (import and set-up are left out: they are the same for every setting)."""
    _, architecture, width, depth, dataset, steps = workload
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    environment.update(setting.environment)
    children = [subprocess.Popen(
        [sys.executable, "-c", CHILD, setting.threads, architecture, str(width), str(depth), dataset,
         str(steps * trials_each)], env=environment, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(count)]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = [child.communicate()[0] for child in children]
    if any(child.returncode for child in children):
        raise RuntimeError(f"a benchmark child failed for {setting.name}, {workload[0]}")
    return max(json.loads(output.strip().splitlines()[-1])["seconds"] for output in outputs)


def measure(setting: Setting, workload: tuple, repeat: int, count: int = 1, trials_each: int = 1) -> float:
    return statistics.median(_children(setting, workload, count, trials_each) for _ in range(repeat))


def _print(title: str, results: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}; seconds, and ratio to the best:")
    print(f"{'setting':<44}" + "".join(f"{workload[0]:>20}" for workload in WORKLOADS))
    for name, row in results.items():
        cells = []
        for workload in WORKLOADS:
            best = min(results[other][workload[0]] for other in results)
            cells.append(f"{row[workload[0]]:>11.2f} ({row[workload[0]] / best:>4.2f}x)")
        print(f"{name:<44}" + "".join(f"{cell:>20}" for cell in cells))


def table(condition: str, repeat: int) -> None:
    single = {setting.name: {workload[0]: measure(setting, workload, repeat) for workload in WORKLOADS}
              for setting in SETTINGS}
    _print(f"{condition}, one trial (load average {os.getloadavg()[0]:.2f})", single)
    workers = os.cpu_count() or 1
    default = Setting(f"sparsecap's default: {workers} workers", "policy:1", {"OMP_WAIT_POLICY": "PASSIVE"})
    study = {f"one process, {name}": {label: seconds * STUDY_TRIALS for label, seconds in row.items()}
             for name, row in single.items()}
    study[default.name] = {workload[0]: measure(default, workload, repeat, workers, STUDY_TRIALS // workers)
                           for workload in WORKLOADS}
    _print(f"{condition}, a study of {STUDY_TRIALS} trials (load average {os.getloadavg()[0]:.2f})", study)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="measurements per cell (the median is shown)")
    repeat = parser.parse_args().repeat
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} before the first run")
    table("quiet", repeat)
    # SIGTERM (`timeout`, a job scheduler) would end this process without the `finally` below, leaving the
    # busy loop spinning for good: make it unwind like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        table("one other process keeps a core busy", repeat)
    finally:
        busy.kill()
        busy.wait()


if __name__ == "__main__":
    main()
