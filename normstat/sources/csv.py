"""CSV through pyarrow's streaming reader: a header row, then blocks of rows converted in turn.

Column types are inferred from the first block. Feature columns are then read as float64 (a
column of integers in the first block may hold ``1.5`` further down), the other columns as
inferred. Empty cells and the usual spellings of missing values (``NA``, ``NaN``, ``null``) are
nulls, hence missing values.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv

from normstat.sources.table import Batch, TableSource, arrow_error, read_once

# Measured: with 16 MiB blocks pyarrow's reader held memory growing with the file (540 MB for a
# 567 MB CSV, 266 MB for half of it); with 1 MiB blocks 36 MB for both, and no slower.
_BLOCK_BYTES = 1 << 20


def _open(
    source: str | BinaryIO,
    types: dict[str, pa.DataType] | None = None,
    columns: list[str] | None = None,
) -> pacsv.CSVStreamingReader:
    convert = pacsv.ConvertOptions(column_types=types or {}, include_columns=columns)
    return pacsv.open_csv(
        source, read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES), convert_options=convert
    )


def _as_float(schema: pa.Schema, features: list[str]) -> dict[str, pa.DataType]:
    return {
        n: pa.float64()
        for n in features
        if pa.types.is_integer(schema.field(n).type) or pa.types.is_floating(schema.field(n).type)
    }


class CsvFile(TableSource):
    format = "csv"

    def __init__(self, path: str, columns: Sequence[str] | None = None) -> None:
        try:
            schema = _open(path).schema
            schema.names  # noqa: B018  (pyarrow decodes the header here: it may not be UTF-8)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise arrow_error(exc, "CSV file", path) from None
        self._setup(path, schema, columns, None)
        self._types = _as_float(schema, self.features)
        self.feature_types = [
            str(self._types.get(n, t))
            for n, t in zip(self.features, self.feature_types, strict=True)
        ]
        self.schema = pa.schema([pa.field(f.name, self._types.get(f.name, f.type)) for f in schema])

    def _read(self, rows: int, columns: list[str] | None) -> Iterator[Batch]:
        yield from _open(self.path, self._types, columns)


class CsvStream(TableSource):
    """CSV on stdin (``-`` with ``--input-format csv``): one pass, types from the first block."""

    format = "csv"

    def __init__(
        self, columns: Sequence[str] | None = None, stream: BinaryIO | None = None, path: str = "-"
    ) -> None:
        try:
            self._reader: pacsv.CSVStreamingReader | None = _open(
                stream if stream is not None else sys.stdin.buffer
            )
            self._reader.schema.names  # noqa: B018  (decoded here: it may not be UTF-8)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise arrow_error(exc, "CSV stream", path) from None
        self._setup(path, self._reader.schema, columns, None)

    def _read(self, rows: int, columns: list[str] | None) -> Iterator[Batch]:
        reader, self._reader = self._reader, None
        return read_once(reader, columns, self.path)
