"""The apply use cases: transform arrays in memory, or stream SOURCE into OUT."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from normstat import artifact, storage
from normstat.api.empty import describe_names, empty_features, features_have
from normstat.api.inputs import (
    as_matrix,
    as_path,
    as_paths,
    as_stats,
    check_tol,
    is_table,
)
from normstat.api.keyed import check_tables, group_params, keyed_table
from normstat.api.options import (
    ChunkSize,
    ProgressHook,
    apply_columns,
    check_distributable,
    check_engine,
    chunk_rows,
    float_dtype,
    image_options,
    reading,
    row_bytes,
    task_rows,
)
from normstat.core.layout import AxisLayout
from normstat.core.layout import feature_names as names_of
from normstat.core.stats import Stats
from normstat.core.transform import (
    CastOverflow,
    TransformParams,
    transform_block,
    transform_params,
)
from normstat.engine.apply import ApplyOptions
from normstat.engine.apply import apply as run_apply
from normstat.engine.transform import TransformStep
from normstat.errors import ArtifactError, DataError, NormstatWarning, UsageError
from normstat.sources import ArraySource, ImageOptions, open_sources
from normstat.sources.base import total_rows


def _table_columns(stats: Stats) -> list[str] | None:
    """The columns of a table that the statistics describe: one per feature group (a vector
    column holds many features), else one per feature."""
    if stats.feature_groups is not None:
        return [g["name"] for g in stats.feature_groups]
    return stats.features or None


def transform(
    x: Any,
    stats: Stats | str | os.PathLike[str],
    *,
    method: str = "zscore",
    feature_range: tuple[float, float] = (0.0, 1.0),
    inverse: bool = False,
    dtype: Any = np.float32,
    constant_tol: float | None = None,
    allow_empty: bool = False,
    clip_to_dtype: bool = False,
    quantile_range: tuple[float, float] | None = None,
    clip: bool = False,
    by: Any = None,
    by_fallback: str | None = None,
) -> np.ndarray:
    """Normalise (or, with ``inverse``, restore) data in memory with fitted statistics.

    ``x``: an array, a list of rows, or a table (pandas / polars DataFrame, pyarrow Table).
    When the statistics have feature names, a table's columns are taken BY NAME (any order;
    missing ones are an error), as scikit-learn checks ``feature_names_in_``; the result is an
    array with the columns in the statistics' order. ``constant_tol``: the near-constant rule
    (see ``docs/numerics.md``); ``allow_empty``: transform features without statistics
    (count 0) unchanged instead of refusing; ``clip_to_dtype``: clip values beyond ``dtype``'s
    range instead of raising. ``method="robust"`` and ``"quantile"`` need quantiles in
    ``stats`` (``fit(quantiles=...)``); ``clip`` bounds the output to the target range (minmax,
    quantile). ``by``: statistics fitted by group (``fit(by=...)``) applied per row: the rows'
    keys (an array), or the name of a column of the table ``x``; ``by_fallback="pooled"``: rows
    of a key not fitted take the pooled statistics instead of an error.
    """
    stats = as_stats(stats)
    matrix = as_matrix(x, "x", columns=_table_columns(stats) if is_table(x) else None)
    if matrix.names is not None and stats.features and matrix.names != stats.features:
        raise UsageError(
            f"x: the table's features {describe_names(matrix.names)} are not those of the "
            f"statistics {describe_names(stats.features)}"
        )
    plan = _plan(
        stats,
        method,
        feature_range,
        inverse,
        constant_tol,
        allow_empty,
        clip_to_dtype,
        quantile_range,
        clip,
    )
    layout = layout_for(stats, matrix.data.shape, "x")
    if by is not None:
        how = {
            "method": method,
            "feature_range": feature_range,
            "constant_tol": check_tol(constant_tol),
            "clip": clip_to_dtype,
            "quantile_range": quantile_range,
            "bounds": clip,
        }
        return _by_rows(x, matrix.data, stats, plan, by, by_fallback, inverse, dtype, how)
    params = plan.broadcast(layout.broadcast_shape)
    return transform_block(
        matrix.data,
        layout,
        params,
        inverse,
        float_dtype(dtype),
        names=names_of(stats.features, stats.feature_shape),
    )


def _by_rows(
    x: Any,
    data: np.ndarray,
    stats: Stats,
    plan: TransformParams,
    by: Any,
    fallback: str | None,
    inverse: bool,
    dtype: Any,
    how: dict[str, Any],
) -> np.ndarray:
    """:func:`transform` with each row's group's map."""
    keys = np.asarray(x[by] if isinstance(by, str) and is_table(x) else by)
    if keys.ndim != 1 or len(keys) != data.shape[0]:
        raise UsageError(
            f"by: expected one key per row ({data.shape[0]}), received shape {list(keys.shape)}"
        )
    if data.ndim != 2:
        raise UsageError("by: statistics by group apply to tables (rows of features)")
    name = by if isinstance(by, str) else "by"
    groups = group_params(stats, plan, name, fallback, **how)
    assert groups is not None
    rows = groups.rows(keys)
    try:
        return groups.forward(data, rows, inverse, float_dtype(dtype))
    except CastOverflow as exc:
        raise DataError(f"row {exc.index[0] if exc.index else 0}: {exc.message}") from None


def _plan(
    stats: Stats,
    method: str,
    feature_range: tuple[float, float],
    inverse: bool,
    constant_tol: float | None,
    allow_empty: bool,
    clip_to_dtype: bool,
    quantile_range: tuple[float, float] | None = None,
    bounds: bool = False,
) -> TransformParams:
    """Check the request once (for ``transform`` and ``apply``) and give its (shift, scale):
    refuse empty features unless ``allow_empty``; warn about features only centred; ``bounds``
    (``--clip``) bounds the forward output and cannot be undone."""
    if bounds and inverse:
        raise UsageError("--clip bounds the forward transform; it cannot be undone by --inverse")
    tol = check_tol(constant_tol)
    empty = empty_features(stats)
    if empty and not allow_empty:
        raise DataError(
            f"{features_have(len(empty))} no statistics (count 0: no finite value was fitted): "
            f"{describe_names(empty)}; refit with data, or pass allow_empty (--allow-empty) "
            f"to leave them unchanged"
        )
    if method == "zscore":
        near = stats.near_constant(tol).reshape(-1)
        if near.any():
            names = [names_of(stats.features, stats.feature_shape)[i] for i in np.flatnonzero(near)]
            what = "feature" if len(names) == 1 else "features"
            warnings.warn(
                NormstatWarning(
                    f"{what} {describe_names(names)} "
                    f"{'is' if len(names) == 1 else 'are'} near-constant: centred only "
                    f"(constant_tol / --constant-tol sets the rule)"
                ),
                stacklevel=4,
            )
    return transform_params(
        stats, method, feature_range, tol, clip_to_dtype, quantile_range, bounds
    )


def layout_for(stats: Stats, shape: tuple[int, ...], where: str) -> AxisLayout:
    layout = AxisLayout.create(stats.axis, shape)
    if layout.feature_shape != tuple(stats.feature_shape):
        raise ArtifactError(
            f"feature shape {list(layout.feature_shape)} of the data (axis "
            f"{None if stats.axis is None else list(stats.axis)}) disagrees with "
            f"{list(stats.feature_shape)} in the statistics",
            path=where,
        )
    return layout


@storage.scoped
def apply(
    stats: Stats | str | os.PathLike[str],
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    method: str | None = None,
    feature_range: tuple[float, float] = (0.0, 1.0),
    inverse: bool = False,
    dtype: Any = "float32",
    chunk_size: ChunkSize = None,
    force: bool = False,
    input_format: str | None = None,
    output_format: str | None = None,
    columns: str | Sequence[str] | None = None,
    column_types: str | Mapping[str, str] | None = None,
    delimiter: str | None = None,
    header: bool = True,
    null_values: str | Sequence[str] | None = None,
    allow_overlap: bool = False,
    progress: ProgressHook | None = None,
    workers: int | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    task_size: ChunkSize = None,
    allow_external: bool = False,
    options: ImageOptions | Mapping[str, Any] | None = None,
    constant_tol: float | None = None,
    allow_empty: bool = False,
    clip_to_dtype: bool = False,
    quantile_range: tuple[float, float] | None = None,
    clip: bool = False,
    by: str | None = None,
    by_fallback: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> None:
    """Stream SOURCE through the transform into OUT (``"-"``: an NPY stream on stdout, or an
    Arrow IPC stream for tables, whose other columns pass through unchanged).

    The output format is ``output_format``, else OUT's suffix, else the input's format
    (:data:`normstat.sinks.OUTPUTS`). ``workers``: threads transforming ahead of the writer
    (local engine; default 1), or processes of the local Dask cluster. ``engine="dask"``:
    workers read and write their own rows in parallel, into one Zarr / NPY array or table
    file, or (several shards, OUT without a known suffix) a directory of parts named as the
    shards. HDF5 output and streams need the local engine. STATS, SOURCE and OUT may be URIs
    (``s3://...``), with ``storage_options`` as in :func:`~normstat.api.fitting.fit`; with the
    Dask engine, OUT in a bucket is one ``.zarr`` store or one ``.npy`` object (s3://).

    A CSV is read as ``fit`` reads it: ``column_types``, ``delimiter``, ``header``,
    ``null_values`` as there. The same file given twice is refused unless ``allow_overlap``.

    ``method`` defaults to ``"zscore"``; with ``inverse`` on a SOURCE that ``apply`` wrote (HDF5
    or Zarr, which record it), to the recorded method, and a different one is refused.
    ``constant_tol``, ``allow_empty`` and ``clip_to_dtype``: as in :func:`transform`.
    ``by`` (tables, statistics fitted with ``by``): each row is transformed with the
    statistics of its group, the row's value of that column; a value not fitted is an error,
    or with ``by_fallback="pooled"`` takes the pooled statistics (docs/groups.md).
    """
    stats = as_stats(stats)
    out = as_path(out, "out")
    out_dtype = float_dtype(dtype)
    paths = as_paths(sources, "sources")
    check_engine(engine, scheduler, paths)
    chosen, table = reading(columns, None, column_types, delimiter, header, null_values)
    table = keyed_table(table, by, None)
    srcs = open_sources(
        paths,
        dataset,
        input_format,
        apply_columns(stats, chosen),
        table,
        allow_overlap=allow_overlap,
        allow_external=allow_external,
        images=image_options(options, workers),
    )
    try:
        check_tables(srcs, by, None)
        check_distributable(srcs, engine)
        for s in srcs:  # a source that must count its samples exactly before OUT is sized
            settle = getattr(s, "settle", None)
            if settle is not None:
                settle()
        first = srcs[0]
        method = method_for(first, method, inverse)
        layout = layout_for(stats, (0, *first.shape[1:]), first.path)
        pooled = _plan(
            stats,
            method,
            feature_range,
            inverse,
            constant_tol,
            allow_empty,
            clip_to_dtype,
            quantile_range,
            clip,
        )
        groups = group_params(
            stats,
            pooled,
            by,
            by_fallback,
            method=method,
            feature_range=feature_range,
            constant_tol=check_tol(constant_tol),
            clip=clip_to_dtype,
            quantile_range=quantile_range,
            bounds=clip,
        )
        params = pooled.broadcast(layout.broadcast_shape)
        features = None if first.features is None else tuple(first.features)
        rows = chunk_rows(first, chunk_size, transform=True, shards=srcs[1:])
        if progress is not None:
            progress.start(total_rows(srcs), row_bytes(first))
        plan = ApplyOptions(
            step=TransformStep(
                layout, params, inverse, out_dtype, features, groups, _grouped(first)
            ),
            out=out,
            rows=rows,
            force=force,
            output_format=output_format,
            engine=engine,
            workers=workers,
            scheduler=scheduler,
            task_rows=lambda s: task_rows(s, rows, task_size),
            attrs=lambda: {
                **_attrs(stats, method, inverse, params),
                **({} if by is None else {"normstat_by": by}),  # shift / scale: the pooled map
            },
            progress=None if progress is None else progress.advance,
        )
        run_apply(srcs, plan)
    finally:
        for s in srcs:
            s.close()


def _grouped(src: ArraySource) -> tuple[Any, ...] | None:
    """A table's selected columns when one is a feature group or a struct field (then the
    transform rewrites columns, not single features); None otherwise."""
    selected = getattr(src, "selected", None)
    if selected is None or all(not c.nested and len(c.path) == 1 for c in selected):
        return None
    return tuple(selected)


def recorded_method(src: ArraySource) -> tuple[str | None, bool]:
    """The method (and direction) an output of ``apply`` records in its attributes (HDF5 and
    Zarr, see :func:`_attrs`), or ``(None, False)`` when the source records none."""
    handle = getattr(src, "handle", None) or getattr(src, "_arr", None)
    attrs = getattr(handle, "attrs", None)
    if attrs is None or "normstat_method" not in attrs:
        return None, False
    method = attrs["normstat_method"]
    method = method.decode() if isinstance(method, bytes) else str(method)
    return method, bool(attrs.get("normstat_inverse", False))


def method_for(src: ArraySource, method: str | None, inverse: bool) -> str:
    """``method`` as asked; with ``inverse``, the method recorded in SOURCE when there is one,
    and an error when the asked one differs (undoing another transform gives wrong values)."""
    recorded, was_inverse = recorded_method(src)
    if not inverse or recorded is None or was_inverse:
        return method or "zscore"
    if method is not None and method != recorded:
        raise UsageError(
            f"method: {src.path} was written by apply with method {recorded!r}; undoing it "
            f"with {method!r} would give wrong values (leave method out to use {recorded!r})"
        )
    return recorded


def _attrs(stats: Stats, method: str, inverse: bool, params: TransformParams) -> dict[str, Any]:
    """What an output records about how it was made (HDF5 / Zarr attributes): the map, and the
    statistics it used, whole: with their quantiles and distribution summary, so the output
    says which quantiles a robust or quantile map came from, and the artifact can be read back
    from it. A large value goes where HDF5 can hold it (:func:`normstat.sinks.hdf5.record`)."""
    doc = artifact.to_dict(stats)
    doc.pop("by", None)  # the per-group statistics can be megabytes; apply --by records its own
    return {
        "normstat_method": method,
        "normstat_inverse": inverse,
        "normstat_shift": params.shift.reshape(stats.feature_shape),
        "normstat_scale": params.scale.reshape(stats.feature_shape),
        "normstat_stats": json.dumps(doc, allow_nan=False),
    }
