"""The use cases, shared by the CLI and the library: fit, apply, merge, export, diff, drift.

Each CLI command parses its options and calls exactly one function here with the same parameter
names; nothing here prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from normstat import artifact
from normstat.core.checks import NAN_POLICIES, NanPolicy
from normstat.core.drift import Drift, check_comparable, compare
from normstat.core.layout import AxisLayout, AxisSpec
from normstat.core.moments import Moments, merge_all
from normstat.core.stats import Stats
from normstat.core.transform import TransformParams, transform_block, transform_params
from normstat.engine import checkpoint as checkpoints
from normstat.engine.local import fit_local
from normstat.engine.task import chunk_task
from normstat.errors import ArtifactError, DataError, UsageError
from normstat.report import feature_names
from normstat.sinks import atomic_output_for, check_writable, open_array_writer, writer_format
from normstat.sources import ArraySource, Chunk, describe, open_sources
from normstat.sources.base import DEFAULT_CHUNK_BYTES, known_rows, total_rows

ChunkSize = int | str | None
"""Rows per chunk (``65536``), a byte budget (``"64MB"``, ``"1GiB"``), or ``None`` (32 MiB)."""


class ProgressHook(Protocol):
    """What fit / apply report to: the total number of samples (None when not known before
    reading, as for CSV and stdin) and the input bytes per sample (when known), then samples as
    they are done."""

    def start(self, total: int | None, row_bytes: int = 0) -> None: ...

    def advance(self, n: int) -> None: ...


# ---------------------------------------------------------------------------------------------
# fit


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
    _check_options(ddof, nan)
    specs = [sources] if isinstance(sources, str) else list(sources)
    _check_engine(engine, scheduler, specs, checkpoint)
    if resume and not checkpoint:
        raise UsageError("--resume needs --checkpoint PATH")
    if checkpoint and "-" in specs:
        raise UsageError("a fit from stdin cannot be checkpointed (it cannot be re-read)")
    srcs = open_sources(specs, dataset, input_format, columns)
    try:
        layout = _source_layout(axis, srcs[0])
        rows = _chunk_rows(srcs[0], chunk_size)
        saver, initial = None, None
        if checkpoint:
            saver, initial = _checkpointer(
                srcs, layout, rows, nan, checkpoint, checkpoint_every, resume
            )
        skip = saver.rows_done if saver else 0
        if progress is not None:
            progress.start(total_rows(srcs), _row_bytes(srcs[0]))
            progress.advance(skip)
        advance = None if progress is None else progress.advance
        if engine == "dask":
            task_rows = _task_rows(srcs[0], rows, task_size)
            cluster = {"scheduler": scheduler, "workers": workers, "progress": advance}
            moments = _fit_dask(srcs, rows, task_rows, layout, nan, cluster)
        else:
            moments = fit_local(
                _all_chunks(srcs, rows, skip),
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
        return Stats(
            moments, layout.feature_shape, layout.axis, ddof, srcs[0].features, describe(srcs)
        )
    finally:
        for s in srcs:
            s.close()


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


def _source_layout(axis: AxisSpec, src: ArraySource) -> AxisLayout:
    """The axis layout of a source; a table has one statistic per feature column."""
    layout = AxisLayout.create(axis, (0, *src.shape[1:]))
    if src.kind == "table" and layout.kept != (1,):
        raise UsageError(
            f"a table has one statistic per column: --axis must be -1 (or 1), received {axis}",
            path=src.path,
        )
    return layout


ENGINES: tuple[str, ...] = ("local", "dask")


def _check_engine(
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


def _task_rows(src: ArraySource, chunk_rows: int, task_size: ChunkSize) -> int:
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


def _row_bytes(src: ArraySource) -> int:
    return int(np.prod(src.shape[1:], dtype=np.int64)) * src.dtype.itemsize


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
        raise UsageError(f"--checkpoint-every must be positive, received {every}")
    print_ = checkpoints.fingerprint(
        srcs,
        axis=_plain(layout.axis),
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


def _all_chunks(srcs: list[ArraySource], rows: int, skip: int = 0) -> Iterable[Chunk]:
    """Chunks of every shard in order, starting ``skip`` samples in (when resuming)."""
    for s in srcs:
        n = known_rows(s) if skip else 0
        if skip and skip >= n:
            skip -= n
            continue
        yield from s.chunks(rows, skip)
        skip = 0


def _check_options(ddof: int, nan: str) -> None:
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


def _chunk_rows(src: ArraySource, chunk_size: ChunkSize) -> int:
    if chunk_size is None:
        return src.preferred_rows(DEFAULT_CHUNK_BYTES)
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
    return src.preferred_rows(max(1, int(float(m[1]) * _UNITS[unit])))


class Accumulator:
    """A running fit over in-memory batches: ``update(batch)`` as they come, ``merge(other)``.

    Batches are arrays whose axis 0 is the sample axis; all must share the shape of one sample.
    """

    def __init__(self, axis: AxisSpec = -1, *, ddof: int = 0, nan: NanPolicy = "skip") -> None:
        _check_options(ddof, nan)
        self.axis, self.ddof, self.nan = axis, ddof, nan
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
        part = chunk_task(Chunk(batch, "<array>", None, self.rows), layout, self.nan)
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
        )


def fit_arrays(
    batches: np.ndarray | Iterable[np.ndarray],
    *,
    axis: AxisSpec = -1,
    ddof: int = 0,
    nan: NanPolicy = "skip",
) -> Stats:
    """Statistics of an array, or of an iterable of batches that together form one dataset."""
    acc = Accumulator(axis, ddof=ddof, nan=nan)
    for b in [batches] if isinstance(batches, np.ndarray) else batches:
        acc.update(b)
    return acc.result()


# ---------------------------------------------------------------------------------------------
# apply


def transform(
    x: np.ndarray,
    stats: Stats,
    *,
    method: str = "zscore",
    feature_range: tuple[float, float] = (0.0, 1.0),
    inverse: bool = False,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Normalise (or, with ``inverse``, restore) an in-memory array with fitted statistics."""
    x = np.asarray(x)
    layout = _layout_for(stats, x.shape, "array")
    params = transform_params(stats, method, feature_range).broadcast(layout.broadcast_shape)
    return _transform_block(x, layout, params, inverse, np.dtype(dtype))


def _transform_block(
    x: np.ndarray, layout: AxisLayout, params: TransformParams, inverse: bool, dtype: np.dtype
) -> np.ndarray:
    return transform_block(x, layout, params, inverse, dtype)


def _layout_for(stats: Stats, shape: tuple[int, ...], where: str) -> AxisLayout:
    layout = AxisLayout.create(stats.axis, shape)
    if layout.feature_shape != tuple(stats.feature_shape):
        raise ArtifactError(
            f"feature shape {list(layout.feature_shape)} of the data (axis "
            f"{None if stats.axis is None else list(stats.axis)}) disagrees with "
            f"{list(stats.feature_shape)} in the statistics",
            path=where,
        )
    return layout


def apply(
    stats: Stats | str,
    sources: str | Sequence[str],
    out: str,
    *,
    dataset: str | None = None,
    method: str = "zscore",
    feature_range: tuple[float, float] = (0.0, 1.0),
    inverse: bool = False,
    dtype: Any = "float32",
    chunk_size: ChunkSize = None,
    force: bool = False,
    input_format: str | None = None,
    columns: Sequence[str] | None = None,
    progress: ProgressHook | None = None,
    workers: int | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    task_size: ChunkSize = None,
) -> None:
    """Stream SOURCE through the transform into OUT (``"-"``: an NPY stream on stdout, or an
    Arrow IPC stream for tables, whose other columns pass through unchanged).

    ``engine="dask"``: workers read and write their own rows in parallel, into one Zarr / NPY
    array, or (several shards, OUT without a known suffix) a directory of parts named as the
    shards (tables: always, when several shards). HDF5 output, CSV and streams need the local
    engine.
    """
    if isinstance(stats, str):
        stats = artifact.load(stats)
    out_dtype = _float_dtype(dtype)
    paths = [sources] if isinstance(sources, str) else list(sources)
    _check_engine(engine, scheduler, paths)
    srcs = open_sources(paths, dataset, input_format, _apply_columns(stats, columns))
    try:
        layout = _layout_for(stats, (0, *srcs[0].shape[1:]), srcs[0].path)
        params = transform_params(stats, method, feature_range).broadcast(layout.broadcast_shape)
        rows = _chunk_rows(srcs[0], chunk_size)
        if progress is not None:
            progress.start(total_rows(srcs), _row_bytes(srcs[0]))
        if srcs[0].kind == "table" and engine == "dask":
            from normstat.engine.dask_tables import apply_tables_dask

            apply_tables_dask(
                srcs,  # type: ignore[arg-type]
                out,
                params,
                inverse=inverse,
                dtype=out_dtype,
                rows=rows,
                force=force,
                scheduler=scheduler,
                workers=workers,
                progress=None if progress is None else progress.advance,
            )
            return
        if srcs[0].kind == "table":
            from normstat.apply_table import apply_table

            options = _writer_options("hdf5", srcs, stats, method, inverse, params)
            apply_table(
                srcs,  # type: ignore[arg-type]
                out,
                params,
                inverse=inverse,
                dtype=out_dtype,
                rows=rows,
                force=force,
                progress=progress,
                array_options=options,
            )
            return
        shape = (sum(s.shape[0] for s in srcs), *srcs[0].shape[1:])
        if engine == "dask":
            check_writable(out, force=force, inputs=tuple(s.path for s in srcs))
            _apply_dask(
                srcs,
                out,
                attrs=_attrs(stats, method, inverse, params),
                transform=(layout, params, inverse, out_dtype),
                rows=rows,
                task_size=task_size,
                cluster={"scheduler": scheduler, "workers": workers},
                progress=progress,
            )
            return
        blocks = _transformed(srcs, rows, layout, params, inverse, out_dtype, progress)
        if out == "-":
            from normstat.sinks.npy import NpyStreamWriter

            _drain(NpyStreamWriter(shape, out_dtype), blocks, "<stdout>")
            return
        check_writable(out, force=force, inputs=tuple(s.path for s in srcs))
        fmt = writer_format(out, srcs[0].format)
        options = _writer_options(fmt, srcs, stats, method, inverse, params)
        with atomic_output_for(out, fmt) as tmp:
            with _write_errors(out):
                writer = open_array_writer(fmt, tmp, shape, out_dtype, **options)
            _drain(writer, blocks, out)
    finally:
        for s in srcs:
            s.close()


def _apply_columns(stats: Stats, columns: Sequence[str] | None) -> Sequence[str] | None:
    """A table is read by the artifact's feature names; ``columns`` may only repeat them."""
    if columns is None or stats.features is None:
        return stats.features if columns is None else columns
    if list(columns) != list(stats.features):
        raise UsageError(
            f"--columns {list(columns)} disagree with the features of the statistics "
            f"{stats.features}"
        )
    return columns


def _float_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise UsageError(f"--dtype {dtype!r} is not a numpy dtype") from None
    if dt.kind != "f":
        raise UsageError(f"--dtype must be a floating type (float16/32/64), received {dt}")
    return dt


def _transformed(
    srcs: list[ArraySource],
    rows: int,
    layout: AxisLayout,
    params: TransformParams,
    inverse: bool,
    dtype: np.dtype,
    progress: ProgressHook | None,
) -> Iterable[np.ndarray]:
    for chunk in _all_chunks(srcs, rows):
        yield _transform_block(chunk.data, layout, params, inverse, dtype)
        if progress is not None:
            progress.advance(chunk.data.shape[0])


def _drain(writer: Any, blocks: Iterable[np.ndarray], out: str) -> None:
    """Write every block, then close. On failure the writer is closed quietly (a full disk makes
    closing fail too) so the first error, not a follow-on, is what the user sees. Only failures
    of the writer itself are reported as write errors; a closed stdout pipe passes through."""
    start = 0
    try:
        for block in blocks:
            with _write_errors(out):
                writer.write(start, block)
            start += block.shape[0]
    except BaseException:
        _close_quietly(writer)
        raise
    with _write_errors(out):
        writer.close()


@contextlib.contextmanager
def _write_errors(out: str) -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise
    except (OSError, RuntimeError) as exc:  # h5py reports some write failures as RuntimeError
        raise DataError(f"cannot write the output ({os_reason(exc)})", path=out) from None


def _close_quietly(writer: Any) -> None:
    with contextlib.suppress(Exception):
        writer.close()


def os_reason(exc: BaseException) -> str:
    """One line for an OS-level failure: ``strerror`` when there is an errno (h5py's messages
    run over several lines), else the first line of the message."""
    errno = getattr(exc, "errno", None)
    if errno:
        return os.strerror(errno)
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _writer_options(
    fmt: str,
    srcs: list[ArraySource],
    stats: Stats,
    method: str,
    inverse: bool,
    params: TransformParams,
) -> dict[str, Any]:
    if fmt == "zarr":
        from normstat.sinks.zarr import zarr_writer_options

        return zarr_writer_options(srcs, _attrs(stats, method, inverse, params))
    if fmt != "hdf5":
        return {}
    single = srcs[0] if len(srcs) == 1 and srcs[0].format == "hdf5" else None
    attrs = _attrs(stats, method, inverse, params)
    return {
        "dataset": srcs[0].dataset or "/data",
        "like": getattr(single, "handle", None),
        "attrs": attrs,
    }


def _attrs(stats: Stats, method: str, inverse: bool, params: TransformParams) -> dict[str, Any]:
    """What an output records about how it was made (HDF5 / Zarr attributes)."""
    return {
        "normstat_method": method,
        "normstat_inverse": inverse,
        "normstat_shift": params.shift.reshape(stats.feature_shape),
        "normstat_scale": params.scale.reshape(stats.feature_shape),
        "normstat_stats": json.dumps(artifact.to_dict(stats), allow_nan=False),
    }


def _apply_dask(
    srcs: list[ArraySource],
    out: str,
    *,
    attrs: dict[str, Any],
    transform: tuple[AxisLayout, TransformParams, bool, np.dtype],
    rows: int,
    task_size: ChunkSize,
    cluster: dict[str, Any],
    progress: ProgressHook | None,
) -> None:
    """Workers transform and write their own rows; see :mod:`normstat.engine.dask_apply`."""
    from normstat.engine.dask_apply import apply_to_output, runner

    advance = None if progress is None else progress.advance
    run = runner(rows, *transform, progress=advance, **cluster)
    apply_to_output(
        srcs,
        out,
        dtype=transform[3],
        task_rows=lambda s: _task_rows(s, rows, task_size),
        attrs=attrs,
        run=run,
        rows=rows,
    )


# ---------------------------------------------------------------------------------------------
# merge and export


def merge(parts: Sequence[Stats | str]) -> Stats:
    """Exact merge of the statistics of disjoint parts (e.g. shards fitted separately)."""
    loaded = [artifact.load(p) if isinstance(p, str) else p for p in parts]
    names = [p if isinstance(p, str) else f"part {i}" for i, p in enumerate(parts)]
    if not loaded:
        raise UsageError("nothing to merge")
    first = loaded[0]
    for name, s in zip(names[1:], loaded[1:], strict=True):
        for key in ("feature_shape", "axis", "features", "ddof"):
            a, b = _plain(getattr(first, key)), _plain(getattr(s, key))
            if a != b:
                raise ArtifactError(f"{key} {b} disagrees with {a} of {names[0]}", path=name)
    moments = merge_all((s.moments for s in loaded), first.moments.n_features)
    return Stats(
        moments,
        first.feature_shape,
        first.axis,
        first.ddof,
        first.features,
        _merged_source([s.source for s in loaded]),
    )


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple | list) else v


def _merged_source(sources: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(sources[0])
    out["paths"] = [p for s in sources for p in s.get("paths", [])]
    shapes = [s.get("shape") for s in sources]
    if all(isinstance(sh, list) and sh for sh in shapes):
        out["shape"] = [sum(sh[0] for sh in shapes), *shapes[0][1:]]  # type: ignore[index]
    dtypes = {s.get("dtype") for s in sources}
    if len(dtypes) > 1:
        try:
            out["dtype"] = str(np.result_type(*dtypes))
        except TypeError:
            out["dtype"] = "mixed"
    return out


EXPORT_TARGETS: tuple[str, ...] = ("keras", "torch", "sklearn")


def export(stats: Stats | str, to: str) -> dict[str, Any]:
    """The statistics as the named framework takes them (plain lists, JSON-ready).

    Near-constant features get variance / std 1, so the framework only centres them, exactly as
    ``apply`` does (Keras would otherwise divide by its epsilon and blow them up).
    """
    if isinstance(stats, str):
        stats = artifact.load(stats)
    mean = np.where(stats.count > 0, stats.mean, 0.0)
    scale = stats.scale
    if to == "keras":
        return {
            "axis": None if stats.axis is None else list(stats.axis),
            "mean": mean.tolist(),
            "variance": (scale * scale).tolist(),
        }
    if to == "torch":
        return {"mean": mean.tolist(), "std": scale.tolist()}
    if to == "sklearn":
        counts = stats.count
        seen = (
            int(counts.flat[0])
            if counts.size and (counts == counts.flat[0]).all()
            else counts.tolist()
        )
        return {
            "mean_": mean.tolist(),
            "var_": np.nan_to_num(stats.var).tolist(),
            "scale_": scale.tolist(),
            "n_samples_seen_": seen,
            "n_features_in_": int(np.prod(stats.feature_shape)),
        }
    raise UsageError(f"--to must be one of {', '.join(EXPORT_TARGETS)}, received {to!r}")


# ---------------------------------------------------------------------------------------------
# drift


def diff(a: Stats | str, b: Stats | str) -> Drift:
    """Drift of statistics B relative to A (e.g. serving vs training), worst feature first."""
    sa, sb = (artifact.load(s) if isinstance(s, str) else s for s in (a, b))
    check_comparable(sa, sb, a if isinstance(a, str) else "A", b if isinstance(b, str) else "B")
    return compare(sa, sb, feature_names(sa))


def drift(
    stats: Stats | str,
    sources: str | Sequence[str],
    *,
    dataset: str | None = None,
    nan: NanPolicy = "skip",
    chunk_size: ChunkSize = None,
    workers: int | None = None,
    input_format: str | None = None,
    columns: Sequence[str] | None = None,
    progress: ProgressHook | None = None,
) -> Drift:
    """Fit SOURCE with the axis and ddof of STATS (a table: its feature columns), then compare it
    to STATS (see :func:`diff`)."""
    base = artifact.load(stats) if isinstance(stats, str) else stats
    new = fit(
        sources,
        dataset=dataset,
        axis=base.axis,
        ddof=base.ddof,
        nan=nan,
        chunk_size=chunk_size,
        workers=workers,
        input_format=input_format,
        columns=_apply_columns(base, columns),
        progress=progress,
    )
    name = stats if isinstance(stats, str) else "STATS"
    check_comparable(base, new, name, ", ".join(new.source.get("paths", [])) or "SOURCE")
    return compare(base, new, feature_names(base))
