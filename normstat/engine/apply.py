"""THE apply pipeline: open sources -> resolve the output -> check it is writable -> commit it
atomically -> read -> transform (ahead, on threads) -> write.

Every input kind, output format and engine takes this route; engines differ only in who runs the
read-transform-write steps: here, one reader feeding helper threads and one sequential writer;
with Dask (:mod:`normstat.engine.dask_apply`), tasks that each write their own rows or parts.
The steps they share are in :mod:`normstat.engine.output`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from normstat.engine.columns import transformed_tables
from normstat.engine.output import ApplyOptions, Progress, resolve, write
from normstat.engine.transform import reads, transformed
from normstat.sinks import atomic_output_for, check_writable, open_writer
from normstat.sources.base import ArraySource

__all__ = ["ApplyOptions", "apply"]


def apply(srcs: list[ArraySource], o: ApplyOptions) -> None:
    """Transform every source, in order, into ``o.out``."""
    if o.engine == "dask":
        from normstat.engine.dask_apply import apply_dask

        apply_dask(srcs, o)
        return
    out = resolve(srcs, o)
    if out.batches:  # a table written as a table
        spare = 1 if out.format.encodes else 0  # a core for the writer's thread
        done = transformed_tables(srcs, o.rows, o.step, out.spec.schema, o.workers, spare)
    else:
        done = transformed(reads(srcs, o.rows, False), o.step, None, o.workers or 1)
    items = _counted(done, o.progress)
    if o.out == "-":
        write(lambda: open_writer(out.format, "-", out.spec), items, "<stdout>")
        return
    check_writable(o.out, force=o.force, sources=srcs)
    with atomic_output_for(o.out, out.format.name) as tmp:
        write(lambda: open_writer(out.format, tmp, out.spec), items, o.out)


def _counted(items: Iterable[tuple[int, Any]], progress: Progress | None) -> Iterator[Any]:
    for n, item in items:
        yield n, item
        if progress is not None:
            progress(n)
