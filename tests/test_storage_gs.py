"""gs:// without network: URI handling, routing to pyarrow's GCS filesystem, its endpoint and
credential options, and redaction.

What this does NOT cover: a real read or write through GCS (no emulator is installed in CI;
see docs/storage.md)."""

from __future__ import annotations

import pytest

from normstat import storage

pafs = pytest.importorskip("pyarrow.fs")


@pytest.fixture(autouse=True)
def _anonymous():
    # without anon, pyarrow looks for Google default credentials (a metadata-server probe that
    # takes ~15 s offline): the tests run anonymous unless they say otherwise
    with storage.using({"anon": True}):
        yield


def _options(fs) -> dict:
    # pyarrow pickles a GcsFileSystem as its options: the only public view of them
    return fs.__reduce__()[1][0]


def test_gs_and_gcs_uris_are_recognised_and_split():
    assert storage.is_uri("gs://bucket/a/b.parquet")
    assert storage.is_uri("GCS://bucket/a")
    assert storage.scheme("gcs://bucket/a") == "gs"
    assert storage.split("gs://bucket/a/b.parquet") == ("gs", "bucket/a/b.parquet")
    assert not storage.is_uri("/tmp/gs://x")


def test_gs_routes_to_the_arrow_gcs_filesystem_with_the_emulator_endpoint(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443")
    fs, path = storage.arrow_fs("gs://bucket/dir/x.parquet")
    assert isinstance(fs, pafs.GcsFileSystem)
    assert path == "bucket/dir/x.parquet"
    opts = _options(fs)
    assert opts["endpoint_override"] == "127.0.0.1:4443"
    assert opts["scheme"] == "http"
    assert opts["anonymous"] is True


def test_a_new_emulator_endpoint_gives_a_new_filesystem(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")
    first, _ = storage.arrow_fs("gs://bucket/x")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4444")
    second, _ = storage.arrow_fs("gs://bucket/x")
    assert _options(first)["endpoint_override"] == "127.0.0.1:4443"
    assert _options(second)["endpoint_override"] == "127.0.0.1:4444"
    assert _options(second)["scheme"] == "http"  # a bare host:port is an emulator over http


def test_storage_options_choose_endpoint_and_anonymous_access(monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    with storage.using({"endpoint_url": "https://gcs.example:8443", "anon": True}):
        fs, _ = storage.arrow_fs("gcs://bucket/k")
    opts = _options(fs)
    assert isinstance(fs, pafs.GcsFileSystem)
    assert (opts["endpoint_override"], opts["scheme"], opts["anonymous"]) == (
        "gcs.example:8443",
        "https",
        True,
    )
    plain, _ = storage.arrow_fs("gs://bucket/k")
    assert _options(plain)["endpoint_override"] == ""


def test_gs_uris_in_messages_lose_their_credentials():
    text = "cannot read gs://user:secret@bucket/k.parquet?X-Goog-Signature=abc: denied"
    out = storage.redacted(text)
    assert "secret" not in out and "X-Goog-Signature" not in out and "abc" not in out
    assert "gs://bucket/k.parquet" in out


def test_the_retry_limit_is_the_request_timeout(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4445")
    fs, _ = storage.arrow_fs("gs://bucket/x")
    assert _options(fs)["retry_time_limit"].total_seconds() == storage.REQUEST_TIMEOUT
