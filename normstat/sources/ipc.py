"""Arrow IPC files and Feather (v2, the same format), and Arrow IPC streams (files or stdin).

Files are memory-mapped and read a record batch at a time; a batch is sliced, never copied, so a
file written as one huge batch still streams. A file that holds the IPC *stream* format (some
tools write that to ``.arrow``) is read as a stream.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import pyarrow as pa
import pyarrow.ipc as ipc

from normstat.sources.table import Batch, TableSource, arrow_error, read_once


class IpcFile(TableSource):
    format = "arrow"

    def __init__(self, path: str, columns: Sequence[str] | None = None) -> None:
        try:
            self._map = pa.memory_map(path)
        except (pa.ArrowException, OSError) as exc:
            raise arrow_error(exc, "file", path) from None
        try:
            self._file: ipc.RecordBatchFileReader | None = ipc.open_file(self._map)
            rows: int | None = self._file.count_rows()
            schema = self._file.schema
        except pa.ArrowInvalid:
            self._file, rows = None, None
            schema = self._open_stream(path).schema
        if path.lower().endswith(".feather"):
            self.format = "feather"
        self._setup(path, schema, columns, rows)

    def _open_stream(self, path: str) -> ipc.RecordBatchStreamReader:
        try:
            self._map.seek(0)
            return ipc.open_stream(self._map)
        except (pa.ArrowException, OSError) as exc:
            raise arrow_error(
                exc, "Arrow IPC file or stream (Feather v1 is not read)", path
            ) from None

    def _read(self, rows: int, columns: list[str] | None) -> Iterator[Batch]:
        if self._file is None:  # the stream format: read it again from the start
            yield from read_once(self._open_stream(self.path), columns, self.path)
            return
        for i in range(self._file.num_record_batches):
            b = self._file.get_batch(i)
            yield b if columns is None else b.select(columns)

    def close(self) -> None:
        self._map.close()


class IpcStream(TableSource):
    """An Arrow IPC stream on stdin (``-`` with ``--input-format arrow``): one pass only."""

    format = "arrow"

    def __init__(
        self, columns: Sequence[str] | None = None, stream: BinaryIO | None = None, path: str = "-"
    ) -> None:
        try:
            self._reader: ipc.RecordBatchStreamReader | None = ipc.open_stream(
                stream if stream is not None else sys.stdin.buffer
            )
        except (pa.ArrowException, OSError) as exc:
            raise arrow_error(exc, "Arrow IPC stream", path) from None
        self._setup(path, self._reader.schema, columns, None)

    def _read(self, rows: int, columns: list[str] | None) -> Iterator[Batch]:
        reader, self._reader = self._reader, None
        return read_once(reader, columns, self.path)
