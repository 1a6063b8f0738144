"""Progress: bars only on a terminal, plain lines (no escape codes) in logs."""

import io
import os
import threading

import pytest

from sparsecap.studies import progress
from sparsecap.studies.progress import (
    EpochReport,
    ProgressStyle,
    StudyProgressView,
    format_duration,
    running_line,
    seconds_left,
    trial_line,
)
from tests.test_report import _record


def test_bars_only_where_wanted_and_on_a_terminal():
    main, secondary = os.openpty()
    with open(secondary, "w") as terminal:
        assert ProgressStyle.for_stream(True, terminal) is ProgressStyle.BARS
        assert ProgressStyle.for_stream(False, terminal) is ProgressStyle.LINES
    os.close(main)
    assert ProgressStyle.for_stream(True, io.StringIO()) is ProgressStyle.LINES


def test_a_log_gets_a_first_line_then_one_plain_line_per_trial_with_the_count_and_an_eta():
    log = io.StringIO()
    with StudyProgressView("tiny", 3, 1, ProgressStyle.LINES, log, running_seconds=3600) as view:
        view.recorded([_record(schedule="static", width=64, seed=0)])
        view.recorded([_record(schedule="static", width=64, seed=1, status="failed", test_accuracy=None)])
    lines = log.getvalue().splitlines()
    assert len(lines) == 3 and "\x1b" not in log.getvalue() and "\r" not in log.getvalue()
    assert lines[0] == "tiny: 2 trials to run, 1 already finished; a line per finished trial, and every 3600 s what is running"
    assert lines[1].startswith("[2/3, ETA ") and " finished: " in lines[1] and "accuracy 0." in lines[1]
    assert lines[2].startswith("[3/3] ") and " failed: " in lines[2] and "accuracy —" in lines[2]
    assert view.accuracy == _record(schedule="static", width=64, seed=0).test_accuracy  # the bar keeps it past a failure
    single = io.StringIO()
    with StudyProgressView("tiny", 3, 2, ProgressStyle.LINES, single, running_seconds=3600):
        pass
    assert single.getvalue().startswith("tiny: 1 trial to run, 2 already finished; ")


class _Clock:
    """`time` as the progress view reads it, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_seeds_recorded_together_are_counted_together_before_the_eta_is_told(monkeypatch: pytest.MonkeyPatch):
    """Counted one by one, the first of 3 seeds trained together in 100 s would say ETA 8m20s (100 s per trial)."""
    clock = _Clock()
    monkeypatch.setattr(progress, "time", clock)
    log = io.StringIO()
    with StudyProgressView("tiny", 6, 0, ProgressStyle.LINES, log, running_seconds=3600) as view:
        view.set_running(3)
        clock.now = 100.0
        view.recorded([_record(schedule="static", width=64, seed=seed, status=status, test_accuracy=accuracy)
                       for seed, status, accuracy in ((0, "finished", 0.9), (1, "failed", None), (2, "finished", 0.8))])
    lines = log.getvalue().splitlines()[1:]
    assert [line.split("]")[0] for line in lines] == ["[1/6, ETA 1m40s", "[2/6, ETA 1m40s", "[3/6, ETA 1m40s"]
    assert (view.done, view.failed, view.running, view.accuracy) == (2, 1, 0, 0.8)


class _ClosedAfter(io.StringIO):
    """A log whose reader goes away after `lines` lines (`sparsecap run ... 2>&1 | head -1`)."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.lines = lines

    def write(self, text: str) -> int:
        if self.getvalue().count("\n") >= self.lines:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_a_log_whose_reader_has_gone_stops_the_lines_not_the_study():
    log = _ClosedAfter(1)
    with StudyProgressView("tiny", 3, 0, ProgressStyle.LINES, log, running_seconds=3600) as view:
        for seed in range(3):
            view.recorded([_record(schedule="static", width=64, seed=seed)])
    assert view.done == 3 and log.getvalue().count("\n") == 1


class _Lines(io.StringIO):
    """A log that says when it has been written `wanted` lines."""

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.wanted, self.enough = wanted, threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if self.getvalue().count("\n") >= self.wanted:
            self.enough.set()
        return written


def test_while_trials_run_a_log_says_what_runs_and_the_epoch_each_group_reached():
    log = _Lines(wanted=2)
    with StudyProgressView("tiny", 4, 0, ProgressStyle.LINES, log, running_seconds=0.01) as view:
        w64, w128 = "mlp-mnist-width-static-w64-s0", "mlp-mnist-width-static-w128-s0"
        view.epoch_done(EpochReport(w64, w64, 2, 17, 300, 0.04321))
        view.epoch_done(EpochReport(w64, w64, 2, 18, 300, 0.0398))  # a group's latest epoch replaces the one before
        view.epoch_done(EpochReport(w128, w128, 1, 300, 300, 0.01))
        view.epoch_done(EpochReport(w128, "mlp-mnist-width-static-w128-s1", 1, 3, 300, 1.5))  # its next seed
        view.epoch_done(EpochReport(w128, "mlp-mnist-width-static-w128-s1", 1, 3, 300, 1.5, evaluating=True))
        view.set_running(3)  # only now: the first running line shows every report above, however slow this thread
        assert log.enough.wait(timeout=60)
        view.recorded([_record(schedule="static", width=128, seed=0)])  # its group is no longer running
        view.epoch_done(EpochReport(w128, w128, 1, 300, 300, 0.01))  # late (a dead Ray worker's): it still is not
        later = len(log.getvalue())
        log.wanted = log.getvalue().count("\n") + 2
        log.enough.clear()
        assert log.enough.wait(timeout=60)
    first = log.getvalue()[:later].splitlines()[1]
    assert first == ("[0/4] running 3, pending 1: mlp-mnist-width-static-w64-s0 (+1 seed) epoch 18/300, loss 0.0398; "
                     "mlp-mnist-width-static-w128-s1 epoch 3/300, loss 1.5, evaluating")
    after = log.getvalue()[later:].splitlines()
    assert [line for line in after if line.startswith("[1/4, ETA ") and " running 2, pending 1: " in line
            and "w128" not in line and "mlp-mnist-width-static-w64-s0 (+1 seed) epoch 18/300" in line]


def test_a_running_line_counts_failed_trials_among_those_done():
    """As the trial lines do: after one failed trial of 3, the running line says 1/3 and 1 pending."""
    log = _Lines(wanted=3)  # the first line, the failed trial's, then a running line
    with StudyProgressView("tiny", 3, 0, ProgressStyle.LINES, log, running_seconds=0.01) as view:
        view.recorded([_record(schedule="static", width=64, seed=0, status="failed", test_accuracy=None)])
        view.set_running(1)  # only now: no running line can come before the record
        assert log.enough.wait(timeout=60)
    running = [line for line in log.getvalue().splitlines() if " running " in line]
    assert running and all(line.startswith("[1/3") and "running 1, pending 1" in line for line in running)


def test_nothing_running_writes_no_running_line():
    log = io.StringIO()
    with StudyProgressView("tiny", 2, 0, ProgressStyle.LINES, log, running_seconds=0.001) as view:
        view.recorded([_record(schedule="static", width=64, seed=0)])
    assert not [line for line in log.getvalue().splitlines() if " running " in line]


def test_a_running_line_without_epochs_still_counts_what_runs():
    assert running_line(3, 9, 75.0, 2, 4, []) == "[3/9, ETA 1m15s] running 2, pending 4"


def test_durations_read_as_minutes_or_hours():
    assert [format_duration(seconds) for seconds in (5, 65, 3 * 3600 + 120)] == ["0m05s", "1m05s", "3h02m"]
    assert [format_duration(seconds) for seconds in (59.6, 3599.6)] == ["1m00s", "1h00m"]  # rounded, not cut


def test_a_trial_line_names_the_trial_and_what_it_reached():
    line = trial_line(_record(schedule="posttrain", width=128, seed=2), 4, 9, 30.0)
    assert line.startswith("[4/9, ETA 0m30s] ") and "posttrain" in line and "epochs, final loss" in line
    one = trial_line(_record(schedule="static", width=128, seed=0, epochs=1), 1, 9, None)
    assert ": 1 epoch, final loss" in one


def test_the_eta_counts_down_from_the_last_record_instead_of_growing_with_a_long_trial():
    # 4 trials recorded in the first 100 s: 25 s each, 6 left; 10 s and then 40 s after the last record
    assert seconds_left(100.0, 4, 6, 10.0) == 140.0
    assert seconds_left(100.0, 4, 6, 40.0) == 110.0


def test_no_eta_before_a_record_with_nothing_left_or_once_the_count_down_runs_out():
    assert seconds_left(0.0, 0, 6, 5.0) is None
    assert seconds_left(100.0, 4, 0, 0.0) is None
    assert seconds_left(100.0, 4, 1, 25.0) is None
    assert seconds_left(100.0, 4, 1, 300.0) is None
