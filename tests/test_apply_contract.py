"""The apply contract, over every (input kind x output format x engine) the product has.

Every supported combination writes ``(x - mean) / std`` of the features (a table written as a
table keeps its other columns); every unsupported one is refused with one clear usage error
before anything is written; and a writer that fails leaves nothing behind.
"""

from __future__ import annotations

import errno
import importlib

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import normstat
from normstat.sinks import OUTPUTS

engine_tests = pytest.importorskip("test_dask_engine")
cluster = engine_tests.cluster  # the same module-scoped LocalCluster fixture

zarr = pytest.importorskip("zarr")

INPUTS = ("npy", "hdf5", "zarr", "parquet", "arrow", "csv")
ARRAY_INPUTS = ("npy", "hdf5", "zarr")
OUTS = tuple(f.name for f in OUTPUTS)
SUFFIX = {f.name: f.suffixes[0] for f in OUTPUTS}
FEATURES = ["f0", "f1", "f2"]


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(15)
    return rng.normal([10.0, -3.0, 1e3], [2.0, 0.5, 40.0], (83, 3))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, x):
    root = tmp_path_factory.mktemp("contract")
    np.save(root / "in.npy", x)
    with h5py.File(root / "in.h5", "w") as f:
        f.create_dataset("/g/x", data=x, chunks=(16, 3))
    zarr.create_array(str(root / "in.zarr"), data=x, chunks=(16, 3))
    table = pa.table({"id": np.arange(len(x)), **{n: x[:, j] for j, n in enumerate(FEATURES)},
                      "label": [f"r{i}" for i in range(len(x))]})  # fmt: skip
    pq.write_table(table, root / "in.parquet", row_group_size=20)
    feather.write_feather(table, str(root / "in.arrow"), chunksize=20)
    pacsv.write_csv(table, root / "in.csv")
    paths = {"npy": "in.npy", "hdf5": "in.h5:/g/x", "zarr": "in.zarr", "parquet": "in.parquet",
             "arrow": "in.arrow", "csv": "in.csv"}  # fmt: skip
    return {k: str(root / v) for k, v in paths.items()}


def _expected_refusal(kind: str, inp: str, out: str, engine: str) -> str | None:
    """What the product refuses, and the words of its error; None: supported."""
    if kind == "array" and out not in ARRAY_INPUTS:
        return f"array data cannot be written as {out}"
    if engine == "dask" and inp == "csv":
        return "--engine dask splits a table by row groups"
    if engine == "dask" and out == "hdf5":
        return "--engine dask cannot write hdf5"
    return None


def _read(path: str, out: str) -> tuple[np.ndarray, list[str] | None]:
    """The features of an output as a matrix, and a table output's column names."""
    if out == "npy":
        return np.load(path), None
    if out == "hdf5":
        with h5py.File(path) as f:
            names: list[str] = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            assert len(names) == 1, names  # the input's path (from HDF5), else /data
            return f[names[0]][...], None
    if out == "zarr":
        return np.asarray(zarr.open(path, mode="r")), None
    readers = {"parquet": pq.read_table, "arrow": feather.read_table,
               "feather": feather.read_table, "csv": pacsv.read_csv}  # fmt: skip
    t = readers[out](path)
    return np.column_stack([t.column(n).to_numpy() for n in FEATURES]), t.column_names


@pytest.mark.parametrize("engine", ["local", "dask"])
@pytest.mark.parametrize("out", OUTS)
@pytest.mark.parametrize("inp", INPUTS)
def test_every_combination_writes_the_zscore_or_is_refused_clearly(
    inputs, x, tmp_path, cluster, inp, out, engine
):
    kind = "array" if inp in ARRAY_INPUTS else "table"
    stats = normstat.fit(inputs[inp], columns=None if kind == "array" else FEATURES)
    target = str(tmp_path / f"out{SUFFIX[out]}")
    run = {"engine": engine, "chunk_size": 16, "task_size": 32}
    if engine == "dask":
        run["scheduler"] = cluster.scheduler_address
    why = _expected_refusal(kind, inp, out, engine)
    if why is not None:
        with pytest.raises(normstat.UsageError, match=why.replace("-", "\\-")):
            normstat.apply(stats, inputs[inp], target, **run)
        assert list(tmp_path.iterdir()) == []
        return
    normstat.apply(stats, inputs[inp], target, **run)
    got, columns = _read(target, out)
    want = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if columns is not None:  # a table written as a table keeps its other columns
        assert columns == ["id", *FEATURES, "label"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{SUFFIX[out]}"]


@pytest.mark.parametrize("inp", ["npy", "parquet"])
def test_the_output_format_option_overrides_the_suffix(inputs, x, tmp_path, inp):
    stats = normstat.fit(inputs[inp], columns=None if inp == "npy" else FEATURES)
    target = str(tmp_path / "out.data")
    normstat.apply(stats, inputs[inp], target, output_format="npy")
    np.testing.assert_allclose(np.load(target), normstat.transform(x, stats), rtol=1e-6)
    with pytest.raises(normstat.UsageError, match="unknown --output-format 'tiff'"):
        normstat.apply(stats, inputs[inp], str(tmp_path / "o2.npy"), output_format="tiff")


@pytest.mark.parametrize("out", OUTS)
@pytest.mark.parametrize("inp", ["npy", "parquet"])
def test_a_failing_writer_leaves_nothing_and_says_so(inputs, tmp_path, monkeypatch, inp, out):
    kind = "array" if inp == "npy" else "table"
    if _expected_refusal(kind, inp, out, "local"):
        pytest.skip("not a supported combination")
    fmt = next(f for f in OUTPUTS if f.name == out)
    cls = getattr(importlib.import_module(fmt.module), fmt.writer)
    calls = {"n": 0}
    real = cls.write

    def full_disk(self, item):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, item)

    monkeypatch.setattr(cls, "write", full_disk)
    stats = normstat.fit(inputs[inp], columns=None if kind == "array" else FEATURES)
    target = tmp_path / f"out{SUFFIX[out]}"
    with pytest.raises(normstat.DataError, match="cannot write the output"):
        normstat.apply(stats, inputs[inp], str(target), chunk_size=16)
    assert calls["n"] == 2
    assert list(tmp_path.iterdir()) == []


def test_streams_are_local_and_carry_the_input_kind(inputs, tmp_path, cluster, capfdbinary):
    stats = normstat.fit(inputs["npy"])
    with pytest.raises(normstat.UsageError, match="-o - streams rows in order"):
        normstat.apply(stats, inputs["npy"], "-", engine="dask",
                       scheduler=cluster.scheduler_address)  # fmt: skip
    with pytest.raises(normstat.UsageError, match="zarr cannot be written to stdout"):
        normstat.apply(stats, inputs["npy"], "-", output_format="zarr")


@pytest.mark.parametrize("inp,out", [("hdf5", "npy"), ("parquet", "parquet")])
def test_workers_transform_ahead_in_order_to_the_same_bits(inputs, tmp_path, inp, out):
    stats = normstat.fit(inputs[inp], columns=None if inp in ARRAY_INPUTS else FEATURES)
    paths = [str(tmp_path / f"w{w}{SUFFIX[out]}") for w in (1, 3)]
    for w, path in zip((1, 3), paths, strict=True):
        normstat.apply(stats, inputs[inp], path, chunk_size=8, workers=w)
    np.testing.assert_array_equal(_read(paths[0], out)[0], _read(paths[1], out)[0])
