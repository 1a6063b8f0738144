import json
import re

import pytest

from sparsecap.errors import SpecError
from sparsecap.models import ModelConfig
from sparsecap.studies import Family, Schedule, expand, list_presets, load_spec, parse_spec, preset_text
from sparsecap.studies.spec import compared_settings, spec_differences
from sparsecap.training import LearningRateSchedule, Precision, TrainingConfig

MINIMAL = {"name": "tiny", "architectures": ["mlp"], "datasets": ["digits"], "widths": [16, 32]}


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_validates_and_expands(preset):
    spec = load_spec(preset)
    trials = expand(spec)
    depths = sum(len(spec.depths_for(architecture)) for architecture in spec.architectures)
    assert len(trials) == len(spec.widths) * depths * len(spec.datasets) * len(spec.schedules) * len(spec.seeds)
    assert len({trial.trial_id for trial in trials}) == len(trials)
    assert spec.ignored_tables() == []  # a shipped preset sets nothing it does not measure


def test_trials_are_expanded_with_seeds_innermost():
    """Seeds innermost: the first trials of a run already cover the grid's first point with every seed."""
    spec = parse_spec({**MINIMAL, "seeds": [0, 1]}, "test")
    assert [(trial.width, trial.seed) for trial in expand(spec)] == [(16, 0), (16, 1), (32, 0), (32, 1)]


def test_paper_presets_have_the_papers_settings():
    width = load_spec("paper-mlp-mnist")
    assert width.widths == [2**exponent for exponent in range(7, 16)]
    assert (width.training.learning_rate, width.training.momentum, width.training.max_epochs) == (0.01, 0.9, 300)
    assert width.training.stop_loss == 0.01
    depth = load_spec("paper-mlp-mnist-depth")
    assert depth.family is Family.DEPTH and depth.depths == [1, 2, 4, 8] and depth.widths == [512]
    assert depth.base_for("mlp") == ModelConfig("mlp", 512, 1)
    assert [s.value for s in load_spec("paper-mlp-mnist-posttrain").schedules] == ["posttrain"]


def test_base_defaults_to_the_smallest_model_and_fingerprint_tracks_content():
    spec = parse_spec(MINIMAL, "test")
    assert spec.base_for("mlp") == ModelConfig("mlp", 16, 1)
    assert spec.fingerprint() == parse_spec(dict(MINIMAL), "again").fingerprint()
    assert spec.fingerprint() != parse_spec({**MINIMAL, "seeds": [0]}, "other").fingerprint()


def test_the_default_base_is_the_smallest_width_whatever_order_the_widths_are_given_in():
    """A spec may list its widths largest first: the base (the capacity every model keeps) is still the smallest."""
    spec = parse_spec({**MINIMAL, "widths": [64, 16, 32]}, "test")
    assert spec.base_for("mlp") == ModelConfig("mlp", 16, 1)
    assert spec.resolved()["bases"] == {"mlp": {"width": 16, "depth": 1}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"widhts": [1]}, "widhts: unknown key"),
        ({"training": {"max_epoch": 3}}, "training.max_epoch: unknown key"),
        ({"training": {"max_epochs": "3"}}, "training.max_epochs"),
        ({"widths": 128}, "widths"),
        ({"datasets": ["imagenet"]}, "datasets.0"),
        ({"architectures": ["resnet9"]}, "unknown architecture"),
        ({"allocation": "random"}, "allocation"),
        ({"widths": [16, 32], "depths": [1, 2]}, "not both"),
        ({"base_width": 64}, "must not be larger"),
        ({"widths": [16], "depths": [1, 2], "base_depth": 2}, "must not be larger"),
        ({"seeds": [1, 2, 1]}, "seeds: values must not repeat; given more than once: 1 (got [1, 2, 1])"),
        ({"training": {"momentum": 1.5}}, "training.momentum"),
        ({"adversarial": {"attacks": ["cw"]}}, "'fgsm', 'ffgsm', 'bim', 'pgd' or 'apgd'"),
        ({"adversarial": {"epsilons": [1.5]}}, "adversarial.epsilons.0: Input should be less than or equal to 1"),
        ({"adversarial": {"epsilons": [-0.1]}}, "adversarial.epsilons.0: Input should be greater than or equal to 0"),
        ({"adversarial": {"steps": 0}}, "adversarial.steps: Input should be greater than 0"),
        ({"adversarial": {"examples": 0}}, "adversarial.examples"),
        ({"adversarial": {"attacks": ["pgd", "fgsm", "pgd"]}}, "must not repeat; given more than once: pgd (got"),
        ({"adversarial": {"budget": 0.1}}, "adversarial.budget: unknown key"),
        ({"weight_noise": {"sigmas": [0.1, 0.2, 0.2, 0.1]}}, "must not repeat; given more than once: 0.1, 0.2"),
        ({"seeds": [2**63]}, "seeds.0: Input should be less than or equal to 9223372036854775807"),
        ({"architectures": ["vgg"], "depths": [13], "base_depth": 12}, "vgg has no depth 12 (base_depth); valid: 11, 13, 16"),
        ({"widths": [16], "depths": [1, 1025]}, "mlp has no depth 1025: sparsecap builds 1 to 1024 hidden layers"),
        ({"depths": [10**9]}, "mlp has no depth 1000000000"),  # refused at once, not after building a billion layers
        ({"training": {"learning_rate": 1e300}}, "training.learning_rate: Input should be less than or equal to 34028"),
        ({"weight_noise": {"mean": -1e39}}, "weight_noise.mean: Input should be greater than or equal to -34028"),
        ({"weight_noise": {"sigmas": [0.0, 1e39]}}, "weight_noise.sigmas.1: Input should be less than or equal to"),
        ({"architectures": ["vgg"], "widths": [4], "depths": [11, 12]}, "vgg has no depth [12]; valid: 11, 13, 16"),
        ({"base_depth": 2000}, "mlp has no depth 2000: sparsecap builds 1 to 1024"),  # the base is built too
        ({"schedules": ["static", "rigl"], "mask_granularity": "kernel"}, "rigl move single weights"),
        # The widest model needs the most rounds to come down to the base's weights: it is the one named.
        ({"widths": [16, 4096], "schedules": ["static", "imp"], "dynamic": {"imp_rounds": 1}},
         "imp on mlp width 4096 depth 1: 1 imp rounds"),
    ],
)
def test_bad_specs_name_the_problem(change, message):
    with pytest.raises(SpecError) as error:
        parse_spec({**MINIMAL, **change}, "test.toml")
    assert message in str(error.value)


@pytest.mark.parametrize(("change", "message"), [
    ({"widhts": [1]}, "widhts: unknown key; did you mean widths? (valid top-level keys: name, architectures, "),
    ({"training": {"max_epoch": 3}}, "training.max_epoch: unknown key; did you mean training.max_epochs? (valid "
                                     "[training] keys: max_epochs, learning_rate, "),
    ({"adversarial": {"budget": 0.1}}, "adversarial.budget: unknown key (valid [adversarial] keys: enabled, attacks"),
    ({"momentum": 0.9}, "momentum: unknown key; did you mean training.momentum? (valid top-level keys: "),
    ({"training": {"seeds": [1]}}, "training.seeds: unknown key; did you mean seeds? (in TOML, every key below a "
                                   "[training] header belongs to that table) (valid [training] keys: max_epochs, "),
])
def test_an_unknown_key_is_told_the_nearest_valid_one_and_the_keys_of_its_table_only(change, message):
    with pytest.raises(SpecError) as error:
        parse_spec({**MINIMAL, **change}, "test.toml")
    text = str(error.value)
    assert message in text
    assert ("[resources]" in text) == ("training" not in change and "adversarial" not in change)  # top level: tables
    assert ("max_epochs" in text) == ("training" in change)  # and no table lists another's keys


def test_a_table_override_is_merged_into_the_specs_table():
    quick = load_spec("quick").training
    assert quick.seeds_together  # the preset's, not the default
    training = load_spec("quick", ["training={max_epochs=3, batch_size=32}"]).training
    assert training == quick.model_copy(update={"max_epochs": 3, "batch_size": 32})


def test_unknown_preset_lists_the_presets():
    with pytest.raises(SpecError, match="quick"):
        load_spec("quik")


def test_spec_file_and_overrides(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('name = "mine"\narchitectures = ["mlp"]\ndatasets = ["digits"]\nwidths = [8]\n')
    spec = load_spec(str(path), ["training.max_epochs=2", 'datasets=["fashion-mnist"]', "seeds=[3]"])
    assert spec.training.max_epochs == 2 and spec.seeds == [3] and spec.datasets[0].value == "fashion-mnist"
    with pytest.raises(SpecError, match="KEY=VALUE"):
        load_spec(str(path), ["training.max_epochs"])
    path.write_text("name = [")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(str(path))
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(str(tmp_path / "missing.toml"))


def test_adversarial_table_defaults_and_fingerprint():
    spec = parse_spec(MINIMAL, "test")
    assert not spec.adversarial.enabled and [attack.value for attack in spec.adversarial.attacks] == [
        "fgsm", "ffgsm", "bim", "pgd", "apgd"]
    assert (spec.adversarial.epsilons, spec.adversarial.steps, spec.adversarial.examples) == (None, 10, 1000)
    # Disabled attacks change no result, so they leave the fingerprint of studies made before them alone.
    assert "adversarial" not in spec.resolved()
    assert parse_spec({**MINIMAL, "adversarial": {"steps": 3}}, "t").fingerprint() == spec.fingerprint()
    enabled = parse_spec({**MINIMAL, "adversarial": {"enabled": True, "attacks": ["pgd"], "epsilons": [0.1]}}, "t")
    assert enabled.resolved()["adversarial"]["attacks"] == ["pgd"] and enabled.fingerprint() != spec.fingerprint()


@pytest.mark.parametrize("override", [
    "training.learning_rate=inf", "training.learning_rate=nan", "weight_noise.sigmas=[0.0, inf]",
    "weight_noise.mean=-inf", "training.stop_loss=inf", "adversarial.epsilons=[inf]", "resources.num_cpus=inf",
])
def test_infinities_are_refused_wherever_nan_is(tmp_path, override):
    with pytest.raises(SpecError, match=override.partition("=")[0].replace("[", "")):
        load_spec("quick", [override])


@pytest.mark.parametrize("preset", ["quick", "quick-adversarial", "quick-corruptions", "paper-vgg-width"])
def test_a_study_json_is_a_spec_of_the_same_study(tmp_path, preset):
    spec = load_spec(preset, ["seeds=[4]", "base_width=16"] if preset == "paper-vgg-width" else ["seeds=[4]"])
    recorded = {"spec": spec.resolved(), "fingerprint": spec.fingerprint(), "seeds": spec.seeds, "versions": {}}
    path = tmp_path / "study.json"
    path.write_text(json.dumps(recorded))
    assert load_spec(str(path)).fingerprint() == spec.fingerprint()
    assert load_spec(str(path), ["training.max_epochs=1"]).training.max_epochs == 1
    path.write_text("{")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_spec(str(path))
    path.write_text(json.dumps({**recorded, "spec": "x"}))  # not its keys taken for unknown settings
    with pytest.raises(SpecError, match=r"study.json whose \"spec\" is not a table of settings \(it holds str\): it "
                                        r"is damaged. Resume the study from the spec it was run with"):
        load_spec(str(path))


def test_a_spec_file_that_is_not_text_is_refused_by_name(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(SpecError, match=f"spec file {re.escape(str(binary))} is not UTF-8 text"):
        load_spec(str(binary))


def test_a_directory_given_as_the_spec_is_named_as_such(tmp_path):
    with pytest.raises(SpecError, match=f"spec path {tmp_path} is a directory.*study.json"):
        load_spec(str(tmp_path))


def test_corruption_severities_changed_where_no_dataset_is_measured_on_cifar_c_are_found():
    severities = "corruptions.severities=[3]"
    assert not load_spec("quick-corruptions").ignores_severities()  # MNIST at the default severities
    assert load_spec("quick-corruptions", [severities]).ignores_severities()
    assert not load_spec("quick-corruptions", [severities, "datasets=['mnist', 'cifar10']"]).ignores_severities()
    assert not load_spec("quick-corruptions", [severities, "corruptions.enabled=false"]).ignores_severities()


def test_models_that_are_all_their_own_base_are_found():
    assert load_spec("quick").unmasked_bases() == {}
    assert load_spec("quick", ["widths=[32768]"]).unmasked_bases() == {"mlp": ModelConfig("mlp", 32768, 1)}
    assert load_spec("quick", ["widths=[32768]", "base_width=128"]).unmasked_bases() == {}


def test_precision_and_compile_are_validated_and_change_the_fingerprint_only_when_set():
    spec = parse_spec(dict(MINIMAL), "t")
    assert spec.training.precision.value == "float32" and not spec.training.compile
    assert {"precision", "compile"}.isdisjoint(spec.resolved()["training"])  # older studies keep their fingerprint
    explicit = parse_spec({**MINIMAL, "training": {"precision": "float32", "compile": False}}, "t")
    assert explicit.fingerprint() == spec.fingerprint()
    fingerprints = {spec.fingerprint()}
    for training in ({"precision": "tf32"}, {"precision": "bfloat16"}, {"compile": True}):
        changed = parse_spec({**MINIMAL, "training": training}, "t")
        assert changed.resolved()["training"].items() >= training.items()
        fingerprints.add(changed.fingerprint())
        config = changed.training.config()
        assert (config.precision.value, config.compile) == (changed.training.precision.value, changed.training.compile)
    assert len(fingerprints) == 4
    with pytest.raises(SpecError, match=r"training.precision.*'float32', 'tf32' or 'bfloat16'.*got 'float16'"):
        parse_spec({**MINIMAL, "training": {"precision": "float16"}}, "t")
    with pytest.raises(SpecError, match=r"training.compile.*got 'yes'"):
        parse_spec({**MINIMAL, "training": {"compile": "yes"}}, "t")


def test_batch_norm_statistics_are_recomputed_by_default_and_in_the_fingerprint_only_where_they_are():
    cnn = {**MINIMAL, "architectures": ["vgg"], "widths": [4, 8]}
    recomputed = parse_spec(cnn, "t")
    assert recomputed.training.batch_norm_statistics.value == "recomputed"
    assert recomputed.resolved()["training"]["batch_norm_statistics"] == "recomputed"
    assert recomputed.recomputes_batch_norm("vgg") and not recomputed.recomputes_batch_norm("mlp")
    running = parse_spec({**cnn, "training": {"batch_norm_statistics": "running"}}, "t")
    # Running statistics are what every study computed before the key existed: such studies keep their fingerprint.
    assert "batch_norm_statistics" not in running.resolved()["training"]
    assert running.fingerprint() != recomputed.fingerprint()
    mlp = {parse_spec({**MINIMAL, "training": {"batch_norm_statistics": value}}, "t").fingerprint()
           for value in ("recomputed", "running")}  # no batch norm: nothing to recompute
    assert mlp == {parse_spec(MINIMAL, "t").fingerprint()}
    with pytest.raises(SpecError, match=r"training.batch_norm_statistics.*'recomputed' or 'running'.*got 'final'"):
        parse_spec({**cnn, "training": {"batch_norm_statistics": "final"}}, "t")


def test_a_study_json_from_before_recomputed_statistics_resumes_on_the_running_ones(tmp_path):
    spec = load_spec("paper-vgg-width", ["seeds=[4]", "base_width=16", "training.batch_norm_statistics=\"running\""])
    path = tmp_path / "study.json"
    path.write_text(json.dumps({"spec": spec.resolved(), "fingerprint": spec.fingerprint(), "versions": {}}))
    assert load_spec(str(path)).training.batch_norm_statistics.value == "running"
    assert load_spec(str(path)).fingerprint() == spec.fingerprint()


def test_widths_per_schedule_leave_points_out_of_one_schedule_only():
    both = {**MINIMAL, "widths": [16, 32, 64], "schedules": ["static", "posttrain"], "seeds": [0]}
    spec = parse_spec({**both, "schedule_widths": {"posttrain": [16, 32]}}, "test")
    points = {(trial.schedule.value, trial.width) for trial in expand(spec)}
    assert points == {("static", 16), ("static", 32), ("static", 64), ("posttrain", 16), ("posttrain", 32)}
    assert parse_spec(both, "test").fingerprint() != spec.fingerprint()
    assert "schedule_widths" not in parse_spec(both, "test").resolved()  # older studies keep their fingerprint
    assert parse_spec({**both, "schedule_widths": {}}, "test").fingerprint() == parse_spec(both, "test").fingerprint()


@pytest.mark.parametrize(
    ("schedule_widths", "message"),
    [
        ({"posttrain": [16, 128]}, "schedule_widths.posttrain has width(s) [128] outside widths [16, 32, 64]"),
        ({"posttrain": [32, 64]}, "schedule_widths.posttrain must hold the base width 16"),
        ({"static": [16], "imp": [16]}, "schedule_widths names imp, which is not in schedules"),
        ({"posttrain": [16, 16]}, "schedule_widths.posttrain: values must not repeat; given more than once: 16"),
        ({"posttrain": []}, "schedule_widths.posttrain: List should have at least 1 item"),
    ],
)
def test_bad_widths_per_schedule_are_refused(schedule_widths, message):
    spec = {**MINIMAL, "widths": [16, 32, 64], "schedules": ["static", "posttrain"], "schedule_widths": schedule_widths}
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(spec, "test.toml")


@pytest.mark.parametrize(("schedule", "setting"),
                         [("posttrain-finetune", "finetune_epochs=3"), ("imp", "imp_rounds=40"), ("rigl", "zeta=0.5")])
def test_dynamic_settings_change_the_fingerprint_of_every_schedule_they_configure(schedule, setting):
    """Fine-tuning epochs and imp's rounds change the trained models as set's and rigl's zeta does, so a study of
    any schedule in DYNAMIC_SCHEDULES must not resume with other [dynamic] settings."""
    data = {**MINIMAL, "schedules": ["static", schedule]}
    key, value = setting.split("=")
    changed = parse_spec({**data, "dynamic": {key: float(value) if "." in value else int(value)}}, "t")
    assert "dynamic" in parse_spec(data, "t").resolved()
    assert changed.fingerprint() != parse_spec(data, "t").fingerprint()


def test_batch_norm_statistics_are_in_the_fingerprint_of_a_study_with_any_batch_norm_architecture():
    """A study of an MLP and VGG trains VGG on running or recomputed statistics: the choice changes its numbers."""
    both = {**MINIMAL, "architectures": ["mlp", "vgg"], "widths": [4, 8]}
    recomputed = parse_spec(both, "t")
    running = parse_spec({**both, "training": {"batch_norm_statistics": "running"}}, "t")
    assert recomputed.resolved()["training"]["batch_norm_statistics"] == "recomputed"
    assert running.fingerprint() != recomputed.fingerprint()


def test_enabled_corruptions_and_their_settings_are_in_the_fingerprint():
    """Corruption accuracies are results: enabling them, or measuring other severities, is another study."""
    mnist = {**MINIMAL, "datasets": ["mnist"]}  # digits has no corruption suite; validation loads no data
    off = parse_spec(mnist, "t")
    on = parse_spec({**mnist, "corruptions": {"enabled": True}}, "t")
    fewer = parse_spec({**mnist, "corruptions": {"enabled": True, "draws": 2}}, "t")
    assert "corruptions" not in off.resolved() and on.resolved()["corruptions"]["draws"] == 5
    assert len({off.fingerprint(), on.fingerprint(), fewer.fingerprint()}) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"training": {"momentum": 1.0}}, "training.momentum: Input should be less than 1"),
        ({"training": {"learning_rate": 0.0}}, "training.learning_rate: Input should be greater than 0"),
        ({"weight_noise": {"sigmas": []}}, "weight_noise.sigmas: List should have at least 1 item"),
        ({"corruptions": {"severities": [6]}}, "corruptions.severities.0: Input should be less than or equal to 5"),
        ({"corruptions": {"seed": -1}}, "corruptions.seed: Input should be greater than or equal to 0"),
        ({"dynamic": {"rewind_epoch": -1}}, "dynamic.rewind_epoch: must be an integer from 0"),
        ({"training": {"max_epochs": 3}, "dynamic": {"rewind_epoch": 3}},
         "dynamic.rewind_epoch 3 is beyond training; valid: 0 to max_epochs - 1 = 2"),
        ({"dynamic": {"zeta": 1.0}}, "dynamic.zeta: must be in (0, 1), both ends excluded (got 1.0)"),
        ({"dynamic": {"update_interval": 0}}, "dynamic.update_interval: must be an integer >= 1 (got 0)"),
        ({"widths": [16, 32, 64], "base_width": 32}, "the mlp base (width 32, depth 1) must not be larger than the "
                                                     "grid's smallest model (width 16, depth 1)"),
    ],
)
def test_values_at_the_edge_of_their_range_are_refused(change: dict, message: str) -> None:
    """Each bound's own edge: momentum 1 never forgets, learning rate 0 never trains, no sigma measures no noise,
    CIFAR-C has severities 1-5 only, seeds are never negative, and a base larger than any model of the grid (not
    only the largest) leaves that model fewer weights than it must keep."""
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec({**MINIMAL, **change}, "test.toml")


@pytest.mark.parametrize("change", [
    {"training": {"stop_loss": 0.0}},  # never stop early: train to max_epochs
    {"training": {"momentum": 0.0}},  # plain SGD
    {"schedules": ["static", "rigl"], "dynamic": {"stop_fraction": 1.0}},  # README: in (0, 1]
    {"schedules": ["static", "imp"], "dynamic": {"rewind_epoch": 0}},  # the initialisation
    {"widths": [16, 32, 64], "base_width": 16},
    {"mask_granularity": "kernel"},  # only the moving-mask schedules need single weights
])
def test_values_at_the_valid_edge_of_their_range_are_accepted(change: dict) -> None:
    """The included end of each documented range is valid, not refused."""
    spec = parse_spec({**MINIMAL, **change}, "test.toml")
    assert spec.model_dump(exclude_unset=True).items() >= change.items()


def test_one_explicit_depth_with_several_widths_is_the_width_family() -> None:
    """`depths = [1]` names the base depth of a width family: only several depths make a depth family."""
    spec = parse_spec({**MINIMAL, "depths": [1]}, "t")
    assert spec.family is Family.WIDTH
    assert parse_spec({**MINIMAL, "widths": [16], "depths": [1, 2]}, "t").family is Family.DEPTH


def test_an_override_may_have_spaces_around_its_key_and_value() -> None:
    """A shell user may write `--set 'training.max_epochs = 3'` as in TOML."""
    assert load_spec("quick", [" training.max_epochs = 3 "]).training.max_epochs == 3


@pytest.mark.parametrize("name", [".", "..", "a b", "a/b", ""])
def test_a_name_that_is_no_study_directory_is_refused_saying_what_a_name_may_hold(name):
    """`..` would put the study's database and checkpoints beside runs/, `.` into runs/ itself."""
    with pytest.raises(SpecError, match=re.escape("name: must be letters, digits, '_', '.' and '-', with at least "
                                                  "one that is not a dot")):
        parse_spec({**MINIMAL, "name": name}, "test")
    assert parse_spec({**MINIMAL, "name": "v1.2_a-b"}, "test").name == "v1.2_a-b"


def test_a_rule_across_keys_is_said_without_the_whole_spec():
    with pytest.raises(SpecError) as error:
        parse_spec({**MINIMAL, "base_width": 64}, "test")
    assert str(error.value) == ("invalid study spec test:\n  the mlp base (width 64, depth 1) must not be larger than the "
                                "grid's smallest model (width 16, depth 1)")


def test_a_table_key_of_a_table_is_not_shown_as_a_table():
    """[corruptions] has a key `corruptions`: it is listed as a key, while the top level lists its tables as [name]."""
    with pytest.raises(SpecError) as error:
        parse_spec({**MINIMAL, "corruptions": {"severity": [3]}}, "test")
    assert "(valid [corruptions] keys: enabled, corruptions, severities, " in str(error.value)


@pytest.mark.parametrize(("override", "shown"), [
    ("widths=[128,256", "'[128,256'"), ("adversarial.epsilons=[1/255]", "'[1/255]'"), ("name=my study", "'my study'"),
])
def test_an_override_that_is_not_toml_is_refused_as_such_unless_it_is_a_bare_word(override, shown):
    with pytest.raises(SpecError, match=re.escape(f"override {override!r}: {shown} is not a TOML value (")):
        load_spec("quick", [override])
    assert load_spec("quick", ["training.precision=bfloat16"]).training.precision.value == "bfloat16"
    assert load_spec("quick", ["name=2nd-run"]).name == "2nd-run"


def test_integers_beyond_pythons_digit_limit_are_refused_not_a_traceback(tmp_path):
    huge = "1" + "0" * 5000
    with pytest.raises(SpecError, match="is not a TOML value"):
        load_spec("quick", [f"seeds=[{huge}]"])
    toml, json_file = tmp_path / "huge.toml", tmp_path / "huge.json"
    toml.write_text(f'name = "h"\narchitectures = ["mlp"]\ndatasets = ["digits"]\nwidths = [{huge}]\n')
    with pytest.raises(SpecError, match="is not valid TOML"):
        load_spec(str(toml))
    json_file.write_text(f'{{"name": "h", "widths": [{huge}]}}')
    with pytest.raises(SpecError, match="is not valid JSON"):
        load_spec(str(json_file))


def test_a_spec_file_saved_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes('\ufeffname = "bom"\narchitectures = ["mlp"]\ndatasets = ["digits"]\nwidths = [8]\n'.encode())
    assert load_spec(str(path)).name == "bom"


def test_a_recorded_batch_norm_setting_that_is_no_setting_is_refused_by_validation(tmp_path):
    path = tmp_path / "study.json"
    spec = {**MINIMAL, "training": {"batch_norm_statistics": "bogus"}}
    path.write_text(json.dumps({"fingerprint": "x", "spec": spec}))
    with pytest.raises(SpecError, match="training.batch_norm_statistics: Input should be 'recomputed' or 'running'"):
        load_spec(str(path))


def test_measures_given_settings_but_left_off_are_found():
    assert load_spec("quick", ["adversarial.attacks=['pgd']"]).ignored_tables() == ["adversarial"]
    assert load_spec("quick", ["corruptions.draws=2", "adversarial.enabled=false"]).ignored_tables() == ["corruptions"]
    assert load_spec("quick-adversarial").ignored_tables() == [] and load_spec("quick").ignored_tables() == []
    defaults = ["adversarial={enabled=false, steps=10}", "corruptions.severities=[2, 4]"]  # as README's block has
    assert load_spec("quick", defaults).ignored_tables() == []


def test_dynamic_settings_without_a_schedule_that_reads_them_are_found():
    assert load_spec("quick", ["dynamic.imp_rounds=13"]).ignores_dynamic()
    assert not load_spec("quick", ["dynamic.imp_rounds=13", "schedules=['static', 'imp']"]).ignores_dynamic()
    assert not load_spec("quick").ignores_dynamic()


def test_the_default_base_is_the_shallowest_depth_whatever_order_the_depths_are_given_in():
    spec = parse_spec({**MINIMAL, "widths": [16], "depths": [4, 2, 1]}, "test")
    assert spec.base_for("mlp") == ModelConfig("mlp", 16, 1)


def test_widths_per_schedule_need_not_hold_a_base_outside_the_grid():
    """Only a base that is a model of the grid is a point every schedule's curve must start at."""
    spec = parse_spec({**MINIMAL, "widths": [16, 32, 64], "base_width": 8, "schedules": ["static", "posttrain"],
                       "schedule_widths": {"posttrain": [16, 32]}}, "test")
    assert spec.widths_for(Schedule.POSTTRAIN) == [16, 32]


def test_imps_rounds_are_checked_at_the_widths_imp_is_trained_at():
    """A width left out of imp (which would need more rounds than set) does not make the spec invalid."""
    spec = parse_spec({**MINIMAL, "widths": [16, 4096], "schedules": ["static", "imp"], "dynamic": {"imp_rounds": 1},
                       "schedule_widths": {"imp": [16]}}, "test")
    assert {trial.width for trial in expand(spec) if trial.schedule is Schedule.IMP} == {16}


def test_the_fingerprint_of_a_spec_is_the_one_earlier_versions_recorded():
    """Study directories hold this fingerprint: a change to it (a key newly recorded, another serialisation) makes
    every existing study refuse to resume."""
    assert parse_spec(MINIMAL, "t").fingerprint() == "072f5a9f4ef428faa674c9a354f45e0e42075d47f24124bd2534a1f5c8f26b81"


def test_how_trials_run_is_in_the_fingerprint_only_where_set_and_resources_never():
    dense = parse_spec(MINIMAL, "t")
    assert "resources" not in dense.resolved()
    assert parse_spec({**MINIMAL, "resources": {"num_cpus": 4.0, "num_gpus": 1.0}}, "t").fingerprint() == \
        dense.fingerprint()
    for training in ({"engine": "sparse"}, {"seeds_together": True}):
        changed = parse_spec({**MINIMAL, "training": training}, "t")
        assert changed.resolved()["training"].items() >= training.items()
        assert changed.fingerprint() != dense.fingerprint()
        assert set(training).isdisjoint(dense.resolved()["training"])


def test_spec_differences_name_each_key_in_order_with_its_recorded_and_new_values():
    recorded = {"name": "a", "seeds": [0], "training": {"max_epochs": 3, "momentum": 0.9}, "zeta": 1}
    resolved = {"name": "a", "seeds": [1], "training": {"max_epochs": 5, "momentum": 0.9}, "allocation": "x"}
    recorded.update({f"k{index}": index for index in range(10)})
    assert spec_differences(recorded, resolved) == {
        "allocation": "allocation (recorded unset, now x)",
        **{f"k{index}": f"k{index} (recorded {index}, now unset)" for index in range(10)},
        "seeds": "seeds (recorded [0], now [1])",
        "training.max_epochs": "training.max_epochs (recorded 3, now 5)",
        "zeta": "zeta (recorded 1, now unset)",
    }
    assert list(spec_differences(recorded, resolved)) == sorted(spec_differences(recorded, resolved))


def test_compared_settings_are_what_decides_a_trials_numbers_with_defaults_filled_in():
    recorded = parse_spec({**MINIMAL, "training": {"learning_rate": 0.5, "engine": "sparse", "seeds_together": True,
                                                   "compile": True}, "resources": {"num_cpus": 2.0}}, "t").resolved()
    del recorded["training"]["stop_loss"]  # left out by an older version: its default is filled in
    settings = compared_settings(recorded)
    assert settings["training.learning_rate"] == 0.5 and settings["training.stop_loss"] == 0.01
    assert settings["weight_noise.draws"] == 5 and settings["allocation"] == "uniform"
    # The grid and how trials ran are not compared, nor tables a study does not record.
    assert not {key for key in settings if key.partition(".")[0] in {"name", "widths", "seeds", "bases", "resources",
                                                                    "adversarial", "corruptions", "dynamic"}}
    assert {"training.engine", "training.seeds_together", "training.compile",
            "training.batch_norm_statistics"}.isdisjoint(settings)
    vgg = parse_spec({**MINIMAL, "architectures": ["vgg"], "widths": [4, 8]}, "t").resolved()
    assert vgg["training"]["batch_norm_statistics"] == "recomputed"
    assert "training.batch_norm_statistics" not in compared_settings(vgg)
    attacked = parse_spec({**MINIMAL, "adversarial": {"enabled": True}}, "t").resolved()
    assert compared_settings(attacked)["adversarial.steps"] == 10


def test_max_epochs_is_compared_only_where_it_times_training():
    """Under a constant rate max_epochs only caps training; a cosine rate or a dynamic schedule is timed by it."""
    constant = parse_spec(MINIMAL, "t").resolved()
    assert "training.max_epochs" not in compared_settings(constant)
    cosine = parse_spec({**MINIMAL, "training": {"learning_rate_schedule": "cosine"}}, "t").resolved()
    assert compared_settings(cosine)["training.max_epochs"] == 300
    rigl = parse_spec({**MINIMAL, "schedules": ["static", "rigl"]}, "t").resolved()
    assert compared_settings(rigl)["training.max_epochs"] == 300


@pytest.mark.parametrize(("override", "message"), [
    ("=3", "override '=3' must look like KEY=VALUE"),
    ("name.first=3", "override 'name.first=3': 'name' is not a table"),
])
def test_an_override_that_names_no_setting_is_refused_as_such(override, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec("quick", [override])


def test_a_bare_word_override_may_have_spaces_around_it():
    assert load_spec("quick", ["training.precision = bfloat16 "]).training.precision.value == "bfloat16"


def test_a_toml_date_where_a_setting_belongs_is_refused_by_validation(tmp_path):
    path = tmp_path / "dated.toml"
    path.write_text('name = "d"\narchitectures = ["mlp"]\ndatasets = ["digits"]\nwidths = 2024-01-01\n')
    with pytest.raises(SpecError, match=re.escape("widths: Input should be a valid array (got '2024-01-01')")):
        load_spec(str(path))


def test_a_json_spec_that_is_no_object_or_has_no_training_table_is_refused_by_name(tmp_path):
    path = tmp_path / "study.json"
    path.write_text("[1]")
    with pytest.raises(SpecError, match="must hold a JSON object, not list"):
        load_spec(str(path))
    path.write_text(json.dumps({"fingerprint": "x", "spec": {**MINIMAL, "training": 3}}))
    with pytest.raises(SpecError, match=re.escape("training: Input should be an object (got 3)")):
        load_spec(str(path))


def test_presets_are_listed_in_order_and_an_unknown_one_is_refused_naming_them():
    assert list_presets() == sorted(list_presets()) and "quick" in list_presets()
    assert preset_text("quick").startswith("# ")
    with pytest.raises(SpecError, match="'quik' is not a preset; presets: cnn-smoke, "):
        preset_text("quik")


def test_a_preset_name_is_the_preset_even_where_a_file_of_that_name_exists(tmp_path, monkeypatch):
    (tmp_path / "quick").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_spec("quick").name == "quick"


def test_trials_follow_the_specs_order_and_carry_its_family():
    """Trials are listed in the spec's order of architectures, datasets and schedules (seeds innermost): a serial
    run's order, and the order a report names the trials still missing."""
    spec = parse_spec({**MINIMAL, "architectures": ["resnet", "mlp"], "datasets": ["mnist", "fashion-mnist"],
                       "widths": [4], "schedules": ["posttrain", "static"], "seeds": [0]}, "t")
    assert [(trial.architecture, trial.dataset.value, trial.schedule.value) for trial in expand(spec)] == [
        (architecture, dataset, schedule) for architecture in ("resnet", "mlp")
        for dataset in ("mnist", "fashion-mnist") for schedule in ("posttrain", "static")]
    depth = parse_spec({**MINIMAL, "widths": [16], "depths": [1, 2]}, "t")
    assert {trial.family for trial in expand(depth)} == {Family.DEPTH}


def test_the_training_config_carries_every_training_setting_of_the_spec():
    training = {"max_epochs": 7, "learning_rate": 0.5, "momentum": 0.5, "batch_size": 32, "stop_loss": 0.1,
                "learning_rate_schedule": "cosine", "augmentation": True, "precision": "bfloat16", "compile": True}
    config = parse_spec({**MINIMAL, "training": training}, "t").training.config()
    assert config == TrainingConfig(max_epochs=7, learning_rate=0.5, momentum=0.5, batch_size=32, stop_loss=0.1,
                                    schedule=LearningRateSchedule.COSINE, augmentation=True,
                                    precision=Precision.BFLOAT16, compile=True)
