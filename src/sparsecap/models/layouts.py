"""The layer plans of each VGG and ResNet depth: plain data, so the depths that exist are known without torch."""

from __future__ import annotations

POOL = "pool"
# Vanilla channel counts per depth, "pool" marking a max-pool; divided by 64 they are the width ratios.
VGG_LAYOUTS: dict[int, tuple[int | str, ...]] = {
    11: (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    13: (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    16: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
}
# Blocks per stage and whether blocks are bottlenecks, per depth.
RESNET_LAYOUTS: dict[int, tuple[tuple[int, int, int, int], bool]] = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
}
