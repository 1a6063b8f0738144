"""Progress: bars only on a terminal, plain lines (no escape codes) in logs."""

import io
import os

from sparsecap.studies.progress import ProgressStyle, StudyProgressView, format_duration, trial_line
from tests.test_report import _record


def test_bars_only_where_wanted_and_on_a_terminal():
    main, secondary = os.openpty()
    with open(secondary, "w") as terminal:
        assert ProgressStyle.for_stream(True, terminal) is ProgressStyle.BARS
        assert ProgressStyle.for_stream(False, terminal) is ProgressStyle.LINES
    os.close(main)
    assert ProgressStyle.for_stream(True, io.StringIO()) is ProgressStyle.LINES


def test_a_log_gets_one_plain_line_per_trial_with_the_count_and_an_eta():
    log = io.StringIO()
    with StudyProgressView("tiny", 3, 1, ProgressStyle.LINES, log) as view:
        view.record(_record(schedule="static", width=64, seed=0))
        view.record(_record(schedule="static", width=64, seed=1, status="failed", test_accuracy=None))
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in log.getvalue() and "\r" not in log.getvalue()
    assert lines[0].startswith("[2/3, ETA ") and " finished: " in lines[0] and "accuracy 0." in lines[0]
    assert lines[1].startswith("[3/3] ") and " failed: " in lines[1] and "accuracy —" in lines[1]


def test_durations_read_as_minutes_or_hours():
    assert [format_duration(seconds) for seconds in (5, 65, 3 * 3600 + 120)] == ["0m05s", "1m05s", "3h02m"]


def test_a_trial_line_names_the_trial_and_what_it_reached():
    line = trial_line(_record(schedule="posttrain", width=128, seed=2), 4, 9, 30.0)
    assert line.startswith("[4/9, ETA 0m30s] ") and "posttrain" in line and "epochs, final loss" in line
