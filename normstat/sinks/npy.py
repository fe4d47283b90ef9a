"""``.npy`` output: through a memory map of the temporary file (one writer), by row ranges at
their byte offsets (many processes), or as a stream (``-o -``)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from normstat.sinks import OutputSpec


class NpyWriter:
    def __init__(self, target: str, spec: OutputSpec) -> None:
        self._out = np.lib.format.open_memmap(target, mode="w+", dtype=spec.dtype, shape=spec.shape)
        self._start = 0

    def write(self, block: np.ndarray) -> None:
        self._out[self._start : self._start + block.shape[0]] = block
        self._start += block.shape[0]

    def close(self) -> None:
        self._out.flush()
        del self._out


class NpyStreamWriter:
    """Header first, then C-order rows as they come: ``-o -`` for a pipe into a training script."""

    def __init__(self, target: str, spec: OutputSpec, stream: BinaryIO | None = None) -> None:
        self._fp = stream if stream is not None else sys.stdout.buffer
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(spec.dtype)),
            "fortran_order": False,
            "shape": tuple(spec.shape),
        }
        if _needs_v2(spec.shape):
            np.lib.format.write_array_header_2_0(self._fp, header)
        else:
            np.lib.format.write_array_header_1_0(self._fp, header)

    def write(self, block: np.ndarray) -> None:
        self._fp.write(np.ascontiguousarray(block).data)

    def close(self) -> None:
        self._fp.flush()


def _needs_v2(shape: tuple[int, ...]) -> bool:
    return len(repr(tuple(shape))) > 60000


@dataclass(frozen=True)
class NpyTarget:
    """A ``.npy`` file many processes fill at once: the header is written first, then each
    writer puts its rows at their byte offsets.

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

    def open(self, start: int = 0) -> NpyRangeWriter:
        return NpyRangeWriter(self.path, self.shape, np.dtype(self.dtype), start)


class NpyRangeWriter:
    """Consecutive blocks from row ``start`` of an existing ``.npy`` file."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype, start: int) -> None:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                np.lib.format.read_array_header_1_0(f)
            else:
                np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
        self._row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._pos = offset + start * self._row_bytes
        self._dtype = dtype
        self._fd = os.open(path, os.O_WRONLY)

    def write(self, block: np.ndarray) -> None:
        data = np.ascontiguousarray(block, dtype=self._dtype).data.cast("B")
        done = 0
        while done < len(data):  # one pwrite may write less than asked (2 GiB cap on Linux)
            done += os.pwrite(self._fd, data[done:], self._pos + done)
        self._pos += len(data)

    def close(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)


def range_target(path: str, spec: OutputSpec, rows: int | None = None) -> NpyTarget:
    return NpyTarget(path, tuple(spec.shape), np.dtype(spec.dtype).str)
