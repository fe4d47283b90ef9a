"""HDF5 datasets, read along axis 0 in blocks aligned with the dataset's own chunks."""

from __future__ import annotations

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
                self._ds.read_direct(buf, np.s_[first:end])
            except OSError as exc:
                raise DataError(
                    f"cannot read rows {first}:{end} ({exc})", path=self.path, dataset=self.dataset
                ) from None
            yield Chunk(buf, self.path, self.dataset, first)
            del buf  # drop our reference, so the pool can tell when the consumer is done

    def close(self) -> None:
        self._file.close()
