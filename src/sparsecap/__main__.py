"""`python -m sparsecap`: the `sparsecap` command, for an environment whose scripts directory is not on PATH."""

from sparsecap.cli import run_and_exit

run_and_exit()
