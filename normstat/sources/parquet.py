"""Parquet files, read a record batch at a time, only the columns asked for.

``buffer_size`` makes pyarrow read each column chunk through a small buffer instead of whole, so
memory is bounded by the batch and a decoded page per column, not by the writer's row-group
size (a default row group of 64 float32 columns is 256 MB). Row groups are the file's storage
blocks: a read can start at any of them (see :mod:`normstat.sources.blocks`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from normstat.sources.table import Batch, TableSource, arrow_error

_READ_BUFFER = 1 << 18


class ParquetFile(TableSource):
    format = "parquet"

    def __init__(self, path: str, columns: Sequence[str] | None = None) -> None:
        try:
            self._file = pq.ParquetFile(path, buffer_size=_READ_BUFFER, pre_buffer=False)
            schema = self._file.schema_arrow
        except (pa.ArrowException, OSError) as exc:
            raise arrow_error(exc, "Parquet file", path) from None
        self._setup(path, schema, columns, self._file.metadata.num_rows)

    def storage_blocks(self) -> list[int]:
        meta = self._file.metadata
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]

    def _read_blocks(
        self, lo: int, hi: int, rows: int, columns: list[str] | None
    ) -> Iterator[Batch]:
        return self._file.iter_batches(
            batch_size=rows, row_groups=range(lo, hi), columns=columns, use_threads=True
        )

    def close(self) -> None:
        self._file.close()
