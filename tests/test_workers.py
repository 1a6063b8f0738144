"""The local executor's worker processes (`--workers`): the same database as one process, and a worker
killed mid-trial loses nothing already finished."""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sparsecap.data import load_dataset
from sparsecap.devices import cpu_name
from sparsecap.runtime import Runtime
from sparsecap.studies import StudyDatabase, Trial, expand, load_spec, run_study
from sparsecap.studies.database import TrialRecord
from sparsecap.studies.execute import costliest_first, run_group_or_failures, run_trials_together, seed_groups
from sparsecap.studies.progress import EpochReport, ProgressStyle, StudyProgressView, TrialProgress
from sparsecap.studies.workers import _work, run_on_workers, worker_context, worker_runtimes
from tests.study_helpers import (SEEDS_TOGETHER_SPEC, TINY_SPEC, WatchedView, comparable_results, descendants,
                                 finished_trial_count, parent_pid, write_spec)


def test_two_workers_give_the_database_of_one_with_threads_pinned(tmp_path):
    spec = load_spec(str(write_spec(tmp_path)))
    run_study(spec, tmp_path / "one", runtime=Runtime(threads=1, workers=1))
    run_study(spec, tmp_path / "two", runtime=Runtime(threads=1, workers=2))
    assert comparable_results(tmp_path / "two") == comparable_results(tmp_path / "one")  # bit for bit


def test_auto_is_one_worker_per_core_and_never_more_than_the_groups():
    assert Runtime().workers_for(1) == 1
    assert 1 <= Runtime().workers_for(1000) <= os.cpu_count()
    assert Runtime(workers=3).workers_for(1) == 3


def test_workers_take_the_devices_in_turn_and_an_equal_share_of_the_cores():
    """On a machine with two GPUs, four workers train two on each, never all four on the first."""
    runtime = Runtime(cores=8, device="cuda", devices=("cuda:0", "cuda:1"))
    assert [(each.device, each.cores, each.devices) for each in worker_runtimes(runtime, 4)] == [
        ("cuda:0", 2, ("cuda:0",)), ("cuda:1", 2, ("cuda:1",)), ("cuda:0", 2, ("cuda:0",)), ("cuda:1", 2, ("cuda:1",))]
    assert [each.cores for each in worker_runtimes(Runtime(cores=2), 3)] == [1, 1, 1]  # never below one core


def test_workers_report_each_epoch_of_each_trial_to_the_view(tmp_path):
    spec = load_spec(str(write_spec(tmp_path)), ["training.max_epochs=3"])
    trials = expand(spec)
    records = []
    with WatchedView(len(trials)) as view:
        run_on_workers(worker_context(), spec, seed_groups(spec, trials), {"digits": load_dataset("digits")},
                       tmp_path, records.append, view, Runtime(threads=1, workers=2), workers=2)
    assert len(records) == len(trials) == 8
    for record in records:
        reports = [report for report in view.reports if report.group == report.trial_id == record.trial_id]
        assert record.epochs >= 1 and [report.epoch for report in reports] == [*range(1, record.epochs + 1), record.epochs]
        assert [report.evaluating for report in reports] == [False] * record.epochs + [True]
    assert {(report.seeds, report.max_epochs) for report in view.reports} == {(1, 3)}


def test_the_costliest_groups_start_first_so_a_study_ends_with_short_ones(tmp_path):
    """One worker takes the groups in the order they start: the widest model first, whatever the grid's order."""
    spec = load_spec(str(write_spec(tmp_path)), ["widths=[16, 64, 32]", 'schedules=["static"]', "seeds=[0]",
                                                 "training.max_epochs=1"])
    records: list[TrialRecord] = []
    with WatchedView(3) as view:
        run_on_workers(worker_context(), spec, seed_groups(spec, expand(spec)), {"digits": load_dataset("digits")},
                       tmp_path, records.append, view, Runtime(threads=1, workers=1), workers=1)
    assert [record.width for record in records] == [64, 32, 16]


def test_groups_start_by_cost_all_seeds_counted_ties_in_the_grids_order(tmp_path):
    """Both executors start groups in this order. An MLP's multiply-accumulates grow as its width, so two seeds of
    width 16 cost as much as one of width 32: those tie, and keep the order they were given in."""
    spec = load_spec(str(write_spec(tmp_path, SEEDS_TOGETHER_SPEC)), ["widths=[16, 64, 32]"])
    one_by_one = load_spec(str(write_spec(tmp_path, name="one.toml")), ["widths=[32]"])
    groups = seed_groups(spec, expand(spec)) + seed_groups(one_by_one, expand(one_by_one))
    ordered = costliest_first(groups, {"digits": load_dataset("digits")})
    assert [(group[0].width, group[0].schedule.value, len(group)) for group in ordered] == [
        (64, "static", 2), (64, "posttrain", 2), (32, "static", 2), (32, "posttrain", 2), (16, "static", 2),
        (16, "posttrain", 2), (32, "static", 1), (32, "static", 1), (32, "posttrain", 1), (32, "posttrain", 1)]


def test_seeds_trained_together_report_as_one_group(tmp_path):
    spec = load_spec(str(write_spec(tmp_path)), ['schedules=["static"]', "widths=[16]", "training.max_epochs=3"])
    reports: list[EpochReport] = []
    records = run_trials_together(spec, expand(spec), load_dataset("digits"), tmp_path,
                                  TrialProgress(on_epoch=reports.append))
    assert [record.epochs for record in records] == [3, 3]
    worst = [max(losses) for losses in zip(*(record.epoch_losses for record in records), strict=True)]
    first = records[0].trial_id
    assert reports == [EpochReport(first, first, 2, epoch, 3, worst[epoch - 1]) for epoch in (1, 2, 3)] + [
        EpochReport(first, first, 2, 3, 3, worst[2], evaluating=True)]  # training is over: the seeds are evaluated


def test_seeds_trained_one_by_one_report_their_group_and_which_seed_trains(tmp_path):
    spec = load_spec(str(write_spec(tmp_path, SEEDS_TOGETHER_SPEC)),
                     ['schedules=["static"]', "widths=[16384]", "training.max_epochs=2"])  # too wide to stack here
    reports: list[EpochReport] = []
    records = run_group_or_failures(spec, expand(spec), load_dataset("digits"), tmp_path, Runtime(threads=1),
                                    TrialProgress(on_epoch=reports.append))
    group = records[0].trial_id
    assert [(report.group, report.trial_id, report.seeds, report.epoch, report.evaluating) for report in reports] == [
        (group, record.trial_id, 1, epoch, evaluating) for record in records
        for epoch, evaluating in ((1, False), (2, False), (2, True))]


def test_a_worker_killed_between_groups_loses_no_record_and_its_next_group_runs(tmp_path):
    """Killed after sending its records, before it is handed the next group: the records are written and
    the next group runs on a new worker, once, without counting as a death of that group."""
    spec = load_spec(str(write_spec(tmp_path)), ["training.max_epochs=1", 'schedules=["static"]'])
    trials = expand(spec)
    records = []

    def record_and_kill_its_worker(record) -> None:
        records.append(record)
        if len(records) == 1:
            (worker,) = [child for child in multiprocessing.active_children() if child.name == "sparsecap-worker"]
            worker.kill()
            worker.join()

    with StudyProgressView("killed", len(trials), 0, ProgressStyle.NONE) as view:
        run_on_workers(worker_context(), spec, seed_groups(spec, trials), {"digits": load_dataset("digits")},
                       tmp_path, record_and_kill_its_worker, view, Runtime(threads=1, workers=1, max_retries=0),
                       workers=1)
    assert sorted(record.trial_id for record in records) == sorted(trial.trial_id for trial in trials)
    assert {record.status for record in records} == {"finished"}


class _KillAtFirstEpoch(StudyProgressView):
    """A progress view that kills the worker whose epoch it is first told of: that worker dies mid-group."""

    def epoch_done(self, report: EpochReport) -> None:
        if not getattr(self, "killed", None):
            (self.killed,) = [child for child in multiprocessing.active_children() if child.name == "sparsecap-worker"]
            self.killed.kill()
        super().epoch_done(report)


def test_the_group_of_a_worker_that_died_is_recorded_failed_with_where_it_ran(tmp_path):
    """Where and on how many threads, as the worker said once started: the parent initialises no device."""
    spec = load_spec(str(write_spec(tmp_path)), ["training.max_epochs=3", 'schedules=["static"]', "seeds=[0]"])
    trials = expand(spec)
    records = []
    with _KillAtFirstEpoch("killed", len(trials), 0, ProgressStyle.NONE) as view:
        run_on_workers(worker_context(), spec, seed_groups(spec, trials), {"digits": load_dataset("digits")},
                       tmp_path, records.append, view, Runtime(threads=1, workers=1, max_retries=0), workers=1)
    failed = [record for record in records if record.status == "failed"]
    assert len(failed) == 1 and "died 1 times" in failed[0].error
    assert (failed[0].device, failed[0].device_name, failed[0].threads) == ("cpu", cpu_name(), 1)
    assert [record.status for record in records if record is not failed[0]] == ["finished"]


def test_each_worker_runs_on_its_share_of_the_cores_and_records_it(tmp_path):
    """4 cores over 2 workers: a model past the threading threshold gets 2 threads each, a small one 1."""
    spec = load_spec(str(write_spec(tmp_path)), ["training.max_epochs=1", 'schedules=["static"]', "seeds=[0]",
                                                 "widths=[16, 2048]"])
    trials = expand(spec)
    records = []
    with StudyProgressView("shares", len(trials), 0, ProgressStyle.NONE) as view:
        run_on_workers(worker_context(), spec, seed_groups(spec, trials), {"digits": load_dataset("digits")},
                       tmp_path, records.append, view, Runtime(cores=4, workers=2), workers=2)
    assert {record.trial_id.split("-")[2]: record.threads for record in records} == {"w16": 1, "w2048": 2}


def _killed_at_first_epoch(tmp_path: Path, width: int, runtime: Runtime) -> tuple[_KillAtFirstEpoch, list[Trial], list[TrialRecord]]:
    """One trial of `width` on one worker that is killed at its first epoch: the view, the trials and the records."""
    spec = load_spec(str(write_spec(tmp_path)), ["training.max_epochs=3", 'schedules=["static"]', "seeds=[0]",
                                                 f"widths=[{width}]"])
    trials = expand(spec)
    records: list[TrialRecord] = []
    with _KillAtFirstEpoch(f"w{width}", len(trials), 0, ProgressStyle.NONE) as view:
        run_on_workers(worker_context(), spec, seed_groups(spec, trials), {"digits": load_dataset("digits")},
                       tmp_path, records.append, view, runtime, workers=1)
    return view, trials, records


def test_the_group_of_a_worker_that_died_records_the_threads_its_model_had(tmp_path):
    """A model past the threading threshold runs on every core of its worker (2 here), and so says its record."""
    _, _, records = _killed_at_first_epoch(tmp_path, 2048, Runtime(cores=2, workers=1, max_retries=0))
    assert [(record.status, record.threads) for record in records] == [("failed", 2)]


def test_a_group_whose_worker_died_runs_again_up_to_max_retries_times(tmp_path):
    """One death with max_retries=1: the group runs again on a new worker and finishes; nothing is failed."""
    view, trials, records = _killed_at_first_epoch(tmp_path, 16, Runtime(threads=1, workers=1, max_retries=1))
    assert view.killed.exitcode == -signal.SIGKILL
    assert [(record.trial_id, record.status) for record in records] == [(trials[0].trial_id, "finished")]


LONGER_SPEC = (TINY_SPEC.replace("max_epochs = 2", "max_epochs = 60\nstop_loss = 0.0")
               .replace("widths = [16, 32]", "widths = [128, 256]")
               .replace('schedules = ["static", "posttrain"]', 'schedules = ["static"]'))


@pytest.mark.slow
def test_a_worker_killed_mid_trial_loses_no_finished_trial(tmp_path):
    spec = load_spec(str(write_spec(tmp_path, LONGER_SPEC)), ["seeds=[0, 1, 2]"])
    database = tmp_path / "out" / "results.sqlite"
    killed: list[int] = []
    finished_before: list[dict] = []

    def kill_a_worker_once_a_trial_is_in() -> None:
        while not killed:
            workers = [child for child in multiprocessing.active_children() if child.name == "sparsecap-worker"]
            if workers and finished_trial_count(database) >= 1:
                finished_before.extend(StudyDatabase(tmp_path / "out").rows("trials"))
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(workers[0].pid)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_worker_once_a_trial_is_in, daemon=True)
    killer.start()
    progress = run_study(spec, tmp_path / "out", runtime=Runtime(threads=1, workers=2))
    killer.join()
    assert killed and (progress.ran, progress.failed) == (6, ())
    rows = StudyDatabase(tmp_path / "out").rows("trials")
    assert sorted(row["trial_id"] for row in rows) == sorted(
        f"mlp-digits-w{width}-d1-static-s{seed}" for width in (128, 256) for seed in (0, 1, 2))
    assert {row["status"] for row in rows} == {"finished"} and {row["epochs"] for row in rows} == {60}
    assert rows[: len(finished_before)] == finished_before  # what was written before the kill stays as it was



def test_a_worker_whose_run_closed_its_pipe_between_groups_ends_without_a_traceback(tmp_path):
    """A stop that finds a worker waiting for its next group kills only the busy ones; that worker then sees
    the run's end of the pipe close, and must end as cleanly as when sent None."""
    spec = load_spec(str(write_spec(tmp_path)))
    context = worker_context()  # as the run's workers start: holding no copy of the run's end of the pipe
    ours, theirs = context.Pipe()
    worker = context.Process(target=_work, args=(spec, {}, tmp_path, Runtime(threads=1), theirs))
    worker.start()
    theirs.close()
    ours.close()
    worker.join()
    assert worker.exitcode == 0  # an uncaught EOFError ends it with 1, and its traceback on the run's stderr


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _fork_server_children(processes: set[int]) -> set[int]:
    """The workers among `processes`: children of multiprocessing's fork server (not its resource tracker)."""
    children = set()
    for pid in processes:
        try:
            if b"forkserver" in Path(f"/proc/{parent_pid(pid)}/cmdline").read_bytes():
                children.add(pid)
        except (OSError, IndexError, ValueError):  # ended meanwhile
            continue
    return children


@pytest.mark.slow
def test_workers_end_when_their_run_is_killed(tmp_path):
    """SIGKILL runs no clean-up in the killed run; its workers notice and stop instead of training on."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("two workers need two CPUs")
    spec = write_spec(tmp_path, TINY_SPEC.replace("max_epochs = 2", "max_epochs = 1000000\nstop_loss = 0.0"))
    run = subprocess.Popen([sys.executable, "-m", "sparsecap.cli", "run", str(spec), "--out", str(tmp_path / "out"),
                            "--workers", "2", "--no-report"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while len(_fork_server_children(below := descendants(run.pid))) < 2:  # both workers, not just any process
            assert run.poll() is None
            time.sleep(0.05)
    finally:
        run.kill()
        run.wait()
    while any(_alive(pid) for pid in below):  # however slow the machine; pytest-timeout bounds a hang
        time.sleep(0.05)


_INTERRUPTED_FORK_SERVER = """
import os, signal
from multiprocessing import forkserver
from sparsecap.studies.fork_server import start_fork_server, stop_fork_server

context = start_fork_server()
os.kill(forkserver._forkserver._forkserver_pid, signal.SIGINT)  # as Ctrl-C reaches it, importing torch
worker = context.Process(target=os.getpid)
worker.start()
worker.join()
print(worker.exitcode)
stop_fork_server()
"""


@pytest.mark.slow
def test_the_fork_server_outlives_ctrl_c_while_it_imports(tmp_path):
    """A terminal's Ctrl-C reaches the fork server too; the run handles it, so the server must not die of it
    mid-import (printing a KeyboardInterrupt traceback into the run's output), and still starts workers."""
    result = subprocess.run([sys.executable, "-c", _INTERRUPTED_FORK_SERVER], capture_output=True, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), check=False)
    assert (result.returncode, result.stdout.strip()) == (0, "0"), result.stderr
    assert "KeyboardInterrupt" not in result.stderr
