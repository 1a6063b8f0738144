import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sparsecap.data import dataset_info, load_dataset
from sparsecap.devices import cpu_name
from sparsecap.errors import DatasetNotFoundError, StudyDirectoryError
from sparsecap.models import ModelConfig, create_model
from sparsecap.report.aggregate import load_study, summarise_points
from sparsecap.runtime import Runtime
from sparsecap.sparsity import masked_layers, measure_connectivity
from sparsecap.studies import StudyDatabase, fitting, load_spec, run_study
from sparsecap.studies.checkpoints import load_checkpoint
from sparsecap.studies.execute import evaluate_trial, prepare_model, seed_groups
from sparsecap.studies.generators import trial_generators
from sparsecap.studies.runner import _write_study_file
from sparsecap.studies.trials import expand
from sparsecap.training import TrainingResult
from tests.study_helpers import (
    SEEDS_TOGETHER_SPEC,
    TINY_SPEC,
    assert_same_up_to_rounding,
    comparable_results,
    finished_trial_count,
    write_spec,
)
from tests.test_report import _record



def test_study_records_every_trial_and_what_reproducing_it_takes(tmp_path):
    spec = load_spec(str(write_spec(tmp_path)))
    progress = run_study(spec, tmp_path / "out")
    assert (progress.total, progress.ran, progress.already_finished) == (8, 8, 0)
    database = StudyDatabase(tmp_path / "out")
    trials = database.rows("trials")
    assert len(trials) == 8
    assert {row["nonzero_weights"] for row in trials} == {64 * 16 + 16 * 10}
    assert {row["remaining_percent"] for row in trials} == {100.0, 50.0}
    assert len(database.rows("weight_noise")) == 8 * (1 + 2)  # sigma 0 once, sigma 0.5 twice
    assert len(database.rows("class_recall")) == 8 * 10
    metadata = database.metadata()
    assert metadata["spec"]["name"] == "tiny" and metadata["seeds"] == [0, 1]
    assert set(metadata["versions"]) >= {"sparsecap", "torch", "python"}
    study_json = json.loads((tmp_path / "out" / "study.json").read_text())
    assert study_json["devices"] == [{"device": "cpu", "device_name": cpu_name(), "torch_version": torch.__version__,
                                      "cuda_version": None, "trials": 8}]
    # Checkpoints hold weights and masks, and load back into a fresh model.
    row = next(row for row in trials if row["width"] == 32 and row["schedule"] == "static")
    model = load_checkpoint(create_model(ModelConfig("mlp", 32, 1), dataset_info("digits")),
                            tmp_path / "out" / row["checkpoint"])
    assert sum(int(layer.mask.sum()) for _, layer in masked_layers(model)) == row["nonzero_weights"]
    # Connectivity is that of the final mask, the checkpoint's, per hidden layer too; after pruning for posttrain.
    measured = measure_connectivity(model)
    assert (row["path_fraction_log10"], row["min_effective_width_fraction"], row["ineffective_units"]) == (
        measured.path_fraction_log10, measured.min_effective_width_fraction, measured.ineffective_units)
    layers = [layer for layer in database.rows("layer_connectivity") if layer["trial_id"] == row["trial_id"]]
    assert [(layer["layer"], layer["units"], layer["effective_units"]) for layer in layers] == [
        (layer.name, layer.units, layer.effective_units) for layer in measured.hidden_layers]
    kept_paths = {(row["width"], row["schedule"]): row["path_fraction_log10"] for row in trials}
    assert kept_paths[(16, "static")] == kept_paths[(16, "posttrain")] == 0.0  # the dense base
    assert kept_paths[(32, "static")] < 0 and kept_paths[(32, "posttrain")] < 0


def test_study_json_lists_the_devices_most_used_first(tmp_path):
    """A study resumed elsewhere lists every device: the one that ran most of its trials is read first."""
    database = StudyDatabase.create(tmp_path)
    for seed, device in ((0, "cpu"), (1, "cuda:0"), (2, "cuda:0")):
        database.record_trial(_record(schedule="static", width=128, seed=seed, device=device))
    _write_study_file(tmp_path, database)
    devices = json.loads((tmp_path / "study.json").read_text())["devices"]
    assert [(place["device"], place["trials"]) for place in devices] == [("cuda:0", 2), ("cpu", 1)]


def test_a_weight_noise_loss_that_overflows_is_recorded_and_reported_as_infinite(tmp_path):
    """A shift by 1e30 overflows every noisy model: its ΔL is the worst there is, not a missing seed."""
    overflowing = TINY_SPEC.replace('"static", "posttrain"', '"static"').replace("draws = 2", "draws = 2\nmean = 1e30")
    run_study(load_spec(str(write_spec(tmp_path, overflowing))), tmp_path / "out")
    rows = StudyDatabase(tmp_path / "out").rows("weight_noise")
    assert len(rows) == 4 * 3 and {(row["loss"], row["delta_loss"]) for row in rows} == {(math.inf, math.inf)}
    (points,) = summarise_points(load_study(tmp_path / "out")).values()
    assert [(point.noise_delta_loss[0.5].n, point.noise_delta_loss[0.5].format()) for point in points] == [(2, "∞")] * 2


def test_same_spec_and_seed_give_identical_metrics(tmp_path):
    spec = load_spec(str(write_spec(tmp_path)))
    run_study(spec, tmp_path / "first")
    run_study(spec, tmp_path / "second")
    assert comparable_results(tmp_path / "first") == comparable_results(tmp_path / "second")


def test_seeds_trained_together_give_the_one_by_one_results(tmp_path, monkeypatch):
    groups: list[int] = []
    original = fitting.train_together

    def counting(models, *arguments, **options):
        groups.append(len(models))
        return original(models, *arguments, **options)

    monkeypatch.setattr(fitting, "train_together", counting)
    together = load_spec(str(write_spec(tmp_path, SEEDS_TOGETHER_SPEC)))
    alone = load_spec(str(write_spec(tmp_path, name="alone.toml")))
    assert together.fingerprint() != alone.fingerprint()
    run_study(together, tmp_path / "together", runtime=Runtime(workers=1))  # counted in this process
    assert groups == [2, 2, 2, 2]  # (width, schedule) points, each with its 2 seeds
    run_study(alone, tmp_path / "alone")
    assert_same_up_to_rounding(comparable_results(tmp_path / "alone"), comparable_results(tmp_path / "together"))


CNN_SEEDS_SPEC = """
name = "cnn-seeds"
architectures = ["vgg"]
datasets = ["digits"]
widths = [4]
schedules = ["static"]
seeds = [0, 1]
train_examples = 64
test_examples = 32

[training]
max_epochs = 1
seeds_together = true

[weight_noise]
sigmas = [0.0]
draws = 1
"""


def test_seeds_of_models_that_cannot_be_stacked_train_one_by_one(tmp_path, monkeypatch):
    monkeypatch.setattr(fitting, "train_together", lambda *arguments, **options: pytest.fail("stacked a CNN"))
    assert seed_groups(load_spec(str(write_spec(tmp_path, SEEDS_TOGETHER_SPEC))), []) == []
    spec = load_spec(str(write_spec(tmp_path, CNN_SEEDS_SPEC)))
    progress = run_study(spec, tmp_path / "out")
    assert (progress.ran, progress.failed) == (2, ())


def test_rerun_skips_finished_and_diverged_trials_and_runs_failed_ones_again(tmp_path):
    spec = load_spec(str(write_spec(tmp_path)))
    run_study(spec, tmp_path / "out")
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as connection:
        rows = connection.execute("SELECT trial_id FROM trials ORDER BY trial_id LIMIT 2")
        diverged, failed = [row[0] for row in rows]
        connection.execute("UPDATE trials SET status = 'diverged' WHERE trial_id = ?", (diverged,))
        connection.execute("UPDATE trials SET status = 'failed' WHERE trial_id = ?", (failed,))
    connection.close()
    before = StudyDatabase(tmp_path / "out").rows("trials")
    progress = run_study(spec, tmp_path / "out")
    assert (progress.ran, progress.already_finished) == (1, 7)
    after = {row["trial_id"]: row for row in StudyDatabase(tmp_path / "out").rows("trials")}
    assert after[failed]["status"] == "finished"
    assert [row for row in before if row["trial_id"] != failed] == [
        after[row["trial_id"]] for row in before if row["trial_id"] != failed]  # the diverged one too, untouched
    assert run_study(spec, tmp_path / "out").ran == 0


def test_a_different_spec_is_refused_and_nothing_is_touched(tmp_path):
    run_study(load_spec(str(write_spec(tmp_path))), tmp_path / "out")
    database_bytes = (tmp_path / "out" / "results.sqlite").read_bytes()
    other = load_spec(str(write_spec(tmp_path, TINY_SPEC.replace("max_epochs = 2", "max_epochs = 3"), "other.toml")),
                      ["seeds=[5]"])  # seeds alone would be added; the other setting is what refuses it
    with pytest.raises(StudyDirectoryError, match=r"different study \('tiny'\), which differs in training.max_epochs "
                                                  r"\(recorded 2, now 3\); nothing was changed") as refusal:
        run_study(other, tmp_path / "out")
    assert str(refusal.value).endswith(f"or resume that study as it was made: sparsecap run "
                                       f"{tmp_path / 'out' / 'study.json'}, with no --set that changes it")
    assert (tmp_path / "out" / "results.sqlite").read_bytes() == database_bytes


def test_a_rerun_naming_other_seeds_adds_them_and_keeps_every_recorded_one(tmp_path, capsys):
    run_study(load_spec(str(write_spec(tmp_path))), tmp_path / "out")  # seeds 0 and 1: 8 trials
    before = StudyDatabase(tmp_path / "out").rows("trials")
    progress = run_study(load_spec(str(write_spec(tmp_path)), ["seeds=[1, 2]"]), tmp_path / "out")
    assert (progress.total, progress.ran, progress.already_finished) == (12, 4, 8)
    assert ("adding seed(s) 2 to the 2 it holds; keeping its seed(s) 0, which the spec leaves out; the study now "
            "has seeds 0, 1, 2") in capsys.readouterr().err
    database = StudyDatabase(tmp_path / "out")
    assert database.rows("trials")[:8] == before and {row["seed"] for row in database.rows("trials")} == {0, 1, 2}
    recorded = json.loads((tmp_path / "out" / "study.json").read_text())
    assert recorded["seeds"] == recorded["spec"]["seeds"] == database.metadata()["seeds"] == [0, 1, 2]
    resumed = run_study(load_spec(str(tmp_path / "out" / "study.json")), tmp_path / "out")
    assert (resumed.ran, resumed.already_finished) == (0, 12) and capsys.readouterr().err == ""
    assert load_study(tmp_path / "out").unfinished_trials == ()


def test_a_database_without_its_study_record_is_refused_without_sending_the_user_in_circles(tmp_path):
    spec = load_spec(str(write_spec(tmp_path)))
    run_study(spec, tmp_path / "out")
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as connection:
        connection.execute("DELETE FROM study")
    for rerun in (spec, load_spec(str(tmp_path / "out" / "study.json"))):
        with pytest.raises(StudyDirectoryError, match="holds trials but no record of their study .*new --out"):
            run_study(rerun, tmp_path / "out")


def test_missing_dataset_fails_before_anything_is_created(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPARSECAP_DATA", raising=False)
    spec = load_spec(str(write_spec(tmp_path, TINY_SPEC.replace('["digits"]', '["cifar10"]'))))
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "empty")):
        run_study(spec, tmp_path / "out", data_root=tmp_path / "empty")
    assert not (tmp_path / "out").exists()


SLOW_SPEC = TINY_SPEC.replace("max_epochs = 2", "max_epochs = 40").replace("widths = [16, 32]", "widths = [64, 128, 256]")


def _command(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "sparsecap.cli", "run", str(spec), "--out", str(out), "--no-report", "--no-progress"]


def _interruptible() -> None:
    """Ctrl-C's default action back for the run: a shell starting the suite in the background (`cmd &`) makes it
    ignore SIGINT, which its children inherit, and Python then installs no KeyboardInterrupt for it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(spec: Path, out: Path) -> subprocess.Popen:
    """The run in a process group of its own, which a test can interrupt whole, as a terminal's Ctrl-C does."""
    return subprocess.Popen(_command(spec, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible, start_new_session=True)


def _wait_for_trials(process: subprocess.Popen, database: Path, count: int) -> None:
    """Until `count` trials are in the database, however slow the machine (pytest-timeout bounds a hang)."""
    while finished_trial_count(database) < count:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing_or_duplicating(tmp_path):
    spec = write_spec(tmp_path, SLOW_SPEC)
    out = tmp_path / "out"
    database = out / "results.sqlite"
    process = _start(spec, out)
    _wait_for_trials(process, database, 2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    survivors = StudyDatabase(out).rows("trials")
    assert 2 <= len(survivors) < 12

    finished = subprocess.run(_command(spec, out), capture_output=True, text=True, check=True)
    ran = 12 - len(survivors)
    assert f"{ran} trial{'' if ran == 1 else 's'} run, {len(survivors)} already finished" in finished.stdout
    rows = StudyDatabase(out).rows("trials")
    assert len(rows) == 12 and len({row["trial_id"] for row in rows}) == 12
    assert rows[: len(survivors)] == survivors  # earlier trials untouched, not recomputed


@pytest.mark.slow
def test_a_second_run_into_a_busy_directory_is_refused(tmp_path):
    """The first run trains for as long as the test needs (it is killed at the end): however fast or slow the
    machine, it holds the directory while the second one starts."""
    spec = write_spec(tmp_path, TINY_SPEC.replace("max_epochs = 2", "max_epochs = 1000000\nstop_loss = 0.0"))
    process = _start(spec, tmp_path / "out")
    try:
        while not (tmp_path / "out" / "results.sqlite").exists():  # created under the directory's lock
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        second = subprocess.run(_command(spec, tmp_path / "out"), capture_output=True, text=True)
        assert second.returncode == 2
        assert "another sparsecap run is using" in second.stderr
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "code", "said"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_stops_cleanly_and_says_how_to_resume(tmp_path, stop, code, said):
    """Ctrl-C goes to the whole process group (every worker too), as a terminal sends it; SIGTERM to the run."""
    spec = write_spec(tmp_path, SLOW_SPEC)
    process = _start(spec, tmp_path / "out")
    _wait_for_trials(process, tmp_path / "out" / "results.sqlite", 1)
    if stop == signal.SIGINT:
        os.killpg(process.pid, stop)
    else:
        process.send_signal(stop)
    _, stderr = process.communicate()
    assert process.returncode == code
    assert f"{said}: finished trials are saved; rerun the same command to resume" in stderr
    assert "Traceback" not in stderr and "leaked semaphore" not in stderr
    recorded = finished_trial_count(tmp_path / "out" / "results.sqlite")
    assert recorded >= 1
    devices = json.loads((tmp_path / "out" / "study.json").read_text())["devices"]
    assert sum(place["trials"] for place in devices) == recorded  # rewritten as the run stopped
    unrun = load_study(tmp_path / "out").unfinished_trials
    assert len(unrun) == 12 - recorded


def test_each_trial_draws_its_mask_initialisation_data_order_and_noise_from_streams_of_its_own():
    """A mask drawn from the initialisation's stream would correlate the mask with the initial weights, and seeds
    sharing a stream would not be independent repeats: every stream of every seed starts differently, and a
    seed's streams are the same on every call (a resumed or retried trial draws what the first run drew)."""
    streams = ("initialization", "mask", "data_order", "weight_noise", "mask_updates")
    first = {(seed, name): torch.rand(4, generator=getattr(trial_generators(seed), name)) for seed in (0, 1, 2)
             for name in streams}
    assert len({tuple(draw.tolist()) for draw in first.values()}) == len(first) == 15
    again = trial_generators(1)
    assert all(torch.equal(torch.rand(4, generator=getattr(again, name)), first[(1, name)]) for name in streams)


def test_each_stream_of_a_seed_keeps_the_seed_it_was_first_given():
    """Pinned: a study resumed or extended by a later version must draw the masks, initial weights, data order and
    noise its first trials drew; streams that swapped roles would mix two studies in one database."""
    streams = ("initialization", "mask", "data_order", "weight_noise", "mask_updates")
    assert [getattr(trial_generators(0), name).initial_seed() for name in streams] == [
        3757552657, 673228719, 3241444873, 3685993406, 1216546553]


def test_seeds_are_grouped_only_with_the_trials_that_differ_from_them_in_seed_alone(tmp_path):
    """Trained together, a group shares one schedule and one shape: in a depth family the depths must not mix."""
    spec = load_spec(str(write_spec(tmp_path, SEEDS_TOGETHER_SPEC)),
                     ["widths=[16]", "depths=[1, 2]", 'schedules=["static", "posttrain"]', "seeds=[0, 1, 2]"])
    groups = seed_groups(spec, expand(spec))
    assert len(groups) == 4 and all(len(group) == 3 for group in groups)
    assert all(len({(trial.width, trial.depth, trial.schedule) for trial in group}) == 1 for group in groups)


def test_two_seeds_measure_weight_noise_with_draws_of_their_own(tmp_path):
    """The same weights evaluated as seed 0 and seed 1 get different noise: seeds sharing draws would not be
    independent repeats of the weight-noise measure (clean accuracy, which draws nothing, is the same)."""
    spec = load_spec(str(write_spec(tmp_path)), ["seeds=[0, 1]", "widths=[16]", 'schedules=["static"]'])
    first, second = expand(spec)
    dataset = load_dataset("digits")
    model, capacity = prepare_model(spec, first, dataset)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    records = []
    for trial in (first, second):
        model.load_state_dict(state)
        records.append(evaluate_trial(spec, trial, dataset, model, capacity, TrainingResult([1.0]), tmp_path, False))
    assert records[0].test_accuracy == records[1].test_accuracy
    noisy = [[row["loss"] for row in record.weight_noise if row["sigma"] > 0] for record in records]
    assert len(noisy[0]) == 2 and noisy[0] != noisy[1]


def test_an_infinite_epoch_loss_is_recorded_as_null_not_infinity(tmp_path):
    """An epoch whose loss overflowed (a diverging run's) is stored as NULL, as the trial's final loss is: SQLite
    would read a NaN back as NULL anyway, and no curve can plot an infinite loss."""
    spec = load_spec(str(write_spec(tmp_path)), ["seeds=[0]", "widths=[16]", 'schedules=["static"]'])
    (trial,) = expand(spec)
    dataset = load_dataset("digits")
    model, capacity = prepare_model(spec, trial, dataset)
    record = evaluate_trial(spec, trial, dataset, model, capacity, TrainingResult([0.5, math.inf, 0.25]), tmp_path,
                            False)
    database = StudyDatabase.create(tmp_path)
    database.record_trial(record)
    assert [(row["epoch"], row["train_loss"]) for row in database.rows("epochs")] == [(1, 0.5), (2, None), (3, 0.25)]
