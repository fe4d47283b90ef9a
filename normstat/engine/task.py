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
from normstat.sources.base import Chunk, stack_columns

COLUMN_MIN_ROWS = 2**14
"""Rows from which a table chunk is reduced column by column; a shorter one (a small shard) is
stacked into a row-major matrix and reduced in one call, as Python's cost per column call would
exceed the column's own (docs/performance.md, many small files)."""


def chunk_task(
    chunk: Chunk,
    layout: AxisLayout,
    nan_policy: NanPolicy,
    features: list[str] | None = None,
    sketch: SketchSpec | None = None,
) -> Moments:
    # values near float64's limit overflow the sums: checked below, never warned about
    with np.errstate(over="ignore", invalid="ignore"):
        part = _chunk_task(chunk, layout, nan_policy, features, sketch)
        check_finite(part, chunk.path, chunk.dataset, layout, features)
    return part


def check_finite(
    m: Moments,
    path: str,
    dataset: str | None,
    layout: AxisLayout,
    features: list[str] | None,
) -> None:
    """Refuse moments that overflowed float64 (data near 1e308): the statistics would be inf
    or NaN, and a mean or a variance of that data is not representable anyway."""
    with np.errstate(over="ignore", invalid="ignore"):
        bad = (m.count > 0) & ~(np.isfinite(m.mean) & np.isfinite(m.m2))
    if not bad.any():
        return
    f = int(np.argmax(bad))
    feature = features[f] if features else layout.feature_label(f)
    raise DataError(
        f"the statistics of feature {feature} overflow float64: its values come near the "
        f"float64 limit (max |x| {max(abs(m.min[f]), abs(m.max[f])):.3g}); rescale the data",
        path=path,
        dataset=dataset,
        feature=feature,
    )


def _chunk_task(
    chunk: Chunk,
    layout: AxisLayout,
    nan_policy: NanPolicy,
    features: list[str] | None,
    sketch: SketchSpec | None,
) -> Moments:
    """The chunk's moments, with its distribution summary beside them when ``sketch`` asks."""
    if chunk.columns is not None and len(chunk.columns) == layout.n_features:
        if chunk.rows >= COLUMN_MIN_ROWS:
            return _by_column(chunk, layout, nan_policy, features, sketch)
        data = stack_columns(list(chunk.columns), chunk.rows, order="C")
    else:
        _check_shape(chunk, layout)
        data = chunk.data
    rows = layout.to_rows(data)
    moments = finite_moments(rows)
    if moments is None:
        _check(rows, chunk, layout, nan_policy, features)
        moments = chunk_moments(rows)
    if sketch is not None:
        moments.sketch = sketch.build(rows)
    return moments


def _check_shape(chunk: Chunk, layout: AxisLayout) -> None:
    """Samples may differ in length on reduced axes (images of other sizes), not on kept ones."""
    axis = layout.kept_mismatch(chunk.data.shape)
    if axis is not None:
        raise DataError(
            f"sample shape {list(chunk.data.shape[1:])} differs from the first sample's "
            f"{list(layout.sample_shape)} on kept axis {axis}: statistics kept per position need "
            "samples of one shape (images: --resize SIZE and --center-crop H W)",
            path=chunk.path,
            dataset=chunk.dataset,
            row=chunk.start,
        )


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
