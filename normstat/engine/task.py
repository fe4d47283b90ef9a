"""The per-chunk step shared by every engine: validate, then compute moments.

A clean chunk (no NaN, no inf: the common case) takes the cache-blocked single-read kernel, which
notices non-finite values on the way; only then is the chunk searched for the value to blame, or
reduced by the NaN-skipping kernel. A table chunk arrives as its columns and is reduced column by
column, the same way: a Parquet column is decoded here, in the worker, just before it is reduced.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    if chunk.columns is not None and _width(chunk.columns) == layout.n_features:
        return _by_column(chunk, layout, nan_policy, features, sketch)
    _check_shape(chunk, layout)
    rows = layout.to_rows(chunk.data)
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
    j = 0
    for col in chunk.columns:
        rows = col.reshape(len(col), -1)  # a feature group arrives as its (rows, k) matrix
        part = column_moments(col) if col.ndim == 1 else finite_moments(rows)
        if part is None:
            _check(rows, chunk, layout, nan_policy, features, feature_offset=j)
            part = chunk_moments(rows)
        if sketch is not None:
            part.sketch = sketch.build(rows, j)
        parts.append(part)
        j += rows.shape[1]
    return Moments.join(parts)


def _width(columns: Sequence[np.ndarray]) -> int:
    """Features in a table chunk's columns (a group's matrix counts its columns); a column
    decoded on demand (Parquet) is not decoded here: its width is known from its source."""
    width = getattr(columns, "width", None)
    if width is not None:
        return int(width)
    return sum(1 if c.ndim == 1 else c.shape[1] for c in columns)


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
