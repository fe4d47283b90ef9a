"""The transform step of ``apply`` as one value, and the reads it is applied to.

:class:`TransformStep` carries what every engine needs to transform an item (the affine map laid
out for the chunks, its direction, the output dtype), so it travels as one picklable value to a
thread or a Dask worker. ``block`` transforms a block of samples (arrays, or a table's feature
matrix) with the numpy kernel of :mod:`normstat.core.transform`; ``batch`` replaces a record
batch's feature columns and passes the other columns through (pyarrow, imported only then).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from normstat.core.bygroup import GroupParams
from normstat.core.layout import AxisLayout
from normstat.core.transform import CastOverflow, TransformParams, transform_block
from normstat.engine.ahead import compute_ahead
from normstat.errors import DataError
from normstat.sources.base import ArraySource
from normstat.sources.buffers import BufferPool


@dataclass(frozen=True)
class TransformStep:
    layout: AxisLayout
    params: TransformParams  # broadcast to ``layout.broadcast_shape``
    inverse: bool
    dtype: np.dtype
    features: tuple[str, ...] | None = None  # a table's feature columns
    groups: GroupParams | None = None  # apply --by: each row with its group's map

    def block(
        self,
        x: np.ndarray,
        out: np.ndarray | None = None,
        first_row: int = 0,
        keys: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Transform a block of samples (into ``out`` when given); ``first_row``, the block's
        position, names the row of a value that does not fit the output dtype. ``keys``: the
        rows' ``--by`` keys as ``(codes, values)``, when the map is per group."""
        names = None if self.features is None else list(self.features)
        if self.groups is not None:
            if keys is None:
                raise DataError(f"apply --by: the rows have no {self.groups.column!r} column")
            rows = self.groups.rows(keys, first_row=first_row)
            try:
                y = self.groups.forward(x, rows, self.inverse, self.dtype, out=out)
            except CastOverflow as exc:
                raise _overflow(exc, first_row, names) from None
            return y
        return transform_block(
            x, self.layout, self.params, self.inverse, self.dtype, out, first_row, names
        )

    def batch(self, batch: Any, schema: Any, first_row: int = 0) -> Any:
        """``batch`` with its feature columns replaced, at their positions, by their transformed
        values (nulls kept null); ``schema`` is the output's (:func:`output_schema`);
        ``first_row``: the batch's position, to name the row of a value that does not fit.

        Column by column, from the Arrow buffers: gathering the features into a float64 matrix
        first, and scattering the result back into columns, cost more than the transform."""
        import pyarrow as pa

        from normstat.sources.table import column_array, group_codes

        cols = list(batch.columns)
        rows = None
        if self.groups is not None:
            name = self.groups.column
            keys = group_codes(batch.column(name), name, "", first_row)
            rows = self.groups.rows(keys, first_row=first_row)
        for j, name in enumerate(self.features or ()):
            pos = schema.get_field_index(name)
            col = cols[pos]
            x = column_array(col)
            p = self.params.feature(j)
            try:
                if self.groups is not None and rows is not None:
                    y = self.groups.forward_column(x, j, rows, self.inverse, self.dtype)
                else:
                    y = p.inverse(x, self.dtype) if self.inverse else p.forward(x, self.dtype)
            except CastOverflow as exc:
                row = first_row + (exc.index[0] if exc.index else 0)
                raise DataError(
                    f"feature {name}, row {row}: {exc.message}", feature=name, row=row
                ) from None
            mask = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
            cols[pos] = pa.array(y, type=schema.field(pos).type, mask=mask)
        return pa.RecordBatch.from_arrays(cols, schema=schema)


def _overflow(exc: CastOverflow, first_row: int, names: list[str] | None) -> DataError:
    index = exc.index or (0, 0)
    f = index[1] if len(index) > 1 else 0
    feature = names[f] if names else str(f)
    row = first_row + index[0]
    return DataError(f"feature {feature}, row {row}: {exc.message}", feature=feature, row=row)


def output_schema(schema: Any, features: Iterable[str], dtype: np.dtype) -> Any:
    """The input's schema with the feature columns retyped; field and schema metadata kept."""
    import pyarrow as pa

    out_type = pa.from_numpy_dtype(dtype)
    chosen = set(features)
    fields = [
        pa.field(f.name, out_type, nullable=True, metadata=f.metadata) if f.name in chosen else f
        for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def reads(srcs: Iterable[ArraySource], rows: int, batches: bool) -> Iterator[Any]:
    """What ``apply`` reads, source after source: record batches (a table written as a table,
    every column) or chunks of samples (arrays; a table's feature matrix), of ``rows`` rows."""
    for s in srcs:
        yield from s.batches(rows) if batches else s.chunks(rows)  # type: ignore[attr-defined]


def transformed(
    items: Iterable[Any],
    step: TransformStep,
    schema: Any = None,
    threads: int = 1,
) -> Iterator[tuple[int, Any]]:
    """``(rows, transformed item)`` in order: chunks into blocks, or (with ``schema``, the
    output's) record batches into batches, ``threads`` items ahead of the caller on helper
    threads, so transforming overlaps reading and writing."""
    local = threading.local()  # one buffer pool per helper thread

    def block(chunk: Any) -> tuple[int, np.ndarray]:
        pool = getattr(local, "pool", None) or _new_pool(local)
        x = chunk.data
        keys = chunk.extra["by"] if step.groups is not None and chunk.extra else None
        try:
            return x.shape[0], step.block(x, pool.get(x.shape, step.dtype), chunk.start, keys)
        except DataError as exc:
            exc.path = exc.path or chunk.path
            raise

    def batch(item: tuple[int, Any]) -> tuple[int, Any]:
        start, b = item
        return b.num_rows, step.batch(b, schema, start)

    if schema is None:
        return compute_ahead(items, block, threads)
    return compute_ahead(_positioned(items), batch, threads)


def _positioned(batches: Iterable[Any]) -> Iterator[tuple[int, Any]]:
    """Each record batch with the row it starts at."""
    start = 0
    for b in batches:
        yield start, b
        start += b.num_rows


def _new_pool(local: threading.local) -> BufferPool:
    local.pool = BufferPool()
    return local.pool
