"""Package attributes loaded from their submodule on first use (PEP 562).

Standard library only: ``normstat`` itself uses it, and the console entry point must install its
signal handlers before numpy, h5py or pyarrow are imported.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``exports`` maps a public name to the module that
    defines it; the value is cached in the package once loaded."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
