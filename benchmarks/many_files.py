"""Many small files against one big file: fit throughput and the cost per file.

Writes (once, into ``--out``) ``--files`` Parquet shards and as many ``.npy`` shards of ``--rows``
rows each, 64 float32 columns drawn like ``make_data.py``'s table, and one big file of each
format holding the same rows. Then, in this process (imports done, page cache warm), interleaved,
``--repeats`` times: ``normstat.fit`` of the shards and of the big file. Reported: median
seconds, throughput in MB of float32 values per second, the shards' throughput as a fraction of
the big file's, and the cost per file, ``(shards - big) / files``.

Usage: ``python benchmarks/many_files.py --out /tmp/nsshards --files 10000 --rows 1000``.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_data import N_FEATURES, float_blocks  # noqa: E402


def _rows(n: int, seed: int):
    """``n`` rows in blocks of any size (the generator's own)."""
    left = n
    for block in float_blocks(n, seed):
        yield block[:left]
        left -= block.shape[0]
        if left <= 0:
            return


def write(out: str, files: int, rows: int, seed: int = 5) -> dict[str, list[str] | str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f"c{j:02d}" for j in range(N_FEATURES)]
    schema = pa.schema([(c, pa.float32()) for c in names])
    pdir, ndir = os.path.join(out, "parquet"), os.path.join(out, "npy")
    big_pq, big_npy = os.path.join(out, "big.parquet"), os.path.join(out, "big.npy")
    if len(glob.glob(os.path.join(pdir, "*.parquet"))) != files:
        os.makedirs(pdir, exist_ok=True)
        os.makedirs(ndir, exist_ok=True)
        k, pending = 0, np.empty((0, N_FEATURES), np.float32)
        for block in _rows(files * rows, seed):
            pending = np.concatenate([pending, block])
            while pending.shape[0] >= rows and k < files:
                b, pending = pending[:rows], pending[rows:]
                cols = [pa.array(np.ascontiguousarray(b[:, j])) for j in range(N_FEATURES)]
                t = pa.Table.from_arrays(cols, schema=schema)
                pq.write_table(t, os.path.join(pdir, f"part-{k:05d}.parquet"))
                np.save(os.path.join(ndir, f"part-{k:05d}.npy"), b)
                k += 1
    if not (os.path.exists(big_npy) and os.path.exists(big_pq)):  # the shards, concatenated
        shards = sorted(glob.glob(os.path.join(ndir, "*.npy")))
        big = np.lib.format.open_memmap(big_npy + ".tmp", "w+", np.float32, (files * rows, 64))
        step = max(1, (2**20 // rows))  # row groups of ~2**20 rows, as make_data.py writes
        with pq.ParquetWriter(big_pq + ".tmp", schema) as w:
            for i in range(0, files, step):
                b = np.concatenate([np.load(f) for f in shards[i : i + step]])
                big[i * rows : i * rows + b.shape[0]] = b
                cols = [pa.array(np.ascontiguousarray(b[:, j])) for j in range(N_FEATURES)]
                w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=2**20)
        big.flush()
        del big
        os.replace(big_pq + ".tmp", big_pq)
        os.replace(big_npy + ".tmp", big_npy)
    return {
        "parquet": sorted(glob.glob(os.path.join(pdir, "*.parquet"))),
        "npy": sorted(glob.glob(os.path.join(ndir, "*.npy"))),
        "big parquet": big_pq,
        "big npy": big_npy,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/nsshards")
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--formats", default="parquet,npy", help="which of parquet,npy to fit (the data is written)"
    )
    args = p.parse_args(argv)
    import normstat

    data = write(args.out, args.files, args.rows)
    runs = {
        fmt: (data[fmt], data[f"big {fmt}"])
        for fmt in ("parquet", "npy")
        if fmt in args.formats.split(",")
    }
    mb = args.files * args.rows * N_FEATURES * 4 / 1e6
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for fmt, (shards, big) in runs.items():
            for what, src in (("shards", shards), ("big", big)):
                s = time.perf_counter()
                normstat.fit(src)
                times.setdefault(f"{fmt} {what}", []).append(time.perf_counter() - s)
    print(f"{args.files} files of {args.rows} rows x {N_FEATURES} float32 ({mb:.0f} MB of values)")
    print(
        "| format | shards s | one file s | shards MB/s | one file MB/s | shards / one file "
        "| per file ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for fmt in runs:
        sh, big = (statistics.median(times[f"{fmt} {w}"]) for w in ("shards", "big"))
        per_file = (sh - big) / args.files * 1e3
        print(
            f"| {fmt} | {sh:.2f} | {big:.2f} | {mb / sh:.0f} | {mb / big:.0f} | "
            f"{big / sh:.2f} | {per_file:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
