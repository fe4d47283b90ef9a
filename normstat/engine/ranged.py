"""What one distributed task does, wherever it runs: reopen its rows, then the shared steps.

These functions import no scheduler: the Dask engine ships them to workers, and tests can call
them directly. A fit task is :func:`chunk_task` over its chunks merged by :func:`merge_all`, the
very functions of the local engine; an apply task is :func:`transform_block` over its chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from normstat.core.checks import NanPolicy
from normstat.core.histogram import SketchSpec
from normstat.core.layout import AxisLayout
from normstat.core.moments import Moments, merge_all
from normstat.core.transform import TransformParams, transform_block
from normstat.engine.plan import FitTask, WriteTask
from normstat.engine.task import chunk_task
from normstat.errors import DataError, NormstatError
from normstat.sinks.ranged import RangeTarget
from normstat.sources.ranges import RowRange, read_range


@contextmanager
def blame(pieces: tuple[RowRange, ...]) -> Iterator[None]:
    """Errors name files as the user gave them (tasks open absolute paths), and an unexpected
    failure on a worker becomes one line naming the file and rows."""
    try:
        yield
    except NormstatError as exc:
        exc.path = next((p.label for p in pieces if p.path == exc.path), exc.path)
        raise
    except Exception as exc:
        first = pieces[0]
        raise DataError(
            f"rows {first.start}:{first.stop} failed on a Dask worker "
            f"({type(exc).__name__}: {exc})",
            path=first.label,
            dataset=first.dataset,
        ) from None


def fit_range(
    task: FitTask,
    rows: int,
    layout: AxisLayout,
    nan_policy: NanPolicy,
    features: list[str] | None = None,
    sketch: SketchSpec | None = None,
) -> Moments:
    """Moments of the task's chunks, merged exactly as the local engine merges them."""
    with blame(task.pieces):
        chunks = (c for piece in task.pieces for c in read_range(piece, rows))
        parts = (chunk_task(c, layout, nan_policy, features, sketch) for c in chunks)
        return merge_all(parts, layout.n_features)


def apply_range(
    task: WriteTask,
    target: RangeTarget,
    rows: int,
    layout: AxisLayout,
    params: TransformParams,
    inverse: bool,
    dtype: np.dtype,
) -> int:
    """Transform the task's rows into ``target``; returns the number of rows written."""
    out = task.out_start
    with blame(task.pieces):
        writer = target.open()
        try:
            for piece in task.pieces:
                for chunk in read_range(piece, rows):
                    writer.write(out, transform_block(chunk.data, layout, params, inverse, dtype))
                    out += chunk.data.shape[0]
        finally:
            writer.close()
    return out - task.out_start


def merge_pair(a: Moments, b: Moments) -> Moments:
    """The reduction operator as a plain function (a picklable task)."""
    return a.merge(b)
