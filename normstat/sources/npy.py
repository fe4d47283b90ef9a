"""NumPy ``.npy`` files (memory-mapped, never loaded whole) and NPY streams on stdin."""

from __future__ import annotations

import io
import math
import os
import sys
import tokenize
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from normstat import storage
from normstat.errors import DataError, UsageError
from normstat.sources.base import Chunk, fingerprint_of, rows_for_bytes
from normstat.sources.buffers import BufferPool, pread_into, read_only, read_small

# numpy parses the header (a Python literal) with ast/tokenize: a damaged header can raise any of
# these, and none of them should become a traceback.
HEADER_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    SyntaxError,
    TypeError,
    MemoryError,
    tokenize.TokenError,
)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


_HEAD = 16 + 10000  # magic, version, header length and numpy's longest header


def _check_dtype(dtype: np.dtype, path: str) -> np.dtype:
    if dtype.kind not in "biuf":
        raise DataError(f"dtype {dtype} is not numeric (expected integers or floats)", path=path)
    return dtype


class NpyFile:
    """Each chunk is its own small memory map of the file, dropped once the chunk is processed.

    One map of the whole file would be simpler, but every page it touches stays counted in the
    process's resident memory until the end; per-chunk maps keep memory bounded by the chunk size.
    """

    format = "npy"
    kind = "array"
    features = None
    dataset = None

    def __init__(self, path: str, whole: bool = False) -> None:
        """``whole``: a small file (up to ``buffers.SMALL_FILE`` bytes) is read whole here, in one
        read, and its rows, header and fingerprint all come from those bytes: a shard opened
        ahead of the pass, whose one chunk is then a view (many small files)."""
        self.path = path
        self._raw: np.ndarray | None = None
        self.known_fingerprint: dict[str, Any] | None = None
        try:
            raw = self._read_small() if whole and not storage.is_uri(path) else None
            head: Any = io.BytesIO(raw[:_HEAD].tobytes()) if raw is not None else self._open()
            with head as fp:
                version = np.lib.format.read_magic(fp)
                shape, fortran, dtype = _read_header(fp, version)
                self._offset = fp.tell()
                if raw is not None:
                    size = len(raw)
                else:
                    size = fp.size() if storage.is_uri(path) else os.fstat(fp.fileno()).st_size
        except HEADER_ERRORS as exc:
            raise DataError(f"not a readable .npy file ({_first_line(exc)})", path=path) from None
        self.dtype = _check_dtype(np.dtype(dtype), path)
        if len(shape) == 0:
            raise DataError("expected an array with a sample axis, received a scalar", path=path)
        self.shape = tuple(shape)
        self._fortran = fortran and len(shape) > 1
        self._needed = needed = self._offset + math.prod(shape) * self.dtype.itemsize
        if size < needed:
            raise DataError(
                f"file is truncated: its header promises {needed} bytes, it has {size}", path=path
            )
        if raw is not None and not self._fortran:
            self._raw = raw

    def _read_small(self) -> np.ndarray | None:
        """The whole file in one read if it is a small regular file (its fingerprint taken
        from the same stat and bytes), else None."""
        small = read_small(self.path)
        if small is None:
            return None
        raw, st = small
        if len(raw) == st.st_size:  # else it changed as it was read: the header check tells
            self.known_fingerprint = fingerprint_of(self.path, st, raw)
        return raw

    def _open(self) -> Any:
        """The file, or a random-access pyarrow file of an object in a bucket (its reads are
        ranged GETs: a chunk's rows are one request)."""
        return storage.open_input(self.path) if storage.is_uri(self.path) else open(self.path, "rb")

    def preferred_rows(self, target_bytes: int) -> int:
        return rows_for_bytes(self.shape, self.dtype, target_bytes)

    def chunks(self, rows: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        end = self.shape[0] if stop is None else min(stop, self.shape[0])
        raw, self._raw = self._raw, None  # the bytes read whole serve one pass, then go
        if raw is not None:
            values = raw[self._offset : self._needed].view(self.dtype).reshape(self.shape)
            for first in range(start, end, rows):
                yield Chunk(read_only(values[first : first + rows]), self.path, None, first)
            return
        pool = BufferPool()
        with self._open() as fp:
            fd = fp if storage.is_uri(self.path) else fp.fileno()
            for first in range(start, end, rows):
                n = min(rows, end - first)
                buf = pool.get((n, *self.shape[1:]), self.dtype)
                if self._fortran:
                    self._read_fortran(fd, buf, first)
                elif buf.nbytes:
                    self._read(fd, buf, self._offset + first * buf[0].nbytes, first)
                yield Chunk(read_only(buf), self.path, None, first)
                del buf  # the pool reuses it once the consumer is done with the chunk

    def _read(self, fd: int | Any, buf: np.ndarray, at: int, first: int) -> None:
        if pread_into(fd, buf, at) < buf.nbytes:
            raise DataError(
                f"file is truncated: it ended inside rows {first}:{first + len(buf)} while "
                f"being read (its header promises {self._needed} bytes, it now has "
                f"{_size(fd)}); was it rewritten during the run?",
                path=self.path,
            )

    def _read_fortran(self, fd: int | Any, buf: np.ndarray, first: int) -> None:
        """Rows of a Fortran-ordered array: every trailing position's values are one run per
        row block (Fortran order keeps axis 0 contiguous), read into a (positions, rows) block
        and turned around into C order."""
        n, trailing, item = len(buf), self.shape[1:], self.dtype.itemsize
        runs = np.empty((math.prod(trailing), n), self.dtype)
        for j in range(runs.shape[0]):
            at = self._offset + (j * self.shape[0] + first) * item
            self._read(fd, runs[j], at, first)
        buf[...] = runs.reshape(*trailing[::-1], n).T

    def close(self) -> None:
        pass


def _size(fd: int | Any) -> int:
    return os.fstat(fd).st_size if isinstance(fd, int) else int(fd.size())


_HEADERS: dict[tuple[tuple[int, int], bytes], tuple] = {}
"""Parsed headers by their bytes: the shards of a dataset share one header (same shape and
dtype), and numpy parses it with ``ast`` (0.06 ms a file). Only a header numpy accepted is kept."""
_HEADERS_MAX = 256
_MAX_HEADER = 10000
"""numpy's own ``max_header_size`` default: a longer header is refused, never parsed."""


def _read_header(fp: BinaryIO | io.BufferedIOBase, version: tuple[int, int]) -> tuple:
    """``(shape, fortran_order, dtype)`` of the header that follows the magic, parsed by numpy
    (the first time these bytes are seen)."""
    size = fp.read(2 if version == (1, 0) else 4)
    n = int.from_bytes(size, "little")
    if n > _MAX_HEADER:
        raise ValueError(f"the header claims {n} bytes, more than {_MAX_HEADER}")
    header = fp.read(n)
    known = _HEADERS.get((version, header))
    if known is None:
        raw = io.BytesIO(size + header)
        if version == (1, 0):
            known = np.lib.format.read_array_header_1_0(raw)
        else:
            known = np.lib.format.read_array_header_2_0(raw)
        if len(_HEADERS) >= _HEADERS_MAX:
            _HEADERS.clear()
        _HEADERS[(version, header)] = known
    return known


class NpyStream:
    """An NPY stream (``-`` on stdin): the header, then raw C-order rows read a chunk at a time."""

    format = "npy"
    kind = "array"
    features = None
    dataset = None

    def __init__(self, stream: BinaryIO | None = None, path: str = "-") -> None:
        self.path = path
        # a buffered binary stream: sys.stdin.buffer, or io.BytesIO in tests
        self._fp: io.BufferedIOBase = stream if stream is not None else sys.stdin.buffer  # type: ignore[assignment]
        try:
            version = np.lib.format.read_magic(self._fp)
            shape, fortran, dtype = _read_header(self._fp, version)
        except HEADER_ERRORS as exc:
            raise DataError(f"not an NPY stream ({_first_line(exc)})", path=path) from None
        if fortran and len(shape) > 1:
            raise DataError("Fortran-ordered NPY streams are not supported", path=path)
        if len(shape) == 0:
            raise DataError("expected an array with a sample axis, received a scalar", path=path)
        self.shape = tuple(shape)
        self.dtype = _check_dtype(np.dtype(dtype), path)

    def preferred_rows(self, target_bytes: int) -> int:
        return rows_for_bytes(self.shape, self.dtype, target_bytes)

    def chunks(self, rows: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        if start or stop is not None:
            raise UsageError("a stream cannot be read part-way")
        row_shape = self.shape[1:]
        for start in range(0, self.shape[0], rows):
            n = min(rows, self.shape[0] - start)
            buf = np.empty((n, *row_shape), self.dtype)
            view = buf.reshape(-1).view(np.uint8).data
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
