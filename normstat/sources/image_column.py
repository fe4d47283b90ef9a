"""A Parquet / Arrow column of encoded images, read as images (``--columns img``).

The column is ``binary`` (each cell a JPEG or PNG file's bytes) or Hugging Face ``Image()``'s
``struct<bytes: binary, path: string>`` (bytes first; a cell without bytes is read from its path).
Cells are read a record batch at a time, only that column, and decoded by the shared pipeline of
:mod:`normstat.sources.images`.

The table's class labels travel with ``apply``'s HDF5 output as ``/labels``, as an image folder's
do: the column Hugging Face declares a ``ClassLabel`` (its ``names`` become the ``classes``
attribute), else an integer column named ``label`` or ``labels``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

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

    def _setup(self, columns: Sequence[str] | None) -> None:
        if not columns or len(columns) != 1:
            raise UsageError("an image column is read alone: --columns NAME", path=self.path)
        self.column = columns[0]

    def _count(self) -> int:
        return sum(_rows(p) for p in self.paths)

    def record(self) -> dict[str, Any]:
        """The image record, and the column the images came from (LeRobot's stats key)."""
        return {**super().record(), "column": self.column}

    def _items(self, start: int) -> Iterator[tuple[str, Payload]]:
        index = 0
        for path in self.paths:
            rows = _rows(path)
            if index + rows <= start:  # a whole file before the start: not read
                index += rows
                continue
            first, cells = _cells(path, self.column, start - index)
            index += first
            for cell in cells:
                if index >= start:
                    yield f"{path}:{self.column}[{index}]", _payload(cell, path)
                index += 1

    def companions(self) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """``/labels`` from the tables' label column (see the module), when every file has
        it; its class names when Hugging Face recorded them."""
        found = [_label_column(p, self.column) for p in self.paths]
        first = found[0] if found else None
        if first is None or any(f is None or f[0] != first[0] for f in found):
            return {}
        name, classes = first
        labels = np.concatenate([_column_values(p, name) for p in self.paths])
        extra = {} if classes is None else {"classes": classes}
        return {"/labels": (self.kept(labels), extra)}


def _label_column(path: str, image_column: str) -> tuple[str, list[str] | None] | None:
    """The label column of one table and its class names: Hugging Face's ``ClassLabel``
    feature, else an integer ``label`` / ``labels`` column; None if there is none."""
    import pyarrow as pa

    fmt = "parquet" if path.lower().endswith((".parquet", ".pq")) else "arrow"
    schema = _schema(path, fmt)
    if schema is None:
        return None
    features = _hf_features(schema)
    for name, feature in features.items():
        if isinstance(feature, dict) and feature.get("_type") == "ClassLabel":
            names = feature.get("names")
            if name in schema.names and name != image_column:
                ok = isinstance(names, list) and all(isinstance(n, str) for n in names)
                return name, names if ok else None
    for name in ("label", "labels"):
        if name in schema.names and pa.types.is_integer(schema.field(name).type):
            return name, None
    return None


def _hf_features(schema: Any) -> dict[str, Any]:
    """The ``features`` Hugging Face ``datasets`` records in a table's schema metadata."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        doc = json.loads(raw) if raw else {}
        features = doc.get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}
    return features if isinstance(features, dict) else {}


def _column_values(path: str, column: str) -> np.ndarray:
    import pyarrow as pa

    if path.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        col = pq.read_table(path, columns=[column]).column(0)
    else:
        with pa.memory_map(path) as source:
            col = pa.ipc.open_file(source).read_all().column(column)
    if col.null_count:
        raise DataError(f"label column {column!r} has missing values", path=path)
    return np.asarray(col.to_numpy(), np.int64)


def _rows(path: str) -> int:
    import pyarrow as pa

    if path.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with pa.memory_map(path) as source:
        reader = pa.ipc.open_file(source)
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


def _cells(path: str, column: str, skip: int = 0) -> tuple[int, Iterator[Any]]:
    """The column's cells from the row group (Parquet) or record batch (Arrow) holding row
    ``skip`` on, and that unit's first row: the units before it are not read (a Dask task
    starts at its own range)."""

    if path.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        groups: list[int] = []
        first = 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if first + n <= skip and not groups:
                first += n
                continue
            groups.append(g)
        if not groups:
            return first, iter(())
        batches = pf.iter_batches(BATCH_ROWS, row_groups=groups, columns=[column])
        return first, (v for batch in batches for v in batch.column(0).to_pylist())
    return _ipc_cells(path, column, skip)


def _ipc_cells(path: str, column: str, skip: int) -> tuple[int, Iterator[Any]]:
    import pyarrow as pa

    with pa.memory_map(path) as source:  # batch lengths from the file's metadata, no copy
        reader = pa.ipc.open_file(source)
        first, start_batch = 0, reader.num_record_batches
        for i in range(reader.num_record_batches):
            n = reader.get_batch(i).num_rows
            if first + n > skip:
                start_batch = i
                break
            first += n

    def cells() -> Iterator[Any]:
        with pa.memory_map(path) as source:
            reader = pa.ipc.open_file(source)
            for i in range(start_batch, reader.num_record_batches):
                yield from reader.get_batch(i).column(column).to_pylist()

    return first, cells()


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
