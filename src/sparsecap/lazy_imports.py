"""Package namespaces that import a submodule only when one of its names is first used (PEP 562).

Importing one light module (the spec, the CLI) runs its packages' `__init__`s; were those eager, every
command would pay for importing torch and scikit-learn, even those that never train.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence


def lazy_package(package: str, exports: Mapping[str, Sequence[str]]) -> tuple[Callable[[str], object], list[str]]:
    """The `__getattr__` and `__all__` of `package`: `exports` maps each submodule to the public names it
    defines, each imported from it when first asked for."""
    submodule_of = {name: submodule for submodule, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        if name not in submodule_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{submodule_of[name]}"), name)

    return __getattr__, sorted(submodule_of)
