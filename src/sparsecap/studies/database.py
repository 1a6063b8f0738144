"""The study's results database: one SQLite file, one transaction per finished trial.

SQLite is embedded (nothing to run), transactional (a killed run leaves either a whole trial or none)
and readable by any tool, which is what a resumable study on one machine needs.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sparsecap.errors import StudyDirectoryError

DATABASE_FILE = "results.sqlite"
STORAGE_KEY = "storage"
"""The study key naming the checkpoints' `--storage` directory of the latest run (null: the study directory)."""
FINISHED = "finished"
"""The status of a trial that trained and was evaluated."""
DIVERGED = "diverged"
"""The status of a trial whose training loss blew up (`sparsecap.training.divergence`): kept, never retried, left
out of the statistics."""
FAILED = "failed"
"""The status of a trial that raised (or whose worker died too often): recorded with its error, retried on rerun."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS study (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    trial_id TEXT PRIMARY KEY,
    architecture TEXT NOT NULL,
    dataset TEXT NOT NULL,
    family TEXT NOT NULL,
    width INTEGER NOT NULL,
    depth INTEGER NOT NULL,
    schedule TEXT NOT NULL,
    allocation TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    total_weights INTEGER NOT NULL,
    nonzero_weights INTEGER NOT NULL,
    base_nonzero INTEGER NOT NULL,
    remaining_percent REAL NOT NULL,
    unmasked_parameters INTEGER NOT NULL,
    disconnected_units INTEGER NOT NULL,
    epochs INTEGER NOT NULL,
    final_train_loss REAL,
    test_accuracy REAL,
    test_loss REAL,
    min_class_recall REAL,
    train_seconds REAL NOT NULL,
    checkpoint TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    error TEXT,
    threads INTEGER,
    checkpoint_sha256 TEXT,
    device TEXT,
    device_name TEXT,
    torch_version TEXT,
    cuda_version TEXT,
    path_fraction_log10 REAL,
    min_effective_width_fraction REAL,
    ineffective_units INTEGER
);
CREATE TABLE IF NOT EXISTS epochs (
    trial_id TEXT NOT NULL REFERENCES trials(trial_id),
    epoch INTEGER NOT NULL,
    train_loss REAL,
    PRIMARY KEY (trial_id, epoch)
);
CREATE TABLE IF NOT EXISTS class_recall (
    trial_id TEXT NOT NULL REFERENCES trials(trial_id),
    class_index INTEGER NOT NULL,
    recall REAL,
    PRIMARY KEY (trial_id, class_index)
);
CREATE TABLE IF NOT EXISTS weight_noise (
    trial_id TEXT NOT NULL REFERENCES trials(trial_id),
    sigma REAL NOT NULL,
    draw INTEGER NOT NULL,
    accuracy REAL NOT NULL,
    loss REAL,
    delta_loss REAL,
    PRIMARY KEY (trial_id, sigma, draw)
);
CREATE TABLE IF NOT EXISTS adversarial (
    trial_id TEXT NOT NULL REFERENCES trials(trial_id),
    attack TEXT NOT NULL,
    epsilon REAL NOT NULL,
    robust_accuracy REAL NOT NULL,
    success_rate REAL,
    examples INTEGER NOT NULL,
    PRIMARY KEY (trial_id, attack, epsilon)
);
CREATE TABLE IF NOT EXISTS layer_connectivity (
    trial_id TEXT NOT NULL REFERENCES trials(trial_id),
    layer_index INTEGER NOT NULL,
    layer TEXT NOT NULL,
    units INTEGER NOT NULL,
    effective_units INTEGER NOT NULL,
    PRIMARY KEY (trial_id, layer_index)
);
CREATE TABLE IF NOT EXISTS corruption (
    trial_id TEXT NOT NULL REFERENCES trials(trial_id),
    corruption TEXT NOT NULL,
    severity INTEGER NOT NULL,
    draw INTEGER NOT NULL,
    accuracy REAL NOT NULL,
    loss REAL,
    PRIMARY KEY (trial_id, corruption, severity, draw)
);
"""


@dataclass(frozen=True)
class TrialRecord:
    """Everything one finished trial contributes to the database (the `trials` row plus its children)."""

    trial_id: str
    architecture: str
    dataset: str
    family: str
    width: int
    depth: int
    schedule: str
    allocation: str
    seed: int
    status: str
    total_weights: int
    nonzero_weights: int
    base_nonzero: int
    remaining_percent: float
    unmasked_parameters: int
    disconnected_units: int
    epochs: int
    final_train_loss: float | None
    test_accuracy: float | None
    test_loss: float | None
    min_class_recall: float | None
    train_seconds: float
    checkpoint: str
    finished_at: str
    epoch_losses: Sequence[float] = field(default_factory=tuple)
    class_recall: Sequence[float] = field(default_factory=tuple)
    weight_noise: Sequence[Mapping[str, float]] = field(default_factory=tuple)
    """Rows with keys sigma, draw, accuracy, loss, delta_loss."""
    adversarial: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    """Rows with keys attack, epsilon, robust_accuracy, success_rate, examples."""
    corruption: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    """Rows with keys corruption, severity, draw, accuracy, loss."""
    layer_connectivity: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    """Per hidden layer of units (sparsecap.sparsity.connectivity), in graph order: rows with keys layer, units,
    effective_units (those on an input-to-output path through kept weights)."""
    error: str | None = None
    """Why a trial with status "failed" failed (the exception and its traceback); None otherwise."""
    threads: int | None = None
    """The torch threads it ran with: they change float reduction order, so the last bits of results."""
    checkpoint_sha256: str | None = None
    """SHA-256 of the checkpoint file as written, so a resume or a report can tell a damaged one."""
    device: str | None = None
    """Where it ran (cpu, cuda:N, mps), with the device's name and the torch and CUDA versions: not part of
    what the trial is, as a study may be resumed on another device."""
    device_name: str | None = None
    torch_version: str | None = None
    cuda_version: str | None = None
    path_fraction_log10: float | None = None
    """log10 of the fraction of the dense network's input-to-output paths the final mask keeps: -inf when
    none survives, None when not measured (a failed trial, or a database from before it was measured)."""
    min_effective_width_fraction: float | None = None
    """The narrowest hidden layer's units on an input-to-output path, as a fraction of its width."""
    ineffective_units: int | None = None
    """Hidden units on no input-to-output path (cut off from the input or from the output)."""


_CHILD_FIELDS = ("epoch_losses", "class_recall", "weight_noise", "adversarial", "corruption", "layer_connectivity")
_CHILD_TABLES = ("epochs", "class_recall", "weight_noise", "adversarial", "corruption", "layer_connectivity")
_ADDED_COLUMNS = {"error": "TEXT", "threads": "INTEGER", "checkpoint_sha256": "TEXT", "device": "TEXT",
                  "device_name": "TEXT", "torch_version": "TEXT", "cuda_version": "TEXT",
                  "path_fraction_log10": "REAL", "min_effective_width_fraction": "REAL", "ineffective_units": "INTEGER"}
"""Columns added to `trials` after its first release, added to an older database when it is opened."""


def _unusable(path: Path, reason: str) -> StudyDirectoryError:
    denied = _denied(path, reason)
    if denied:  # not damage: moving the database aside would only cost its trials
        return StudyDirectoryError(f"{path} {denied} ({reason}); nothing was changed. Give this user read access to "
                                   f"it and to {path.parent} (for reports and claims; write access too, to run the "
                                   f"study further), then rerun")
    return StudyDirectoryError(
        f"{path} is not a usable sparsecap results database ({reason}); nothing was changed. If it is damaged, "
        f"move it aside and rerun: trials whose checkpoints remain are not lost, but they are trained again"
    )


def _denied(path: Path, reason: str) -> str | None:
    """What the file system refuses this user about the database, if that is why SQLite failed."""
    if not os.access(path.parent, os.R_OK | os.X_OK) or (path.exists() and not os.access(path, os.R_OK)):
        return "cannot be read by this user"
    if "readonly" in reason and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        return "cannot be written by this user"
    return None


@contextmanager
def _connect(path: Path, mode: str) -> Iterator[sqlite3.Connection]:
    """A connection (SQLite mode ro, rw or rwc) whose SQLite errors (a damaged file, a read-only
    directory) become a plain message."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode={mode}", uri=True)
    except sqlite3.Error as error:
        raise _unusable(path, str(error)) from None
    connection.row_factory = sqlite3.Row
    try:
        yield connection
    except sqlite3.DatabaseError as error:
        raise _unusable(path, str(error)) from None
    finally:
        connection.close()


class StudyDatabase:
    """The results of one study directory; every write is a single transaction.

    `StudyDatabase(directory)` opens an existing database; `StudyDatabase.create(directory)` also makes a
    new one. Either refuses, changing nothing, a file that is empty, damaged or not a results database.
    """

    def __init__(self, directory: Path, read_only: bool = True) -> None:
        self.path = Path(directory) / DATABASE_FILE
        self.read_only = read_only
        if self.path.exists() and not self.path.is_file():
            raise StudyDirectoryError(f"{self.path} is not a file (a directory?), so not a results database; nothing "
                                      f"was changed. Move it aside: a study run writes {self.path}")
        if not self.path.is_file():
            raise StudyDirectoryError(f"no results database in {directory}: expected {self.path} written by a study run")
        if self.path.stat().st_size == 0:
            raise _unusable(self.path, "the file is empty")
        with _connect(self.path, "ro") as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"study", "trials"} <= tables:
                raise _unusable(self.path, f"it has no study or trials table, only {sorted(tables) or 'none'}")
            columns = {row["name"] for row in connection.execute("PRAGMA table_info(trials)")}
        missing = {name: kind for name, kind in _ADDED_COLUMNS.items() if name not in columns}
        if (missing or not set(_CHILD_TABLES) <= tables) and not read_only:  # an earlier version's: gains the new parts
            with self._connection() as connection, connection:
                connection.executescript(SCHEMA)  # creates only the tables it lacks
                for name, kind in missing.items():
                    connection.execute(f"ALTER TABLE trials ADD COLUMN {name} {kind}")

    @classmethod
    def create(cls, directory: Path) -> StudyDatabase:
        """The directory's database for writing, made with the schema if there is none yet."""
        path = Path(directory) / DATABASE_FILE
        if not path.exists():
            with _connect(path, "rwc") as connection, connection:
                connection.executescript(SCHEMA)
        return cls(directory, read_only=False)

    def _connection(self) -> AbstractContextManager[sqlite3.Connection]:
        return _connect(self.path, "ro" if self.read_only else "rw")

    def metadata(self) -> dict[str, Any]:
        """The study-level facts (spec, spec hash, versions), decoded from JSON."""
        with self._connection() as connection:
            rows = connection.execute("SELECT key, value FROM study").fetchall()
        try:
            return {row["key"]: json.loads(row["value"]) for row in rows}
        except json.JSONDecodeError as error:
            raise _unusable(self.path, f"its study table holds a value that is not JSON: {error}") from None

    def write_metadata(self, metadata: Mapping[str, Any]) -> None:
        with self._connection() as connection, connection:
            connection.executemany(
                "INSERT OR REPLACE INTO study (key, value) VALUES (?, ?)",
                [(key, json.dumps(value, sort_keys=True)) for key, value in metadata.items()],
            )

    def record_trial(self, record: TrialRecord) -> None:
        """Insert a trial and its rows in every child table (`_CHILD_TABLES`) atomically."""
        row = {key: value for key, value in asdict(record).items() if key not in _CHILD_FIELDS}
        columns = ", ".join(row)
        placeholders = ", ".join(f":{key}" for key in row)
        with self._connection() as connection, connection:
            # A retried trial (failed, or its checkpoint damaged) replaces its rows in the same transaction.
            for table in (*_CHILD_TABLES, "trials"):
                connection.execute(f"DELETE FROM {table} WHERE trial_id = ?", (record.trial_id,))
            connection.execute(f"INSERT INTO trials ({columns}) VALUES ({placeholders})", row)
            connection.executemany(
                "INSERT INTO epochs (trial_id, epoch, train_loss) VALUES (?, ?, ?)",
                [(record.trial_id, epoch + 1, loss) for epoch, loss in enumerate(record.epoch_losses)],
            )
            connection.executemany(
                "INSERT INTO class_recall (trial_id, class_index, recall) VALUES (?, ?, ?)",
                [(record.trial_id, index, recall) for index, recall in enumerate(record.class_recall)],
            )
            connection.executemany(
                "INSERT INTO weight_noise (trial_id, sigma, draw, accuracy, loss, delta_loss) "
                "VALUES (:trial_id, :sigma, :draw, :accuracy, :loss, :delta_loss)",
                [{"trial_id": record.trial_id, **noise} for noise in record.weight_noise],
            )
            connection.executemany(
                "INSERT INTO adversarial (trial_id, attack, epsilon, robust_accuracy, success_rate, examples) "
                "VALUES (:trial_id, :attack, :epsilon, :robust_accuracy, :success_rate, :examples)",
                [{"trial_id": record.trial_id, **row} for row in record.adversarial],
            )
            connection.executemany(
                "INSERT INTO corruption (trial_id, corruption, severity, draw, accuracy, loss) "
                "VALUES (:trial_id, :corruption, :severity, :draw, :accuracy, :loss)",
                [{"trial_id": record.trial_id, **row} for row in record.corruption],
            )
            connection.executemany(
                "INSERT INTO layer_connectivity (trial_id, layer_index, layer, units, effective_units) "
                "VALUES (:trial_id, :layer_index, :layer, :units, :effective_units)",
                [{"trial_id": record.trial_id, "layer_index": index, **row}
                 for index, row in enumerate(record.layer_connectivity)],
            )

    def rows(self, table: str) -> list[dict[str, Any]]:
        """All rows of one results table as dictionaries (for reports and tests)."""
        if table not in {"trials", *_CHILD_TABLES}:
            raise ValueError(f"unknown results table {table!r}")
        with self._connection() as connection:
            numeric = [row["name"] for row in connection.execute(f"PRAGMA table_info({table})")
                       if row["type"] in ("INTEGER", "REAL")]
            rows = [dict(row) for row in connection.execute(f"SELECT * FROM {table} ORDER BY rowid")]
        for index, row in enumerate(rows, start=1):  # SQLite keeps any value in any column: text is damage
            wrong = next((column for column in numeric if isinstance(row[column], str | bytes)), None)
            if wrong is not None:
                raise _unusable(self.path, f"{table}.{wrong} of row {index} is {row[wrong]!r}, not a number")
        return rows
