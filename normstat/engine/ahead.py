"""Compute ahead: map a function over a stream on a helper thread, one item in advance.

``apply`` reads, transforms and writes each chunk. h5py serialises reads and writes, but numpy
releases the GIL while it transforms, so transforming chunk ``i + 1`` while chunk ``i`` is written
hides the transform behind the I/O on a second core. Results come back in input order, with at most
``depth + 1`` items in flight (memory stays bounded by the chunk size).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def compute_ahead(items: Iterable[T], fn: Callable[[T], R], depth: int = 1) -> Iterator[R]:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="normstat-ahead") as pool:
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
