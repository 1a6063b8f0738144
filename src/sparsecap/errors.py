"""One base class for every error a user can cause, so the CLI can report it cleanly (no traceback)."""


class SparsecapError(Exception):
    """A problem with the user's input or environment; the message says what was wrong and what is valid."""


class DatasetNotFoundError(SparsecapError):
    """The dataset's files are in none of the places searched."""


class DatasetFormatError(SparsecapError):
    """A dataset file exists but is truncated, corrupt or of the wrong layout."""


class SpecError(SparsecapError):
    """A study spec is invalid (unknown key, wrong type, unknown name, impossible value)."""


class AllocationError(SparsecapError):
    """A sparsity allocation cannot be satisfied (e.g. a layer asked to hold more nonzeros than it has)."""


class StudyDirectoryError(SparsecapError):
    """The output directory holds a different study or is unusable."""


class CorruptionError(SparsecapError):
    """A corruption was asked for with an unknown name, a severity out of range, or unusable images."""


class AssetUnavailableError(CorruptionError):
    """A corruption needs a file sparsecap cannot ship, and none (or none usable) was given: it is skipped."""


class FrostUnavailableError(AssetUnavailableError):
    """The frost corruption needs a directory of frost pictures, and none (or none usable) was given."""


class PessimalMatrixUnavailableError(AssetUnavailableError):
    """MNIST-C pessimal_noise needs the reference's 196×196 matrix file, and none (or none usable) was given."""
