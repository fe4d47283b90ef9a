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

from normstat.api.inputs import is_table
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
    sketch: bool = False,
) -> None:
    """What ``by`` and ``weights`` cannot be combined with yet, refused before any read."""
    for name, value in (("by", by), ("weights", weights)):
        if value is not None and (not isinstance(value, str) or not value):
            raise UsageError(f"{name}: expected a column name, received {value!r}")
    if weights is not None and sketch:
        raise UsageError(
            "--weights: quantiles and the histogram are not weighted yet (the distribution "
            "summary counts each value once); fit them in a run without --weights"
        )
    if by is not None and by == weights:
        raise UsageError(f"--by and --weights name the same column {by!r}")


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


def split_keyed(
    batch: Any, by: Any, weights: Any, n_rows: int | None = None
) -> tuple[Any, dict[str, Any] | None]:
    """An in-memory batch and its ``by`` keys / ``weights``: arrays of one value per row, or
    (a table) names of its columns, which are then not features. Returns the batch (without
    those columns) and the chunk's ``extra`` (:class:`~normstat.sources.base.Chunk`)."""
    if by is None and weights is None:
        return batch, None
    named = [v for v in (by, weights) if isinstance(v, str)]
    if named and not is_table(batch):
        raise UsageError(f"by / weights name columns ({named}); the batch is not a table")
    keys = None if by is None else _values(batch, by, "by")
    w = None if weights is None else _values(batch, weights, "weights")
    if named:
        batch = _without(batch, named)
    extra: dict[str, Any] = {}
    if keys is not None:
        if keys.ndim != 1:
            raise UsageError(f"by: expected one key per row, received shape {list(keys.shape)}")
        values, codes = np.unique(keys, return_inverse=True)
        if values.dtype.kind in "iub":
            values = values.astype(np.int64)
        elif values.dtype.kind in "OSU":
            values = values.astype(str)
        else:
            raise UsageError(f"by: keys must be integers or strings, received {keys.dtype}")
        extra["by"] = (codes.reshape(-1), values)
    if w is not None:
        try:
            extra["weights"] = np.asarray(w, np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise UsageError(f"weights: expected numbers, received {w.dtype}") from None
    for name, arr in (("by", keys), ("weights", w)):
        if arr is not None and n_rows is not None and len(arr) != n_rows:
            raise UsageError(f"{name}: {len(arr)} values for {n_rows} rows")
    return batch, extra


def _values(batch: Any, v: Any, name: str) -> np.ndarray:
    if isinstance(v, str):
        cols = list(batch.column_names if hasattr(batch, "column_names") else batch.columns)
        if v not in cols:
            raise UsageError(f"{name}: no column {v!r} in the table; its columns are {cols}")
        return np.asarray(batch[v])
    return np.asarray(v)


def _without(batch: Any, names: list[str]) -> Any:
    if hasattr(batch, "drop_columns"):  # pyarrow
        return batch.drop_columns(names)
    return batch.drop(columns=names) if hasattr(batch, "loc") else batch.drop(names)  # polars
