"""Zarr arrays (``store.zarr`` or ``store.zarr:/group/array``), read along axis 0 in blocks of
whole Zarr chunks, so no chunk is decompressed twice and parallel readers never overlap.

zarr is an optional extra; it is imported when a Zarr store is first opened.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

from normstat import storage
from normstat.errors import DataError, UsageError
from normstat.sources.base import Chunk, rows_for_bytes


def zarr_module() -> ModuleType:
    """The zarr package, or a clear error naming the extra that provides it."""
    try:
        import zarr
    except ImportError:
        raise UsageError(
            "Zarr stores need the zarr package: pip install 'normstat[zarr]'"
        ) from None
    return zarr


def numeric_arrays(group: Any, prefix: str = "") -> list[str]:
    """Absolute paths of the numeric arrays in ``group`` and its subgroups."""
    found = [
        f"{prefix}/{name}" for name, arr in group.arrays() if np.dtype(arr.dtype).kind in "biuf"
    ]
    for name, sub in group.groups():
        found.extend(numeric_arrays(sub, f"{prefix}/{name}"))
    return sorted(found)


def _open_node(path: str) -> Any:
    zarr = zarr_module()
    try:
        if storage.is_uri(path):  # through fsspec (the remote extra), as configured here
            return zarr.open(
                path.rstrip("/"), mode="r", storage_options=storage.fsspec_options(path)
            )
        return zarr.open(path, mode="r")
    except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
        raise DataError(f"not a readable Zarr store ({exc})", path=path) from None


def resolve_array(path: str, dataset: str | None) -> Any:
    """The requested array, or the store's only numeric array; otherwise a listing."""
    node = _open_node(path)
    is_array = hasattr(node, "chunks")
    if is_array and dataset in (None, "", "/"):
        return node
    if is_array:
        raise UsageError(f"no array {dataset!r}: the store is a single array", path=path)
    names = numeric_arrays(node)
    listing = ", ".join(names) or "none"
    if dataset is None:
        if len(names) != 1:
            raise UsageError(
                f"choose an array with {path}:/name or --dataset; numeric arrays: {listing}",
                path=path,
            )
        dataset = names[0]
    try:
        obj = node[dataset.strip("/")]
    except (KeyError, FileNotFoundError, ValueError):
        raise UsageError(f"no array {dataset!r}; numeric arrays: {listing}", path=path) from None
    if not hasattr(obj, "chunks"):
        raise DataError("is a group, expected an array", path=path, dataset=dataset)
    return obj


SPARSE_FLOOR = 2**30
"""Arrays declaring at most this many bytes are read whatever they store: at worst a second of
fill values. Larger ones must store at least half of a sample of their chunks (see
:func:`check_allocated`)."""
_SAMPLED_CHUNKS = 64


def _stored(arr: Any, coords: tuple[int, ...]) -> bool:
    from zarr.core.sync import sync

    key = arr.metadata.encode_chunk_key(coords)
    return bool(sync(arr.store.exists(f"{arr.path}/{key}" if arr.path else key)))


def check_allocated(arr: Any, path: str, dataset: str | None) -> None:
    """Refuse an array that is mostly unwritten: Zarr reads a missing chunk as the fill value,
    so a store of a few bytes can declare 10^12 rows and keep a fit busy for hours on nothing.

    Zarr (v3 by default) also leaves out chunks that equal the fill value, so a missing chunk
    alone proves nothing; and counting every key of a huge array takes minutes. So: arrays over
    1 GiB must store at least half of up to 64 chunks sampled evenly along axis 0.
    """
    shape, dtype = tuple(int(n) for n in arr.shape), np.dtype(arr.dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes <= SPARSE_FLOOR:
        return
    grid = getattr(arr, "shards", None) or arr.chunks
    n0 = -(-shape[0] // int(grid[0]))
    picks = sorted({int(i) for i in np.linspace(0, n0 - 1, min(_SAMPLED_CHUNKS, n0))})
    try:
        present = sum(_stored(arr, (i,) + (0,) * (len(shape) - 1)) for i in picks)
    except Exception:  # a store that cannot say (not local, or another zarr): read as it is
        return
    if present * 2 < len(picks):
        raise DataError(
            f"declares {shape[0]} rows ({nbytes} bytes) but stores only {present} of "
            f"{len(picks)} chunks sampled along them; the rest would be read as fill values",
            path=path,
            dataset=dataset,
        )


class ZarrArray:
    format = "zarr"
    kind = "array"
    features = None

    def __init__(self, path: str, dataset: str | None) -> None:
        self.path = path
        self._arr = resolve_array(path, dataset)
        name = self._arr.name or "/"
        self.dataset = None if name == "/" else name
        self.shape = tuple(int(s) for s in self._arr.shape)
        self.dtype = np.dtype(self._arr.dtype)
        self.storage_chunks = tuple(int(c) for c in self._arr.chunks)
        if self.dtype.kind not in "biuf":
            raise DataError(
                f"dtype {self.dtype} is not numeric (expected integers or floats)",
                path=path,
                dataset=self.dataset,
            )
        if len(self.shape) == 0:
            raise DataError(
                "is a scalar, expected an array with a sample axis", path=path, dataset=dataset
            )
        check_allocated(self._arr, path, self.dataset)

    def check_budget(self, budget: int) -> None:
        """Refuse chunks larger than ``budget`` bytes: reading any row of one decodes all of
        it, so memory would follow the store, not --chunk-size."""
        nbytes = math.prod(self.storage_chunks) * self.dtype.itemsize
        if nbytes > budget:
            raise DataError(
                f"storage chunk of {list(self.storage_chunks)} is {nbytes} bytes, more than the "
                f"{budget} bytes that one read may hold (max(256 MiB, 4 x --chunk-size)); "
                "rechunk the store",
                path=self.path,
                dataset=self.dataset,
            )

    def preferred_rows(self, target_bytes: int) -> int:
        rows = rows_for_bytes(self.shape, self.dtype, target_bytes)
        step = self.storage_chunks[0]
        return max(step, rows // step * step)

    def chunks(self, rows: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        n = self.shape[0] if stop is None else min(stop, self.shape[0])
        for first in range(start, n, rows):
            end = min(first + rows, n)
            try:
                block = np.asarray(self._arr[first:end])
            except (OSError, ValueError, RuntimeError) as exc:
                raise DataError(
                    f"cannot read rows {first}:{end} ({exc})", path=self.path, dataset=self.dataset
                ) from None
            yield Chunk(block, self.path, self.dataset, first)

    def close(self) -> None:
        self._arr = None
