"""Unpickling files that should hold only numpy arrays in plain containers, without running any of their code.

Loading a pickle may call any importable function, so these files (CIFAR batches, MNIST-C's pessimal-noise
matrix) are read by an unpickler that resolves only the globals a numpy-array pickle needs. Protocol 2
writes every bytes object as ``_codecs.encode(text, "latin1")``; that call is honoured in exactly that
form, and in no other.
"""

import pickle
from typing import IO, Any

import numpy as np

from sparsecap.errors import SparsecapError

# numpy.core.multiarray._reconstruct (numpy 1) or numpy._core.multiarray._reconstruct (numpy 2), found without
# importing either path: the function this numpy itself pickles arrays with.
_reconstruct = np.empty(0).__reduce__()[0]

# Every global a numpy-array pickle needs, under the module names numpy 1.x and 2.x write.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_CODECS_ENCODE = ("_codecs", "encode")
_LATIN1 = ("latin1", "latin-1")


def _describe(argument: object) -> str:
    """An argument as an error message shows it: short strings in full, anything else by its type."""
    return repr(argument) if isinstance(argument, str) and len(argument) <= 20 else type(argument).__name__


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only, raising `error` for any other global."""

    def __init__(self, file: IO[bytes], source: str, error: type[SparsecapError], content: str) -> None:
        super().__init__(file, encoding="bytes")  # Python 2 pickles (the CIFAR batches) keep their str as bytes
        self._source = source
        self._error = error
        self._content = content

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == _CODECS_ENCODE:
            return self._latin1_bytes
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise self._error(
                f"{self._source}: pickle refers to {module}.{name}; {self._content} may only contain "
                "numpy arrays, so it was not loaded"
            ) from None

    def _latin1_bytes(self, *arguments: object) -> bytes:
        """`_codecs.encode` as protocol 2 uses it for bytes (a str encoded as latin-1), refusing any other use."""
        if len(arguments) == 2 and isinstance(arguments[0], str) and isinstance(arguments[1], str) \
                and arguments[1] in _LATIN1:
            return arguments[0].encode("latin-1")
        raise self._error(
            f"{self._source}: pickle calls _codecs.encode({', '.join(map(_describe, arguments))}); only "
            "_codecs.encode(str, 'latin1'), which pickle protocol 2 writes for bytes, is allowed, so it was not loaded"
        )


def load_numpy_pickle(file: IO[bytes], source: str, error: type[SparsecapError], content: str) -> object:
    """Unpickle `file` without running code; a forbidden global or corrupt bytes raise `error` naming `source`.

    `content` names what the file should be (e.g. "a CIFAR batch") in the refusal message.
    """
    try:
        return _NumpyOnlyUnpickler(file, source, error, content).load()
    except error:
        raise  # a refused global or call, already explained
    except Exception as failure:  # corrupt bytes fail in many ways: EOFError, UnpicklingError, UnicodeDecodeError...
        raise error(f"{source}: truncated or corrupt pickle ({type(failure).__name__}: {failure})") from failure
