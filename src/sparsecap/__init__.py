"""sparsecap: does sparsity itself or lost capacity make compressed networks fragile?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sparsecap")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
