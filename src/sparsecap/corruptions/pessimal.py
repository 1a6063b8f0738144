"""MNIST-C's pessimal-noise matrix: the user's copy of the reference file (sparsecap cannot ship it), checked.

The path comes from the caller (`--pessimal-matrix` on the command line) or, failing that, from the
environment variable ``SPARSECAP_PESSIMAL_MATRIX``. Without one, pessimal_noise is **skipped** as frost is
without pictures (suite-wide generation and the study measure leave it out and say so; asking for it
alone raises `PessimalMatrixUnavailableError`): the matrix was optimised against a trained classifier,
so no stand-in could give the same noise.

The file is the reference's `pessimal_noise_matrix`, a pickle of a 196×196 float32 numpy array, read
without running any code (`sparsecap.data.safe_pickle`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from sparsecap.corruptions.assets import user_path
from sparsecap.data.safe_pickle import load_numpy_pickle
from sparsecap.errors import PessimalMatrixUnavailableError

PESSIMAL_ENV_VAR = "SPARSECAP_PESSIMAL_MATRIX"
MATRIX_SHAPE = (196, 196)  # one 14×14 tile, flattened, in and out


def matrix_path(path: Path | str | None = None) -> Path | None:
    """The explicit path, else ``$SPARSECAP_PESSIMAL_MATRIX``, else None (pessimal_noise is then skipped)."""
    return user_path(path, PESSIMAL_ENV_VAR)


def _existing_file(path: Path | str | None) -> Path:
    resolved = matrix_path(path)
    if resolved is None:
        raise PessimalMatrixUnavailableError(
            "pessimal_noise needs the reference's 196×196 pessimal-noise matrix (MNIST-C's file "
            f"pessimal_noise_matrix), which sparsecap cannot ship: pass --pessimal-matrix FILE to sparsecap "
            f"corrupt, or set ${PESSIMAL_ENV_VAR}=FILE (also read by sparsecap run)"
        )
    if not resolved.is_file():
        raise PessimalMatrixUnavailableError(f"pessimal-noise matrix {resolved} does not exist or is not a file")
    return resolved


def load_matrix(path: Path | str | None) -> np.ndarray:
    """The checked, read-only 196×196 matrix; raises PessimalMatrixUnavailableError if missing or malformed."""
    resolved = _existing_file(path)
    with resolved.open("rb") as file:
        matrix = load_numpy_pickle(file, str(resolved), PessimalMatrixUnavailableError, "the pessimal-noise matrix")
    if not isinstance(matrix, np.ndarray) or matrix.shape != MATRIX_SHAPE or not np.issubdtype(matrix.dtype,
                                                                                                 np.floating):
        found = (f"dtype {matrix.dtype}, shape {matrix.shape}" if isinstance(matrix, np.ndarray)
                 else f"a pickled {type(matrix).__name__}")
        raise PessimalMatrixUnavailableError(
            f"{resolved}: expected a 196×196 float32 numpy array (the reference's pessimal_noise_matrix), "
            f"found {found}"
        )
    if not np.isfinite(matrix).all() or not matrix.any():
        raise PessimalMatrixUnavailableError(
            f"{resolved}: the matrix must be finite and not all zero (its noise is rescaled to a fixed norm)"
        )
    matrix.setflags(write=False)
    return matrix


def matrix_digest(path: Path | str | None) -> str | None:
    """A checksum of the matrix file (for manifests and cache keys), or None without a path."""
    if matrix_path(path) is None:
        return None
    return hashlib.sha256(_existing_file(path).read_bytes()).hexdigest()
