"""NumPy ``.npy`` files (memory-mapped, never loaded whole) and NPY streams on stdin."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from normstat.errors import DataError
from normstat.sources.base import Chunk, rows_for_bytes


def _check_dtype(dtype: np.dtype, path: str) -> np.dtype:
    if dtype.kind not in "biuf":
        raise DataError(f"dtype {dtype} is not numeric (expected integers or floats)", path=path)
    return dtype


class NpyFile:
    format = "npy"
    dataset = None

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"not a readable .npy file ({exc})", path=path) from None
        if not isinstance(self._array, np.ndarray) or self._array.ndim == 0:
            raise DataError("expected an array with a sample axis, received a scalar", path=path)
        self.shape = tuple(self._array.shape)
        self.dtype = _check_dtype(self._array.dtype, path)

    def preferred_rows(self, target_bytes: int) -> int:
        return rows_for_bytes(self.shape, self.dtype, target_bytes)

    def chunks(self, rows: int, first: int = 0, last: int | None = None) -> Iterator[Chunk]:
        n = self.shape[0] if last is None else min(last, self.shape[0])
        for start in range(first, n, rows):
            stop = min(start + rows, n)
            yield Chunk(np.asarray(self._array[start:stop]), self.path, None, start)

    def close(self) -> None:
        self._array = None  # drop the memory map


class NpyStream:
    """An NPY stream (``-`` on stdin): the header, then raw C-order rows read a chunk at a time."""

    format = "npy"
    dataset = None

    def __init__(self, stream: BinaryIO | None = None, path: str = "-") -> None:
        self.path = path
        self._fp = stream if stream is not None else sys.stdin.buffer
        try:
            version = np.lib.format.read_magic(self._fp)
            reader = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                version, np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = reader(self._fp)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"not an NPY stream ({exc})", path=path) from None
        if fortran and len(shape) > 1:
            raise DataError("Fortran-ordered NPY streams are not supported", path=path)
        if len(shape) == 0:
            raise DataError("expected an array with a sample axis, received a scalar", path=path)
        self.shape = tuple(shape)
        self.dtype = _check_dtype(np.dtype(dtype), path)

    def preferred_rows(self, target_bytes: int) -> int:
        return rows_for_bytes(self.shape, self.dtype, target_bytes)

    def chunks(self, rows: int, first: int = 0, last: int | None = None) -> Iterator[Chunk]:
        if first != 0 or last is not None:
            raise ValueError("a stream is read from its start to its end only")
        row_shape = self.shape[1:]
        for start in range(0, self.shape[0], rows):
            n = min(rows, self.shape[0] - start)
            buf = np.empty((n, *row_shape), self.dtype)
            view = memoryview(buf.reshape(-1).view(np.uint8))
            got = 0
            while got < len(view):
                k = self._fp.readinto(view[got:])
                if not k:
                    raise DataError(
                        f"stream ended at row {start + got // max(buf[0].nbytes, 1)} of "
                        f"{self.shape[0]} promised by its header",
                        path=self.path,
                    )
                got += k
            yield Chunk(buf, self.path, None, start)

    def close(self) -> None:
        pass
