"""The fit use cases: from files (local or Dask engine, with checkpoints), and from arrays."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from normstat.api.inputs import (
    as_matrix,
    as_paths,
    batches_of,
    check_axis,
    check_columns,
    is_dataset,
)
from normstat.api.options import (
    ChunkSize,
    ProgressHook,
    check_engine,
    check_options,
    chunk_rows,
    plain,
    row_bytes,
    task_rows,
)
from normstat.core.checks import NanPolicy
from normstat.core.layout import AxisLayout, AxisSpec
from normstat.core.moments import Moments
from normstat.core.stats import Stats
from normstat.engine import checkpoint as checkpoints
from normstat.engine.local import fit_local
from normstat.engine.task import chunk_task
from normstat.errors import NormstatWarning, UsageError
from normstat.sources import ArraySource, Chunk, describe, open_sources
from normstat.sources.base import known_rows, total_rows


def fit(
    sources: str | Sequence[str],
    *,
    dataset: str | None = None,
    axis: AxisSpec = -1,
    ddof: int = 0,
    nan: NanPolicy = "skip",
    chunk_size: ChunkSize = None,
    workers: int | None = None,
    input_format: str | None = None,
    columns: Sequence[str] | None = None,
    progress: ProgressHook | None = None,
    checkpoint: str | None = None,
    checkpoint_every: float = 60.0,
    resume: bool = False,
    engine: str = "local",
    scheduler: str | None = None,
    task_size: ChunkSize = None,
) -> Stats:
    """Statistics of one dataset stored in one or more files (shards along axis 0), one pass.

    Tables (Parquet, Arrow / Feather, CSV): ``columns`` selects the feature columns (default:
    every numeric one); each keeps its own statistics.

    With ``checkpoint``, the merged state and position are saved there every
    ``checkpoint_every`` seconds; ``resume`` continues from that file if it exists (the data must
    be unchanged). The checkpoint is removed when the fit completes.

    ``engine="dask"`` runs the same per-chunk step and merge as Dask tasks, on the cluster at
    ``scheduler`` (or $DASK_SCHEDULER_ADDRESS), else on a local cluster of ``workers`` processes.
    """
    check_options(ddof, nan)
    specs = as_paths(sources, "sources", _ARRAY_HINT if is_dataset(sources) else "")
    axis = check_axis(axis)
    columns = check_columns(columns)
    check_engine(engine, scheduler, specs, checkpoint)
    if resume and not checkpoint:
        raise UsageError("--resume needs --checkpoint PATH")
    if checkpoint and "-" in specs:
        raise UsageError("a fit from stdin cannot be checkpointed (it cannot be re-read)")
    srcs = open_sources(specs, dataset, input_format, columns)
    try:
        layout = source_layout(axis, srcs[0])
        rows = chunk_rows(srcs[0], chunk_size)
        saver, initial = None, None
        if checkpoint:
            saver, initial = _checkpointer(
                srcs, layout, rows, nan, checkpoint, checkpoint_every, resume
            )
        skip = saver.rows_done if saver else 0
        if progress is not None:
            progress.start(total_rows(srcs), row_bytes(srcs[0]))
            progress.advance(skip)
        advance = None if progress is None else progress.advance
        if engine == "dask":
            cluster = {"scheduler": scheduler, "workers": workers, "progress": advance}
            moments = _fit_dask(
                srcs, rows, task_rows(srcs[0], rows, task_size), layout, nan, cluster
            )
        else:
            moments = fit_local(
                all_chunks(srcs, rows, skip),
                layout,
                nan,
                workers=workers,
                features=srcs[0].features,
                progress=advance,
                initial=initial,
                after_chunk=saver,
            )
        if checkpoint and os.path.exists(checkpoint):
            os.unlink(checkpoint)
        stats = Stats(
            moments, layout.feature_shape, layout.axis, ddof, srcs[0].features, describe(srcs)
        )
        warn_empty(stats)
        return stats
    finally:
        for s in srcs:
            s.close()


_ARRAY_HINT = "; for arrays and tables in memory use normstat.fit_arrays"


def empty_features(stats: Stats) -> list[str]:
    """Names of the features without any finite value (count 0): their statistics are null."""
    from normstat.report import feature_names

    empty = stats.count.reshape(-1) == 0
    names = feature_names(stats)
    return [names[i] for i in np.flatnonzero(empty)]


def features_have(n: int) -> str:
    """``1 feature has`` / ``3 features have``."""
    return f"{n} feature has" if n == 1 else f"{n} features have"


def describe_names(names: list[str], limit: int = 10) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def warn_empty(stats: Stats) -> None:
    """Warn (the CLI prints it on stderr) when features have no value at all: their statistics
    are null, and ``export`` / ``apply`` refuse them unless ``allow_empty``."""
    empty = empty_features(stats)
    if not empty:
        return
    rows = (stats.source or {}).get("shape") or [None]
    if rows[0] == 0:
        message = f"the data has no rows: no feature has statistics ({describe_names(empty)})"
    else:
        message = (
            f"{features_have(len(empty))} no finite value (count 0), of "
            f"{stats.moments.n_features}: {describe_names(empty)}; their statistics are null"
        )
    warnings.warn(
        NormstatWarning(message),
        stacklevel=3,
    )


def _fit_dask(
    srcs: list[ArraySource],
    rows: int,
    task_rows: int,
    layout: AxisLayout,
    nan: NanPolicy,
    cluster: dict[str, Any],
) -> Moments:
    """Arrays by row ranges (:mod:`normstat.engine.dask`), tables by row groups
    (:mod:`normstat.engine.dask_tables`)."""
    if srcs[0].kind == "table":
        from normstat.engine.dask_tables import fit_tables_dask

        return fit_tables_dask(srcs, rows, task_rows, layout, nan, **cluster)  # type: ignore[arg-type]
    from normstat.engine.dask import fit_dask
    from normstat.engine.plan import fit_tasks

    return fit_dask(fit_tasks(srcs, rows, task_rows), rows, layout, nan, **cluster)


def source_layout(axis: AxisSpec, src: ArraySource) -> AxisLayout:
    """The axis layout of a source; a table has one statistic per feature column."""
    layout = AxisLayout.create(axis, (0, *src.shape[1:]))
    if src.kind == "table" and layout.kept != (1,):
        raise UsageError(
            f"a table has one statistic per column: --axis must be -1 (or 1), received {axis}",
            path=src.path,
        )
    return layout


def _checkpointer(
    srcs: list[ArraySource],
    layout: AxisLayout,
    rows: int,
    nan: str,
    path: str,
    every: float,
    resume: bool,
) -> tuple[checkpoints.Checkpointer, Moments | None]:
    if every <= 0:
        raise UsageError(f"checkpoint_every: expected positive seconds, received {every}")
    print_ = checkpoints.fingerprint(
        srcs,
        axis=plain(layout.axis),
        nan=nan,
        chunk_rows=rows,
        sample_shape=list(layout.sample_shape),
        features=srcs[0].features,
    )
    saver = checkpoints.Checkpointer(path, every, print_)
    if os.path.exists(path):
        if not resume:
            raise UsageError(
                "checkpoint exists: add --resume to continue from it, or delete it", path=path
            )
        initial, saver.rows_done = checkpoints.load(path, print_)
        return saver, initial
    return saver, None


def all_chunks(srcs: list[ArraySource], rows: int, skip: int = 0) -> Iterable[Chunk]:
    """Chunks of every shard in order, starting ``skip`` samples in (when resuming)."""
    for s in srcs:
        n = known_rows(s) if skip else 0
        if skip and skip >= n:
            skip -= n
            continue
        yield from s.chunks(rows, skip)
        skip = 0


class Accumulator:
    """A running fit over in-memory batches: ``update(batch)`` as they come, ``merge(other)``.

    A batch is an array whose axis 0 is the sample axis, a list of rows, or a table (a pandas or
    polars DataFrame, a pyarrow Table): all share the shape of one sample. A table's numeric
    columns are the features, by name: later tables are read by those names, whatever their
    column order (see ``docs/python.md``).
    """

    def __init__(
        self,
        axis: AxisSpec = -1,
        *,
        ddof: int = 0,
        nan: NanPolicy = "skip",
        columns: Sequence[str] | None = None,
    ) -> None:
        check_options(ddof, nan)
        self.axis, self.ddof, self.nan = check_axis(axis), ddof, nan
        self.layout: AxisLayout | None = None
        self.moments: Moments | None = None
        self.rows = 0
        self.dtype: np.dtype | None = None
        self.features: list[str] | None = check_columns(columns)

    def update(self, batch: Any) -> Accumulator:
        return self._update(batch, "batch")

    def _update(self, batch: Any, name: str) -> Accumulator:
        m = as_matrix(batch, name, columns=self.features if self.features else None)
        if m.names is not None and self.features is None and self.layout is None:
            self.features = m.names
        if m.names is not None and self.axis not in (-1, 1, (-1,), (1,)):
            raise UsageError(
                f"axis: a table has one statistic per column, so axis must be -1, "
                f"received {self.axis!r}"
            )
        data = m.data
        layout = AxisLayout.create(self.axis, data.shape)
        if self.layout is None:
            self.layout, self.moments = layout, Moments.empty(layout.n_features)
        elif layout.sample_shape != self.layout.sample_shape:
            raise UsageError(
                f"{name}: sample shape {list(data.shape[1:])} disagrees with "
                f"{list(self.layout.sample_shape)} seen before"
            )
        part = chunk_task(Chunk(data, "<array>", None, self.rows), layout, self.nan)
        assert self.moments is not None
        self.moments = self.moments.merge(part)
        self.rows += data.shape[0]
        self.dtype = data.dtype if self.dtype is None else np.result_type(self.dtype, data.dtype)
        return self

    def merge(self, other: Accumulator) -> Accumulator:
        if other.layout is None:
            return self
        if self.layout is None:
            self.layout, self.moments = other.layout, other.moments.copy()  # type: ignore[union-attr]
            self.features = other.features
        elif other.layout != self.layout or other.features != self.features:
            raise UsageError(
                "other: cannot merge accumulators of different sample shapes, axes or columns"
            )
        else:
            self.moments = self.moments.merge(other.moments)  # type: ignore[union-attr, arg-type]
        self.rows += other.rows
        return self

    def result(self) -> Stats:
        if self.layout is None or self.moments is None:
            raise UsageError("no batch has been seen yet")
        source = {
            "paths": [],
            "dataset": None,
            "shape": [self.rows, *self.layout.sample_shape],
            "dtype": str(self.dtype),
            "kind": "array" if self.features is None else "table",
        }
        return Stats(
            self.moments.copy(),
            self.layout.feature_shape,
            self.layout.axis,
            self.ddof,
            self.features,
            source,
        )


def fit_arrays(
    batches: Any,
    *,
    axis: AxisSpec = -1,
    ddof: int = 0,
    nan: NanPolicy = "skip",
    columns: Sequence[str] | None = None,
) -> Stats:
    """Statistics of data in memory: an array, a list of rows, a DataFrame (pandas, polars), an
    Arrow table, or an iterable of such batches that together form one dataset.

    As scikit-learn's ``check_array``: a list of numbers or of Python sequences is ONE array
    (a list of rows); a list of arrays or tables, or any other iterable, is a list of batches.
    """
    acc = Accumulator(axis, ddof=ddof, nan=nan, columns=columns)
    single = is_dataset(batches)
    for i, b in enumerate(batches_of(batches, "batches")):
        acc._update(b, "batches" if single else f"batches[{i}]")
    stats = acc.result()
    warn_empty(stats)
    return stats


# ---------------------------------------------------------------------------------------------
# apply
