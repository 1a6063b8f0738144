"""How a fixed number of nonzero weights is shared among a model's layers.

Pure functions of the layers' weight shapes and the target count; each returns integer per-layer
counts that add up to the target exactly, never more than a layer holds.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence

from sparsecap.errors import AllocationError


class Allocation(str, enum.Enum):
    """The per-layer sharing rules a study can choose."""

    UNIFORM = "uniform"
    """Every layer gets the same density (the paper's "in proportion to the layer size")."""
    STAGGERED = "staggered"
    """Golubeva et al. 2021: cut the largest layers first, down to the next layer's size, then evenly."""
    ERK = "erk"
    """Erdős–Rényi(-Kernel) as in RigL: density proportional to (sum of dimensions) / (product)."""


def parse_allocation(name: str) -> Allocation:
    try:
        return Allocation(name)
    except ValueError:
        valid = ", ".join(allocation.value for allocation in Allocation)
        raise AllocationError(f"unknown allocation {name!r}; valid allocations: {valid}") from None


def _sizes(shapes: Sequence[Sequence[int]]) -> list[int]:
    return [math.prod(shape) for shape in shapes]


def _check_target(sizes: Sequence[int], target: int) -> None:
    total = sum(sizes)
    if target < 0:
        raise AllocationError(f"the nonzero target must be >= 0, got {target}")
    if target > total:
        raise AllocationError(
            f"cannot keep {target} nonzero weights in a model that has only {total} weights: the model "
            "must be at least as large as the base it is masked to (a width or depth below the base?)"
        )


def _round_to_total(exact: Sequence[float], sizes: Sequence[int], target: int) -> list[int]:
    """Largest-remainder rounding: floors, then one more to the largest fractions until the total is met."""
    counts = [min(size, math.floor(value)) for value, size in zip(exact, sizes, strict=True)]
    missing = target - sum(counts)
    by_fraction = sorted(
        (index for index, size in enumerate(sizes) if counts[index] < size),
        key=lambda index: (exact[index] - counts[index], sizes[index]),
        reverse=True,
    )
    for index in by_fraction[:missing]:
        counts[index] += 1
    return counts


def _uniform(sizes: Sequence[int], target: int) -> list[int]:
    density = target / sum(sizes)
    return _round_to_total([density * size for size in sizes], sizes, target)


def _staggered(sizes: Sequence[int], target: int) -> list[int]:
    """Water-filling from the top: every layer keeps min(size, level) with the level that meets the target."""
    remaining_target, remaining_layers = target, len(sizes)
    for size in sorted(sizes):
        if size * remaining_layers >= remaining_target:
            break
        remaining_target -= size
        remaining_layers -= 1
    level = remaining_target / remaining_layers
    return _round_to_total([min(size, level) for size in sizes], sizes, target)


def _erk(shapes: Sequence[Sequence[int]], sizes: Sequence[int], target: int) -> list[int]:
    """Scale the Erdős–Rényi densities to the target; layers that would exceed density 1 stay dense."""
    raw = [sum(shape) / size for shape, size in zip(shapes, sizes, strict=True)]
    dense: set[int] = set()
    while True:
        sparse_budget = target - sum(sizes[index] for index in dense)
        weight = sum(raw[index] * sizes[index] for index in range(len(sizes)) if index not in dense)
        scale = sparse_budget / weight if weight else 0.0
        overfull = {index for index in range(len(sizes)) if index not in dense and scale * raw[index] > 1}
        if not overfull:
            break
        dense |= overfull
    exact = [float(size) if index in dense else scale * raw[index] * size for index, size in enumerate(sizes)]
    return _round_to_total(exact, sizes, target)


def check_capacity(shapes: Sequence[Sequence[int]], target: int) -> None:
    """Raise AllocationError unless weight tensors of `shapes` can hold `target` nonzeros."""
    _check_target(_sizes(shapes), target)


def allocate(shapes: Sequence[Sequence[int]], target: int, allocation: Allocation) -> list[int]:
    """Per-layer nonzero counts for weight tensors of `shapes` that sum to `target` exactly."""
    sizes = _sizes(shapes)
    _check_target(sizes, target)
    if allocation is Allocation.UNIFORM:
        return _uniform(sizes, target)
    if allocation is Allocation.STAGGERED:
        return _staggered(sizes, target)
    return _erk(shapes, sizes, target)


def whole_kernel_counts(counts: Sequence[int], shapes: Sequence[Sequence[int]], target: int) -> list[int]:
    """Per-layer numbers of whole kernels (the (out, in) slices of a weight) close to `counts`.

    Layers are rounded down to whole kernels, then kernels are added, most-rounded-down layer first,
    while they fit under the target: the total never exceeds the target and falls short of it by less
    than one kernel of a layer that still has room (a linear layer's "kernel" is one weight).
    """
    kernel_sizes = [math.prod(shape[2:]) for shape in shapes]
    available = [math.prod(shape[:2]) for shape in shapes]
    exact = [count / size for count, size in zip(counts, kernel_sizes, strict=True)]
    kernels = [min(limit, math.floor(value)) for value, limit in zip(exact, available, strict=True)]
    shortfall = target - sum(number * size for number, size in zip(kernels, kernel_sizes, strict=True))
    order = sorted(range(len(shapes)), key=lambda index: exact[index] - kernels[index], reverse=True)
    added = True
    while added:
        added = False
        for index in order:
            if kernels[index] < available[index] and kernel_sizes[index] <= shortfall:
                kernels[index] += 1
                shortfall -= kernel_sizes[index]
                added = True
    return kernels
