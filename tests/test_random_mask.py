import pytest
import torch

from sparsecap.sparsity import random_mask
from sparsecap.sparsity.mask_sampling import random_positions


@pytest.mark.parametrize("count", [0, 1, 17, 500, 999, 1000])
def test_exact_count(count):
    mask = random_mask((20, 50), count, torch.Generator().manual_seed(0))
    assert mask.shape == (20, 50)
    assert mask.dtype == torch.bool
    assert int(mask.sum()) == count


def test_same_seed_same_mask_and_other_seed_other_mask():
    first = random_mask((100, 100), 700, torch.Generator().manual_seed(3))
    again = random_mask((100, 100), 700, torch.Generator().manual_seed(3))
    other = random_mask((100, 100), 700, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_positions_are_uniform():
    hits = torch.zeros(50)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2000):
        hits += random_mask((50,), 10, generator).float()
    # Each position is kept with probability 1/5: 400 expected hits, standard deviation ~18.
    assert hits.min() > 300 and hits.max() < 500


def test_count_outside_range_is_refused():
    with pytest.raises(ValueError):
        random_mask((3, 3), 10, torch.Generator())


@pytest.mark.parametrize("count", [3, 8])  # below and above half the population: different draws
def test_random_positions_are_distinct_in_range_and_reach_every_position(count: int) -> None:
    """set regrows at `random_positions` among the masked positions: each of them must be reachable, the last one
    too, with probability count / population (1000 draws: 300 or 800 expected hits, sd ≤ 15; bound ±5 sd)."""
    generator = torch.Generator().manual_seed(0)
    hits = torch.zeros(10)
    for _ in range(1000):
        positions = random_positions(10, count, generator)
        assert positions.numel() == count and positions.unique().numel() == count
        assert 0 <= int(positions.min()) and int(positions.max()) < 10
        hits[positions] += 1
    assert hits.min() > count * 100 - 75 and hits.max() < count * 100 + 75


@pytest.mark.parametrize("count", [3, 8])  # below and above half the population: different draws
def test_random_positions_come_from_the_given_generator_alone(count: int) -> None:
    """set's regrowth is reproducible from the trial's seed, whatever torch's global generator has drawn."""
    torch.manual_seed(1)
    first = random_positions(1000, count * 100, torch.Generator().manual_seed(5))
    torch.manual_seed(2)
    assert torch.equal(random_positions(1000, count * 100, torch.Generator().manual_seed(5)), first)
