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


def optional_module(name: str, extra: str, what: str) -> Any:
    """The optional package ``name``, or a clear error: ``what`` needs it, from ``extra``."""
    try:
        return importlib.import_module(name)
    except ImportError:
        from normstat.errors import UsageError

        raise UsageError(f"{what} needs {name}: pip install 'normstat[{extra}]'") from None
