"""``apply`` for tables: stream record batches, replace the feature columns, pass the rest.

Each feature column is replaced, at its own position, by its normalised values (float32 unless
``dtype`` says otherwise) with the input's nulls kept null; every other column (ids, labels,
strings, timestamps) is the very same Arrow array, so it is written unchanged. The schema's
metadata is kept. Memory is bounded by one batch per stage of the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from normstat.core.transform import CastOverflow, TransformParams
from normstat.engine.ahead import compute_ahead
from normstat.errors import DataError
from normstat.sinks import atomic_output, check_writable, open_array_writer
from normstat.sinks.failures import drain, write_errors
from normstat.sinks.table import IpcStreamWriter, open_table_writer, table_output_format
from normstat.sources.table import TableSource, column_array

_ARROW: tuple[type[BaseException], ...] = (pa.ArrowException,)  # pyarrow's write failures


def output_schema(schema: pa.Schema, features: list[str], dtype: np.dtype) -> pa.Schema:
    """The input's schema with the feature columns retyped; field and schema metadata kept."""
    out_type = pa.from_numpy_dtype(dtype)
    chosen = set(features)
    fields = [
        pa.field(f.name, out_type, nullable=True, metadata=f.metadata) if f.name in chosen else f
        for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def transform_batch(
    batch: pa.RecordBatch,
    features: list[str],
    params: TransformParams,
    inverse: bool,
    dtype: np.dtype,
    schema: pa.Schema,
    first_row: int = 0,
) -> pa.RecordBatch:
    """``batch`` with its feature columns transformed in place; ``schema`` is the output's;
    ``first_row``: the batch's position in the data, to name the row of a value that does not
    fit ``dtype``.

    Column by column, from the Arrow buffers: gathering the features into a float64 matrix
    first, and scattering the result back into columns, cost more than the transform itself."""
    cols = list(batch.columns)
    for j, name in enumerate(features):
        pos = schema.get_field_index(name)
        col = cols[pos]
        x = column_array(col)
        p = params.feature(j)
        try:
            y = p.inverse(x, dtype) if inverse else p.forward(x, dtype)
        except CastOverflow as exc:
            row = first_row + (exc.index[0] if exc.index else 0)
            raise DataError(
                f"feature {name}, row {row}: {exc.message}", feature=name, row=row
            ) from None
        mask = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
        cols[pos] = pa.array(y, type=schema.field(pos).type, mask=mask)
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def transformed_ahead(
    batches: Iterable[pa.RecordBatch],
    features: list[str],
    params: TransformParams,
    inverse: bool,
    dtype: np.dtype,
    schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    """:func:`transform_batch` over ``batches``, batch ``i + 1`` on a second core while the
    caller writes batch ``i``."""

    def step(item: tuple[int, pa.RecordBatch]) -> pa.RecordBatch:
        start, b = item
        return transform_batch(b, features, params, inverse, dtype, schema, start)

    return compute_ahead(_positioned(batches), step)


def _positioned(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, pa.RecordBatch]]:
    start = 0
    for b in batches:
        yield start, b
        start += b.num_rows


def check_same_schema(srcs: list[TableSource]) -> None:
    """One output file needs one schema: every shard must have the first one's columns."""
    first = srcs[0].schema
    for s in srcs[1:]:
        if s.schema.equals(first, check_metadata=False):
            continue
        for a, b in zip(first, s.schema, strict=False):
            if a.name != b.name or a.type != b.type:
                why = (
                    f"column {b.name!r} ({b.type}) where the first shard has {a.name!r} ({a.type})"
                )
                break
        else:
            why = f"{len(s.schema)} columns where the first shard has {len(first)}"
        raise DataError(
            f"has {why}; shards written to one output must have the same columns ({srcs[0].path})",
            path=s.path,
        )


def apply_table(
    srcs: list[TableSource],
    out: str,
    params: TransformParams,
    *,
    inverse: bool,
    dtype: np.dtype,
    rows: int,
    force: bool,
    progress: Any = None,
    array_options: dict[str, Any] | None = None,
) -> None:
    """Stream the shards through the transform into OUT (``"-"``: an Arrow IPC stream)."""
    check_same_schema(srcs)
    features = srcs[0].features
    schema = output_schema(srcs[0].schema, features, dtype)
    batches = transformed_ahead(
        _counted(_all_batches(srcs, rows), progress), features, params, inverse, dtype, schema
    )
    if out == "-":
        _drain(IpcStreamWriter(schema), batches, "<stdout>")
        return
    check_writable(out, force=force, inputs=tuple(s.path for s in srcs))
    fmt = table_output_format(out, srcs[0].format)
    with atomic_output(out) as tmp:
        if fmt in ("npy", "hdf5"):
            shape = (_count_rows(srcs), len(features))
            with write_errors(out, _ARROW):
                writer = open_array_writer(fmt, tmp, shape, dtype, **(array_options or {}))
            blocks = _matrices(srcs, rows, params, inverse, dtype, progress)
            _drain(_ArrayAdapter(writer), blocks, out)
        else:
            with write_errors(out, _ARROW):
                writer = open_table_writer(fmt, tmp, schema)
            _drain(writer, batches, out)


def write_table(
    src: TableSource,
    target: str,
    fmt: str,
    params: TransformParams,
    *,
    inverse: bool,
    dtype: np.dtype,
    rows: int,
    where: str,
) -> int:
    """One shard, whole, into the table file ``target`` (named ``where`` in errors): what
    :func:`apply_table` writes for that shard alone. Returns the rows written."""
    schema = output_schema(src.schema, src.features, dtype)
    done = 0

    def transformed() -> Iterator[pa.RecordBatch]:
        nonlocal done

        batches = src.batches(rows)
        for b in transformed_ahead(batches, src.features, params, inverse, dtype, schema):
            yield b
            done += b.num_rows

    with write_errors(where, _ARROW):
        writer = open_table_writer(fmt, target, schema)
    _drain(writer, transformed(), where)
    return done


def _all_batches(srcs: list[TableSource], rows: int) -> Iterator[pa.RecordBatch]:
    for s in srcs:
        yield from s.batches(rows)


def _counted(batches: Iterable[pa.RecordBatch], progress: Any) -> Iterator[pa.RecordBatch]:
    for b in batches:
        yield b
        if progress is not None:
            progress.advance(b.num_rows)


def _drain(writer: Any, items: Iterable[Any], out: str) -> None:
    drain(writer.write, writer.close, items, out, also=_ARROW)


class _ArrayAdapter:
    """An array writer (``write(start, block)``) fed blocks in order, like a table writer."""

    def __init__(self, writer: Any) -> None:
        self._writer, self._start = writer, 0

    def write(self, block: np.ndarray) -> None:
        self._writer.write(self._start, block)
        self._start += block.shape[0]

    def close(self) -> None:
        self._writer.close()


def _count_rows(srcs: list[TableSource]) -> int:
    for s in srcs:
        if s.shape[0] is None and s.path == "-":
            raise DataError(
                "the row count of a stream is not known before reading it, so it cannot be "
                "written as .npy / .h5; write a table (.parquet, .arrow, .csv) or '-'",
                path="-",
            )
    return sum(s.count_rows() for s in srcs)


def _matrices(
    srcs: list[TableSource],
    rows: int,
    params: TransformParams,
    inverse: bool,
    dtype: np.dtype,
    progress: Any,
) -> Iterator[np.ndarray]:
    """npy / h5 output: the feature columns only, as (rows, features) blocks."""
    for s in srcs:
        for chunk in s.chunks(rows):
            x = chunk.data
            try:
                y = params.inverse(x, dtype) if inverse else params.forward(x, dtype)
            except CastOverflow as exc:
                row, j = chunk.start + exc.index[0], exc.index[-1]
                name = (s.features or [str(j)])[j]
                raise DataError(
                    f"feature {name}, row {row}: {exc.message}", feature=name, row=row
                ) from None
            yield np.ascontiguousarray(y)
            if progress is not None:
                progress.advance(x.shape[0])
