"""The timed methods, one per process: ``python methods.py METHOD DATASET PATH N [SETTLE]`` (see
run.py; SETTLE: seconds a writer idles before each timed run, see :func:`measure`).

Each method reads the whole dataset and returns the per-feature variance (population, ddof 0) as a
flat float64 array. The worker runs it once untimed (warm page cache, imports done), then ``N``
times timed, and prints one JSON line: ``{"times": [...], "var": [...]}`` or ``{"skip": why}``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from fractions import Fraction

import numpy as np

CHUNK_BYTES = 32 * 2**20  # normstat's default chunk, used by the floors and chunked peers too
HDF5_NAMES = {"floats": "/x", "images": "/images"}
FLOOR_READ = "floor: read only"
FLOOR_SUM = "floor: read + f64 sum"
NORMSTAT = "normstat.fit (library)"
DURABLE_COPY = "floor: h5py copy + fsync"


class Skip(Exception):
    """The method does not apply, or its library is not installed."""


def data_paths(data: str) -> dict[str, str]:
    return {
        "floats": os.path.join(data, "floats.h5"),
        "images": os.path.join(data, "images.h5"),
        "table": os.path.join(data, "table.parquet"),
    }


def source_spec(dataset: str, path: str) -> str:
    return f"{path}:{HDF5_NAMES[dataset]}" if dataset in HDF5_NAMES else path


def for_dataset(dataset: str) -> list[str]:
    if dataset == "table":
        return [FLOOR_READ, FLOOR_SUM, NORMSTAT, "pyarrow.compute", "DuckDB", "polars"]
    return [FLOOR_READ, FLOOR_SUM, NORMSTAT, "dask.array mean+var", "scikit-learn partial_fit"]


# ---------------------------------------------------------------------------------------------
# reading


def hdf5_chunks(dataset: str, path: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
    """The dataset in row blocks of ``chunk_bytes``, read into one reused buffer."""
    import h5py

    with h5py.File(path, "r") as f:
        ds = f[HDF5_NAMES[dataset]]
        rows = max(1, chunk_bytes // (ds.dtype.itemsize * int(np.prod(ds.shape[1:]))))
        buf = np.empty((rows, *ds.shape[1:]), ds.dtype)
        for start in range(0, ds.shape[0], rows):
            stop = min(start + rows, ds.shape[0])
            ds.read_direct(buf, np.s_[start:stop], np.s_[0 : stop - start])
            yield buf[: stop - start]


def parquet_batches(path: str, chunk_bytes: int = CHUNK_BYTES):
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    rows = max(1, chunk_bytes // (4 * pf.metadata.num_columns))
    yield from pf.iter_batches(batch_size=rows)


def n_features(dataset: str) -> int:
    return 3 if dataset == "images" else 64


def as_features(chunk: np.ndarray, dataset: str) -> np.ndarray:
    return chunk.reshape(-1, n_features(dataset))


# ---------------------------------------------------------------------------------------------
# floors


def floor_read(dataset: str, path: str) -> None:
    if dataset == "table":
        for _ in parquet_batches(path):
            pass
        return None
    for _ in hdf5_chunks(dataset, path):
        pass
    return None


def floor_sum(dataset: str, path: str) -> None:
    """Read, and one float64 sum over the samples (each sample flattened: a long inner loop)."""
    if dataset == "table":
        for b in parquet_batches(path):
            for col in b.columns:
                np.sum(col.to_numpy(zero_copy_only=True), dtype=np.float64)
        return None
    for chunk in hdf5_chunks(dataset, path):
        chunk.reshape(chunk.shape[0], -1).sum(axis=0, dtype=np.float64)
    return None


# ---------------------------------------------------------------------------------------------
# normstat


def normstat_fit(dataset: str, path: str) -> np.ndarray:
    import normstat

    try:
        stats = normstat.fit(source_spec(dataset, path))
    except normstat.UsageError as exc:
        raise Skip(f"this build cannot read it ({exc})") from None
    return np.asarray(stats.var, np.float64).ravel()


def _scratch_dir(prefix: str, path: str) -> str:
    """A directory next to the data (same file system), removed when the worker exits."""
    d = tempfile.mkdtemp(prefix=prefix, dir=os.path.dirname(path))
    atexit.register(shutil.rmtree, d, True)
    return d


def normstat_apply(dataset: str, path: str) -> Callable[[], None]:
    """Setup (untimed): fit; the returned function streams the dataset through ``apply`` (an
    HDF5 dataset into HDF5, a Parquet table into Parquet)."""
    import normstat

    stats = normstat.fit(source_spec(dataset, path))
    suffix = ".parquet" if dataset == "table" else ".h5"
    out = os.path.join(_scratch_dir("nsapply-", path), "o" + suffix)

    def run() -> None:
        normstat.apply(stats, source_spec(dataset, path), out, force=True)
        os.remove(out)

    return run


@contextlib.contextmanager
def _stdout_to_devnull() -> Iterator[None]:
    """File descriptor 1 on /dev/null for a stream writer (this worker reports on stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(null)
        os.close(saved)


def normstat_apply_stream(dataset: str, path: str) -> Callable[[], None]:
    """Setup (untimed): fit; the returned function streams the Parquet table through ``apply``
    to stdout as an Arrow IPC stream (``-o -``), stdout on /dev/null."""
    import normstat

    if dataset != "table":
        raise Skip("tables only")
    stats = normstat.fit(source_spec(dataset, path))

    def run() -> None:
        with _stdout_to_devnull():
            normstat.apply(stats, source_spec(dataset, path), "-")

    return run


def pyarrow_stream(dataset: str, path: str) -> Callable[[], None]:
    """pyarrow's own Parquet -> Arrow stream: each row group read, then written to stdout."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if dataset != "table":
        raise Skip("Parquet only")

    def run() -> None:
        src = pq.ParquetFile(path)
        with (
            _stdout_to_devnull(),
            open(1, "wb", closefd=False) as out,
            pa.ipc.new_stream(out, src.schema_arrow) as w,
        ):
            for i in range(src.num_row_groups):
                w.write_table(src.read_row_group(i))

    return run


def h5py_copy(dataset: str, path: str, durable: bool = False) -> Callable[[], None]:
    """h5py's copy of the dataset into a new file; ``durable``: then ``fsync`` it, as every
    normstat output is before it takes its name (the data on disk, not only in the page cache)."""
    import h5py

    with h5py.File(path, "r") as f:
        shape, dtype = f[HDF5_NAMES[dataset]].shape, f[HDF5_NAMES[dataset]].dtype
    out = os.path.join(_scratch_dir("nscopy-", path), "o.h5")

    def run() -> None:
        with h5py.File(out, "w") as g:
            dst = g.create_dataset("x", shape=shape, dtype=dtype)
            start = 0
            for chunk in hdf5_chunks(dataset, path):
                dst[start : start + chunk.shape[0]] = chunk
                start += chunk.shape[0]
        if durable:
            fd = os.open(out, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.remove(out)

    return run


def h5py_copy_durable(dataset: str, path: str) -> Callable[[], None]:
    return h5py_copy(dataset, path, durable=True)


def pyarrow_copy(dataset: str, path: str) -> Callable[[], None]:
    """pyarrow's own streaming copy of a Parquet file: each row group read, then written."""
    import pyarrow.parquet as pq

    if dataset != "table":
        raise Skip("Parquet only")
    out = os.path.join(_scratch_dir("nscopy-", path), "o.parquet")

    def run() -> None:
        src = pq.ParquetFile(path)
        with pq.ParquetWriter(out, src.schema_arrow) as w:
            for i in range(src.num_row_groups):
                w.write_table(src.read_row_group(i))
        os.remove(out)

    return run


# ---------------------------------------------------------------------------------------------
# peers


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise Skip(f"{module} not installed (pip install -e '.[bench]')") from None


def dask_meanvar(dataset: str, path: str) -> np.ndarray:
    da = _need("dask.array")
    import h5py

    with h5py.File(path, "r") as f:
        ds = f[HDF5_NAMES[dataset]]
        rows = max(1, CHUNK_BYTES // (ds.dtype.itemsize * int(np.prod(ds.shape[1:]))))
        x = da.from_array(ds, chunks=(rows, *ds.shape[1:]), lock=True)
        axes = tuple(range(x.ndim - 1))
        mean, var = da.compute(x.mean(axis=axes, dtype="f8"), x.var(axis=axes, dtype="f8"))
    return np.asarray(var, np.float64).ravel()


def sklearn_partial_fit(dataset: str, path: str) -> np.ndarray:
    pre = _need("sklearn.preprocessing")
    scaler = pre.StandardScaler()
    for chunk in hdf5_chunks(dataset, path):
        scaler.partial_fit(as_features(chunk, dataset))
    return np.asarray(scaler.var_, np.float64)


def pyarrow_compute(dataset: str, path: str) -> np.ndarray:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return np.array([pc.variance(table[c], ddof=0).as_py() for c in table.column_names])


def duckdb_var(dataset: str, path: str) -> np.ndarray:
    duckdb = _need("duckdb")
    import pyarrow.parquet as pq

    cols = pq.ParquetFile(path).schema_arrow.names
    sql = ", ".join(f'var_pop("{c}")' for c in cols)
    with duckdb.connect() as con:
        row = con.execute(f"SELECT {sql} FROM read_parquet('{path}')").fetchone()
    return np.asarray(row, np.float64)


def polars_var(dataset: str, path: str) -> np.ndarray:
    pl = _need("polars")
    lazy = pl.scan_parquet(path)
    names = lazy.collect_schema().names()
    frame = lazy.select(
        pl.all().mean().name.suffix("_mean"), pl.all().var(ddof=0).name.suffix("_var")
    ).collect()
    return np.asarray(frame.row(0)[len(names) :], np.float64)


# ---------------------------------------------------------------------------------------------
# exact reference


def reference_var(dataset: str, path: str) -> np.ndarray:
    """Integers: exact integer arithmetic. Floats: two-pass in long double (64-bit mantissa on
    x86), whose error (~1e-19 relative) is far below anything measured against it."""
    if dataset == "images":
        return _exact_integer_var(reference_blocks(dataset, path), 3)
    return _longdouble_var(lambda: reference_blocks(dataset, path))


def reference_blocks(dataset: str, path: str) -> Iterator[np.ndarray]:
    if dataset == "table":
        return _table_blocks(path)
    return hdf5_chunks(dataset, path, 4 * 2**20)


def _table_blocks(path: str) -> Iterator[np.ndarray]:
    for b in parquet_batches(path, 4 * 2**20):
        yield np.stack([c.to_numpy(zero_copy_only=False) for c in b.columns], axis=1)


def _exact_integer_var(blocks: Iterator[np.ndarray], f: int) -> np.ndarray:
    n, s, q = 0, [0] * f, [0] * f
    for chunk in blocks:
        x = chunk.reshape(-1, f).astype(np.int64)
        n += x.shape[0]
        s = [a + int(b) for a, b in zip(s, x.sum(axis=0), strict=True)]
        q = [a + int(b) for a, b in zip(q, (x * x).sum(axis=0), strict=True)]
    return np.array([float(Fraction(n * qq - ss * ss, n * n)) for ss, qq in zip(s, q, strict=True)])


def _longdouble_var(blocks: Callable[[], Iterator[np.ndarray]]) -> np.ndarray:
    n, total = 0, None
    for x in blocks():
        part = x.reshape(x.shape[0], -1).astype(np.longdouble).sum(axis=0)
        total = part if total is None else total + part
        n += x.shape[0]
    mean = total / n
    m2 = corr = 0
    for x in blocks():
        d = x.reshape(x.shape[0], -1).astype(np.longdouble) - mean
        m2, corr = m2 + (d * d).sum(axis=0), corr + d.sum(axis=0)
    return np.asarray((m2 - corr * corr / n) / n, np.float64)


# ---------------------------------------------------------------------------------------------
# worker

TIMED: dict[str, Callable[[str, str], np.ndarray | None]] = {
    FLOOR_READ: floor_read,
    FLOOR_SUM: floor_sum,
    NORMSTAT: normstat_fit,
    "dask.array mean+var": dask_meanvar,
    "scikit-learn partial_fit": sklearn_partial_fit,
    "pyarrow.compute": pyarrow_compute,
    "DuckDB": duckdb_var,
    "polars": polars_var,
}
PREPARED: dict[str, Callable[[str, str], Callable[[], None]]] = {
    "normstat.apply": normstat_apply,
    "floor: h5py copy": h5py_copy,
    DURABLE_COPY: h5py_copy_durable,
    "floor: pyarrow read + write": pyarrow_copy,
    "normstat.apply -> stream": normstat_apply_stream,
    "floor: pyarrow read + stream": pyarrow_stream,
}


def measure(method: str, dataset: str, path: str, repeats: int, settle: float = 0.0) -> dict:
    """Time ``method`` ``repeats`` times after one untimed warm-up. A writer (``PREPARED``) first
    flushes, then idles ``settle`` seconds before each run: on a VM with free page reporting
    (Firecracker here, ``page_reporting_order=11``) memory freed by the previous run's deleted
    output goes back to the host about 2 s later, and a run that starts before that writes into
    pages still mapped and is 2-3x faster than one that starts after (a plain ``dd`` of the
    1.5 GB float file: 0.83-1.25 s back to back, 2.6-3.1 s after 4 s idle). Which side of that
    line a run lands on decided the apply ratio; with ``settle`` every run starts from the
    state a one-off apply meets, memory long since freed."""
    if method == "reference":
        return {"var": reference_var(dataset, path).tolist()}
    if method in PREPARED:
        run = PREPARED[method](dataset, path)
        fn: Callable[[], np.ndarray | None] = run  # type: ignore[assignment]
    else:
        fn = lambda: TIMED[method](dataset, path)  # noqa: E731
    var = fn()  # warm-up: page cache, imports, thread pools
    times = []
    for _ in range(repeats):
        if method in PREPARED:  # writers: start each run with no dirty pages left to flush
            os.sync()
            time.sleep(settle)
        t0 = time.perf_counter()
        var = fn()
        times.append(time.perf_counter() - t0)
    report: dict = {"times": times}
    if var is not None:
        report["var"] = np.asarray(var, np.float64).tolist()
    return report


def serve(method: str, dataset: str, path: str) -> None:
    """Time ``method`` once per line read on stdin, after one untimed warm-up: the library side
    of the CLI-overhead pairs, kept warm while ``run.py`` starts the CLI between its calls."""
    fn = lambda: TIMED[method](dataset, path)  # noqa: E731
    fn()
    print("ready", flush=True)
    for _ in sys.stdin:
        t0 = time.perf_counter()
        fn()
        print(time.perf_counter() - t0, flush=True)


def main(argv: list[str]) -> None:
    if argv[0] == "serve":
        serve(*argv[1:4])
        return
    method, dataset, path, repeats = argv[0], argv[1], argv[2], int(argv[3])
    settle = float(argv[4]) if len(argv) > 4 else 0.0
    try:
        report = measure(method, dataset, path, repeats, settle)
    except Skip as exc:
        report = {"skip": str(exc)}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
