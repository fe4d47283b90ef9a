"""Shared test data for the table suites: one set of numbers written in every format."""

from __future__ import annotations

import io
import os

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

FEATURES = ["a", "b", "c", "idx"]
TABLE_FORMATS = ("parquet", "arrow", "feather", "csv")


def numbers(n: int = 1001, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A float64 (n, 4) matrix and its null mask: column ``a`` has NaN, ``b`` nulls, ``c`` a
    an offset (mean / std ~ 350), ``idx`` the row number (to see every row exactly once)."""
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [rng.normal(3.0, 2.0, n), rng.normal(-1.0, 0.5, n), 100.0 + rng.random(n), np.arange(n)]
    )
    x[rng.random(n) < 0.05, 0] = np.nan
    nulls = np.zeros_like(x, bool)
    nulls[:, 1] = rng.random(n) < 0.1
    return x, nulls


def table(x: np.ndarray, nulls: np.ndarray) -> pa.Table:
    cols = {name: pa.array(x[:, j], mask=nulls[:, j]) for j, name in enumerate(FEATURES)}
    n = x.shape[0]
    cols["label"] = pa.array([f'row {i}, "q"' for i in range(n)])
    cols["idx"] = pa.array(np.arange(n, dtype=np.int64))
    cols["ts"] = pa.array(np.arange(n).astype("datetime64[s]"))
    names = ["label", "a", "b", "ts", "c", "idx"]
    return pa.table([cols[k] for k in names], names=names, metadata={"origin": "tests"})


def write(fmt: str, t: pa.Table, path: str) -> str:
    """Write ``t`` as ``fmt`` in several batches / row groups; returns the file name."""
    if fmt == "parquet":
        pq.write_table(t, path, row_group_size=128)
    elif fmt == "arrow":
        with ipc.new_file(path, t.schema) as w:
            for b in t.to_batches(max_chunksize=100):
                w.write_batch(b)
    elif fmt == "feather":
        feather.write_feather(t, path, chunksize=150)
    elif fmt == "csv":
        pacsv.write_csv(t, path)
    else:
        raise ValueError(fmt)
    return path


def write_array(fmt: str, x: np.ndarray, path: str) -> str:
    if fmt == "npy":
        np.save(path, x)
    else:
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=x, chunks=(64, x.shape[1]))
    return path


def arrow_stream(t: pa.Table) -> bytes:
    buf = io.BytesIO()
    with ipc.new_stream(buf, t.schema) as w:
        for b in t.to_batches(max_chunksize=90):
            w.write_batch(b)
    return buf.getvalue()


def reference(x: np.ndarray) -> dict[str, np.ndarray]:
    """numpy float64 two-pass statistics, NaN skipped per feature."""
    return {
        "count": (~np.isnan(x)).sum(axis=0),
        "nan_count": np.isnan(x).sum(axis=0),
        "mean": np.nanmean(x, axis=0),
        "var": np.nanvar(x, axis=0),
        "min": np.nanmin(x, axis=0),
        "max": np.nanmax(x, axis=0),
    }


def suffix(fmt: str) -> str:
    return {"arrow": ".arrow", "feather": ".feather", "csv": ".csv", "parquet": ".parquet"}[fmt]


def exists(path: str) -> bool:
    return os.path.exists(path)
