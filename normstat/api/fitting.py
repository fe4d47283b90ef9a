"""The fit use cases: from files (local or Dask engine, with checkpoints), and from arrays."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

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
from normstat.core.exact import ExactSearch
from normstat.core.histogram import SketchSpec
from normstat.core.layout import AxisLayout, AxisSpec
from normstat.core.moments import Moments
from normstat.core.quantiles import Sketch, merge_levels, parse_levels
from normstat.core.stats import Stats
from normstat.engine import checkpoint as checkpoints
from normstat.engine.local import fit_local
from normstat.engine.task import chunk_task
from normstat.errors import UsageError
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
    quantiles: str | Sequence[float] | None = None,
    histogram: bool = False,
    exact: bool = False,
) -> Stats:
    """Statistics of one dataset stored in one or more files (shards along axis 0), one pass.

    Tables (Parquet, Arrow / Feather, CSV): ``columns`` selects the feature columns (default:
    every numeric one); each keeps its own statistics.

    With ``checkpoint``, the merged state and position are saved there every
    ``checkpoint_every`` seconds; ``resume`` continues from that file if it exists (the data must
    be unchanged). The checkpoint is removed when the fit completes.

    ``engine="dask"`` runs the same per-chunk step and merge as Dask tasks, on the cluster at
    ``scheduler`` (or $DASK_SCHEDULER_ADDRESS), else on a local cluster of ``workers`` processes.

    ``quantiles`` (levels such as ``[0.01, 0.5, 0.99]`` or ``"robust"``) and ``histogram`` keep a
    distribution summary beside the moments (docs/quantiles.md); ``quantiles`` also adds the
    quantiles at those levels. ``exact`` makes them exact for any data, reading it again
    (usually once) to select the order statistics.
    """
    check_options(ddof, nan)
    specs = [sources] if isinstance(sources, str) else list(sources)
    levels = None if quantiles is None else parse_levels(quantiles)
    sketch = SketchSpec() if levels is not None or histogram else None
    _check_exact(levels, exact, specs)
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
                srcs, layout, rows, nan, checkpoint, checkpoint_every, resume, sketch is not None
            )
        skip = saver.rows_done if saver else 0
        if progress is not None:
            progress.start(total_rows(srcs), row_bytes(srcs[0]))
            progress.advance(skip)
        advance = None if progress is None else progress.advance

        def one_pass(sketch: SketchSpec | None, first: bool = False) -> Moments:
            """A pass over the data: the first one reports progress and checkpoints (and
            resumes); the further passes of ``exact`` start from the beginning, silently."""
            if engine == "dask":
                cluster: dict[str, Any] = {"scheduler": scheduler, "workers": workers}
                cluster["progress"] = advance if first else None
                tasks = task_rows(srcs[0], rows, task_size)
                return _fit_dask(srcs, rows, tasks, layout, nan, cluster, sketch)
            return fit_local(
                all_chunks(srcs, rows, skip if first else 0),
                layout,
                nan,
                workers=workers,
                features=srcs[0].features,
                progress=advance if first else None,
                initial=initial if first else None,
                after_chunk=saver if first else None,
                sketch=sketch,
            )

        moments = one_pass(sketch, first=True)
        if checkpoint and os.path.exists(checkpoint):
            os.unlink(checkpoint)
        if sketch is not None and moments.sketch is None:  # no rows at all
            moments.sketch = sketch.build(np.zeros((0, layout.n_features)))
        stats = Stats(
            moments,
            layout.feature_shape,
            layout.axis,
            ddof,
            srcs[0].features,
            describe(srcs),
            levels,
        )
        if exact and levels is not None and moments.sketch is not None:
            stats.exact_quantiles = _exact_quantiles(moments.sketch, levels, one_pass)
        return stats
    finally:
        for s in srcs:
            s.close()


def _check_exact(levels: tuple[float, ...] | None, exact: bool, specs: list[str]) -> None:
    if exact and levels is None:
        raise UsageError("--exact makes --quantiles exact: give --quantiles too")
    if exact and "-" in specs:
        raise UsageError("--exact reads the data twice; stdin ('-') can be read only once")


def _exact_quantiles(
    sketch: Sketch, levels: tuple[float, ...], one_pass: Callable[[SketchSpec], Moments]
) -> np.ndarray:
    """Further passes over the data, each counting only the buckets that hold the order
    statistics the levels need, until they are single values (:class:`ExactSearch`)."""
    search = ExactSearch(sketch, levels)
    while (refine := search.next_refinement()) is not None:
        spec = SketchSpec(refine)
        counted = one_pass(spec).sketch
        search.absorb(counted if counted is not None else spec.build(np.zeros((0, 0))))
    return search.quantiles()


def _fit_dask(
    srcs: list[ArraySource],
    rows: int,
    task_rows: int,
    layout: AxisLayout,
    nan: NanPolicy,
    cluster: dict[str, Any],
    sketch: SketchSpec | None = None,
) -> Moments:
    """Tasks of whole read units (:mod:`normstat.engine.plan`), on the cluster."""
    from normstat.engine.dask import fit_dask
    from normstat.engine.plan import check_seekable, fit_tasks

    check_seekable(srcs)
    tasks = fit_tasks(srcs, rows, task_rows)
    return fit_dask(tasks, rows, layout, nan, features=srcs[0].features, sketch=sketch, **cluster)


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
    summary: bool = False,
) -> tuple[checkpoints.Checkpointer, Moments | None]:
    if every <= 0:
        raise UsageError(f"--checkpoint-every must be positive, received {every}")
    print_ = checkpoints.fingerprint(
        srcs,
        axis=plain(layout.axis),
        nan=nan,
        chunk_rows=rows,
        sample_shape=list(layout.sample_shape),
        features=srcs[0].features,
    )
    if summary:  # a checkpoint without the summary cannot resume a fit that keeps one
        print_["summary"] = True
    saver = checkpoints.Checkpointer(path, every, print_)
    if os.path.exists(path):
        if not resume:
            raise UsageError(
                "checkpoint exists: add --resume to continue from it, or delete it", path=path
            )
        initial, saver.rows_done = checkpoints.load(path, print_)
        if not summary:
            initial.sketch = None
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

    Batches are arrays whose axis 0 is the sample axis; all must share the shape of one sample.
    """

    def __init__(
        self,
        axis: AxisSpec = -1,
        *,
        ddof: int = 0,
        nan: NanPolicy = "skip",
        quantiles: str | Sequence[float] | None = None,
        histogram: bool = False,
    ) -> None:
        check_options(ddof, nan)
        self.axis, self.ddof, self.nan = axis, ddof, nan
        self.levels = None if quantiles is None else parse_levels(quantiles)
        self.sketch = SketchSpec() if self.levels is not None or histogram else None
        self.layout: AxisLayout | None = None
        self.moments: Moments | None = None
        self.rows = 0
        self.dtype: np.dtype | None = None

    def update(self, batch: np.ndarray) -> Accumulator:
        batch = np.asarray(batch)
        if batch.dtype.kind not in "biuf":
            raise UsageError(f"batch dtype {batch.dtype} is not numeric")
        layout = AxisLayout.create(self.axis, batch.shape)
        if self.layout is None:
            self.layout, self.moments = layout, Moments.empty(layout.n_features)
        elif layout.sample_shape != self.layout.sample_shape:
            raise UsageError(
                f"batch sample shape {list(batch.shape[1:])} disagrees with "
                f"{list(self.layout.sample_shape)} seen before"
            )
        chunk = Chunk(batch, "<array>", None, self.rows)
        part = chunk_task(chunk, layout, self.nan, sketch=self.sketch)
        assert self.moments is not None
        self.moments = self.moments.merge(part)
        self.rows += batch.shape[0]
        self.dtype = batch.dtype if self.dtype is None else np.result_type(self.dtype, batch.dtype)
        return self

    def merge(self, other: Accumulator) -> Accumulator:
        if other.layout is None:
            return self
        if self.layout is None:
            self.layout, self.moments = other.layout, other.moments.copy()  # type: ignore[union-attr]
        elif other.layout != self.layout:
            raise UsageError("cannot merge accumulators of different sample shapes or axes")
        else:
            self.moments = self.moments.merge(other.moments)  # type: ignore[union-attr, arg-type]
        self.levels = merge_levels(self.levels, other.levels)
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
            "kind": "array",
        }
        return Stats(
            self.moments.copy(),
            self.layout.feature_shape,
            self.layout.axis,
            self.ddof,
            None,
            source,
            self.levels,
        )


def fit_arrays(
    batches: np.ndarray | Iterable[np.ndarray],
    *,
    axis: AxisSpec = -1,
    ddof: int = 0,
    nan: NanPolicy = "skip",
    quantiles: str | Sequence[float] | None = None,
    histogram: bool = False,
    exact: bool = False,
) -> Stats:
    """Statistics of an array, or of an iterable of batches that together form one dataset.

    ``exact`` (with ``quantiles``) goes over the batches again, so they must be an array or a
    list / tuple of arrays, not a one-shot iterator.
    """
    parts = [batches] if isinstance(batches, np.ndarray) else batches
    if exact and not isinstance(parts, list | tuple):
        raise UsageError("exact quantiles read the batches twice: pass an array or a list")
    acc = Accumulator(axis, ddof=ddof, nan=nan, quantiles=quantiles, histogram=histogram)
    for b in parts:
        acc.update(b)
    stats = acc.result()
    _check_exact(acc.levels, exact, [])
    if exact and acc.levels is not None and stats.sketch is not None:

        def one_pass(spec: SketchSpec) -> Moments:
            again = Accumulator(axis, ddof=ddof, nan=nan)
            again.sketch = spec
            for b in parts:
                again.update(b)
            assert again.moments is not None
            return again.moments

        stats.exact_quantiles = _exact_quantiles(stats.sketch, acc.levels, one_pass)
    return stats
