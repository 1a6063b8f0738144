"""The schedules' names and [dynamic] settings: IMP's rounds, and what a spec refuses before anything runs."""

import subprocess
import sys

import pytest

from sparsecap.errors import SpecError
from sparsecap.sparsity.schedule_config import imp_round_targets
from sparsecap.studies import load_spec

QUICK_FINGERPRINT = "3f266cc936b9"
"""The quick preset's fingerprint before the [dynamic] table existed (with its 2 seeds and 30 epochs of then)."""
QUICK_THEN = ["seeds=[0, 1]", "training.max_epochs=30"]


def test_imp_rounds_prune_the_fraction_of_what_remains_and_end_at_the_base():
    assert imp_round_targets(1000, 100, 0.2, 30) == [800, 640, 512, 409, 327, 261, 208, 166, 132, 105, 100]
    assert imp_round_targets(100, 100, 0.2, 1) == []  # the base itself: dense training, nothing pruned
    with pytest.raises(ValueError, match=r"imp_rounds >= 11 or imp_prune_fraction >= 0.37"):
        imp_round_targets(1000, 100, 0.2, 5)


def _refusal(*overrides: str) -> str:
    with pytest.raises(SpecError) as error:
        load_spec("quick", list(overrides))
    return str(error.value)


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1"])
def test_zeta_outside_the_open_unit_interval_is_refused(value):
    assert "dynamic.zeta: must be in (0, 1)" in _refusal('schedules=["set"]', f"dynamic.zeta={value}")


def test_bad_dynamic_values_are_refused_naming_the_valid_range():
    assert "dynamic.update_interval: must be an integer >= 1" in _refusal("dynamic.update_interval=0")
    assert "dynamic.stop_fraction: must be in (0, 1]" in _refusal("dynamic.stop_fraction=1.5")
    assert "dynamic.imp_prune_fraction: must be in (0, 1)" in _refusal("dynamic.imp_prune_fraction=1")
    assert "valid: 0 to max_epochs - 1 = 29" in _refusal('schedules=["imp"]', "training.max_epochs=30", "dynamic.rewind_epoch=30")
    assert "unknown key" in _refusal("dynamic.rewind=3")
    unknown = _refusal('schedules=["sgd"]')
    assert "schedules.0" in unknown and "'set', 'rigl' or 'imp'" in unknown


def test_imp_rounds_that_cannot_reach_the_base_are_refused_for_the_largest_model():
    message = _refusal('schedules=["imp"]', "dynamic.imp_rounds=3")
    assert "imp on mlp width 2048 depth 1: 3 imp rounds" in message
    assert "valid: imp_rounds >= 13 or imp_prune_fraction >= 0.604" in message
    load_spec("quick", ['schedules=["imp"]', "dynamic.imp_rounds=13"])  # enough


def test_moving_masks_refuse_whole_kernel_masks():
    message = _refusal('schedules=["static", "rigl"]', 'mask_granularity="kernel"')
    assert "rigl move single weights: mask_granularity must be 'weight'" in message


def test_dynamic_table_enters_the_fingerprint_only_with_its_schedules():
    spec = load_spec("quick", QUICK_THEN)
    assert "dynamic" not in spec.resolved() and spec.fingerprint().startswith(QUICK_FINGERPRINT)
    assert load_spec("quick", [*QUICK_THEN, "dynamic.zeta=0.5"]).fingerprint() == spec.fingerprint()
    with_set = load_spec("quick", ['schedules=["static", "set"]'])
    assert with_set.resolved()["dynamic"]["zeta"] == 0.3
    assert load_spec("quick", ['schedules=["static", "set"]', "dynamic.zeta=0.5"]).fingerprint() != with_set.fingerprint()


def test_dynamic_specs_are_checked_without_torch_unless_imp_needs_model_sizes():
    code = ("import sys; from sparsecap.studies import load_spec; "
            "load_spec('quick', ['schedules=[\"set\", \"rigl\", \"posttrain-finetune\"]']); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
