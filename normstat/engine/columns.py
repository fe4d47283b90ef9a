"""``apply`` to a columnar table with its columns split into parts, each read and transformed by a
thread of its own.

Reading a batch on one thread and transforming it on another had the decoded batch leave the
cache between the two, and pyarrow's decoding threads and the transform fought for the same
cores. Here each part's thread decodes its columns (pyarrow's threads off) and transforms them at
once, while they are still in cache; the caller's thread puts the parts of a batch back together
in the schema's order and writes them. Every part is cut into the same batches (the rows of a
file's read units, :mod:`normstat.sources.blocks`), and each value is transformed by the same
kernel as on one thread, so the output is the same, bit for bit. At most ``depth + 1`` batches
are in flight, as in :func:`normstat.engine.transform.transformed`: memory follows the chunk.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from normstat.engine.transform import TransformStep, transformed
from normstat.sources.base import ArraySource

_MAX_PARTS = 4
"""Parts by default (one per core, at most this many): the writer's thread does the rest."""


def transformed_tables(
    srcs: Iterable[ArraySource],
    rows: int,
    step: TransformStep,
    schema: Any,
    threads: int | None = None,
    spare: int = 0,
) -> Iterator[tuple[int, Any]]:
    """``(rows, transformed record batch)`` of every source in order, ``schema`` the output's;
    a columnar table in parts (``threads`` of them; by default one per core but ``spare`` left
    to the writer, at most ``_MAX_PARTS``), any other one batch at a time ``threads`` (default
    1) batches ahead. Fewer than two parts: batch by batch too."""
    first = 0
    for s in srcs:
        parts = _parts(s, step, schema, threads, spare)
        if parts is None:
            items = transformed(s.batches(rows), step, schema, threads or 1, first)  # type: ignore[attr-defined]
        else:
            items = _split(s, rows, step, schema, parts, first)
        for n, b in items:
            first += n
            yield n, b


def _parts(
    src: ArraySource, step: TransformStep, schema: Any, threads: int | None, spare: int = 0
) -> Any:
    """The output's column names cut into parts of about equal decoded bytes, or None where the
    source is not read by columns (CSV, streams, Arrow IPC: a batch of theirs costs the same
    read whatever its columns), the map is per group (``--by``: every part would need the
    group column), or names repeat."""
    names = list(schema.names)
    if not getattr(src, "column_reads", False) or step.groups is not None:
        return None
    if len(set(names)) != len(names) or len(names) < 2:
        return None
    n = threads if threads else min((os.cpu_count() or 1) - spare, _MAX_PARTS)
    n = min(max(n, 1), len(names))
    if n < 2:
        return None
    weight = {n: 1 for n in names}
    for c in getattr(src, "selected", ()):
        weight[c.top] = weight.get(c.top, 0) + c.width  # a feature group: its values a row
    load = [0] * n
    owner = {}
    for name in sorted(names, key=lambda x: -weight[x]):  # largest first, onto the lightest part
        i = load.index(min(load))
        owner[name] = i
        load[i] += weight[name]
    return [[x for x in names if owner[x] == i] for i in range(n)]


def _split(
    src: ArraySource,
    rows: int,
    step: TransformStep,
    schema: Any,
    parts: list[list[str]],
    first: int,
    depth: int = 1,
) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa

    def part_reader(cols: list[str]) -> Any:
        sub = pa.schema([schema.field(c) for c in cols])
        batches = src.batches(rows, cols, threads=False)  # type: ignore[attr-defined]
        at = [first]

        def next_part() -> Any:
            b = next(batches, None)
            if b is None:
                return None
            out = step.batch(b, sub, at[0])
            at[0] += b.num_rows
            return out

        return batches, next_part

    readers = [part_reader(cols) for cols in parts]
    pools = [ThreadPoolExecutor(1, thread_name_prefix="normstat-part") for _ in parts]
    pending: deque[list[Future[Any]]] = deque()
    try:
        while True:
            pending.append([p.submit(r[1]) for p, r in zip(pools, readers, strict=True)])
            if len(pending) <= depth:
                continue
            got = [f.result() for f in pending.popleft()]
            if all(b is None for b in got):
                return
            if any(b is None or b.num_rows != got[0].num_rows for b in got):
                raise RuntimeError("the column parts of a table were read as different batches")
            arrays: dict[str, Any] = {}
            for b in got:
                arrays.update(zip(b.schema.names, b.columns, strict=True))
            batch = pa.RecordBatch.from_arrays([arrays[c] for c in schema.names], schema=schema)
            yield batch.num_rows, batch
    finally:
        for futures in pending:
            for f in futures:
                f.cancel()
        for p in pools:
            p.shutdown(wait=True)
        for batches, _ in readers:
            batches.close()
