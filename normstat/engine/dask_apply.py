"""``apply --engine dask``: decide the output(s), create them empty, let workers fill them.

Two shapes of output:

* one array (``OUT.zarr`` or ``OUT.npy``): tasks are cut at multiples of the output's chunk rows
  in output coordinates (a task may span two input shards), so each Zarr chunk has one writer;
* a directory of parts (several inputs, OUT without a known suffix): one part per input shard,
  same file name and format, each cut into its own tasks. A format that can only be written whole
  (``align is None``, e.g. Parquet) gets one task per part, so parts are still written in parallel.

HDF5 is refused: HDF5 has no safe concurrent writers (parallel HDF5 needs MPI and a parallel
build of the library), so many processes writing one file would corrupt it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from normstat.core.layout import AxisLayout
from normstat.core.transform import TransformParams
from normstat.engine.dask import apply_dask
from normstat.engine.plan import WriteTask, aligned, concat_tasks, shard_ranges
from normstat.errors import UsageError
from normstat.sinks import ARRAY_WRITERS, atomic_directory, atomic_output_for
from normstat.sinks.ranged import RangeTarget, range_target
from normstat.sources.base import ArraySource

TaskRows = Callable[[ArraySource], int]
"""Rows per task for a shard, before alignment to the output's chunks."""

Run = Callable[[list[tuple[WriteTask, RangeTarget]]], int]
"""Executes (task, target) jobs somewhere; returns the rows written."""


def suffix_format(out: str) -> str | None:
    """The output format OUT's suffix names, or ``None`` if it names none."""
    suffix = os.path.splitext(out.rstrip("/"))[1].lower()
    return next((name for name, sfx, _, _ in ARRAY_WRITERS if suffix in sfx), None)


def refuse_hdf5(fmt: str, where: str) -> None:
    if fmt == "hdf5":
        raise UsageError(
            "--engine dask cannot write HDF5: HDF5 has no safe concurrent writers (parallel "
            "HDF5 needs MPI). Write OUT.zarr or OUT.npy, or use --engine local for HDF5 output",
            path=where,
        )


def apply_to_output(
    srcs: list[ArraySource],
    out: str,
    *,
    dtype: np.dtype,
    task_rows: TaskRows,
    attrs: dict[str, Any],
    run: Run,
    rows: int | None = None,
) -> None:
    """Write all shards into OUT (one array, or a directory of parts); ``run`` executes jobs.

    ``rows`` is the read block, a bound on the output's chunk rows (Zarr)."""
    if out == "-":
        raise UsageError("-o - streams rows in order from one process; use --engine local")
    fmt = suffix_format(out)
    if len(srcs) > 1 and fmt is None:
        _to_parts(srcs, out, dtype, task_rows, attrs, run, rows)
    else:
        _to_one(srcs, out, fmt or srcs[0].format, dtype, task_rows, attrs, run, rows)


def _to_one(
    srcs: list[ArraySource],
    out: str,
    fmt: str,
    dtype: np.dtype,
    task_rows: TaskRows,
    attrs: dict[str, Any],
    run: Run,
    rows: int | None,
) -> None:
    refuse_hdf5(fmt, out)
    shape = (sum(s.shape[0] for s in srcs), *srcs[0].shape[1:])
    like = srcs[0] if len(srcs) == 1 else None
    with atomic_output_for(out, fmt) as tmp:
        target = range_target(fmt, tmp, shape, dtype, like=like, attrs=attrs, rows=rows)
        target.create()
        rows = aligned(task_rows(srcs[0]), target.align, shape[0])
        run([(t, target) for t in concat_tasks(srcs, rows)])


def _to_parts(
    srcs: list[ArraySource],
    out: str,
    dtype: np.dtype,
    task_rows: TaskRows,
    attrs: dict[str, Any],
    run: Run,
    rows: int | None,
) -> None:
    names = part_names(srcs, out)
    with atomic_directory(out) as tmp:
        jobs: list[tuple[WriteTask, RangeTarget]] = []
        for src, name in zip(srcs, names, strict=True):
            refuse_hdf5(src.format, src.path)
            part = os.path.join(tmp, name)
            target = range_target(
                src.format, part, src.shape, dtype, like=src, attrs=attrs, rows=rows
            )
            target.create()
            rows = aligned(task_rows(src), target.align, src.shape[0])
            jobs += [(WriteTask((r,), r.start), target) for r in shard_ranges(src, rows)]
        run(jobs)


def part_names(srcs: list[ArraySource], out: str) -> list[str]:
    """One part per shard, named as the shard; names must be unique and OUT hold no input."""
    root = os.path.abspath(out.rstrip("/")) + os.sep
    names: dict[str, str] = {}
    for s in srcs:
        path = os.path.abspath(s.path.rstrip("/"))
        if (path + os.sep).startswith(root):
            raise UsageError("the output directory would contain this input", path=s.path)
        name = os.path.basename(path)
        if name in names:
            raise UsageError(
                f"two shards share the file name {name!r} ({names[name]}), so their parts would "
                "collide; rename one, or write a single OUT.zarr",
                path=s.path,
            )
        names[name] = s.path
    return list(names)


def runner(
    rows: int,
    layout: AxisLayout,
    params: TransformParams,
    inverse: bool,
    dtype: np.dtype,
    **cluster: Any,
) -> Run:
    """The ``run`` argument of :func:`apply_to_output` for a Dask cluster."""

    def run(jobs: list[tuple[WriteTask, RangeTarget]]) -> int:
        return apply_dask(jobs, rows, layout, params, inverse, dtype, **cluster)

    return run
