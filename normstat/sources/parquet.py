"""Parquet files, read a row group at a time, only the columns asked for.

``buffer_size`` makes pyarrow read each column chunk through a small buffer instead of whole, so
memory is bounded by what is decoded, not by the writer's row-group size (a row group of 64
float32 columns can be 256 MB). Row groups are the file's storage blocks: a read can start at any
of them (see :mod:`normstat.sources.blocks`).

For ``fit``, a chunk that holds whole row groups is handed out *undecoded*: its columns are
decoded one at a time by the worker that reduces them (:class:`RowGroupColumns`): less CPU than
record batches of every column, and a worker holds one column instead of a whole batch, which
pyarrow's batch reader needed several times of while decoding (docs/performance.md, "Figures
behind the code").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from normstat import storage
from normstat.errors import DataError
from normstat.sources.base import Chunk
from normstat.sources.blocks import unit_at
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
_REMOTE_OPTIONS = {**_READ_OPTIONS, "pre_buffer": True}
"""An object in a bucket: the column chunks of a read are fetched as coalesced ranged GETs
(one column of a row group at a time, so memory stays bounded by that column)."""
_WIDEST = 8
"""Bytes per value of the widest column a chunk is decoded to (float64)."""


class ParquetFile(TableSource):
    format = "parquet"

    def __init__(
        self, path: str, columns: Sequence[str] | None = None, options: TableOptions | None = None
    ) -> None:
        self._inputs: list[pa.NativeFile] = []
        try:
            self._file = pq.ParquetFile(self._input(path), **self._options(path))
            schema = self._file.schema_arrow
            schema.names  # noqa: B018  (decoded here: damaged names may not be UTF-8)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise arrow_error(exc, "Parquet file", path) from None
        self._setup(path, schema, columns, self._file.metadata.num_rows, options)
        self._local = threading.local()
        self._handles: list[pq.ParquetFile] = []
        self._handles_lock = threading.Lock()

    def _input(self, path: str) -> str | pa.NativeFile:
        """A local path as itself; an object in a bucket as a random-access file of it."""
        if not storage.is_uri(path):
            return path
        f = storage.open_input(path)
        self._inputs.append(f)
        return f

    @staticmethod
    def _options(path: str) -> dict:
        return _REMOTE_OPTIONS if storage.is_uri(path) else _READ_OPTIONS

    def storage_blocks(self) -> list[int]:
        meta = self._file.metadata
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]

    def preferred_rows(self, target_bytes: int) -> int:
        """Whole row groups per chunk when one column of the largest (a feature group: all its
        values) fits the budget: a chunk is then decoded a column at a time and no row group is
        decoded twice."""
        rows = super().preferred_rows(target_bytes)
        if storage.is_uri(self.path):  # every column of a chunk is fetched at once: see below
            return rows
        largest = max(self.storage_blocks(), default=0)
        widest = _WIDEST * max(c.width for c in self.selected)  # a feature group: k values a row
        return largest if rows < largest <= target_bytes // widest else rows

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
            extra = RowGroupExtras(columns, lo) if self.options.extras else None
            yield Chunk.of_columns(columns, self.path, None, lo, rows=hi - lo, extra=extra)

    def storage_start(self, group: int) -> int:
        """The first row of row group ``group``."""
        return sum(self.storage_blocks()[:group])

    def _read_blocks(
        self, lo: int, hi: int, rows: int, columns: list[str] | None
    ) -> Iterator[Batch]:
        return self._file.iter_batches(
            batch_size=rows, row_groups=range(lo, hi), columns=columns, use_threads=True
        )

    def handle(self) -> pq.ParquetFile:
        """This thread's own reader (the footer is parsed once, not per thread): chunks are
        decoded by several workers at once."""
        h = getattr(self._local, "file", None)
        if h is None:
            with self._handles_lock:
                source = self._input(self.path)
            h = pq.ParquetFile(source, metadata=self._file.metadata, **self._options(self.path))
            self._local.file = h
            with self._handles_lock:
                self._handles.append(h)
        return h

    def close(self) -> None:
        with self._handles_lock:
            for h in self._handles:
                h.close()
            self._handles.clear()
            for f in self._inputs:
                f.close()
            self._inputs.clear()
        self._file.close()


class RowGroupColumns(Sequence[np.ndarray]):
    """The feature columns of row groups ``lo:hi`` (rows ``offset:offset + length`` of them),
    each decoded when it is asked for, by the thread that asks."""

    def __init__(self, src: ParquetFile, lo: int, hi: int, offset: int, length: int) -> None:
        self.src, self.lo, self.hi, self.offset, self.length = src, lo, hi, offset, length
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
        selected = self.src.selected[j]
        col = self.column(selected.top)
        first = self.src.storage_start(self.lo) + self.offset
        return selected_array(col, selected, first, self.src.path)

    def column(self, name: str) -> pa.ChunkedArray:
        """Column ``name`` of these rows, as Arrow decoded it."""
        try:
            if self._remote:
                col = self._every_column().column(name)
            else:
                table = self.src.handle().read_row_groups(
                    range(self.lo, self.hi), columns=[name], use_threads=False
                )
                col = table.column(0)
            if self.offset or self.length != len(col):
                col = col.slice(self.offset, self.length)
            return col
        except (pa.ArrowException, OSError) as exc:
            one = self.hi == self.lo + 1
            groups = f"row group {self.lo}" if one else f"row groups {self.lo}-{self.hi - 1}"
            raise DataError(
                f"cannot read column {name!r} of {groups}: {one_line(exc)}",
                path=self.src.path,
                feature=name,
            ) from None

    def _every_column(self) -> pa.Table:
        """An object in a bucket: every feature column of the chunk in one read, its column
        chunks fetched as coalesced ranged GETs in parallel instead of a round trip per column
        and row group (docs/performance.md); the chunk is within the memory budget by
        :meth:`ParquetFile.preferred_rows`."""
        with self._lock:
            if self._table is None:
                self._table = self.src.handle().read_row_groups(
                    range(self.lo, self.hi), columns=self.src.read_columns, use_threads=True
                )
            return self._table

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[j] for j in range(len(self)))


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
