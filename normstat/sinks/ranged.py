"""Outputs that many processes fill at once, each writing its own rows.

A :class:`RangeTarget` is a small picklable description of one output: the client ``create()``s
it empty (header, metadata), then each task ``open()``s it where it runs and writes its rows. Tasks
own disjoint row ranges that start on multiples of ``align`` rows, so no two processes ever touch
the same storage block, and a task that is re-run after its worker died rewrites exactly the same
bytes. A format that cannot be written by ranges (Parquet, HDF5 without MPI) sets ``align`` to
``None``: one task then writes the whole output, which still lets a directory of such parts be
written in parallel, one part per task.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from normstat.errors import UsageError
from normstat.sinks import Writer
from normstat.sinks.npy import reserve


class RangeTarget(Protocol):
    path: str
    shape: tuple[int, ...]

    @property
    def align(self) -> int | None:
        """Task boundaries must be multiples of this many rows; ``None``: one task writes all."""
        ...

    def create(self) -> None: ...

    def open(self) -> Writer: ...


@dataclass(frozen=True)
class NpyTarget:
    """A ``.npy`` file: the header is written first, then rows land at their byte offsets.

    Rows are written with ``pwrite`` rather than through a memory map: a map writes whole pages
    back, which on a network file system could overwrite a neighbouring task's bytes.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def align(self) -> int:
        return 1

    def create(self) -> None:
        out = np.lib.format.open_memmap(self.path, mode="w+", dtype=self.dtype, shape=self.shape)
        del out  # header written, file sized (sparse) to hold every row
        fd = os.open(self.path, os.O_WRONLY)
        try:  # the space reserved now: a full disk is ENOSPC here, not in a worker's write
            reserve(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def open(self) -> NpyRangeWriter:
        return NpyRangeWriter(self.path, self.shape, np.dtype(self.dtype))


class NpyRangeWriter:
    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                np.lib.format.read_array_header_1_0(f)
            else:
                np.lib.format.read_array_header_2_0(f)
            self._offset = f.tell()
        self._row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._dtype = dtype
        self._fd = os.open(path, os.O_WRONLY)

    def write(self, start: int, block: np.ndarray) -> None:
        data = np.ascontiguousarray(block, dtype=self._dtype).data.cast("B")
        pos, done = self._offset + start * self._row_bytes, 0
        while done < len(data):  # one pwrite may write less than asked (2 GiB cap on Linux)
            done += os.pwrite(self._fd, data[done:], pos + done)

    def close(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)


# (format, module, factory): outputs that can be written by row ranges. A factory takes
# (path, shape, dtype, like: source or None, attrs: dict, rows: int or None), returns a target.
RANGE_TARGETS: tuple[tuple[str, str, str], ...] = (
    ("npy", "normstat.sinks.ranged", "npy_target"),
    ("zarr", "normstat.sinks.zarr", "zarr_target"),
)


def range_target(
    fmt: str,
    path: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    like: Any = None,
    attrs: dict[str, Any] | None = None,
    rows: int | None = None,
) -> RangeTarget:
    """The parallel-writable output of format ``fmt`` at ``path`` (absolute, for workers).

    ``like`` is the source it is made from (its storage chunks are kept), ``rows`` the rows per
    read block (a bound on the output's chunk rows otherwise)."""
    for name, module, factory in RANGE_TARGETS:
        if name == fmt:
            make = getattr(importlib.import_module(module), factory)
            return make(
                os.path.abspath(path), tuple(shape), np.dtype(dtype), like, attrs or {}, rows
            )
    known = ", ".join(n for n, _, _ in RANGE_TARGETS)
    raise UsageError(
        f"{fmt} output cannot be written by parallel workers yet (can: {known}); "
        "use --engine local",
        path=path,
    )


def npy_target(
    path: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    like: Any,
    attrs: dict[str, Any],
    rows: int | None,
) -> NpyTarget:
    return NpyTarget(path, shape, dtype.str)
