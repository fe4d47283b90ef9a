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
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from normstat.errors import DataError
from normstat.sources.base import Chunk
from normstat.sources.blocks import unit_at
from normstat.sources.reading import TableOptions
from normstat.sources.table import Batch, TableSource, arrow_error, column_array, one_line

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
_WIDEST = 8
"""Bytes per value of the widest column a chunk is decoded to (float64)."""


class _Reader:
    """pyarrow's Parquet reader (``pyarrow._parquet.ParquetReader``) on a local file, opened
    without ``pyarrow.parquet``: that module imports ``pyarrow.fs`` with its S3, GCS, Azure and
    SSL modules, a fifth of what a CLI fit of a Parquet file spends importing pyarrow
    (docs/performance.md). Where the private class is missing or takes other arguments, the
    public ``pyarrow.parquet.ParquetFile``'s reader is used instead."""

    def __init__(self, path: str, metadata: Any = None, whole: bool = False) -> None:
        options = {**_READ_OPTIONS, **_WHOLE} if whole else _READ_OPTIONS
        try:
            from pyarrow._parquet import ParquetReader

            reader = ParquetReader()
            reader.open(path, metadata=metadata, **options)
        except (ImportError, TypeError):  # a pyarrow whose private reader differs
            import pyarrow.parquet as pq

            reader = pq.ParquetFile(path, metadata=metadata, **options).reader
        self.reader = reader
        self.metadata = reader.metadata
        self.schema_arrow = reader.schema_arrow
        self._leaves: dict[str, list[int]] = {}  # top-level column -> its leaf columns
        for i, path in enumerate(reader.column_paths):
            self._leaves.setdefault(path[0], []).append(i)

    def indices(self, columns: Sequence[str] | None) -> list[int] | None:
        """The leaf column indices of top-level ``columns`` (all of them: ``None``)."""
        if columns is None:
            return None
        return [i for c in columns for i in self._leaves.get(c, ())]

    def read_row_groups(self, row_groups: range, columns: Sequence[str]) -> pa.Table:
        return self.reader.read_row_groups(
            list(row_groups), column_indices=self.indices(columns), use_threads=False
        )

    def iter_batches(
        self, batch_size: int, row_groups: range, columns: Sequence[str] | None
    ) -> Iterator[Batch]:
        return self.reader.iter_batches(
            batch_size, list(row_groups), column_indices=self.indices(columns), use_threads=True
        )

    def close(self) -> None:
        self.reader.close()


class ParquetFile(TableSource):
    format = "parquet"

    def __init__(
        self, path: str, columns: Sequence[str] | None = None, options: TableOptions | None = None
    ) -> None:
        try:
            self._identity = _identity(path)
            reader = _Reader(path)
            schema = reader.schema_arrow
            schema.names  # noqa: B018  (decoded here: damaged names may not be UTF-8)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise arrow_error(exc, "Parquet file", path) from None
        self.metadata = reader.metadata
        reader.close()  # reopened to read: ten thousand shards must not hold ten thousand files
        self._setup(path, schema, columns, self.metadata.num_rows, options)
        self._file: _Reader | None = None
        self._local = threading.local()
        self._handles: list[_Reader] = []
        self._handles_lock = threading.Lock()

    def storage_blocks(self) -> list[int]:
        meta = self.metadata
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]

    def reopen(self, whole: bool = False) -> _Reader:
        """A new reader of this file, its footer taken from the first opening (not parsed
        again); refused if the file is not the one that was opened. ``whole``: to read whole
        column chunks, their reads coalesced (a buffer would read 256 KiB for a chunk of a few
        KiB)."""
        if _identity(self.path) != self._identity:
            raise DataError(
                "the file changed since it was opened (size, time or inode differ)",
                path=self.path,
            )
        return _Reader(self.path, metadata=self.metadata, whole=whole)

    def preferred_rows(self, target_bytes: int) -> int:
        """Whole row groups per chunk when one column of the largest fits the budget: a chunk
        is then decoded a column at a time and no row group is decoded twice."""
        rows = super().preferred_rows(target_bytes)
        largest = max(self.storage_blocks(), default=0)
        return largest if rows < largest <= target_bytes // _WIDEST else rows

    def chunks(self, rows: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        units = self.read_units(rows)
        assert units is not None  # a Parquet file always has row groups
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
            columns = RowGroupColumns(self, u.lo, u.hi, lo - u.start, hi - lo)
            yield Chunk.of_columns(columns, self.path, None, lo, rows=hi - lo)

    def _read_blocks(
        self, lo: int, hi: int, rows: int, columns: list[str] | None
    ) -> Iterator[Batch]:
        if self._file is None:
            self._file = self.reopen()
        return self._file.iter_batches(rows, range(lo, hi), columns)

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
        with self._handles_lock:
            for h in self._handles:
                h.close()
            self._handles.clear()
        if self._file is not None:
            self._file.close()
            self._file = None


def _identity(path: str) -> tuple[int, ...]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class RowGroupColumns(Sequence[np.ndarray]):
    """The feature columns of row groups ``lo:hi`` (rows ``offset:offset + length`` of them),
    each decoded when it is asked for, by the thread that asks; or all at once, in one read,
    when iterated (a short chunk, reduced as a matrix: a read per column would cost more than
    its values)."""

    def __init__(self, src: ParquetFile, lo: int, hi: int, offset: int, length: int) -> None:
        self.src, self.lo, self.hi, self.offset, self.length = src, lo, hi, offset, length

    def __len__(self) -> int:
        return len(self.src.features)

    def __getitem__(self, j: int) -> np.ndarray:  # type: ignore[override]
        name = self.src.features[j]
        try:
            table = self.src.handle().read_row_groups(range(self.lo, self.hi), [name])
            return self._array(table.column(0))
        except (pa.ArrowException, OSError) as exc:
            raise self._error(exc, f"column {name!r}", name) from None

    def __iter__(self) -> Iterator[np.ndarray]:
        """Every column; a short chunk's in one read, by a reader opened for it and closed at
        once (a fit of many small files holds no file open between its chunks)."""
        names = self.src.features
        if self.length * len(names) > _WHOLE_READ_VALUES:  # long columns: one at a time
            return (self[j] for j in range(len(names)))
        try:
            reader = self.src.reopen(whole=True)
            try:
                table = reader.read_row_groups(range(self.lo, self.hi), names)
            finally:
                reader.close()
            return iter([self._array(table.column(j)) for j in range(len(names))])
        except (pa.ArrowException, OSError) as exc:
            for j in range(len(names)):  # the error names the column that cannot be read
                self[j]
            raise self._error(exc, "the columns", None) from None

    def _array(self, col: pa.ChunkedArray) -> np.ndarray:
        if self.offset or self.length != len(col):
            col = col.slice(self.offset, self.length)
        return column_array(col)

    def _error(self, exc: BaseException, what: str, name: str | None) -> DataError:
        one = self.hi == self.lo + 1
        groups = f"row group {self.lo}" if one else f"row groups {self.lo}-{self.hi - 1}"
        return DataError(
            f"cannot read {what} of {groups}: {one_line(exc)}", path=self.src.path, feature=name
        )
