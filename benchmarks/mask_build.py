"""Time to draw the fixed-capacity masks of the width-2^15 MLP (101,632 nonzeros among 26.0M weights).

Prints the time of sparsecap's exact-count sampler for every allocation and, as the reference point
measured in the same run, drawing the same masks with a full random permutation per layer.
Run: python benchmarks/mask_build.py [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from sparsecap.data import dataset_info
from sparsecap.devices import cpu_name
from sparsecap.models import ModelConfig, create_model, width_family_base
from sparsecap.sparsity import Allocation, allocate, mask_to_capacity, masked_layers, weight_count

REPEATS = 3


def _best_of(function) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, a study worker's; pinned, so other load moves the times less)")
    torch.set_num_threads(parser.parse_args().threads)
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    info = dataset_info("mnist")
    capacity = weight_count(create_model(width_family_base("mlp"), info))
    model = create_model(ModelConfig("mlp", 2**15, 1), info)
    layers = [layer for _, layer in masked_layers(model)]
    print(f"width 2^15 MLP: {sum(layer.weight.numel() for layer in layers):,} weights, {capacity:,} kept")
    seconds: dict[Allocation, float] = {}
    for allocation in Allocation:
        generator = torch.Generator().manual_seed(0)
        seconds[allocation] = _best_of(lambda: mask_to_capacity(model, capacity, allocation, generator))
        print(f"  {allocation.value:<10} sparsecap masks: {seconds[allocation]:.3f} s")

    counts = allocate([tuple(layer.weight.shape) for layer in layers], capacity, Allocation.UNIFORM)
    generator = torch.Generator().manual_seed(0)

    def permutation_masks() -> None:
        for layer, count in zip(layers, counts):
            mask = torch.zeros(layer.weight.numel(), dtype=torch.bool)
            mask[torch.randperm(layer.weight.numel(), generator=generator)[:count]] = True

    baseline = _best_of(permutation_masks)
    ratio = baseline / seconds[Allocation.UNIFORM]
    print(f"  uniform via full randperm: {baseline:.3f} s  (sparsecap is {ratio:.1f}x faster)")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
