"""The Dask engine: the local engine's per-chunk step and merge, run as dask.distributed tasks.

Tasks carry row ranges (a path, a dataset, two row numbers), never data; each worker reopens its
rows itself, so the data goes from storage to the worker that reduces it and only a few hundred
bytes of moments come back per task. The merges run on the cluster as a tree submitted in the
same binary-counter order as the local engine's :func:`merge_all`, so the tree's shape does not
depend on which worker finishes first: a run is reproducible, bit for bit.

A worker that dies is Dask's to handle: the scheduler re-runs the tasks whose results were lost
(every task is a pure function of its range). If workers keep dying on the same task, Dask gives
up with ``KilledWorker``, which becomes a clear error here; either way no partial result is
returned. dask and distributed are an optional extra, imported only by this module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from normstat import interrupts
from normstat.core.checks import NanPolicy
from normstat.core.histogram import SketchSpec
from normstat.core.layout import AxisLayout
from normstat.core.moments import Moments
from normstat.engine.plan import FitTask
from normstat.engine.ranged import apply_range, fit_range, join
from normstat.errors import DataError, NormstatError, UsageError
from normstat.lazy import optional_module
from normstat.sources.ranges import RowRange

Progress = Callable[[int], None]
"""Called on the client with the number of samples a finished task covered."""

ENV_SCHEDULER = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT = 10  # seconds; a scheduler that does not answer by then is reported as down


def distributed_module() -> ModuleType:
    """dask.distributed, or a clear error naming the extra that provides it."""
    return optional_module("distributed", "dask", "--engine dask")


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A client of the cluster at ``scheduler`` (or $DASK_SCHEDULER_ADDRESS); with neither, of
    a ``LocalCluster`` of ``workers`` single-threaded processes, closed on exit."""
    distributed = distributed_module()
    address = scheduler or os.environ.get(ENV_SCHEDULER) or None
    if address is None:
        with (
            distributed.LocalCluster(
                n_workers=workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.CRITICAL,  # task errors reach the user as one line
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
        return
    if workers is not None:
        raise UsageError(
            f"--workers sizes the cluster normstat starts itself; the cluster at {address} "
            "has its own workers (drop --workers or --scheduler)"
        )
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    with client:
        yield client


def fit_dask(
    tasks: Sequence[FitTask],
    rows: int,
    layout: AxisLayout,
    nan_policy: NanPolicy = "skip",
    *,
    features: list[str] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    sketch: SketchSpec | None = None,
    records: list[Any] | None = None,
) -> Moments:
    """Moments of all ``tasks`` (from :func:`~normstat.engine.plan.fit_tasks`), arrays or
    tables: each task's merge tree, adjacent trees joined on the cluster, equal to the local
    engine's result bit for bit whatever the order in which workers finish. ``records``: the
    joined record of a source that keeps one (images) is appended to it."""
    if not tasks:
        return Moments.empty(layout.n_features)
    with dask_client(scheduler, workers) as client:
        leaves = [
            client.submit(fit_range, t, rows, layout, nan_policy, features, sketch, pure=False)
            for t in tasks
        ]
        nodes = list(leaves)
        while len(nodes) > 1:  # joins submitted up front: each runs as its two inputs finish
            pairs = [
                client.submit(join, a, b, pure=False)
                for a, b in zip(nodes[::2], nodes[1::2], strict=False)
            ]
            nodes = pairs + nodes[len(pairs) * 2 :]
        track(leaves, tasks, progress)
        result = outcome(nodes[0].result)
        if records is not None and result.record is not None:
            records.append(result.record)
        return result.total()


def track(futures: list[Any], tasks: Sequence[Any], progress: Progress | None) -> None:
    """Report tasks as they finish; on a failure raise the error of the FIRST failing task in
    plan order (as the local engine would), not of whichever failed first in time.

    Finished entries of ``futures`` are set to ``None``, so their results are released as soon
    as the merge tree has consumed them instead of being held on a worker until the end.
    """
    order = {f.key: i for i, f in enumerate(futures)}
    for fut in distributed_module().as_completed(list(futures)):
        interrupts.check()
        i = order[fut.key]
        if fut.status != "finished":
            failed = _first_failure(futures, i)
            outcome(failed.result, tasks[order[failed.key]].pieces[0])
        futures[i] = None
        if progress is not None:
            progress(tasks[i].rows)


def _first_failure(futures: list[Any], i: int) -> Any:
    earlier = [f for f in futures[:i] if f is not None]
    distributed_module().wait(earlier)
    return next((f for f in earlier if f.status != "finished"), futures[i])


def outcome(get: Callable[[], Any], where: RowRange | None = None) -> Any:
    """Run ``get`` (a future's result), turning cluster failures into one clear line."""
    distributed = distributed_module()
    try:
        return get()
    except NormstatError:
        raise
    except distributed.KilledWorker:
        rows = "" if where is None else f"rows {where.start}:{where.stop}: "
        raise DataError(
            f"{rows}Dask workers died while running this task, more often than the "
            "scheduler's allowed-failures; no result was written (see the workers' logs and "
            "memory limit)",
            path=None if where is None else where.label,
            dataset=None if where is None else where.dataset,
        ) from None
    except ModuleNotFoundError as exc:
        raise DataError(
            f"a Dask worker cannot import {exc.name!r}: install normstat (same version) on "
            "every worker"
        ) from None
    except Exception as exc:
        raise DataError(f"the Dask computation failed ({type(exc).__name__}: {exc})") from None


def run_jobs(jobs: Sequence[Any], o: Any) -> list[tuple[int, list[Any]]]:
    """Run every apply job (:mod:`normstat.engine.dask_apply`) on the cluster of the options
    ``o``; returns each job's rows written and upload receipts. Outputs must exist already
    (the caller commits them)."""
    if not jobs:
        return []
    with dask_client(o.scheduler, o.workers) as client:
        futures = [client.submit(apply_range, j, o.rows, o.step, pure=False) for j in jobs]
        track(list(futures), jobs, o.progress)
        written = outcome(lambda: client.gather(futures))
    return [(int(n), list(r)) for n, r in written]
