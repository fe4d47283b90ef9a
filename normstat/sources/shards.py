"""Shards opened as the pass reaches them: the first shard up front, the rest on a thread ahead.

A fit of ten thousand small shards spent a quarter of its wall time opening and checking every
shard before reading any (docs/performance.md, many small files). Only the first shard is needed
up front: it defines the features, the dtype and the sample shape. Every other shard is a
:class:`LazyShard` that knows its path; it is opened (and checked against the first, with the
same error as an up-front check) by a read-ahead thread while the kernel reduces the shards
before it, or by whoever asks it for anything first. The thread stays at most ``AHEAD`` shards
ahead of the pass; an opened shard holds no open file (its readers reopen it per read), so open
descriptors stay bounded whatever the number of shards.

A shard that fails to open or disagrees keeps its error until the pass reaches it: the error is
raised there, in shard order, before any of its rows are read, and the fit writes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from normstat.sources.base import ArraySource

AHEAD = 32
"""Shards the read-ahead thread opens before the pass reaches them."""


ABSENT = ("files", "check_budget")
"""What the readers of the formats opened lazily (NPY, Parquet) do not have: they read their
one file only (no ``files()`` for the output check) and no storage chunk of theirs is decoded
whole (no ``check_budget``), so these checks need not open every shard up front."""


class _Group:
    """The lazy shards of one ``open_sources`` call, in pass order, and their read-ahead."""

    def __init__(self) -> None:
        self.shards: list[LazyShard] = []
        self.cond = threading.Condition()
        self.reached = 0  # shards (of this group) the pass has asked for
        self.stopped = False
        self.thread: threading.Thread | None = None
        self.opened_rows = 0  # rows of the shards opened so far ...
        self.opened = 0  # ... and how many they are

    def start(self) -> None:
        with self.cond:
            if self.thread is not None or not self.shards:
                return
            self.stopped = False
            self.thread = threading.Thread(
                target=self._run, name="normstat-open-ahead", daemon=True
            )
        self.thread.start()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
            thread, self.thread = self.thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def reach(self, index: int) -> None:
        with self.cond:
            if index + 1 > self.reached:
                self.reached = index + 1
                self.cond.notify_all()

    def _run(self) -> None:
        for i, shard in enumerate(self.shards):
            with self.cond:
                while not self.stopped and i >= self.reached + AHEAD:
                    self.cond.wait()
                if self.stopped:
                    return
            if not shard.open_now():  # failed: the pass raises its error when it gets there
                return

    def rows(self, guess: int) -> tuple[int, bool]:
        """Rows of the group's shards: exact for those opened, ``guess`` for each other one;
        and whether all are opened (the count exact)."""
        with self.cond:
            left = len(self.shards) - self.opened
            return self.opened_rows + left * guess, left == 0

    def count(self, rows: int | None) -> None:
        with self.cond:
            self.opened += 1
            self.opened_rows += rows or 0


class LazyShard:
    """A shard that is opened when first asked for anything but its ``path`` and ``dataset``;
    then it stands for the opened source (attributes are the source's)."""

    def __init__(
        self,
        group: _Group,
        path: str,
        dataset: str | None,
        opener: Callable[[bool], ArraySource],
    ) -> None:
        """``opener(whole)``: the shard, opened and checked; ``whole``: a small file read
        whole (during the pass only: memory stays bounded by the read-ahead)."""
        self.path, self.dataset = path, dataset
        self._group, self._index = group, len(group.shards)
        self._opener: Callable[[bool], ArraySource] | None = opener
        self._source: ArraySource | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        group.shards.append(self)

    def open_now(self) -> bool:
        """Open and check the shard unless done; False if that failed (the error is kept)."""
        with self._lock:
            if self._opener is not None:
                try:
                    self._source = self._opener(self._group.thread is not None)
                except BaseException as exc:  # kept for the thread that needs the shard
                    self._error = exc
                else:
                    self._group.count(self._source.shape[0])
                self._opener = None
            return self._error is None

    @property
    def opened(self) -> bool:
        return self._source is not None

    def source(self) -> ArraySource:
        """The opened source (opened here if the read-ahead has not got to it)."""
        self._group.reach(self._index)
        if self._source is None:
            self.open_now()
        if self._error is not None:
            raise self._error.with_traceback(None)
        assert self._source is not None
        return self._source

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not forwarded: the proxy's own state, pickling, copying
            raise AttributeError(name)
        if name in ABSENT and self._source is None:  # known without opening the shard
            raise AttributeError(name)
        return getattr(self.source(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name in ("path", "dataset"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.source(), name, value)

    def close(self) -> None:
        self._group.stop()
        with self._lock:
            self._opener = None  # never opened now
            if self._source is not None:
                self._source.close()

    def __repr__(self) -> str:
        state = "opened" if self._source is not None else "not opened"
        return f"LazyShard({self.path!r}, {state})"


def new_group() -> _Group:
    return _Group()


def read_ahead(sources: Sequence[Any]) -> _Group | None:
    """Start opening the lazy shards among ``sources`` ahead of the pass; the group to
    :meth:`~_Group.stop` when the pass ends (None: nothing to open)."""
    for s in sources:
        if isinstance(s, LazyShard):
            s._group.start()
            return s._group
    return None


def settle(sources: list[Any]) -> None:
    """Every lazy shard opened (in order: the first failure is raised) and replaced in
    ``sources`` by its source, for what needs them all (a Dask plan, checkpoints, the record
    of what was read)."""
    for i, s in enumerate(sources):
        if isinstance(s, LazyShard):
            sources[i] = s.source()


def any_lazy(sources: Sequence[Any]) -> bool:
    return any(isinstance(s, LazyShard) for s in sources)


def rows_so_far(sources: Sequence[Any]) -> Callable[[], tuple[int | None, bool]]:
    """The rows of all ``sources`` as known now, and whether that is exact, for a progress bar
    that must not wait for every shard to be opened: exact for the sources opened, the first
    source's row count for each shard not opened yet (exact once the pass has opened them
    all); None when a source cannot tell its rows before it is read (CSV, a stream)."""
    groups = {id(s._group): s._group for s in sources if isinstance(s, LazyShard)}
    eager = [s for s in sources if not isinstance(s, LazyShard)]
    known = [s.shape[0] for s in eager]
    if any(r is None for r in known) or not eager:
        return lambda: (None, True)
    base, guess = sum(known), known[0]

    def rows() -> tuple[int | None, bool]:
        parts = [g.rows(guess) for g in groups.values()]
        return base + sum(n for n, _ in parts), all(done for _, done in parts)

    return rows
