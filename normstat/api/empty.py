"""Features without statistics (count 0: no finite value was fitted), said the same way by
``fit`` (a warning), ``apply`` and ``export`` (refusals unless ``allow_empty``)."""

from __future__ import annotations

import warnings

import numpy as np

from normstat.core.layout import feature_names_at
from normstat.core.stats import Stats
from normstat.errors import NormstatWarning


def empty_features(stats: Stats) -> list[str]:
    """Names of the features without any finite value (count 0): their statistics are null."""
    empty = np.flatnonzero(stats.count.reshape(-1) == 0)
    return feature_names_at(stats.features, stats.feature_shape, empty)


def features_have(n: int) -> str:
    """``1 feature has`` / ``3 features have``."""
    return f"{n} feature has" if n == 1 else f"{n} features have"


def describe_names(names: list[str], limit: int = 10) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def warn_empty(stats: Stats) -> None:
    """Warn (the CLI prints it on stderr) when features have no value at all: their statistics
    are null, and ``export`` / ``apply`` refuse them unless ``allow_empty``."""
    empty = empty_features(stats)
    if not empty:
        return
    rows = (stats.source or {}).get("shape") or [None]
    if rows[0] == 0:
        message = f"the data has no rows: no feature has statistics ({describe_names(empty)})"
    else:
        message = (
            f"{features_have(len(empty))} no finite value (count 0), of "
            f"{stats.moments.n_features}: {describe_names(empty)}; their statistics are null"
        )
    warnings.warn(
        NormstatWarning(message),
        stacklevel=3,
    )
