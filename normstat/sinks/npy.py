"""``.npy`` output (space reserved, rows written at their offsets) and NPY to a stream."""

from __future__ import annotations

import errno
import io
import os
import stat
import sys
from typing import Any, BinaryIO

import numpy as np

from normstat.errors import DataError


class NpyWriter:
    """Header, then rows written at their offsets with ``pwrite``, into space reserved up front.

    Not through a memory map: a full disk under a map is a SIGBUS that kills the process with a
    partial file, where ``posix_fallocate`` fails with ENOSPC, one error line, before any row is
    written. A special file (``/dev/null``, a FIFO) is written to in order, as a stream.
    """

    def __init__(self, tmp_path: str, shape: tuple[int, ...], dtype: np.dtype, **_: Any) -> None:
        self._fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            self._seekable = stat.S_ISREG(os.fstat(self._fd).st_mode)
            header = io.BytesIO()
            _write_header(header, shape, dtype)
            self._offset = len(header.getvalue())
            self._dtype = np.dtype(dtype)
            self._row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * self._dtype.itemsize
            if self._seekable:
                reserve(self._fd, self._offset + shape[0] * self._row_bytes)
            self._pos = 0
            self._put(header.getbuffer(), 0)
        except BaseException:
            os.close(self._fd)
            raise

    def write(self, start: int, block: np.ndarray) -> None:
        data = np.ascontiguousarray(block, dtype=self._dtype).data.cast("B")
        self._put(data, self._offset + start * self._row_bytes)

    def _put(self, data: memoryview, pos: int) -> None:
        done = 0
        while done < len(data):  # a write may be short (2 GiB cap on Linux, a pipe)
            if self._seekable:
                done += os.pwrite(self._fd, data[done:], pos + done)
            else:
                done += os.write(self._fd, data[done:])

    def close(self) -> None:
        os.close(self._fd)


def reserve(fd: int, size: int) -> None:
    """Allocate the whole file now, so a full disk fails here (ENOSPC), not mid-write."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
            raise


def _write_header(fp: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": tuple(shape),
    }
    if _needs_v2(shape):
        np.lib.format.write_array_header_2_0(fp, header)
    else:
        np.lib.format.write_array_header_1_0(fp, header)


class NpyStreamWriter:
    """Header first, then C-order rows as they come: ``-o -`` for a pipe into a training script."""

    def __init__(
        self, shape: tuple[int, ...], dtype: np.dtype, stream: BinaryIO | None = None, **_: Any
    ) -> None:
        self._fp = stream if stream is not None else stdout_binary()
        _write_header(_Checked(self._fp), shape, dtype)

    def write(self, start: int, block: np.ndarray) -> None:
        write_all(self._fp, np.ascontiguousarray(block).data.cast("B"))

    def close(self) -> None:
        self._fp.flush()


def stdout_binary() -> BinaryIO:
    """stdout for bytes; a closed stdout (``>&-``) is one error line, not an AttributeError."""
    if sys.stdout is None:
        raise DataError("cannot write the output (stdout is closed)", path="<stdout>")
    return sys.stdout.buffer


def write_all(fp: Any, data: Any) -> None:
    """Write every byte: a raw or non-blocking stream may write less than asked, and a write
    that makes no progress is an error, never silently dropped data."""
    view = memoryview(data).cast("B")
    while len(view):
        n = fp.write(view)
        if n is None or n <= 0:  # None: a non-blocking stream that would block
            raise BrokenPipeError(errno.EPIPE, "the output stream stopped taking data")
        view = view[n:]


class _Checked:
    """A stream whose ``write`` writes everything (:func:`write_all`)."""

    def __init__(self, fp: Any) -> None:
        self._fp = fp

    def write(self, data: Any) -> int:
        write_all(self._fp, data)
        return len(memoryview(data).cast("B"))


def _needs_v2(shape: tuple[int, ...]) -> bool:
    return len(repr(tuple(shape))) > 60000
