"""A legal spec that will not do what it seems to ask is warned of, each warning saying what to change."""

from sparsecap.studies import load_spec, parse_spec
from sparsecap.studies.spec_warnings import spec_warnings


def test_a_preset_as_shipped_has_nothing_to_warn_of():
    assert spec_warnings(load_spec("quick")) == []


def test_dynamic_settings_no_schedule_reads_are_named_with_the_schedules_that_would():
    (warning,) = spec_warnings(load_spec("quick", ["dynamic.imp_rounds=13"]))
    assert warning == ("[dynamic] has settings, but none of the schedules of 'quick' reads them; they configure imp, "
                       "posttrain-finetune, rigl, set: add one to schedules to use them")
    assert spec_warnings(load_spec("quick", ["dynamic.imp_rounds=13", "schedules=['static', 'imp']"])) == []


def test_each_problem_of_one_spec_is_its_own_warning():
    spec = load_spec("quick", ["base_width=64", "adversarial.steps=5", "dynamic.zeta=0.2"])
    assert [warning.split(" ")[0:2] for warning in spec_warnings(spec)] == [
        ["the", "mlp"], ["[adversarial]", "has"], ["[dynamic]", "has"]]


def test_a_grid_of_its_own_bases_is_pointed_to_the_family_base_or_half_its_width():
    """Above the family's base width (128 for the MLP) the hint is that base, the paper's; below it, half the width."""
    (wide,) = spec_warnings(load_spec("quick", ["widths=[512]"]))
    (narrow,) = spec_warnings(load_spec("quick", ["widths=[64]"]))
    assert wide.endswith("(e.g. --set base_width=128)") and narrow.endswith("(e.g. --set base_width=32)")


def test_the_base_width_hint_is_a_smaller_valid_base_that_ends_the_warning():
    """At the family's base width (128) the hint is half of it, not the grid's own width; at width 1 never 0."""
    for width, hint in ((128, 64), (129, 128), (1, 1)):
        (warning,) = spec_warnings(load_spec("quick", [f"widths=[{width}]"]))
        assert warning.endswith(f"(e.g. --set base_width={hint})")
        hinted = spec_warnings(load_spec("quick", [f"widths=[{width}]", f"base_width={hint}"]))  # a valid spec
        assert (warning in hinted) == (width == 1)  # nothing narrower than width 1 to point to


def test_a_depth_family_is_judged_by_its_depths_as_well_as_its_widths():
    """One width but several depths: the deeper models are masked. A base depth outside the depths is no model."""
    data = {"name": "deep", "architectures": ["mlp"], "datasets": ["digits"], "widths": [16], "depths": [1, 2]}
    assert spec_warnings(parse_spec(data, "t")) == []
    (warning,) = spec_warnings(parse_spec({**data, "depths": [2, 4], "base_depth": 1}, "t"))
    assert warning.startswith("the mlp base of 'deep' (width 16, depth 1) is no model of the grid")


def test_severities_mnist_c_ignores_are_warned_of_with_their_value():
    (warning,) = spec_warnings(load_spec("quick-corruptions", ["corruptions.severities=[3]"]))
    assert warning.startswith("[corruptions] severities = [3] changes nothing in 'quick-corruptions'")
