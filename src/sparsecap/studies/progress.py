"""The live terminal view of a study run: trials pending, running, done and failed, with an ETA."""

from __future__ import annotations

from types import TracebackType

from tqdm import tqdm

from sparsecap.studies.database import FAILED, TrialRecord


class StudyProgressView:
    """One tqdm bar over the study's trials (its ETA from the pace so far) with the counts as postfix.

    `done` counts finished and diverged trials, those recorded before this run included; `failed` counts
    the trials that failed in this run.
    """

    def __init__(self, name: str, total: int, already_finished: int, show: bool) -> None:
        self.total = total
        self.done = already_finished
        self.failed = 0
        self.running = 0
        self.accuracy: float | None = None
        self._bar = tqdm(total=total, initial=already_finished, desc=name, unit="trial", disable=not show,
                         dynamic_ncols=True)

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
        if record.status == FAILED:
            self.failed += 1
        else:
            self.done += 1
            self.accuracy = record.test_accuracy
        self._bar.update(1)
        self._refresh()

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
