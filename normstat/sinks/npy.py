"""``.npy`` output: rows written at their offsets into space reserved up front (one writer), by
row ranges at their byte offsets (many processes), or as a stream (``-o -``)."""

from __future__ import annotations

import errno
import io
import os
import stat
import sys
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from normstat.errors import DataError
from normstat.sinks import OutputSpec
from normstat.storage import MAX_PARTS


class NpyWriter:
    """Header, then rows written in order with ``pwrite``, into space reserved up front.

    Not through a memory map: a full disk under a map is a SIGBUS that kills the process with a
    partial file, where ``posix_fallocate`` fails with ENOSPC, one error line, before any row is
    written. A special file (``/dev/null``, a FIFO) is written to in order, as a stream.
    """

    def __init__(self, target: str, spec: OutputSpec) -> None:
        self._fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            self._seekable = stat.S_ISREG(os.fstat(self._fd).st_mode)
            header = io.BytesIO()
            _write_header(header, spec.shape, spec.dtype)
            self._dtype = np.dtype(spec.dtype)
            row_bytes = int(np.prod(spec.shape[1:], dtype=np.int64)) * self._dtype.itemsize
            if self._seekable:
                reserve(self._fd, len(header.getvalue()) + spec.shape[0] * row_bytes)
            self._pos = 0
            self._put(header.getbuffer())
        except BaseException:
            os.close(self._fd)
            raise

    def write(self, block: np.ndarray) -> None:
        self._put(np.ascontiguousarray(block, dtype=self._dtype).data.cast("B"))

    def _put(self, data: memoryview) -> None:
        done = 0
        while done < len(data):  # a write may be short (2 GiB cap on Linux, a pipe)
            if self._seekable:
                done += os.pwrite(self._fd, data[done:], self._pos + done)
            else:
                done += os.write(self._fd, data[done:])
        self._pos += len(data)

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

    def __init__(self, target: str, spec: OutputSpec, stream: BinaryIO | None = None) -> None:
        self._fp = stream if stream is not None else stdout_binary()
        _write_header(_Checked(self._fp), spec.shape, spec.dtype)

    def write(self, block: np.ndarray) -> None:
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
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            header = io.BytesIO()
            _write_header(header, self.shape, np.dtype(self.dtype))
            row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * np.dtype(self.dtype).itemsize
            # the space reserved now: a full disk is ENOSPC here, not in a worker's write
            reserve(fd, len(header.getvalue()) + self.shape[0] * row_bytes)
            os.pwrite(fd, header.getvalue(), 0)
        finally:
            os.close(fd)

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


def range_target(
    path: str, spec: OutputSpec, rows: int | None = None
) -> NpyTarget | NpyPartsTarget:
    """A local file written at byte offsets, or an object in a bucket written as parts."""
    from normstat import storage

    shape, dtype = tuple(spec.shape), np.dtype(spec.dtype)
    if storage.is_uri(path):
        storage.multipart_scheme(path, "--engine dask writing one .npy object")
        return NpyPartsTarget(
            path, shape, dtype.str, part_rows(shape, dtype), "", storage.current()
        )
    return NpyTarget(path, shape, dtype.str)


PART_BYTES = 16 * 2**20
"""Bytes per part of an ``.npy`` object written by many processes (S3 wants >= 5 MiB per
part but the last, and at most 10,000 parts)."""
MIN_PART_BYTES = 5 * 2**20


@dataclass
class NpyPartsTarget:
    """A ``.npy`` object in a bucket that many processes fill at once: one multipart upload,
    created by the client (:meth:`create`), in which part ``p`` (1-based) holds output rows
    ``(p - 1) * part_rows`` up to ``p * part_rows`` (the header before them, in part 1). Tasks
    start on multiples of ``part_rows`` (:attr:`align`), so each part has one writer; a task
    re-run after its worker died uploads the same bytes under the same part numbers. Writers
    return ``(part number, ETag)`` receipts; the client completes the upload with them
    (:meth:`complete`) or aborts it (:meth:`abort`). Nothing is visible at the key before."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    part_rows: int
    upload: str = ""  # the multipart upload's id, once created
    options: tuple[tuple[str, str], ...] = ()  # storage options (--storage-option), for workers

    @property
    def align(self) -> int:
        return self.part_rows

    def create(self) -> None:
        """Start the upload (its id then travels to the workers with the target)."""
        from normstat import storage

        with storage.using(dict(self.options)):
            self.upload = storage.start_upload(self.path)

    def header(self) -> bytes:
        out = io.BytesIO()
        _write_header(out, self.shape, np.dtype(self.dtype))
        return out.getvalue()

    def open(self, start: int = 0) -> NpyPartWriter:
        return NpyPartWriter(self, start)

    def complete(self, receipts: list[tuple[int, str]]) -> None:
        """Make the object appear, from every part's receipt (one per part, all of them)."""
        from normstat import storage

        if self.shape[0] == 0 and not receipts:  # no task: the header is the whole object
            header = self.header()
            with storage.using(dict(self.options)):
                etag = storage.upload_part(
                    self.path, self.upload, 1, io.BytesIO(header), len(header)
                )
            receipts = [(1, etag)]
        expected = list(range(1, self.parts + 1))
        numbers = sorted({n for n, _ in receipts})
        if numbers != expected:
            raise DataError(
                f"{len(numbers)} of {len(expected)} parts were uploaded; not completed",
                path=storage.shown(self.path),
            )
        with storage.using(dict(self.options)):
            storage.complete_upload(self.path, self.upload, sorted(dict(receipts).items()))

    def abort(self) -> None:
        from normstat import storage

        if self.upload:
            with storage.using(dict(self.options)):
                storage.abort_upload(self.path, self.upload)

    @property
    def parts(self) -> int:
        return max(1, -(-self.shape[0] // self.part_rows))


class NpyPartWriter:
    """Consecutive blocks from row ``start`` (a multiple of the target's ``part_rows``), kept
    in a temporary file on this machine until a part is whole, then uploaded as that part:
    memory holds a block, disk at most one part."""

    def __init__(self, target: NpyPartsTarget, start: int) -> None:
        import tempfile

        self._t = target
        self._dtype = np.dtype(target.dtype)
        self._row_bytes = int(np.prod(target.shape[1:], dtype=np.int64)) * self._dtype.itemsize
        self._row = start
        self._part = start // target.part_rows + 1
        self._buf = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
        self.receipts: list[tuple[int, str]] = []
        if start == 0:
            self._buf.write(target.header())

    def write(self, block: np.ndarray) -> None:
        rows = np.ascontiguousarray(block, dtype=self._dtype)
        data = rows.reshape(len(rows), int(np.prod(self._t.shape[1:], dtype=np.int64)))
        done = 0
        while done < len(data):
            room = self._part * self._t.part_rows - self._row
            take = data[done : done + room]
            self._buf.write(take.data.cast("B"))
            done += len(take)
            self._row += len(take)
            if self._row == self._part * self._t.part_rows:
                self._send()

    def _send(self) -> None:
        from normstat import storage

        size = self._buf.tell()
        if size == 0:
            return
        self._buf.seek(0)
        with storage.using(dict(self._t.options)):
            etag = storage.upload_part(self._t.path, self._t.upload, self._part, self._buf, size)
        self.receipts.append((self._part, etag))
        self._part += 1
        self._buf.seek(0)
        self._buf.truncate()

    def close(self) -> None:
        try:
            if self._buf.tell():  # the last part, the only one that may be small
                if self._row != self._t.shape[0]:
                    raise DataError(
                        f"rows ended at {self._row}, inside part {self._part} (parts hold "
                        f"{self._t.part_rows} rows): not uploaded",
                        path=self._t.path,
                    )
                self._send()
        finally:
            self._buf.close()


def part_rows(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Rows per part: about :data:`PART_BYTES`, at least :data:`MIN_PART_BYTES` and at most
    :data:`MAX_PARTS` parts."""
    row_bytes = max(int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize, 1)
    rows = max(1, -(-PART_BYTES // row_bytes), -(-shape[0] // MAX_PARTS))
    return max(rows, -(-MIN_PART_BYTES // row_bytes))
