"""Writing only: atomic outputs, one writer per format family, stdout streams.

Writers share one shape: ``Writer(tmp_path, shape, dtype, **options)``, then ``write(start,
block)`` for consecutive row blocks, then ``close()``. Format modules are imported lazily.
"""

from __future__ import annotations

import importlib
import os
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

from normstat.sinks.atomic import atomic_output, check_writable
from normstat.sinks.directory import atomic_directory

__all__ = [
    "ARRAY_WRITERS",
    "Writer",
    "atomic_directory",
    "atomic_output",
    "atomic_output_for",
    "check_writable",
    "open_array_writer",
    "writer_format",
]


class Writer(Protocol):
    def write(self, start: int, block: np.ndarray) -> None: ...

    def close(self) -> None: ...


# (name, suffixes, module, class): the output formats for arrays.
ARRAY_WRITERS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("hdf5", (".h5", ".hdf5", ".he5"), "normstat.sinks.hdf5", "Hdf5Writer"),
    ("npy", (".npy",), "normstat.sinks.npy", "NpyWriter"),
    ("zarr", (".zarr",), "normstat.sinks.zarr", "ZarrWriter"),
)

DIRECTORY_FORMATS: tuple[str, ...] = ("zarr",)
"""Output formats stored as a directory rather than one file."""


def atomic_output_for(path: str, fmt: str) -> AbstractContextManager[str]:
    """The atomic temporary for ``fmt``: a directory for Zarr stores, else a file."""
    return atomic_directory(path) if fmt in DIRECTORY_FORMATS else atomic_output(path)


def writer_format(out: str, input_format: str) -> str:
    """OUT's suffix names the output format; an unknown suffix keeps the input's format."""
    suffix = os.path.splitext(out.rstrip("/"))[1].lower()
    for name, suffixes, _, _ in ARRAY_WRITERS:
        if suffix in suffixes:
            return name
    return input_format


def open_array_writer(
    fmt: str, tmp_path: str, shape: tuple[int, ...], dtype: np.dtype, **options: Any
) -> Writer:
    for name, _, module, cls in ARRAY_WRITERS:
        if name == fmt:
            return getattr(importlib.import_module(module), cls)(tmp_path, shape, dtype, **options)
    raise ValueError(f"no array writer for {fmt!r}")
