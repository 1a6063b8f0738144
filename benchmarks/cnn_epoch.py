"""Training time per epoch of VGG11 and ResNet18 on CIFAR-sized input, and the CNN families' sizes.

Each model is masked to its width family's base (width 16) as in a study: the dense-masked engine
does the dense arithmetic whatever the mask, so this is the cost of a static-sparse trial. Times a
few SGD steps at batch 128 after one warm-up step and extrapolates to 50,000 images.
Run: python benchmarks/cnn_epoch.py [--steps N]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as functional

from sparsecap.data import dataset_info
from sparsecap.describe import describe_model
from sparsecap.devices import cpu_name
from sparsecap.models import ModelConfig, create_model, default_base
from sparsecap.sparsity import Allocation, mask_to_capacity, weight_count

BATCH = 128
EPOCH_IMAGES = 50_000


def seconds_per_epoch(config: ModelConfig, steps: int) -> float:
    info = dataset_info("cifar10")
    model = create_model(config, info)
    capacity = weight_count(create_model(default_base(config), info))
    mask_to_capacity(model, capacity, Allocation.UNIFORM, torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, labels = torch.rand(BATCH, *info.input_shape), torch.randint(0, 10, (BATCH,))

    def step() -> None:
        optimizer.zero_grad()
        functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps * EPOCH_IMAGES / BATCH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    steps = parser.parse_args().steps
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f} at start; batch {BATCH}, epoch = {EPOCH_IMAGES:,} images")
    print(f"{'model':<10}{'width':>6}{'s/epoch':>10}{'min/epoch':>11}")
    for architecture, depth in (("vgg", 11), ("resnet", 18)):
        for width in (16, 32, 64):
            seconds = seconds_per_epoch(ModelConfig(architecture, width, depth), steps)
            print(f"{architecture + str(depth):<10}{width:>6}{seconds:>10.0f}{seconds / 60:>11.1f}")
    print(f"load average {os.getloadavg()[0]:.2f} after the timings")
    print("\nfamily sizes on CIFAR-10 (maskable weights; nonzero after masking to the default base):")
    print(f"{'model':<10}{'width':>6}{'dense weights':>15}{'nonzero':>12}{'dense MACs/image':>18}{'nonzero MACs':>14}")
    for architecture, depths in (("vgg", (11, 13, 16)), ("resnet", (18, 34, 50))):
        for depth in depths:
            for width in (16, 32, 64) if depth == depths[0] else (64,):
                config = ModelConfig(architecture, width, depth)
                description = describe_model(config, default_base(config), "cifar10", Allocation.UNIFORM, 0)
                summary, arithmetic = description.summary, description.arithmetic
                print(f"{architecture + str(depth):<10}{width:>6}{summary.total_weights:>15,}{summary.total_nonzero:>12,}"
                      f"{arithmetic.dense:>18,}{arithmetic.nonzero:>14,}")


if __name__ == "__main__":
    main()
