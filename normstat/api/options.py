"""Option types and parsing shared by the use cases: chunk sizes, engines, progress hooks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from normstat.core.choices import ENGINES, NAN_POLICIES
from normstat.core.stats import Stats
from normstat.errors import UsageError
from normstat.sources import ArraySource
from normstat.sources.base import DEFAULT_CHUNK_BYTES

ChunkSize = int | str | None
"""Rows per chunk (``65536``), a byte budget (``"64MB"``, ``"1GiB"``), or ``None`` (32 MiB)."""


class ProgressHook(Protocol):
    """What fit / apply report to: the total number of samples (None when not known before
    reading, as for CSV and stdin) and the input bytes per sample (when known), then samples as
    they are done."""

    def start(self, total: int | None, row_bytes: int = 0) -> None: ...

    def advance(self, n: int) -> None: ...


def check_engine(
    engine: str, scheduler: str | None, specs: Sequence[str], checkpoint: str | None = None
) -> None:
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, received {engine!r}")
    if scheduler is not None and engine != "dask":
        raise UsageError("--scheduler needs --engine dask")
    if engine == "dask" and "-" in specs:
        raise UsageError("--engine dask reads files by path; stdin ('-') needs --engine local")
    if engine == "dask" and checkpoint:
        raise UsageError(
            "--checkpoint is for the local engine; Dask re-runs the tasks of a lost worker itself"
        )


def task_rows(src: ArraySource, chunk_rows: int, task_size: ChunkSize) -> int:
    """Rows per Dask task: a whole number of chunks near ``task_size`` (default 64 MiB)."""
    from normstat.engine.plan import TASK_BYTES, row_bytes, rows_per_task

    if task_size is None:
        return rows_per_task(chunk_rows, row_bytes(src), TASK_BYTES)
    if isinstance(task_size, int) or str(task_size).strip().isdigit():
        if int(task_size) < 1:
            raise UsageError(f"--task-size must be at least 1 row, received {task_size}")
        return int(task_size)
    m = _SIZE.match(str(task_size))
    if not m:
        raise UsageError(
            f"--task-size must be rows (1000000) or bytes (64MB, 1GiB), received {task_size!r}"
        )
    budget = max(1, int(float(m[1]) * _UNITS[(m[2] or "").lower().rstrip("b")]))
    return rows_per_task(chunk_rows, row_bytes(src), budget)


def row_bytes(src: ArraySource) -> int:
    return int(np.prod(src.shape[1:], dtype=np.int64)) * src.dtype.itemsize


def check_options(ddof: int, nan: str) -> None:
    if ddof < 0:
        raise UsageError(f"--ddof must be >= 0, received {ddof}")
    if nan not in NAN_POLICIES:
        raise UsageError(f"--nan must be one of {', '.join(NAN_POLICIES)}, received {nan!r}")


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


def chunk_rows(src: ArraySource, chunk_size: ChunkSize, transform: bool = False) -> int:
    """Rows per chunk for ``chunk_size`` (rows, bytes, or the default budget). ``transform``:
    for ``apply``, which holds more per row of a table (every column, and the float64 matrix
    it transforms) than ``fit``, which reads only the feature columns, one at a time."""
    size = getattr(src, "transform_rows", src.preferred_rows) if transform else src.preferred_rows
    if chunk_size is None:
        return size(DEFAULT_CHUNK_BYTES)
    if isinstance(chunk_size, int) or str(chunk_size).strip().isdigit():
        rows = int(chunk_size)
        if rows < 1:
            raise UsageError(f"--chunk-size must be at least 1 row, received {chunk_size}")
        return rows
    m = _SIZE.match(str(chunk_size))
    if not m:
        raise UsageError(
            f"--chunk-size must be rows (65536) or bytes (64MB, 1GiB), received {chunk_size!r}"
        )
    unit = (m[2] or "").lower().rstrip("b")
    return size(max(1, int(float(m[1]) * _UNITS[unit])))


def float_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise UsageError(f"--dtype {dtype!r} is not a numpy dtype") from None
    if dt.kind != "f":
        raise UsageError(f"--dtype must be a floating type (float16/32/64), received {dt}")
    return dt


def apply_columns(stats: Stats, columns: Sequence[str] | None) -> Sequence[str] | None:
    """A table is read by the artifact's feature names; ``columns`` may only repeat them."""
    if columns is None or stats.features is None:
        return stats.features if columns is None else columns
    if list(columns) != list(stats.features):
        raise UsageError(
            f"--columns {list(columns)} disagree with the features of the statistics "
            f"{stats.features}"
        )
    return columns


def plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple | list) else v
