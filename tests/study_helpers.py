"""Small study specs shared by the study and CLI tests."""

import sqlite3
from pathlib import Path

from sparsecap.studies import StudyDatabase

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


def finished_trial_count(database: Path) -> int:
    """Trials recorded so far, read while another process may be creating or writing the database."""
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        try:
            return connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
