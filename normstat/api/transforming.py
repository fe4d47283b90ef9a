"""The apply use cases: transform arrays in memory, or stream SOURCE into OUT."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from normstat import artifact
from normstat.api.options import (
    ChunkSize,
    ProgressHook,
    apply_columns,
    check_distributable,
    check_engine,
    chunk_rows,
    float_dtype,
    reading,
    row_bytes,
    task_rows,
)
from normstat.core.layout import AxisLayout
from normstat.core.stats import Stats
from normstat.core.transform import TransformParams, transform_block, transform_params
from normstat.engine.apply import ApplyOptions
from normstat.engine.apply import apply as run_apply
from normstat.engine.transform import TransformStep
from normstat.errors import ArtifactError
from normstat.sources import open_sources
from normstat.sources.base import total_rows


def transform(
    x: np.ndarray,
    stats: Stats,
    *,
    method: str = "zscore",
    feature_range: tuple[float, float] = (0.0, 1.0),
    inverse: bool = False,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Normalise (or, with ``inverse``, restore) an in-memory array with fitted statistics."""
    x = np.asarray(x)
    layout = layout_for(stats, x.shape, "array")
    params = transform_params(stats, method, feature_range).broadcast(layout.broadcast_shape)
    return transform_block(x, layout, params, inverse, np.dtype(dtype))


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


def apply(
    stats: Stats | str,
    sources: str | Sequence[str],
    out: str,
    *,
    dataset: str | None = None,
    method: str = "zscore",
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
    options: dict[str, Any] | None = None,
) -> None:
    """Stream SOURCE through the transform into OUT (``"-"``: an NPY stream on stdout, or an
    Arrow IPC stream for tables, whose other columns pass through unchanged).

    The output format is ``output_format``, else OUT's suffix, else the input's format
    (:data:`normstat.sinks.OUTPUTS`). ``workers``: threads transforming ahead of the writer
    (local engine; default 1), or processes of the local Dask cluster. ``engine="dask"``:
    workers read and write their own rows in parallel, into one Zarr / NPY array or table
    file, or (several shards, OUT without a known suffix) a directory of parts named as the
    shards. HDF5 output and streams need the local engine.

    A CSV is read as ``fit`` reads it: ``column_types``, ``delimiter``, ``header``,
    ``null_values`` as there. The same file given twice is refused unless ``allow_overlap``.
    """
    if isinstance(stats, str):
        stats = artifact.load(stats)
    out_dtype = float_dtype(dtype)
    paths = [sources] if isinstance(sources, str) else list(sources)
    check_engine(engine, scheduler, paths)
    chosen, table = reading(columns, None, column_types, delimiter, header, null_values)
    srcs = open_sources(
        paths,
        dataset,
        input_format,
        apply_columns(stats, chosen),
        table,
        allow_overlap=allow_overlap,
        allow_external=allow_external,
        options={**(options or {}), "workers": workers},
    )
    try:
        check_distributable(srcs, engine)
        first = srcs[0]
        layout = layout_for(stats, (0, *first.shape[1:]), first.path)
        params = transform_params(stats, method, feature_range).broadcast(layout.broadcast_shape)
        features = None if first.features is None else tuple(first.features)
        rows = chunk_rows(first, chunk_size, transform=True, shards=srcs[1:])
        if progress is not None:
            progress.start(total_rows(srcs), row_bytes(first))
        plan = ApplyOptions(
            step=TransformStep(layout, params, inverse, out_dtype, features),
            out=out,
            rows=rows,
            force=force,
            output_format=output_format,
            engine=engine,
            workers=workers,
            scheduler=scheduler,
            task_rows=lambda s: task_rows(s, rows, task_size),
            attrs=lambda: _attrs(stats, method, inverse, params),
            progress=None if progress is None else progress.advance,
        )
        run_apply(srcs, plan)
    finally:
        for s in srcs:
            s.close()


def _attrs(stats: Stats, method: str, inverse: bool, params: TransformParams) -> dict[str, Any]:
    """What an output records about how it was made (HDF5 / Zarr attributes)."""
    return {
        "normstat_method": method,
        "normstat_inverse": inverse,
        "normstat_shift": params.shift.reshape(stats.feature_shape),
        "normstat_scale": params.scale.reshape(stats.feature_shape),
        "normstat_stats": json.dumps(artifact.to_dict(stats), allow_nan=False),
    }
