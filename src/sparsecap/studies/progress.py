"""What a study run shows while it works: live bars in a terminal, plain lines in a log.

Bars redraw themselves with terminal escape codes, which turn a log file into noise; so where stderr
is not a terminal (or bars are turned off), each finished trial is one plain line instead, with the
study's count and an ETA, so that a run under `nohup`, a scheduler or CI still says how far it got. A
trial of the paper's grid can train for an hour, so such a log also gets, once a minute, a line saying
what is running and which epoch it has reached (`EpochReport`s, sent by whichever process trains it).
"""

from __future__ import annotations

import enum
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

from sparsecap.studies.database import FAILED, TrialRecord


class ProgressStyle(str, enum.Enum):
    BARS = "bars"
    """Live bars: the study's trials, each trial's epochs and its evaluation (a terminal)."""
    LINES = "lines"
    """One plain line per finished trial (a log)."""
    NONE = "none"
    """Nothing (library use, tests)."""

    @classmethod
    def for_stream(cls, bars_wanted: bool, stream: TextIO) -> ProgressStyle:
        """Bars where they are wanted and `stream` is a terminal, else lines."""
        return cls.BARS if bars_wanted and stream.isatty() else cls.LINES


def write_line(line: str, stream: TextIO) -> bool:
    """Print one line of a study's log; False once its reader has gone (`| head`), which must stop the
    lines, never the study."""
    try:
        print(line, file=stream, flush=True)
    except BrokenPipeError:
        return False
    return True


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def counted(count: int, noun: str) -> str:
    """`1 epoch`, `30 epochs`: lines a user reads, not `1 epochs`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def trial_line(record: TrialRecord, done: int, total: int, eta_seconds: float | None) -> str:
    """One finished trial for a log: id, status, epochs, final loss, accuracy, seconds, study count, ETA."""
    loss = "—" if record.final_train_loss is None else f"{record.final_train_loss:.4g}"
    accuracy = "—" if record.test_accuracy is None else f"{record.test_accuracy:.4f}"
    eta = "" if eta_seconds is None else f", ETA {format_duration(eta_seconds)}"
    return (f"[{done}/{total}{eta}] {record.trial_id} {record.status}: {counted(record.epochs, 'epoch')}, "
            f"final loss {loss}, accuracy {accuracy}, {record.train_seconds:.1f} s training")


def seconds_left(seconds_to_last_record: float, recorded: int, remaining: int,
                 since_last_record: float) -> float | None:
    """The run's pace (seconds per trial recorded) times the trials left, counted down since the last record.

    Counting down keeps a log's ETA from growing while one long trial runs, as pace × trials left alone
    would. Once the count-down runs out the running trials are slower than the run so far, and there is no
    estimate (None); likewise before the first record.
    """
    if not remaining or not recorded:
        return None
    left = seconds_to_last_record / recorded * remaining - since_last_record
    return left if left > 0 else None


@dataclass(frozen=True)
class EpochReport:
    """A running group's latest epoch, from the process that trains it to the one that shows progress."""

    group: str
    """The running group's first trial: the group's latest report replaces its earlier ones."""
    trial_id: str
    """The first of the trials training (the group's seeds one by one, or stacked)."""
    seeds: int
    """How many seeds train together."""
    epoch: int
    max_epochs: int
    loss: float
    """The epoch's training loss; of stacked seeds, the worst of those still training."""
    evaluating: bool = False
    """Training is over and the trials are being evaluated: at the paper's size that can take minutes, which a
    log would otherwise show as its last epoch standing still."""


@dataclass(frozen=True)
class TrialProgress:
    """How a running trial shows itself: live bars on this process's terminal, and each epoch handed to
    `on_epoch` (for a log's line about what is running)."""

    bars: bool = False
    on_epoch: Callable[[EpochReport], None] | None = None
    group: str = ""
    """The running group's first trial (`EpochReport.group`; empty: the first trial training)."""


def group_name(first_trial_id: str, seeds: int) -> str:
    """A group of `seeds` trials, by its first."""
    others = seeds - 1
    return first_trial_id if not others else f"{first_trial_id} (+{others} seed{'s' if others > 1 else ''})"


def running_line(done: int, total: int, eta_seconds: float | None, running: int, pending: int,
                 reports: Iterable[EpochReport]) -> str:
    """What a log says while trials run: the study's count, and each running group's epoch and loss."""
    eta = "" if eta_seconds is None else f", ETA {format_duration(eta_seconds)}"
    epochs = "; ".join(
        f"{group_name(report.trial_id, report.seeds)} epoch {report.epoch}/{report.max_epochs}, loss {report.loss:.4g}"
        + (", evaluating" if report.evaluating else "")
        for report in reports)
    return f"[{done}/{total}{eta}] running {running}, pending {pending}" + (f": {epochs}" if epochs else "")


class StudyProgressView:
    """The study's trials pending, running, done and failed, with an ETA from this run's pace.

    `done` counts finished and diverged trials, those recorded before this run included; `failed` counts
    the trials that failed in this run. In a log, a line says every `running_seconds` what is running.
    """

    def __init__(self, name: str, total: int, already_finished: int, style: ProgressStyle,
                 stream: TextIO | None = None, running_seconds: float = 60.0) -> None:
        self.name = name
        self.total = total
        self.done = already_finished
        self.failed = 0
        self.running = 0
        self.accuracy: float | None = None
        self.style = style
        self._stream: TextIO | None = stream or sys.stderr
        self._started = time.monotonic()
        self._last_record_at = self._started
        self._recorded_here = 0
        self._running_seconds = running_seconds
        self._latest: dict[str, EpochReport] = {}  # by group, until the records of the group arrive
        self._recorded_ids: set[str] = set()  # the trials recorded in this run
        self._lock = threading.Lock()  # the running line is written by a thread of its own
        self._stopped = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="sparsecap-progress", daemon=True)
        self._bar = tqdm(total=total, initial=already_finished, desc=name, unit="trial",
                         disable=style is not ProgressStyle.BARS, dynamic_ncols=True, file=self._stream)

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed - self.running

    def set_running(self, running: int) -> None:
        if running != self.running:
            self.running = running
            self._refresh()

    def epoch_done(self, report: EpochReport) -> None:
        """A running group's latest epoch; one of a group already recorded (a dead Ray worker's, arriving late) would
        show it running for good, and is dropped."""
        with self._lock:
            if report.group not in self._recorded_ids:
                self._latest[report.group] = report

    def recorded(self, records: Sequence[TrialRecord]) -> None:
        """One group's results have been written to the database. They are counted together before any line is
        written: counted one by one, a group of 5 seeds trained together would show an ETA 5 times too long on
        its first line, falling to the right one by its last."""
        with self._lock:
            for record in records:  # a group's latest epoch is kept under its first trial's id
                self._latest.pop(record.trial_id, None)
                self._recorded_ids.add(record.trial_id)
        self.running = max(0, self.running - len(records))
        self._recorded_here += len(records)
        self._last_record_at = time.monotonic()
        failed = sum(record.status == FAILED for record in records)
        self.failed += failed
        self.done += len(records) - failed
        self.accuracy = next((record.test_accuracy for record in reversed(records) if record.status != FAILED),
                             self.accuracy)
        self._bar.update(len(records))
        self._refresh()
        if self.style is ProgressStyle.LINES:
            eta, before = self._eta(), self.done + self.failed - len(records)
            for count, record in enumerate(records, start=before + 1):
                self._write(trial_line(record, count, self.total, eta))

    def _write(self, line: str) -> None:
        """One log line; once its reader has gone (`| head`), the study goes on without the log."""
        with self._lock:
            if self._stream is None:
                return
            if not write_line(line, self._stream):
                self._stream = None

    def _tick(self) -> None:
        while not self._stopped.wait(self._running_seconds):
            if self.running:
                with self._lock:
                    reports = list(self._latest.values())
                self._write(running_line(self.done + self.failed, self.total, self._eta(), self.running,
                                         self.pending, reports))

    def _eta(self) -> float | None:
        return seconds_left(self._last_record_at - self._started, self._recorded_here,
                            self.total - self.done - self.failed, time.monotonic() - self._last_record_at)

    def _refresh(self) -> None:
        postfix = {"pending": self.pending, "running": self.running, "done": self.done, "failed": self.failed}
        if self.accuracy is not None:
            postfix["last accuracy"] = f"{self.accuracy:.3f}"
        self._bar.set_postfix(postfix, refresh=True)

    def __enter__(self) -> StudyProgressView:
        self._refresh()
        if self.style is ProgressStyle.LINES:
            self._write(f"{self.name}: {counted(self.pending, 'trial')} to run, {self.done} already finished; a "
                        f"line per finished trial, and every {self._running_seconds:g} s what is running")
            self._ticker.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stopped.set()
        if self._ticker.is_alive():
            self._ticker.join()
        self._bar.close()
