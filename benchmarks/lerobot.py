"""A LeRobot-like Parquet file: fitting its two vector groups against the read + f64 sum floor.

The file has LeRobot v3's layout: ``observation.state`` and ``action`` as
``fixed_size_list<float>[14]``, and the five index columns (``timestamp`` float32,
``frame_index``, ``episode_index``, ``index``, ``task_index`` int64), 148 bytes a row, Snappy
(pyarrow's default, as LeRobot writes), row groups of 262,144 rows. ``normstat.fit(path)`` fits
the two groups by default (the index columns are left out); the floor reads the same two columns
a row group at a time and sums each as a ``(rows, 14)`` float64 reduction (a second floor reads
them with ``iter_batches`` of 32 MiB, as ``run.py``'s floor does). Each run is its own
process (time measured inside it, imports excluded; peak RSS from ``ru_maxrss``); the floor and
normstat alternate, and the median of the repeats is reported with its ratio.

    python benchmarks/lerobot.py --gb 1.5 --out /tmp/nslerobot --repeats 5
    python benchmarks/lerobot.py --small        # seconds; CI-sized
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GROUPS = ("observation.state", "action")
ROW_BYTES = 2 * 14 * 4 + 4 + 4 * 8
ROW_GROUP = 262_144
CHUNK_BYTES = 32 * 2**20


def make(path: str, rows: int, seed: int = 0) -> None:
    """Write the file in row groups (never the whole table in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    offsets = np.linspace(-3, 3, 14, dtype=np.float32)
    writer = None
    tmp = path + ".part"
    try:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            idx = np.arange(start, start + n)
            state = (rng.standard_normal((n, 14), np.float32) * 0.1 + offsets).reshape(-1)
            action = (rng.standard_normal((n, 14), np.float32) + 500).reshape(-1)
            table = pa.table(
                {
                    "observation.state": pa.FixedSizeListArray.from_arrays(state, 14),
                    "action": pa.FixedSizeListArray.from_arrays(action, 14),
                    "timestamp": pa.array((idx % 500) / np.float32(30), pa.float32()),
                    "frame_index": pa.array(idx % 500),
                    "episode_index": pa.array(idx // 500),
                    "index": pa.array(idx),
                    "task_index": pa.array(np.zeros(n, np.int64)),
                }
            )
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, path)


def floor(path: str) -> dict[str, list[float]]:
    """Read the two vector columns a row group at a time (pyarrow's threads decode them); one
    float64 sum per element of the ``(rows, 14)`` values."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    sums = {g: np.zeros(14) for g in GROUPS}
    n = 0
    for i in range(pf.metadata.num_row_groups):
        t = pf.read_row_group(i, columns=list(GROUPS), use_threads=True)
        for g in GROUPS:
            for chunk in t.column(g).chunks:
                x = chunk.flatten().to_numpy(zero_copy_only=True).reshape(-1, 14)
                sums[g] += x.sum(axis=0, dtype=np.float64)
        n += t.num_rows
    return {g: (s / n).tolist() for g, s in sums.items()}


def floor_batches(path: str) -> dict[str, list[float]]:
    """The floor of ``benchmarks/run.py``: ``iter_batches`` of 32 MiB, then the same sums."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    rows = max(1, CHUNK_BYTES // (2 * 14 * 4))
    sums = {g: np.zeros(14) for g in GROUPS}
    n = 0
    for b in pf.iter_batches(batch_size=rows, columns=list(GROUPS)):
        for g in GROUPS:
            x = b.column(g).flatten().to_numpy(zero_copy_only=True).reshape(-1, 14)
            sums[g] += x.sum(axis=0, dtype=np.float64)
        n += b.num_rows
    return {g: (s / n).tolist() for g, s in sums.items()}


def fit(path: str) -> dict[str, list[float]]:
    sys.path.insert(0, os.path.join(HERE, ".."))
    import normstat

    stats = normstat.fit(path)
    mean = np.asarray(stats.mean).reshape(-1)
    return {g["name"]: mean[g["start"] : g["start"] + 14].tolist() for g in stats.feature_groups}


METHODS = {
    "floor: read + f64 sum": floor,
    "floor: iter_batches + f64 sum": floor_batches,
    "normstat.fit (2 groups)": fit,
}


def child(method: str, path: str) -> None:
    fn = METHODS[method]
    if method.startswith("normstat"):
        sys.path.insert(0, os.path.join(HERE, ".."))
        import normstat  # noqa: F401  (imports are not timed)
    import pyarrow.parquet  # noqa: F401

    t0 = time.perf_counter()
    means = fn(path)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "means": means}))


def run(method: str, path: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, path],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gb", type=float, default=1.5)
    p.add_argument("--out", default=None, help="directory for the file (kept for reruns)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--small", action="store_true", help="a 20 MB file in a temp dir")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(*a.child)
        return 0
    if a.out is None:  # a file made for this run only
        with tempfile.TemporaryDirectory(prefix="nslerobot-") as tmp:
            return bench(0.02 if a.small else a.gb, tmp, a.repeats)
    os.makedirs(a.out, exist_ok=True)
    return bench(0.02 if a.small else a.gb, a.out, a.repeats)


def bench(gb: float, out: str, repeats: int) -> int:
    rows = int(gb * 1e9 // ROW_BYTES)
    path = os.path.join(out, f"lerobot-{rows}.parquet")
    if not os.path.exists(path):
        make(path, rows)
    size = os.path.getsize(path) / 1e9
    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    for m in METHODS:  # warm-up: page cache
        run(m, path)
    for _ in range(repeats):
        for m in METHODS:  # interleaved, so load on the machine hits both alike
            results[m].append(run(m, path))
    base = float(np.median([r["seconds"] for r in results["floor: read + f64 sum"]]))
    ref = results["floor: read + f64 sum"][0]["means"]
    print(f"{rows:,} rows, {size:.2f} GB on disk ({gb * 1e9 / 1e9:.2f} GB as 148-byte rows)")
    print("| method | median s | / floor | peak RSS MB | max rel diff of means vs floor |")
    print("|---|---:|---:|---:|---:|")
    for m, rs in results.items():
        med = float(np.median([r["seconds"] for r in rs]))
        rss = max(r["rss_mb"] for r in rs)
        diff = max(
            float(np.max(np.abs(np.subtract(rs[0]["means"][g], ref[g]) / np.abs(ref[g]))))
            for g in GROUPS
        )
        print(f"| {m} | {med:.3f} | {med / base:.2f}x | {rss:.0f} | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
