"""Row ranges of a source that another process can reopen and read by itself.

A distributed task must carry a *reference* to its rows, never the rows (they would travel through
the scheduler) and never an open file handle (it does not pickle, and would not be valid on another
machine). A :class:`RowRange` is that reference: format, path, dataset (or a table's columns)
and rows, a few hundred bytes; :func:`read_range` reopens the source wherever it runs and yields
the rows in chunks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from normstat import storage
from normstat.sources.base import ArraySource, Chunk, Reducer, fit_chunks
from normstat.sources.reading import TableOptions
from normstat.storage import current


@dataclass(frozen=True)
class RowRange:
    format: str  # a name in normstat.sources.FORMATS
    path: str
    dataset: str | None  # resolved dataset / array inside the file, if any
    start: int
    stop: int
    shown: str | None = None  # the path as the user gave it, for messages (``path`` is absolute)
    columns: tuple[str, ...] | None = None  # a table's feature columns, as the client chose them
    table: TableOptions | None = None  # how the client read the table (CSV options)
    source: Any = None  # how to reopen a source that is not one file (``src.reference()``)
    storage: tuple[tuple[str, str], ...] = ()  # storage options of a URI (--storage-option)

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def label(self) -> str:
        return self.shown or self.path

    @classmethod
    def of(cls, src: ArraySource, start: int, stop: int) -> RowRange:
        """Rows of an open source, by absolute path: workers may run in another directory."""
        features = getattr(src, "features", None)
        selected = getattr(src, "selected", None)  # a table: its columns (groups by name)
        columns = None if features is None else tuple(features)
        if selected is not None:
            columns = tuple(c.name for c in selected)
        path = src.path if storage.is_uri(src.path) else os.path.abspath(src.path)
        table = getattr(src, "options", None)
        table = table if isinstance(table, TableOptions) else None
        reference = getattr(src, "reference", None)
        source = None if reference is None else reference()
        return cls(
            src.format, path, src.dataset, start, stop, src.path, columns, table, source, current()
        )


def open_range(r: RowRange) -> ArraySource:
    """Reopen the source a range refers to (by format, path and dataset)."""
    from normstat.sources import open_one

    if r.source is not None:
        return r.source.open()
    if r.path == "-":
        raise ValueError("stdin cannot be reopened by another process")
    columns = None if r.columns is None else list(r.columns)
    # the process that planned the ranges opened the source first, with the user's
    # --allow-external; the range exists only if that open was allowed
    with storage.using(dict(r.storage)):
        return open_one(r.path, r.dataset, r.format, columns, r.table, allow_external=True)


def read_range(
    r: RowRange, rows: int, step: Reducer | None = None, records: list[Any] | None = None
) -> Iterator[Chunk]:
    """The rows of ``r`` in chunks of at most ``rows``, each tagged with its file row; a fit
    gives its ``step``, which a source that reduces where it decodes runs there. A source that
    keeps a record of what it read (images: read, skipped, sizes) appends it to ``records``
    once the range is read (``task_record()``), for the client's artifact."""
    src = open_range(r)
    try:
        yield from fit_chunks(src, rows, step, r.start, r.stop)
        noted = getattr(src, "task_record", None)
        if records is not None and noted is not None:
            records.append(noted())
    finally:
        src.close()
