"""``--engine dask`` for tables (Parquet, Arrow IPC files): fit by row groups, apply by shard.

fit: tasks of whole row groups / record batches (:mod:`normstat.engine.units`) each return a
tiling of their chunks; adjacent tilings are joined on the cluster as a tree, and the final
tiling folds to the local engine's result, bit for bit (:mod:`normstat.engine.tiling`).

apply: a table file can only be written whole, from its first row (Parquet and Arrow IPC files
end with a footer that indexes everything before it), so one task writes one output file: a
directory of parts, one per input shard with the shard's file name and format, or, from one
shard, one file. Each part is what the local engine writes for that shard alone: the feature
columns normalised, every other column passed through unchanged. A worker writes a temporary
file beside its part and renames it into place, so a task that Dask runs twice (its worker was
thought lost) never leaves a torn part; the client writes everything inside a temporary
directory renamed into place only when every part is written.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from normstat.core.checks import NanPolicy
from normstat.core.histogram import SketchSpec
from normstat.core.layout import AxisLayout
from normstat.core.moments import Moments
from normstat.core.transform import TransformParams
from normstat.engine.dask import _outcome, _track, dask_client
from normstat.engine.dask_apply import part_names
from normstat.engine.plan import counter_tree
from normstat.engine.ranged import blame
from normstat.engine.tiling import join, total
from normstat.engine.units import UnitTask, check_seekable, fit_units, unit_tasks
from normstat.errors import UsageError
from normstat.sinks import atomic_directory, atomic_output, check_writable
from normstat.sinks.table import TABLE_OUTPUTS, table_output_format
from normstat.sources.ranges import RowRange, open_range
from normstat.sources.table import TableSource

Progress = Callable[[int], None]


def fit_tables_dask(
    srcs: Sequence[TableSource],
    rows: int,
    task_rows: int,
    layout: AxisLayout,
    nan_policy: NanPolicy = "skip",
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    sketch: SketchSpec | None = None,
) -> Moments:
    """Moments of every shard's feature columns, equal to the local engine's."""
    check_seekable(srcs)
    tasks = unit_tasks(srcs, rows, task_rows)
    if not tasks:
        return Moments.empty(layout.n_features)
    features = srcs[0].features
    with dask_client(scheduler, workers) as client:
        leaves: list[Any] = []

        def leaf(t: UnitTask) -> tuple[int, Any]:
            fut = client.submit(
                fit_units, t, rows, layout, nan_policy, features, sketch, pure=False
            )
            leaves.append(fut)
            return 0, fut

        # submitted as leaves are, so merges run (and free the leaves' results) as tasks finish
        root = counter_tree(
            (leaf(t) for t in tasks), lambda a, b: client.submit(join, a, b, pure=False)
        )
        result = client.submit(total, root, layout.n_features, pure=False)
        _track(leaves, _sizes(leaves, tasks), progress, _where(leaves, tasks))
        return _outcome(result.result)


def _sizes(futures: list[Any], tasks: Sequence[Any]) -> dict[str, int]:
    """Rows of each future's task, for progress."""
    return {f.key: t.rows for f, t in zip(futures, tasks, strict=True)}


def _where(futures: list[Any], tasks: Sequence[Any]) -> dict[str, RowRange]:
    """The first rows of each future's task, to name it in an error."""
    return {f.key: t.pieces[0] for f, t in zip(futures, tasks, strict=True)}


@dataclass(frozen=True)
class PartJob:
    """Write the whole shard ``source`` as the file ``target``, shown to the user as ``shown``."""

    source: RowRange
    target: str
    format: str
    shown: str

    @property
    def rows(self) -> int:
        return self.source.rows

    @property
    def pieces(self) -> tuple[RowRange, ...]:
        return (self.source,)


def write_part(
    job: PartJob,
    params: TransformParams,
    inverse: bool,
    dtype: np.dtype,
    rows: int,
) -> int:
    """On a worker: the part through a temporary file, renamed into place when complete."""
    from normstat.apply_table import write_table

    tmp = _temporary(job.target, secrets.token_hex(4))
    with blame(job.pieces):
        src = open_range(job.source)
        try:
            table: TableSource = src  # type: ignore[assignment]
            n = write_table(
                table,
                tmp,
                job.format,
                params,
                inverse=inverse,
                dtype=dtype,
                rows=rows,
                where=job.shown,
            )
            os.replace(tmp, job.target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        finally:
            src.close()
    return n


def _temporary(target: str, token: str, escape: bool = False) -> str:
    """A worker's temporary file for ``target`` (with ``escape``: a glob of all of them)."""
    folder, name = os.path.split(target)
    if escape:
        folder, name = glob.escape(folder), glob.escape(name)
    return os.path.join(folder, f".{name}.{token}.tmp")


def apply_tables_dask(
    srcs: Sequence[TableSource],
    out: str,
    params: TransformParams,
    *,
    inverse: bool,
    dtype: np.dtype,
    rows: int,
    force: bool,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> None:
    """Workers write the parts (several shards) or the one file (one shard) of OUT."""
    check_seekable(srcs)
    fmt = _output_format(srcs, out)
    check_writable(out, force=force, inputs=tuple(s.path for s in srcs))

    def run(jobs: list[PartJob]) -> None:
        try:
            _write_parts(jobs, params, inverse, dtype, rows, scheduler, workers, progress)
        finally:
            for j in jobs:  # temporaries of tasks whose worker died while writing
                for left in glob.glob(_temporary(j.target, "*", escape=True)):
                    with contextlib.suppress(OSError):
                        os.unlink(left)

    if len(srcs) == 1:
        with atomic_output(out) as tmp:
            run([PartJob(_whole(srcs[0]), os.path.abspath(tmp), fmt, out)])
        return
    names = part_names(srcs, out)  # type: ignore[arg-type]
    with atomic_directory(out) as tmp:
        run(
            [
                PartJob(_whole(s), os.path.abspath(os.path.join(tmp, n)), s.format, f"{out}/{n}")
                for s, n in zip(srcs, names, strict=True)
            ]
        )


def _whole(src: TableSource) -> RowRange:
    n = src.shape[0]
    assert n is not None  # a table with row groups / record batches knows its rows
    return RowRange.of(src, 0, n)  # type: ignore[arg-type]


def _output_format(srcs: Sequence[TableSource], out: str) -> str:
    """The format of OUT's file (one shard), after refusing what workers cannot write."""
    if out == "-":
        raise UsageError("-o - streams rows in order from one process; use --engine local")
    fmt = table_output_format(out, srcs[0].format)
    if fmt in ("npy", "hdf5"):
        raise UsageError(
            f"--engine dask writes a table as table files (parts named as the shards); "
            f"{fmt} output of a table needs --engine local",
            path=out,
        )
    suffix = os.path.splitext(out.rstrip("/"))[1].lower()
    named = any(suffix in sfx for _, sfx in TABLE_OUTPUTS)
    if len(srcs) > 1 and named:
        raise UsageError(
            "--engine dask writes several shards as a directory of parts, one per shard (a "
            "table file can only be written whole, by one process): give OUT without a "
            "suffix, or use --engine local for one file",
            path=out,
        )
    return fmt


def _write_parts(
    jobs: list[PartJob],
    params: TransformParams,
    inverse: bool,
    dtype: np.dtype,
    rows: int,
    scheduler: str | None,
    workers: int | None,
    progress: Progress | None,
) -> None:
    with dask_client(scheduler, workers) as client:
        futures = [
            client.submit(write_part, j, params, inverse, dtype, rows, pure=False) for j in jobs
        ]
        _track(list(futures), _sizes(futures, jobs), progress, _where(futures, jobs))
        _outcome(lambda: client.gather(futures))
