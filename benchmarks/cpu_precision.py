"""Training on a CPU at `[training] precision` bfloat16 against float32: the ratio `sparsecap run`'s warning cites.

Trains VGG11 at width 16 for one epoch of 1024 random MNIST-sized images (batch 128) through sparsecap's own
`train`, in float32 and in bfloat16, alternately for `--rounds` rounds on one thread; prints each time, the load
before and after, and the fastest bfloat16 time over the fastest float32 time. Whether this CPU has oneDNN's
bfloat16 kernels (`bfloat16_emulated`) is printed too: without them autocast emulates bfloat16.
Run: python benchmarks/cpu_precision.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from sparsecap.data import dataset_info
from sparsecap.devices import cpu_name
from sparsecap.models import ModelConfig, create_model
from sparsecap.training import Precision, TrainingConfig, train
from sparsecap.training.precision import bfloat16_emulated

IMAGES = 1024


def seconds_to_train(precision: Precision, images: torch.Tensor, labels: torch.Tensor) -> float:
    model = create_model(ModelConfig("vgg", 16, 11), dataset_info("mnist"))
    config = TrainingConfig(max_epochs=1, batch_size=128, stop_loss=0.0, precision=precision)
    started = time.perf_counter()
    train(model, images, labels, config, torch.Generator().manual_seed(1))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (IMAGES, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (IMAGES,), generator=generator)
    print(f"{cpu_name()}, torch {torch.__version__}, 1 thread; bfloat16 emulated here: {bfloat16_emulated('cpu')}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    times: dict[Precision, list[float]] = {Precision.FLOAT32: [], Precision.BFLOAT16: []}
    for _ in range(rounds):
        for precision, seconds in times.items():
            seconds.append(seconds_to_train(precision, images, labels))
            print(f"  {precision.value:>8}: {seconds[-1]:6.2f} s", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    fastest = {precision: min(seconds) for precision, seconds in times.items()}
    print(f"bfloat16 / float32 (fastest of {rounds}): {fastest[Precision.BFLOAT16] / fastest[Precision.FLOAT32]:.1f}x")


if __name__ == "__main__":
    main()
