"""normstat: one-pass, bounded-memory normalization statistics, and applying them.

The public names are loaded on first use (PEP 562), so ``import normstat`` is nearly free: the
console entry point can install its signal handlers before numpy is imported, and h5py, pyarrow,
click and dask are imported only when a format or command needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from normstat.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Accumulator": "normstat.api.fitting",
    "apply": "normstat.api.transforming",
    "diff": "normstat.api.combining",
    "drift": "normstat.api.combining",
    "export": "normstat.api.combining",
    "fit": "normstat.api.fitting",
    "fit_arrays": "normstat.api.fitting",
    "merge": "normstat.api.combining",
    "transform": "normstat.api.transforming",
    "load": "normstat.artifact",
    "save": "normstat.artifact",
    "Stats": "normstat.core.stats",
    "ArtifactError": "normstat.errors",
    "DataError": "normstat.errors",
    "NormstatError": "normstat.errors",
    "UsageError": "normstat.errors",
}

__all__ = [
    "Accumulator",
    "ArtifactError",
    "DataError",
    "NormstatError",
    "Stats",
    "UsageError",
    "__version__",
    "apply",
    "diff",
    "drift",
    "export",
    "fit",
    "fit_arrays",
    "load",
    "merge",
    "save",
    "transform",
]

if TYPE_CHECKING:
    from normstat.api import (
        Accumulator,
        apply,
        diff,
        drift,
        export,
        fit,
        fit_arrays,
        merge,
        transform,
    )
    from normstat.artifact import load, save
    from normstat.core.stats import Stats
    from normstat.errors import ArtifactError, DataError, NormstatError, UsageError


__getattr__ = lazy_exports("normstat", _EXPORTS)


def __dir__() -> list[str]:
    return __all__
