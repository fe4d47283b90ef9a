"""``--engine dask`` against a real (local, multi-process) Dask cluster.

Every result is checked twice: against the local engine (the contract: equal to 1e-12 relative)
and against an independent numpy float64 two-pass reference.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import normstat
from normstat.cli import main
from normstat.errors import DataError

distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

SMALL = ["--chunk-size", "16", "--task-size", "64"]  # many tasks from small data


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as c:
        yield c


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """NPY shards, an HDF5 dataset with NaNs, a Zarr array in a group; all with a large offset
    so that an inexact merge would show."""
    root = tmp_path_factory.mktemp("dask-data")
    rng = np.random.default_rng(20261127)
    shards = [rng.normal(1e4, 3.0, (n, 4, 3)) for n in (257, 300, 123)]
    for i, a in enumerate(shards):
        np.save(root / f"part-{i}.npy", a)
    h = rng.normal(-50.0, 7.0, (500, 6)).astype(np.float32)
    h[rng.random(h.shape) < 0.05] = np.nan
    with h5py.File(root / "table.h5", "w") as f:
        f.create_dataset("/grp/x", data=h, chunks=(32, 6))
        f.create_dataset("/labels", data=np.arange(500))
    z = rng.integers(0, 255, (400, 5), dtype=np.uint8)
    arr = zarr.open_array(
        store=str(root / "store.zarr"),
        mode="w",
        path="g/a",
        shape=z.shape,
        chunks=(48, 5),
        dtype=z.dtype,
    )
    arr[:] = z
    return {
        "root": root,
        "npy": ([str(root / f"part-{i}.npy") for i in range(3)], np.concatenate(shards)),
        "h5": ([f"{root / 'table.h5'}:/grp/x"], h.astype(np.float64)),
        "zarr": ([f"{root / 'store.zarr'}:/g/a"], z.astype(np.float64)),
    }


def _run(args, **kw):
    result = CliRunner().invoke(main, args, catch_exceptions=False, **kw)
    return result


def _fit_json(paths, *extra):
    r = _run(["fit", *paths, "-q", *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _reference(x: np.ndarray) -> dict[str, np.ndarray]:
    rows = x.reshape(-1, x.shape[-1])
    return {
        "mean": np.nanmean(rows, axis=0),
        "var": np.nanvar(rows, axis=0),
        "min": np.nanmin(rows, axis=0),
        "max": np.nanmax(rows, axis=0),
        "count": np.sum(~np.isnan(rows), axis=0),
    }


@pytest.mark.parametrize("kind", ["npy", "h5", "zarr"])
def test_fit_on_the_cluster_equals_local_engine_and_numpy(cluster, data, kind):
    paths, x = data[kind]
    local = _fit_json(paths, "--chunk-size", "16")
    remote = _fit_json(paths, "--engine", "dask", "--scheduler", cluster.scheduler_address, *SMALL)
    for key in ("mean", "var", "std", "m2", "min", "max"):
        np.testing.assert_allclose(remote[key], local[key], rtol=1e-12, atol=0, err_msg=key)
        # stronger than the contract: the same merge tree, so the same bits
        assert remote[key] == local[key], key
    assert remote["count"] == local["count"]
    assert remote["nan_count"] == local["nan_count"]
    assert remote["source"] == local["source"]
    ref = _reference(x)
    np.testing.assert_allclose(remote["mean"], ref["mean"], rtol=1e-12)
    np.testing.assert_allclose(remote["var"], ref["var"], rtol=1e-10)
    np.testing.assert_array_equal(remote["min"], ref["min"])
    np.testing.assert_array_equal(remote["max"], ref["max"])
    np.testing.assert_array_equal(remote["count"], ref["count"])


def test_fit_reads_the_scheduler_from_the_environment(cluster, data, monkeypatch):
    paths, x = data["npy"]
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
    stats = normstat.fit(paths, engine="dask", chunk_size=50, task_size=100)
    np.testing.assert_allclose(stats.mean, _reference(x)["mean"], rtol=1e-12)


def test_a_data_error_on_a_worker_is_the_local_engines_error(cluster, data, monkeypatch):
    monkeypatch.chdir(
        data["root"]
    )  # a relative path: workers open it absolute, errors say it as given
    paths = ["table.h5:/grp/x"]
    local = _run(["fit", *paths, "--nan", "error"])
    remote = _run(
        ["fit", *paths, "--nan", "error", "--engine", "dask", "--scheduler",
         cluster.scheduler_address, *SMALL]
    )  # fmt: skip
    assert local.exit_code == remote.exit_code == 1
    assert remote.stderr.startswith("Error: table.h5:/grp/x: NaN at row ")
    assert remote.stderr == local.stderr  # the same (first) bad row, in data order


def _local_apply(tmp_path, stats, paths, name="ref.npy"):
    out = tmp_path / name
    r = _run(["apply", stats, *paths, "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    return np.load(out)


def _stats(tmp_path, paths):
    out = tmp_path / "stats.json"
    r = _run(["fit", *paths, "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    return str(out)


def _dask_apply(cluster, stats, paths, out, *extra):
    args = ["apply", stats, *paths, "-o", str(out), "-q", "--engine", "dask"]
    r = _run([*args, "--scheduler", cluster.scheduler_address, *SMALL, *extra])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("kind", ["npy", "h5", "zarr"])
def test_apply_to_one_zarr_array_equals_local_engine(cluster, data, tmp_path, kind):
    paths, x = data[kind]
    stats = _stats(tmp_path, paths)
    expected = _local_apply(tmp_path, stats, paths)
    _dask_apply(cluster, stats, paths, tmp_path / "out.zarr")
    node = zarr.open(str(tmp_path / "out.zarr"), mode="r")
    arr = node["g/a"] if kind == "zarr" else node  # a Zarr input keeps its array's path
    np.testing.assert_array_equal(arr[:], expected)
    assert arr.dtype == np.float32
    if kind == "zarr":
        assert arr.chunks == (48, 5)  # the input's chunking
    ref = _reference(x)
    scale = np.where(np.sqrt(ref["var"]) > 0, np.sqrt(ref["var"]), 1.0)
    want = ((x.reshape(-1, x.shape[-1]) - ref["mean"]) / scale).reshape(x.shape)
    np.testing.assert_allclose(arr[:], want, rtol=1e-5, atol=1e-5)
    with open(stats) as f:
        assert json.loads(arr.attrs["normstat_stats"])["mean"] == json.load(f)["mean"]


def test_apply_npy_shards_to_one_npy_equals_local_engine(cluster, data, tmp_path):
    paths, _ = data["npy"]
    stats = _stats(tmp_path, paths)
    _dask_apply(cluster, stats, paths, tmp_path / "out.npy", "--method", "minmax")
    r = _run(["apply", stats, *paths, "-o", str(tmp_path / "ref.npy"), "--method", "minmax"])
    assert r.exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), np.load(tmp_path / "ref.npy"))


def test_apply_shards_writes_a_directory_of_parts_named_as_the_shards(cluster, data, tmp_path):
    paths, _ = data["npy"]
    stats = _stats(tmp_path, paths)
    _dask_apply(cluster, stats, paths, tmp_path / "parts")
    assert sorted(os.listdir(tmp_path / "parts")) == ["part-0.npy", "part-1.npy", "part-2.npy"]
    for p in paths:
        expected = _local_apply(tmp_path, stats, [p], "one.npy")
        got = np.load(tmp_path / "parts" / os.path.basename(p))
        np.testing.assert_array_equal(got, expected)
        os.unlink(tmp_path / "one.npy")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporaries left


def test_apply_zarr_shards_writes_zarr_parts(cluster, data, tmp_path):
    z = zarr.open(str(data["root"] / "store.zarr"), mode="r")["g/a"][:]
    shards = []
    for i, (lo, hi) in enumerate([(0, 150), (150, 400)]):
        path = tmp_path / f"s{i}.zarr"
        a = zarr.open_array(
            store=str(path), mode="w", shape=(hi - lo, 5), chunks=(40, 5), dtype=z.dtype
        )
        a[:] = z[lo:hi]
        shards.append(str(path))
    stats = _stats(tmp_path, shards)
    _dask_apply(cluster, stats, shards, tmp_path / "parts")
    expected = _local_apply(tmp_path, stats, shards)
    got = [zarr.open(str(tmp_path / "parts" / f"s{i}.zarr"), mode="r") for i in range(2)]
    assert [g.chunks for g in got] == [(40, 5), (40, 5)]
    np.testing.assert_array_equal(np.concatenate([g[:] for g in got]), expected)


def test_hdf5_output_is_refused_with_the_reason(cluster, data, tmp_path):
    paths, _ = data["h5"]
    stats = _stats(tmp_path, paths)
    out = tmp_path / "out.h5"
    r = _run(
        [
            "apply",
            stats,
            *paths,
            "-o",
            str(out),
            "--engine",
            "dask",
            "--scheduler",
            cluster.scheduler_address,
        ]
    )
    assert r.exit_code == 2
    assert "HDF5 has no safe concurrent writers" in r.stderr
    assert "--engine local" in r.stderr
    assert not out.exists()


def test_usage_errors_of_the_engine_options(cluster, data, monkeypatch):
    paths, _ = data["npy"]
    monkeypatch.setattr("normstat.engine.dask.CONNECT_TIMEOUT", 1)
    r = _run(["fit", *paths, "--scheduler", cluster.scheduler_address])
    assert r.exit_code == 2 and "--scheduler needs --engine dask" in r.stderr
    r = _run(
        [
            "fit",
            *paths,
            "--engine",
            "dask",
            "--workers",
            "2",
            "--scheduler",
            cluster.scheduler_address,
        ]
    )
    assert r.exit_code == 2 and "has its own workers" in r.stderr
    r = _run(["fit", *paths, "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9"])
    assert r.exit_code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in r.stderr


# ------------------------------------------------------------------------------------------------
# a worker killed in the middle of a fit


class _KillOneWorker:
    """A progress hook that SIGKILLs one worker process when the first task has finished."""

    def __init__(self, address: str) -> None:
        with distributed.Client(address) as c:
            self.pids = c.run(os.getpid)
        self.victim = sorted(self.pids.values())[0]
        self.done = 0
        self.killed = threading.Event()

    def start(self, total: int, row_bytes: int = 0) -> None:
        self.total = total

    def advance(self, n: int) -> None:
        self.done += n
        if not self.killed.is_set():
            os.kill(self.victim, signal.SIGKILL)
            self.killed.set()


@pytest.fixture
def many_tasks(tmp_path):
    """About 90 tasks of 32 two-row chunks: a kill lands while tasks are still running."""
    x = np.random.default_rng(7).normal(1e6, 1.0, (6000, 3))
    np.save(tmp_path / "big.npy", x)
    return str(tmp_path / "big.npy"), x


def _killing_cluster(allowed_failures: int):
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        return distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        )


def test_a_killed_worker_is_replaced_and_the_fit_is_still_exact(many_tasks):
    path, x = many_tasks
    local = normstat.fit(path, chunk_size=2, workers=1)
    with _killing_cluster(3) as c:
        hook = _KillOneWorker(c.scheduler_address)
        stats = normstat.fit(
            path,
            engine="dask",
            scheduler=c.scheduler_address,
            chunk_size=2,
            task_size=64,
            progress=hook,
        )
    assert hook.killed.is_set()
    assert hook.done == x.shape[0]  # every task reported once, none lost
    np.testing.assert_array_equal(stats.mean, local.mean)  # bit for bit, despite the kill
    np.testing.assert_array_equal(stats.var, local.var)
    np.testing.assert_array_equal(stats.count, [x.shape[0]] * 3)
    np.testing.assert_allclose(stats.var, x.var(axis=0), rtol=1e-9)


def test_a_worker_death_beyond_dasks_retries_is_a_clear_error_never_a_wrong_result(many_tasks):
    path, x = many_tasks
    with _killing_cluster(0) as c:
        hook = _KillOneWorker(c.scheduler_address)
        try:
            stats = normstat.fit(
                path,
                engine="dask",
                scheduler=c.scheduler_address,
                chunk_size=2,
                task_size=64,
                progress=hook,
            )
        except DataError as exc:
            assert "Dask workers died while running this task" in str(exc)
            assert "no result was written" in str(exc)
            assert str(exc).startswith(path + ": rows ")  # names the file and the rows
        else:  # the victim held no running task: then Dask recomputed, and the result is exact
            np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-12)
            np.testing.assert_allclose(stats.var, x.var(axis=0), rtol=1e-9)
    assert hook.killed.is_set()
