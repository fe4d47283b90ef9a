"""Option types and parsing shared by the use cases: chunk sizes, engines, progress hooks."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from normstat.core.choices import ENGINES, NAN_POLICIES
from normstat.core.stats import Stats
from normstat.errors import UsageError
from normstat.sources import ArraySource
from normstat.sources.base import DEFAULT_CHUNK_BYTES
from normstat.sources.reading import ImageOptions, TableOptions, names, table_options

ChunkSize = int | str | None
"""Rows per chunk (``65536``), a byte budget (``"64MB"``, ``"1GiB"``), or ``None`` (32 MiB)."""


class ProgressHook(Protocol):
    """What fit / apply report to: the total number of samples (None when not known before
    reading, as for CSV and stdin) and the input bytes per sample (when known), then samples as
    they are done.

    A fit of many shards does not open them all before the pass to count their samples: the
    total starts as the first shard's count for each shard not opened yet. A hook that has a
    ``total_changed(total, exact)`` method is told so after ``start`` (``exact`` False) and
    then each correction as shards open, the last with ``exact`` True."""

    def start(self, total: int | None, row_bytes: int = 0) -> None: ...

    def advance(self, n: int) -> None: ...


def reading(
    columns: str | Sequence[str] | None,
    exclude: str | Sequence[str] | None = None,
    column_types: str | Mapping[str, str] | None = None,
    delimiter: str | None = None,
    header: bool = True,
    null_values: str | Sequence[str] | None = None,
) -> tuple[list[str] | None, TableOptions]:
    """The feature columns asked for, and how to read tables; a string of names is split at
    commas (CSV quoting for a name holding one), never iterated by character."""
    table = table_options(exclude, column_types, delimiter, header, null_values)
    return names(columns, "columns"), table


def check_engine(
    engine: str, scheduler: str | None, specs: Sequence[str], checkpoint: str | None = None
) -> None:
    if engine not in ENGINES:
        raise UsageError(f"engine: expected one of {', '.join(ENGINES)}, received {engine!r}")
    if scheduler is not None and engine != "dask":
        raise UsageError("--scheduler needs --engine dask")
    if engine == "dask" and "-" in specs:
        raise UsageError("--engine dask reads files by path; stdin ('-') needs --engine local")
    if engine == "dask" and checkpoint:
        raise UsageError(
            "--checkpoint is for the local engine; Dask re-runs the tasks of a lost worker itself"
        )


def check_checkpoint_every(every: float) -> None:
    if not (isinstance(every, int | float) and math.isfinite(every) and every > 0):
        raise UsageError(
            f"--checkpoint-every must be a positive number of seconds, received {every}"
        )


def check_distributable(srcs: Sequence[ArraySource], engine: str, fit: bool = False) -> None:
    """Dask tasks reopen a source by (path, dataset), or by its ``reference()``; a source
    that says why it cannot be (``local_only``, or for a fit ``local_only_fit``) needs the
    local engine."""
    why = getattr(srcs[0], "local_only", None)
    if fit and hasattr(srcs[0], "local_only_fit"):
        why = srcs[0].local_only_fit
    if engine == "dask" and why:
        raise UsageError(f"{srcs[0].format} sources: {why}; drop --engine dask", path=srcs[0].path)


def task_rows(src: ArraySource, chunk_rows: int, task_size: ChunkSize) -> int:
    """Rows per Dask task: a whole number of chunks near ``task_size`` (default 64 MiB)."""
    from normstat.engine.plan import TASK_BYTES, row_bytes, rows_per_task

    if task_size is None:
        return rows_per_task(chunk_rows, row_bytes(src), TASK_BYTES)
    if isinstance(task_size, int) or str(task_size).strip().isdigit():
        if int(task_size) < 1:
            raise UsageError(f"task_size: expected at least 1 row, received {task_size}")
        return int(task_size)
    m = _SIZE.match(str(task_size))
    if not m:
        raise UsageError(
            f"task_size: expected rows (1000000) or bytes (64MB, 1GiB), received {task_size!r}"
        )
    budget = max(1, int(float(m[1]) * _UNITS[(m[2] or "").lower().rstrip("b")]))
    return rows_per_task(chunk_rows, row_bytes(src), budget)


def row_bytes(src: ArraySource) -> int:
    return int(np.prod(src.shape[1:], dtype=np.int64)) * src.dtype.itemsize


MAX_DDOF = 2**53
"""Past any row count (float64 holds every integer up to it); a larger ddof is a typo."""


def check_options(ddof: Any, nan: Any) -> None:
    from normstat.api.inputs import check_int

    check_int(ddof, "ddof")
    if not 0 <= ddof < MAX_DDOF:
        raise UsageError(f"ddof: expected >= 0 and below 2**53, received {ddof}")
    if nan not in NAN_POLICIES:
        raise UsageError(f"nan: expected one of {', '.join(NAN_POLICIES)}, received {nan!r}")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.I)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}


def chunk_rows(
    src: ArraySource,
    chunk_size: ChunkSize,
    transform: bool = False,
    shards: Sequence[ArraySource] = (),
) -> int:
    """Rows per chunk for ``chunk_size`` (rows, bytes, or the default budget). ``transform``:
    for ``apply``, which holds more per row of a table (every column, and the float64 matrix
    it transforms) than ``fit``, which reads only the feature columns, one at a time.
    ``shards``: the other sources read with these rows, whose storage chunks must fit the same
    budget."""
    size = getattr(src, "transform_rows", src.preferred_rows) if transform else src.preferred_rows
    if chunk_size is None:
        target = DEFAULT_CHUNK_BYTES
    elif isinstance(chunk_size, int) or str(chunk_size).strip().isdigit():
        rows = int(chunk_size)
        if rows < 1:
            raise UsageError(f"chunk_size: expected at least 1 row, received {chunk_size}")
        for s in (src, *shards):
            _check_budget(s, rows * row_bytes(src))
        return rows
    else:
        m = _SIZE.match(str(chunk_size))
        if not m:
            raise UsageError(
                f"chunk_size: expected rows (65536) or bytes (64MB, 1GiB), received {chunk_size!r}"
            )
        unit = (m[2] or "").lower().rstrip("b")
        target = max(1, int(float(m[1]) * _UNITS[unit]))
    for s in (src, *shards):
        _check_budget(s, target)
    return size(target)


STORAGE_CHUNK_BUDGET = 256 * 2**20


def _check_budget(src: ArraySource, chunk_bytes: int) -> None:
    """A source stored in chunks that must be decompressed whole (HDF5, Zarr) refuses storage
    chunks above max(256 MiB, 4 x the chunk size): memory follows the chunk size, not the file."""
    check = getattr(src, "check_budget", None)
    if check is not None:
        check(max(STORAGE_CHUNK_BUDGET, 4 * chunk_bytes))


def float_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        raise UsageError(f"dtype: {dtype!r} is not a numpy dtype") from None
    if dt.kind != "f":
        raise UsageError(f"dtype: expected a floating type (float16/32/64), received {dt}")
    return dt


def apply_columns(stats: Stats, columns: Sequence[str] | None) -> Sequence[str] | None:
    """A table is read by the artifact's feature names (its groups' names, when it has
    groups); ``columns`` may only repeat them."""
    if stats.feature_groups is not None:
        names = [g["name"] for g in stats.feature_groups]
        if columns is not None and list(columns) not in (names, list(stats.features or [])):
            raise UsageError(
                f"columns: {list(columns)} disagree with the feature groups of the statistics "
                f"{names}"
            )
        return names
    if columns is None or stats.features is None:
        return stats.features if columns is None else columns
    if list(columns) != list(stats.features):
        raise UsageError(
            f"columns: {list(columns)} disagree with the features of the statistics "
            f"{stats.features}"
        )
    return columns


def parse_rescale(value: float | str) -> float:
    """``--rescale``: a number or a fraction (``1/255``), non-zero and finite."""
    try:
        if isinstance(value, str) and "/" in value:
            from fractions import Fraction  # only a fraction's text needs it (a CLI start cost)

            scale = float(Fraction(value.strip()))
        else:
            scale = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise UsageError(
            f"--rescale must be a number or a fraction such as 1/255, received {value!r}"
        ) from None
    if not scale or not np.isfinite(scale):
        raise UsageError(f"--rescale must be non-zero and finite, received {value!r}")
    return scale


IMAGE_KEYS = ("mode", "resize", "center_crop", "skip_bad")


def image_options(
    options: ImageOptions | Mapping[str, Any] | None, workers: int | None = None
) -> ImageOptions:
    """``options`` (a mapping of :data:`IMAGE_KEYS`, or the value itself) as one checked
    :class:`ImageOptions`, with the decoding processes ``workers``; None values are unset."""
    if isinstance(options, ImageOptions):
        given: dict[str, Any] = {k: getattr(options, k) for k in IMAGE_KEYS}
    elif options is None or isinstance(options, Mapping):
        given = {k: v for k, v in (options or {}).items() if v is not None}
    else:
        raise UsageError(f"options must be a mapping of {list(IMAGE_KEYS)}, received {options!r}")
    unknown = sorted(set(given) - set(IMAGE_KEYS))
    if unknown:
        raise UsageError(f"options {unknown} are not reader options; known: {list(IMAGE_KEYS)}")
    mode = given.get("mode", "RGB")
    if not isinstance(mode, str) or not mode:
        raise UsageError(f"options['mode'] must be a Pillow mode name, received {mode!r}")
    resize = given.get("resize")
    if resize is not None and not _positive_int(resize):
        raise UsageError(f"options['resize'] must be a positive integer, received {resize!r}")
    crop = given.get("center_crop")
    if crop is not None:
        pair = (crop, crop) if _positive_int(crop) else crop
        if not (isinstance(pair, Sequence) and len(pair) == 2 and all(map(_positive_int, pair))):
            raise UsageError(
                "options['center_crop'] must be a positive integer or a pair (h, w) of them, "
                f"received {crop!r}"
            )
        crop = (int(pair[0]), int(pair[1]))
    skip_bad = given.get("skip_bad", False)
    if not isinstance(skip_bad, bool | np.bool_):
        raise UsageError(f"options['skip_bad'] must be True or False, received {skip_bad!r}")
    if workers is not None and not (_positive_int(workers)):
        raise UsageError(f"workers must be a positive integer, received {workers!r}")
    return ImageOptions(mode, resize, crop, bool(skip_bad), workers)


def _positive_int(v: Any) -> bool:
    return bool(isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0)


def plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple | list) else v
