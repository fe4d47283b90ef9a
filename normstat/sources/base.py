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
    path: str
    dataset: str | None
    shape: tuple[int, ...]
    dtype: np.dtype

    def preferred_rows(self, target_bytes: int) -> int:
        """Rows per chunk near ``target_bytes``, aligned to the storage's own chunking."""
        ...

    def chunks(self, rows: int, start: int = 0) -> Iterator[Chunk]:
        """Row blocks of ``rows`` samples from sample ``start`` on (``start`` > 0 resumes)."""
        ...

    def close(self) -> None: ...


def rows_for_bytes(shape: tuple[int, ...], dtype: np.dtype, target_bytes: int) -> int:
    row_bytes = max(int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize, 1)
    return max(1, target_bytes // row_bytes)


def describe(sources: list[ArraySource]) -> dict[str, Any]:
    """The artifact's ``source`` record for a list of shards."""
    first = sources[0]
    rows = sum(s.shape[0] for s in sources)
    return {
        "paths": [s.path for s in sources],
        "dataset": first.dataset,
        "shape": [rows, *first.shape[1:]],
        "dtype": str(np.result_type(*(s.dtype for s in sources))),
        "kind": "array",
    }
