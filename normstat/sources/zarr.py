"""Zarr arrays (``store.zarr`` or ``store.zarr:/group/array``), read along axis 0 in blocks of
whole Zarr chunks, so no chunk is decompressed twice and parallel readers never overlap.

zarr is an optional extra; it is imported when a Zarr store is first opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

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
