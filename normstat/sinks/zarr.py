"""Zarr output: one array in a store, written block by block, or by many processes at once.

Zarr stores every chunk as its own object, so processes that write whole, disjoint chunks never
interfere: that is what lets Dask workers write one output in parallel without a lock. The output
keeps the input's chunking when the input was chunked storage (so a chunk-aligned reader of the
input reads the output the same way); otherwise chunks hold about 16 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from normstat import interrupts
from normstat.sources.base import rows_for_bytes
from normstat.sources.zarr import zarr_module

OUTPUT_CHUNK_BYTES = 16 * 2**20


def output_chunks(
    shape: tuple[int, ...],
    dtype: np.dtype,
    like: tuple[int, ...] | None = None,
    rows: int | None = None,
) -> tuple[int, ...]:
    """Chunks of the output array: the input's storage chunks if it had them, else at most
    ~16 MiB and at most ``rows`` (the read block), so blocks cover whole chunks."""
    if like is not None and len(like) == len(shape):
        return tuple(max(1, min(c, s)) for c, s in zip(like, shape, strict=True))
    n = rows_for_bytes(shape, np.dtype(dtype), OUTPUT_CHUNK_BYTES)
    if rows is not None:
        n = min(n, rows)
    return (max(1, min(n, shape[0] if shape else 1)), *shape[1:])


def _json_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in attrs.items()}


@dataclass(frozen=True)
class ZarrTarget:
    path: str  # the store (a directory)
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    dataset: str | None = None  # array path inside the store; None: the store is the array
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def align(self) -> int:
        return self.chunks[0]

    def _kwargs(self) -> dict[str, Any]:
        return {"path": self.dataset.strip("/")} if self.dataset else {}

    def create(self) -> None:
        arr = zarr_module().open_array(
            store=self.path,
            mode="w",
            shape=self.shape,
            chunks=self.chunks,
            dtype=self.dtype,
            **self._kwargs(),
        )
        arr.attrs.update(_json_attrs(self.attrs))

    def open(self) -> ZarrRangeWriter:
        return ZarrRangeWriter(
            zarr_module().open_array(store=self.path, mode="r+", **self._kwargs())
        )


class ZarrRangeWriter:
    def __init__(self, array: Any) -> None:
        self._arr = array

    def write(self, start: int, block: np.ndarray) -> None:
        self._arr[start : start + block.shape[0]] = block

    def close(self) -> None:
        self._arr = None


def zarr_target(
    path: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    like: Any,
    attrs: dict[str, Any],
    rows: int | None = None,
) -> ZarrTarget:
    """The output array, chunked like ``like`` (a source) when it is chunked storage.

    A Zarr input's array keeps its path inside the output store; any other input's output is
    a store that is itself the array.
    """
    chunks = getattr(like, "storage_chunks", None)
    dataset = like.dataset if getattr(like, "format", None) == "zarr" else None
    chunking = output_chunks(shape, dtype, chunks, rows)
    return ZarrTarget(path, shape, dtype.str, chunking, dataset, attrs)


class ZarrWriter:
    """The sequential writer of the local engine (the :class:`normstat.sinks.Writer` shape)."""

    def __init__(
        self,
        tmp_path: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        *,
        dataset: str | None = None,
        like_chunks: tuple[int, ...] | None = None,
        attrs: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        target = ZarrTarget(
            tmp_path,
            tuple(shape),
            np.dtype(dtype).str,
            output_chunks(tuple(shape), np.dtype(dtype), like_chunks),
            dataset,
            attrs or {},
        )
        with interrupts.deferred():
            target.create()
            self._w = target.open()

    def write(self, start: int, block: np.ndarray) -> None:
        # zarr writes on its own event-loop thread: a signal raised while this thread waits
        # would leave that thread writing chunks into the temporary after it is removed. So a
        # block is written whole, and the interrupt is taken at the next check.
        with interrupts.deferred():
            self._w.write(start, block)

    def close(self) -> None:
        self._w.close()


def zarr_writer_options(srcs: list[Any], attrs: dict[str, Any]) -> dict[str, Any]:
    """Options of :class:`ZarrWriter` for the local engine: as :func:`zarr_target` decides."""
    like = srcs[0] if len(srcs) == 1 else None
    return {
        "dataset": srcs[0].dataset if srcs[0].format == "zarr" else None,
        "like_chunks": getattr(like, "storage_chunks", None),
        "attrs": attrs,
    }
