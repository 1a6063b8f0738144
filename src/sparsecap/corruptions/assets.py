"""Where the user keeps the files some corruptions need and sparsecap cannot ship (frost pictures, the
pessimal-noise matrix): an explicit path, else an environment variable, else none (the corruption is skipped)."""

from __future__ import annotations

import os
from pathlib import Path


def user_path(explicit: Path | str | None, env_var: str) -> Path | None:
    """The explicit path, else ``$env_var``, else None."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if env := os.environ.get(env_var):
        return Path(env).expanduser()
    return None
