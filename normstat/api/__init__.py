"""The use cases, shared by the CLI and the library: fit, apply, merge, export, diff, drift.

Each CLI command parses its options and calls exactly one function here with the same parameter
names; nothing here prints. Names load from their submodule on first use (PEP 562), so a ``fit``
does not import what only ``apply`` or ``merge`` need: every import is start-up time of the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from normstat.lazy import lazy_exports

_EXPORTS = {
    "EXPORT_TARGETS": "normstat.api.combining",
    "diff": "normstat.api.combining",
    "drift": "normstat.api.combining",
    "export": "normstat.api.combining",
    "export_arrays": "normstat.api.combining",
    "merge": "normstat.api.combining",
    "Accumulator": "normstat.api.fitting",
    "fit": "normstat.api.fitting",
    "fit_arrays": "normstat.api.fitting",
    "ENGINES": "normstat.api.options",
    "ChunkSize": "normstat.api.options",
    "ProgressHook": "normstat.api.options",
    "apply": "normstat.api.transforming",
    "transform": "normstat.api.transforming",
}

__all__ = [
    "ENGINES",
    "EXPORT_TARGETS",
    "Accumulator",
    "ChunkSize",
    "ProgressHook",
    "apply",
    "diff",
    "drift",
    "export",
    "export_arrays",
    "fit",
    "fit_arrays",
    "merge",
    "transform",
]

if TYPE_CHECKING:
    from normstat.api.combining import (
        EXPORT_TARGETS,
        diff,
        drift,
        export,
        export_arrays,
        merge,
    )
    from normstat.api.fitting import Accumulator, fit, fit_arrays
    from normstat.api.options import ENGINES, ChunkSize, ProgressHook
    from normstat.api.transforming import apply, transform


__getattr__ = lazy_exports("normstat.api", _EXPORTS)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
