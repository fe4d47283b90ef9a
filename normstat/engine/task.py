"""The per-chunk step shared by every engine: validate, then compute moments.

A source that decodes in its own processes (images) runs the step there, given as a
:class:`FitStep`, and hands over chunks that carry their moments already: only those few bytes
cross the process boundary, and the engine merges them like any other chunk's.

A clean chunk (no NaN, no inf: the common case) takes the cache-blocked single-read kernel, which
notices non-finite values on the way; only then is the chunk searched for the value to blame, or
reduced by the NaN-skipping kernel. A table chunk arrives as its columns and is reduced column by
column, the same way: a Parquet column is decoded here, in the worker, just before it is reduced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from normstat.core.blocked import column_moments, finite_moments
from normstat.core.checks import NanPolicy, find_forbidden
from normstat.core.groups import (
    GroupedMoments,
    GroupIndex,
    Workspace,
    check_weights,
    grouped_moments,
    pooled_moments,
    weighted_moments,
)
from normstat.core.histogram import SketchSpec
from normstat.core.layout import AxisLayout
from normstat.core.moments import Moments, chunk_moments, merge_all
from normstat.errors import DataError
from normstat.sources.base import Chunk, stack_columns

COLUMN_MIN_ROWS = 2**14
"""Rows from which a table chunk is reduced column by column; a shorter one (a small shard) is
stacked into a row-major matrix and reduced in one call, as Python's cost per column call would
exceed the column's own (docs/performance.md, many small files)."""


@dataclass(frozen=True)
class FitStep:
    """The per-chunk step as one picklable value, for a source that runs it where it decodes
    (the :class:`~normstat.sources.base.Reducer` a source's ``reduced_chunks`` takes)."""

    layout: AxisLayout
    nan_policy: NanPolicy = "skip"
    features: list[str] | None = None
    sketch: SketchSpec | None = None

    def __call__(self, chunk: Chunk) -> Moments:
        return chunk_task(chunk, self.layout, self.nan_policy, self.features, self.sketch)

    def for_sample(self, shape: Sequence[int]) -> FitStep | None:
        """The step for samples of ``shape`` when they keep the same features (they differ on
        reduced axes only: pooled); None when they differ on a kept axis."""
        if tuple(shape) == self.layout.sample_shape:
            return self
        layout = AxisLayout.create(self.layout.axis, (0, *shape))
        if layout.feature_shape != self.layout.feature_shape:
            return None
        return FitStep(layout, self.nan_policy, self.features, self.sketch)

    def merge(self, parts: Sequence[Moments]) -> Moments:
        """The parts merged in order, as the local engine's tree does (none: empty)."""
        return merge_all(parts, self.layout.n_features)


def chunk_task(
    chunk: Chunk,
    layout: AxisLayout,
    nan_policy: NanPolicy,
    features: list[str] | None = None,
    sketch: SketchSpec | None = None,
) -> Moments:
    if chunk.moments is not None:  # reduced by the source, where it was decoded
        return chunk.moments
    # values near float64's limit overflow the sums: checked below, never warned about
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            part = _chunk_task(chunk, layout, nan_policy, features, sketch)
            check_finite(part, chunk.path, chunk.dataset, layout, features)
        except DataError:
            if chunk.parts is None:
                raise
            _blame_piece(chunk, layout, nan_policy, features, sketch)
            raise  # no piece alone fails (the sums of all overflow): the first one is named
    return part


def _blame_piece(
    chunk: Chunk,
    layout: AxisLayout,
    nan_policy: NanPolicy,
    features: list[str] | None,
    sketch: SketchSpec | None,
) -> None:
    """Raise the error of the first piece of a gathered chunk that fails alone: the one
    naming the shard and the row the value is in."""
    assert chunk.parts is not None
    for p in chunk.parts:
        piece = Chunk(chunk.data[p.offset : p.offset + p.rows], p.path, p.dataset, p.start)
        chunk_task(piece, layout, nan_policy, features, sketch)


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
        if chunk.rows >= COLUMN_MIN_ROWS:
            return _by_column(chunk, layout, nan_policy, features, sketch)
        whole = getattr(chunk.columns, "row_major", None)  # columns that make one matrix
        data = whole() if whole is not None else None
        if data is None:
            data = stack_columns(list(chunk.columns), chunk.rows, order="C")
    else:
        data = chunk.data
    rows = layout.to_rows(data)
    if sketch is not None and sketch.counts_values(rows.dtype):
        moments = sketch.summarise(rows)  # one counting read gives moments and summary
    else:
        found = finite_moments(rows)
        if found is None:
            _check(rows, chunk, layout, nan_policy, features)
            found = chunk_moments(rows)
        moments = found
        if sketch is not None:
            moments.sketch = sketch.build(rows, bounds=moments)
    if chunk.extra:
        keyed = Keyed(chunk, features)
        moments = keyed.apply(moments, [rows[:, j] for j in range(rows.shape[1])])
    return moments


def _by_column(
    chunk: Chunk,
    layout: AxisLayout,
    nan_policy: NanPolicy,
    features: list[str] | None,
    sketch: SketchSpec | None,
) -> Moments:
    assert chunk.columns is not None
    keyed = Keyed(chunk, features) if chunk.extra else None
    parts = []
    j = 0
    for col in chunk.columns:
        rows = col.reshape(len(col), -1)  # a feature group arrives as its (rows, k) matrix
        columns = [rows[:, i] for i in range(rows.shape[1])]
        check = _checker(rows, chunk, layout, nan_policy, features, j)
        if sketch is not None and sketch.counts_values(col.dtype):
            part = sketch.summarise(rows)
            if keyed is not None:
                part = keyed.apply(part, columns, pooled=False)
        elif keyed is not None:
            # the pooled moments merged from the groups', once for the chunk (here only as
            # the bounds of a distribution summary)
            part = keyed.reduce(columns, check, pooled=sketch is not None)
            if sketch is not None:
                part.sketch = sketch.build(rows, j, bounds=part)
        else:
            found = column_moments(col) if col.ndim == 1 else finite_moments(rows)
            if found is None:
                check()
                found = chunk_moments(rows)
            part = found
            if sketch is not None:
                part.sketch = sketch.build(rows, j, bounds=part)
        parts.append(part)
        j += rows.shape[1]
    joined = Moments.join(parts)
    return joined if keyed is None else keyed.pooled_of(joined)


class Keyed:
    """A chunk's ``--weights`` (checked: an error names the first bad row) and ``--by`` groups
    (their index built once per chunk, shared by its columns).

    With either, the pooled statistics are not taken by a pass of their own over the rows:
    with ``--by`` they are Chan's merge of the groups' (:func:`pooled_moments`), with
    ``--weights`` alone the weighted kernel's single group. The check of the values (a NaN or an
    inf is an error naming its row, per the policy) rides on the sums that kernel takes; the
    rows are searched only when a sum is not finite (docs/decisions.md, "Pooled statistics of
    --by merged from the groups")."""

    def __init__(self, chunk: Chunk, features: list[str] | None) -> None:
        extra = chunk.extra or {}
        self.weights = extra.get("weights")
        if self.weights is not None:
            bad = check_weights(self.weights)
            if bad is not None:
                row = chunk.start + bad
                raise DataError(
                    f"weight {self.weights[bad]!r} at row {row}: weights must be finite and "
                    "non-negative",
                    path=chunk.path,
                    dataset=chunk.dataset,
                    row=row,
                )
        self.index = GroupIndex.of(extra["by"]) if "by" in extra else None
        # buffers and per-group weight sums shared by the chunk's columns
        w = None if self.weights is None else np.asarray(self.weights, np.float64)
        self.pooled = None  # weights alone: the workspace of their one group
        if w is not None and len(w) and self.index is None:
            self.pooled = Workspace(GroupIndex.single(len(w)), w)
        self.work = None
        if self.index is not None:
            ordered = w if w is None or self.index.order is None else w[self.index.order]
            self.work = Workspace(self.index, ordered)

    def reduce(
        self, columns: list[np.ndarray], check: Callable[[], None] | None, pooled: bool = True
    ) -> Moments:
        """The moments of ``columns``: weighted, with their groups. ``check``: called when
        the kernel's sums show a NaN or an inf, before the NaN-skipping kernel (it raises,
        naming the row, when the policy forbids the value); None: validated already.
        ``pooled=False``: with groups, the pooled moments are left for :meth:`pooled_of` to
        merge once for all the chunk's columns."""
        if self.index is None:
            assert self.weights is not None
            return weighted_moments(columns, self.weights, self.pooled, check)
        grouped = grouped_moments(columns, self.index, self.weights, self.work, check)
        part = Moments.empty(len(columns))
        if self.weights is not None:
            part.weight = np.zeros(len(columns))
        part.groups = GroupedMoments(self.index.keys, grouped)
        return self.pooled_of(part) if pooled else part

    def pooled_of(self, part: Moments) -> Moments:
        """``part`` with its pooled moments merged from its groups' (Chan's merge of all the
        groups at once: no pass over the rows); unchanged without groups or rows."""
        if self.index is None or part.groups is None or self.index.n_groups == 0:
            return part
        pooled = pooled_moments(part.groups.moments)
        pooled.groups, pooled.sketch = part.groups, part.sketch
        return pooled

    def apply(self, part: Moments, columns: list[np.ndarray], pooled: bool = True) -> Moments:
        """``part`` (the validated pooled moments of ``columns``) weighted, with its groups
        (the pooled moments then merged from the groups', as :meth:`reduce` gives them)."""
        reduced = self.reduce(columns, None, pooled)
        reduced.sketch = part.sketch
        return reduced


def _checker(
    rows: np.ndarray,
    chunk: Chunk,
    layout: AxisLayout,
    nan_policy: NanPolicy,
    features: list[str] | None,
    offset: int,
) -> Callable[[], None]:
    """:func:`_check` of ``rows`` as a call without arguments, that searches them once (the
    columns of a feature group may each ask)."""
    done = False

    def check() -> None:
        nonlocal done
        if not done:
            done = True
            _check(rows, chunk, layout, nan_policy, features, feature_offset=offset)

    return check


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
