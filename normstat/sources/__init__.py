"""Reading only: a table of formats, and the function that opens SOURCE arguments.

Formats are a closed, small set, so they are a table (name, suffixes, module, class), not a plugin
system. A format's module is imported only when a file of that format is opened, so
``import normstat`` does not pay for h5py or pyarrow.
"""

from __future__ import annotations

import functools
import glob
import importlib
import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from normstat import storage
from normstat.errors import DataError, UsageError
from normstat.sources import shards
from normstat.sources.base import ArraySource, Chunk, check_sample_shape, describe
from normstat.sources.reading import ImageOptions, TableOptions

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

__all__ = [
    "FORMATS",
    "ArraySource",
    "Chunk",
    "Format",
    "ImageOptions",
    "TableOptions",
    "describe",
    "format_of",
    "open_sources",
    "read_ahead",
    "rows_so_far",
    "settle",
]

read_ahead = shards.read_ahead
rows_so_far = shards.rows_so_far


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
    many: bool = False  # one reader takes every file of this format given (images, tar shards)


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
    Format("images", IMAGE_SUFFIXES, _SRC + "images", "ImageFiles", many=True),
    Format("webdataset", (".tar",), _SRC + "webdataset", "TarShards", many=True),
    Format("zip-images", (".zip",), _SRC + "zip_images", "ZipImages", many=True),
    # a Parquet / Arrow column of encoded images, chosen by --columns (no suffix of its own)
    Format("image-column", (), _SRC + "image_column", "ImageColumn", many=True),
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
    if storage.is_uri(path):
        path = storage.shown(path)  # a URL's query string is not its suffix
    suffix = os.path.splitext(path.rstrip("/"))[1].lower()
    for f in FORMATS:
        if suffix in f.suffixes:
            return f
    raise UsageError(
        f"cannot tell the format from the suffix {suffix!r}; known: {_known()}", path=path
    )


def _expand(spec: str) -> list[tuple[str, str | None]]:
    """One SOURCE argument -> [(path, dataset)]: ``file.h5:/name`` and globs are understood."""
    if storage.is_uri(spec):
        return _expand_uri(spec)
    if os.path.isdir(spec) and not _is_store(spec):
        from normstat.sources import hf_disk

        if hf_disk.is_saved_dataset(spec):  # Dataset.save_to_disk: its state.json lists the files
            return [(p, None) for p in hf_disk.data_files(spec)]
        return [(p, None) for p in _table_files(spec)]
    if spec == "-" or os.path.exists(spec):
        return [(spec, None)]
    m = _DATASET_SUFFIX.match(spec)
    if m:
        return [(p, m["dataset"]) for p in _expand_glob(m["path"])]
    return [(p, None) for p in _expand_glob(spec)]


def _expand_uri(spec: str) -> list[tuple[str, str | None]]:
    """A URI: an object, a glob of objects, or a prefix of table / tar / image objects."""
    m = _DATASET_SUFFIX.match(spec)
    path, dataset = (m["path"], m["dataset"]) if m else (spec, None)
    if storage.scheme(path) in storage.READ_ONLY:
        return [(path, dataset)]  # a URL names one file ('?' starts its query)
    if storage.has_magic(path):
        matches = storage.glob(path)
        if not matches:
            raise DataError("no object matches this pattern", path=storage.shown(path))
        return [(p, dataset) for p in matches]
    if dataset is None and not _is_store(path) and storage.is_dir(path):
        return [(p, None) for p in _data_files(storage.files_under(path), path)]
    return [(path, dataset)]


def _is_store(path: str) -> bool:
    """A directory that is one array (a Zarr store), not a directory of table files."""
    name = path.rstrip("/").lower()
    return any(name.endswith(s) for f in FORMATS if f.directory for s in f.suffixes)


def _table_files(directory: str) -> list[str]:
    """A directory is a sharded table, a folder of images or of tar shards: its data files,
    recursively, in name order (hidden entries and writers' ``_SUCCESS`` / ``_metadata`` /
    ``_temporary`` are not data)."""
    found = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        found += [os.path.join(root, name) for name in names]
    return _data_files(found, directory)


def _data_files(found: list[str], directory: str) -> list[str]:
    """The data files among ``found`` (every file below ``directory``), in name order."""
    suffixes = tuple(s for f in FORMATS if f.kind == "table" or f.many for s in f.suffixes)
    below = [p[len(directory.rstrip("/")) :] for p in found]
    found = [
        p
        for p, rel in zip(found, below, strict=True)
        if p.lower().endswith(suffixes) and not re.search(r"/[._]", rel.replace(os.sep, "/"))
    ]
    if not found:
        raise DataError(
            f"no data file ({' '.join(suffixes)}) in this directory",
            path=storage.shown(directory),
        )
    tables = tuple(s for f in FORMATS if f.kind == "table" for s in f.suffixes)
    if any(p.lower().endswith(tables) for p in found):  # a table's folder: a stray PNG is not data
        found = [p for p in found if p.lower().endswith(tables)]
    return sorted(found)


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
    table: TableOptions | None = None,
    allow_external: bool = False,
    whole: bool = False,
) -> ArraySource:
    """One source. ``allow_external``: an HDF5 dataset may read files outside its file's
    directory (external storage, external links, virtual datasets). ``whole``: a small file of
    a format that can is read whole now (a shard opened ahead of the pass: NPY, Parquet)."""
    table = table or TableOptions()
    if path == "-":
        if input_format is None:
            raise UsageError("reading stdin ('-') needs --input-format")
        fmt = format_of(path, input_format)
        if fmt.stream_reader is None:
            raise UsageError(f"--input-format {fmt.name} cannot be read from stdin")
        cls = getattr(importlib.import_module(fmt.module), fmt.stream_reader)
        _check_table_options(fmt, table, path)
        if fmt.kind == "table":
            return cls(columns, options=table)
        return _array_only(cls(), columns)
    fmt = format_of(path, None if input_format is None else input_format)
    if os.path.isdir(path) and not fmt.directory:
        raise DataError("is a directory, expected a file", path=path)
    _check_table_options(fmt, table, path)
    cls = getattr(importlib.import_module(fmt.module), fmt.reader)
    more = {"whole": True} if whole and fmt.name in _LAZY_FORMATS else {}
    if fmt.kind == "table":
        if dataset is not None:
            raise UsageError(f"--dataset applies to HDF5 and Zarr only, not {fmt.name}", path=path)
        return cls(path, columns, table, **more)
    if fmt.name == "hdf5":
        return _array_only(cls(path, dataset, allow_external), columns)
    if fmt.named_arrays:
        return _array_only(cls(path, dataset), columns)
    if dataset is not None:
        raise UsageError(f"--dataset applies to HDF5 and Zarr only, not {fmt.name}", path=path)
    return _array_only(cls(path, **more), columns)


def _check_table_options(fmt: Format, table: TableOptions, path: str) -> None:
    if fmt.kind != "table" and table.exclude:
        raise UsageError(
            f"--exclude applies to tables (parquet, arrow, feather, csv), not {fmt.name}",
            path=path,
        )
    if fmt.name != "csv" and not table.is_csv_default():
        raise UsageError(
            "--column-types, --delimiter, --no-header and --null-values apply to CSV only, "
            f"not {fmt.name}",
            path=path,
        )


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
    table: TableOptions | None = None,
    allow_overlap: bool = False,
    allow_external: bool = False,
    images: ImageOptions | None = None,
    lazy: bool = False,
) -> list[ArraySource]:
    """Open every shard; they must agree on the shape of one sample (tables: on the feature
    columns and their types, integers and floats of different widths promoted), and no file may
    be read twice (unless ``allow_overlap``). Brace ranges are expanded
    (``shards-{000..099}.tar``).

    Files of a format that reads many files as one dataset (images, tar shards) become one
    source per run of such files, read with ``images`` (how images are decoded).

    ``lazy``: only the first source is opened here; a further shard of a one-file format is a
    :class:`~normstat.sources.shards.LazyShard`, opened and checked when first used or ahead of
    the pass (:func:`read_ahead`); :func:`settle` opens the rest and promotes table types.
    """
    if not specs:
        raise UsageError("no SOURCE given")
    images = images or ImageOptions()
    items = [(p, ds, one) for spec in specs for one in _braces(spec) for p, ds in _expand(one)]
    opened: list[ArraySource] = []
    seen: dict[tuple[Any, Any, str | None], str] = {}
    group = shards.new_group() if lazy else None
    try:
        for fmt, run in itertools.groupby(
            items, key=lambda it: _many(it[0], it[1], input_format, columns)
        ):
            if fmt is None:
                for path, ds, _ in run:
                    _no_options(path, images)
                    if ds and dataset and ds.strip("/") != dataset.strip("/"):
                        raise UsageError(
                            f"the dataset is named twice: {path}:{ds} and --dataset {dataset}; "
                            "name it once",
                            path=path,
                        )
                    if not allow_overlap:
                        _check_not_seen(path, ds or dataset, seen)
                    args = (path, ds or dataset, input_format, columns, table, allow_external)
                    if group is not None and opened and _can_wait(path, input_format):
                        opener = functools.partial(_open_checked, opened[0], *args)
                        opened.append(shards.LazyShard(group, path, ds or dataset, opener))
                        continue
                    opened.append(_open_checked(opened[0] if opened else None, *args))
                continue
            many = list(run)
            cls = getattr(importlib.import_module(fmt.module), fmt.reader)
            paths = [p for p, _, _ in many]
            roots = [_root(one, p) for p, _, one in many]
            specs_ = list(dict.fromkeys(one for _, _, one in many))
            opened.append(cls(paths, roots, specs_, images, columns))
            _check_agrees(opened[0], opened[-1])
        if not shards.any_lazy(opened):
            _promote(opened)
    except BaseException:
        for s in opened:
            s.close()
        raise
    return opened


def _open_checked(
    first: ArraySource | None,
    path: str,
    dataset: str | None,
    input_format: str | None,
    columns: Sequence[str] | None,
    table: TableOptions | None,
    allow_external: bool,
    whole: bool = False,
) -> ArraySource:
    """One shard opened and checked against the ``first`` (closed again if it disagrees)."""
    src = open_one(path, dataset, input_format, columns, table, allow_external, whole)
    try:
        if src.kind == "array":
            check_sample_shape(tuple(src.shape), src.path, src.dataset)
        if first is not None:
            _check_agrees(first, src)
    except BaseException:
        src.close()
        raise
    return src


def _can_wait(path: str, input_format: str | None) -> bool:
    """A shard that may be opened later (during the pass): nothing about it is checked up front
    but its identity (the same file twice)."""
    if path == "-":
        return False
    try:
        fmt = format_of(path, input_format)
    except UsageError:
        return False  # open_one names the unknown suffix now
    return fmt.name in _LAZY_FORMATS


_LAZY_FORMATS = frozenset({"npy", "parquet"})
"""Readers with neither ``files()`` nor ``check_budget`` (shards.ABSENT): Arrow IPC files check
their batches' decoded size up front, HDF5 its external files."""


def settle(opened: list[ArraySource]) -> None:
    """Every shard opened, in order (the first failure raised), each lazy shard replaced by
    its source, and table types promoted across shards: before what needs every shard (a Dask
    plan, a checkpoint, a progress total) or after the pass (the record of what was read)."""
    if shards.any_lazy(opened):
        shards.settle(opened)
        _promote(opened)


def _check_not_seen(
    path: str, dataset: str | None, seen: dict[tuple[Any, Any, str | None], str]
) -> None:
    """The same file (same device and inode, whatever the path) twice would count its rows
    twice."""
    if path == "-":
        return
    if storage.is_uri(path):
        ident: tuple[Any, Any] = ("uri", storage.shown(path))
    else:
        st = os.stat(path)
        ident = (st.st_dev, st.st_ino)
    key = (*ident, dataset.strip("/") if dataset else None)
    if key in seen:
        raise UsageError(
            f"is the same file as {seen[key]}: its rows would be counted twice "
            "(--allow-overlap reads it twice anyway)",
            path=path,
        )
    seen[key] = path


def _promote(opened: list[ArraySource]) -> None:
    """Table shards whose feature columns differ only in width (int32 / int64, float32 /
    float64, int / float) share the widest type; the chunks are float64 anyway."""
    if len(opened) > 1 and opened[0].kind == "table":
        from normstat.sources.table import promote_shards

        promote_shards(opened)  # type: ignore[arg-type]


def _many(
    path: str, dataset: str | None, input_format: str | None, columns: Sequence[str] | None
) -> Format | None:
    """The format of ``path`` if one reader takes all its files (images, tar shards, a table
    read for its one column of encoded images)."""
    if path == "-" or dataset is not None:
        return None
    try:
        fmt = format_of(path, input_format)
    except UsageError:
        return None  # open_one names the unknown suffix
    if fmt.many:
        return fmt
    if fmt.kind == "table" and fmt.name != "csv" and columns is not None and len(columns) == 1:
        from normstat.sources.image_column import is_image_column

        if is_image_column(path, fmt.name, columns[0]):
            return format_of(path, "image-column")
    return None


def _no_options(path: str, images: ImageOptions) -> None:
    if not images.is_default():
        raise UsageError(
            "image options (mode, resize, center_crop, skip_bad) apply to images, tar shards "
            "and image columns only",
            path=path,
        )


def _root(spec: str, path: str) -> str:
    """The folder an image's class is named below: the SOURCE folder, a glob's fixed leading
    folders, else the file's grandparent (so the class is its parent folder)."""
    if os.path.isdir(spec):
        return spec
    if glob.has_magic(spec):
        fixed = []
        for part in spec.split(os.sep):
            if glob.has_magic(part):
                break
            fixed.append(part)
        return os.sep.join(fixed) or "."
    return os.path.dirname(os.path.dirname(os.path.abspath(path)))


_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def _braces(spec: str) -> list[str]:
    """Shell brace expansion: ``{000..099}`` (zero-padded as written) and ``{a,b}``."""
    m = _BRACE.search(spec)
    if m is None or os.path.exists(spec):
        return [spec]
    r = _RANGE.match(m[1])
    if r:
        a, b = int(r[1]), int(r[2])
        width = max(len(r[1]), len(r[2])) if r[1].startswith("0") or r[2].startswith("0") else 0
        step = 1 if b >= a else -1
        values = [str(v).zfill(width) for v in range(a, b + step, step)]
    elif "," in m[1]:
        values = m[1].split(",")
    else:
        return [spec]
    return [x for v in values for x in _braces(spec[: m.start()] + v + spec[m.end() :])]


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
