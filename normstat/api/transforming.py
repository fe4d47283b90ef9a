"""The apply use cases: transform arrays in memory, or stream SOURCE into OUT."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from normstat import artifact
from normstat.api.options import (
    ChunkSize,
    ProgressHook,
    apply_columns,
    check_engine,
    chunk_rows,
    float_dtype,
    row_bytes,
    task_rows,
)
from normstat.core.layout import AxisLayout
from normstat.core.stats import Stats
from normstat.core.transform import TransformParams, transform_block, transform_params
from normstat.engine.apply import ApplyOptions
from normstat.engine.apply import apply as run_apply
from normstat.engine.transform import TransformStep
from normstat.errors import ArtifactError, UsageError
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
    quantile_range: tuple[float, float] | None = None,
    clip: bool = False,
) -> np.ndarray:
    """Normalise (or, with ``inverse``, restore) an in-memory array with fitted statistics.

    ``method="robust"`` and ``"quantile"`` need quantiles in ``stats`` (``fit(quantiles=...)``);
    ``clip`` bounds the output to the target range (minmax, quantile).
    """
    x = np.asarray(x)
    layout = layout_for(stats, x.shape, "array")
    params = _params(stats, method, feature_range, quantile_range, clip, inverse)
    params = params.broadcast(layout.broadcast_shape)
    return transform_block(x, layout, params, inverse, np.dtype(dtype))


def _params(
    stats: Stats,
    method: str,
    feature_range: tuple[float, float],
    quantile_range: tuple[float, float] | None,
    clip: bool,
    inverse: bool,
) -> TransformParams:
    if clip and inverse:
        raise UsageError("--clip bounds the forward transform; it cannot be undone by --inverse")
    return transform_params(stats, method, feature_range, quantile_range, clip)


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
    columns: Sequence[str] | None = None,
    progress: ProgressHook | None = None,
    workers: int | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    task_size: ChunkSize = None,
    quantile_range: tuple[float, float] | None = None,
    clip: bool = False,
) -> None:
    """Stream SOURCE through the transform into OUT (``"-"``: an NPY stream on stdout, or an
    Arrow IPC stream for tables, whose other columns pass through unchanged).

    The output format is ``output_format``, else OUT's suffix, else the input's format
    (:data:`normstat.sinks.OUTPUTS`). ``workers``: threads transforming ahead of the writer
    (local engine; default 1), or processes of the local Dask cluster. ``engine="dask"``:
    workers read and write their own rows in parallel, into one Zarr / NPY array or table
    file, or (several shards, OUT without a known suffix) a directory of parts named as the
    shards. HDF5 output and streams need the local engine.
    """
    if isinstance(stats, str):
        stats = artifact.load(stats)
    out_dtype = float_dtype(dtype)
    paths = [sources] if isinstance(sources, str) else list(sources)
    check_engine(engine, scheduler, paths)
    srcs = open_sources(paths, dataset, input_format, apply_columns(stats, columns))
    try:
        first = srcs[0]
        layout = layout_for(stats, (0, *first.shape[1:]), first.path)
        params = _params(stats, method, feature_range, quantile_range, clip, inverse)
        params = params.broadcast(layout.broadcast_shape)
        features = None if first.features is None else tuple(first.features)
        rows = chunk_rows(first, chunk_size, transform=True)
        if progress is not None:
            progress.start(total_rows(srcs), row_bytes(first))
        options = ApplyOptions(
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
        run_apply(srcs, options)
    finally:
        for s in srcs:
            s.close()


def _attrs(stats: Stats, method: str, inverse: bool, params: TransformParams) -> dict[str, Any]:
    """What an output records about how it was made (HDF5 / Zarr attributes). The statistics
    go without their distribution summary: it can be megabytes, past HDF5's 64 KiB attribute
    limit, and the map it led to is in ``normstat_shift`` / ``normstat_scale``."""
    doc = artifact.to_dict(stats)
    for key in ("histogram", "quantile_levels", "quantiles", "quantiles_exact"):
        doc.pop(key, None)
    return {
        "normstat_method": method,
        "normstat_inverse": inverse,
        "normstat_shift": params.shift.reshape(stats.feature_shape),
        "normstat_scale": params.scale.reshape(stats.feature_shape),
        "normstat_stats": json.dumps(doc, allow_nan=False),
    }
