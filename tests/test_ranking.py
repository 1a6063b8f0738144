"""Exact-count selection whose ties do not depend on the device's topk."""

import math

import pytest
import torch

from sparsecap.sparsity.ranking import top_mask


def test_equal_values_are_taken_in_index_order():
    values = torch.tensor([1.0, 2.0, 3.0, 2.0, 0.5, 2.0, 2.0])
    assert top_mask(values, 3).tolist() == [False, True, True, True, False, False, False]
    assert top_mask(values, 3, largest=False).tolist() == [True, True, False, False, True, False, False]
    tied = torch.full((4, 1000), 0.25)  # topk on a CPU takes the last 1500 here
    kept = top_mask(tied, 1500)
    assert kept.shape == (4, 1000) and int(kept.sum()) == 1500 and bool(kept.flatten()[:1500].all())


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("count", [0, 1, 37, 500, 999, 1000])
def test_the_count_is_exact_and_the_values_those_of_topk(largest, count):
    values = torch.randint(0, 20, (1000,), generator=torch.Generator().manual_seed(count)).float()  # many ties
    chosen = top_mask(values, count, largest=largest)
    assert int(chosen.sum()) == count
    expected = torch.topk(values, count, largest=largest).values
    assert sorted(values[chosen].tolist()) == sorted(expected.tolist())


def test_nan_ranks_above_every_number_as_in_topk():
    values = torch.tensor([1.0, math.nan, 3.0, -math.inf])
    assert top_mask(values, 2).tolist() == [False, True, True, False]
    assert top_mask(values, 2, largest=False).tolist() == [True, False, False, True]
