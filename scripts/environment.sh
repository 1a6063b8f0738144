# Sourced by scripts/quickstart and scripts/test: create (or reuse) .venv with sparsecap installed.
# PyTorch comes first and CPU-only: a plain `pip install torch` would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
    if pip install --quiet --no-index --no-deps torch==2.13.0 2>/dev/null; then
        # A local CPU wheel (pip's find-links, as on this project's machines); its dependencies from PyPI.
        pip install --quiet torch==2.13.0
    else
        pip install --quiet torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
            --extra-index-url https://pypi.org/simple
    fi
fi
# SPARSECAP_EXTRAS: the extras to install (default test; empty for sparsecap alone, as scripts/quickstart does).
extras=${SPARSECAP_EXTRAS-test}
pip install --quiet --editable ".${extras:+[$extras]}"
