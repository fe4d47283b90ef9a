"""The apply use cases: transform arrays in memory, or stream SOURCE into OUT."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from normstat import artifact
from normstat.api.fitting import all_chunks
from normstat.api.options import (
    ChunkSize,
    ProgressHook,
    check_engine,
    chunk_rows,
    float_dtype,
    row_bytes,
    task_rows,
)
from normstat.core.layout import AxisLayout
from normstat.core.stats import Stats
from normstat.core.transform import TransformParams, transform_block, transform_params
from normstat.engine.ahead import compute_ahead
from normstat.errors import ArtifactError, UsageError
from normstat.sinks import atomic_output_for, check_writable, open_array_writer, writer_format
from normstat.sinks.failures import drain, write_errors
from normstat.sources import ArraySource, Chunk, open_sources
from normstat.sources.base import total_rows
from normstat.sources.buffers import BufferPool


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

    ``engine="dask"``: workers read and write their own rows in parallel, into one Zarr / NPY
    array, or (several shards, OUT without a known suffix) a directory of parts named as the
    shards (tables: always, when several shards). HDF5 output, CSV and streams need the local
    engine.
    """
    if isinstance(stats, str):
        stats = artifact.load(stats)
    out_dtype = float_dtype(dtype)
    paths = [sources] if isinstance(sources, str) else list(sources)
    check_engine(engine, scheduler, paths)
    srcs = open_sources(paths, dataset, input_format, _apply_columns(stats, columns))
    try:
        layout = layout_for(stats, (0, *srcs[0].shape[1:]), srcs[0].path)
        params = _params(stats, method, feature_range, quantile_range, clip, inverse)
        params = params.broadcast(layout.broadcast_shape)
        rows = chunk_rows(srcs[0], chunk_size, transform=True)
        if progress is not None:
            progress.start(total_rows(srcs), row_bytes(srcs[0]))
        if srcs[0].kind == "table" and engine == "dask":
            from normstat.engine.dask_tables import apply_tables_dask

            apply_tables_dask(
                srcs,  # type: ignore[arg-type]
                out,
                params,
                inverse=inverse,
                dtype=out_dtype,
                rows=rows,
                force=force,
                scheduler=scheduler,
                workers=workers,
                progress=None if progress is None else progress.advance,
            )
            return
        if srcs[0].kind == "table":
            from normstat.apply_table import apply_table

            options = _writer_options("hdf5", srcs, stats, method, inverse, params)
            apply_table(
                srcs,  # type: ignore[arg-type]
                out,
                params,
                inverse=inverse,
                dtype=out_dtype,
                rows=rows,
                force=force,
                progress=progress,
                array_options=options,
            )
            return
        shape = (sum(s.shape[0] for s in srcs), *srcs[0].shape[1:])
        if engine == "dask":
            check_writable(out, force=force, inputs=tuple(s.path for s in srcs))
            _apply_dask(
                srcs,
                out,
                attrs=_attrs(stats, method, inverse, params),
                transform=(layout, params, inverse, out_dtype),
                rows=rows,
                task_size=task_size,
                cluster={"scheduler": scheduler, "workers": workers},
                progress=progress,
            )
            return
        blocks = _transformed(srcs, rows, layout, params, inverse, out_dtype, progress)
        if out == "-":
            from normstat.sinks.npy import NpyStreamWriter

            _drain(NpyStreamWriter(shape, out_dtype), blocks, "<stdout>")
            return
        check_writable(out, force=force, inputs=tuple(s.path for s in srcs))
        fmt = writer_format(out, srcs[0].format)
        options = _writer_options(fmt, srcs, stats, method, inverse, params)
        with atomic_output_for(out, fmt) as tmp:
            with write_errors(out):
                writer = open_array_writer(fmt, tmp, shape, out_dtype, **options)
            _drain(writer, blocks, out)
    finally:
        for s in srcs:
            s.close()


def _apply_columns(stats: Stats, columns: Sequence[str] | None) -> Sequence[str] | None:
    """A table is read by the artifact's feature names; ``columns`` may only repeat them."""
    if columns is None or stats.features is None:
        return stats.features if columns is None else columns
    if list(columns) != list(stats.features):
        raise UsageError(
            f"--columns {list(columns)} disagree with the features of the statistics "
            f"{stats.features}"
        )
    return columns


def _transformed(
    srcs: list[ArraySource],
    rows: int,
    layout: AxisLayout,
    params: TransformParams,
    inverse: bool,
    dtype: np.dtype,
    progress: ProgressHook | None,
) -> Iterable[np.ndarray]:
    pool = BufferPool()  # used by the helper thread only

    def step(chunk: Chunk) -> tuple[int, np.ndarray]:
        x = chunk.data
        out = pool.get(x.shape, dtype)
        return x.shape[0], transform_block(x, layout, params, inverse, dtype, out)

    for n, block in compute_ahead(all_chunks(srcs, rows), step):
        yield block
        if progress is not None:
            progress.advance(n)


def _drain(writer: Any, blocks: Iterable[np.ndarray], out: str) -> None:
    """Write consecutive row blocks at their positions (:func:`normstat.sinks.failures.drain`)."""
    drain(lambda item: writer.write(*item), writer.close, _positioned(blocks), out)


def _positioned(blocks: Iterable[np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
    start = 0
    for block in blocks:
        yield start, block
        start += block.shape[0]


def _writer_options(
    fmt: str,
    srcs: list[ArraySource],
    stats: Stats,
    method: str,
    inverse: bool,
    params: TransformParams,
) -> dict[str, Any]:
    if fmt == "zarr":
        from normstat.sinks.zarr import zarr_writer_options

        return zarr_writer_options(srcs, _attrs(stats, method, inverse, params))
    if fmt != "hdf5":
        return {}
    single = srcs[0] if len(srcs) == 1 and srcs[0].format == "hdf5" else None
    attrs = _attrs(stats, method, inverse, params)
    return {
        "dataset": srcs[0].dataset or "/data",
        "like": getattr(single, "handle", None),
        "attrs": attrs,
    }


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


def _apply_dask(
    srcs: list[ArraySource],
    out: str,
    *,
    attrs: dict[str, Any],
    transform: tuple[AxisLayout, TransformParams, bool, np.dtype],
    rows: int,
    task_size: ChunkSize,
    cluster: dict[str, Any],
    progress: ProgressHook | None,
) -> None:
    """Workers transform and write their own rows; see :mod:`normstat.engine.dask_apply`."""
    from normstat.engine.dask_apply import apply_to_output, runner

    advance = None if progress is None else progress.advance
    run = runner(rows, *transform, progress=advance, **cluster)
    apply_to_output(
        srcs,
        out,
        dtype=transform[3],
        task_rows=lambda s: task_rows(s, rows, task_size),
        attrs=attrs,
        run=run,
        rows=rows,
    )


# ---------------------------------------------------------------------------------------------
# merge and export
