"""What ``fit --by episode_index`` costs next to a plain fit of the same columns.

A LeRobot-like Parquet file: 14 state and 14 action float32 columns (``observation.state_0``
... ``action_13``; flat columns, as nested vector groups are another benchmark's subject), and
five index columns (``timestamp`` float32; ``frame_index``, ``episode_index``, ``index``,
``task_index`` int64), episodes of equal length stored one after another as LeRobot writes
them. Each run is the CLI in its own process (``normstat fit FILE --columns <the 28> -q -o
STATS``, with and without ``--by episode_index``; also ``--weights``), interleaved, warm page
cache; the table gives the median of ``--repeats`` runs and the ratio to the plain fit's median.
The artifact by episode holds 10,000 x 28 values per statistic: written as JSON it costs
seconds of its own, so it is also measured written as NPZ.

    python benchmarks/groups.py --gb 1.5 --episodes 10000     # about 1.5 GB, minutes
    python benchmarks/groups.py --small                       # seconds
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VECTOR = [f"observation.state_{i}" for i in range(14)] + [f"action_{i}" for i in range(14)]
ROW_BYTES = 28 * 4 + 4 + 4 * 8


def make(path: str, gb: float, episodes: int, row_group: int = 100_000) -> int:
    """Write the file a row group at a time (memory bounded); returns its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = max(episodes, int(gb * 2**30 / ROW_BYTES) // episodes * episodes)
    per = rows // episodes
    rng = np.random.default_rng(2026)
    offsets = rng.normal(0, 1, (episodes, 28)).astype(np.float32)
    with pq.ParquetWriter(path, _schema(pa)) as w:
        for lo in range(0, rows, row_group):
            n = min(row_group, rows - lo)
            idx = np.arange(lo, lo + n)
            ep = idx // per
            x = offsets[ep] + rng.standard_normal((n, 28), np.float32)
            cols = [pa.array(x[:, j]) for j in range(28)]
            cols += [
                pa.array(((idx % per) / 30).astype(np.float32)),
                pa.array(idx % per),
                pa.array(ep),
                pa.array(idx),
                pa.array(ep % 7),
            ]
            w.write_table(pa.Table.from_arrays(cols, schema=_schema(pa)))
    return rows


def _schema(pa):  # type: ignore[no-untyped-def]
    fields = [pa.field(n, pa.float32()) for n in VECTOR]
    fields += [pa.field("timestamp", pa.float32())]
    fields += [pa.field(n, pa.int64()) for n in ("frame_index", "episode_index", "index")]
    fields += [pa.field("task_index", pa.int64())]
    return pa.schema(fields)


def run(path: str, extra: list[str], out: str) -> float:
    argv = [sys.executable, "-m", "normstat", "fit", path, "--columns", ",".join(VECTOR), "-q"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    start = time.perf_counter()
    subprocess.run([*argv, *extra, "-o", out, "--force"], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=1.5)
    ap.add_argument("--episodes", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--small", action="store_true", help="a few MB, for a quick check")
    ap.add_argument("--data", help="directory for the file (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="reuse (or leave) the file in --data")
    args = ap.parse_args()
    if args.small:
        args.gb, args.episodes, args.repeats = 0.01, 200, 1
    with tempfile.TemporaryDirectory(dir=args.data) as tmp:
        where = args.data if args.keep and args.data else tmp
        path = os.path.join(where, f"lerobot_like_{args.gb:g}gb_{args.episodes}ep.parquet")
        if not os.path.exists(path):
            make(path, args.gb, args.episodes)
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(path).metadata.num_rows
        size = os.path.getsize(path)
        flags = {
            "plain fit (28 columns), -o stats.json": ([], "json"),
            "--by episode_index, -o stats.json": (["--by", "episode_index"], "json"),
            "--by episode_index, -o stats.npz": (["--by", "episode_index"], "npz"),
            "--weights timestamp, -o stats.json": (["--weights", "timestamp"], "json"),
        }
        runs: dict[str, list[float]] = {label: [] for label in flags}
        out = os.path.join(tmp, "stats")

        def once(label: str) -> float:
            extra, suffix = flags[label]
            return run(path, extra, f"{out}.{suffix}")

        for label in runs:  # warm-up: page cache, imports
            once(label)
        for _ in range(args.repeats):
            for label in runs:
                runs[label].append(once(label))
        print(
            f"file: {size / 2**30:.2f} GiB Parquet, {rows:,} rows, {args.episodes:,} episodes, "
            f"{os.cpu_count()} cores; median of {args.repeats} interleaved runs"
        )
        print("| fit | median s | vs plain fit | runs (s) |")
        print("|---|---:|---:|---|")
        base = float(np.median(next(iter(runs.values()))))
        for label, times in runs.items():
            med = float(np.median(times))
            shown = ", ".join(f"{t:.2f}" for t in times)
            print(f"| {label} | {med:.2f} | {med / base:.2f}x | {shown} |")


if __name__ == "__main__":
    main()
