"""The fit use cases: from files (local or Dask engine, with checkpoints), and from arrays."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from normstat import storage
from normstat.api.empty import warn_empty
from normstat.api.inputs import (
    as_matrix,
    as_paths,
    batches_of,
    check_axis,
    check_columns,
    is_dataset,
)
from normstat.api.keyed import check_keyed, check_tables, finish, keyed_table, split_keyed
from normstat.api.options import (
    ChunkSize,
    ProgressHook,
    check_checkpoint_every,
    check_distributable,
    check_engine,
    check_options,
    chunk_rows,
    image_options,
    parse_rescale,
    plain,
    reading,
    row_bytes,
    task_rows,
)
from normstat.artifact import save
from normstat.core.checks import NanPolicy
from normstat.core.exact import ExactSearch
from normstat.core.histogram import SketchSpec
from normstat.core.layout import AxisLayout, AxisSpec
from normstat.core.moments import Moments, TreeMerger
from normstat.core.quantiles import Sketch, merge_levels, parse_levels
from normstat.core.stats import Stats
from normstat.engine import checkpoint as checkpoints
from normstat.engine.coalesce import coalesce
from normstat.engine.local import fit_local
from normstat.engine.task import FitStep, check_finite, chunk_task
from normstat.errors import UsageError
from normstat.sinks.atomic import check_writable
from normstat.sources import (
    ArraySource,
    Chunk,
    ImageOptions,
    describe,
    open_sources,
    read_ahead,
    rows_so_far,
    settle,
)
from normstat.sources.base import fit_chunks, known_rows, total_rows


@storage.scoped
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
    columns: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    column_types: str | Mapping[str, str] | None = None,
    delimiter: str | None = None,
    header: bool = True,
    null_values: str | Sequence[str] | None = None,
    allow_overlap: bool = False,
    progress: ProgressHook | None = None,
    checkpoint: str | None = None,
    checkpoint_every: float = 60.0,
    resume: bool = False,
    engine: str = "local",
    scheduler: str | None = None,
    task_size: ChunkSize = None,
    allow_external: bool = False,
    rescale: float | str = 1.0,
    options: ImageOptions | Mapping[str, Any] | None = None,
    output: str | None = None,
    force: bool = False,
    quantiles: str | Sequence[float] | None = None,
    histogram: bool = False,
    exact: bool = False,
    by: str | None = None,
    weights: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> Stats:
    """Statistics of one dataset stored in one or more files (shards along axis 0), one pass.

    Tables (Parquet, Arrow / Feather, CSV): ``columns`` selects the feature columns (a list, or
    one string of comma-separated names), default every numeric one but those the metadata marks
    as labels (Hugging Face ``ClassLabel``) or pandas index columns, less ``exclude``; each keeps
    its own statistics. CSV: ``column_types`` (``"a:float64,b:string"`` or a dict) fixes types
    instead of inferring them, ``delimiter``, ``header=False`` (columns ``c0, c1, ...``) and
    ``null_values`` (the spellings of a missing value). The result's ``source`` records the
    columns left out and why (``left_out``), and a fingerprint of every file.

    The same file given twice (by any path) is refused unless ``allow_overlap``.

    A source, ``output`` and ``checkpoint`` may be a URI (``s3://bucket/key``, ``gs://``,
    ``https://`` to read; globs too): ``storage_options`` (``endpoint_url``, ``region``,
    ``key``, ``secret``, ``token``, ``anon``) add to the environment's settings
    (docs/storage.md).

    With ``checkpoint``, the merged state and position are saved there every
    ``checkpoint_every`` seconds; ``resume`` continues from that file if it exists (the data must
    be unchanged). The checkpoint is removed when the fit completes; with ``output``, only once
    the statistics are committed there.

    ``output``: also save the statistics there (:func:`normstat.save`). It is checked before the
    pass, as every command's output is (:func:`normstat.sinks.atomic.check_writable`): not a
    file the pass reads, its directory exists, an existing file only with ``force``.

    ``engine="dask"`` runs the same per-chunk step and merge as Dask tasks, on the cluster at
    ``scheduler`` (or $DASK_SCHEDULER_ADDRESS), else on a local cluster of ``workers`` processes.

    ``allow_external``: an HDF5 dataset may read files outside its file's directory (external
    storage, external links, virtual datasets); refused by default.
    ``rescale`` (a number or ``"1/255"``): the statistics describe ``x * rescale``. ``options``:
    reader options of the formats that take them (images: ``mode``, ``resize``,
    ``center_crop``, ``skip_bad``; see docs/images.md); they also get ``workers``.
    ``quantiles`` (levels such as ``[0.01, 0.5, 0.99]`` or ``"robust"``) and ``histogram`` keep a
    distribution summary beside the moments (docs/quantiles.md); ``quantiles`` also adds the
    quantiles at those levels. ``exact`` makes them exact for any data, reading it again
    (usually once) to select the order statistics.
    ``by`` (tables): also the statistics of each distinct value of that column (an episode, a
    speaker), in the same pass (:meth:`Stats.by_group`); ``weights`` (tables): each row
    weighs that column's value (``var = sum w (x - mean)**2 / sum w``, as scikit-learn's
    ``sample_weight``). See docs/groups.md.
    """
    check_options(ddof, nan)
    scale = parse_rescale(rescale)
    specs = as_paths(sources, "sources", _ARRAY_HINT if is_dataset(sources) else "")
    axis = check_axis(axis)
    levels = None if quantiles is None else parse_levels(quantiles)
    # the summary counts the values the statistics describe: x * rescale
    sketch = SketchSpec(scale=scale) if levels is not None or histogram else None
    _check_exact(levels, exact, specs)
    check_engine(engine, scheduler, specs, checkpoint)
    if resume and not checkpoint:
        raise UsageError("--resume needs --checkpoint PATH")
    if checkpoint and "-" in specs:
        raise UsageError("a fit from stdin cannot be checkpointed (it cannot be re-read)")
    check_keyed(by, weights, sketch=sketch is not None)
    chosen, table = reading(columns, exclude, column_types, delimiter, header, null_values)
    table = keyed_table(table, by, weights)
    keyed = {"by": by, "weights": weights}
    srcs = open_sources(
        specs,
        dataset,
        input_format,
        chosen,
        table,
        allow_overlap=allow_overlap,
        allow_external=allow_external,
        images=image_options(options, workers),
        lazy=True,  # shards after the first are opened ahead of the pass, as it goes
    )
    try:
        if engine == "dask" or checkpoint:
            settle(srcs)  # the plan, the checkpoint's fingerprint: every shard
        check_tables(srcs, by, weights)
        check_distributable(srcs, engine, fit=True)
        if output is not None:
            check_writable(output, force=force, sources=srcs)
        if checkpoint:
            check_writable(checkpoint, force=True, sources=srcs)
        layout = source_layout(axis, srcs[0])
        rows = chunk_rows(srcs[0], chunk_size, shards=srcs[1:])
        saver, initial = None, None
        if checkpoint:
            saver, initial = _checkpointer(
                srcs, layout, rows, nan, checkpoint, checkpoint_every, resume, sketch, keyed
            )
        skip = saver.rows_done if saver else 0
        advance = None if progress is None else _reporter(progress, srcs, skip)

        def one_pass(sketch: SketchSpec | None, first: bool = False) -> Moments:
            """A pass over the data: the first one reports progress and checkpoints (and
            resumes); the further passes of ``exact`` start from the beginning, silently."""
            if engine == "dask":
                cluster: dict[str, Any] = {"scheduler": scheduler, "workers": workers}
                cluster["progress"] = advance if first else None
                tasks = task_rows(srcs[0], rows, task_size)
                return _fit_dask(srcs, rows, tasks, layout, nan, cluster, sketch)
            step = FitStep(layout, nan, srcs[0].features, sketch)
            chunks = all_chunks(srcs, rows, step, skip if first else 0)
            if saver is None and len(srcs) > 1:  # small shards' rows gathered into full chunks
                chunks = coalesce(chunks, rows)  # (a checkpoint's tree keeps the read chunks)
            with np.errstate(over="ignore", invalid="ignore"):  # merges near float64's limit
                return fit_local(
                    chunks,
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
        settle(srcs)  # all opened by the pass; table types promoted for the record
        paths = ", ".join(s.path for s in srcs[:3]) + (", ..." if len(srcs) > 3 else "")
        check_finite(moments, paths, srcs[0].dataset, layout, srcs[0].features)
        if sketch is not None and moments.sketch is None:  # no rows at all
            moments.sketch = sketch.build(np.zeros((0, layout.n_features)))
        finish(moments, by, weights, layout.n_features)
        stats = Stats(
            moments,
            layout.feature_shape,
            layout.axis,
            ddof,
            srcs[0].features,
            describe(srcs),
            quantile_levels=levels,
            by=by,
            weights=weights,
            feature_groups=getattr(srcs[0], "feature_groups", None),
        )
        if exact and levels is not None and moments.sketch is not None:
            stats.exact_quantiles = _exact_quantiles(moments.sketch, levels, one_pass, scale)
        if scale != 1.0:
            stats = _rescaled(stats, scale)
        warn_empty(stats)
        if output is not None:
            save(stats, output)
        if checkpoint and os.path.exists(checkpoint):
            os.unlink(checkpoint)  # only now: the statistics are safe
        return stats
    finally:
        for s in srcs:
            s.close()


_ARRAY_HINT = "; for arrays and tables in memory use normstat.fit_arrays"


def _reporter(progress: ProgressHook, srcs: list[ArraySource], skip: int) -> Callable[[int], None]:
    """Start ``progress`` and return what the pass advances it with. Shards not opened yet
    (they are opened ahead of the pass, as it goes: none is opened before it for the bar) count
    as many rows as the first until they are; a hook with a ``total_changed(total, exact)``
    method is told the estimate and each correction, so the total is exact by the end."""
    total = rows_so_far(srcs)
    shown = total()
    progress.start(shown[0], row_bytes(srcs[0]))
    changed = getattr(progress, "total_changed", None)
    if changed is not None and not shown[1]:
        changed(*shown)
    progress.advance(skip)
    if changed is None or shown[1]:
        return progress.advance

    def advance(n: int) -> None:
        nonlocal shown
        now = total()
        if now != shown:
            shown = now
            changed(*now)
        progress.advance(n)

    return advance


def _check_exact(levels: tuple[float, ...] | None, exact: bool, specs: list[str]) -> None:
    if exact and levels is None:
        raise UsageError("--exact makes --quantiles exact: give --quantiles too")
    if exact and "-" in specs:
        raise UsageError("--exact reads the data twice; stdin ('-') can be read only once")


def _rescaled(stats: Stats, scale: float) -> Stats:
    """The moments rescaled after the pass; the summary was built from the rescaled values
    (:class:`SketchSpec`'s ``scale``), so it and its quantiles are carried as they are."""
    scaled = stats.rescaled(scale)
    scaled.moments.sketch = stats.sketch
    scaled.quantile_levels, scaled.exact_quantiles = stats.quantile_levels, stats.exact_quantiles
    return scaled


def _exact_quantiles(
    sketch: Sketch,
    levels: tuple[float, ...],
    one_pass: Callable[[SketchSpec], Moments],
    scale: float = 1.0,
) -> np.ndarray:
    """Further passes over the data, each counting only the buckets that hold the order
    statistics the levels need, until they are single values (:class:`ExactSearch`)."""
    search = ExactSearch(sketch, levels)
    while (refine := search.next_refinement()) is not None:
        spec = SketchSpec(refine, scale)
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
    records: list[Any] = []
    moments = fit_dask(
        tasks, rows, layout, nan, features=srcs[0].features, sketch=sketch, records=records,
        **cluster,
    )  # fmt: skip
    if records and len(srcs) == 1:  # what the tasks read of an image source (read, skipped)
        srcs[0].absorb(records[0])  # type: ignore[attr-defined]
    return moments


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
    sketch: SketchSpec | None = None,
    keyed: Mapping[str, str | None] | None = None,
) -> tuple[checkpoints.Checkpointer, TreeMerger | None]:
    check_checkpoint_every(every)
    summary: dict[str, Any] = {}
    if sketch is not None:
        summary["distribution_summary"] = {"rescale": sketch.scale}
    summary.update({k: v for k, v in (keyed or {}).items() if v is not None})  # --by, --weights
    print_ = checkpoints.fingerprint(
        srcs,
        axis=plain(layout.axis),
        nan=nan,
        chunk_rows=rows,
        sample_shape=list(layout.sample_shape),
        features=srcs[0].features,
        **summary,
    )
    saver = checkpoints.Checkpointer(path, every, print_)
    source = srcs[0] if len(srcs) == 1 else None
    if source is not None and hasattr(source, "state"):
        saver.state = source.state  # what an image source records (read, skipped, sizes)
    if os.path.exists(path):
        if not resume:
            raise UsageError(
                "checkpoint exists: add --resume to continue from it, or delete it", path=path
            )
        initial, saver.rows_done = checkpoints.load(
            path, print_, layout.n_features, total_rows(srcs)
        )
        if saver.state is not None:
            srcs[0].restore(checkpoints.saved_state(path, layout.n_features))  # type: ignore[attr-defined]
        return saver, initial
    return saver, None


def all_chunks(srcs: list[ArraySource], rows: int, step: FitStep, skip: int = 0) -> Iterable[Chunk]:
    """Chunks of every shard in order, starting ``skip`` samples in (when resuming); a source
    that reduces where it decodes runs ``step`` there. Shards not yet opened are opened
    ahead of the pass on a thread (:func:`read_ahead`)."""
    ahead = read_ahead(srcs)
    try:
        for s in srcs:
            n = known_rows(s) if skip else 0
            if skip and skip >= n:
                skip -= n
                continue
            yield from fit_chunks(s, rows, step, skip)
            skip = 0
    finally:
        if ahead is not None:
            ahead.stop()


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
        quantiles: str | Sequence[float] | None = None,
        histogram: bool = False,
    ) -> None:
        check_options(ddof, nan)
        self.axis, self.ddof, self.nan = check_axis(axis), ddof, nan
        self.levels = None if quantiles is None else parse_levels(quantiles)
        self.sketch = SketchSpec() if self.levels is not None or histogram else None
        self.layout: AxisLayout | None = None
        self.moments: Moments | None = None
        self.rows = 0
        self.dtype: np.dtype | None = None
        self.features: list[str] | None = check_columns(columns)
        self.columns = self.features  # what each batch selects (a vector column: one name)
        self.feature_groups: list[dict[str, Any]] | None = None
        self.keyed: tuple[str | None, str | None] = (None, None)

    def update(self, batch: Any, *, by: Any = None, weights: Any = None) -> Accumulator:
        """``by``: each row's group key (an array, or the name of a column of a table batch),
        for statistics per group beside the pooled ones; ``weights``: each row's weight (an
        array or a column name). Every batch of one accumulator gives them, or none does."""
        return self._update(batch, "batch", by, weights)

    def _update(self, batch: Any, name: str, by: Any = None, weights: Any = None) -> Accumulator:
        batch, extra = split_keyed(batch, by, weights)
        self._check_keyed(by, weights)
        m = as_matrix(batch, name, columns=self.columns if self.columns else None)
        if m.names is not None and self.layout is None:
            self.features, self.feature_groups = m.names, m.feature_groups
            self.columns = m.selected or m.names
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
        if extra is not None and any(
            len(v if k != "by" else v[0]) != len(data) for k, v in extra.items()
        ):
            raise UsageError(f"by / weights: one value per row of the {name} ({len(data)})")
        chunk = Chunk(data, "<array>", None, self.rows, extra=extra)
        part = chunk_task(chunk, layout, self.nan, sketch=self.sketch)
        assert self.moments is not None
        self.moments = self.moments.merge(part)
        self.rows += data.shape[0]
        self.dtype = data.dtype if self.dtype is None else np.result_type(self.dtype, data.dtype)
        return self

    def _check_keyed(self, by: Any, weights: Any) -> None:
        """Every batch is grouped / weighted as the first one was."""
        kind = (
            None if by is None else by if isinstance(by, str) else "<array>",
            None if weights is None else weights if isinstance(weights, str) else "<array>",
        )
        if self.layout is None:
            check_keyed(
                by if isinstance(by, str) else None,
                weights if isinstance(weights, str) else "<array>" if weights is not None else None,
                sketch=self.sketch is not None,
            )
            self.keyed = kind
        elif kind != self.keyed:
            raise UsageError(
                f"by / weights: this batch gives {kind}, the first gave {self.keyed} (every "
                "batch must give the same)"
            )

    def merge(self, other: Accumulator) -> Accumulator:
        if other.layout is None:
            return self
        if self.layout is None:
            self.layout, self.moments = other.layout, other.moments.copy()  # type: ignore[union-attr]
            self.features, self.keyed = other.features, other.keyed
            self.columns, self.feature_groups = other.columns, other.feature_groups
        elif (
            other.layout != self.layout
            or other.features != self.features
            or other.keyed != self.keyed
        ):
            raise UsageError(
                "other: cannot merge accumulators of different sample shapes, axes, columns, "
                "groups or weights"
            )
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
            "kind": "array" if self.features is None else "table",
        }
        moments = self.moments.copy()
        finish(moments, *self.keyed, self.layout.n_features)
        return Stats(
            moments,
            self.layout.feature_shape,
            self.layout.axis,
            self.ddof,
            self.features,
            source,
            quantile_levels=self.levels,
            by=self.keyed[0],
            weights=self.keyed[1],
            feature_groups=self.feature_groups,
        )


def fit_arrays(
    batches: Any,
    *,
    axis: AxisSpec = -1,
    ddof: int = 0,
    nan: NanPolicy = "skip",
    columns: Sequence[str] | None = None,
    quantiles: str | Sequence[float] | None = None,
    histogram: bool = False,
    exact: bool = False,
    by: Any = None,
    weights: Any = None,
) -> Stats:
    """Statistics of data in memory: an array, a list of rows, a DataFrame (pandas, polars), an
    Arrow table, or an iterable of such batches that together form one dataset.

    ``by`` / ``weights`` (one dataset, not a list of batches): each row's group key and weight,
    as arrays or names of columns of a table (see :meth:`Accumulator.update`).

    As scikit-learn's ``check_array``: a list of numbers or of Python sequences is ONE array
    (a list of rows); a list of arrays or tables, or any other iterable, is a list of batches.
    ``exact`` (with ``quantiles``) goes over the batches again, so they must be an array or a
    list / tuple, not a one-shot iterator.
    """
    single = is_dataset(batches)
    if exact and not (single or isinstance(batches, list | tuple)):
        raise UsageError("exact: exact quantiles read the batches twice: pass an array or a list")
    parts = list(batches_of(batches, "batches"))
    if (by is not None or weights is not None) and not single:
        raise UsageError("by / weights: pass one dataset (use Accumulator.update for batches)")
    acc = Accumulator(
        axis, ddof=ddof, nan=nan, columns=columns, quantiles=quantiles, histogram=histogram
    )
    for i, b in enumerate(parts):
        acc._update(b, "batches" if single else f"batches[{i}]", by, weights)
    stats = acc.result()
    _check_exact(acc.levels, exact, [])
    if exact and acc.levels is not None and stats.sketch is not None:

        def one_pass(spec: SketchSpec) -> Moments:
            again = Accumulator(axis, ddof=ddof, nan=nan, columns=columns)
            again.sketch = spec
            for i, b in enumerate(parts):
                again._update(b, "batches" if single else f"batches[{i}]")
            assert again.moments is not None
            return again.moments

        stats.exact_quantiles = _exact_quantiles(stats.sketch, acc.levels, one_pass)
    warn_empty(stats)
    return stats
