"""What a study run shows while it works: live bars in a terminal, plain lines in a log.

Bars redraw themselves with terminal escape codes, which turn a log file into noise; so where stderr
is not a terminal (or bars are turned off), each finished trial is one plain line instead, with the
study's count and an ETA, so that a run under `nohup`, a scheduler or CI still says how far it got.
"""

from __future__ import annotations

import enum
import sys
import time
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


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def trial_line(record: TrialRecord, done: int, total: int, eta_seconds: float | None) -> str:
    """One finished trial for a log: id, status, epochs, final loss, accuracy, seconds, study count, ETA."""
    loss = "—" if record.final_train_loss is None else f"{record.final_train_loss:.4g}"
    accuracy = "—" if record.test_accuracy is None else f"{record.test_accuracy:.4f}"
    eta = "" if eta_seconds is None else f", ETA {format_duration(eta_seconds)}"
    return (f"[{done}/{total}{eta}] {record.trial_id} {record.status}: {record.epochs} epochs, "
            f"final loss {loss}, accuracy {accuracy}, {record.train_seconds:.1f} s training")


class StudyProgressView:
    """The study's trials pending, running, done and failed, with an ETA from this run's pace.

    `done` counts finished and diverged trials, those recorded before this run included; `failed` counts
    the trials that failed in this run.
    """

    def __init__(self, name: str, total: int, already_finished: int, style: ProgressStyle,
                 stream: TextIO | None = None) -> None:
        self.total = total
        self.done = already_finished
        self.failed = 0
        self.running = 0
        self.accuracy: float | None = None
        self.style = style
        self._stream = stream or sys.stderr
        self._started = time.monotonic()
        self._recorded_here = 0
        self._bar = tqdm(total=total, initial=already_finished, desc=name, unit="trial",
                         disable=style is not ProgressStyle.BARS, dynamic_ncols=True, file=self._stream)

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed - self.running

    def set_running(self, running: int) -> None:
        if running != self.running:
            self.running = running
            self._refresh()

    def record(self, record: TrialRecord) -> None:
        """A trial's result has been written to the database."""
        self.running = max(0, self.running - 1)
        self._recorded_here += 1
        if record.status == FAILED:
            self.failed += 1
        else:
            self.done += 1
            self.accuracy = record.test_accuracy
        self._bar.update(1)
        self._refresh()
        if self.style is ProgressStyle.LINES:
            print(trial_line(record, self.done + self.failed, self.total, self._eta()), file=self._stream, flush=True)

    def _eta(self) -> float | None:
        remaining = self.total - self.done - self.failed
        if not remaining:
            return None
        return (time.monotonic() - self._started) / self._recorded_here * remaining

    def _refresh(self) -> None:
        postfix = {"pending": self.pending, "running": self.running, "done": self.done, "failed": self.failed}
        if self.accuracy is not None:
            postfix["last accuracy"] = f"{self.accuracy:.3f}"
        self._bar.set_postfix(postfix, refresh=True)

    def __enter__(self) -> StudyProgressView:
        self._refresh()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._bar.close()
