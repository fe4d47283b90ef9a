"""gs:// without the network: pyarrow's GCS client against a local emulator
(``gcp-storage-emulator``, in the test extra), and the routing of gs:// URIs and their options.

The emulator serves uploads, listings and sequential downloads, so a CSV fit from gs:// runs end
to end; it does not answer pyarrow's random-access reads (Parquet, Arrow, NPY, HDF5 hang on it),
so those are covered by the S3 tests only, through the same code paths (docs/storage.md).
"""

from __future__ import annotations

import datetime
import socket

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from click.testing import CliRunner

import normstat
from normstat import storage
from normstat.cli import main
from normstat.errors import DataError

BUCKET = "normstat-gcs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gcs_server():
    emulator = pytest.importorskip("gcp_storage_emulator.server")
    port = _free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gcs(gcs_server, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    with storage.using({"anon": True}):  # the emulator wants no credentials
        fs, _ = storage.arrow_fs(f"gs://{BUCKET}/x")
    return fs


def test_csv_fit_from_gs_equals_the_local_fit(gcs, tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(5.0, 3.0, size=(3000, 3))
    table = pa.table({f"f{j}": x[:, j] for j in range(3)})
    pacsv.write_csv(table, tmp_path / "t.csv")
    with gcs.open_output_stream(f"{BUCKET}/data/t.csv") as out:
        out.write((tmp_path / "t.csv").read_bytes())
    here = normstat.fit(str(tmp_path / "t.csv"))
    for uri in (f"gs://{BUCKET}/data/t.csv", f"gcs://{BUCKET}/data/t.csv"):
        there = normstat.fit(uri, storage_options={"anon": True})
        for name in ("count", "mean", "var", "min", "max"):
            np.testing.assert_array_equal(getattr(here, name), getattr(there, name))
        np.testing.assert_allclose(there.mean, x.mean(0), rtol=1e-12)
        (fp,) = there.source["fingerprints"]
        assert fp["size"] == (tmp_path / "t.csv").stat().st_size and fp["mtime_ns"]
    globbed = normstat.fit(f"gs://{BUCKET}/data/*.csv", storage_options={"anon": True})
    assert globbed.source["paths"] == [f"gs://{BUCKET}/data/t.csv"]


def test_a_missing_gs_object_is_one_line(gcs):
    with pytest.raises(DataError, match=rf"gs://{BUCKET}/gone.csv.*no such object"):
        normstat.fit(f"gs://{BUCKET}/gone.csv", storage_options={"anon": True})
    anon = ["--storage-option", "anon=true"]
    result = CliRunner().invoke(main, ["fit", f"gs://{BUCKET}/gone.csv", *anon])
    assert result.exit_code == 1 and "no such object" in result.output
    # (the emulator's own logger prints "Resource not found" lines to the same stderr)
    ours = [line for line in result.output.splitlines() if "gs://" in line]
    assert ours == [f"Error: gs://{BUCKET}/gone.csv: no such object (or bucket)"]


def test_gs_routes_to_pyarrows_gcs_client_with_the_options(monkeypatch):
    """No network: the filesystem a gs:// URI resolves to, and the settings it was given."""
    from pyarrow import fs as pafs

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # an S3 setting: not used
    with storage.using({"anon": True}):
        fs, path = storage.arrow_fs("gcs://bucket/a/b.parquet")
    assert isinstance(fs, pafs.GcsFileSystem) and path == "bucket/a/b.parquet"
    (kw,) = fs.__reduce__()[1]
    assert kw["endpoint_override"] == "127.0.0.1:4443" and kw["scheme"] == "http"
    assert kw["anonymous"] is True
    assert kw["retry_time_limit"] == datetime.timedelta(seconds=storage.REQUEST_TIMEOUT)
    with storage.using({"endpoint_url": "https://gcs.example:8443"}):
        (kw,) = storage.arrow_fs("gs://bucket/k")[0].__reduce__()[1]
    assert kw["endpoint_override"] == "gcs.example:8443" and kw["scheme"] == "https"
    assert kw["anonymous"] is False  # credentials: Google's application default chain


def test_gs_outputs_need_gcsfs_and_say_so(gcs, tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed")
    np.save(tmp_path / "x.npy", np.ones((10, 2)))
    result = CliRunner().invoke(
        main,
        ["fit", str(tmp_path / "x.npy"), "-o", f"gs://{BUCKET}/s.json"]
        + ["--storage-option", "anon=true"],
    )
    assert result.exit_code == 2 and "gcsfs" in result.output, result.output
    from pyarrow.fs import FileType

    assert gcs.get_file_info(f"{BUCKET}/s.json").type == FileType.NotFound
