"""Per-task costs of ``fit --engine dask`` on a LocalCluster, and end-to-end fits to check a model.

Measured on the cluster's own workers (each a single-threaded process), one figure each, median of
``--repeats``:

* **start**: ``LocalCluster`` + ``Client`` up, until the first task has run.
* **schedule**: a no-op task's round trip, per task, from 200 submitted at once (the scheduler's
  cost per task; the workers do nothing).
* **open**: a task that opens the Parquet source (footer, schema, features) and closes it.
* **read**: decoding one task's rows (every feature column), nothing reduced.
* **task**: one task as ``fit`` runs it (:func:`normstat.engine.ranged.fit_range`: open, read,
  kernel, its merge tree).
* **merge**: one ``join`` of two tasks' trees, on a worker, both inputs already there.
* **transfer**: gathering one task's tree to the client (its pickled size is printed).

Then ``normstat.fit(path, engine="dask", workers=w)`` end to end for each ``w`` in
``--workers``, and the model ``start + ceil(tasks / min(w, cores)) * task + tasks * schedule +
depth * (merge + transfer)`` beside it (docs/scale.md): the scheduler's cost per task is serial
(it did not fall with more workers), the merge tree has ``depth = ceil(log2(tasks))`` levels.

Usage: ``python benchmarks/dask_costs.py --data /tmp/nsbench/table.parquet --workers 1,2,4``.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import statistics
import time
from typing import Any


def _noop(i: int) -> int:
    return i


def _open(path: str) -> int:
    from normstat.sources import open_sources

    (src,) = open_sources([path])
    n = len(src.features)
    src.close()
    return n


def _read(path: str, lo: int, hi: int) -> int:
    from normstat.sources import open_sources

    (src,) = open_sources([path])
    try:
        return sum(len(list(c.columns or [])) for c in src.chunks(hi - lo, lo, hi))
    finally:
        src.close()


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def measure(path: str, workers: int, repeats: int) -> dict[str, Any]:
    import distributed

    import normstat
    from normstat.api.options import chunk_rows, task_rows
    from normstat.core.layout import AxisLayout
    from normstat.engine.plan import fit_tasks
    from normstat.engine.ranged import fit_range, join
    from normstat.sources import open_sources

    (src,) = open_sources([path])
    rows = chunk_rows(src, None)
    tasks = fit_tasks([src], rows, task_rows(src, rows, None))
    layout = AxisLayout.create(-1, (src.shape[0] or 0, len(src.features)))
    features = list(src.features)
    src.close()
    t = tasks[len(tasks) // 2]
    piece = t.pieces[0]
    out: dict[str, Any] = {"workers": workers, "tasks": len(tasks), "task_rows": t.rows}
    t0 = time.perf_counter()
    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.submit(_noop, -1, pure=False).result()
        out["start"] = time.perf_counter() - t0
        sched, opens, reads, runs, merges, transfers = [], [], [], [], [], []
        for _ in range(repeats):
            s = time.perf_counter()
            client.gather(client.map(_noop, range(200), pure=False))
            sched.append((time.perf_counter() - s) / 200)
            s = time.perf_counter()
            client.submit(_open, path, pure=False).result()
            opens.append(time.perf_counter() - s)
            s = time.perf_counter()
            client.submit(_read, path, piece.start, piece.stop, pure=False).result()
            reads.append(time.perf_counter() - s)
            s = time.perf_counter()
            a = client.submit(fit_range, t, rows, layout, "skip", features, pure=False)
            a.result()
            runs.append(time.perf_counter() - s)
            nxt = tasks[len(tasks) // 2 + 1]
            b = client.submit(fit_range, nxt, rows, layout, "skip", features, pure=False)
            b.result()
            s = time.perf_counter()
            j = client.submit(join, a, b, pure=False)
            distributed.wait(j)
            merges.append(time.perf_counter() - s)
            s = time.perf_counter()
            tree = j.result()
            transfers.append(time.perf_counter() - s)
            out["tree_bytes"] = len(pickle.dumps(tree))
        for k, v in (
            ("schedule", sched),
            ("open", opens),
            ("read", reads),
            ("task", runs),
            ("merge", merges),
            ("transfer", transfers),
        ):
            out[k] = _median(v)
    fits = []
    for _ in range(repeats):
        s = time.perf_counter()
        normstat.fit(path, engine="dask", workers=workers)
        fits.append(time.perf_counter() - s)
    out["fit"] = _median(fits)
    out["model"] = model(out, workers)
    return out


def model(c: dict[str, Any], workers: int, cores: int | None = None) -> float:
    """The time the per-task costs predict for a fit of ``c['tasks']`` tasks on ``workers``."""
    lanes = min(workers, cores or os.cpu_count() or 1)
    depth = math.ceil(math.log2(max(c["tasks"], 1)))
    waves = math.ceil(c["tasks"] / lanes)
    return float(
        c["start"]
        + waves * c["task"]
        + c["tasks"] * c["schedule"]
        + depth * (c["merge"] + c["transfer"])
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/tmp/nsbench/table.parquet")
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    cols = ["workers", "tasks", "start", "schedule", "open", "read", "task", "merge", "transfer"]
    print("| " + " | ".join(cols + ["fit s", "model s", "model / fit"]) + " |")
    print("|" + "---|" * (len(cols) + 3))
    for w in [int(x) for x in args.workers.split(",")]:
        r = measure(args.data, w, args.repeats)
        cells = [str(r["workers"]), str(r["tasks"])]
        cells += [f"{r[k] * 1e3:.1f} ms" for k in cols[2:]]
        cells += [f"{r['fit']:.2f}", f"{r['model']:.2f}", f"{r['model'] / r['fit']:.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)
        print(f"  task rows {r['task_rows']}, one task's tree pickled: {r['tree_bytes']} B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
