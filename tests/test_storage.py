"""Object storage against a real S3 server on 127.0.0.1 (moto's ``ThreadedMotoServer``).

Every source kind fitted from the bucket equals the local fit bit for bit; outputs to the bucket
appear only when complete; missing keys, a wrong endpoint and secrets in messages.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import reference

import normstat
from normstat.cli import main

moto_server = pytest.importorskip("moto.server")
pytest.importorskip("s3fs")

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "normstat-test"
KEY_ID = "AKIAEXAMPLEKEYID0001"
SECRET = "s3cr3t-value-that-must-never-be-printed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server():
    """One S3 server for the session; each test gets its own bucket state via ``s3``."""
    server = moto_server.ThreadedMotoServer(
        ip_address="127.0.0.1", port=_free_port(), verbose=False
    )
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The environment pointing at the server, and an empty bucket; returns a boto3 client."""
    import boto3

    env = {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(k, raising=False)
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket=BUCKET)
    yield client
    listed = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    for obj in listed:
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    for up in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        client.abort_multipart_upload(Bucket=BUCKET, Key=up["Key"], UploadId=up["UploadId"])
    client.delete_bucket(Bucket=BUCKET)


def put(client, local: Path, key: str) -> str:
    if local.is_dir():
        for p in sorted(local.rglob("*")):
            if p.is_file():
                client.upload_file(str(p), BUCKET, f"{key}/{p.relative_to(local).as_posix()}")
    else:
        client.upload_file(str(local), BUCKET, key)
    return f"s3://{BUCKET}/{key}"


def keys(client) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def same(a: normstat.Stats, b: normstat.Stats) -> None:
    for name in ("count", "mean", "var", "min", "max"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(20)
    x = rng.normal(3.0, 2.0, size=(2000, 4)).astype(np.float32)
    x[::7, 1] *= 100
    return x


def _table(x: np.ndarray) -> pa.Table:
    return pa.table({f"f{j}": x[:, j] for j in range(x.shape[1])} | {"tag": ["a"] * len(x)})


def _write(kind: str, x: np.ndarray, where: Path) -> tuple[Path, str]:
    """A file of ``kind`` holding ``x``; returns (path, the suffix after the object key)."""
    if kind == "parquet":
        pq.write_table(_table(x), where / "t.parquet", row_group_size=300)
        return where / "t.parquet", ""
    if kind == "arrow":
        feather.write_feather(_table(x), where / "t.arrow", chunksize=500)
        return where / "t.arrow", ""
    if kind == "csv":
        pacsv.write_csv(_table(x.astype(np.float64)), where / "t.csv")
        return where / "t.csv", ""
    if kind == "npy":
        np.save(where / "t.npy", x)
        return where / "t.npy", ""
    if kind in ("hdf5", "hdf5-chunked"):
        with h5py.File(where / "t.h5", "w") as f:
            chunks = (128, 4) if kind == "hdf5-chunked" else None
            f.create_dataset("x", data=x, chunks=chunks, compression="gzip" if chunks else None)
        return where / "t.h5", ":/x"
    if kind == "zarr":
        import zarr

        z = zarr.open(
            str(where / "t.zarr"), mode="w", shape=x.shape, chunks=(256, 4), dtype=x.dtype
        )
        z[:] = x
        return where / "t.zarr", ""
    raise AssertionError(kind)


KINDS = ["parquet", "arrow", "csv", "npy", "hdf5", "hdf5-chunked", "zarr"]


@pytest.mark.parametrize("kind", KINDS)
def test_fit_from_the_bucket_equals_the_local_fit(s3, tmp_path, data, kind):
    local, inside = _write(kind, data, tmp_path)
    uri = put(s3, local, f"data/{local.name}")
    here = normstat.fit(f"{local}{inside}")
    there = normstat.fit(f"{uri}{inside}")
    same(here, there)
    ref = reference(data.astype(np.float64), (-1,))
    np.testing.assert_allclose(there.mean, ref["mean"], rtol=1e-12)
    np.testing.assert_allclose(there.var, ref["var"], rtol=1e-10)
    assert there.source["paths"] == [uri]
    if kind != "zarr":  # one object: its ETag and size are the fingerprint
        (fp,) = there.source["fingerprints"]
        assert fp["size"] == local.stat().st_size and fp["etag"]


def test_tar_shards_from_the_bucket_equal_the_local_fit(s3, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for s in range(2):
        with tarfile.open(tmp_path / f"shard-{s}.tar", "w") as tar:
            for i in range(3):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (5, 6, 3), dtype=np.uint8)).save(buf, "PNG")
                info = tarfile.TarInfo(f"s{s}{i}.png")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
        put(s3, tmp_path / f"shard-{s}.tar", f"shards/shard-{s}.tar")
    here = normstat.fit(str(tmp_path / "shard-{0..1}.tar"))
    there = normstat.fit(f"s3://{BUCKET}/shards/shard-{{0..1}}.tar")
    same(here, there)
    assert there.count.min() == 2 * 3 * 5 * 6


def test_glob_and_prefix_of_shards(s3, tmp_path, data):
    for i, part in enumerate(np.array_split(data, 3)):
        pq.write_table(_table(part), tmp_path / f"part-{i}.parquet")
        put(s3, tmp_path / f"part-{i}.parquet", f"ds/part-{i}.parquet")
    s3.put_object(Bucket=BUCKET, Key="ds/_SUCCESS", Body=b"")
    whole = normstat.fit(str(tmp_path / "part-*.parquet"))
    same(whole, normstat.fit(f"s3://{BUCKET}/ds/part-*.parquet"))
    same(whole, normstat.fit(f"s3://{BUCKET}/ds/"))
    assert len(normstat.fit(f"s3://{BUCKET}/ds").source["paths"]) == 3
    missing = run("fit", f"s3://{BUCKET}/ds/nothing-*.parquet", ok=False)
    assert missing.exit_code == 1 and "no object matches" in missing.output


def test_apply_bucket_to_bucket_equals_a_local_apply(s3, tmp_path, data):
    np.save(tmp_path / "x.npy", data)
    src = put(s3, tmp_path / "x.npy", "in/x.npy")
    run("fit", str(tmp_path / "x.npy"), "-o", f"s3://{BUCKET}/stats/s.json", "-q")
    run("apply", f"s3://{BUCKET}/stats/s.json", src, "-o", f"s3://{BUCKET}/out/z.npy", "-q")
    run(
        "apply",
        f"s3://{BUCKET}/stats/s.json",
        str(tmp_path / "x.npy"),
        "-o",
        str(tmp_path / "z.npy"),
        "-q",
    )
    got = np.load(io.BytesIO(s3.get_object(Bucket=BUCKET, Key="out/z.npy")["Body"].read()))
    np.testing.assert_array_equal(got, np.load(tmp_path / "z.npy"))
    # an existing key is refused without --force, replaced with it
    again = run(
        "apply", f"s3://{BUCKET}/stats/s.json", src, "-o", f"s3://{BUCKET}/out/z.npy", ok=False
    )
    assert again.exit_code == 2 and "output exists" in again.output
    run(
        "apply",
        f"s3://{BUCKET}/stats/s.json",
        src,
        "-o",
        f"s3://{BUCKET}/out/z.npy",
        "-q",
        "--force",
    )


def test_table_apply_bucket_to_bucket(s3, tmp_path, data):
    pq.write_table(_table(data), tmp_path / "t.parquet", row_group_size=500)
    src = put(s3, tmp_path / "t.parquet", "in/t.parquet")
    stats = normstat.fit(src, output=f"s3://{BUCKET}/s.json")
    normstat.apply(f"s3://{BUCKET}/s.json", src, f"s3://{BUCKET}/out/t.parquet")
    normstat.apply(stats, str(tmp_path / "t.parquet"), str(tmp_path / "o.parquet"))
    got = pq.read_table(
        io.BytesIO(s3.get_object(Bucket=BUCKET, Key="out/t.parquet")["Body"].read())
    )
    assert got.equals(pq.read_table(tmp_path / "o.parquet"))


def test_merge_show_export_on_bucket_artifacts(s3, tmp_path, data):
    halves = np.array_split(data, 2)
    for i, h in enumerate(halves):
        np.save(tmp_path / f"h{i}.npy", h)
        run("fit", str(tmp_path / f"h{i}.npy"), "-o", f"s3://{BUCKET}/parts/h{i}.json", "-q")
    run(
        "merge",
        f"s3://{BUCKET}/parts/h0.json",
        f"s3://{BUCKET}/parts/h1.json",
        "-o",
        f"s3://{BUCKET}/m.npz",
        "-q",
    )
    merged = normstat.load(f"s3://{BUCKET}/m.npz")
    ref = reference(data.astype(np.float64), (-1,))
    np.testing.assert_allclose(merged.mean, ref["mean"], rtol=1e-12)
    np.testing.assert_allclose(merged.var, ref["var"], rtol=1e-10)
    shown = run("show", f"s3://{BUCKET}/m.npz")
    assert "feature" in shown.output.lower() or "mean" in shown.output.lower()
    exported = normstat.export(f"s3://{BUCKET}/m.npz", "sklearn")
    np.testing.assert_allclose(exported["mean_"], ref["mean"], rtol=1e-12)
    out = run("export", f"s3://{BUCKET}/m.npz", "--to", "torch")
    assert out.output.strip().startswith("{")


def test_a_failing_apply_leaves_no_object(s3, tmp_path):
    """Rows that overflow the output dtype half-way through: an error, and nothing uploaded
    (no object, no multipart upload left behind)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4000, 3))
    np.save(tmp_path / "x.npy", x)
    normstat.fit(str(tmp_path / "x.npy"), output=f"s3://{BUCKET}/s.json")
    x[3900:, 1] = 1e30  # far outside float16 once standardised
    np.save(tmp_path / "bad.npy", x)
    bad = put(s3, tmp_path / "bad.npy", "in/bad.npy")
    failed = run(
        "apply",
        f"s3://{BUCKET}/s.json",
        bad,
        "-o",
        f"s3://{BUCKET}/out/z.npy",
        "--dtype",
        "float16",
        "--chunk-size",
        "16KiB",
        ok=False,
    )
    assert failed.exit_code == 1, failed.output
    assert "Error:" in failed.output
    assert "out/z.npy" not in keys(s3)
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_missing_key_and_wrong_endpoint_are_one_clear_line(s3, monkeypatch):
    missing = run("fit", f"s3://{BUCKET}/nope/x.parquet", ok=False)
    assert missing.exit_code == 1
    lines = [ln for ln in missing.output.splitlines() if ln.strip()]
    assert lines == [f"Error: s3://{BUCKET}/nope/x.parquet: no such object (or bucket)"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    down = run("fit", f"s3://{BUCKET}/nope/x.parquet", ok=False)
    lines = [ln for ln in down.output.splitlines() if ln.strip()]
    assert down.exit_code == 1 and len(lines) == 1, down.output
    assert (
        lines[0].startswith(f"Error: s3://{BUCKET}/nope/x.parquet:")
        and "does not answer" in lines[0]
    )
    assert SECRET not in down.output and KEY_ID not in down.output


def test_storage_options_override_the_environment_and_are_never_recorded(
    s3, s3_server, tmp_path, monkeypatch, data
):
    np.save(tmp_path / "x.npy", data)
    src = put(s3, tmp_path / "x.npy", "x.npy")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # wrong
    opts = [
        "--storage-option",
        f"endpoint_url={s3_server}",
        "--storage-option",
        f"secret={SECRET}",
        "--storage-option",
        f"key={KEY_ID}",
    ]
    res = run("fit", src, "-o", str(tmp_path / "s.json"), *opts)
    text = (tmp_path / "s.json").read_text()
    assert SECRET not in text and SECRET not in res.output
    same(normstat.fit(str(tmp_path / "x.npy")), normstat.load(tmp_path / "s.json"))
    same(
        normstat.fit(src, storage_options={"endpoint_url": s3_server}),
        normstat.load(tmp_path / "s.json"),
    )
    bad = run("fit", src, "--storage-option", "password=hunter22", ok=False)
    assert bad.exit_code == 2 and "unknown storage option 'password'" in bad.output
    assert "hunter22" not in bad.output


def test_checkpoint_fingerprint_uses_the_objects_etag(s3, tmp_path, data):
    np.save(tmp_path / "x.npy", data)
    src = put(s3, tmp_path / "x.npy", "x.npy")
    from normstat.engine.checkpoint import fingerprint
    from normstat.sources import open_sources

    (opened,) = open_sources([src])
    try:
        (fp,) = fingerprint([opened])["sources"]
    finally:
        opened.close()
    head = s3.head_object(Bucket=BUCKET, Key="x.npy")
    assert fp["etag"] == head["ETag"].strip('"') and fp["size"] == head["ContentLength"]
    stats = normstat.fit(src, checkpoint=str(tmp_path / "ck.npz"), chunk_size=1000 * 16)
    same(stats, normstat.fit(str(tmp_path / "x.npy")))


PRODUCER = """
import sys, time, numpy as np
rows, cols = 200_000, 8
np.lib.format.write_array_header_1_0(sys.stdout.buffer,
    {"descr": "<f8", "fortran_order": False, "shape": (rows, cols)})
rng = np.random.default_rng(0)
for i in range(rows // 1000):
    sys.stdout.buffer.write(rng.standard_normal((1000, cols)).tobytes())
    sys.stdout.buffer.flush()
    if i == 3:
        open(sys.argv[1], "w").close()
    time.sleep(0.02)
"""


def interrupted_apply(s3, tmp_path, sig, out: str, before_signal=lambda: None) -> str:
    """A real ``normstat apply`` process reading a slow stdin and writing ``out`` in the
    bucket, signalled (as a terminal would) once it has written some rows; ``before_signal``
    runs just before the signal. Returns its stderr, after checking the exit code and line."""
    np.save(tmp_path / "train.npy", np.random.default_rng(1).standard_normal((100, 8)))
    normstat.fit(str(tmp_path / "train.npy"), output=f"s3://{BUCKET}/s.json")
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(ready)],
        stdout=subprocess.PIPE,
        preexec_fn=lambda: os.setpgid(0, 0),
    )
    args = ["apply", f"s3://{BUCKET}/s.json", "-", "--input-format", "npy"]
    args += ["--chunk-size", "1000", "-o", out]
    proc = subprocess.Popen(
        [sys.executable, "-m", "normstat", *args],
        stdin=producer.stdout,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: os.setpgid(0, producer.pid),
    )
    assert producer.stdout is not None
    producer.stdout.close()
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    before_signal()
    assert proc.poll() is None, "the run ended before the signal"
    os.killpg(producer.pid, sig)
    _, err = proc.communicate(timeout=30)
    producer.wait(timeout=10)
    assert proc.returncode == 128 + sig, err
    assert f"interrupted by {signal.Signals(sig).name}" in err.decode()
    return err.decode()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_apply_leaves_no_object(s3, tmp_path, sig):
    """Ctrl-C (or SIGTERM) in a real process writing to the bucket: exit 130 / 143, one line,
    and no object nor multipart upload at the output key."""
    interrupted_apply(s3, tmp_path, sig, f"s3://{BUCKET}/out/z.npy")
    assert "out/z.npy" not in keys(s3)
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_an_interrupt_during_the_upload_aborts_it(s3, tmp_path, monkeypatch):
    """A signal seen while the parts go up: the upload is aborted, not completed."""
    from normstat import interrupts, storage

    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(storage.UPLOAD_PART + 1000))  # two parts
    monkeypatch.setattr(interrupts, "received", [signal.SIGINT])
    with pytest.raises(interrupts.Interrupted):
        storage.upload(str(local), f"s3://{BUCKET}/big.bin")
    assert keys(s3) == []
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    monkeypatch.setattr(interrupts, "received", [])
    storage.upload(str(local), f"s3://{BUCKET}/big.bin")
    assert s3.get_object(Bucket=BUCKET, Key="big.bin")["Body"].read() == local.read_bytes()


def test_dask_engine_reads_its_ranges_from_the_bucket(s3, tmp_path, data):
    pytest.importorskip("distributed")
    pq.write_table(_table(data), tmp_path / "t.parquet", row_group_size=250)
    np.save(tmp_path / "x.npy", data)
    for name in ("t.parquet", "x.npy"):
        uri = put(s3, tmp_path / name, name)
        local = normstat.fit(str(tmp_path / name))
        remote = normstat.fit(uri, engine="dask", workers=2, task_size=500)
        same(local, remote)


def test_an_https_output_is_refused(s3, tmp_path, data):
    """(Zarr and ``--engine dask`` outputs to a bucket: tests/test_storage_outputs.py.)"""
    np.save(tmp_path / "x.npy", data)
    src = put(s3, tmp_path / "x.npy", "x.npy")
    https = run("fit", src, "-o", "https://example.org/s.json", ok=False)
    assert https.exit_code == 2 and "read only" in https.output
    assert keys(s3) == ["x.npy"]


def test_https_urls_are_read(s3, s3_server, tmp_path, data):
    """A plain http(s) URL (here the server's own object URL): read through fsspec's HTTP
    filesystem, equal to the local fit; its query string is never recorded."""
    pq.write_table(_table(data), tmp_path / "t.parquet", row_group_size=300)
    np.save(tmp_path / "x.npy", data)
    for name in ("t.parquet", "x.npy"):
        put(s3, tmp_path / name, name)
        url = f"{s3_server}/{BUCKET}/{name}"
        got = normstat.fit(url + "?X-Amz-Signature=abcdef0123")
        same(normstat.fit(str(tmp_path / name)), got)
        assert got.source["paths"] == [url]
        assert "abcdef0123" not in str(got.source)
    missing = run("fit", f"{s3_server}/{BUCKET}/gone.npy?X-Amz-Signature=sig0123456", ok=False)
    assert missing.exit_code == 1 and f"{BUCKET}/gone.npy" in missing.output
    assert "sig0123456" not in missing.output
