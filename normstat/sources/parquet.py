"""Parquet files, read a row group at a time, only the columns asked for.

``buffer_size`` makes pyarrow read each column chunk through a small buffer instead of whole, so
memory is bounded by what is decoded, not by the writer's row-group size (a row group of 64
float32 columns can be 256 MB). Row groups are the file's storage blocks: a read can start at any
of them (see :mod:`normstat.sources.blocks`).

For ``fit``, a chunk that holds whole row groups is handed out *undecoded*: its columns are
decoded one at a time by the worker that reduces them (:class:`RowGroupColumns`). Measured on 1.5
GB of float32 columns: decoding a column of a row group costs 1.3 CPU-s for the file against
1.8-2.9 for record batches of every column, and a worker holds one column (1 MB here) instead of
a 32 MB batch, which pyarrow's batch reader needed ~3.5x of while decoding.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from normstat import storage
from normstat.errors import DataError
from normstat.sources.base import Chunk, fingerprint_of
from normstat.sources.blocks import unit_at
from normstat.sources.buffers import read_small
from normstat.sources.reading import TableOptions
from normstat.sources.table import (
    Batch,
    TableSource,
    arrow_error,
    extra_arrays,
    one_line,
    selected_array,
)

_READ_BUFFER = 1 << 18
_READ_OPTIONS = {
    "buffer_size": _READ_BUFFER,
    "pre_buffer": False,
    # a damaged page whose writer stored a CRC is an error, not values such as inf or NaN
    "page_checksum_verification": True,
}
_WHOLE = {"buffer_size": 0, "pre_buffer": True}
"""A short chunk's columns are read whole, their reads coalesced."""
_WHOLE_READ_VALUES = 2**20
"""Values of a chunk up to which its columns are read together (above, one at a time: the
coalesced read of a whole row group cost more CPU than reading its columns one by one)."""
_REMOTE_OPTIONS = {**_READ_OPTIONS, "pre_buffer": True}
"""An object in a bucket: the column chunks of a read are fetched as coalesced ranged GETs
(one column of a row group at a time, so memory stays bounded by that column)."""
_WIDEST = 8
"""Bytes per value of the widest column a chunk is decoded to (float64)."""


class _Reader:
    """pyarrow's Parquet reader (``pyarrow._parquet.ParquetReader``) on a local file, opened
    without ``pyarrow.parquet``: that module imports ``pyarrow.fs`` with its S3, GCS, Azure and
    SSL modules, a fifth of what a CLI fit of a Parquet file spends importing pyarrow
    (docs/performance.md). Where the private class is missing or takes other arguments, the
    public ``pyarrow.parquet.ParquetFile``'s reader is used instead."""

    def __init__(
        self,
        path: str,
        metadata: Any = None,
        whole: bool = False,
        leaves: dict[str, list[int]] | None = None,
        data: Any = None,
    ) -> None:
        """``data``: the file's bytes, read already (a small shard): read from memory."""
        options = {**_READ_OPTIONS, **_WHOLE} if whole else _READ_OPTIONS
        self._input: Any = None
        if data is not None:
            reader = self._local(pa.BufferReader(data), metadata, options)
        elif storage.is_uri(path):  # an object in a bucket: a random-access file of it
            import pyarrow.parquet as pq

            self._input = storage.open_input(path)
            try:
                reader = pq.ParquetFile(self._input, metadata=metadata, **_REMOTE_OPTIONS).reader
            except BaseException:
                self._input.close()
                raise
        else:
            reader = self._local(path, metadata, options)
        self.reader = reader
        self.metadata = reader.metadata
        self.schema_arrow = reader.schema_arrow
        self.leaves = leaves if leaves is not None else _leaves(reader)

    @staticmethod
    def _local(path: Any, metadata: Any, options: dict) -> Any:
        try:
            from pyarrow._parquet import ParquetReader

            reader = ParquetReader()
            reader.open(path, metadata=metadata, **options)
        except (ImportError, TypeError):  # a pyarrow whose private reader differs
            import pyarrow.parquet as pq

            reader = pq.ParquetFile(path, metadata=metadata, **options).reader
        return reader

    def indices(self, columns: Sequence[str] | None) -> list[int] | None:
        """The leaf column indices of top-level ``columns`` (all of them: ``None``)."""
        if columns is None:
            return None
        return [i for c in columns for i in self.leaves.get(c, ())]

    def read_row_groups(
        self, row_groups: range, columns: Sequence[str], use_threads: bool = False
    ) -> pa.Table:
        return self.reader.read_row_groups(
            list(row_groups), column_indices=self.indices(columns), use_threads=use_threads
        )

    def iter_batches(
        self,
        batch_size: int,
        row_groups: range,
        columns: Sequence[str] | None,
        use_threads: bool = True,
    ) -> Iterator[Batch]:
        return self.reader.iter_batches(
            batch_size,
            list(row_groups),
            column_indices=self.indices(columns),
            use_threads=use_threads,
        )

    def close(self) -> None:
        self.reader.close()
        if self._input is not None:
            self._input.close()


_LAST_LEAVES: list[Any] = [None, None]
"""The Parquet schema of the last file opened and its leaves: the shards of a dataset share
it, and ``ParquetSchema.equals`` costs less than walking 64 column paths again."""


def _leaves(reader: Any) -> dict[str, list[int]]:
    """Top-level column -> the indices of its leaf columns."""
    schema = reader.metadata.schema
    last, known = _LAST_LEAVES
    if last is not None and schema.equals(last):
        return known
    out: dict[str, list[int]] = {}
    for i, leaf in enumerate(reader.column_paths):
        out.setdefault(leaf[0], []).append(i)
    _LAST_LEAVES[:] = [schema, out]
    return out


class ParquetFile(TableSource):
    format = "parquet"
    column_reads = True

    def __init__(
        self,
        path: str,
        columns: Sequence[str] | None = None,
        options: TableOptions | None = None,
        whole: bool = False,
    ) -> None:
        """``whole``: a small file (up to ``buffers.SMALL_FILE`` bytes) is read whole here, in
        one read: its footer, its row groups (in the pass, the first time) and its fingerprint
        come from those bytes (a shard opened ahead of the pass, many small files)."""
        self._data: Any = None
        self.known_fingerprint: dict[str, Any] | None = None
        try:
            small = read_small(path) if whole and not storage.is_uri(path) else None
            if small is not None:
                raw, st = small
                self._identity: tuple[int, ...] | None = (
                    st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
                )  # fmt: skip
                self._data = pa.py_buffer(raw)
                if len(raw) == st.st_size:
                    self.known_fingerprint = fingerprint_of(path, st, raw)
            else:
                self._identity = _identity(path)
            reader = _Reader(path, whole=self._data is not None, data=self._data)
            schema = reader.schema_arrow
            schema.names  # noqa: B018  (decoded here: damaged names may not be UTF-8)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise arrow_error(exc, "Parquet file", path) from None
        self.metadata, self._leaves = reader.metadata, reader.leaves
        # a reader of the file's bytes in memory holds no file: kept for the first read (a
        # reader's opening costs as much as its footer parse); one of the file is closed, and
        # reopened to read: ten thousand shards must not hold ten thousand files
        self._kept: _Reader | None = reader if self._data is not None else None
        if self._kept is None:
            reader.close()
        self._file: _Reader | None = None
        self._local = threading.local()
        self._handles: list[_Reader] = []
        self._handles_lock = threading.Lock()
        self._setup(path, schema, columns, self.metadata.num_rows, options)

    def storage_blocks(self) -> list[int]:
        meta = self.metadata
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]

    def reopen(self, whole: bool = False, data: Any = None) -> _Reader:
        """A new reader of this file, its footer taken from the first opening (not parsed
        again); refused if the file is not the one that was opened. ``whole``: to read whole
        column chunks, their reads coalesced (a buffer would read 256 KiB for a chunk of a few
        KiB). ``data``: the file's bytes as read when it was opened (nothing to check)."""
        if data is not None:
            return _Reader(self.path, self.metadata, whole, self._leaves, data)
        if self._identity is not None and _identity(self.path) != self._identity:
            raise DataError(
                "the file changed since it was opened (size, time or inode differ)",
                path=self.path,
            )
        return _Reader(self.path, metadata=self.metadata, whole=whole, leaves=self._leaves)

    def preferred_rows(self, target_bytes: int) -> int:
        """Whole row groups per chunk when one column of the largest (a feature group: all its
        values) fits the budget: a chunk is then decoded a column at a time and no row group is
        decoded twice."""
        rows = super().preferred_rows(target_bytes)
        if storage.is_uri(self.path):  # every column of a chunk is fetched at once
            return rows
        largest = max(self.storage_blocks(), default=0)
        widest = _WIDEST * max(c.width for c in self.selected)  # a feature group: k values a row
        return largest if rows < largest <= target_bytes // widest else rows

    def chunks(self, rows: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        units = self.read_units(rows)
        assert units is not None  # a Parquet file always has row groups
        data, self._data = self._data, None  # the bytes read whole serve one pass, then go
        kept, self._kept = self._kept, None  # ... as does the reader of them
        if any(u.stop - u.start > rows for u in units):  # row groups larger than a chunk
            yield from super().chunks(rows, start, stop)
            return
        n = self.shape[0]
        assert n is not None  # a Parquet footer knows its rows
        end = n if stop is None else min(stop, n)
        for u in units[unit_at(units, start) :]:
            lo, hi = max(start, u.start), min(end, u.stop)
            if lo >= hi:
                break
            columns = RowGroupColumns(self, u.lo, u.hi, lo - u.start, hi - lo, lo, data, kept)
            kept = None  # its first chunk's: a reader is read by one thread
            extra = RowGroupExtras(columns, lo) if self.options.extras else None
            yield Chunk.of_columns(columns, self.path, None, lo, rows=hi - lo, extra=extra)

    def _read_blocks(
        self, lo: int, hi: int, rows: int, columns: list[str] | None, threads: bool = True
    ) -> Iterator[Batch]:
        if not threads:
            return self._read_alone(lo, hi, rows, columns)
        if self._file is None:
            self._file = self.reopen()
        return self._file.iter_batches(rows, range(lo, hi), columns)

    def _read_alone(
        self, lo: int, hi: int, rows: int, columns: list[str] | None
    ) -> Iterator[Batch]:
        """Row groups ``lo:hi`` through a reader of their own, closed once they are read (no
        file stays open per shard and part), decoded on the calling thread alone."""
        reader = self.reopen()
        try:
            yield from reader.iter_batches(rows, range(lo, hi), columns, use_threads=False)
        finally:
            reader.close()

    def handle(self) -> _Reader:
        """This thread's own reader (the footer is parsed once, not per thread): chunks are
        decoded by several workers at once."""
        h = getattr(self._local, "file", None)
        if h is None:
            h = self.reopen()
            self._local.file = h
            with self._handles_lock:
                self._handles.append(h)
        return h

    def close(self) -> None:
        self._kept = self._data = None
        with self._handles_lock:
            for h in self._handles:
                h.close()
            self._handles.clear()
        if self._file is not None:
            self._file.close()
            self._file = None


def _identity(path: str) -> tuple[int, ...] | None:
    """What tells a local file from its replacement; None for an object in a bucket (its ETag
    is checked by the fingerprint)."""
    if storage.is_uri(path):
        return None
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class RowGroupColumns(Sequence[np.ndarray]):
    """The feature columns of row groups ``lo:hi`` (rows ``offset:offset + length`` of them),
    each decoded when it is asked for, by the thread that asks; or all at once, in one read,
    when iterated (a short chunk, reduced as a matrix: a read per column would cost more than
    its values)."""

    def __init__(
        self,
        src: ParquetFile,
        lo: int,
        hi: int,
        offset: int,
        length: int,
        first: int,
        data: Any = None,
        reader: _Reader | None = None,
    ) -> None:
        self.src, self.lo, self.hi, self.offset, self.length = src, lo, hi, offset, length
        self._data = data  # the file's bytes, when it was read whole
        self._reader = reader  # a reader of those bytes, open already, for one read
        self.first = first  # the row of the file these rows start at (errors name rows)
        self._remote = storage.is_uri(src.path)
        self._table: pa.Table | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.src.selected)

    @property
    def width(self) -> int:
        """Features in these columns (a feature group counts its elements)."""
        return len(self.src.features)

    def __getitem__(self, j: int) -> np.ndarray:  # type: ignore[override]
        return self._selected(j, self.column(self.src.selected[j].top))

    def _selected(self, j: int, col: pa.ChunkedArray) -> np.ndarray:
        return selected_array(col, self.src.selected[j], self.first, self.src.path)

    def column(self, name: str) -> pa.ChunkedArray:
        """Column ``name`` of these rows, as Arrow decoded it."""
        try:
            if self._remote:
                col = self._every_column().column(name)
            else:
                table = self.src.handle().read_row_groups(range(self.lo, self.hi), [name])
                col = table.column(0)
            if self.offset or self.length != len(col):
                col = col.slice(self.offset, self.length)
            return col
        except (pa.ArrowException, OSError) as exc:
            raise self._error(exc, f"column {name!r}", name) from None

    def __iter__(self) -> Iterator[np.ndarray]:
        """Every column; a short chunk's in one read, by a reader opened for it and closed at
        once (a fit of many small files holds no file open between its chunks)."""
        n = len(self.src.selected)
        if self._remote or self.length * self.width > _WHOLE_READ_VALUES:  # one at a time
            return (self[j] for j in range(n))
        table = self._short_table()
        cols = [table.column(c.top) for c in self.src.selected]
        return iter([self._selected(j, c) for j, c in enumerate(cols)])

    def row_major(self) -> np.ndarray | None:
        """A short chunk of plain float columns (one float type, no nesting) as its
        ``(rows, features)`` matrix in one step (Arrow's ``to_tensor``, nulls as NaN: what the
        columns give one by one), or None for any other chunk. For a shard of 1,000 rows x 64
        columns this is 0.04 ms against 0.4 ms column by column (docs/performance.md)."""
        if self._remote or self.length * self.width > _WHOLE_READ_VALUES:
            return None
        first, selected = self.src.plain_float, self.src.selected
        if first is None:
            return None
        table = self._short_table().select([c.top for c in selected])
        batch = table.combine_chunks().to_batches()
        if not batch:
            return np.empty((0, len(selected)), first.to_pandas_dtype())
        return np.asarray(batch[0].to_tensor(null_to_nan=True, row_major=True))

    def _short_table(self) -> pa.Table:
        try:
            reader, self._reader = self._reader, None
            if reader is None:
                reader = self.src.reopen(whole=True, data=self._data)
            try:
                table = reader.read_row_groups(range(self.lo, self.hi), self.src.read_columns)
            finally:
                reader.close()
            if self.offset or self.length != table.num_rows:
                table = table.slice(self.offset, self.length)
            return table
        except (pa.ArrowException, OSError) as exc:
            for j in range(len(self.src.selected)):  # the error names the unreadable column
                self[j]
            raise self._error(exc, "the columns", None) from None

    def _every_column(self) -> pa.Table:
        """An object in a bucket: every feature column of the chunk in one read, its column
        chunks fetched as coalesced ranged GETs in parallel instead of a round trip per column
        and row group (docs/performance.md); the chunk is within the memory budget by
        :meth:`ParquetFile.preferred_rows`."""
        with self._lock:
            if self._table is None:
                self._table = self.src.handle().read_row_groups(
                    range(self.lo, self.hi), self.src.read_columns, use_threads=True
                )
            return self._table

    def _error(self, exc: BaseException, what: str, name: str | None) -> DataError:
        one = self.hi == self.lo + 1
        groups = f"row group {self.lo}" if one else f"row groups {self.lo}-{self.hi - 1}"
        return DataError(
            f"cannot read {what} of {groups}: {one_line(exc)}", path=self.src.path, feature=name
        )


class RowGroupExtras(Mapping[str, Any]):
    """The ``--by`` / ``--weights`` arrays of a chunk of row groups, decoded on first use by
    the worker that reduces the chunk (as its feature columns are)."""

    def __init__(self, columns: RowGroupColumns, start: int) -> None:
        self.columns, self.start = columns, start
        self._arrays: dict[str, Any] | None = None

    def _read(self) -> dict[str, Any]:
        if self._arrays is None:
            src = self.columns.src
            arrays = extra_arrays(self.columns.column, src.options, src.path, self.start)
            self._arrays = arrays or {}
        return self._arrays

    def __getitem__(self, role: str) -> Any:
        return self._read()[role]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())
