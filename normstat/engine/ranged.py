"""What one distributed task does, wherever it runs: reopen its rows, then the shared steps.

These functions import no scheduler: the Dask engine ships them to workers, and tests can call
them directly. A fit task is :func:`chunk_task` over its chunks, merged into the local engine's
:class:`TreeMerger`; an apply task is the apply pipeline's read-transform-write over its rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from normstat.core.checks import NanPolicy
from normstat.core.histogram import SketchSpec
from normstat.core.layout import AxisLayout
from normstat.core.moments import Moments, TreeMerger
from normstat.engine.plan import FitTask
from normstat.engine.task import FitStep, chunk_task
from normstat.engine.transform import TransformStep
from normstat.errors import DataError, NormstatError
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


@dataclass
class TaskResult:
    """A fit task's merge tree, and the record its source kept of the images it read (None
    for other sources): both join with the next task's, in data order."""

    tree: TreeMerger
    record: Any = None

    def joined(self, other: TaskResult) -> TaskResult:
        record = self.record if other.record is None else other.record
        if self.record is not None and other.record is not None:
            record = self.record.joined(other.record)
        return TaskResult(self.tree.joined(other.tree), record)

    def total(self) -> Moments:
        return self.tree.total()


def fit_range(
    task: FitTask,
    rows: int,
    layout: AxisLayout,
    nan_policy: NanPolicy,
    features: list[str] | None = None,
    sketch: SketchSpec | None = None,
) -> TaskResult:
    """The merge tree of the task's chunks: the local engine's per-chunk step and merges."""
    tree = TreeMerger(layout.n_features, task.first)
    step = FitStep(layout, nan_policy, features, sketch)
    records: list[Any] = []
    with blame(task.pieces):
        for piece in task.pieces:
            for chunk in read_range(piece, rows, step, records):
                tree.add(chunk_task(chunk, layout, nan_policy, features, sketch))
    if tree.stop - task.first != task.chunks:
        first = task.pieces[0]
        raise DataError(
            f"rows {first.start}:{first.stop} were read as {tree.stop - task.first} chunks, "
            f"{task.chunks} were planned: did the file change during the fit?",
            path=first.label,
        )
    record = None
    for r in records:
        record = r if record is None else record.joined(r)
    return TaskResult(tree, record)


def join(left: TaskResult, right: TaskResult) -> TaskResult:
    """Two adjacent tasks' results as one (a picklable task)."""
    return left.joined(right)


def apply_range(job: Any, rows: int, step: TransformStep) -> tuple[int, list[Any]]:
    """Run one apply job (:mod:`normstat.engine.dask_apply`); returns the rows written and
    the receipts of what its writer uploaded (parts of one object in a bucket), if any."""
    with blame(job.pieces):
        rows_written, receipts = job.run(rows, step)
        return int(rows_written), list(receipts)
