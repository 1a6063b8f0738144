"""What a trial's evaluation costs against one training epoch, for the width-2^15 MLP of paper-mlp-mnist.

    python benchmarks/evaluation.py --data-root ../shared/data     # real MNIST (about 2 minutes on 2 cores)
    python benchmarks/evaluation.py --threads 1 --steps 100

The model is masked to the base's 101,632 weights and stored for the `auto` engine, as in the preset.
Evaluation is what a study does per trial without attacks or corruptions: the clean pass over the 10,000
test images and the preset's weight noise (6 sigmas x 5 draws, each a full pass), timed once. The epoch is
469 SGD steps of batch 128, extrapolated from `--steps` timed steps after one warm-up step. Both run in
this one process, one after the other, so their ratio is measured under the same conditions.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from sparsecap.data import load_dataset
from sparsecap.models import ModelConfig, create_model
from sparsecap.robustness import evaluate, weight_noise_robustness
from sparsecap.robustness.evaluation import evaluation_batch_size
from sparsecap.runtime import reuse_freed_memory
from sparsecap.sparsity import Allocation, set_engine, sparse_model_at_init, weight_count
from sparsecap.sparsity.unread_units import trained_without_unread_units, without_unread_units
from sparsecap.studies import load_spec
from sparsecap.training import TrainingConfig, train

EPOCH_STEPS = 469


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--steps", type=int, default=100, help="timed training steps (default 100)")
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
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}; "
          f"evaluated without unread units: {narrowed}, batch {evaluation_batch_size(narrowed, torch.device('cpu'))}")

    started = time.perf_counter()
    clean = evaluate(model, mnist.test_images, mnist.test_labels, 10)
    weight_noise_robustness(model, mnist.test_images, mnist.test_labels, 10, noise.sigmas, noise.draws, noise.mean,
                            torch.Generator().manual_seed(0), clean)
    evaluation = time.perf_counter() - started

    batch = TrainingConfig().batch_size
    images, labels = mnist.train_images[: batch * (arguments.steps + 1)], mnist.train_labels[: batch * (arguments.steps + 1)]
    with trained_without_unread_units(model) as trained:  # as a study trains with the mask fixed
        train(trained, images[:batch], labels[:batch], TrainingConfig(max_epochs=1, stop_loss=0.0), torch.Generator())
        started = time.perf_counter()
        train(trained, images[batch:], labels[batch:], TrainingConfig(max_epochs=1, stop_loss=0.0), torch.Generator())
        epoch = (time.perf_counter() - started) / arguments.steps * EPOCH_STEPS
    print(f"evaluation (clean + {len(noise.sigmas)} sigmas x {noise.draws} draws over 10,000 images): {evaluation:.1f} s")
    print(f"one training epoch ({EPOCH_STEPS} steps, from {arguments.steps} timed): {epoch:.1f} s")
    print(f"evaluation / epoch: {evaluation / epoch:.2f} (target: at most 1)")


if __name__ == "__main__":
    main()
