"""Where a study's trials can run, by the names the command line takes (no torch: chosen before a spec loads)."""

from __future__ import annotations

import enum


class Executor(str, enum.Enum):
    """Where a study's trials run; the database is written by the calling process either way."""

    LOCAL = "local"
    """This machine: `--workers` processes (`sparsecap.studies.workers`), or this process alone with one."""
    RAY = "ray"
    """Ray tasks on a local Ray instance or a cluster (`sparsecap.studies.ray_executor`)."""
