"""Compute ahead: map a function over a stream on a helper thread, one item in advance.

``apply`` reads, transforms and writes each chunk. h5py serialises reads and writes, but numpy
releases the GIL while it transforms, so transforming chunk ``i + 1`` while chunk ``i`` is written
hides the transform behind the I/O on a second core. Results come back in input order, with at most
``threads + 1`` items in flight (memory stays bounded by the chunk size). One helper thread
is the default: the transform is cheap beside the I/O; ``apply --workers`` sets more.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def compute_ahead(items: Iterable[T], fn: Callable[[T], R], threads: int = 1) -> Iterator[R]:
    depth = max(threads, 1)
    with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="normstat-ahead") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
