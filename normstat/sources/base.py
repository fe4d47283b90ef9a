"""The one small interface every reader implements: metadata up front, then row chunks.

A reader knows nothing of statistics. It reports the full shape and dtype (so the axis layout and
a progress total are known before reading) and yields chunks along axis 0, each tagged with where
it came from so that errors can name the file and the row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

DEFAULT_CHUNK_BYTES = 32 * 2**20
"""Target bytes of input per chunk: big enough to amortise per-call overhead, small enough that a
few chunks in flight (plus their float64 temporaries) stay well under a few hundred MB."""


@dataclass(frozen=True)
class Chunk:
    data: np.ndarray  # rows along axis 0
    path: str  # file the rows came from ("-" for stdin)
    dataset: str | None  # dataset inside the file, if any
    start: int  # index of data[0] within that file / dataset


class ArraySource(Protocol):
    """One array-valued input (a file and, for HDF5, a dataset inside it)."""

    format: str  # a name in normstat.sources.FORMATS
    kind: str  # "array" (features are axes) or "table" (features are named columns)
    path: str
    dataset: str | None
    shape: tuple[int, ...]  # a table's row count (shape[0]) is None until read if unknown
    dtype: np.dtype
    features: list[str] | None  # column names of a table's features; None for arrays

    def preferred_rows(self, target_bytes: int) -> int:
        """Rows per chunk near ``target_bytes``, aligned to the storage's own chunking."""
        ...

    def chunks(self, rows: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        """Row blocks of ``rows`` samples from sample ``start`` (``start`` > 0 resumes) to
        ``stop`` (default: the end); a remote task reads its own range this way after
        reopening the source by (path, dataset)."""
        ...

    def close(self) -> None: ...


def rows_for_bytes(shape: tuple[int, ...], dtype: np.dtype, target_bytes: int) -> int:
    row_bytes = max(int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize, 1)
    return max(1, target_bytes // row_bytes)


def describe(sources: list[ArraySource]) -> dict[str, Any]:
    """The artifact's ``source`` record for a list of shards."""
    first = sources[0]
    return {
        "paths": [s.path for s in sources],
        "dataset": first.dataset,
        "shape": [total_rows(sources), *first.shape[1:]],
        "dtype": str(np.result_type(*(s.dtype for s in sources))),
        "kind": first.kind,
    }


def known_rows(source: ArraySource) -> int:
    """``shape[0]``, counting the rows first when the source cannot tell them up front (CSV)."""
    rows = source.shape[0]
    return rows if rows is not None else source.count_rows()  # type: ignore[attr-defined]


def total_rows(sources: list[ArraySource]) -> int | None:
    """Samples in all shards; None while a CSV or a stream has not been read to its end."""
    rows = [s.shape[0] for s in sources]
    return None if any(r is None for r in rows) else sum(rows)  # type: ignore[misc]
