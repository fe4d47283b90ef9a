"""Writing only: the table of output formats, atomic outputs, one writer per format family.

Outputs are a closed, small set, so they are a table (as inputs are, in
:data:`normstat.sources.FORMATS`), and one resolver, :func:`output_format`, decides the format of
OUT for every engine and every kind of input. Every writer has one sequential shape:
``Writer(target, spec)``, then ``write(item)`` for each item in order (a block of rows for an
array file, its start tracked inside; a record batch for a table file), then ``close()``. Format
modules are imported lazily, when a file of that format is written.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from normstat import storage
from normstat.errors import UsageError
from normstat.sinks.atomic import atomic_output, check_writable
from normstat.sinks.directory import atomic_directory

__all__ = [
    "OUTPUTS",
    "OutputFormat",
    "OutputSpec",
    "RangeTarget",
    "Writer",
    "atomic_directory",
    "atomic_output",
    "atomic_output_for",
    "check_writable",
    "open_writer",
    "output_format",
    "range_target",
]


class Writer(Protocol):
    """Items in order: blocks of rows (array files) or record batches (table files)."""

    def write(self, item: Any) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class OutputFormat:
    name: str
    suffixes: tuple[str, ...]
    module: str
    writer: str  # class in ``module`` taking (target, OutputSpec)
    kinds: tuple[str, ...]  # what it holds: "array" (a matrix of samples), "table" (columns)
    directory: bool = False  # stored as a directory (a Zarr store), not one file
    parallel: str | None = None  # "ranges": workers write row ranges of one output (a
    # ``range_target`` factory in ``module``); "whole": one worker writes a whole file; None: no
    stream: str | None = None  # class writing the format to stdout (``-o -``)
    encodes: bool = False  # its writer encodes the values (a busy thread: apply leaves it a core)


_S = "normstat.sinks."
# fmt: off
OUTPUTS: tuple[OutputFormat, ...] = (
    OutputFormat("hdf5", (".h5", ".hdf5", ".he5"), _S + "hdf5", "Hdf5Writer", ("array",)),
    OutputFormat("npy", (".npy",), _S + "npy", "NpyWriter", ("array",),
                 parallel="ranges", stream="NpyStreamWriter"),
    OutputFormat("zarr", (".zarr",), _S + "zarr", "ZarrWriter", ("array",),
                 directory=True, parallel="ranges"),
    OutputFormat("parquet", (".parquet", ".pq"), _S + "table", "ParquetTableWriter", ("table",),
                 parallel="whole", encodes=True),
    OutputFormat("arrow", (".arrow", ".ipc", ".arrows"), _S + "table", "IpcTableWriter",
                 ("table",), parallel="whole", stream="IpcStreamWriter"),
    OutputFormat("feather", (".feather",), _S + "table", "IpcTableWriter", ("table",),
                 parallel="whole"),
    OutputFormat("csv", (".csv",), _S + "table", "CsvTableWriter", ("table",), parallel="whole",
                 encodes=True),
)
# fmt: on
"""A table's feature columns can also go to an array format, as a (rows, features) matrix: the
reader then yields that matrix, so no writer converts one item into the other."""


def _known(kind: str | None = None) -> str:
    return ", ".join(
        f"{f.name} ({' '.join(f.suffixes)})"
        for f in OUTPUTS
        if kind is None or kind == "table" or kind in f.kinds
    )


def named_by_suffix(out: str) -> OutputFormat | None:
    """The output format OUT's suffix names, or ``None``."""
    suffix = os.path.splitext(out.rstrip("/"))[1].lower()
    return next((f for f in OUTPUTS if suffix in f.suffixes), None)


def output_format(
    out: str, input_format: str, kind: str, output_format: str | None = None
) -> OutputFormat:
    """THE resolver: ``output_format`` by name, else OUT's suffix, else the input's format
    (``-``: the stream format of ``kind``); then refuse what cannot hold ``kind`` data.

    A table goes to a table format whole, or to an array format as the matrix of its feature
    columns; an array goes to array formats only."""
    if output_format is not None:
        fmt = next((f for f in OUTPUTS if f.name == output_format), None)
        if fmt is None:
            raise UsageError(f"unknown --output-format {output_format!r}; known: {_known()}")
    elif out == "-":
        fmt = next(f for f in OUTPUTS if f.stream and kind in f.kinds)
    else:
        fmt = named_by_suffix(out) or next((f for f in OUTPUTS if f.name == input_format), None)
        if fmt is None:
            raise UsageError(
                f"cannot tell the output format from OUT; known: {_known(kind)}", path=out
            )
    if kind not in fmt.kinds and kind != "table":
        raise UsageError(
            f"{kind} data cannot be written as {fmt.name}; it can be written as {_known(kind)}",
            path=out,
        )
    if out == "-" and fmt.stream is None:
        streams = ", ".join(f.name for f in OUTPUTS if f.stream)
        raise UsageError(f"{fmt.name} cannot be written to stdout ('-'); can: {streams}")
    return fmt


@dataclass(frozen=True)
class OutputSpec:
    """What a writer needs to create its output: rows x sample shape and dtype (array files),
    the schema (table files), and what the output is made from (to keep its layout)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    schema: Any = None  # pyarrow.Schema of a table output
    like: Any = None  # the one source the output is made from, else None
    dataset: str | None = None  # the first source's dataset (kept inside HDF5 / Zarr outputs)
    input_format: str | None = None
    attrs: Callable[[], dict[str, Any]] = field(default=dict)  # called by formats that keep them


def open_writer(fmt: OutputFormat, target: str, spec: OutputSpec) -> Writer:
    """The sequential writer of ``fmt`` on ``target`` (``-``: stdout)."""
    cls = fmt.stream if target == "-" else fmt.writer
    assert cls is not None
    return getattr(importlib.import_module(fmt.module), cls)(target, spec)


class RangeTarget(Protocol):
    """An output many processes fill at once, each writing its own rows.

    The client ``create()``s it empty (header, metadata), then each task ``open(start)``s it
    where it runs and writes its rows from ``start`` in order. Tasks own disjoint row ranges
    that start on multiples of ``align`` rows, so no two processes ever touch the same storage
    block, and a task re-run after its worker died rewrites exactly the same bytes. A small
    picklable value: it travels to the workers.
    """

    path: str
    shape: tuple[int, ...]

    @property
    def align(self) -> int: ...

    def create(self) -> None: ...

    def open(self, start: int = 0) -> Writer: ...


def range_target(
    fmt: OutputFormat, path: str, spec: OutputSpec, rows: int | None = None
) -> RangeTarget:
    """The parallel-writable output of ``fmt`` at ``path`` (absolute, for workers); ``rows``
    is the read block, a bound on the output's chunk rows (Zarr)."""
    if fmt.parallel != "ranges":
        known = ", ".join(f.name for f in OUTPUTS if f.parallel == "ranges")
        raise UsageError(
            f"{fmt.name} output cannot be written by parallel workers (can: {known}); "
            "use --engine local",
            path=path,
        )
    make = importlib.import_module(fmt.module).range_target
    return make(path if storage.is_uri(path) else os.path.abspath(path), spec, rows)


def atomic_output_for(path: str, fmt: str) -> AbstractContextManager[str]:
    """The atomic temporary for ``fmt``: a directory for Zarr stores, else a file."""
    directory = any(f.directory for f in OUTPUTS if f.name == fmt)
    return atomic_directory(path) if directory else atomic_output(path)
