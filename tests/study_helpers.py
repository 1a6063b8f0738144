"""Small study specs shared by the study and CLI tests, and what checks a study's results and its progress."""

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from sparsecap.studies import StudyDatabase
from sparsecap.studies.database import TrialRecord
from sparsecap.studies.progress import EpochReport, ProgressStyle, StudyProgressView

TIMING_COLUMNS = {"train_seconds", "finished_at"}

TINY_SPEC = """
name = "tiny"
architectures = ["mlp"]
datasets = ["digits"]
widths = [16, 32]
schedules = ["static", "posttrain"]
seeds = [0, 1]

[training]
max_epochs = 2
batch_size = 64

[weight_noise]
sigmas = [0.0, 0.5]
draws = 2
"""


SEEDS_TOGETHER_SPEC = TINY_SPEC.replace("[training]\n", "[training]\nseeds_together = true\n")


def write_spec(directory: Path, text: str = TINY_SPEC, name: str = "spec.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def comparable_results(directory: Path) -> dict[str, list[dict]]:
    """Every results table without timing columns, rows in a fixed order (executors differ in order)."""
    database = StudyDatabase(directory)
    tables = {"trials": [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in database.rows("trials")]}
    for table in ("epochs", "class_recall", "weight_noise"):
        tables[table] = database.rows(table)
    return {table: sorted(rows, key=lambda row: repr(sorted(row.items()))) for table, rows in tables.items()}


def assert_same_up_to_rounding(first: dict[str, list[dict]], second: dict[str, list[dict]]) -> None:
    """`comparable_results` of two runs agree: exactly in every count and label, to 1e-4 in every float."""
    assert first.keys() == second.keys()
    for table in first:
        assert len(first[table]) == len(second[table]), table
        for row, other in zip(first[table], second[table], strict=True):
            assert row.keys() == other.keys()
            for column, value in row.items():
                if column == "checkpoint_sha256":
                    continue  # the bytes of weights that agree only up to rounding
                if isinstance(value, float):
                    assert other[column] == pytest.approx(value, rel=1e-4, abs=1e-6), (table, column)
                else:
                    assert other[column] == value, (table, column)


def finished_trial_count(database: Path) -> int:
    """Trials recorded so far, read while another process may be creating or writing the database."""
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        try:
            return connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def parent_pid(pid: int) -> int:
    """The parent of process `pid` (Linux /proc); OSError where it has ended."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = parent_pid(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


class WatchedView(StudyProgressView):
    """A silent view of a run keeping, in the order they come, the epoch reports it is handed and the trial ids of
    each group's records."""

    def __init__(self, total: int) -> None:
        super().__init__("watched", total, 0, ProgressStyle.NONE)
        self.events: list[EpochReport | tuple[str, ...]] = []

    @property
    def reports(self) -> list[EpochReport]:
        return [event for event in self.events if isinstance(event, EpochReport)]

    def epoch_done(self, report: EpochReport) -> None:
        self.events.append(report)
        super().epoch_done(report)

    def recorded(self, records: Sequence[TrialRecord]) -> None:
        self.events.append(tuple(record.trial_id for record in records))
        super().recorded(records)
