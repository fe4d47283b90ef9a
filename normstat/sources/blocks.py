"""Read units of a table file: its storage blocks, grouped so that any unit can be read alone.

A Parquet file is stored as row groups and an Arrow IPC file as record batches; each can be read
without the rows before it. A *read unit* is one such block, or a run of consecutive small ones
whose rows together fit in one chunk, and a unit is always cut into chunks from its own first row,
``rows`` at a time (:func:`exact_batches`). So the chunks of a file are a function of its block
sizes and the chunk size alone: a whole-file read (the local engine) and a read of some units by
another process (a Dask task over whole row groups) see the very same chunks, and so compute the
same moments, bit for bit. Chunks never straddle two row groups either, so no task has to decode
a row group it does not own.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Unit:
    """Storage blocks ``lo:hi`` of a file, which hold its rows ``start:stop``."""

    lo: int
    hi: int
    start: int
    stop: int

    def chunks(self, rows: int) -> int:
        """How many chunks of ``rows`` the unit is read as."""
        return -(-(self.stop - self.start) // rows)


def read_units(block_rows: Sequence[int], rows: int) -> list[Unit]:
    """Consecutive blocks grouped while their rows fit in one chunk; a block of more rows than
    a chunk is a unit of its own. Blocks of no rows join their neighbour (none is a unit)."""
    units: list[Unit] = []
    lo, start, n = 0, 0, 0
    for i, b in enumerate(block_rows):
        if n and n + b > rows:
            units.append(Unit(lo, i, start, start + n))
            lo, start, n = i, start + n, 0
        n += b
    if n:
        units.append(Unit(lo, len(block_rows), start, start + n))
    return units


def exact_batches(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The rows of ``batches`` in batches of exactly ``rows`` (the last one fewer): zero-copy
    slices when a batch holds them, a concatenation (a copy) where a chunk spans two batches.
    Chunk boundaries so depend on the rows alone, not on how the reader happened to batch."""
    pending: list[pa.RecordBatch] = []
    have = 0
    for b in batches:
        while b.num_rows:
            take = min(rows - have, b.num_rows)
            pending.append(b.slice(0, take))
            b, have = b.slice(take), have + take
            if have == rows:
                yield _concat(pending)
                pending, have = [], 0
    if have:
        yield _concat(pending)


def _concat(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(parts) == 1:
        return parts[0]
    table = pa.Table.from_batches(parts).combine_chunks()
    return table.to_batches()[0]


def unit_at(units: Sequence[Unit], row: int) -> int:
    """Index of the unit that holds ``row`` (``len(units)`` past the end)."""
    return bisect.bisect_right([u.stop for u in units], row)
