"""What a trial's evaluation costs against one training epoch, for the width-2^15 MLP of paper-mlp-mnist.

    python benchmarks/evaluation.py --data-root ../shared/data     # real MNIST (under a minute on 2 cores)
    python benchmarks/evaluation.py --threads 1 --repeat 5

The model is masked to the base's 101,632 weights and stored for the `auto` engine, as in the preset.
Evaluation is what a study does per trial without attacks or corruptions: the clean pass over the 10,000
test images and the preset's weight noise (6 sigmas x 5 draws, each a full pass). The epoch is one pass of
SGD over the 60,000 training images (469 steps of batch 128), trained as a study trains with the mask
fixed (without the hidden units no layer reads). Both are timed `--repeat` times, alternating, in this one
process, and the fastest of each is compared: they take under a second each, where the machine's noise is
of their size.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from sparsecap.data import load_dataset
from sparsecap.devices import cpu_name
from sparsecap.models import ModelConfig, create_model
from sparsecap.robustness import evaluate, weight_noise_robustness
from sparsecap.robustness.evaluation import evaluation_batch_size
from sparsecap.runtime import reuse_freed_memory
from sparsecap.sparsity import Allocation, set_engine, sparse_model_at_init, weight_count
from sparsecap.sparsity.unread_units import trained_without_unread_units, without_unread_units
from sparsecap.studies import load_spec
from sparsecap.training import TrainingConfig, train



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=3, help="timings of each (default 3)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    reuse_freed_memory()  # as a trial's process does
    mnist = load_dataset("mnist", arguments.data_root)
    noise = load_spec("paper-mlp-mnist").weight_noise
    model = create_model(ModelConfig("mlp", 32768, 1), mnist.info)
    capacity = weight_count(create_model(ModelConfig("mlp", 128, 1), mnist.info))
    sparse_model_at_init(model, capacity, Allocation.UNIFORM, torch.Generator().manual_seed(0),
                         torch.Generator().manual_seed(1))
    model = set_engine(model, "auto")
    narrowed = without_unread_units(model).get_submodule("network")
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}; "
          f"evaluated without unread units: {narrowed}, batch {evaluation_batch_size(narrowed, torch.device('cpu'))}")

    def evaluation_seconds() -> float:
        started = time.perf_counter()
        clean = evaluate(model, mnist.test_images, mnist.test_labels, 10)
        weight_noise_robustness(model, mnist.test_images, mnist.test_labels, 10, noise.sigmas, noise.draws,
                                noise.mean, torch.Generator().manual_seed(0), clean)
        return time.perf_counter() - started

    def epoch_seconds() -> float:
        with trained_without_unread_units(model) as trained:  # as a study trains with the mask fixed
            started = time.perf_counter()
            train(trained, mnist.train_images, mnist.train_labels, TrainingConfig(max_epochs=1, stop_loss=0.0),
                  torch.Generator())
            return time.perf_counter() - started

    evaluations, epochs = [], []
    for _ in range(arguments.repeat):
        evaluations.append(evaluation_seconds())
        epochs.append(epoch_seconds())
    evaluation, epoch = min(evaluations), min(epochs)
    print("evaluation s: " + ", ".join(f"{seconds:.2f}" for seconds in evaluations))
    print("epoch s:      " + ", ".join(f"{seconds:.2f}" for seconds in epochs))
    print(f"fastest evaluation (clean + {len(noise.sigmas)} sigmas x {noise.draws} draws over 10,000 images): "
          f"{evaluation:.2f} s; fastest epoch (60,000 images): {epoch:.2f} s")
    print(f"evaluation / epoch: {evaluation / epoch:.2f} (target: at most 1); load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
