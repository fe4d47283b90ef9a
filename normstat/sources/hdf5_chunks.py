"""Chunked HDF5 datasets in a bucket, read without h5py on the data path.

h5py reading a chunked dataset from a Python file object asks for each storage chunk (and the
B-tree nodes that find it) as separate small reads, one after another: over HTTP that is one
round trip per chunk, whatever block cache sits below. Here h5py only lists the chunk index
(each chunk's byte offset, stored size and filter mask); the chunks a read needs are then
fetched as few large ranged GETs (neighbouring chunks coalesced), several at once, and decoded
here with the filters the dataset declares, deflate and shuffle, which are exactly zlib and a
byte transpose. Any other filter, a type that needs conversion, or a chunk index of an unusual
shape: :func:`chunk_index` returns None and h5py reads, as before.

The index is what the file claims: every stored range is checked against the object's size,
every stored size against what the chunk's values could take, and every decoded chunk must be
exactly its declared size (zlib is never allowed to produce more).
"""

from __future__ import annotations

import math
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from normstat import storage
from normstat.errors import DataError

DEFLATE = h5py.h5z.FILTER_DEFLATE
SHUFFLE = h5py.h5z.FILTER_SHUFFLE
FILTERS = (DEFLATE, SHUFFLE)
"""The filters decoded here; a dataset declaring any other is read by h5py."""

REQUEST_BYTES = 32 * 2**20
"""Most bytes one ranged GET fetches (neighbouring chunks coalesced up to this)."""
GAP_BYTES = 256 * 2**10
"""Chunks at most this far apart are fetched by one GET (the gap is read and dropped)."""
READERS = 2
"""Ranged GETs in flight at once per open dataset."""


@dataclass(frozen=True)
class ChunkIndex:
    """Where each storage chunk of a dataset chunked along axis 0 only lies in the file."""

    rows: int  # rows per storage chunk
    nbytes: int  # bytes of one decoded chunk
    itemsize: int
    offsets: np.ndarray  # int64, byte offset of chunk k (rows k*rows ...)
    sizes: np.ndarray  # int64, stored bytes of chunk k
    masks: np.ndarray  # int64, filters skipped for chunk k (bit i: pipeline[i])
    pipeline: tuple[int, ...]  # filter ids, in the order they were applied when writing


def chunk_index(ds: h5py.Dataset) -> ChunkIndex | None:
    """The chunk index of ``ds`` when it can be read here, else None (h5py reads it)."""
    dsid = ds.id
    dcpl = dsid.get_create_plist()
    if dcpl.get_layout() != h5py.h5d.CHUNKED or ds.chunks is None or not ds.size:
        return None
    if tuple(ds.chunks[1:]) != tuple(ds.shape[1:]) or ds.dtype.kind not in "iuf":
        return None  # chunks that split a row, or values that need converting
    if not h5py.h5t.py_create(ds.dtype).equal(dsid.get_type()):
        return None
    pipeline = []
    for i in range(dcpl.get_nfilters()):
        code, _flags, values, _name = dcpl.get_filter(i)
        if code not in FILTERS or (code == SHUFFLE and values and values[0] != ds.dtype.itemsize):
            return None
        pipeline.append(int(code))
    rows = int(ds.chunks[0])
    count = -(-ds.shape[0] // rows)
    if dsid.get_num_chunks() != count:
        return None
    offsets = np.full(count, -1, np.int64)
    sizes = np.zeros(count, np.int64)
    masks = np.zeros(count, np.int64)
    odd: list[bool] = []

    def visit(info: Any) -> None:
        at = info.chunk_offset
        k = at[0] // rows
        if at[0] % rows or any(at[1:]) or not 0 <= k < count or offsets[k] >= 0:
            odd.append(True)
            return
        offsets[k], sizes[k], masks[k] = info.byte_offset, info.size, info.filter_mask

    dsid.chunk_iter(visit)
    if odd or (offsets < 0).any():
        return None
    nbytes = math.prod(ds.chunks) * ds.dtype.itemsize
    return ChunkIndex(rows, nbytes, ds.dtype.itemsize, offsets, sizes, masks, tuple(pipeline))


class ChunkReader:
    """Fills row ranges of a buffer from the stored chunks of an object in a bucket."""

    def __init__(self, index: ChunkIndex, file: Any, rows: int, uri: str, dataset: str) -> None:
        self.index = index
        self._file = file  # a pyarrow random-access file: read_at is safe from threads
        self._size = int(file.size())
        self.uri = uri
        self.dataset = dataset
        self._rows = rows
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[tuple[int, ...], Future] = {}

    def read(self, buf: np.ndarray, first: int, ahead: int = 0) -> None:
        """Fill ``buf`` with rows ``first : first + len(buf)``; then start fetching the
        ``ahead`` rows that follow (the next read's), so that its GETs overlap the work on
        this one: at most one further read's stored bytes are held."""
        end = first + len(buf)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(READERS, thread_name_prefix="normstat-h5")
        wanted = self._groups(first, end)
        fetches = [
            self._ahead.pop(tuple(g)) if tuple(g) in self._ahead else self._submit(g)
            for g in wanted
        ]
        for fut in self._ahead.values():
            fut.cancel()  # a read that was not the one announced
        self._ahead = {}
        if ahead > 0:
            stop = min(end + ahead, self._rows)
            self._ahead = {tuple(g): self._submit(g) for g in self._groups(end, stop)}
        for group, fut in zip(wanted, fetches, strict=True):
            self._decode_into(group, fut.result(), buf, first)

    def _groups(self, first: int, end: int) -> list[list[int]]:
        ks = np.arange(first // self.index.rows, (end - 1) // self.index.rows + 1)
        self._check(ks)
        return self._coalesce(ks)

    def _submit(self, group: list[int]) -> Future:
        assert self._pool is not None
        return self._pool.submit(self._fetch, group)

    def _check(self, ks: np.ndarray) -> None:
        ix = self.index
        limit = ix.nbytes + ix.nbytes // 100 + 4096  # deflate's worst case is far below
        off, size = ix.offsets[ks], ix.sizes[ks]
        bad = (off + size > self._size) | (size > limit) | (size <= 0)
        if bad.any():
            k = int(ks[np.argmax(bad)])
            raise DataError(
                f"storage chunk of rows {k * ix.rows}:{(k + 1) * ix.rows} claims bytes "
                f"{int(ix.offsets[k])}+{int(ix.sizes[k])}, outside the object's "
                f"{self._size} bytes or more than its {ix.nbytes} bytes of values need; "
                "the file is damaged",
                path=self.uri,
                dataset=self.dataset,
            )

    def _coalesce(self, ks: np.ndarray) -> list[list[int]]:
        """The chunks ``ks`` in groups, each group one ranged GET (a loop over storage chunks
        of one read, not over rows)."""
        ix = self.index
        order = ks[np.argsort(ix.offsets[ks], kind="stable")]
        groups: list[list[int]] = []
        start = stop = -1
        for k in order.tolist():
            lo, hi = int(ix.offsets[k]), int(ix.offsets[k] + ix.sizes[k])
            if groups and lo >= stop and lo - stop <= GAP_BYTES and hi - start <= REQUEST_BYTES:
                groups[-1].append(k)
                stop = hi
            else:
                groups.append([k])
                start, stop = lo, hi
        return groups

    def _fetch(self, group: list[int]) -> Any:
        """The stored bytes of ``group``: one ranged GET."""
        ix = self.index
        lo = int(ix.offsets[group[0]])
        hi = int(ix.offsets[group[-1]] + ix.sizes[group[-1]])
        try:
            data = self._file.read_at(hi - lo, lo)
        except (OSError, ValueError) as exc:
            raise storage.failure(exc, self.uri) from None
        if len(data) < hi - lo:
            raise DataError(
                f"object is truncated: it ended inside bytes {lo}:{hi} while being read; "
                "was it rewritten during the run?",
                path=self.uri,
                dataset=self.dataset,
            )
        return data

    def _decode_into(self, group: list[int], data: Any, buf: np.ndarray, first: int) -> None:
        ix = self.index
        lo = int(ix.offsets[group[0]])
        view = memoryview(data)
        end = first + len(buf)
        for k in group:
            at = int(ix.offsets[k]) - lo
            raw = self._decode(view[at : at + int(ix.sizes[k])], k)
            values = np.frombuffer(raw, buf.dtype).reshape(ix.rows, *buf.shape[1:])
            a, b = max(first, k * ix.rows), min(end, (k + 1) * ix.rows)
            buf[a - first : b - first] = values[a - k * ix.rows : b - k * ix.rows]

    def _decode(self, raw: Any, k: int) -> Any:
        """The chunk's values: its filters undone in reverse order, skipped ones skipped."""
        ix = self.index
        data = raw
        for i in reversed(range(len(ix.pipeline))):
            if int(ix.masks[k]) >> i & 1:
                continue
            if ix.pipeline[i] == DEFLATE:
                z = zlib.decompressobj()
                try:
                    out = z.decompress(data, ix.nbytes)
                except zlib.error as exc:
                    raise self._damaged(k, f"does not inflate: {exc}") from None
                if not z.eof:
                    raise self._damaged(k, "inflates to more (or less) than its declared size")
                data = out
            else:  # shuffle: the byte planes back into elements
                if len(data) != ix.nbytes:
                    raise self._damaged(k, f"holds {len(data)} bytes, not {ix.nbytes}")
                planes = np.frombuffer(data, np.uint8).reshape(ix.itemsize, -1)
                data = np.ascontiguousarray(planes.T).reshape(-1).data
        if len(data) != ix.nbytes:
            raise self._damaged(k, f"holds {len(data)} bytes, not its declared {ix.nbytes}")
        return data

    def _damaged(self, k: int, what: str) -> DataError:
        rows = self.index.rows
        return DataError(
            f"storage chunk of rows {k * rows}:{(k + 1) * rows} {what}; the file is damaged",
            path=self.uri,
            dataset=self.dataset,
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._file.close()
