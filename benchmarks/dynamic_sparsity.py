"""Cost of one training epoch of the moving-mask schedules (set, rigl) relative to static.

    python benchmarks/dynamic_sparsity.py                       # width 2^15, 60,000 examples, best of 2
    python benchmarks/dynamic_sparsity.py --width 4096 --repeats 3 --threads 2

The one-hidden-layer MLP masked to the width-2^7 base (101,632 nonzero weights, uniform allocation),
every layer on the sparse engine, batch 128, SGD with momentum: one epoch of MNIST-shaped data (random
pixels: the cost does not depend on their values), trained by each schedule as a study trains it
(`create_schedule(...).train` with a `Fit` around `train`). The [dynamic] defaults (ζ = 0.3, an update
every 100 steps: 4 updates in the epoch's 469 steps) except rigl's stop fraction, set to 1 so that rigl
updates through the whole epoch, the phase of training in which it costs most. Schedules run
interleaved, `--repeats` times, and each one's fastest epoch is kept (a shared machine's bursts only
ever add), after an untimed warm-up of each. Threads are pinned (`--threads`, default 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import time

import torch

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import Allocation, Engine, MaskGranularity, PruningScope
from sparsecap.sparsity.schedule_config import DynamicConfig, Schedule
from sparsecap.sparsity.schedules import ScheduleSettings, create_schedule
from sparsecap.training import TrainingConfig, train

CAPACITY = 101_632
SCHEDULES = (Schedule.STATIC, Schedule.SET, Schedule.RIGL)


def _epoch_seconds(schedule: Schedule, width: int, images: torch.Tensor, labels: torch.Tensor) -> float:
    info = dataset_info("mnist")
    settings = ScheduleSettings(CAPACITY, Allocation.UNIFORM, MaskGranularity.WEIGHT, PruningScope.LAYERWISE,
                                dataclasses.replace(DynamicConfig(), stop_fraction=1.0), 1, Engine.SPARSE, "cpu")
    model = create_model(ModelConfig("mlp", width, 1), info)
    chosen = create_schedule(schedule, settings)
    chosen.prepare(model, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    chosen.store(model)
    order = torch.Generator().manual_seed(2)

    def fit(models, epochs, on_step=None, on_epoch=None):
        config = TrainingConfig(max_epochs=epochs, stop_loss=0.0)
        return [train(model, images, labels, config, order, None, on_step) for model in models]

    started = time.perf_counter()
    chosen.train([model], fit, [torch.Generator().manual_seed(3)])
    return time.perf_counter() - started


def _machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=2**15)
    parser.add_argument("--examples", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    generator = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (arguments.examples, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (arguments.examples,), generator=generator)
    print(_machine(), f"{torch.get_num_threads()} thread(s)")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    for schedule in SCHEDULES:  # warm-up: first-use costs (CSR kernels, allocator) outside the timings
        _epoch_seconds(schedule, arguments.width, images[:1024], labels[:1024])
    best = {schedule: float("inf") for schedule in SCHEDULES}
    for _ in range(arguments.repeats):
        for schedule in SCHEDULES:
            best[schedule] = min(best[schedule], _epoch_seconds(schedule, arguments.width, images, labels))
    print(f"width {arguments.width}, {arguments.examples} examples, sparse engine; fastest of {arguments.repeats}:")
    for schedule in SCHEDULES:
        print(f"  {schedule.value:8} {best[schedule]:7.2f} s/epoch  {best[schedule] / best[Schedule.STATIC]:.2f}x static")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
