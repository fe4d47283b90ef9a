"""Table outputs: Parquet, Arrow IPC file / Feather, CSV, and an Arrow IPC stream to stdout.

Writers share one shape: ``Writer(target, schema)``, ``write(batch)`` for each record batch in
order, ``close()``. The schema (with its metadata) is fixed up front, so every batch is checked
against it by pyarrow.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from normstat.errors import UsageError
from normstat.sinks.npy import stdout_binary

# (name, suffixes): the output formats a table can be written as; npy / hdf5 take the features
# only, as a (rows, features) matrix, through the array writers.
TABLE_OUTPUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("parquet", (".parquet", ".pq")),
    ("arrow", (".arrow", ".ipc", ".arrows")),
    ("feather", (".feather",)),
    ("csv", (".csv",)),
    ("npy", (".npy",)),
    ("hdf5", (".h5", ".hdf5", ".he5")),
)


def table_output_format(out: str, input_format: str) -> str:
    """OUT's suffix names the output format; an unknown suffix keeps the input's format."""
    suffix = os.path.splitext(out.rstrip("/"))[1].lower()
    if suffix == ".zarr":
        raise UsageError(
            "a table is written as .parquet, .arrow, .feather, .csv, .npy or .h5, not .zarr",
            path=out,
        )
    for name, suffixes in TABLE_OUTPUTS:
        if suffix in suffixes:
            return name
    return input_format


class ParquetTableWriter:
    """Batches are gathered into row groups of about ``ROW_GROUP_BYTES``: a row group per small
    batch would make a slow, large file. Float columns skip dictionary encoding, which
    normalised values never profit from."""

    ROW_GROUP_BYTES = 32 << 20

    def __init__(self, target: str, schema: pa.Schema) -> None:
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

    def __init__(self, target: str, schema: pa.Schema) -> None:
        self._sink = pa.OSFile(target, "wb")
        self._w = ipc.new_file(self._sink, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._w.write_batch(batch)

    def close(self) -> None:
        self._w.close()
        self._sink.close()


class CsvTableWriter:
    def __init__(self, target: str, schema: pa.Schema) -> None:
        self._w = pacsv.CSVWriter(target, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._w.write_batch(batch)

    def close(self) -> None:
        self._w.close()


class IpcStreamWriter:
    """``-o -``: an Arrow IPC stream on stdout, batch by batch, for a pipe into training."""

    def __init__(self, schema: pa.Schema, stream: BinaryIO | None = None) -> None:
        self._fp = stream if stream is not None else stdout_binary()
        self._w = ipc.new_stream(self._fp, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._w.write_batch(batch)

    def close(self) -> None:
        self._w.close()
        self._fp.flush()


_WRITERS: dict[str, Any] = {
    "parquet": ParquetTableWriter,
    "arrow": IpcTableWriter,
    "feather": IpcTableWriter,
    "csv": CsvTableWriter,
}


def open_table_writer(fmt: str, target: str, schema: pa.Schema) -> Any:
    return _WRITERS[fmt](target, schema)
