"""The use cases, shared by the CLI and the library: fit, apply, merge, export, diff, drift.

Each CLI command parses its options and calls exactly one function here with the same parameter
names; nothing here prints.
"""

from normstat.api.combining import EXPORT_TARGETS, diff, drift, export, merge
from normstat.api.fitting import Accumulator, fit, fit_arrays
from normstat.api.options import ENGINES, ChunkSize, ProgressHook
from normstat.api.transforming import apply, transform

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
    "fit",
    "fit_arrays",
    "merge",
    "transform",
]
