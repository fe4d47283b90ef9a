"""Cutting a dataset into distributed tasks: the one planner of fit (arrays and tables) and the
row ranges of apply.

A task is a reference to rows (:class:`RowRange`), never the rows. Its size is a trade-off: each
task costs the scheduler about a millisecond and a few kB, so millions of tiny tasks would drown
it, while a few huge ones leave workers idle and make a lost worker expensive. About 64 MiB of
input per task makes a 100 GB dataset about 1,500 tasks; a task reads its range in chunk-size
blocks, so a worker's memory stays bounded by the chunk size, not the task size.

A fit task covers whole *read units* of its shards, in data order: a chunk of an array, or (a
table) whole row groups / record batches (:mod:`normstat.sources.blocks`), so no two tasks
decode the same row group. Its boundaries need not fall on the local engine's merge tree: a task
returns the :class:`~normstat.core.moments.TreeMerger` of its chunks, which joins its neighbours'
into that tree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from normstat.errors import UsageError
from normstat.sources.base import ArraySource
from normstat.sources.ranges import RowRange

TASK_BYTES = 64 * 2**20


def row_bytes(src: ArraySource) -> int:
    n = 1
    for s in src.shape[1:]:
        n *= int(s)
    return max(n * src.dtype.itemsize, 1)


def rows_per_task(chunk_rows: int, bytes_per_row: int, task_bytes: int = TASK_BYTES) -> int:
    """A whole number of chunks near ``task_bytes``, so chunks stay aligned to storage."""
    per_chunk = max(chunk_rows * bytes_per_row, 1)
    return chunk_rows * max(1, task_bytes // per_chunk)


def aligned(rows: int, align: int | None, total: int) -> int:
    """``rows`` rounded down to a multiple of ``align`` (at least one block); ``None``: all."""
    if align is None:
        return max(total, 1)
    return max(align, rows // align * align)


@dataclass(frozen=True)
class FitTask:
    """Whole read units, as one row range per shard, that the local engine reads as its
    chunks ``first:first + chunks``."""

    pieces: tuple[RowRange, ...]
    first: int
    chunks: int

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)


def check_seekable(srcs: Sequence[ArraySource]) -> None:
    """Only tables with row groups / record batches can be split among workers: a CSV file
    or an Arrow IPC *stream* has no index of its rows, so a worker would parse it from its
    start to find them."""
    for s in srcs:
        if s.kind == "table" and s.storage_blocks() is None:  # type: ignore[attr-defined]
            what = "a CSV file" if s.format == "csv" else "an Arrow IPC stream"
            raise UsageError(
                f"--engine dask splits a table by row groups (Parquet) or record batches (Arrow "
                f"IPC files); {what} has no index of its rows, so a worker would parse it from "
                "the start to find them: use --engine local, or convert it to Parquet",
                path=s.path,
            )


def _units(src: ArraySource, chunk_rows: int) -> list[tuple[int, int, int]]:
    """``(start, stop, chunks)`` of each read unit of a source, in order."""
    if src.kind == "table":
        units = src.read_units(chunk_rows) or []  # type: ignore[attr-defined]
        return [(u.start, u.stop, u.chunks(chunk_rows)) for u in units]
    n = src.shape[0]
    return [(a, min(a + chunk_rows, n), 1) for a in range(0, n, chunk_rows)]


def fit_tasks(srcs: Sequence[ArraySource], chunk_rows: int, task_rows: int) -> list[FitTask]:
    """Tasks of whole units, in data order, near ``task_rows`` rows each (one unit at least:
    a Parquet row group of 1 Mi rows is one task), across shards when shards are small."""
    tasks: list[FitTask] = []
    pieces: list[RowRange] = []
    first = chunks = rows = 0
    for src in srcs:
        start = None  # where this shard's piece of the current task starts
        for a, b, n in _units(src, chunk_rows):
            if pieces and rows + (b - a) > task_rows:
                tasks.append(FitTask(tuple(pieces), first, chunks))
                pieces, first, chunks, rows, start = [], first + chunks, 0, 0, None
            if start is None:
                start = a
                pieces.append(RowRange.of(src, start, b))
            else:
                pieces[-1] = RowRange.of(src, start, b)
            chunks += n
            rows += b - a
    if pieces:
        tasks.append(FitTask(tuple(pieces), first, chunks))
    return tasks


def concat_tasks(srcs: list[ArraySource], task_rows: int) -> list[tuple[tuple[RowRange, ...], int]]:
    """``(pieces, output start)`` over the shards concatenated, cut at multiples of
    ``task_rows`` of the OUTPUT: output boundaries are what must align (to the output's
    chunks); a task may span the end of one shard and the start of the next."""
    bounds, offset = [], 0
    for s in srcs:
        bounds.append((offset, offset + s.shape[0], s))
        offset += s.shape[0]
    tasks = []
    for lo in range(0, offset, task_rows):
        hi = min(lo + task_rows, offset)
        pieces = tuple(
            RowRange.of(s, max(lo, a) - a, min(hi, b) - a)
            for a, b, s in bounds
            if a < hi and b > lo
        )
        tasks.append((pieces, lo))
    return tasks
