"""`in_eval_mode`: eval mode for a while, each module's own mode given back, also after an error."""

import pytest
from torch import nn

from sparsecap.models.modes import in_eval_mode


def test_each_module_gets_its_own_mode_back_even_after_an_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model.train()
    model[1].eval()  # a frozen batch norm in a training model
    before = [module.training for module in model.modules()]
    with in_eval_mode(model) as inside:
        assert inside is model and not any(module.training for module in model.modules())
    assert [module.training for module in model.modules()] == before == [True, True, False, True]
    with pytest.raises(RuntimeError), in_eval_mode(model):
        raise RuntimeError("a failed forward pass")
    assert [module.training for module in model.modules()] == before
