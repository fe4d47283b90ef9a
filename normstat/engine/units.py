"""Distributed tasks over tables: whole row groups (Parquet) or record batches (Arrow IPC).

A task reads whole read units (:mod:`normstat.sources.blocks`), so no two tasks decode the same
row group, and a row group is never read from its middle. Tasks group consecutive units, across
shards when shards are small, until they hold about ``task_rows`` rows (one unit at least: a
Parquet row group of 1 Mi rows is one task). Such boundaries do not fall on the local engine's
merge tree, so a task returns a :mod:`tiling <normstat.engine.tiling>` of its chunks, which
rebuilds that tree exactly.

A CSV file or an Arrow IPC *stream* has no index of its rows: a worker would have to parse the
file from its start to find its rows, so those stay on the local engine.

No scheduler is imported here: the Dask engine ships :func:`fit_units` to workers, and tests call
it directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from normstat.core.checks import NanPolicy
from normstat.core.histogram import SketchSpec
from normstat.core.layout import AxisLayout
from normstat.engine.ranged import blame
from normstat.engine.task import chunk_task
from normstat.engine.tiling import Block, Tiling, extend
from normstat.errors import DataError, UsageError
from normstat.sources.ranges import RowRange, read_range
from normstat.sources.table import TableSource


@dataclass(frozen=True)
class UnitTask:
    """Whole read units, as one row range per shard, that the local engine reads as chunks
    ``first:first + chunks``."""

    pieces: tuple[RowRange, ...]
    first: int
    chunks: int

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)


def check_seekable(srcs: Sequence[TableSource]) -> None:
    """Only tables with row groups / record batches can be split among workers."""
    for s in srcs:
        if s.storage_blocks() is None:
            what = "a CSV file" if s.format == "csv" else "an Arrow IPC stream"
            raise UsageError(
                f"--engine dask splits a table by row groups (Parquet) or record batches (Arrow "
                f"IPC files); {what} has no index of its rows, so a worker would parse it from "
                "the start to find them: use --engine local, or convert it to Parquet",
                path=s.path,
            )


def unit_tasks(srcs: Sequence[TableSource], chunk_rows: int, task_rows: int) -> list[UnitTask]:
    """Tasks of whole units, in data order, near ``task_rows`` rows each."""
    tasks: list[UnitTask] = []
    pieces: list[RowRange] = []
    first = chunks = rows = 0
    for src in srcs:
        start = None  # where this shard's piece of the current task starts
        for u in src.read_units(chunk_rows) or []:
            if pieces and rows + (u.stop - u.start) > task_rows:
                tasks.append(UnitTask(tuple(pieces), first, chunks))
                pieces, first, chunks, rows, start = [], first + chunks, 0, 0, None
            if start is None:
                start = u.start
                pieces.append(RowRange.of(src, start, u.stop))  # type: ignore[arg-type]
            else:
                pieces[-1] = RowRange.of(src, start, u.stop)  # type: ignore[arg-type]
            chunks += u.chunks(chunk_rows)
            rows += u.stop - u.start
    if pieces:
        tasks.append(UnitTask(tuple(pieces), first, chunks))
    return tasks


def fit_units(
    task: UnitTask,
    rows: int,
    layout: AxisLayout,
    nan_policy: NanPolicy,
    features: list[str] | None = None,
    sketch: SketchSpec | None = None,
) -> Tiling:
    """The tiling of the task's chunks: the local engine's per-chunk step, then its merges."""
    tiling: list[Block] = []
    at = task.first
    with blame(task.pieces):
        for piece in task.pieces:
            for chunk in read_range(piece, rows):
                part = chunk_task(chunk, layout, nan_policy, features, sketch)
                extend(tiling, Block(0, at, part))
                at += 1
    if at - task.first != task.chunks:
        first = task.pieces[0]
        raise DataError(
            f"rows {first.start}:{first.stop} were read as {at - task.first} chunks, "
            f"{task.chunks} were planned: did the file change during the fit?",
            path=first.label,
        )
    return tuple(tiling)
