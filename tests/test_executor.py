"""What holds for every executor (tested with the local one): a trial that raises is recorded as failed
with its error, does not block the others, and a rerun retries it; checkpoints go to the storage path;
per-study resources do not change what a study is."""

import sqlite3

import torch

import sparsecap.studies.execute as execute
import sparsecap.studies.fitting as fitting
from sparsecap.cli import main
from sparsecap.report.aggregate import load_study, summarise_points
from sparsecap.runtime import Runtime
from sparsecap.studies import StudyDatabase, load_spec, run_study
from sparsecap.studies.database import SCHEMA, TrialRecord
from sparsecap.studies.executor_choice import Executor
from sparsecap.studies.runner import waiting_threads
from tests.study_helpers import SEEDS_TOGETHER_SPEC, TINY_SPEC, write_spec

BROKEN = "mlp-digits-w32-d1-static-s1"
IN_PROCESS = Runtime(workers=1)
"""Trials in this process, where the injected faults are (a worker process would not see them)."""


def _break_one_trial(monkeypatch, step: str = "run_trial", error: Exception | None = None):
    """Make `execute.<step>` (called with spec and trial first) raise `error` for the BROKEN trial only."""
    original = getattr(execute, step)

    def broken(spec, trial, *arguments):
        if trial.trial_id == BROKEN:
            raise error or RuntimeError(f"injected failure in {step}")
        return original(spec, trial, *arguments)

    monkeypatch.setattr(execute, step, broken)


def test_a_raising_trial_is_recorded_as_failed_and_retried_on_rerun(tmp_path, monkeypatch):
    spec = load_spec(str(write_spec(tmp_path)))
    _break_one_trial(monkeypatch)
    progress = run_study(spec, tmp_path / "out", runtime=IN_PROCESS)
    assert (progress.ran, progress.failed) == (8, (BROKEN,))
    rows = {row["trial_id"]: row for row in StudyDatabase(tmp_path / "out").rows("trials")}
    assert len(rows) == 8
    failed = rows[BROKEN]
    assert failed["status"] == "failed" and "RuntimeError: injected failure in run_trial" in failed["error"]
    assert failed["test_accuracy"] is None and failed["checkpoint"] == ""
    assert failed["remaining_percent"] == rows["mlp-digits-w32-d1-static-s0"]["remaining_percent"]
    assert all(row["status"] == "finished" and row["error"] is None for key, row in rows.items() if key != BROKEN)
    # The report leaves the failed trial out of the statistics.
    points = summarise_points(load_study(tmp_path / "out"))
    point = next(point for group, points_ in points.items() if group.schedule == "static"
                 for point in points_ if point.width == 32)
    assert point.seeds == (0,)

    monkeypatch.undo()
    finished_before = [row for row in StudyDatabase(tmp_path / "out").rows("trials") if row["trial_id"] != BROKEN]
    progress = run_study(spec, tmp_path / "out", runtime=IN_PROCESS)
    assert (progress.ran, progress.already_finished, progress.failed) == (1, 7, ())
    after = StudyDatabase(tmp_path / "out").rows("trials")
    assert after[:7] == finished_before  # finished trials kept as they were
    assert after[7]["trial_id"] == BROKEN and after[7]["status"] == "finished" and after[7]["error"] is None


def test_seeds_trained_together_fail_one_by_one(tmp_path, monkeypatch, capsys):
    spec = load_spec(str(write_spec(tmp_path, SEEDS_TOGETHER_SPEC)))
    _break_one_trial(monkeypatch, "evaluate_trial")
    progress = run_study(spec, tmp_path / "out", runtime=IN_PROCESS)
    assert progress.failed == (BROKEN,)  # its seed partner, trained in the same program, is kept
    rows = {row["trial_id"]: row for row in StudyDatabase(tmp_path / "out").rows("trials")}
    assert "injected failure in evaluate_trial" in rows[BROKEN]["error"]
    assert rows["mlp-digits-w32-d1-static-s0"]["status"] == "finished"

    monkeypatch.setattr(fitting, "train_together", lambda *arguments, **options: 1 / 0)
    progress = run_study(spec, tmp_path / "second", runtime=IN_PROCESS)  # stacking fails: seeds one by one
    assert (progress.ran, progress.failed) == (8, (BROKEN,))
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_the_cli_names_failed_trials_exits_non_zero_and_reports_the_rest(tmp_path, monkeypatch, capsys):
    _break_one_trial(monkeypatch)
    spec = write_spec(tmp_path)
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), "--no-progress", "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "8 trials run, 1 failed, 0 already finished" in captured.out
    assert f"{BROKEN}: RuntimeError: injected failure" in captured.err and "a rerun retries them" in captured.err
    # The others are still reported and judged, once (one reading of the results for the page and the claims),
    # saying the failed trial is missing from them.
    assert f"report: {tmp_path / 'out' / 'report' / 'index.html'}" in captured.out
    assert "too few seeds: no sparse point has 2 finished seeds" in captured.out
    assert captured.err.count(f"tiny is incomplete: 1 of its 8 planned trial(s) have no result (1 failed; e.g. "
                              f"{BROKEN}), so its figures and verdicts rest on the 7 that have one; to finish it, rerun "
                              f"`sparsecap run {tmp_path / 'out' / 'study.json'}`, which retries the failed (their "
                              "errors are in the database's trials.error)") == 1
    assert f"<li>{BROKEN}</li>" in (tmp_path / "out" / "report" / "index.html").read_text()


def test_a_trial_out_of_memory_is_recorded_failed_with_a_smaller_batch_suggested(tmp_path, monkeypatch, capsys):
    _break_one_trial(monkeypatch, error=torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    spec = write_spec(tmp_path)  # batch_size = 64
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), "--no-report", "--no-progress", "--workers", "1"]) == 1
    advice = ("out of memory on cpu at [training] batch_size = 64: try a smaller batch, e.g. --set "
              "training.batch_size=32 (a changed spec is a new study: give it its own --out)")
    assert f"{BROKEN}: {advice}" in capsys.readouterr().err
    rows = {row["trial_id"]: row for row in StudyDatabase(out).rows("trials")}
    assert rows[BROKEN]["status"] == "failed" and rows[BROKEN]["error"].endswith(advice)
    assert "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" in rows[BROKEN]["error"]
    assert [row["status"] for key, row in rows.items() if key != BROKEN] == ["finished"] * 7  # the others went on


def test_a_database_from_before_failed_trials_gains_the_later_columns_when_opened_for_writing(tmp_path):
    later = (",\n    error TEXT,\n    threads INTEGER,\n    checkpoint_sha256 TEXT,\n    device TEXT,\n    device_name TEXT,"
             "\n    torch_version TEXT,\n    cuda_version TEXT")
    assert later in SCHEMA
    with sqlite3.connect(tmp_path / "results.sqlite") as connection:
        connection.executescript(SCHEMA.replace(later, ""))

    def columns() -> set[str]:
        with sqlite3.connect(tmp_path / "results.sqlite") as connection:
            return {row[1] for row in connection.execute("PRAGMA table_info(trials)")}

    StudyDatabase(tmp_path)  # read-only: a report changes nothing
    added = {"error", "threads", "checkpoint_sha256", "device", "device_name", "torch_version", "cuda_version"}
    assert not added & columns()
    StudyDatabase(tmp_path, read_only=False)
    assert added <= columns()


def test_a_database_from_before_connectivity_gains_its_columns_and_table_when_opened_for_writing(tmp_path):
    later = ",\n    path_fraction_log10 REAL,\n    min_effective_width_fraction REAL,\n    ineffective_units INTEGER"
    start, end = SCHEMA.index("CREATE TABLE IF NOT EXISTS layer_connectivity"), SCHEMA.index("CREATE TABLE IF NOT EXISTS corruption")
    table = SCHEMA[start:end]
    assert later in SCHEMA and table
    with sqlite3.connect(tmp_path / "results.sqlite") as connection:
        connection.executescript(SCHEMA.replace(later, "").replace(table, ""))

    def columns_and_tables() -> tuple[set[str], set[str]]:
        with sqlite3.connect(tmp_path / "results.sqlite") as connection:
            return ({row[1] for row in connection.execute("PRAGMA table_info(trials)")},
                    {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")})

    added = {"path_fraction_log10", "min_effective_width_fraction", "ineffective_units"}
    StudyDatabase(tmp_path)  # read-only: a report changes nothing
    columns, tables = columns_and_tables()
    assert not added & columns and "layer_connectivity" not in tables
    assert StudyDatabase(tmp_path, read_only=False).rows("layer_connectivity") == []
    columns, tables = columns_and_tables()
    assert added <= columns and "layer_connectivity" in tables


def test_a_database_with_every_trials_column_but_no_corruption_table_gains_it_when_opened_for_writing(tmp_path):
    """A database whose trials table is already complete must still be upgraded: recording a trial writes to
    every child table, so a missing one would fail every trial of the resumed run."""
    table = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS corruption"):]
    with sqlite3.connect(tmp_path / "results.sqlite") as connection:
        connection.executescript(SCHEMA.replace(table, ""))
    database = StudyDatabase(tmp_path, read_only=False)
    row = {"corruption": "fog", "severity": 1, "draw": 0, "accuracy": 0.5, "loss": 1.5}
    database.record_trial(TrialRecord(
        trial_id="t", architecture="mlp", dataset="mnist", family="width", width=16, depth=1, schedule="static",
        allocation="uniform", seed=0, status="finished", total_weights=10, nonzero_weights=10, base_nonzero=10,
        remaining_percent=100.0, unmasked_parameters=0, disconnected_units=0, epochs=1, final_train_loss=0.2,
        test_accuracy=0.5, test_loss=1.0, min_class_recall=0.1, train_seconds=1.0,
        checkpoint="checkpoints/t.safetensors", finished_at="2026-01-01T00:00:00+00:00", corruption=[row]))
    assert database.rows("corruption") == [{"trial_id": "t", **row}]


def test_resources_do_not_change_the_study():
    spec = load_spec("quick")
    other = load_spec("quick", ["resources.num_cpus=4", "resources.num_gpus=1", "resources.memory_gib=8"])
    assert other.resources.num_gpus == 1 and other.fingerprint() == spec.fingerprint()
    assert "resources" not in other.resolved()


def test_threads_beyond_the_cores_or_a_ray_tasks_reservation_are_warned_of():
    spec = load_spec("quick", ["resources.num_cpus=2"])
    assert waiting_threads(spec, Executor.LOCAL, Runtime(threads=2, cores=4), workers=3) == (
        "--threads 2 × 3 workers = 6 torch threads for this machine's 4 CPUs: trials will wait for cores held by "
        "other threads; leave --threads out (each worker then gets its share) or run fewer --workers")
    assert waiting_threads(spec, Executor.LOCAL, Runtime(threads=2, cores=4), workers=2) is None
    assert waiting_threads(spec, Executor.LOCAL, Runtime(threads=None, cores=4), workers=8) is None  # the policy's
    assert waiting_threads(spec, Executor.LOCAL, Runtime(threads=4, cores=4, device="cuda:0"), workers=2) is None
    assert waiting_threads(spec, Executor.RAY, Runtime(threads=2, cores=1), workers=1) is None
    assert waiting_threads(spec, Executor.RAY, Runtime(threads=3, cores=64), workers=1).startswith(
        "--threads 3 is more than the 2 CPU(s) each Ray task reserves ([resources] num_cpus)")


def test_a_run_with_more_threads_than_cores_warns_and_still_runs(tmp_path, capsys):
    spec = load_spec(str(write_spec(tmp_path)), ["seeds=[0]", "widths=[16]", 'schedules=["static"]'])
    progress = run_study(spec, tmp_path / "out", runtime=Runtime(threads=2, workers=1, cores=1))
    assert progress.ran == 1 and "warning: --threads 2 × 1 worker = 2 torch threads for this machine's 1 CPU:" in capsys.readouterr().err


def test_address_without_ray_is_refused(tmp_path, capsys):
    assert main(["run", str(write_spec(tmp_path, TINY_SPEC)), "--out", str(tmp_path / "out"),
                 "--address", "auto"]) == 2
    assert "--executor ray" in capsys.readouterr().err


def test_checkpoints_go_to_the_storage_path_recorded_relative_to_it(tmp_path):
    spec = load_spec(str(write_spec(tmp_path)))
    run_study(spec, tmp_path / "out", storage=tmp_path / "shared")
    rows = StudyDatabase(tmp_path / "out").rows("trials")
    assert {row["checkpoint"] for row in rows} == {f"checkpoints/{row['trial_id']}.safetensors" for row in rows}
    assert all((tmp_path / "shared" / row["checkpoint"]).is_file() for row in rows)
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_a_resume_without_storage_finds_the_checkpoints_where_the_last_run_put_them(tmp_path, capsys):
    """Leaving `--storage` out of a resume must not send the run to the study directory, find no checkpoint there
    and train every kept trial again: the recorded storage is used, and named."""
    out, shared = tmp_path / "out", tmp_path / "shared"
    spec = load_spec(str(write_spec(tmp_path)), ["seeds=[0]", "schedules=['static']"])
    first = run_study(spec, out, storage=shared)
    capsys.readouterr()
    resumed = run_study(spec, out)
    assert (resumed.ran, resumed.already_finished) == (0, first.total)
    assert f"checkpoints in {shared.resolve()}, the --storage of the study's last run" in capsys.readouterr().err
    assert not (out / "checkpoints").exists()
    moved = run_study(spec, out, storage=tmp_path / "elsewhere")  # a storage given explicitly wins
    assert (moved.ran, moved.already_finished) == (first.total, 0)
    assert StudyDatabase(out).metadata()["storage"] == str((tmp_path / "elsewhere").resolve())


def test_epoch_rows_are_numbered_from_one_so_the_last_is_the_trials_epoch_count(tmp_path):
    """`trials.epochs` counts epochs; the `epochs` table must number them 1..epochs, so that epoch n of a curve
    joins `trials.epochs = n` (and a rerecorded trial replaces its rows, not adds to them)."""
    losses = [0.9, 0.4, 0.2]
    record = TrialRecord(
        trial_id="t", architecture="mlp", dataset="digits", family="width", width=16, depth=1, schedule="static",
        allocation="uniform", seed=0, status="finished", total_weights=10, nonzero_weights=10, base_nonzero=10,
        remaining_percent=100.0, unmasked_parameters=0, disconnected_units=0, epochs=len(losses),
        final_train_loss=losses[-1], test_accuracy=0.5, test_loss=1.0, min_class_recall=0.1, train_seconds=1.0,
        checkpoint="checkpoints/t.safetensors", finished_at="2026-01-01T00:00:00+00:00", epoch_losses=losses)
    database = StudyDatabase.create(tmp_path)
    database.record_trial(record)
    database.record_trial(record)
    assert [(row["epoch"], row["train_loss"]) for row in database.rows("epochs")] == [(1, 0.9), (2, 0.4), (3, 0.2)]
    assert database.rows("trials")[0]["epochs"] == max(row["epoch"] for row in database.rows("epochs"))
