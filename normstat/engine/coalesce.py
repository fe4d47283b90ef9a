"""Short array chunks (small shards) gathered into full chunks before the kernel.

A shard of 1,000 rows is one chunk of 1,000 rows: the kernel's ~20 numpy calls then cost about as
much as its values, and two threads contend for the GIL between them, so ten thousand small
``.npy`` files reduced one by one took several times as long as the same rows in one file
(docs/performance.md, many small files). Here consecutive short chunks of plain rows (same dtype
and sample shape) are copied into one pooled buffer of ``rows`` rows, cut at the same row
boundaries as one file holding the same rows would be: the kernel sees the chunks the one file
gives. Each gathered chunk lists its pieces (file, first row, length), so an error still names
the shard and row (:func:`normstat.engine.task.chunk_task` re-reads the pieces one by one).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from normstat.sources.base import Chunk, Piece
from normstat.sources.buffers import BufferPool, read_only


def _plain(chunk: Chunk, rows: int) -> bool:
    """A short chunk of rows (not columns, no moments, no keys) that may be gathered."""
    return (
        chunk.moments is None
        and chunk.columns is None
        and chunk.extra is None
        and chunk.parts is None
        and chunk.rows < rows
    )


def coalesce(chunks: Iterable[Chunk], rows: int) -> Iterator[Chunk]:
    """``chunks`` with runs of short plain chunks gathered into chunks of ``rows`` rows (the
    last of a run shorter); any other chunk passes through as it is, in order."""
    pool = BufferPool()
    buf: np.ndarray | None = None
    parts: list[Piece] = []
    filled = 0

    def flush() -> Chunk:
        nonlocal buf, parts, filled
        assert buf is not None
        first = parts[0]
        out = Chunk(read_only(buf[:filled]), first.path, first.dataset, first.start)
        out.parts = tuple(parts)
        buf, parts, filled = None, [], 0
        return out

    for chunk in chunks:
        if not _plain(chunk, rows):
            if buf is not None:
                yield flush()
            yield chunk
            continue
        data = chunk.data
        if buf is not None and (buf.dtype != data.dtype or buf.shape[1:] != data.shape[1:]):
            yield flush()
        done = 0
        while done < len(data):
            if buf is None:
                buf = pool.get((rows, *data.shape[1:]), data.dtype)
            n = min(len(data) - done, rows - filled)
            buf[filled : filled + n] = data[done : done + n]
            parts.append(Piece(chunk.path, chunk.dataset, chunk.start + done, n, filled))
            filled += n
            done += n
            if filled == rows:
                yield flush()
        del chunk, data  # the shard's bytes go now: the copy holds its rows
    if buf is not None:
        yield flush()
