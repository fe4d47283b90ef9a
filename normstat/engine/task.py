"""The per-chunk step shared by every engine: validate, then compute moments.

A clean chunk (no NaN, no inf: the common case) takes the cache-blocked single-read kernel, which
notices non-finite values on the way; only then is the chunk searched for the value to blame, or
reduced by the NaN-skipping kernel. A table chunk arrives as its columns and is reduced column by
column, the same way: a Parquet column is decoded here, in the worker, just before it is reduced.
"""

from __future__ import annotations

import numpy as np

from normstat.core.blocked import column_moments, finite_moments
from normstat.core.checks import NanPolicy, find_forbidden
from normstat.core.histogram import SketchSpec
from normstat.core.layout import AxisLayout
from normstat.core.moments import Moments, chunk_moments
from normstat.errors import DataError
from normstat.sources.base import Chunk


def chunk_task(
    chunk: Chunk,
    layout: AxisLayout,
    nan_policy: NanPolicy,
    features: list[str] | None = None,
    sketch: SketchSpec | None = None,
) -> Moments:
    """The chunk's moments, with its distribution summary beside them when ``sketch`` asks."""
    if chunk.columns is not None and len(chunk.columns) == layout.n_features:
        return _by_column(chunk, layout, nan_policy, features, sketch)
    rows = layout.to_rows(chunk.data)
    moments = finite_moments(rows)
    if moments is None:
        _check(rows, chunk, layout, nan_policy, features)
        moments = chunk_moments(rows)
    if sketch is not None:
        moments.sketch = sketch.build(rows)
    return moments


def _by_column(
    chunk: Chunk,
    layout: AxisLayout,
    nan_policy: NanPolicy,
    features: list[str] | None,
    sketch: SketchSpec | None,
) -> Moments:
    assert chunk.columns is not None
    parts = []
    for j, col in enumerate(chunk.columns):
        part = column_moments(col)
        if part is None:
            _check(col.reshape(-1, 1), chunk, layout, nan_policy, features, feature_offset=j)
            part = chunk_moments(col.reshape(-1, 1))
        if sketch is not None:
            part.sketch = sketch.build(col.reshape(-1, 1), j)
        parts.append(part)
    return Moments.join(parts)


def _check(
    rows: np.ndarray,
    chunk: Chunk,
    layout: AxisLayout,
    nan_policy: NanPolicy,
    features: list[str] | None,
    feature_offset: int = 0,
) -> None:
    """Raise the error that names the first forbidden value's row and feature, if any."""
    bad = find_forbidden(rows, nan_policy)
    if bad is None:
        return
    what, r, f = bad
    f += feature_offset
    row = chunk.start + layout.sample_of(r)
    feature = features[f] if features else layout.feature_label(f)
    hint = " (use --nan skip to ignore NaN)" if what == "NaN" else ""
    raise DataError(
        f"{what} at row {row}, feature {feature}{hint}",
        path=chunk.path,
        dataset=chunk.dataset,
        feature=feature,
        row=row,
    )
