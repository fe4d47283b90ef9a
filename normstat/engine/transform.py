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
    selected: tuple[Any, ...] | None = None  # a table's columns when some are feature groups

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
        values (nulls kept null); ``schema`` is the output's (:func:`output_schema`), or the
        part of it that ``batch`` holds (features it lacks are another part's);
        ``first_row``: the batch's position, to name the row of a value that does not fit.

        Column by column, from the Arrow buffers: gathering the features into a float64 matrix
        first, and scattering the result back into columns, cost more than the transform."""
        import pyarrow as pa

        from normstat.sources.table import column_array, group_codes

        if self.selected is not None:
            return self._grouped_batch(batch, schema, first_row)
        cols = list(batch.columns)
        rows = None
        if self.groups is not None:
            name = self.groups.column
            keys = group_codes(batch.column(name), name, "", first_row)
            rows = self.groups.rows(keys, first_row=first_row)
        for j, name in enumerate(self.features or ()):
            pos = schema.get_field_index(name)
            if pos < 0:  # in another part of the columns
                continue
            col = cols[pos]
            x = column_array(col)
            p = self.params.feature(j)
            try:
                if self.groups is not None and rows is not None:
                    y = self.groups.forward_column(x, j, rows, self.inverse, self.dtype)
                else:
                    buf, y = _arrow_owned(x.shape[0], self.dtype)
                    if self.inverse:
                        p.inverse(x, self.dtype, out=y)
                    else:
                        p.forward(x, self.dtype, out=y)
                    if not col.null_count:
                        cols[pos] = pa.Array.from_buffers(
                            schema.field(pos).type, len(y), [None, buf]
                        )
                        continue
            except CastOverflow as exc:
                row = first_row + (exc.index[0] if exc.index else 0)
                raise DataError(
                    f"feature {name}, row {row}: {exc.message}", feature=name, row=row
                ) from None
            mask = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
            cols[pos] = pa.array(y, type=schema.field(pos).type, mask=mask)
        return pa.RecordBatch.from_arrays(cols, schema=schema)

    def _map(self, x: np.ndarray, p: TransformParams, name: str, first_row: int) -> np.ndarray:
        try:
            return p.inverse(x, self.dtype) if self.inverse else p.forward(x, self.dtype)
        except CastOverflow as exc:
            row = first_row + (exc.index[0] if exc.index else 0)
            raise DataError(
                f"feature {name}, row {row}: {exc.message}", feature=name, row=row
            ) from None

    def _grouped_batch(self, batch: Any, schema: Any, first_row: int) -> Any:
        """A batch whose feature groups (vectors, tensors) are transformed as ``(rows, k)``
        matrices and written back as fixed-size lists of the output dtype, nulls kept null."""
        import pyarrow as pa

        from normstat.sources.table import grouped_column

        assert self.selected is not None
        cols = list(batch.columns)
        j = 0
        for c in self.selected:
            pos = schema.get_field_index(c.top)
            if pos < 0:  # in another part of the columns
                j += c.width
                continue
            col = cols[pos]
            x = grouped_column(col, c, first_row)
            p = TransformParams(
                self.params.shift.reshape(-1)[j : j + c.width],
                self.params.scale.reshape(-1)[j : j + c.width],
                self.params.clip,
                self.params.bounds,
            )
            y = self._map(x if c.nested else x.reshape(-1, 1), p, c.name, first_row)
            mask = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
            if c.nested:
                cols[pos] = _fixed_lists(y, c.shape, self.dtype, mask)
            else:
                cols[pos] = pa.array(y.reshape(-1), type=schema.field(pos).type, mask=mask)
            j += c.width
        return pa.RecordBatch.from_arrays(cols, schema=schema)


def _arrow_owned(n: int, dtype: np.dtype) -> tuple[Any, np.ndarray]:
    """``n`` values of ``dtype`` in a buffer of pyarrow's memory pool, and a numpy view to write
    them: the pool recycles the pages of batches already written, where a fresh numpy array per
    column faulted its pages in anew."""
    import pyarrow as pa

    buf = pa.allocate_buffer(n * dtype.itemsize)
    return buf, np.frombuffer(buf, dtype)


def _fixed_lists(y: np.ndarray, shape: tuple[int, ...], dtype: np.dtype, mask: Any) -> Any:
    """``(rows, prod(shape))`` values as nested fixed-size lists of ``shape`` per row."""
    import pyarrow as pa

    arr = pa.array(y.reshape(-1), type=pa.from_numpy_dtype(dtype))
    for d in reversed(shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, d)
    return pa.FixedSizeListArray.from_arrays(
        arr, shape[0], mask=pa.array(mask) if mask is not None else None
    )


def _overflow(exc: CastOverflow, first_row: int, names: list[str] | None) -> DataError:
    index = exc.index or (0, 0)
    f = index[1] if len(index) > 1 else 0
    feature = names[f] if names else str(f)
    row = first_row + index[0]
    return DataError(f"feature {feature}, row {row}: {exc.message}", feature=feature, row=row)


def output_schema(
    schema: Any, features: Iterable[str], dtype: np.dtype, selected: Iterable[Any] | None = None
) -> Any:
    """The input's schema with the feature columns retyped (a feature group as nested
    fixed-size lists of its shape); field and schema metadata kept, but for an extension type's
    (the values are no longer of that type)."""
    import pyarrow as pa

    out_type = pa.from_numpy_dtype(dtype)
    types = {name: out_type for name in features}
    for c in selected or ():
        t = out_type
        for d in reversed(c.shape):
            t = pa.list_(t, d)
        types[c.top] = t
    fields = [
        pa.field(f.name, types[f.name], nullable=True, metadata=_plain_metadata(f.metadata))
        if f.name in types
        else f
        for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def _plain_metadata(meta: dict[bytes, bytes] | None) -> dict[bytes, bytes] | None:
    if not meta:
        return meta
    return {k: v for k, v in meta.items() if not k.startswith(b"ARROW:extension:")} or None


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
    first_row: int = 0,
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
    return compute_ahead(_positioned(items, first_row), batch, threads)


def _positioned(batches: Iterable[Any], start: int = 0) -> Iterator[tuple[int, Any]]:
    """Each record batch with the row it starts at (the first at ``start``)."""
    for b in batches:
        yield start, b
        start += b.num_rows


def _new_pool(local: threading.local) -> BufferPool:
    local.pool = BufferPool()
    return local.pool
