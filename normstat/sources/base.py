"""The one small interface every reader implements: metadata up front, then row chunks.

A reader knows nothing of statistics. It reports the full shape and dtype (so the axis layout and
a progress total are known before reading) and yields chunks along axis 0, each tagged with where
it came from so that errors can name the file and the row.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from normstat import storage
from normstat.errors import DataError

DEFAULT_CHUNK_BYTES = 32 * 2**20
"""Target bytes of input per chunk: big enough to amortise per-call overhead, small enough that a
few chunks in flight (plus their float64 temporaries) stay well under a few hundred MB."""


class Chunk:
    """Rows of one input along axis 0, tagged with where they came from (``path``, ``dataset``,
    and ``start``: the index of the first row there) so an error can name file and row.

    A table chunk is made of its feature ``columns`` instead: arrays as the reader decoded them
    (zero-copy views of Arrow buffers where possible), or a sequence that decodes each column
    only when it is asked for (Parquet), so the kernel reduces one column at a time where it lies
    and a chunk waiting in the queue holds no data. The ``(rows, features)`` matrix is built only
    if something asks for :attr:`data` (``apply`` to an array format); building it for every
    chunk cost more than the kernel.

    A chunk reduced by its source (``reduced_chunks``: images, reduced in the processes that
    decode them) carries its ``moments`` (whatever the fit step returned) and no data;
    ``rows`` is then the number of samples it stands for.
    """

    __slots__ = (
        "_data", "_rows", "columns", "dataset", "extra", "moments", "parts", "path", "start"
    )  # fmt: skip

    def __init__(
        self,
        data: np.ndarray | None,
        path: str,
        dataset: str | None,
        start: int,
        columns: Sequence[np.ndarray] | None = None,
        rows: int | None = None,
        moments: Any = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if data is None and rows is None:
            raise ValueError("a chunk needs its data, or its length (columns, moments)")
        if data is None and columns is None and moments is None:
            raise ValueError("a chunk needs its data, its columns or its moments")
        self.moments = moments
        self._data = data
        self._rows = int(data.shape[0]) if data is not None else rows
        self.columns = columns
        self.path = path
        self.dataset = dataset
        self.start = start
        self.parts: tuple[Piece, ...] | None = None
        """Rows of several short chunks gathered into this one (small shards): where each
        piece came from, so that an error names its file and row; None for one source's."""
        self.extra = extra
        """Columns read beside the features, by role (``fit --by``: ``"by"``, the rows' group
        keys as ``(codes, values)``; ``--weights``: ``"weights"``, float64), or None."""

    @classmethod
    def of_columns(
        cls,
        columns: Sequence[np.ndarray],
        path: str,
        dataset: str | None,
        start: int,
        rows: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Chunk:
        """A chunk of feature columns (``rows``: their length, needed when they are decoded on
        demand)."""
        if rows is None:
            rows = len(columns[0]) if len(columns) else 0
        return cls(None, path, dataset, start, columns, rows, extra=extra)

    @property
    def data(self) -> np.ndarray:
        """The rows as an array (built from the columns on first use, for a table chunk)."""
        if self._data is None:
            assert self.columns is not None
            self._data = stack_columns(list(self.columns), self.rows)
        return self._data

    @property
    def rows(self) -> int:
        assert self._rows is not None
        return self._rows

    def __repr__(self) -> str:
        where = f"{self.path!r}, dataset={self.dataset!r}, start={self.start}"
        return f"Chunk({where}, rows={self.rows})"


class Piece(NamedTuple):
    """Rows ``offset:offset + rows`` of a gathered chunk: rows ``start:start + rows`` of
    ``path`` (``dataset``)."""

    path: str
    dataset: str | None
    start: int
    rows: int
    offset: int


def stack_columns(
    columns: Sequence[np.ndarray], rows: int | None = None, order: str = "F"
) -> np.ndarray:
    """Equal-length columns as an ``(n, F)`` column-major matrix (each column written
    contiguously; ``order="C"``: row-major, for short columns that are reduced as rows).
    float32 when every column is float32 (float32 -> float64 is exact, and
    widening here would double the bytes for nothing), else float64.
    """
    n = rows if rows is not None else (len(columns[0]) if columns else 0)
    dtype = np.float32 if columns and all(c.dtype == np.float32 for c in columns) else np.float64
    widths = [1 if c.ndim == 1 else c.shape[1] for c in columns]  # a feature group: (n, k)
    out = np.empty((n, sum(widths)), dtype, order=order)  # type: ignore[call-overload]
    j = 0
    for col, w in zip(columns, widths, strict=True):
        out[:, j : j + w] = col.reshape(n, w)
        j += w
    return out


class Reducer(Protocol):
    """The fit's per-chunk step, as the engine hands it to a source that reduces where it
    decodes (``reduced_chunks(rows, step, start, stop)``): picklable, so it travels to the
    source's processes. A source knows nothing of what it computes, only how to run it."""

    def __call__(self, chunk: Chunk) -> Any:
        """The reduced value (moments) of a chunk."""
        ...

    def for_sample(self, shape: Sequence[int]) -> Reducer | None:
        """The step for samples of another ``shape`` (pooled), None if they cannot be."""
        ...

    def merge(self, parts: Sequence[Any]) -> Any:
        """Reduced values merged in order."""
        ...


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


def fit_chunks(
    src: ArraySource, rows: int, step: Reducer | None, start: int = 0, stop: int | None = None
) -> Iterator[Chunk]:
    """A source's chunks for a fit: reduced by ``step`` where the source decodes them, when it
    offers ``reduced_chunks`` (images), else as read (the engine reduces them)."""
    reduced = getattr(src, "reduced_chunks", None)
    if step is not None and reduced is not None:
        return reduced(rows, step, start, stop)
    return src.chunks(rows, start, stop)


def check_sample_shape(shape: tuple[int, ...], path: str, dataset: str | None = None) -> None:
    """A negative dimension is damage; a sample of no values (``(1000, 0)``, ``(10**9, 0, 5)``)
    has no feature to describe: one clear error instead of empty statistics or a long loop."""
    if any(n < 0 for n in shape):
        raise DataError(
            f"declares a negative dimension: shape {list(shape)}", path=path, dataset=dataset
        )
    if any(n == 0 for n in shape[1:]):
        raise DataError(
            f"has shape {list(shape)}: a sample of no values, so there is no feature to fit",
            path=path,
            dataset=dataset,
        )


def rows_for_bytes(shape: tuple[int, ...], dtype: np.dtype, target_bytes: int) -> int:
    row_bytes = max(int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize, 1)
    return max(1, target_bytes // row_bytes)


def describe(sources: list[ArraySource]) -> dict[str, Any]:
    """The artifact's ``source`` record for a list of shards: for tables also the columns left
    out (and why) and the feature columns whose types were widened across shards; for files a
    fingerprint of each, so that ``merge`` can refuse statistics of the same data twice."""
    first = sources[0]
    out: dict[str, Any] = {
        "paths": [storage.shown(s.path) for s in sources],
        "dataset": first.dataset,
        "shape": [total_rows(sources), *first.shape[1:]],
        "dtype": str(np.result_type(*(s.dtype for s in sources))),
        "kind": first.kind,
    }
    left_out = getattr(first, "left_out", None)
    if left_out is not None:
        out["left_out"] = [{"name": n, "reason": why} for n, why in left_out]
    if getattr(first, "promoted", None):
        out["promoted"] = first.promoted  # type: ignore[attr-defined]
    record = getattr(first, "record", None)  # what a source adds after its read (images)
    if record is not None and len(sources) == 1:
        out.update(record())
    files = [
        (s.path, s.dataset, getattr(s, "known_fingerprint", None))
        for s in sources
        if s.path != "-" and (storage.is_uri(s.path) or os.path.exists(s.path))
        # not a stream, nor a glob of images
    ]
    out["fingerprints"] = _fingerprints(files)
    return out


def _fingerprints(files: list[tuple[str, str | None, Any]]) -> list[dict[str, Any]]:
    """:func:`fingerprint` of every file, in order (taken by its reader already when it read
    the file whole: a small shard); many shards on a few threads (the reads and the hashing
    release the GIL: 10,000 shards spent a tenth of their fit here)."""
    todo = [(p, d) for p, d, known in files if known is None]
    if len(todo) < 16:
        taken = [fingerprint(p, d) for p, d in todo]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            taken = list(pool.map(lambda f: fingerprint(*f), todo))
    fresh = iter(taken)
    return [known if known is not None else next(fresh) for _, _, known in files]


_EDGE = 64 * 1024


def fingerprint(path: str, dataset: str | None = None) -> dict[str, Any]:
    """Where a source is (real path), its size and mtime, and a sha256 of its first and last
    64 KiB: cheap, and the same for a copy of the same data (a directory store: no hash). An
    object in a bucket: its URI, size, ETag and modification time, as the store reports them."""
    if storage.is_uri(path):
        return {"path": storage.shown(path), "dataset": dataset, **storage.info(path)}
    st = os.stat(path)
    out: dict[str, Any] = {
        "path": os.path.realpath(path),
        "dataset": dataset,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        with open(path, "rb") as fp:
            h.update(fp.read(_EDGE))
            if st.st_size > _EDGE:
                fp.seek(max(_EDGE, st.st_size - _EDGE))
                h.update(fp.read(_EDGE))
        out["sha256_edges"] = h.hexdigest()
    return out


def fingerprint_of(path: str, st: os.stat_result, data: Any) -> dict[str, Any]:
    """:func:`fingerprint` of a regular file from its ``stat`` and its whole contents
    ``data`` (a buffer), already read: what a reader of small files takes as it reads them,
    with no second open or read."""
    view = memoryview(data).cast("B")
    h = hashlib.sha256(view[:_EDGE])
    if st.st_size > _EDGE:
        h.update(view[max(_EDGE, st.st_size - _EDGE) :])
    return {
        "path": os.path.realpath(path),
        "dataset": None,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256_edges": h.hexdigest(),
    }


def known_rows(source: ArraySource) -> int:
    """``shape[0]``, counting the rows first when the source cannot tell them up front (CSV)."""
    rows = source.shape[0]
    return rows if rows is not None else source.count_rows()


def total_rows(sources: list[ArraySource]) -> int | None:
    """Samples in all shards; None while a CSV or a stream has not been read to its end."""
    rows = [s.shape[0] for s in sources]
    return None if any(r is None for r in rows) else sum(rows)
