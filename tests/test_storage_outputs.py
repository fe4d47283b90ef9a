# ruff: noqa: F811  (the S3 fixtures, imported from test_storage, are redefined as arguments)
"""Outputs of many objects or many writers in a bucket, against a real S3 server on 127.0.0.1
(moto's ``ThreadedMotoServer``, which also enforces S3's 5 MiB minimum part size): Zarr stores
(local engine and Dask workers writing their own chunks) and ``apply --engine dask`` to one
``.npy`` object (one multipart upload, a part per aligned row range). Each must equal the local
apply bit for bit, appear only when complete, leave nothing behind on failure or Ctrl-C, and
keep ``--force`` semantics (the old output readable until the new one is complete)."""

from __future__ import annotations

import io
import json
import signal

import numpy as np
import pytest
from test_storage import (  # noqa: F401  (fixtures)
    BUCKET,
    KEY_ID,
    PRODUCER,
    ROOT,
    SECRET,
    interrupted_apply,
    keys,
    put,
    run,
    s3,
    s3_server,
)

import normstat
from normstat import storage
from normstat.errors import DataError, NormstatWarning
from normstat.sinks import npy as npy_sink
from normstat.sinks import zarr as zarr_sink

zarr = pytest.importorskip("zarr")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster(s3_server):
    """A LocalCluster whose workers have the S3 server's environment (they are spawned with
    it), as workers on real machines have their own credentials."""
    env = {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        with distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as c:
            yield c.scheduler_address


class _Read:
    """A Zarr array in the bucket read whole (its store's connections closed after)."""

    def __init__(self, arr) -> None:
        self.data, self.attrs = arr[:], dict(arr.attrs)
        self.dtype, self.chunks, self.shape = arr.dtype, arr.chunks, arr.shape
        zarr_sink.release(arr)

    def __getitem__(self, key):
        return self.data[key]


def _zarr(uri: str) -> _Read:
    return _Read(zarr.open_array(uri, mode="r", storage_options=storage.fsspec_options(uri)))


def _data(rows: int = 300, cols: int = 5, seed: int = 20):
    rng = np.random.default_rng(seed)
    return rng.normal(1e3, 4.0, size=(rows, cols)).astype(np.float32)


def _in_bucket(s3, tmp_path, x: np.ndarray) -> tuple[np.ndarray, str, normstat.Stats]:
    """``x`` as ``in/x.npy`` in the bucket (and ``x.npy`` beside it), with its statistics."""
    np.save(tmp_path / "x.npy", x)
    return x, put(s3, tmp_path / "x.npy", "in/x.npy"), normstat.fit(str(tmp_path / "x.npy"))


def _engine(engine: str, cluster_address: str | None) -> dict:
    if engine == "dask":
        return {"engine": "dask", "scheduler": cluster_address, "task_size": 64}
    return {}


def _same_zarr(got, want) -> None:
    np.testing.assert_array_equal(got[:], want[:])
    assert got.dtype == want.dtype and got.chunks == want.chunks and got.shape == want.shape
    a, b = json.loads(got.attrs["normstat_stats"]), json.loads(want.attrs["normstat_stats"])
    a.pop("created"), b.pop("created")
    assert a == b and set(got.attrs) == set(want.attrs)


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_zarr_to_a_bucket_equals_a_local_apply(s3, tmp_path, engine, request):
    address = request.getfixturevalue("cluster") if engine == "dask" else None
    x, src, stats = _in_bucket(s3, tmp_path, _data())
    out = f"s3://{BUCKET}/out/z.zarr"
    kw = _engine(engine, address) | {"chunk_size": 16}
    normstat.apply(stats, src, out, **kw)
    normstat.apply(stats, str(tmp_path / "x.npy"), str(tmp_path / "z.zarr"), **kw)
    got = _zarr(out)
    _same_zarr(got, zarr.open_array(str(tmp_path / "z.zarr"), mode="r"))
    np.testing.assert_array_equal(got[:], normstat.transform(x, stats, dtype="float32"))
    chunks = [k for k in keys(s3) if k.startswith("out/z.zarr/c/")]
    if engine == "dask":  # chunks of the read block, each written by its task's worker
        assert got.chunks == (16, 5) and len(chunks) == 19
    assert [k for k in keys(s3) if not k.startswith("out/z.zarr/")] == ["in/x.npy"]  # no stage


def test_zarr_objects_are_published_chunks_first_metadata_last(s3, tmp_path, monkeypatch):
    """The order of the switch: every chunk copied before the array's metadata, and the group
    (root) metadata after the array's (a Zarr input keeps its array's path in a group)."""
    x = _data(100, 3)
    z = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    z.create_array("g/a", shape=x.shape, chunks=(25, 3), dtype=x.dtype)[:] = x
    stats = normstat.fit(str(tmp_path / "in.zarr") + ":/g/a")
    copies: list[list[str]] = []
    real = storage.copy_objects

    def record(pairs):
        copies.append([b.split("out.zarr/", 1)[1] for _, b in pairs])
        real(pairs)

    monkeypatch.setattr(storage, "copy_objects", record)
    out = f"s3://{BUCKET}/out.zarr"
    normstat.apply(stats, str(tmp_path / "in.zarr") + ":/g/a", out)
    order = [k for group in copies for k in group]
    meta = [k for k in order if k.endswith("zarr.json")]
    assert order[: len(order) - len(meta)] == sorted(f"g/a/c/{i}/0" for i in range(4))
    assert meta == ["g/a/zarr.json", "g/zarr.json", "zarr.json"]  # deepest first, root last
    assert all(len(g) == 1 for g in copies[1:])  # metadata one object at a time, in order
    np.testing.assert_array_equal(
        _zarr(f"{out}/g/a")[:], normstat.transform(x, stats, dtype="float32")
    )


@pytest.mark.parametrize(
    ("task_rows", "parts_by_task"), [(10_240, [[1], [2], [3]]), (20_480, [[1, 2], [3]])]
)
def test_dask_npy_to_a_bucket_is_one_multipart_upload_equal_to_a_local_apply(
    s3, tmp_path, cluster, monkeypatch, task_rows, parts_by_task
):
    """Three parts of >= 5 MiB but the last (moto refuses smaller ones), uploaded by the
    workers (a part per task, or two by one task), completed by the client: the object equals
    the local apply's file byte for byte."""
    from normstat.engine import dask as dask_engine

    monkeypatch.setattr(npy_sink, "PART_BYTES", npy_sink.MIN_PART_BYTES)
    # 12.8 MB as float64: parts of 10,240 rows
    x, src, stats = _in_bucket(s3, tmp_path, _data(25_000, 64))
    real = dask_engine.run_jobs
    receipts: list[list[int]] = []

    def run_jobs(jobs, o):
        done = real(jobs, o)
        receipts.extend([n for n, _ in r] for _, r in done)
        return done

    monkeypatch.setattr(dask_engine, "run_jobs", run_jobs)
    out = f"s3://{BUCKET}/out/z.npy"
    normstat.apply(stats, src, out, dtype="float64", engine="dask", scheduler=cluster,
                   task_size=task_rows)  # fmt: skip
    assert receipts == parts_by_task
    normstat.apply(stats, str(tmp_path / "x.npy"), str(tmp_path / "z.npy"), dtype="float64")
    body = s3.get_object(Bucket=BUCKET, Key="out/z.npy")["Body"].read()
    assert body == (tmp_path / "z.npy").read_bytes()
    assert s3.head_object(Bucket=BUCKET, Key="out/z.npy")["ETag"].strip('"').endswith("-3")
    np.testing.assert_array_equal(
        np.load(io.BytesIO(body)), normstat.transform(x, stats, dtype="float64")
    )
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_a_small_dask_npy_is_one_part(s3, tmp_path, cluster):
    x, src, stats = _in_bucket(s3, tmp_path, _data(300, 5))
    out = f"s3://{BUCKET}/out/z.npy"
    normstat.apply(stats, src, out, engine="dask", scheduler=cluster, chunk_size=16, task_size=64)
    got = np.load(io.BytesIO(s3.get_object(Bucket=BUCKET, Key="out/z.npy")["Body"].read()))
    np.testing.assert_array_equal(got, normstat.transform(x, stats, dtype="float32"))


FAILING = [("zarr", "local"), ("zarr", "dask"), ("npy", "dask")]


@pytest.mark.parametrize(("fmt", "engine"), FAILING)
def test_a_failing_apply_to_a_bucket_leaves_no_object_and_no_upload(
    s3, tmp_path, request, monkeypatch, fmt, engine
):
    """Rows that overflow float16 in the SECOND task / chunk (the first was written): an
    error, and nothing at the output prefix or key, no stage, no open multipart upload."""
    address = request.getfixturevalue("cluster") if engine == "dask" else None
    monkeypatch.setattr(npy_sink, "PART_BYTES", npy_sink.MIN_PART_BYTES)
    rows = 25_000 if fmt == "npy" else 300
    x = _data(rows, 64 if fmt == "npy" else 5).astype(np.float64)
    stats = normstat.fit_arrays(x)
    bad_row = 12_000 if fmt == "npy" else 100  # in the second task (and chunk 7 of 16 rows)
    x[bad_row:, 1] = 1e30  # far outside float16 once standardised
    np.save(tmp_path / "bad.npy", x)
    src = put(s3, tmp_path / "bad.npy", "in/bad.npy")
    kw = _engine(engine, address) | {"dtype": "float16"}
    if fmt == "zarr":
        kw["chunk_size"] = 16  # dask: tasks of 64 rows, the bad rows in the second
    elif engine == "dask":
        kw["task_size"] = 10_240  # a part per task: the bad rows in the second
    out = f"s3://{BUCKET}/out/z.{fmt}"
    with pytest.raises(DataError):
        normstat.apply(stats, src, out, **kw)
    assert keys(s3) == ["in/bad.npy"]
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


@pytest.mark.parametrize(("fmt", "engine"), [("zarr", "local"), ("zarr", "dask"), ("npy", "dask")])
def test_an_existing_output_needs_force(s3, tmp_path, request, fmt, engine):
    address = request.getfixturevalue("cluster") if engine == "dask" else None
    x, src, stats = _in_bucket(s3, tmp_path, _data())
    out = f"s3://{BUCKET}/out/z.{fmt}"
    normstat.apply(stats, src, out, **_engine(engine, address))
    before = {k: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys(s3)}
    with pytest.raises(normstat.UsageError, match="output exists"):
        normstat.apply(stats, src, out, dtype="float64", **_engine(engine, address))
    assert {k: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys(s3)} == before
    normstat.apply(stats, src, out, dtype="float64", force=True, **_engine(engine, address))
    want = normstat.transform(x, stats, dtype="float64")
    if fmt == "zarr":
        got = _zarr(out)[:]
    else:
        got = np.load(io.BytesIO(s3.get_object(Bucket=BUCKET, Key="out/z.npy")["Body"].read()))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
    assert not [k for k in keys(s3) if ".normstat-" in k]  # no stage left


def test_force_keeps_the_old_zarr_readable_until_the_new_one_is_complete(
    s3, tmp_path, monkeypatch, cluster
):
    """While the new store is written (checked from inside its second block's write), OUT is
    still the old array, whole; a replacement that fails keeps it; one that succeeds replaces
    it and removes the old chunks the new one did not overwrite (different chunking)."""
    x, src, stats = _in_bucket(s3, tmp_path, _data())
    out = f"s3://{BUCKET}/out/z.zarr"
    normstat.apply(stats, src, out, chunk_size=10, **_engine("dask", cluster))  # 30 chunks
    old = normstat.transform(x, stats, dtype="float32")
    seen: list[np.ndarray] = []
    real = zarr_sink.ZarrRangeWriter.write

    def write_and_look(self, block, fail=False):
        real(self, block)
        if len(seen) < 2:
            seen.append(_zarr(out)[:])
            if fail and len(seen) == 2:
                raise OSError("injected failure in the second block")

    monkeypatch.setattr(zarr_sink.ZarrRangeWriter, "write", lambda s, b: write_and_look(s, b, True))
    with pytest.raises(DataError, match="injected failure"):
        normstat.apply(stats, src, out, chunk_size=100, dtype="float64", force=True)
    for array in seen:
        np.testing.assert_array_equal(array, old)
    np.testing.assert_array_equal(_zarr(out)[:], old)  # the failed replacement changed nothing
    assert len([k for k in keys(s3) if "/c/" in k]) == 30
    seen.clear()
    monkeypatch.setattr(zarr_sink.ZarrRangeWriter, "write", write_and_look)
    normstat.apply(stats, src, out, chunk_size=100, dtype="float64", force=True)
    assert len(seen) == 2
    for array in seen:
        np.testing.assert_array_equal(array, old)
    new = _zarr(out)
    assert new.dtype == np.float64 and new.chunks == (300, 5)  # the local engine's: one
    np.testing.assert_array_equal(new[:], normstat.transform(x, stats, dtype="float64"))
    assert [k for k in keys(s3) if k.startswith("out/")] == [
        "out/z.zarr/c/0/0",  # the old chunks 1..29 were removed once the new array was whole
        "out/z.zarr/zarr.json",
    ]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_zarr_apply_leaves_no_object(s3, tmp_path, sig):
    """Ctrl-C (or SIGTERM) while a real process writes a Zarr store to the bucket: exit
    130 / 143, and no object at the output prefix nor in a stage (chunks were written)."""
    staged: list[str] = []
    err = interrupted_apply(
        s3,
        tmp_path,
        sig,
        f"s3://{BUCKET}/out/z.zarr",
        before_signal=lambda: staged.extend(k for k in keys(s3) if ".normstat-" in k),
    )
    assert staged, "no chunk was staged before the signal: the test proves nothing"
    assert keys(s3) == ["s.json"]
    assert "Unclosed" not in err


def test_what_a_bucket_still_cannot_take_is_refused_before_the_pass(s3, tmp_path, cluster):
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = _data()
    for i in range(2):
        np.save(tmp_path / f"p{i}.npy", x)
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1]}), tmp_path / "t.parquet")
    srcs = [put(s3, tmp_path / f"p{i}.npy", f"in/p{i}.npy") for i in range(2)]
    table = put(s3, tmp_path / "t.parquet", "in/t.parquet")
    stats = normstat.fit(srcs)
    tstats = normstat.fit(table)
    with pytest.raises(normstat.UsageError, match="gs:// does not offer it"):
        normstat.apply(tstats, table, "gs://b/o.parquet", engine="dask", scheduler=cluster)
    with pytest.raises(normstat.UsageError, match="gs:// does not offer it"):
        normstat.apply(stats, srcs, "gs://b/o.npy", engine="dask", scheduler=cluster)
    assert keys(s3) == ["in/p0.npy", "in/p1.npy", "in/t.parquet"]
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_an_interrupt_after_the_parts_aborts_the_dask_upload(s3, tmp_path, cluster, monkeypatch):
    """Ctrl-C seen once every worker has uploaded its parts: the client aborts the upload
    instead of completing it (no object, no parts left)."""
    from normstat import interrupts
    from normstat.engine import dask as dask_engine

    monkeypatch.setattr(npy_sink, "PART_BYTES", npy_sink.MIN_PART_BYTES)
    x, src, stats = _in_bucket(s3, tmp_path, _data(25_000, 64))
    real = dask_engine.run_jobs
    uploaded: list[int] = []

    def run_then_interrupt(jobs, o):
        done = real(jobs, o)
        (up,) = s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
        parts = s3.list_parts(Bucket=BUCKET, Key=up["Key"], UploadId=up["UploadId"])["Parts"]
        uploaded.extend(p["PartNumber"] for p in parts)
        monkeypatch.setattr(interrupts, "received", [signal.SIGINT])
        return done

    monkeypatch.setattr(dask_engine, "run_jobs", run_then_interrupt)
    with pytest.raises(interrupts.Interrupted):
        normstat.apply(stats, src, f"s3://{BUCKET}/out/z.npy", dtype="float64", engine="dask",
                       scheduler=cluster)  # fmt: skip
    assert uploaded == [1, 2, 3]
    assert keys(s3) == ["in/x.npy"]
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_an_output_appearing_while_writing_is_neither_replaced_nor_deleted(
    s3, tmp_path, monkeypatch
):
    """Another writer puts a store at OUT while this run writes (no --force, nothing there at
    the start): the run stops with a line saying so, its stage is removed, and the other
    writer's objects are left exactly as they are."""
    x, src, stats = _in_bucket(s3, tmp_path, _data())
    real = zarr_sink.ZarrRangeWriter.write

    def write_while_another_does(self, block):
        real(self, block)
        s3.put_object(Bucket=BUCKET, Key="out/z.zarr/zarr.json", Body=b"{}")
        s3.put_object(Bucket=BUCKET, Key="out/z.zarr/c/0/0", Body=b"theirs")

    monkeypatch.setattr(zarr_sink.ZarrRangeWriter, "write", write_while_another_does)
    with pytest.raises(normstat.UsageError, match="output appeared while writing"):
        normstat.apply(stats, src, f"s3://{BUCKET}/out/z.zarr")
    assert keys(s3) == ["in/x.npy", "out/z.zarr/c/0/0", "out/z.zarr/zarr.json"]
    assert s3.get_object(Bucket=BUCKET, Key="out/z.zarr/c/0/0")["Body"].read() == b"theirs"


def test_a_stage_that_cannot_be_deleted_is_said(s3, tmp_path, monkeypatch):
    """The store fails the clean-up too: a warning names the staging prefix left behind
    (never a silent orphan), and the first error is the one raised."""
    x, src, stats = _in_bucket(s3, tmp_path, _data())

    def broken(self, block):
        raise OSError("injected write failure")

    def refuse(uris):
        raise OSError("injected delete failure")

    monkeypatch.setattr(zarr_sink.ZarrRangeWriter, "write", broken)
    monkeypatch.setattr(storage, "delete_objects", refuse)
    with (
        pytest.warns(NormstatWarning, match=r"could not delete the staging prefix"),
        pytest.raises(DataError, match="injected write failure"),
    ):
        normstat.apply(stats, src, f"s3://{BUCKET}/out/z.zarr")
    staged = [k for k in keys(s3) if ".z.zarr.normstat-" in k]
    assert staged  # what the warning says is there


def _table(tmp_path, s3, rows: int, bad_from: int | None = None) -> tuple[str, str, np.ndarray]:
    """A Parquet table in the bucket (and its local copy); rows from ``bad_from`` overflow
    float16 once standardised."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = _data(rows, 6, seed=7)
    if bad_from is not None:
        x[bad_from:, 2] = 1e30
    local = tmp_path / "t.parquet"
    pq.write_table(pa.table({f"c{i}": x[:, i] for i in range(6)}), local, row_group_size=50_000)
    good = tmp_path / "good.parquet"  # the rows before ``bad_from``, to fit on
    pq.write_table(pa.table({f"c{i}": x[:bad_from, i] for i in range(6)}), good)
    return str(good), put(s3, local, "in/t.parquet"), x


def _read_table(data: bytes, fmt: str):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return pq.read_table(pa.BufferReader(data))
    if fmt == "csv":
        return pacsv.read_csv(pa.BufferReader(data))
    return pa.ipc.open_file(pa.BufferReader(data)).read_all()


@pytest.mark.parametrize(("fmt", "rows"), [("parquet", 300), ("csv", 300), ("arrow", 300),
                                           ("parquet", 1_000_000)])  # fmt: skip
def test_dask_table_file_to_a_bucket_equals_a_local_apply(s3, tmp_path, cluster, fmt, rows):
    """One task writes the table file on its worker and uploads it as the parts of the
    client's multipart upload (1,000,000 rows: a 24 MB file, two parts)."""
    local_src, src, x = _table(tmp_path, s3, rows)
    stats = normstat.fit(local_src)
    want = tmp_path / f"want.{fmt}"
    normstat.apply(stats, local_src, str(want))
    out = f"s3://{BUCKET}/out/t.{fmt}"
    normstat.apply(stats, src, out, engine="dask", scheduler=cluster)
    head = s3.head_object(Bucket=BUCKET, Key=f"out/t.{fmt}")
    got = _read_table(s3.get_object(Bucket=BUCKET, Key=f"out/t.{fmt}")["Body"].read(), fmt)
    ref = _read_table(want.read_bytes(), fmt)
    assert got.schema.equals(ref.schema, check_metadata=False)
    assert got.equals(ref)
    if fmt != "csv":  # (CSV's text of a float32 reads back as another float64)
        z = normstat.transform(x, stats, dtype="float32")
        np.testing.assert_array_equal(np.column_stack([c.to_numpy() for c in got.columns]), z)
    parts = -(-head["ContentLength"] // storage.UPLOAD_PART)
    assert head["ETag"].strip('"').endswith(f"-{parts}")
    assert (parts > 1) == (rows > 300)
    assert keys(s3) == ["in/t.parquet", f"out/t.{fmt}"]
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_a_failing_dask_table_file_to_a_bucket_leaves_no_object_and_no_upload(
    s3, tmp_path, cluster
):
    """Rows that overflow float16 past the first row group: the task fails after writing
    some of the file; the client aborts the upload."""
    local_src, src, x = _table(tmp_path, s3, 120_000, bad_from=110_000)
    stats = normstat.fit(local_src)
    with pytest.raises(DataError, match="row 110000"):
        normstat.apply(stats, src, f"s3://{BUCKET}/out/t.parquet", dtype="float16",
                       engine="dask", scheduler=cluster)  # fmt: skip
    assert keys(s3) == ["in/t.parquet"]
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_an_existing_table_object_needs_force_and_an_interrupt_aborts(
    s3, tmp_path, cluster, monkeypatch
):
    from normstat import interrupts
    from normstat.engine import dask as dask_engine

    local_src, src, x = _table(tmp_path, s3, 300)
    stats = normstat.fit(local_src)
    out = f"s3://{BUCKET}/out/t.parquet"
    normstat.apply(stats, src, out, engine="dask", scheduler=cluster)
    before = s3.get_object(Bucket=BUCKET, Key="out/t.parquet")["Body"].read()
    with pytest.raises(normstat.UsageError, match="output exists"):
        normstat.apply(stats, src, out, dtype="float64", engine="dask", scheduler=cluster)
    real = dask_engine.run_jobs

    def run_then_interrupt(jobs, o):
        done = real(jobs, o)
        monkeypatch.setattr(interrupts, "received", [signal.SIGINT])
        return done

    monkeypatch.setattr(dask_engine, "run_jobs", run_then_interrupt)
    with pytest.raises(interrupts.Interrupted):
        normstat.apply(stats, src, out, dtype="float64", force=True, engine="dask",
                       scheduler=cluster)  # fmt: skip
    assert s3.get_object(Bucket=BUCKET, Key="out/t.parquet")["Body"].read() == before
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    monkeypatch.setattr(dask_engine, "run_jobs", real)
    monkeypatch.setattr(interrupts, "received", [])
    normstat.apply(stats, src, out, dtype="float64", force=True, engine="dask", scheduler=cluster)
    got = _read_table(s3.get_object(Bucket=BUCKET, Key="out/t.parquet")["Body"].read(), "parquet")
    z = normstat.transform(x.astype(np.float64), stats, dtype="float64")
    np.testing.assert_array_equal(np.column_stack([c.to_numpy() for c in got.columns]), z)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_dask_directory_of_parts_to_a_bucket_equals_the_local_one(s3, tmp_path, cluster, fmt):
    """Several shards, OUT without suffix: one part per shard, each an upload completed into a
    staged prefix, published together; equal to the local directory of parts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    xs = [_data(300 + 50 * i, 4, seed=30 + i) for i in range(3)]
    local, remote = [], []
    for i, x in enumerate(xs):
        name = f"s{i}.{fmt}"
        if fmt == "npy":
            np.save(tmp_path / name, x)
        else:
            pq.write_table(pa.table({f"c{j}": x[:, j] for j in range(4)}), tmp_path / name)
        local.append(str(tmp_path / name))
        remote.append(put(s3, tmp_path / name, f"in/{name}"))
    stats = normstat.fit(local)
    normstat.apply(stats, local, str(tmp_path / "parts"), engine="dask", scheduler=cluster)
    normstat.apply(stats, remote, f"s3://{BUCKET}/parts", engine="dask", scheduler=cluster)
    names = sorted(p.name for p in (tmp_path / "parts").iterdir())
    assert [k for k in keys(s3) if k.startswith("parts/")] == [f"parts/{n}" for n in names]
    for n, x in zip(names, xs, strict=True):
        data = s3.get_object(Bucket=BUCKET, Key=f"parts/{n}")["Body"].read()
        if fmt == "npy":
            assert data == (tmp_path / "parts" / n).read_bytes()
            got = np.load(io.BytesIO(data))
        else:
            table = _read_table(data, "parquet")
            assert table.equals(pq.read_table(tmp_path / "parts" / n))
            got = np.column_stack([c.to_numpy() for c in table.columns])
        np.testing.assert_array_equal(got, normstat.transform(x, stats, dtype="float32"))
    assert not [k for k in keys(s3) if ".normstat-" in k]
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_a_failing_part_leaves_no_directory_in_the_bucket(s3, tmp_path, cluster):
    """The last shard overflows float16: no part appears, no stage and no upload is left."""
    xs = [_data(300, 4, seed=40 + i).astype(np.float64) for i in range(3)]
    stats = normstat.fit_arrays(np.concatenate(xs))
    xs[2][100:, 1] = 1e30
    remote = []
    for i, x in enumerate(xs):
        np.save(tmp_path / f"s{i}.npy", x)
        remote.append(put(s3, tmp_path / f"s{i}.npy", f"in/s{i}.npy"))
    with pytest.raises(DataError):
        normstat.apply(stats, remote, f"s3://{BUCKET}/parts", dtype="float16", engine="dask",
                       scheduler=cluster)  # fmt: skip
    assert keys(s3) == [f"in/s{i}.npy" for i in range(3)]
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
