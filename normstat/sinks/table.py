"""Table outputs: Parquet, Arrow IPC file / Feather, CSV, and an Arrow IPC stream to stdout.

Writers have the shape of every writer (:class:`normstat.sinks.Writer`): ``Writer(target,
spec)``, ``write(batch)`` for each record batch in order, ``close()``. The schema (with its
metadata) is fixed up front, so every batch is checked against it by pyarrow.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from normstat.sinks import OutputSpec


class ParquetTableWriter:
    """Batches are gathered into row groups of about ``ROW_GROUP_BYTES``: a row group per small
    batch would make a slow, large file. Float columns skip dictionary encoding, which
    normalised values never profit from."""

    ROW_GROUP_BYTES = 32 << 20

    def __init__(self, target: str, spec: OutputSpec) -> None:
        schema = spec.schema
        plain = {f.name for f in schema if pa.types.is_floating(f.type)}
        dictionary = [f.name for f in schema if f.name not in plain]
        self._w = pq.ParquetWriter(target, schema, use_dictionary=dictionary)
        self._pending: list[pa.RecordBatch] = []
        self._bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._bytes += batch.nbytes
        if self._bytes >= self.ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = pa.Table.from_batches(self._pending)
            self._w.write_table(table, row_group_size=table.num_rows)
        self._pending, self._bytes = [], 0

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self._w.close()


class IpcTableWriter:
    """An Arrow IPC file (Feather v2 is the same file)."""

    def __init__(self, target: str, spec: OutputSpec) -> None:
        self._sink = pa.OSFile(target, "wb")
        self._w = ipc.new_file(self._sink, spec.schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._w.write_batch(batch)

    def close(self) -> None:
        self._w.close()
        self._sink.close()


class CsvTableWriter:
    def __init__(self, target: str, spec: OutputSpec) -> None:
        self._w = pacsv.CSVWriter(target, spec.schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._w.write_batch(batch)

    def close(self) -> None:
        self._w.close()


class IpcStreamWriter:
    """``-o -``: an Arrow IPC stream on stdout, batch by batch, for a pipe into training."""

    def __init__(self, target: str, spec: OutputSpec, stream: BinaryIO | None = None) -> None:
        self._fp = stream if stream is not None else sys.stdout.buffer
        self._w = ipc.new_stream(self._fp, spec.schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._w.write_batch(batch)

    def close(self) -> None:
        self._w.close()
        self._fp.flush()
