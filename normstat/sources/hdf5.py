"""HDF5 datasets, read along axis 0 in blocks aligned with the dataset's own chunks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import h5py
import numpy as np

from normstat.errors import DataError, UsageError
from normstat.sources.base import Chunk, rows_for_bytes
from normstat.sources.buffers import BufferPool


def numeric_datasets(f: h5py.File) -> list[str]:
    found: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biuf" and obj.ndim > 0:
            found.append("/" + name)

    f.visititems(visit)
    return found


def _open_file(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise DataError("no such file", path=path) from None
    except OSError as exc:
        raise DataError(f"not a readable HDF5 file ({exc})", path=path) from None


def resolve_dataset(f: h5py.File, path: str, dataset: str | None) -> h5py.Dataset:
    """The requested dataset, or the only numeric one; otherwise an error listing them."""
    if dataset is None:
        names = numeric_datasets(f)
        if len(names) == 1:
            dataset = names[0]
        else:
            listing = ", ".join(names) if names else "none"
            raise UsageError(
                f"choose a dataset with {path}:/name or --dataset; numeric datasets: {listing}",
                path=path,
            )
    obj = f.get(dataset)
    if obj is None:
        listing = ", ".join(numeric_datasets(f)) or "none"
        raise UsageError(f"no dataset {dataset!r}; numeric datasets: {listing}", path=path)
    if not isinstance(obj, h5py.Dataset):
        raise DataError("is a group, expected a dataset", path=path, dataset=dataset)
    if obj.dtype.kind not in "biuf":
        raise DataError(
            f"dtype {obj.dtype} is not numeric (expected integers or floats)",
            path=path,
            dataset=dataset,
        )
    if obj.ndim == 0:
        raise DataError(
            "is a scalar, expected an array with a sample axis", path=path, dataset=dataset
        )
    return obj


def contiguous_offset(f: h5py.File, ds: h5py.Dataset) -> int | None:
    """Where ``ds``'s values lie in the file, when they can be read with plain ``pread``.

    That holds for a contiguous dataset whose storage is allocated and whose file type is
    exactly the standard type of its numpy dtype (so no conversion is due), in a file opened
    with the default one-file driver. HDF5 then stores row-major values in one block at this
    offset (user block included). Reading it directly measured 2x faster than ``read_direct``
    on the 1.5 GB uint8 images (0.30 vs 0.63 s; HDF5 walks a 4-d selection element run by
    element run) and releases the GIL for the whole read. Anything else: None, and h5py reads.
    """
    dsid = ds.id
    if not hasattr(os, "preadv") or f.driver != "sec2" or ds.dtype.kind not in "iuf":
        return None
    dcpl = dsid.get_create_plist()
    if dcpl.get_layout() != h5py.h5d.CONTIGUOUS or dcpl.get_external_count():
        return None  # chunked, compact, virtual, or values kept in other (external) files
    if dsid.get_storage_size() != ds.size * ds.dtype.itemsize or not ds.size:
        return None  # not allocated (read as fill values), or not the plain layout
    if not h5py.h5t.py_create(ds.dtype).equal(dsid.get_type()):
        return None
    return dsid.get_offset()


class Hdf5Dataset:
    format = "hdf5"
    kind = "array"
    features = None

    def __init__(self, path: str, dataset: str | None) -> None:
        self.path = path
        self._file = _open_file(path)
        try:
            self._ds = resolve_dataset(self._file, path, dataset)
        except BaseException:
            self._file.close()
            raise
        self.dataset = self._ds.name
        self.shape = tuple(self._ds.shape)
        self.dtype = self._ds.dtype
        self.storage_chunks = self._ds.chunks
        self.compression = self._ds.compression
        self.compression_opts = self._ds.compression_opts
        self._offset = contiguous_offset(self._file, self._ds)
        self._fd = -1
        if self._offset is not None:
            try:
                self._fd = os.open(path, os.O_RDONLY)
            except OSError:
                self._offset = None

    @property
    def handle(self) -> h5py.Dataset:
        """The open h5py dataset, for writers that copy its storage layout and attributes."""
        return self._ds

    def preferred_rows(self, target_bytes: int) -> int:
        rows = rows_for_bytes(self.shape, self.dtype, target_bytes)
        if self.storage_chunks:  # whole storage chunks only: no chunk is decompressed twice
            step = self.storage_chunks[0]
            rows = max(step, rows // step * step)
        return rows

    def chunks(self, rows: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        n = self.shape[0] if stop is None else min(stop, self.shape[0])
        pool = BufferPool()
        for first in range(start, n, rows):
            end = min(first + rows, n)
            buf = pool.get((end - first, *self.shape[1:]), self.dtype)
            try:
                self._read(buf, first, end)
            except OSError as exc:
                raise DataError(
                    f"cannot read rows {first}:{end} ({exc})", path=self.path, dataset=self.dataset
                ) from None
            yield Chunk(buf, self.path, self.dataset, first)
            del buf  # drop our reference, so the pool can tell when the consumer is done

    @property
    def direct(self) -> bool:
        """Whether rows are read with ``pread`` from the file (see :func:`contiguous_offset`)."""
        return self._offset is not None

    def _read(self, buf: np.ndarray, first: int, end: int) -> None:
        if self._offset is None:
            self._ds.read_direct(buf, np.s_[first:end])
            return
        view = buf.data.cast("B")
        at = self._offset + first * (view.nbytes // (end - first))
        done = 0
        while done < view.nbytes:
            n = os.preadv(self._fd, [view[done:]], at + done)
            if n == 0:
                raise OSError("the file ends before the dataset's data")
            done += n

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._file.close()
