"""K CNN seeds trained one by one (`train`) against together (`train_together`, one grouped network).

Each seed is VGG11 or ResNet18 masked to the width-4 base's weight count, with its own mask and
initialisation, trained for one epoch of `batches` batches of CIFAR-shaped random uint8 images; best
of `repeats`, as a ratio within one run. `seeds_epoch_seconds` is what a GPU benchmark reuses with
`device="cuda"`. On a CPU pin the threads (`--threads 1`) and state the load (`uptime`).
Run: python benchmarks/cnn_seeds.py [--width 8] [--seeds 5] [--batch 32] [--batches 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time

import torch

from sparsecap.data import dataset_info
from sparsecap.devices import cpu_name
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import Allocation, sparse_model_at_init, weight_count
from sparsecap.training import TrainingConfig, train
from sparsecap.training.multiseed import train_together

BASE_WIDTH = 4
ARCHITECTURES = (("vgg", 11), ("resnet", 18))


def _seed_models(architecture: str, depth: int, width: int, seeds: int, device: str) -> list[torch.nn.Module]:
    info = dataset_info("cifar10")
    capacity = weight_count(create_model(ModelConfig(architecture, BASE_WIDTH, depth), info))
    return [sparse_model_at_init(create_model(ModelConfig(architecture, width, depth), info), capacity,
                                 Allocation.UNIFORM, torch.Generator().manual_seed(seed),
                                 torch.Generator().manual_seed(100 + seed)).to(device)
            for seed in range(seeds)]


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def seeds_epoch_seconds(
    architecture: str, depth: int, width: int, seeds: int, batch: int, batches: int, device: str = "cpu",
    repeats: int = 3,
) -> tuple[float, float]:
    """Seconds of one epoch for `seeds` seeds: (one by one, together), each the best of `repeats`."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch * batches, 3, 32, 32), dtype=torch.uint8, generator=generator).to(device)
    labels = torch.randint(0, 10, (batch * batches,), generator=generator).to(device)
    models = _seed_models(architecture, depth, width, seeds, device)
    config = TrainingConfig(max_epochs=1, batch_size=batch, stop_loss=0.0, augmentation=True)
    alone, together = math.inf, math.inf
    for _ in range(repeats):
        copies = [copy.deepcopy(model) for model in models]
        started = time.perf_counter()
        for seed, model in enumerate(copies):
            train(model, images, labels, config, torch.Generator().manual_seed(seed))
        _synchronize(device)
        alone = min(alone, time.perf_counter() - started)
        copies = [copy.deepcopy(model) for model in models]
        started = time.perf_counter()
        train_together(copies, images, labels, config, [torch.Generator().manual_seed(seed) for seed in range(seeds)])
        _synchronize(device)
        together = min(together, time.perf_counter() - started)
    return alone, together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {arguments.device}; {arguments.seeds} "
          f"seeds, {arguments.batches} batches of {arguments.batch} CIFAR-shaped images (augmented), best of 3")
    print(f"{'model':<10}{'width':>6}{'one by one s':>14}{'together s':>12}{'speed-up':>10}")
    for architecture, depth in ARCHITECTURES:
        alone, together = seeds_epoch_seconds(architecture, depth, arguments.width, arguments.seeds, arguments.batch,
                                              arguments.batches, arguments.device)
        print(f"{architecture + str(depth):<10}{arguments.width:>6}{alone:>14.2f}{together:>12.2f}"
              f"{alone / together:>9.2f}×")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
