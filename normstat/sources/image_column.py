"""A Parquet / Arrow column of encoded images, read as images (``--columns img``).

The column is ``binary`` (each cell a JPEG or PNG file's bytes) or Hugging Face ``Image()``'s
``struct<bytes: binary, path: string>`` (bytes first; a cell without bytes is read from its path).
Cells are read a record batch at a time, only that column, and decoded by the shared pipeline of
:mod:`normstat.sources.images`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from normstat.errors import DataError, UsageError
from normstat.sources.images import ImageStream, Payload

BATCH_ROWS = 256


def is_image_column(path: str, fmt: str, column: str) -> bool:
    """Whether ``column`` of the table at ``path`` holds encoded images."""
    import pyarrow as pa

    schema = _schema(path, fmt)
    if schema is None or column not in schema.names:
        return False
    t = schema.field(column).type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return True
    return pa.types.is_struct(t) and {t.field(i).name for i in range(t.num_fields)} >= {"bytes"}


def _schema(path: str, fmt: str) -> Any:
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_schema(path)
        with pa.memory_map(path) as source:
            return pa.ipc.open_file(source).schema
    except (pa.ArrowInvalid, OSError):
        return None  # the table reader names what is wrong with the file


class ImageColumn(ImageStream):
    """One column of encoded images in one or more Parquet / Arrow files."""

    format = "image-column"

    def __init__(
        self,
        paths: Sequence[str],
        roots: Sequence[str | None],
        specs: Sequence[str],
        options: dict[str, Any],
        columns: Sequence[str] | None = None,
    ) -> None:
        if not columns or len(columns) != 1:
            raise UsageError("an image column is read alone: --columns NAME", path=specs[0])
        self.paths = list(paths)
        self.specs = list(specs)
        self.column = columns[0]
        super().__init__(self.specs[0], options)

    def _count(self) -> int:
        return sum(_rows(p) for p in self.paths)

    def record(self) -> dict[str, Any]:
        """The image record, and the column the images came from (LeRobot's stats key)."""
        return {**super().record(), "column": self.column}

    def _items(self, start: int) -> Iterator[tuple[str, Payload]]:
        index = 0
        for path in self.paths:
            for cell in _cells(path, self.column):
                if index >= start:
                    yield f"{path}:{self.column}[{index}]", _payload(cell, path)
                index += 1

    def _first(self) -> tuple[int, int]:
        for where, payload in self._items(0):
            size = self._header_size(payload)
            if size is not None:
                return size
            if not self.skip_bad:
                raise DataError("cannot read this image's header", path=where)
        raise DataError(f"no image in column {self.column!r} could be read", path=self.path)


def _rows(path: str) -> int:
    import pyarrow as pa

    if path.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with pa.memory_map(path) as source:
        reader = pa.ipc.open_file(source)
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


def _cells(path: str, column: str) -> Iterator[Any]:
    import pyarrow as pa

    if path.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        batches: Iterator[Any] = pq.ParquetFile(path).iter_batches(BATCH_ROWS, columns=[column])
        for batch in batches:
            yield from batch.column(0).to_pylist()
        return
    with pa.memory_map(path) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield from reader.get_batch(i).column(column).to_pylist()


def _payload(cell: Any, table: str) -> Payload:
    """A cell's bytes: a binary value, or a struct's ``bytes`` (else its ``path``, relative to
    the table's folder). An empty cell decodes to an error naming it."""
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            return bytes(cell["bytes"])
        if cell.get("path"):
            return os.path.join(os.path.dirname(table), str(cell["path"]))
        return b""
    return b"" if cell is None else bytes(cell)
