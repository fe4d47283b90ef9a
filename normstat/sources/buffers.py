"""Read buffers for readers that copy into memory (h5py ``read_direct``), reused when free."""

from __future__ import annotations

import os
import stat
import sys
from typing import Any

import numpy as np


class BufferPool:
    """Reuses read buffers that nobody references any more, instead of allocating each chunk.

    A fresh 32 MB ``np.empty`` is fresh pages from the kernel: faulting them in cost more than
    the read itself (docs/performance.md, "Figures behind the code"). A buffer is
    reused only when its reference count shows that no chunk, view or consumer still holds it, so
    consumers may keep chunks as long as they like; then a new buffer is allocated instead.
    """

    def __init__(self, keep: int = 6) -> None:
        self.keep = keep
        self._buffers: list[np.ndarray] = []

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        n = int(np.prod(shape, dtype=np.int64))
        for buf in self._buffers:
            # 3 references: the list, the loop variable, getrefcount's argument
            if sys.getrefcount(buf) <= 3 and buf.dtype == dtype and buf.size >= n:
                return buf[:n].reshape(shape)
        buf = np.empty(n, dtype)
        if len(self._buffers) < self.keep:
            self._buffers.append(buf)
        return buf.reshape(shape)


def pread_into(fd: int | Any, buf: np.ndarray, offset: int) -> int:
    """Fill the C-contiguous ``buf`` with the bytes of ``fd`` from ``offset`` (``pread``: no
    shared file position, so threads may read one descriptor at once); return the bytes read,
    fewer than ``buf.nbytes`` only where the file ends. A read, unlike a memory map, turns a
    file that shrinks under us into a short count instead of SIGBUS."""
    view = buf.reshape(-1).view(np.uint8).data
    if not isinstance(fd, int):  # a pyarrow random-access file of an object in a bucket
        return _read_at_into(fd, view, offset)
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            break
        got += n
    return got


def _read_at_into(f: Any, view: memoryview, offset: int) -> int:
    """``pread`` of a pyarrow random-access file (``read_at`` is one ranged GET of an object
    and safe from several threads); the bytes read, fewer only where the object ends."""
    got = 0
    while got < len(view):
        data = f.read_at(len(view) - got, offset + got)
        if not len(data):
            break
        view[got : got + len(data)] = memoryview(data).cast("B")
        got += len(data)
    return got


def read_only(buf: np.ndarray) -> np.ndarray:
    """A read-only view of a pooled buffer: consumers cannot write into data the pool reuses
    (the view holds the buffer, so the pool sees it in use)."""
    view = buf.view()
    view.flags.writeable = False
    return view


SMALL_FILE = 2**20
"""Bytes up to which a shard opened ahead of the pass is read whole as it is opened."""


def read_small(path: str, limit: int = SMALL_FILE) -> tuple[np.ndarray, os.stat_result] | None:
    """A regular local file of at most ``limit`` bytes, read whole in one ``pread`` (with the
    ``stat`` of the open file, for its fingerprint); None for a larger or special file. Fewer
    bytes than the ``stat`` said means it changed while being read: the caller's checks of its
    contents (a header's promised size, a footer) tell."""
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        raw = np.empty(st.st_size, np.uint8)
        got = pread_into(fd, raw, 0)
    finally:
        os.close(fd)
    return raw[:got], st
