"""``--engine dask`` over tables (Parquet shards, Arrow IPC files) on a real multi-process cluster.

Fits are checked against the local engine (bit for bit: the same chunks, the same merge tree),
a numpy float64 two-pass reference and DuckDB; outputs of ``apply`` against the local engine's
output for each shard alone.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from tables_data import numbers, reference, table

import normstat
from normstat.cli import main
from normstat.errors import DataError

distributed = pytest.importorskip("distributed")
duckdb = pytest.importorskip("duckdb")
import test_dask_engine as engine_tests  # noqa: E402

cluster = engine_tests.cluster  # the same module-scoped LocalCluster fixture

SIZES = (700, 1, 0, 1300, 1001)  # an empty shard, a one-row shard
ROW_GROUPS = (96, 1, 10, 250, 41)  # row groups of every size relative to the chunks
SMALL = ["--chunk-size", "32", "--task-size", "100"]  # tasks of a few row groups each


def _pieces(t: pa.Table) -> list[pa.Table]:
    bounds = np.cumsum((0, *SIZES))
    return [t.slice(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The same rows as Parquet shards and as Arrow IPC files: nulls in ``a``, ``b`` and ``c``
    (no NaN, which DuckDB would count as a value), strings and timestamps passed through."""
    root = tmp_path_factory.mktemp("dask-tables")
    x, nulls = numbers(n=sum(SIZES), seed=2026)
    x[:, 0] = np.nan_to_num(x[:, 0], nan=2.0)
    nulls[::9, 0] = True
    nulls[::17, 2] = True
    t = table(x, nulls)
    (root / "pq").mkdir()
    (root / "ipc").mkdir()
    for i, (part, rg) in enumerate(zip(_pieces(t), ROW_GROUPS, strict=True)):
        pq.write_table(part, root / "pq" / f"part-{i}.parquet", row_group_size=rg)
        with ipc.new_file(str(root / "ipc" / f"part-{i}.arrow"), part.schema) as w:
            for b in part.to_batches(max_chunksize=rg + 7):
                w.write_batch(b)
    return root, np.where(nulls, np.nan, x), t


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _fit(*args):
    r = _run(["fit", *args, "-q"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _dask(cluster):
    return ["--engine", "dask", "--scheduler", cluster.scheduler_address]


@pytest.mark.parametrize("kind", ["pq", "ipc"])
def test_fit_of_shards_equals_the_local_engine_numpy_and_duckdb(cluster, data, kind):
    root, x, _ = data
    local = _fit(str(root / kind), "--chunk-size", "32")
    remote = _fit(str(root / kind), *_dask(cluster), *SMALL)
    for key in ("mean", "var", "std", "m2", "min", "max", "count", "nan_count", "source"):
        assert remote[key] == local[key], key  # bit for bit: the local engine's merge tree
    assert remote["features"] == ["a", "b", "c", "idx"]
    ref = reference(x)
    np.testing.assert_allclose(remote["mean"], ref["mean"], rtol=1e-13)
    np.testing.assert_allclose(remote["var"], ref["var"], rtol=1e-12)
    np.testing.assert_array_equal(remote["min"], ref["min"])
    np.testing.assert_array_equal(remote["max"], ref["max"])
    np.testing.assert_array_equal(remote["count"], ref["count"])
    np.testing.assert_array_equal(remote["nan_count"], ref["nan_count"])
    if kind == "pq":
        sql = ", ".join(
            f'count("{c}"), avg("{c}"), var_pop("{c}"), min("{c}"), max("{c}")'
            for c in remote["features"]
        )
        row = duckdb.execute(f"SELECT {sql} FROM read_parquet('{root}/pq/*.parquet')").fetchone()
        count, mean, var, lo, hi = np.array(row, np.float64).reshape(4, 5).T
        np.testing.assert_array_equal(remote["count"], count)
        np.testing.assert_allclose(remote["mean"], mean, rtol=1e-12)
        np.testing.assert_allclose(remote["var"], var, rtol=1e-10)
        np.testing.assert_array_equal(remote["min"], lo)
        np.testing.assert_array_equal(remote["max"], hi)


def test_any_task_size_gives_the_same_bits(cluster, data):
    """Tasks of one row group, of a few, of everything: the merge tree is the local one."""
    root, _, _ = data
    path = str(root / "pq")
    local = normstat.fit(path, chunk_size=20, columns=["c", "a"])
    for task_size in (1, 64, 10**6):
        remote = normstat.fit(
            path,
            chunk_size=20,
            columns=["c", "a"],
            engine="dask",
            scheduler=cluster.scheduler_address,
            task_size=task_size,
        )
        assert remote.features == ["c", "a"]
        for a, b in zip(local.moments.arrays(), remote.moments.arrays(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_data_error_on_a_worker_is_the_local_engines_error(cluster, data, monkeypatch):
    root, _, _ = data
    monkeypatch.chdir(root)  # relative paths: errors name files as given
    args = ["fit", "pq", "--nan", "error"]  # nulls are missing values, which --nan error refuses
    local = _run(args)
    remote = _run([*args, *_dask(cluster), *SMALL])
    assert local.exit_code == remote.exit_code == 1
    assert remote.stderr == local.stderr  # the first bad row in data order, not in time
    assert remote.stderr.startswith("Error: pq/part-0.parquet: NaN at row ")


def test_apply_writes_one_part_per_shard_equal_to_the_local_engine(cluster, data, tmp_path):
    root, x, _ = data
    shards = sorted(str(p) for p in (root / "pq").iterdir())
    stats = str(tmp_path / "stats.json")
    normstat.save(normstat.fit(shards), stats)
    out = tmp_path / "normalised"
    r = _run(["apply", stats, *shards, "-o", str(out), "-q", *_dask(cluster), *SMALL])
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(out)) == [os.path.basename(s) for s in shards]
    for i, shard in enumerate(shards):
        got = pq.read_table(out / os.path.basename(shard))
        ref = str(tmp_path / f"ref-{i}.parquet")
        assert _run(["apply", stats, shard, "-o", ref, "-q", "--chunk-size", "32"]).exit_code == 0
        assert got.equals(pq.read_table(ref), check_metadata=True)
        given = pq.read_table(shard)
        for name in ("label", "ts"):  # not features: the very same values and types
            assert got.column(name).equals(given.column(name))
        assert got.schema.metadata == given.schema.metadata
    got = pq.read_table(out)  # the directory reads back as one dataset
    s = normstat.load(stats)
    j = s.features.index("c")
    want = ((x[:, 2] - s.mean[j]) / s.std[j]).astype(np.float32)
    np.testing.assert_allclose(got.column("c").to_numpy(zero_copy_only=False), want, rtol=1e-6)
    assert got.column("c").null_count == int(np.isnan(x[:, 2]).sum())


def test_apply_to_arrow_parts_and_one_shard_to_one_file(cluster, data, tmp_path):
    root, _, _ = data
    shards = sorted(str(p) for p in (root / "ipc").iterdir())
    s = normstat.fit(shards)
    normstat.apply(
        s, shards, str(tmp_path / "parts"), engine="dask", scheduler=cluster.scheduler_address
    )
    for shard in shards:
        normstat.apply(s, shard, str(tmp_path / "ref.arrow"))
        part = ipc.open_file(str(tmp_path / "parts" / os.path.basename(shard))).read_all()
        assert part.equals(ipc.open_file(str(tmp_path / "ref.arrow")).read_all())
        os.unlink(tmp_path / "ref.arrow")
    one = str(tmp_path / "one.parquet")  # one shard, another format: one file
    normstat.apply(s, shards[0], one, engine="dask", scheduler=cluster.scheduler_address)
    normstat.apply(s, shards[0], str(tmp_path / "ref.parquet"))
    assert pq.read_table(one).equals(pq.read_table(tmp_path / "ref.parquet"))
    assert sorted(os.listdir(tmp_path)) == ["one.parquet", "parts", "ref.parquet"]


def test_parts_keep_their_shards_own_other_columns(cluster, data, tmp_path):
    root, _, t = data
    shards = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    pq.write_table(t.slice(0, 100).drop_columns(["ts"]), shards[0])
    pq.write_table(t.slice(100, 50).append_column("extra", pa.array(["x"] * 50)), shards[1])
    s = normstat.fit(shards)
    normstat.apply(
        s, shards, str(tmp_path / "out"), engine="dask", scheduler=cluster.scheduler_address
    )
    a, b = (pq.read_table(tmp_path / "out" / n) for n in ("a.parquet", "b.parquet"))
    assert a.column_names == ["label", "a", "b", "c", "idx"]
    assert b.column_names == ["label", "a", "b", "ts", "c", "idx", "extra"]
    assert b.column("extra").to_pylist() == ["x"] * 50
    np.testing.assert_allclose(
        b.column("c").to_numpy(zero_copy_only=False),
        ((t.column("c").to_numpy()[100:150] - s.mean[2]) / s.std[2]).astype(np.float32),
        rtol=1e-6,
    )


def test_a_failing_part_leaves_no_output_and_no_temporary(cluster, data, tmp_path):
    """A shard whose data pages are corrupt (its footer is fine, so the client accepts it)."""
    root, _, t = data
    shards = [str(root / "pq" / "part-0.parquet"), str(tmp_path / "corrupt.parquet")]
    pq.write_table(t.slice(0, 2000), shards[1], compression="zstd", row_group_size=500)
    with open(shards[1], "r+b") as f:
        f.seek(os.path.getsize(shards[1]) // 3)
        f.write(bytes(200))
    stats = str(tmp_path / "s.json")
    normstat.save(normstat.fit(shards[0]), stats)
    out = tmp_path / "out"
    r = _run(["apply", stats, *shards, "-o", str(out), *_dask(cluster)])
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: {shards[1]}: cannot read past row ")
    assert "Traceback" not in r.output
    assert sorted(os.listdir(tmp_path)) == ["corrupt.parquet", "s.json"]  # nothing else


def test_a_killed_worker_never_gives_a_wrong_result(tmp_path):
    """About 100 tasks of one 20-row row group; one worker is killed after the first one."""
    x = np.random.default_rng(11).normal(1e6, 1.0, (4000, 3))
    path = str(tmp_path / "big.parquet")
    pq.write_table(pa.table({f"f{j}": x[:, j] for j in range(3)}), path, row_group_size=40)
    local = normstat.fit(path, chunk_size=20)
    with engine_tests._killing_cluster(3) as c:
        hook = engine_tests._KillOneWorker(c.scheduler_address)
        try:
            stats = normstat.fit(
                path,
                engine="dask",
                scheduler=c.scheduler_address,
                chunk_size=20,
                task_size=40,
                progress=hook,
            )
        except DataError as exc:  # the task's workers died too often: a clear error
            assert "Dask workers died while running this task" in str(exc)
        else:  # rescheduled: the very same bits
            for a, b in zip(local.moments.arrays(), stats.moments.arrays(), strict=True):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_allclose(stats.var, x.var(axis=0), rtol=1e-8)
            assert hook.done == x.shape[0]
    assert hook.killed.is_set()
