"""normstat: one-pass, bounded-memory normalization statistics, and applying them.

``import normstat`` loads numpy only; h5py, pyarrow, click and dask are imported when a format or
command needs them.
"""

__version__ = "0.1.0"

from normstat.api import (  # noqa: E402
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
from normstat.artifact import load, save  # noqa: E402
from normstat.core.stats import Stats  # noqa: E402
from normstat.errors import ArtifactError, DataError, NormstatError, UsageError  # noqa: E402

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
