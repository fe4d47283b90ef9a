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

from normstat.core.checks import NanPolicy
from normstat.core.layout import AxisLayout
from normstat.core.moments import Moments, merge_all
from normstat.engine.task import chunk_task
from normstat.sources.base import Chunk

Progress = Callable[[int], None]
"""Called with the number of samples just processed."""


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
) -> Moments:
    workers = workers or default_workers()
    if workers <= 1:
        parts: Iterator[Moments] = (
            _tick(chunk_task(c, layout, nan_policy, features), c, progress) for c in chunks
        )
        return merge_all(parts, layout.n_features)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="normstat") as pool:
        try:
            return merge_all(
                _pipelined(pool, chunks, layout, nan_policy, workers, features, progress),
                layout.n_features,
            )
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _pipelined(
    pool: ThreadPoolExecutor,
    chunks: Iterable[Chunk],
    layout: AxisLayout,
    nan_policy: NanPolicy,
    workers: int,
    features: list[str] | None,
    progress: Progress | None,
) -> Iterator[Moments]:
    """Yield chunk moments in input order while at most ``workers + 1`` chunks are in flight."""
    pending: deque[tuple[Future[Moments], Chunk]] = deque()
    for chunk in chunks:
        pending.append((pool.submit(chunk_task, chunk, layout, nan_policy, features), chunk))
        if len(pending) > workers:
            fut, done = pending.popleft()
            yield _tick(fut.result(), done, progress)
    while pending:
        fut, done = pending.popleft()
        yield _tick(fut.result(), done, progress)


def _tick(m: Moments, chunk: Chunk, progress: Progress | None) -> Moments:
    if progress is not None:
        progress(chunk.data.shape[0])
    return m
