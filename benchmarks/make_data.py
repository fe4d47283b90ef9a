"""Write the three benchmark datasets at a chosen size, in chunks (bounded memory), seeded.

* ``floats.h5:/x``   float32 ``(N, 64)``; feature j has offset ``logspace(4, 6)[j]`` and spread
  ``1 + j / 8``, so ``|mean| / std`` reaches ~1e6: the naive sum of squares fails on it.
* ``images.h5:/images`` uint8 ``(N, 32, 32, 3)``: per-channel statistics (default axis -1).
* ``table.parquet``  64 float32 columns ``c00..c63``, drawn like ``floats.h5``.

Usage: ``python benchmarks/make_data.py --gb 1.5 --out /tmp/nsbench`` (each dataset ~1.5 GB),
or ``--small`` (a few MB each, for CI).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

import numpy as np

N_FEATURES = 64
IMAGE_SHAPE = (32, 32, 3)
WRITE_ROWS_BYTES = 64 * 2**20  # bytes generated per write: the generator's whole footprint
SMALL_GB = 0.004


def offsets() -> np.ndarray:
    return np.logspace(4, 6, N_FEATURES)


def spreads() -> np.ndarray:
    return 1.0 + np.arange(N_FEATURES) / 8.0


def float_blocks(n: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    step = max(1, WRITE_ROWS_BYTES // (4 * N_FEATURES))
    off, sd = offsets(), spreads()
    for start in range(0, n, step):
        rows = min(step, n - start)
        block = rng.standard_normal((rows, N_FEATURES), dtype=np.float32)
        block *= sd.astype(np.float32)
        block += off.astype(np.float32)
        yield block


def image_blocks(n: int, seed: int) -> Iterator[np.ndarray]:
    """Images with a different level per channel and per image, so channels differ."""
    rng = np.random.default_rng(seed)
    row_bytes = int(np.prod(IMAGE_SHAPE))
    step = max(1, WRITE_ROWS_BYTES // row_bytes)
    for start in range(0, n, step):
        rows = min(step, n - start)
        base = rng.integers(0, 256, (rows, 1, 1, 3), dtype=np.uint8)
        noise = rng.integers(0, 64, (rows, *IMAGE_SHAPE), dtype=np.uint8)
        yield base // 2 + noise + np.array([0, 32, 64], np.uint8) // 2


def rows_for(gb: float, row_bytes: int) -> int:
    return max(1, int(gb * 1e9) // row_bytes)


def write_hdf5(path: str, name: str, shape: tuple[int, ...], dtype: str, blocks) -> None:
    import h5py

    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        ds = f.create_dataset(name, shape=shape, dtype=dtype)  # contiguous, uncompressed
        start = 0
        for block in blocks:
            ds[start : start + block.shape[0]] = block
            start += block.shape[0]
    os.replace(tmp, path)


def write_parquet(path: str, n: int, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f"c{j:02d}" for j in range(N_FEATURES)]
    schema = pa.schema([(c, pa.float32()) for c in names])
    tmp = path + ".tmp"
    with pq.ParquetWriter(tmp, schema) as w:
        for block in float_blocks(n, seed):
            cols = [pa.array(np.ascontiguousarray(block[:, j])) for j in range(N_FEATURES)]
            w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=2**20)
    os.replace(tmp, path)


def make_all(out: str, gb: float, seed: int = 0) -> dict[str, str]:
    os.makedirs(out, exist_ok=True)
    n_float = rows_for(gb, 4 * N_FEATURES)
    n_img = rows_for(gb, int(np.prod(IMAGE_SHAPE)))
    paths = {
        "floats": os.path.join(out, "floats.h5"),
        "images": os.path.join(out, "images.h5"),
        "table": os.path.join(out, "table.parquet"),
    }
    write_hdf5(paths["floats"], "x", (n_float, N_FEATURES), "float32", float_blocks(n_float, seed))
    write_hdf5(
        paths["images"], "images", (n_img, *IMAGE_SHAPE), "uint8", image_blocks(n_img, seed + 1)
    )
    write_parquet(paths["table"], n_float, seed + 2)
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--gb", type=float, default=1.5, help="size of each dataset in GB")
    size.add_argument("--small", action="store_true", help=f"{SMALL_GB} GB each (CI)")
    p.add_argument("--out", default="/tmp/nsbench", help="directory to write into")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    paths = make_all(args.out, SMALL_GB if args.small else args.gb, args.seed)
    for name, path in paths.items():
        print(f"{name}: {path} ({os.path.getsize(path) / 1e9:.3f} GB)")


if __name__ == "__main__":
    main()
