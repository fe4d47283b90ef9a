"""Zarr output: one array in a store, written block by block, or by many processes at once.

Zarr stores every chunk as its own object, so processes that write whole, disjoint chunks never
interfere: that is what lets Dask workers write one output in parallel without a lock. The output
keeps the input's chunking when the input was chunked storage (so a chunk-aligned reader of the
input reads the output the same way); otherwise chunks hold about 16 MiB.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from normstat import interrupts, storage
from normstat.lazy import optional_module
from normstat.sinks import OutputSpec


def zarr_module() -> Any:
    return optional_module("zarr", "zarr", "Zarr stores")


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
    row_bytes = max(int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize, 1)
    n = max(1, OUTPUT_CHUNK_BYTES // row_bytes)
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
    options: tuple[tuple[str, str], ...] = ()  # storage options of a URI store (for workers)

    @property
    def align(self) -> int:
        return self.chunks[0]

    def _kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"path": self.dataset.strip("/")} if self.dataset else {}
        if storage.is_uri(self.path):  # a prefix in a bucket, through zarr's fsspec store
            with storage.using(dict(self.options)):
                kw["storage_options"] = storage.fsspec_options(self.path)
        return kw

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
        release(arr)

    def open(self, start: int = 0) -> ZarrRangeWriter:
        array = zarr_module().open_array(store=self.path, mode="r+", **self._kwargs())
        return ZarrRangeWriter(array, start)


class ZarrRangeWriter:
    def __init__(self, array: Any, start: int) -> None:
        self._arr, self._start = array, start

    def write(self, block: np.ndarray) -> None:
        self._arr[self._start : self._start + block.shape[0]] = block
        self._start += block.shape[0]

    def close(self) -> None:
        release(self._arr)
        self._arr = None


def release(array: Any) -> None:
    """Close the connection pool zarr opened for a store in a bucket: zarr 3 creates its own
    asynchronous s3fs filesystem per store and never closes it, so its HTTP session would be
    reported as unclosed ("Unclosed client session") on stderr when collected."""
    fs: Any = getattr(getattr(array, "store", None), "fs", None)
    creator = getattr(fs, "_s3creator", None)
    if creator is None:
        return
    from zarr.core.sync import sync  # zarr 3: the loop that store's session belongs to

    with contextlib.suppress(Exception):
        sync(creator.__aexit__(None, None, None))
    fs._s3creator = fs._s3 = None


def range_target(path: str, spec: OutputSpec, rows: int | None = None) -> ZarrTarget:
    """The output array, chunked like the one source it is made from when that is chunked
    storage; at most ``rows`` (the read block) per chunk otherwise.

    A Zarr input's array keeps its path inside the output store; any other input's output is
    a store that is itself the array.
    """
    chunks = getattr(spec.like, "storage_chunks", None)
    dataset = spec.dataset if spec.input_format == "zarr" else None
    dtype = np.dtype(spec.dtype)
    chunking = output_chunks(spec.shape, dtype, chunks, rows)
    options = storage.current() if storage.is_uri(path) else ()
    return ZarrTarget(path, tuple(spec.shape), dtype.str, chunking, dataset, spec.attrs(), options)


class ZarrWriter:
    """The sequential writer of the local engine: the parallel target, written by one."""

    def __init__(self, target: str, spec: OutputSpec) -> None:
        out = range_target(target, spec)
        with interrupts.deferred():
            out.create()
            self._w = out.open()

    def write(self, block: np.ndarray) -> None:
        # zarr writes on its own event-loop thread: a signal raised while this thread waits
        # would leave that thread writing chunks into the temporary after it is removed. So a
        # block is written whole, and the interrupt is taken at the next check.
        with interrupts.deferred():
            self._w.write(block)

    def close(self) -> None:
        self._w.close()
