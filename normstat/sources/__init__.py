"""Reading only: a table of formats, and the function that opens SOURCE arguments.

Formats are a closed, small set, so they are a table (name, suffixes, module, class), not a plugin
system. A format's module is imported only when a file of that format is opened, so
``import normstat`` does not pay for h5py or pyarrow.
"""

from __future__ import annotations

import glob
import importlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from normstat.errors import DataError, UsageError
from normstat.sources.base import ArraySource, Chunk, describe

__all__ = ["FORMATS", "ArraySource", "Chunk", "Format", "describe", "format_of", "open_sources"]


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    module: str
    reader: str  # class in ``module`` taking (path, dataset), or (path, columns) for tables
    stream_reader: str | None = None  # class reading the format from stdin
    named_arrays: bool = False  # holds several arrays, chosen by ``file:/name`` or --dataset
    directory: bool = False  # stored as a directory (a Zarr store), not one file
    kind: str = "array"  # "table": features are named columns


_SRC = "normstat.sources."
FORMATS: tuple[Format, ...] = (
    Format("hdf5", (".h5", ".hdf5", ".he5"), "normstat.sources.hdf5", "Hdf5Dataset", None, True),
    Format("npy", (".npy",), "normstat.sources.npy", "NpyFile", "NpyStream"),
    Format("zarr", (".zarr",), "normstat.sources.zarr", "ZarrArray", None, True, True),
    Format("parquet", (".parquet", ".pq"), _SRC + "parquet", "ParquetFile", kind="table"),
    Format(
        "arrow", (".arrow", ".ipc", ".arrows"), _SRC + "ipc", "IpcFile", "IpcStream", kind="table"
    ),
    Format("feather", (".feather",), _SRC + "ipc", "IpcFile", kind="table"),
    Format("csv", (".csv",), _SRC + "csv", "CsvFile", "CsvStream", kind="table"),
)

_DATASET_SUFFIX = re.compile(r"^(?P<path>.+\.(?:h5|hdf5|he5|zarr)):(?P<dataset>/?[^:]*)$", re.I)


def _known() -> str:
    return ", ".join(f"{f.name} ({' '.join(f.suffixes)})" for f in FORMATS)


def format_of(path: str, input_format: str | None = None) -> Format:
    """The format named by ``input_format``, else guessed from the suffix; else a clear error."""
    if input_format is not None:
        for f in FORMATS:
            if f.name == input_format:
                return f
        raise UsageError(f"unknown --input-format {input_format!r}; known: {_known()}")
    suffix = os.path.splitext(path.rstrip("/"))[1].lower()
    for f in FORMATS:
        if suffix in f.suffixes:
            return f
    raise UsageError(
        f"cannot tell the format from the suffix {suffix!r}; known: {_known()}", path=path
    )


def _expand(spec: str) -> list[tuple[str, str | None]]:
    """One SOURCE argument -> [(path, dataset)]: ``file.h5:/name`` and globs are understood."""
    if os.path.isdir(spec) and not _is_store(spec):
        return [(p, None) for p in _table_files(spec)]
    if spec == "-" or os.path.exists(spec):
        return [(spec, None)]
    m = _DATASET_SUFFIX.match(spec)
    if m:
        return [(p, m["dataset"]) for p in _expand_glob(m["path"])]
    return [(p, None) for p in _expand_glob(spec)]


def _is_store(path: str) -> bool:
    """A directory that is one array (a Zarr store), not a directory of table files."""
    name = path.rstrip("/").lower()
    return any(name.endswith(s) for f in FORMATS if f.directory for s in f.suffixes)


def _table_files(directory: str) -> list[str]:
    """A directory is a sharded table: its table files, recursively, in name order (hidden files
    and directories, and writers' ``_SUCCESS`` / ``_metadata`` / ``_temporary`` are not data)."""
    suffixes = tuple(s for f in FORMATS if f.kind == "table" for s in f.suffixes)
    found = []
    for root, dirs, names in os.walk(directory):
        # hidden and underscore directories are writers' temporaries (Spark's _temporary/,
        # normstat's .NAME.normstat-PID.tmp/), not shards: pruned, as pyarrow.dataset does
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        found += [
            os.path.join(root, name)
            for name in names
            if name.lower().endswith(suffixes) and not name.startswith((".", "_"))
        ]
    found.sort()
    if not found:
        raise DataError(f"no table file ({' '.join(suffixes)}) in this directory", path=directory)
    return found


def _expand_glob(pattern: str) -> list[str]:
    if glob.has_magic(pattern):
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise DataError("no file matches this pattern", path=pattern)
        return matches
    if not os.path.exists(pattern):
        raise DataError("no such file", path=pattern)
    return [pattern]


def open_one(
    path: str,
    dataset: str | None,
    input_format: str | None = None,
    columns: Sequence[str] | None = None,
) -> ArraySource:
    if path == "-":
        if input_format is None:
            raise UsageError("reading stdin ('-') needs --input-format")
        fmt = format_of(path, input_format)
        if fmt.stream_reader is None:
            raise UsageError(f"--input-format {fmt.name} cannot be read from stdin")
        cls = getattr(importlib.import_module(fmt.module), fmt.stream_reader)
        return cls(columns) if fmt.kind == "table" else _array_only(cls(), columns)
    fmt = format_of(path, None if input_format is None else input_format)
    if os.path.isdir(path) and not fmt.directory:
        raise DataError("is a directory, expected a file", path=path)
    cls = getattr(importlib.import_module(fmt.module), fmt.reader)
    if fmt.kind == "table":
        if dataset is not None:
            raise UsageError(f"--dataset applies to HDF5 and Zarr only, not {fmt.name}", path=path)
        return cls(path, columns)
    if fmt.named_arrays:
        return _array_only(cls(path, dataset), columns)
    if dataset is not None:
        raise UsageError(f"--dataset applies to HDF5 and Zarr only, not {fmt.name}", path=path)
    return _array_only(cls(path), columns)


def _array_only(src: ArraySource, columns: Sequence[str] | None) -> ArraySource:
    if columns is not None:
        src.close()
        raise UsageError(
            f"columns {list(columns)} were asked for, but a {src.format} array has no named "
            "columns (--columns applies to parquet, arrow, feather and csv)",
            path=src.path,
        )
    return src


def open_sources(
    specs: Sequence[str],
    dataset: str | None = None,
    input_format: str | None = None,
    columns: Sequence[str] | None = None,
) -> list[ArraySource]:
    """Open every shard; they must agree on the shape of one sample (tables: on the feature
    columns and their types)."""
    if not specs:
        raise UsageError("no SOURCE given")
    opened: list[ArraySource] = []
    try:
        for spec in specs:
            for path, ds in _expand(spec):
                src = open_one(path, ds or dataset, input_format, columns)
                opened.append(src)
                _check_agrees(opened[0], src)
    except BaseException:
        for s in opened:
            s.close()
        raise
    return opened


def _check_agrees(first: ArraySource, other: ArraySource) -> None:
    if first is other:
        return
    if first.kind != other.kind:
        raise DataError(
            f"is {other.kind} data ({other.format}), but the first shard {first.path} is a "
            f"{first.kind} ({first.format})",
            path=other.path,
        )
    if first.kind == "table":
        from normstat.sources.table import disagreement

        why = disagreement(first, other)  # type: ignore[arg-type]
        if why is not None:
            raise DataError(f"{why}; shards must agree on feature columns", path=other.path)
        return
    if tuple(first.shape[1:]) != tuple(other.shape[1:]):
        raise DataError(
            f"sample shape {list(other.shape[1:])} disagrees with {list(first.shape[1:])} of "
            f"the first shard {first.path}",
            path=other.path,
            dataset=other.dataset,
        )
