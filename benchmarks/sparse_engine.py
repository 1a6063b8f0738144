"""Time per training step and peak memory of the fixed-capacity MLP, dense-masked vs sparse engine.

    python benchmarks/sparse_engine.py                 # widths 2^7..2^15, batch 128 (a few minutes on 2 cores)
    python benchmarks/sparse_engine.py --epoch         # also: one MNIST epoch of the whole width sweep
    python benchmarks/sparse_engine.py --widths 128 32768 --steps 5 --seeds 0

Every configuration runs in a fresh subprocess, so its peak memory is its own. Memory: the peak
resident set size during the timed training steps (Linux VmHWM, reset with /proc/self/clear_refs
once the model is built, so the one-off temporaries of drawing the mask and initialising do not
count), minus the resident size right before the model was built (torch imported, data allocated, and
one training step of a tiny model taken, so the code PyTorch loads on first use is not counted):
what the model and its training steps keep live at their peak (weights, mask, gradients, momentum,
activations, temporaries). Large tensors are mmapped and returned to the OS when freed, so this is an
honest high-water mark. Where clear_refs is unavailable it falls back to ru_maxrss (init included).
Time: the fastest of the timed steps, after 2 warm-up steps (on a shared machine, other processes'
bursts inflate the mean and even the median of 2-thread runs; the minimum is what the code costs).
A step is what the trainer does: forward, cross-entropy, zero_grad, backward, SGD(momentum 0.9) step.
Each MLP holds 101,632 nonzero weights (the dense width-2^7 base), uniform allocation.
Floor: what no engine can go below, measured in the `auto` run's process: the step's nonzero multiply-adds
(forward, weight gradient, and the input gradient of every layer but the first) at the rate of a
cache-resident dense matrix product, plus one write and one read of the layer outputs (a fresh tensor
filled, then summed). The table gives `auto`'s step as a multiple of it, and the step a study trains
while the mask is fixed: `auto` without the hidden units no layer reads (`sparsecap.sparsity.unread_units`,
the same run bit for bit), against the same floor of the whole network.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from sparsecap.training.multiseed import STACKED_ACTIVATIONS_LIMIT

CAPACITY = 101_632
WIDTHS = [2**exponent for exponent in range(7, 16)]


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    current = _status_mb("VmRSS")
    return current if current is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    """Restart the peak-RSS count here (Linux: `echo 5 > /proc/self/clear_refs`); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _set_threads(torch: Any) -> None:
    if os.environ.get("SPARSECAP_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["SPARSECAP_BENCH_THREADS"]))


def fastest_ms(action: Callable[[], object], repeats: int = 20) -> float:
    fastest = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        fastest = min(fastest, time.perf_counter() - started)
    return 1000 * fastest


def _floor_ms(torch: Any, layers: list[Any], batch: int) -> float:
    """The step's nonzero arithmetic at this core's dense-product rate plus one write and one read of its
    layer outputs (see the module docstring)."""
    kept = [layer.kept_count for layer in layers]
    multiply_adds = batch * (2 * sum(kept) + sum(kept[1:]))
    left, right = torch.rand(batch, 784), torch.rand(784, 128)
    per_ms = batch * 784 * 128 / fastest_ms(lambda: left @ right)
    outputs = batch * sum(layer.weight_shape[0] for layer in layers)
    written = torch.ones(outputs)
    return multiply_adds / per_ms + fastest_ms(lambda: torch.empty(outputs).fill_(1.0)) + fastest_ms(written.sum)


def _measure(width: int, engine: str, steps: int, batch: int, real_data: bool) -> dict[str, float]:
    """Runs inside the subprocess."""
    import torch
    import torch.nn.functional as functional

    _set_threads(torch)

    from sparsecap.data import DatasetName, dataset_info
    from sparsecap.models import ModelConfig, create_model
    from sparsecap.sparsity import Allocation, sparse_model_at_init
    from sparsecap.runtime import reuse_freed_memory
    from sparsecap.sparsity import SparseLinear, masked_layers, set_engine
    from sparsecap.sparsity.unread_units import without_unread_units

    generator = torch.Generator().manual_seed(0)
    if real_data:
        from pathlib import Path

        from sparsecap.data import load_dataset

        dataset = load_dataset("mnist", Path(os.environ.get("SPARSECAP_DATA", "/work/shared/data")))
        images, labels = dataset.train_images, dataset.train_labels
    else:
        images = torch.randint(0, 256, (60_000, 1, 28, 28), dtype=torch.uint8, generator=generator)
        labels = torch.randint(0, 10, (60_000,), generator=generator)
    order = torch.randperm(len(labels), generator=generator).split(batch)

    def build(model_width: int) -> tuple[Any, Any]:
        model = create_model(ModelConfig("mlp", model_width, 1), dataset_info(DatasetName.MNIST))
        sparse_model_at_init(model, min(CAPACITY, 784 * model_width + model_width * 10), Allocation.UNIFORM,
                             torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
        model = set_engine(model, "auto" if engine == "study" else engine)
        if engine == "study":  # what a study trains while the mask is fixed: the units some layer reads
            model = without_unread_units(model)
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)  # what the trainer uses

    def step(model: Any, optimizer: Any, index: int) -> None:
        batch_index = order[index % len(order)]
        loss = functional.cross_entropy(model(images[batch_index].float().div_(255.0)), labels[batch_index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # One step of a tiny model first: PyTorch imports parts of itself on first use (the optimiser alone
    # adds ~70 MB of code), which is not what the model costs.
    step(*build(4), 0)
    baseline = _rss_mb()

    model, optimizer = build(width)
    model.train()
    # Peak from here on: the model's resident tensors plus everything the steps allocate, without the
    # one-off temporaries of drawing the mask and initialising (they would dominate the sparse peak).
    _reset_peak()
    built = _rss_mb() - baseline
    # As a trial's process does, but only now: the heap then keeps what the steps free for the next step,
    # and not the build's temporaries, which would count in the peak.
    reuse_freed_memory()

    warmup = 2
    for index in range(warmup):
        step(model, optimizer, index)
    times = []
    for index in range(warmup, warmup + steps):
        started = time.perf_counter()
        step(model, optimizer, index)
        times.append(time.perf_counter() - started)
    seconds = min(times)  # best step: what the machine does when no other process interrupts it
    layers = [layer for _, layer in masked_layers(model)]
    return {"step_ms": 1000 * seconds, "median_ms": 1000 * sorted(times)[len(times) // 2], "total_ms": 1000 * sum(times),
            "peak_mb": _peak_mb() - baseline, "built_mb": built, "floor_ms": _floor_ms(torch, layers, batch),
            "sparse_layers": sum(isinstance(layer, SparseLinear) for layer in layers), "layers": len(layers)}


def _measure_seeds(width: int, seeds: int, batches: int, batch: int) -> dict[str, float]:
    """Runs inside the subprocess: one epoch of `batches` batches for `seeds` MLPs of `width` (fixed
    capacity, engine auto), together and in turn."""
    import copy

    import torch

    _set_threads(torch)

    from sparsecap.data import DatasetName, dataset_info
    from sparsecap.models import ModelConfig, create_model
    from sparsecap.sparsity import Allocation, set_engine, sparse_model_at_init
    from sparsecap.training import TrainingConfig, train
    from sparsecap.training.multiseed import train_together

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batches * batch, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (batches * batch,), generator=generator)
    models = []
    for seed in range(seeds):
        model = create_model(ModelConfig("mlp", width, 1), dataset_info(DatasetName.MNIST))
        sparse_model_at_init(model, min(CAPACITY, 784 * width + width * 10), Allocation.UNIFORM,
                             torch.Generator().manual_seed(seed), torch.Generator().manual_seed(100 + seed))
        models.append(set_engine(model, "auto"))
    config = TrainingConfig(max_epochs=1, batch_size=batch, stop_loss=0.0)
    best = {"sequential": math.inf, "together": math.inf}
    for _ in range(3):
        copies = [copy.deepcopy(model) for model in models]
        started = time.perf_counter()
        for seed, model in enumerate(copies):
            train(model, images, labels, config, torch.Generator().manual_seed(seed))
        best["sequential"] = min(best["sequential"], time.perf_counter() - started)
        copies = [copy.deepcopy(model) for model in models]
        started = time.perf_counter()
        train_together(copies, images, labels, config, [torch.Generator().manual_seed(seed) for seed in range(seeds)])
        best["together"] = min(best["together"], time.perf_counter() - started)
    # The floor no stacking can go below: one seed-step's two large matrix products (forward, weight
    # gradient), which K seeds must each do whatever the program around them.
    inputs, weight, bias = torch.rand(batch, 784), torch.rand(128, 784), torch.rand(128)
    gradient = torch.rand(batch, 128)
    best["products_ms"] = fastest_ms(lambda: (torch.addmm(bias, inputs, weight.t()), gradient.t().mm(inputs)), 200)
    best["step_ms"] = 1000 * best["sequential"] / (seeds * batches)
    return best


def _run(width: int, engine: str, steps: int, batch: int, real_data: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", json.dumps([width, engine, steps, batch, real_data])]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _steps_for(width: int, requested: int | None) -> int:
    if requested is not None:
        return requested
    return 30 if width <= 2048 else 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=WIDTHS)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 30, 10 above 2^11)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epoch", action="store_true",
                        help="also time one MNIST epoch (60,000 images) of the whole sweep, extrapolated from "
                             "--epoch-steps real-data steps per width (469 or more: measured, not extrapolated)")
    parser.add_argument("--epoch-steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5, help="K for K MLP seeds together vs in turn (0: skip)")
    parser.add_argument("--seed-widths", type=int, nargs="+", default=[128, 1024, 2048, 8192],
                        help="widths of the K-seed comparison (the first, 2^7, is the base MLP)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--seeds-child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(_measure(*json.loads(arguments.child))))
        return
    if arguments.seeds_child:
        print(json.dumps(_measure_seeds(*json.loads(arguments.seeds_child))))
        return

    import torch

    if arguments.threads:
        os.environ["SPARSECAP_BENCH_THREADS"] = str(arguments.threads)
        torch.set_num_threads(arguments.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print(f"MLP 784-W-10, {CAPACITY:,} nonzero weights, batch {arguments.batch}, SGD momentum 0.9")
    header = (f"{'width':>6} {'density':>8} | {'dense ms':>9} {'sparse ms':>9} {'auto ms':>8} {'speed-up':>8} | "
              f"{'dense MB':>9} {'sparse MB':>9} {'ratio':>6} | {'floor ms':>8} {'auto/floor':>10} | "
              f"{'study ms':>8} {'study/floor':>11} | auto")
    print(header)
    print("-" * len(header))
    for width in arguments.widths:
        steps = _steps_for(width, arguments.steps)
        dense = _run(width, "dense", steps, arguments.batch, False)
        sparse = _run(width, "sparse", steps, arguments.batch, False)
        auto = _run(width, "auto", steps, arguments.batch, False)
        study = _run(width, "study", steps, arguments.batch, False)
        density = CAPACITY / (784 * width + width * 10)
        print(f"{width:>6} {min(density, 1.0):>8.4f} | {dense['step_ms']:>9.2f} {sparse['step_ms']:>9.2f} "
              f"{auto['step_ms']:>8.2f} {dense['step_ms'] / sparse['step_ms']:>7.1f}x | "
              f"{dense['peak_mb']:>9.1f} {sparse['peak_mb']:>9.1f} {sparse['peak_mb'] / max(dense['peak_mb'], 1e-9):>6.2f} | "
              f"{auto['floor_ms']:>8.2f} {auto['step_ms'] / auto['floor_ms']:>9.1f}x | "
              f"{study['step_ms']:>8.2f} {study['step_ms'] / auto['floor_ms']:>10.2f}x | "
              f"{auto['sparse_layers']}/{auto['layers']} sparse")
    if arguments.seeds:
        batches = 60
        print(f"\n{arguments.seeds} seeds of the MLP (engine auto), one epoch of {batches} batches of "
              f"{arguments.batch}, best of 3: one after another vs together (train_together); the study runner "
              f"stacks seeds while a step's stacked layer outputs stay under "
              f"{STACKED_ACTIVATIONS_LIMIT / 2**20:g} MiB")
        for width in arguments.seed_widths:
            seeds = json.loads(subprocess.run(
                [sys.executable, __file__, "--seeds-child", json.dumps([width, arguments.seeds, batches, arguments.batch])],
                check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            stacked_mb = arguments.seeds * arguments.batch * (width + 10) * 4 / 2**20
            print(f"  width {width:>5}: one after another {seeds['sequential']:.2f} s, together {seeds['together']:.2f} s, "
                  f"throughput x{seeds['sequential'] / seeds['together']:.2f} (stacked outputs {stacked_mb:.1f} MiB)")
            if width == WIDTHS[0]:
                print(f"    floor: the two large matrix products take {seeds['products_ms']:.2f} ms of a seed's "
                      f"{seeds['step_ms']:.2f} ms step in turn; together, a seed-step took "
                      f"{1000 * seeds['together'] / (arguments.seeds * batches):.2f} ms")
    if arguments.epoch:
        steps_per_epoch = -(-60_000 // arguments.batch)
        measured = arguments.epoch_steps >= steps_per_epoch
        how = ("the sum of its timed real-MNIST steps per width" if measured else
               f"the median of {arguments.epoch_steps} timed real-MNIST steps per width")
        print(f"\nOne MNIST epoch (60,000 images, {steps_per_epoch} steps) of the width sweep "
              f"{arguments.widths[0]}..{arguments.widths[-1]}, {'measured as' if measured else 'extrapolated from'} {how}:")
        totals = {"dense": 0.0, "auto": 0.0}
        for width in arguments.widths:
            for engine in totals:
                timing = _run(width, engine, min(arguments.epoch_steps, steps_per_epoch), arguments.batch, True)
                totals[engine] += (timing["total_ms"] if measured else timing["median_ms"] * steps_per_epoch) / 1000
        print(f"  dense-masked {totals['dense']:.1f} s, auto {totals['auto']:.1f} s, "
              f"speed-up {totals['dense'] / totals['auto']:.1f}x")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
