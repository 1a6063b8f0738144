"""Time of each adversarial attack on 1000 MNIST test examples, against the cost of training.

Models: the dense base MLP (width 128, 101,632 weights) and the width-2^13 MLP masked at
initialisation to the same 101,632 nonzeros (static schedule), both built with sparsecap's own
`create_model` / `sparse_model_at_init` and trained for one epoch (SGD, lr 0.01, momentum 0.9, batch
128) so the attacks run on meaningful models. Each attack is timed as a study runs it:
`adversarial_robustness` on the seeded sample of 1000 test examples at the default MNIST budgets
(0.05, 0.1, 0.2, 0.3) with the default 10 steps (only the clean-correct examples are attacked).

The reference points, measured in the same run: one training epoch of the base MLP on the 60,000
training images, and training the base once as the paper does (until an epoch's training loss is
below 0.01). The latter is estimated as ASSUMED_EPOCHS_TO_STOP × the epoch time unless
`--train-base-to-stop` measures the epochs.

Real MNIST is read from /work/shared/data (or --data-root); without it, random uint8 28×28 images
with random labels stand in (timings stay meaningful, accuracies do not).
Run: python benchmarks/attacks.py [--train-base-to-stop] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from sparsecap.data import ImageDataset, dataset_info, load_dataset
from sparsecap.errors import DatasetNotFoundError
from sparsecap.models import ModelConfig, create_model
from sparsecap.robustness import Attack, adversarial_robustness, evaluate
from sparsecap.robustness.adversarial import MNIST_LIKE_EPSILONS
from sparsecap.sparsity import Allocation, initialize_, masked_layers, sparse_model_at_init, weight_count
from sparsecap.training import TrainingConfig, train

DEFAULT_DATA_ROOT = Path("/work/shared/data")
EXAMPLES = 1000
PAPER_FOUR = (Attack.FGSM, Attack.BIM, Attack.PGD, Attack.APGD)
ASSUMED_EPOCHS_TO_STOP = 22
"""Epochs the base MLP needs to reach a training loss < 0.01 (paper's rule) at lr 0.01, momentum 0.9,
batch 128: an assumption (22 was measured once on MNIST on a 2-core machine); `--train-base-to-stop`
measures it instead."""


def _dataset(data_root: Path) -> tuple[ImageDataset, str]:
    try:
        return load_dataset("mnist", data_root), f"MNIST from {data_root}"
    except DatasetNotFoundError:
        generator = torch.Generator().manual_seed(0)
        info = dataset_info("mnist")

        def images(n: int) -> torch.Tensor:
            return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=generator)

        def labels(n: int) -> torch.Tensor:
            return torch.randint(0, 10, (n,), generator=generator)

        fake = ImageDataset(info, images(60_000), labels(60_000), images(10_000), labels(10_000), "random")
        return fake, "random uint8 images (MNIST not found: accuracies are meaningless)"


def _train_epochs(model: torch.nn.Module, dataset: ImageDataset, epochs: int, stop_loss: float = 0.0):
    config = TrainingConfig(max_epochs=epochs, learning_rate=0.01, momentum=0.9, batch_size=128, stop_loss=stop_loss)
    return train(model, dataset.train_images, dataset.train_labels, config, torch.Generator().manual_seed(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--train-base-to-stop", action="store_true",
                        help="measure the epochs the base needs to reach loss < 0.01 (at most 300)")
    arguments = parser.parse_args()

    dataset, source = _dataset(arguments.data_root)
    print(f"data: {source}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    base = create_model(ModelConfig("mlp", 128, 1), dataset.info)
    initialize_(base, torch.Generator().manual_seed(1))
    capacity = weight_count(base)
    wide = create_model(ModelConfig("mlp", 2**13, 1), dataset.info)
    sparse_model_at_init(wide, capacity, Allocation.UNIFORM, torch.Generator().manual_seed(2),
                         torch.Generator().manual_seed(3))
    nonzero = sum(int(layer.mask.sum()) for _, layer in masked_layers(wide))
    print(f"base MLP w128: {capacity:,} weights (dense); sparse MLP w8192: {nonzero:,} nonzeros of "
          f"{weight_count(wide):,} ({100 * nonzero / weight_count(wide):.2f} %)")

    epoch_seconds = {}
    for name, model in (("base w128", base), ("sparse w8192", wide)):
        result = _train_epochs(model, dataset, 1)
        epoch_seconds[name] = result.seconds
        print(f"train {name}: 1 epoch on {len(dataset.train_labels):,} images in {result.seconds:.2f} s "
              f"(loss {result.final_loss:.4f})")

    budgets = ", ".join(f"{epsilon:g}" for epsilon in MNIST_LIKE_EPSILONS)
    print(f"\nattacks: {EXAMPLES} test examples, budgets {budgets}, 10 steps (BIM, PGD, APGD)")
    attack_seconds: dict[str, dict[Attack, float]] = {}
    for name, model in (("base w128", base), ("sparse w8192", wide)):
        clean = evaluate(model, dataset.test_images, dataset.test_labels, 10).accuracy
        print(f"{name}: clean accuracy {clean:.4f} (all {len(dataset.test_labels):,} test images)")
        attack_seconds[name] = {}
        for attack in Attack:
            started = time.perf_counter()
            results = adversarial_robustness(model, dataset.test_images, dataset.test_labels, [attack],
                                             MNIST_LIKE_EPSILONS, examples=EXAMPLES)
            seconds = time.perf_counter() - started
            attack_seconds[name][attack] = seconds
            accuracies = "  ".join(f"ε={result.epsilon:g}: {result.robust_accuracy:.3f}" for result in results)
            print(f"  {attack.value:<6}{seconds:7.2f} s  robust accuracy  {accuracies}")

    base_epoch = epoch_seconds["base w128"]
    if arguments.train_base_to_stop:
        model = create_model(ModelConfig("mlp", 128, 1), dataset.info)
        initialize_(model, torch.Generator().manual_seed(1))
        result = _train_epochs(model, dataset, 300, stop_loss=0.01)
        epochs, base_training = result.epochs, result.seconds
        how = f"measured: {epochs} epochs to loss {result.final_loss:.4f} in {base_training:.1f} s"
    else:
        epochs, base_training = ASSUMED_EPOCHS_TO_STOP, ASSUMED_EPOCHS_TO_STOP * base_epoch
        how = f"estimated: assumed {epochs} epochs × {base_epoch:.2f} s"
    print(f"\nbase one epoch: {base_epoch:.2f} s; base trained once (loss < 0.01): {base_training:.1f} s ({how})")
    for name, seconds in attack_seconds.items():
        four = sum(seconds[attack] for attack in PAPER_FOUR)
        five = sum(seconds.values())
        print(f"{name}: FGSM+BIM+PGD+APGD {four:.2f} s = {four / base_epoch:.2f} × base epoch = "
              f"{four / base_training:.3f} × base training; with FFGSM {five:.2f} s = "
              f"{five / base_training:.3f} × base training")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
