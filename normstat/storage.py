"""Where data lives when it is not a local path: the one place that turns a URI into a filesystem.

``s3://bucket/key``, ``gs://bucket/key`` and ``https://host/path`` (read only) are resolved here,
and nowhere else, to either

- a ``pyarrow.fs`` filesystem and a path (:func:`arrow_fs`), for the formats pyarrow reads itself
  (Parquet, Arrow IPC, CSV): random access with ranged GETs, so a Parquet column of a row group is
  fetched alone, never the whole object; or
- an ``fsspec`` filesystem and a path (:func:`fsspec_fs`, the ``remote`` extra), for the formats
  read by libraries that want a Python file object (HDF5, NPY, tar shards) or a mapper (Zarr),
  and for writing: an upload stays invisible until it is completed (:func:`upload`).

Endpoint and credentials come from the environment the AWS / Google SDKs read
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ...) or from storage options
(``--storage-option KEY=VALUE``), held for the duration of a call by :func:`using`. Nothing here
ever puts an option value, a user-info part or a query string of a URI into a message:
:func:`shown` is the form errors and records use. Transient failures (timeouts, throttling, 5xx)
are retried with backoff by the filesystem layer itself (:data:`RETRIES` attempts).
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import io
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from normstat.errors import DataError, UsageError
from normstat.lazy import optional_module

SCHEMES = ("s3", "gs", "gcs", "http", "https")
READ_ONLY = ("http", "https")
RETRIES = 5
"""Attempts per request (the first and four retries, with the SDK's exponential backoff)."""
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 60.0

OPTIONS = {
    "endpoint_url": "the S3 endpoint (as AWS_ENDPOINT_URL), e.g. http://127.0.0.1:9000",
    "region": "the bucket's region (as AWS_REGION)",
    "key": "access key id (as AWS_ACCESS_KEY_ID)",
    "secret": "secret access key (as AWS_SECRET_ACCESS_KEY)",
    "token": "session token (as AWS_SESSION_TOKEN)",
    "anon": "true: no credentials (public buckets)",
}
"""The storage options understood, with what each is (``--storage-option KEY=VALUE``)."""

_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_lock = threading.Lock()
_current: dict[str, str] = {}


def is_uri(path: str) -> bool:
    """Is ``path`` a URI of a scheme normstat reads (``s3://``, ``gs://``, ``https://``)?"""
    m = _URI.match(path) if isinstance(path, str) else None
    return m is not None and m["scheme"].lower() in SCHEMES


def scheme(uri: str) -> str:
    m = _URI.match(uri)
    s = m["scheme"].lower() if m else ""
    return "gs" if s == "gcs" else s


def shown(uri: str) -> str:
    """``uri`` as messages and records show it: no ``user:password@``, no query string (a
    presigned URL carries its signature there)."""
    if not is_uri(uri):
        return uri
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


_URIS = re.compile(r"\b(?:s3|gs|gcs|https?)://\S+?(?=:?(?:\s|$))", re.I)


def redacted(text: str) -> str:
    """``text`` with every URI in it shown by :func:`shown` (the last line of defence for a
    presigned URL's signature in a message)."""
    return _URIS.sub(lambda m: shown(m[0]), text)


# ---------------------------------------------------------------------------------------------
# storage options


def check_options(options: Mapping[str, Any] | None, name: str = "storage_options") -> dict:
    """Storage options as ``{key: str}``; an unknown key is an error naming the known ones (its
    value is never shown)."""
    out: dict[str, str] = {}
    for key, value in (options or {}).items():
        if key not in OPTIONS:
            raise UsageError(
                f"{name}: unknown storage option {key!r}; known: {', '.join(sorted(OPTIONS))}"
            )
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def parse_option(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--storage-option``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--storage-option: expected KEY=VALUE, received {key or text!r}")
    return key.strip(), value


@contextlib.contextmanager
def using(options: Mapping[str, Any] | None) -> Iterator[None]:
    """Resolve URIs with ``options`` for the duration of a call (the call's threads too)."""
    given = check_options(options)
    with _lock:
        saved = dict(_current)
        _current.clear()
        _current.update(given)
    try:
        yield
    finally:
        with _lock:
            _current.clear()
            _current.update(saved)


F = TypeVar("F", bound=Callable[..., Any])


def scoped(fn: F) -> F:
    """Run ``fn`` with its keyword ``storage_options`` in force (:func:`using`): the library
    functions that take URIs declare the parameter, and this holds it for the whole call."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        given = kwargs.get("storage_options")
        if given is None:  # those in force (a CLI command's --storage-option) hold
            return fn(*args, **kwargs)
        with using(given):
            return fn(*args, **kwargs)

    return cast(F, run)


def current() -> tuple[tuple[str, str], ...]:
    """The options in force, as a value a Dask task can carry to its worker."""
    with _lock:
        return tuple(sorted(_current.items()))


def _opt(key: str, *env: str) -> str | None:
    with _lock:
        value = _current.get(key)
    if value is not None:
        return value
    return next((os.environ[e] for e in env if os.environ.get(e)), None)


def _endpoint() -> str | None:
    return _opt("endpoint_url", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def _anon() -> bool:
    return (_opt("anon") or "").lower() in ("1", "true", "yes")


# ---------------------------------------------------------------------------------------------
# filesystems


def split(uri: str) -> tuple[str, str]:
    """``(scheme, path)``: ``s3://b/k`` -> ``('s3', 'b/k')``; an https URL keeps its whole form."""
    s = scheme(uri)
    if s in READ_ONLY:
        return s, uri
    return s, uri.split("://", 1)[1]


def arrow_fs(uri: str) -> tuple[Any, str]:
    """A ``pyarrow.fs`` filesystem for ``uri`` and the path inside it."""
    s, path = split(uri)
    if s in READ_ONLY:
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        return PyFileSystem(FSSpecHandler(fsspec_fs(uri)[0])), path
    key = (
        s,
        current(),
        _endpoint(),
        _opt("region", "AWS_REGION", "AWS_DEFAULT_REGION"),
        os.environ.get("STORAGE_EMULATOR_HOST"),  # gs:// endpoint: a new one is a new filesystem
    )
    with _lock:
        fs = _ARROW.get(key)
    if fs is None:
        fs = _arrow_s3() if s == "s3" else _arrow_gcs()
        with _lock:
            _ARROW[key] = fs
    return fs, path


_ARROW: dict[tuple, Any] = {}
_FSSPEC: dict[tuple, Any] = {}


def _arrow_s3() -> Any:
    from pyarrow import fs

    kw: dict[str, Any] = {
        "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=RETRIES),
        "connect_timeout": CONNECT_TIMEOUT,
        "request_timeout": REQUEST_TIMEOUT,
    }
    endpoint = _endpoint()
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kw["endpoint_override"] = parts.netloc
        kw["scheme"] = parts.scheme
    region = _opt("region", "AWS_REGION", "AWS_DEFAULT_REGION")
    if region:
        kw["region"] = region
    elif endpoint:
        kw["region"] = "us-east-1"  # a custom endpoint (MinIO, moto) has no region to look up
    if _anon():
        kw["anonymous"] = True
    key, secret = _opt("key"), _opt("secret")
    if key and secret:
        kw.update(access_key=key, secret_key=secret, session_token=_opt("token"))
    return fs.S3FileSystem(**kw)


def _arrow_gcs() -> Any:
    from datetime import timedelta

    from pyarrow import fs

    kw: dict[str, Any] = {"retry_time_limit": timedelta(seconds=REQUEST_TIMEOUT)}
    if _anon():
        kw["anonymous"] = True
    endpoint = _opt("endpoint_url", "STORAGE_EMULATOR_HOST")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        kw.update(endpoint_override=parts.netloc, scheme=parts.scheme)
    return fs.GcsFileSystem(**kw)


def fsspec_fs(uri: str) -> tuple[Any, str]:
    """An ``fsspec`` filesystem for ``uri`` (the ``remote`` extra) and the path inside it."""
    s, path = split(uri)
    key = (s, current(), _endpoint())
    with _lock:
        fs = _FSSPEC.get(key)
    if fs is None:
        fsspec = optional_module("fsspec", "remote", f"reading {s}:// URIs of this format")
        fs = fsspec.filesystem(s, **_fsspec_kwargs(s))
        with _lock:
            _FSSPEC[key] = fs
    return fs, path


def fsspec_options(uri: str) -> dict[str, Any]:
    """The fsspec options for ``uri`` (for libraries that open URIs themselves: Zarr)."""
    return _fsspec_kwargs(scheme(uri))


def _fsspec_kwargs(s: str) -> dict[str, Any]:
    if s == "s3":
        optional_module("s3fs", "remote", "s3:// URIs")
        kw: dict[str, Any] = {
            "config_kwargs": {
                "retries": {"max_attempts": RETRIES, "mode": "standard"},
                "connect_timeout": CONNECT_TIMEOUT,
                "read_timeout": REQUEST_TIMEOUT,
            },
            "skip_instance_cache": True,
        }
        endpoint = _endpoint()
        if endpoint:
            kw["endpoint_url"] = endpoint
        region = _opt("region", "AWS_REGION", "AWS_DEFAULT_REGION")
        if region:
            kw["client_kwargs"] = {"region_name": region}
        if _anon():
            kw["anon"] = True
        key, secret = _opt("key"), _opt("secret")
        if key and secret:
            kw.update(key=key, secret=secret, token=_opt("token"))
        return kw
    if s == "gs":
        optional_module("gcsfs", "remote", "gs:// URIs")
        kw = {"retries": RETRIES}
        if _anon():
            kw["token"] = "anon"  # noqa: S105  (gcsfs' word for no credentials)
        return kw
    return {"skip_instance_cache": True}


# ---------------------------------------------------------------------------------------------
# reading


def failure(exc: BaseException, uri: str, what: str = "cannot read") -> DataError:
    """One line for a storage failure, naming the URI (shown without secrets) and the kind of
    failure: a missing object, a denied access, an endpoint that does not answer."""
    text = str(exc)
    low = text.lower()
    where = shown(uri)
    if isinstance(exc, FileNotFoundError) or "nosuchkey" in low or "nosuchbucket" in low:
        return DataError("no such object (or bucket)", path=where)
    if isinstance(exc, PermissionError) or "access denied" in low or "accessdenied" in low:
        return DataError(f"{what}: access denied (check the credentials)", path=where)
    if "connect" in low or "endpoint" in low or "resolve" in low or "timed out" in low:
        ep = _endpoint() if scheme(uri) == "s3" else None
        at = f" at {shown(ep)}" if ep else ""
        return DataError(f"{what}: the storage endpoint{at} does not answer", path=where)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return DataError(f"{what}: {_scrub(first)}", path=where)


def _scrub(text: str) -> str:
    """A library's message without any option value (a secret) that it may have echoed."""
    with _lock:
        values = [v for v in _current.values() if len(v) >= 4]
    values += [
        os.environ.get(e) or ""
        for e in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
    ]
    for v in values:
        if len(v) >= 4:
            text = text.replace(v, "***")
    return text


def open_input(uri: str) -> Any:
    """A random-access pyarrow file of the object (ranged GETs as it is read)."""
    fs, path = arrow_fs(uri)
    try:
        return fs.open_input_file(path)
    except (OSError, ValueError) as exc:
        raise failure(exc, uri) from None


def open_stream(uri: str) -> Any:
    """A sequential pyarrow stream of the object, decompressed by its suffix (``.gz`` ...)."""
    fs, path = arrow_fs(uri)
    try:
        return fs.open_input_stream(path)
    except (OSError, ValueError) as exc:
        raise failure(exc, uri) from None


BLOCK_SIZE = 16 * 2**20
"""Bytes per ranged GET of an HDF5 object read by h5py (docs/storage.md has the measurement).
HDF5 reads its superblock, B-tree nodes and chunks as many small, scattered requests; one GET
serves the metadata around it and many chunks, and the cache keeps a few blocks."""
CACHE_BLOCKS = 4
METADATA_BLOCK_SIZE = 2**20
"""Bytes per ranged GET while h5py reads only an HDF5 object's metadata (its header, the chunk
index): small blocks, no read-ahead, since each GET has a cost of its own whatever its size."""
CACHE_TYPE = "background"
"""fsspec's block cache that fetches the next block in a thread while the current one is
decoded (``"blockcache"``: the same LRU without read-ahead); docs/storage.md."""


class _CachedFile(io.RawIOBase):
    """A seekable read-only Python file over a pyarrow random-access file, through one of
    fsspec's block caches: h5py's many small reads are served from blocks fetched by ranged
    GETs in pyarrow's C++ client (s3fs' Python client moved the same bytes 2x slower)."""

    def __init__(self, raw: Any, block_size: int, cache_type: str) -> None:
        self._raw = raw
        self._size = int(raw.size())
        self._pos = 0
        self.retune(block_size, cache_type)

    def retune(self, block_size: int, cache_type: str) -> None:
        """Read on in blocks of ``block_size`` through fsspec's cache ``cache_type`` (the
        blocks cached so far are dropped)."""
        from fsspec.caching import caches  # type: ignore[import-untyped]

        self._cache = caches[cache_type](
            block_size, self._fetch, self._size, maxblocks=CACHE_BLOCKS
        )

    def _fetch(self, start: int, end: int) -> bytes:
        return bytes(self._raw.read_at(end - start, start))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        end = min(self._pos + len(view), self._size)
        if end <= self._pos:
            return 0
        data = self._cache._fetch(self._pos, end)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_file(uri: str, block_size: int | None = None, cache_type: str | None = None) -> Any:
    """A seekable Python file of the object, read in ``block_size`` (default
    :data:`BLOCK_SIZE`) ranged GETs through an LRU of :data:`CACHE_BLOCKS` blocks (memory: at
    most that many blocks)."""
    optional_module("fsspec", "remote", f"reading HDF5 from {scheme(uri)}:// URIs")
    return _CachedFile(open_input(uri), block_size or BLOCK_SIZE, cache_type or CACHE_TYPE)


def info(uri: str) -> dict[str, Any]:
    """What identifies an object's version: its size, ETag and modification time."""
    fs, path = fsspec_fs(uri) if scheme(uri) in READ_ONLY else (None, "")
    try:
        if fs is not None:
            meta = fs.info(path)
            etag = meta.get("ETag") or meta.get("etag")
            return {"size": meta.get("size"), "etag": etag, "mtime": None}
        afs, path = arrow_fs(uri)
        from pyarrow.fs import FileType

        st = afs.get_file_info(path)
    except (OSError, ValueError) as exc:
        raise failure(exc, uri) from None
    if st.type == FileType.NotFound:
        raise DataError("no such object (or bucket)", path=shown(uri))
    mtime = st.mtime_ns if st.mtime_ns is not None else None
    out: dict[str, Any] = {"size": st.size, "etag": None, "mtime_ns": mtime}
    if scheme(uri) == "s3" and st.type == FileType.File:
        out["etag"] = _etag(uri)
    return out


def _etag(uri: str) -> str | None:
    """The ETag (pyarrow does not report it): through s3fs when the remote extra is here."""
    try:
        fs, path = fsspec_fs(uri)
        etag = fs.info(path).get("ETag")
    except (UsageError, OSError, ValueError):
        return None
    return str(etag).strip('"') if etag else None


def exists(uri: str) -> bool:
    """Is there an object (or a prefix) at ``uri``?"""
    from pyarrow.fs import FileType

    if scheme(uri) in READ_ONLY:
        fs, path = fsspec_fs(uri)
        try:
            return bool(fs.exists(path))
        except (OSError, ValueError) as exc:
            raise failure(exc, uri) from None
    fs, path = arrow_fs(uri)
    try:
        return bool(fs.get_file_info(path).type != FileType.NotFound)
    except (OSError, ValueError) as exc:
        raise failure(exc, uri) from None


def is_dir(uri: str) -> bool:
    """A prefix holding objects (a 'folder' of shards, or a Zarr store)."""
    if scheme(uri) in READ_ONLY:
        return False
    from pyarrow.fs import FileType

    fs, path = arrow_fs(uri)
    try:
        return bool(fs.get_file_info(path.rstrip("/")).type == FileType.Directory)
    except (OSError, ValueError) as exc:
        raise failure(exc, uri) from None


def has_magic(uri: str) -> bool:
    return any(c in uri.split("://", 1)[-1] for c in "*?[")


def glob(pattern: str) -> list[str]:
    """The objects matching ``pattern`` (``*``, ``?``, ``[...]``, ``**``), as URIs, sorted."""
    s, path = split(pattern)
    if s in READ_ONLY:
        raise UsageError("an https:// URL cannot be globbed; name each file", path=shown(pattern))
    fixed = []
    for part in path.split("/"):
        if has_magic(part):
            break
        fixed.append(part)
    found = [f"{s}://{p}" for p in list_files("/".join(fixed), pattern)]
    return sorted(u for u in found if fnmatch.fnmatchcase(split(u)[1], path))


def list_files(prefix: str, uri: str) -> list[str]:
    """Every object under ``prefix`` (a bucket path), recursively."""
    from pyarrow.fs import FileSelector, FileType

    fs, _ = arrow_fs(uri)
    try:
        infos = fs.get_file_info(FileSelector(prefix, recursive=True, allow_not_found=True))
    except (OSError, ValueError) as exc:
        raise failure(exc, uri) from None
    return [i.path for i in infos if i.type == FileType.File]


def files_under(uri: str) -> list[str]:
    """The objects below the prefix ``uri``, as URIs."""
    s, path = split(uri)
    return [f"{s}://{p}" for p in list_files(path.rstrip("/"), uri)]


def basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------------
# writing


def check_output(uri: str, force: bool) -> None:
    """An output URI: writable scheme, and an existing object only with ``force``."""
    if scheme(uri) in READ_ONLY:
        raise UsageError(f"{scheme(uri)}:// is read only; write to s3:// or gs://", path=shown(uri))
    if exists(uri) and not force:
        raise UsageError("output exists (use --force to replace it)", path=shown(uri))


def upload(local: str, uri: str) -> None:
    """Copy the finished file ``local`` to ``uri`` as one multipart upload that is completed
    only at the end: the object appears whole or not at all; on any failure or interrupt the
    upload is aborted, and nothing (not even parts) is left in the bucket."""
    fs, path = fsspec_fs(uri)
    try:
        out = fs.open(path, "wb", autocommit=False, block_size=UPLOAD_PART)
    except (OSError, ValueError) as exc:
        raise failure(exc, uri, "cannot write") from None
    try:
        with open(local, "rb") as fp:
            while block := fp.read(UPLOAD_PART):
                out.write(block)
        out.close()
        from normstat import interrupts

        with interrupts.deferred():
            interrupts.check()
            out.commit()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            out.discard()
        if isinstance(exc, OSError | ValueError):
            raise failure(exc, uri, "cannot write") from None
        raise


UPLOAD_PART = 16 * 2**20
"""Bytes per uploaded part (S3 wants >= 5 MiB but the last)."""


def download(uri: str, local: str) -> None:
    """Copy the object to the local file ``local`` (artifacts read back for merge / show)."""
    fs, path = arrow_fs(uri)
    try:
        with fs.open_input_stream(path) as src, open(local, "wb") as dst:
            while block := src.read(UPLOAD_PART):
                dst.write(block)
    except (OSError, ValueError) as exc:
        raise failure(exc, uri) from None


# ---------------------------------------------------------------------------------------------
# writing by many processes: one multipart upload filled by tasks, a prefix of many objects


def multipart_scheme(uri: str, what: str) -> None:
    """Refuse ``what`` on a scheme whose filesystem gives no multipart upload to fill from many
    processes (s3:// has it; gcsfs does not expose one)."""
    if scheme(uri) != "s3":
        raise UsageError(
            f"{what} needs one upload that many processes add parts to (S3's multipart "
            f"upload); {scheme(uri)}:// does not offer it here: use --engine local",
            path=shown(uri),
        )


def _s3_call(uri: str, op: str, what: str, **kw: Any) -> Any:
    fs, path = fsspec_fs(uri)
    bucket, _, key = path.partition("/")
    try:
        return fs.call_s3(op, Bucket=bucket, Key=key, **kw)
    except (OSError, ValueError) as exc:
        raise failure(exc, uri, what) from None


def start_upload(uri: str) -> str:
    """Create a multipart upload of the object ``uri``; returns its id. Nothing is visible at
    the key until :func:`complete_upload`."""
    multipart_scheme(uri, "writing one object from many processes")
    return str(_s3_call(uri, "create_multipart_upload", "cannot write")["UploadId"])


def upload_part(uri: str, upload_id: str, number: int, body: Any, size: int) -> str:
    """Upload part ``number`` (1-based; parts may be sparse) from the file object ``body`` of
    ``size`` bytes; returns its ETag. Re-uploading a number replaces that part."""
    reply = _s3_call(
        uri,
        "upload_part",
        "cannot write",
        UploadId=upload_id,
        PartNumber=number,
        Body=body,
        ContentLength=size,
    )
    return str(reply["ETag"])


def upload_file_parts(local: str, uri: str, upload_id: str) -> list[tuple[int, str]]:
    """Upload the finished file ``local`` as parts 1, 2, ... of the upload ``upload_id`` (a
    task writing a whole table file; the client completes or aborts the upload); returns the
    ``(number, ETag)`` receipts. Parts are :data:`UPLOAD_PART` bytes, larger when the file
    needs more than S3's 10,000 parts, the last one shorter; an empty file is one empty part."""
    size = os.path.getsize(local)
    part = max(UPLOAD_PART, -(-size // (MAX_PARTS * 2**20)) * 2**20)
    receipts = []
    with open(local, "rb") as fp:
        for number, offset in enumerate(range(0, max(size, 1), part), 1):
            n = min(part, size - offset)
            body = io.BytesIO(fp.read(n))
            receipts.append((number, upload_part(uri, upload_id, number, body, n)))
    return receipts


MAX_PARTS = 10_000
"""S3's most parts in one multipart upload."""


def complete_upload(uri: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
    """Make the object appear, made of ``parts`` (``(number, etag)``) in number order."""
    listed = [{"PartNumber": n, "ETag": e} for n, e in sorted(parts)]
    _s3_call(
        uri,
        "complete_multipart_upload",
        "cannot write",
        UploadId=upload_id,
        MultipartUpload={"Parts": listed},
    )


def abort_upload(uri: str, upload_id: str) -> None:
    """Abort a multipart upload: its parts are deleted, nothing appears at the key. Never
    raises (it runs while another error unwinds)."""
    with contextlib.suppress(Exception):
        _s3_call(uri, "abort_multipart_upload", "cannot abort", UploadId=upload_id)


def copy_objects(pairs: list[tuple[str, str]]) -> None:
    """Server-side copies ``(from URI, to URI)``, run concurrently (no data through here)."""
    if not pairs:
        return
    fs, _ = fsspec_fs(pairs[0][0])
    try:
        fs.copy([split(a)[1] for a, _ in pairs], [split(b)[1] for _, b in pairs])
    except (OSError, ValueError) as exc:
        raise failure(exc, pairs[0][1], "cannot write") from None


def delete_objects(uris: list[str]) -> None:
    """Delete the objects ``uris`` (one batched request per 1000 on S3)."""
    if not uris:
        return
    fs, _ = fsspec_fs(uris[0])
    try:
        fs.rm([split(u)[1] for u in uris])
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise failure(exc, uris[0], "cannot delete") from None
    fs.invalidate_cache()
