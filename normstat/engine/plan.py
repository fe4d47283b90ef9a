"""Cutting a dataset into distributed tasks: how many rows each, and where they start.

A task is a reference to rows (:class:`RowRange`), never the rows. Its size is a trade-off: each
task costs the scheduler about a millisecond and a few kB, so millions of tiny tasks would drown
it, while a few huge ones leave workers idle and make a lost worker expensive. About 64 MiB of
input per task makes a 100 GB dataset about 1,500 tasks; a task reads its range in chunk-size
blocks, so a worker's memory stays bounded by the chunk size, not the task size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from normstat.sources.base import ArraySource
from normstat.sources.ranges import RowRange

TASK_BYTES = 64 * 2**20

T = TypeVar("T")


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


def shard_ranges(src: ArraySource, task_rows: int) -> list[RowRange]:
    """Rows of one shard in tasks of ``task_rows``, by absolute path (workers have other cwds)."""
    n = src.shape[0]
    return [RowRange.of(src, start, min(start + task_rows, n)) for start in range(0, n, task_rows)]


@dataclass(frozen=True)
class FitTask:
    """``2**level`` consecutive chunks of the dataset (possibly from two or more shards)."""

    pieces: tuple[RowRange, ...]
    level: int

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)


def fit_tasks(srcs: list[ArraySource], chunk_rows: int, task_rows: int) -> list[FitTask]:
    """Fit tasks that reproduce the local engine's merge tree exactly.

    The local engine merges its chunks (each shard cut into ``chunk_rows`` blocks, shard after
    shard) with :func:`merge_all`'s binary counter. A task of ``2**k`` consecutive chunks that
    starts at a multiple of ``2**k`` is one complete subtree of that counter, so tasks of a
    power-of-two number of chunks, with the remainder cut into decreasing powers of two, merged
    on the cluster by the same counter, give the local engine's result bit for bit.
    """
    per_task = 1 << max(0, (max(task_rows // chunk_rows, 1)).bit_length() - 1)
    total = sum(-(-s.shape[0] // chunk_rows) for s in srcs)
    sizes = [per_task] * (total // per_task)
    rest = total % per_task
    sizes += [1 << j for j in range(per_task.bit_length() - 1, -1, -1) if rest >> j & 1]
    tasks, first = [], 0
    for n in sizes:
        pieces = _chunk_pieces(srcs, chunk_rows, first, first + n)
        tasks.append(FitTask(pieces, n.bit_length() - 1))
        first += n
    return tasks


def counter_tree(parts: Iterable[tuple[int, T]], merge: Callable[[T, T], T]) -> T:
    """Merge ``(level, part)`` pairs, in order, by :class:`TreeMerger`'s binary counter, where
    a part of ``2**level`` chunks enters at ``level``. With the parts of :func:`fit_tasks` this
    is the local engine's tree; ``merge`` may merge values or submit a merge to a cluster."""
    stack: list[tuple[int, T]] = []
    for level, part in parts:
        cur = part
        while stack and stack[-1][0] == level:
            cur = merge(stack.pop()[1], cur)
            level += 1
        stack.append((level, cur))
    if not stack:
        raise ValueError("nothing to merge")
    root = stack[0][1]
    for _, part in stack[1:]:
        root = merge(root, part)
    return root


def _chunk_pieces(
    srcs: list[ArraySource], chunk_rows: int, lo: int, hi: int
) -> tuple[RowRange, ...]:
    """The rows of global chunks ``lo:hi`` as one range per shard they touch."""
    pieces, base = [], 0
    for s in srcs:
        n = -(-s.shape[0] // chunk_rows)
        a, b = max(lo, base), min(hi, base + n)
        if a < b:
            start, stop = (a - base) * chunk_rows, min((b - base) * chunk_rows, s.shape[0])
            pieces.append(RowRange.of(s, start, stop))
        base += n
    return tuple(pieces)


@dataclass(frozen=True)
class WriteTask:
    """Rows from one or more ranges, written consecutively from output row ``out_start``."""

    pieces: tuple[RowRange, ...]
    out_start: int

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)


def concat_tasks(srcs: list[ArraySource], task_rows: int) -> list[WriteTask]:
    """Tasks over the shards concatenated, cut at multiples of ``task_rows`` of the OUTPUT.

    Output boundaries are what must align (to the output's chunks); a task may span the end of
    one shard and the start of the next.
    """
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
        tasks.append(WriteTask(pieces, lo))
    return tasks
