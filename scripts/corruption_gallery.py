"""Draw the corruption picture grids committed under docs/ (every corruption at severities 1, 3, 5).

Run: python scripts/corruption_gallery.py [--mnist DIR] [--frost-dir DIR] [--out docs]
MNIST test digits come from DIR (IDX files); the CIFAR-C grid uses 32×32 colour pictures synthesised
from those digits and two hand-made scenes, since CIFAR is not available offline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sparsecap.corruptions import Suite, to_channels_last
from sparsecap.corruptions.gallery import colour_images, draw_grid, scene_images
from sparsecap.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", type=Path, default=None, help="data root holding MNIST (default: the usual search)")
    parser.add_argument("--frost-dir", type=Path, default=None, help="frost pictures (default: $SPARSECAP_FROST)")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    arguments = parser.parse_args()
    mnist = load_dataset("mnist", arguments.mnist)
    digits = to_channels_last(mnist.test_images[[0, 1, 2]])  # a 7, a 2 and a 1
    arguments.out.mkdir(parents=True, exist_ok=True)
    skipped = draw_grid(digits, Suite.MNIST_C, arguments.out / "corruptions-mnist-c.png",
                        frost_directory=arguments.frost_dir)
    colour = np.concatenate([
        colour_images(to_channels_last(mnist.test_images[[3]])[..., 0], np.random.default_rng(3)),
        scene_images(),
    ])
    skipped += draw_grid(colour, Suite.CIFAR_C, arguments.out / "corruptions-cifar-c.png",
                         frost_directory=arguments.frost_dir)
    skipped = list(dict.fromkeys(skipped))  # frost is skipped in both grids
    print(f"wrote {arguments.out}/corruptions-mnist-c.png and corruptions-cifar-c.png"
          + (f"; skipped (no frost pictures or pessimal-noise matrix): {', '.join(skipped)}" if skipped else ""))


if __name__ == "__main__":
    main()
