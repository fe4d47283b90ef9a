"""Arrow IPC files and Feather (v2, the same format), and Arrow IPC streams (files or stdin).

Files are memory-mapped and read a record batch at a time; a batch is sliced, never copied, so a
file written as one huge batch still streams. Pages of a mapping stay resident (and count as the
process's memory) until the kernel needs them, so after every slice the mapping is told it is no
longer needed (``MADV_DONTNEED``): the pages are file cache, re-read if touched again, and the
resident memory stays bounded by the batch. A file that holds the IPC *stream* format (some
tools write that to ``.arrow``) is read as a stream.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
import sys
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import pyarrow as pa
import pyarrow.ipc as ipc

from normstat import storage
from normstat.errors import DataError
from normstat.sources.reading import TableOptions
from normstat.sources.table import Batch, TableSource, arrow_error, read_once


class IpcFile(TableSource):
    format = "arrow"

    def __init__(
        self, path: str, columns: Sequence[str] | None = None, options: TableOptions | None = None
    ) -> None:
        self._map: mmap.mmap | None = None
        self._buffer: pa.Buffer | pa.NativeFile | None = None
        if storage.is_uri(path):  # an object in a bucket: read by ranged GETs, not mapped
            self.path = path
            self._buffer = self._data()
        else:
            try:
                with open(path, "rb") as fp:
                    self._map = mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
                raise arrow_error(exc, "Arrow IPC file", path) from None
            self._buffer = pa.py_buffer(self._map)
        self._blocks: list[int] | None = None
        try:
            self._file: ipc.RecordBatchFileReader | None = ipc.open_file(self._buffer)
            rows: int | None = self._file.count_rows()
            schema = self._file.schema
        except (pa.ArrowException, OSError) as exc:
            if self._magic() == b"ARROW1":  # the file format, damaged: say so
                raise arrow_error(exc, "Arrow IPC / Feather file", path) from None
            self._file, rows = None, None
            schema = self._open_stream(path).schema
        if path.lower().endswith(".feather"):
            self.format = "feather"
        try:
            schema.names  # noqa: B018  (decoded here: damaged names may not be UTF-8)
        except UnicodeDecodeError as exc:
            raise arrow_error(exc, "Arrow IPC / Feather file", path) from None
        self._setup(path, schema, columns, rows, options)

    def _data(self) -> pa.Buffer | pa.NativeFile:
        """What the IPC readers read: the mapped file, or a fresh random-access file of the
        object (a stream is read from its start each time)."""
        if self._map is not None:
            return self._buffer
        return storage.open_input(self.path)

    def _magic(self) -> bytes:
        if self._map is not None:
            return bytes(self._map[:6])
        f = self._data()
        try:
            return bytes(f.read(6))
        finally:
            f.close()

    def _open_stream(self, path: str) -> ipc.RecordBatchStreamReader:
        try:
            return ipc.open_stream(self._data())
        except (pa.ArrowException, OSError) as exc:
            raise arrow_error(
                exc, "Arrow IPC file or stream (Feather v1 is not read)", path
            ) from None

    def check_budget(self, budget: int) -> None:
        """Refuse a compressed record batch that decompresses to more than ``budget`` bytes:
        pyarrow inflates a batch whole, so memory would follow the file, not --chunk-size.
        (An object in a bucket is not scanned: that would download it; see docs/storage.md.)"""
        if self._map is None:
            return
        try:
            largest = max(decoded_batch_bytes(self._buffer), default=0)
        except (pa.ArrowException, OSError, struct.error, IndexError, ValueError):
            return  # damaged metadata: reading the batch reports it
        if largest > budget:
            raise DataError(
                f"a compressed record batch declares {largest} bytes once decompressed, more "
                f"than the {budget} bytes that one read may hold (max(256 MiB, 4 x "
                "--chunk-size)); rewrite it with smaller batches",
                path=self.path,
            )

    def _peek(self, top: str) -> pa.Array | None:
        """The first record batch's column ``top`` (a file in the stream format is read again
        from its start: it is mapped, not a pipe)."""
        if self._file is not None:
            return self._file.get_batch(0).column(top) if self._file.num_record_batches else None
        for b in self._open_stream(self.path):
            if b.num_rows:
                return b.column(top)
        return None

    def _read(self, rows: int, columns: list[str] | None) -> Iterator[Batch]:
        """The stream format (no index of batches): read it again from the start."""
        return read_once(self._open_stream(self.path), columns, self.path)

    def storage_blocks(self) -> list[int] | None:
        """The record batches' row counts, or ``None`` for a file in the stream format.

        Counted through a reader of one feature column: a compressed (Feather) file would
        otherwise decompress every column just to count rows (docs/performance.md, "Figures
        behind the code")."""
        if self._file is None:
            return None
        if self._blocks is None:
            one = ipc.IpcReadOptions(
                included_fields=[self.schema.get_field_index(self.read_columns[0])]
            )
            try:
                reader = ipc.open_file(self._data(), options=one)
                n = reader.num_record_batches
                self._blocks = [reader.get_batch(i).num_rows for i in range(n)]
            except (pa.ArrowException, OSError) as exc:
                raise arrow_error(exc, "Arrow IPC / Feather file", self.path) from None
        return self._blocks

    def _read_blocks(
        self, lo: int, hi: int, rows: int, columns: list[str] | None, threads: bool = True
    ) -> Iterator[Batch]:
        assert self._file is not None
        for i in range(lo, hi):
            b = self._file.get_batch(i)
            yield b if columns is None else b.select(columns)

    def _release(self) -> None:
        if self._map is not None and hasattr(self._map, "madvise"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        if isinstance(self._buffer, pa.NativeFile):
            self._buffer.close()
        self._file = self._buffer = None
        # batches handed out may still point into the map: then the GC closes it
        with contextlib.suppress(BufferError):
            if self._map is not None:
                self._map.close()


def decoded_batch_bytes(buffer: pa.Buffer) -> Iterator[int]:
    """For each compressed record batch of an IPC file or stream in ``buffer``: the bytes its
    buffers declare once decompressed (the int64 before each compressed buffer), read from the
    messages' metadata (a flatbuffer) without decompressing anything. pyarrow decompresses a
    batch whole, so a small file can otherwise declare gigabytes (a decompression bomb)."""
    start = 8 if buffer.size >= 8 and buffer.slice(0, 6).to_pybytes() == b"ARROW1" else 0
    reader = ipc.MessageReader.open_stream(pa.BufferReader(buffer.slice(start)))
    while True:
        try:
            message = reader.read_next_message()
        except StopIteration:
            return
        if message is None:
            return
        if message.type == "record batch":
            total = _declared_bytes(message.metadata.to_pybytes(), message.body)
            if total is not None:
                yield total


def _declared_bytes(meta: bytes, body: pa.Buffer | None) -> int | None:
    """Arrow's ``Message`` table -> its ``RecordBatch`` header -> ``buffers`` and
    ``compression`` (format/Message.fbs); None if the batch is not compressed."""

    def field(table: int, i: int) -> int | None:
        vtable = table - struct.unpack_from("<i", meta, table)[0]
        if 4 + 2 * i >= struct.unpack_from("<H", meta, vtable)[0]:
            return None
        off = struct.unpack_from("<H", meta, vtable + 4 + 2 * i)[0]
        return table + off if off else None

    def table_at(at: int) -> int:
        return at + struct.unpack_from("<I", meta, at)[0]

    header = field(table_at(0), 2)
    if header is None or body is None:
        return None
    batch = table_at(header)
    buffers, compression = field(batch, 2), field(batch, 3)
    if buffers is None or compression is None:
        return None
    vector = table_at(buffers)
    total = 0
    for k in range(struct.unpack_from("<I", meta, vector)[0]):
        offset, length = struct.unpack_from("<qq", meta, vector + 4 + 16 * k)
        declared = -1
        if length >= 8:
            declared = struct.unpack("<q", body.slice(offset, 8).to_pybytes())[0]
        total += length if declared == -1 else declared
    return total


class IpcStream(TableSource):
    """An Arrow IPC stream on stdin (``-`` with ``--input-format arrow``): one pass only."""

    format = "arrow"

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        stream: BinaryIO | None = None,
        path: str = "-",
        options: TableOptions | None = None,
    ) -> None:
        try:
            self._reader: ipc.RecordBatchStreamReader | None = ipc.open_stream(
                stream if stream is not None else sys.stdin.buffer
            )
        except (pa.ArrowException, OSError) as exc:
            raise arrow_error(exc, "Arrow IPC stream", path) from None
        self._setup(path, self._reader.schema, columns, None, options)

    def _read(self, rows: int, columns: list[str] | None) -> Iterator[Batch]:
        reader, self._reader = self._reader, None
        return read_once(reader, columns, self.path)
