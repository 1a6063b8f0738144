"""Generation time of corrupted data: the evaluation protocol's inputs, and (extrapolated) all of CIFAR-10-C.

1. The protocol's inputs for one dataset, as a study generates them (cached to disk): CIFAR-C, 1000
   images × 19 corruptions × severities 2 and 4 × 5 draws (one draw for the 8 deterministic corruptions,
   which give the same images every time); and MNIST-C, 1000 images × 16 published corruptions at their
   published severity × 5 draws.
2. A measured fraction of CIFAR-10-C (FRACTION_IMAGES images × 19 corruptions × 5 severities),
   extrapolated to the full 19 × 5 × 10,000.
CIFAR is not available offline: the 32×32×3 inputs are colour pictures synthesised from MNIST digits
(random pixels where MNIST is missing too). Frost needs pictures: --frost-dir DIR or $SPARSECAP_FROST.
Run: python benchmarks/corruptions.py [--data-root ROOT] [--frost-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sparsecap.corruptions import Suite, frost_directory, get_corruption, list_corruptions, to_channels_last
from sparsecap.corruptions.gallery import colour_images
from sparsecap.corruptions.protocol import ProtocolConfig, prepare_inputs
from sparsecap.data import load_dataset
from sparsecap.devices import cpu_name
from sparsecap.errors import SparsecapError

SAMPLE = 1000
FRACTION_IMAGES = 1000
FULL_IMAGES = 10_000


def _inputs(data_root: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        digits = to_channels_last(load_dataset("mnist", data_root).test_images[:SAMPLE])
        source = "MNIST test digits, colourised for CIFAR"
    except SparsecapError:
        digits = np.random.default_rng(0).integers(0, 256, (SAMPLE, 28, 28, 1), dtype=np.uint8)
        source = "random pixels (MNIST not found)"
    return digits, colour_images(digits[..., 0], np.random.default_rng(0)), source


def _protocol(name: str, images: np.ndarray, config: ProtocolConfig, frost: Path | None) -> float:
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        inputs = prepare_inputs(Path(cache), name, torch.from_numpy(images), config, frost_directory=frost)
        seconds = time.perf_counter() - started
    sets = sum(len(entry.images) for entry in inputs)
    skipped = f"; skipped: {', '.join(inputs.skipped)}" if inputs.skipped else ""
    print(f"  {name}: {len(inputs.entries)} (corruption, severity) entries, {sets} corrupted sets of "
          f"{config.sample_size} images: {seconds:.1f} s{skipped}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--frost-dir", type=Path, default=None)
    arguments = parser.parse_args()
    frost = frost_directory(arguments.frost_dir)
    digits, colour, source = _inputs(arguments.data_root)
    print(f"inputs: {source}; frost pictures: {frost or 'none (frost skipped)'}; "
          f"threads: {torch.get_num_threads()} torch / {os.cpu_count()} CPUs ({cpu_name()}); "
          f"load average {os.getloadavg()[0]:.2f} at start")

    print(f"1. evaluation inputs ({SAMPLE} images, 5 draws, cached to disk as a study does):")
    _protocol("cifar10", colour.transpose(0, 3, 1, 2), ProtocolConfig.default(Suite.CIFAR_C), frost)
    _protocol("mnist", digits.transpose(0, 3, 1, 2), ProtocolConfig.default(Suite.MNIST_C), frost)

    print(f"2. CIFAR-10-C: {FRACTION_IMAGES} images × 19 corruptions × 5 severities, per corruption:")
    images = colour[:FRACTION_IMAGES]
    total = 0.0
    for name in list_corruptions(Suite.CIFAR_C):
        corruption = get_corruption(name, Suite.CIFAR_C)
        started = time.perf_counter()
        try:
            for severity in range(1, 6):
                corruption(images, severity, np.random.default_rng(severity), frost_directory=frost)
        except SparsecapError as error:
            print(f"  {name:<18} skipped ({error})")
            continue
        seconds = time.perf_counter() - started
        total += seconds
        print(f"  {name:<18}{seconds:7.2f} s")
    factor = FULL_IMAGES / FRACTION_IMAGES
    print(f"  measured: {total:.1f} s for {FRACTION_IMAGES * 19 * 5:,} corrupted images; "
          f"extrapolated to 19 × 5 × {FULL_IMAGES:,} = {FULL_IMAGES * 19 * 5:,} images: "
          f"{total * factor:.0f} s ({total * factor / 60:.1f} min)")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
