"""The in-process engine: the caller's thread reads, a thread pool computes.

Readers such as h5py serialise their calls anyway, while numpy releases the GIL in its kernels, so
one reading thread feeding ``workers`` computing threads keeps both cores busy. At most
``workers + 1`` chunks are in flight, so memory is bounded by the chunk size, not the data size.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from normstat import interrupts
from normstat.core.checks import NanPolicy
from normstat.core.histogram import SketchSpec
from normstat.core.layout import AxisLayout
from normstat.core.moments import Moments, TreeMerger
from normstat.engine.task import chunk_task
from normstat.sources.base import Chunk

Progress = Callable[[int], None]
"""Called with the number of samples just processed."""

AfterChunk = Callable[[TreeMerger, int], None]


def default_workers() -> int:
    return os.cpu_count() or 1


def fit_local(
    chunks: Iterable[Chunk],
    layout: AxisLayout,
    nan_policy: NanPolicy = "skip",
    *,
    workers: int | None = None,
    features: list[str] | None = None,
    progress: Progress | None = None,
    initial: Moments | TreeMerger | None = None,
    after_chunk: AfterChunk | None = None,
    sketch: SketchSpec | None = None,
) -> Moments:
    """Moments of every chunk, tree-merged in input order (after ``initial``, when resuming).

    ``after_chunk(tree, samples)`` runs in this thread after each chunk is merged, with the
    merge tree so far: the hook for checkpoints. ``sketch``: each chunk's distribution summary
    rides in its moments, through the same merges.
    """
    workers = workers or default_workers()
    if isinstance(initial, TreeMerger):  # resuming a checkpointed tree exactly
        tree = initial
    else:
        tree = TreeMerger(layout.n_features)
        if initial is not None:
            tree.add(initial)
    with ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="normstat") as pool:
        try:
            if workers <= 1:
                results: Iterator[tuple[Moments, int]] = (
                    (chunk_task(c, layout, nan_policy, features, sketch), c.rows) for c in chunks
                )
            else:
                results = _pipelined(pool, chunks, layout, nan_policy, workers, features, sketch)
            for part, samples in results:
                interrupts.check()  # a swallowed interrupt still stops the pass here
                tree.add(part)
                if progress is not None:
                    progress(samples)
                if after_chunk is not None:
                    after_chunk(tree, samples)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return tree.total()


def _pipelined(
    pool: ThreadPoolExecutor,
    chunks: Iterable[Chunk],
    layout: AxisLayout,
    nan_policy: NanPolicy,
    workers: int,
    features: list[str] | None,
    sketch: SketchSpec | None,
) -> Iterator[tuple[Moments, int]]:
    """Yield chunk moments and sample counts in input order while at most ``workers + 1``
    chunks are in flight.

    Only the row count of a submitted chunk is kept here, not the chunk: a chunk is then
    released the moment its task finishes (the executor drops a finished task's arguments),
    not when the merge gets to it. That matters for chunks mapped from a file, whose pages
    count in the process's memory for as long as the chunk lives.
    """
    pending: deque[tuple[Future[Moments], int]] = deque()
    for chunk in chunks:
        task = pool.submit(chunk_task, chunk, layout, nan_policy, features, sketch)
        pending.append((task, chunk.rows))
        del chunk  # not held here while waiting below: its task's end releases it
        if len(pending) > workers:
            fut, rows = pending.popleft()
            yield fut.result(), rows
    while pending:
        fut, rows = pending.popleft()
        yield fut.result(), rows
