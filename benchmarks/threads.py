"""Which torch thread setting keeps training fast when the machine is quiet and when it is shared.

    python benchmarks/threads.py            # quiet, then with one busy process (a few minutes on 2 cores)
    python benchmarks/threads.py --repeat 3 # each measurement three times, the median kept

Every (setting, workload) runs in a fresh subprocess, because OpenMP reads its environment
(OMP_WAIT_POLICY) once, when torch is loaded. Each child times a fixed number of training steps
(forward, cross-entropy, backward, SGD with momentum) on in-memory data and prints the wall time;
wall time, not the fastest step, because waiting for a busy core is exactly the cost being measured.
"Busy" runs the same children while one other process (`python -c 'while True: pass'`) keeps a core
busy, as a user's other job would. Ratios are to the best setting of each workload under the same
condition, measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import os
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
if threads == "policy":  # what a study does (sparsecap.studies.execute)
    torch.set_num_threads(Runtime().threads_for(dense_multiply_accumulates(model, info.input_shape)))
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
    Setting("sparsecap's policy (the default)", "policy", {"OMP_WAIT_POLICY": "PASSIVE"}),
)
WORKLOADS = (  # (label, architecture, width, depth, dataset, steps): the quick study's size up to a CNN
    ("mlp 2^7 digits", "mlp", 128, 1, "digits", 1500),
    ("mlp 2^10 mnist", "mlp", 1024, 1, "mnist", 300),
    ("mlp 2^13 mnist", "mlp", 8192, 1, "mnist", 60),
    ("vgg11 w16 cifar10", "vgg", 16, 11, "cifar10", 8),
)


def measure(setting: Setting, workload: tuple, repeat: int) -> float:
    _, architecture, width, depth, dataset, steps = workload
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    environment.update(setting.environment)
    times = []
    for _ in range(repeat):
        output = subprocess.run(
            [sys.executable, "-c", CHILD, setting.threads, architecture, str(width), str(depth), dataset, str(steps)],
            env=environment, check=True, capture_output=True, text=True,
        ).stdout
        times.append(json.loads(output.strip().splitlines()[-1])["seconds"])
    return statistics.median(times)


def table(condition: str, repeat: int) -> dict[str, dict[str, float]]:
    results = {setting.name: {workload[0]: measure(setting, workload, repeat) for workload in WORKLOADS}
               for setting in SETTINGS}
    print(f"\n{condition} (load average {os.getloadavg()[0]:.2f} at the end); seconds, and ratio to the best:")
    print(f"{'setting':<38}" + "".join(f"{workload[0]:>20}" for workload in WORKLOADS))
    for name, row in results.items():
        cells = []
        for workload in WORKLOADS:
            best = min(results[other][workload[0]] for other in results)
            cells.append(f"{row[workload[0]]:>11.2f} ({row[workload[0]] / best:>4.2f}x)")
        print(f"{name:<38}" + "".join(f"{cell:>20}" for cell in cells))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="measurements per cell (the median is shown)")
    repeat = parser.parse_args().repeat
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} before the first run")
    table("quiet", repeat)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        table("one other process keeps a core busy", repeat)
    finally:
        busy.kill()
        busy.wait()


if __name__ == "__main__":
    main()
