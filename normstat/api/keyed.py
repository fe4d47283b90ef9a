"""``--by COL`` and ``--weights COL``: the options checked once for the CLI and the library,
and the per-group statistics finished, summarised and applied.

The statistics themselves come from the ordinary fit pass: a table source reads the two columns
beside the features (:class:`~normstat.sources.reading.TableOptions`), and the per-chunk step
weighs the rows and keeps each group's moments beside the pooled ones (:mod:`normstat.core.
groups`), so the local engine, Dask and ``merge`` need no route of their own.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from normstat.core.bygroup import GroupParams
from normstat.core.groups import GroupedMoments, moments_of
from normstat.core.moments import Moments
from normstat.core.stats import Stats
from normstat.core.transform import TransformParams
from normstat.errors import ArtifactError, NormstatWarning, UsageError
from normstat.sources.reading import TableOptions


def check_keyed(
    by: str | None,
    weights: str | None,
    *,
    checkpoint: str | None = None,
    sketch: bool = False,
    rescale: float = 1.0,
) -> None:
    """What ``by`` and ``weights`` cannot be combined with yet, refused before any read."""
    for name, value in (("by", by), ("weights", weights)):
        if value is not None and (not isinstance(value, str) or not value):
            raise UsageError(f"{name}: expected a column name, received {value!r}")
    if by is not None and by == weights:
        raise UsageError(f"--by and --weights name the same column {by!r}")
    if by is None and weights is None:
        return
    flag = "--by" if by is not None else "--weights"
    if checkpoint:
        raise UsageError(f"{flag}: a fit by group or weighted cannot be checkpointed yet")
    if weights is not None and sketch:
        raise UsageError(
            "--weights: quantiles and the histogram are not weighted yet; fit them without "
            "--weights"
        )
    if by is not None and rescale != 1.0:
        raise UsageError("--by: per-group statistics are not combined with --rescale yet")


def keyed_table(table: TableOptions, by: str | None, weights: str | None) -> TableOptions:
    """The table options that make the sources read the two columns."""
    return dataclasses.replace(table, by=by, weights=weights)


def check_tables(srcs: list[Any], by: str | None, weights: str | None) -> None:
    if (by is not None or weights is not None) and srcs[0].kind != "table":
        flag = "--by" if by is not None else "--weights"
        raise UsageError(
            f"{flag} names a column: it needs a table source (Parquet, Arrow, CSV), not "
            f"{srcs[0].format}",
            path=srcs[0].path,
        )


def finish(moments: Moments, by: str | None, weights: str | None, n_features: int) -> None:
    """A fit of no rows still records its (empty) groups and weights."""
    if weights is not None and moments.weight is None:
        moments.weight = np.zeros(n_features)
    if by is not None and moments.groups is None:
        empty = moments_of(a.reshape(0, n_features) for a in Moments.empty(0).arrays())
        if weights is not None:
            empty.weight = np.zeros((0, n_features))
        moments.groups = GroupedMoments(np.zeros(0, np.int64), empty)


def zero_weight_note(stats: Stats) -> str | None:
    """Said on stderr: features whose every value weighs 0 have no statistics (count 0)."""
    if stats.weights is None:
        return None
    m = stats.moments
    zero = (m.count == 0) & (m.nan_count < int((stats.source.get("shape") or [0])[0] or 0))
    if not zero.any():
        return None
    return (
        f"{int(zero.sum())} feature(s) have a total weight of 0 (every value weighs 0): their "
        "statistics are null"
    )


FALLBACKS = ("error", "pooled")


def group_params(
    stats: Stats,
    pooled: TransformParams,
    by: str | None,
    fallback: str | None,
    **how: Any,
) -> GroupParams | None:
    """``apply --by``: every group's map, made as ``pooled`` was (``how``: the arguments of
    :func:`~normstat.core.transform.transform_params`); None without ``by``."""
    if fallback is not None and fallback not in FALLBACKS:
        raise UsageError(
            f"by_fallback: expected one of {', '.join(FALLBACKS)}, received {fallback!r}"
        )
    if by is None:
        if fallback is not None:
            raise UsageError("--by-fallback needs --by COL")
        return None
    if not isinstance(by, str) or not by:
        raise UsageError(f"by: expected a column name, received {by!r}")
    if stats.groups is None:
        raise ArtifactError(
            f"apply --by {by}: the statistics were not fitted by group; fit them with --by {by}"
        )
    if fallback == "pooled":
        warnings.warn(
            NormstatWarning(
                f"--by-fallback pooled: rows whose {by!r} value was not fitted are standardized "
                "with the pooled statistics"
            ),
            stacklevel=3,
        )
    return GroupParams.create(stats, pooled, by, fallback == "pooled", **how)
