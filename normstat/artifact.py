"""Statistics + metadata <-> JSON / NPZ, with a strict, validating load.

JSON floats are written with Python's shortest round-trip repr, so they read back bit for bit;
NaN is never written (undefined statistics are ``null``), and loading refuses NaN/Infinity
spellings. The NPZ holds the same arrays (NaN for null) plus ``meta``, the JSON metadata string.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any, TextIO

import numpy as np

from normstat import __version__, storage
from normstat.core.groups import GroupedMoments, moments_of
from normstat.core.moments import Moments
from normstat.core.npz import NpzMember, read_npz_member
from normstat.core.quantiles import FIELDS as SKETCH_FIELDS
from normstat.core.quantiles import Sketch
from normstat.core.quantiles import well_formed as _well_formed
from normstat.core.stats import Stats
from normstat.errors import ArtifactError, UsageError
from normstat.numtext import ArrayReader, dump_array
from normstat.sinks.atomic import atomic_output

FORMAT = "normstat.stats"
SCHEMA_VERSION = 1
GROUPS_VERSION = 2
"""Written when the statistics have ``feature_groups``; version 1 files still load."""
FLOAT_KEYS = ("mean", "var", "std", "min", "max", "m2")
INT_KEYS = ("count", "nan_count")
META_KEYS = (
    "format",
    "schema_version",
    "normstat_version",
    "created",
    "source",
    "axis",
    "feature_shape",
    "features",
    "ddof",
)


def _nested(a: np.ndarray) -> Any:
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        return a.tolist()
    obj = a.astype(object)
    obj[~np.isfinite(a)] = None
    return obj.tolist()


def _meta(stats: Stats) -> dict[str, Any]:
    meta = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "normstat_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": stats.source,
        "axis": None if stats.axis is None else list(stats.axis),
        "feature_shape": list(stats.feature_shape),
        "features": stats.features,
        "ddof": stats.ddof,
    }
    if stats.rescale != 1.0:  # statistics of x * rescale; absent: of the values as read
        meta["rescale"] = stats.rescale
    if (
        stats.feature_groups is not None
    ):  # named feature groups (vectors, tensors): schema version 2
        meta["schema_version"] = GROUPS_VERSION
        meta["feature_groups"] = stats.feature_groups
    return meta


def _arrays(stats: Stats) -> dict[str, np.ndarray]:
    m = stats.moments
    bad = (m.count > 0) & ~(np.isfinite(m.mean) & np.isfinite(m.m2))
    if bad.any():
        idx = (
            np.unravel_index(int(np.argmax(bad)), stats.feature_shape)
            if stats.feature_shape
            else ()
        )
        name = stats.features[int(np.argmax(bad))] if stats.features else list(map(int, idx))
        raise ArtifactError(f"statistics of feature {name} overflow float64 (values near 1e308?)")
    return {k: getattr(stats, k) for k in (*INT_KEYS, *FLOAT_KEYS)}


def to_dict(stats: Stats) -> dict[str, Any]:
    out = _meta(stats)
    out.update({k: _nested(v) for k, v in _arrays(stats).items()})
    out.update(_distribution(stats))
    out.update(_keyed(stats))
    return out


# ---------------------------------------------------------------------------------------------
# the optional distribution summary (docs/quantiles.md): quantiles and the histogram they come from

_SKETCH_INTS = ("drop", "offsets", "keys", "counts")
_SKETCH_IDENTITY = {"min": np.inf, "max": -np.inf, "neg_max": -np.inf, "pos_min": np.inf}


def _distribution(stats: Stats) -> dict[str, Any]:
    """``quantile_levels``, ``quantiles`` (levels x feature shape) and ``histogram`` (the exact
    summary, so that ``merge`` can combine artifacts), when fitted; nothing otherwise."""
    out: dict[str, Any] = {}
    quantiles = stats.quantiles
    if stats.quantile_levels is not None and quantiles is not None:
        out["quantile_levels"] = list(stats.quantile_levels)
        out["quantiles"] = _nested(quantiles)
        out["quantiles_exact"] = stats.exact_quantiles is not None
        out["quantiles_relative_error"] = stats.quantile_error
    if stats.sketch is not None:
        out["histogram"] = {k: _nested(v) for k, v in stats.sketch.arrays().items()}
    return out


def _npz_distribution(stats: Stats) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    quantiles = stats.quantiles
    if stats.quantile_levels is not None and quantiles is not None:
        out["quantile_levels"] = np.asarray(stats.quantile_levels, np.float64)
        out["quantiles"] = quantiles
        out["quantiles_exact"] = np.array(stats.exact_quantiles is not None)
        out["quantiles_relative_error"] = np.array(stats.quantile_error, np.float64)
    if stats.sketch is not None:
        out.update({f"histogram_{k}": v for k, v in stats.sketch.arrays().items()})
    return out


def _load_distribution(doc: dict[str, Any], stats: Stats, fail: Any) -> None:
    """The summary and levels of a loaded document, checked against its counts and quantiles:
    quantiles are those of the histogram, or, selected by ``fit --exact``, within its bound."""
    hist = doc.get("histogram")
    if hist is None and any(k.startswith("histogram_") for k in doc):
        hist = {k: doc.get(f"histogram_{k}") for k in SKETCH_FIELDS}
    sketch = None if hist is None else _sketch(hist, stats, fail)
    stats.moments.sketch = sketch
    levels = doc.get("quantile_levels")
    if levels is None:
        return
    try:
        levels = tuple(float(v) for v in np.asarray(levels, np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise fail("'quantile_levels' must be a list of numbers") from None
    if (
        not levels
        or not all(0.0 <= v <= 1.0 for v in levels)
        or list(levels) != sorted(set(levels))
    ):
        raise fail(
            f"'quantile_levels' must be increasing levels in [0, 1], received {list(levels)}"
        )
    if sketch is None:
        raise fail("'quantile_levels' needs the 'histogram' the quantiles were computed from")
    want = sketch.quantiles(levels).reshape((len(levels), *stats.feature_shape))
    got = _array(doc.get("quantiles"), "quantiles", list(want.shape), fail)
    stats.quantile_levels = levels
    if bool(doc.get("quantiles_exact", False)):
        if not np.allclose(got, want, rtol=2.0**-6, atol=1e-300, equal_nan=True):
            raise fail("'quantiles' are further from the histogram's than its resolution")
        stats.exact_quantiles = got.reshape(len(levels), -1)
    elif not np.array_equal(want, got, equal_nan=True):
        raise fail("'quantiles' disagree with the histogram")
    error = doc.get("quantiles_relative_error")  # absent in artifacts before it was written
    if error is not None and _float_or_none(error) != stats.quantile_error:
        raise fail(
            f"'quantiles_relative_error' {error!r} disagrees with the histogram's resolution "
            f"({stats.quantile_error})"
        )


def _float_or_none(v: Any) -> float | None:
    try:
        return float(np.asarray(v, np.float64).reshape(()))
    except (TypeError, ValueError):
        return None


def _sketch(hist: Any, stats: Stats, fail: Any) -> Sketch:
    if not isinstance(hist, dict) or any(hist.get(k) is None for k in SKETCH_FIELDS):
        raise fail(f"'histogram' must hold {', '.join(SKETCH_FIELDS)}")
    arrays = {k: _sketch_ints(hist[k], k, fail) for k in _SKETCH_INTS}
    for k, identity in _SKETCH_IDENTITY.items():  # JSON null: no such value (the identity)
        v = hist[k]
        if isinstance(v, list):
            v = [identity if e is None else e for e in v]
        try:
            arrays[k] = np.asarray(v, np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise fail(f"'histogram.{k}' is not a list of numbers") from None
    s = Sketch(**arrays)
    if not _well_formed(s, stats.moments.n_features):
        raise fail("'histogram' is malformed (shapes, offsets, order of keys or counts)")
    if not np.array_equal(s.total, stats.moments.count):
        raise fail("'histogram' counts disagree with 'count'")
    return s


def _sketch_ints(v: Any, key: str, fail: Any) -> np.ndarray:
    a = np.asarray(v)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise fail(f"'histogram.{key}' must be a list of integers")
    return a.astype(np.int64)


def dumps(stats: Stats) -> str:
    """The JSON text of :func:`write_json`."""
    out = io.StringIO()
    write_json(stats, out)
    return out.getvalue()


def write_json(stats: Stats, fp: TextIO) -> None:
    """One key a line, metadata first and arrays last, each array compact on its line and
    written a block of values at a time (``numtext.py``): memory stays that of the
    statistics, whatever their number (docs/artifact.md, "Layout"). One line per array also
    lets a reader find each array and parse it in blocks without ``json`` (:func:`stream`)."""
    items = [
        *_meta(stats).items(),
        *_arrays(stats).items(),
        *_distribution(stats).items(),
        *_keyed(stats, np.asarray).items(),
    ]
    fp.write("{\n")
    for i, (k, v) in enumerate(items):
        fp.write(f"  {json.dumps(k)}: ")
        if isinstance(v, np.ndarray):
            dump_array(v, fp)
        elif isinstance(v, dict) and any(isinstance(x, np.ndarray) for x in v.values()):
            _write_section(v, fp)
        else:
            fp.write(json.dumps(v, allow_nan=False, separators=(", ", ": "), indent=None))
        fp.write(",\n" if i < len(items) - 1 else "\n")
    fp.write("}\n")


def _write_section(section: dict[str, Any], fp: TextIO) -> None:
    """A section holding arrays (``by``: groups x features), on its line as ``json.dumps``
    lays it out, the arrays written a block of values at a time."""
    fp.write("{")
    for i, (k, v) in enumerate(section.items()):
        fp.write(f"{', ' if i else ''}{json.dumps(k)}: ")
        if isinstance(v, np.ndarray):
            dump_array(v, fp)
        else:
            fp.write(json.dumps(v, allow_nan=False, separators=(", ", ": ")))
    fp.write("}")


def save(stats: Stats, path: str | os.PathLike[str]) -> None:
    """Write ``.npz`` when the suffix says so, JSON otherwise; atomically."""
    if not isinstance(stats, Stats):
        raise UsageError(f"stats: expected normstat.Stats, received {type(stats).__name__}")
    path = _fspath(path)
    with atomic_output(path) as tmp:
        if path.lower().endswith(".npz"):
            with open(tmp, "wb") as fp:
                arrays = {**_arrays(stats), **_npz_distribution(stats), **_npz_keyed(stats)}
                meta = {**_meta(stats), **_keyed_meta(stats)}
                np.savez(fp, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]
        else:
            with open(tmp, "w", encoding="utf-8") as fp:
                write_json(stats, fp)


def _fspath(path: Any) -> str:
    if not isinstance(path, str | os.PathLike):
        raise UsageError(f"path: expected a str or os.PathLike, received {type(path).__name__}")
    return os.fsdecode(os.fspath(path))


def load(path: str | os.PathLike[str]) -> Stats:
    """Read and validate an artifact; every problem is an :class:`ArtifactError` naming it."""
    path = _fspath(path)
    if storage.is_uri(path):
        return _load_remote(path)
    if not os.path.isfile(path):
        raise ArtifactError("no such statistics file", path=path)
    doc = _read_npz(path) if path.lower().endswith(".npz") else _read_json(path)
    return _from_owned(doc, path)


def _load_remote(uri: str) -> Stats:
    """An artifact in a bucket: fetched whole to a private temporary file, then read as a local
    one (the strict reader needs to seek; an artifact is small next to its data)."""
    import tempfile

    if not storage.exists(uri):
        raise ArtifactError("no such statistics file", path=storage.shown(uri))
    with tempfile.TemporaryDirectory(prefix="normstat-") as tmp:
        local = os.path.join(tmp, storage.basename(uri))
        storage.download(uri, local)
        try:
            doc = _read_npz(local) if uri.lower().endswith(".npz") else _read_json(local)
        except ArtifactError as exc:
            exc.path = storage.shown(uri)
            raise
    return _from_owned(doc, storage.shown(uri))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in a statistics file")


MAX_COUNT = 2**53
"""Counts (and ddof) must stay below this: float64 holds every integer up to it, and no dataset
comes near it (9e15 samples); a larger number in a file is damage, not data."""
_MAX_META_BYTES = 16 * 2**20
_NPZ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,  # a compression method zipfile does not know
    RuntimeError,  # an encrypted member
    struct.error,
    UnicodeDecodeError,
    OverflowError,
    RecursionError,
    SyntaxError,  # numpy parses an NPY header as a Python literal
    TypeError,
    MemoryError,
)


_FAST_BYTES = 4 * 2**20
"""Above this size a JSON artifact written by :func:`write_json` has its arrays parsed by numpy
(Python floats for millions of features cost tens of seconds and gigabytes:
docs/performance.md, "Figures behind the code")."""


def _read_json(path: str) -> dict[str, Any]:
    if os.path.getsize(path) > _FAST_BYTES:
        doc = _read_json_lines(path)
        if doc is not None:
            return doc
    try:
        with open(path, encoding="utf-8") as fp:
            doc = json.load(fp, parse_constant=_reject_constant)
    except RecursionError:
        raise ArtifactError(
            "not a normstat JSON statistics file (nested too deep)", path=path
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"not a normstat JSON statistics file ({exc})", path=path) from None
    if not isinstance(doc, dict):
        raise ArtifactError("not a normstat statistics file (expected a JSON object)", path=path)
    return doc


def _read_json_lines(path: str) -> dict[str, Any] | None:
    """The layout :func:`write_json` writes, its statistics arrays parsed in blocks by numpy's
    number parser (correctly rounded: the same floats as ``json``). ``None`` when the file is
    laid out otherwise: the strict reader then reads it and names what is wrong; a problem
    inside an array is an :class:`ArtifactError` naming the array."""
    layout = _layout(path)
    if layout is None:
        return None
    doc, where = layout
    shape = doc["feature_shape"]
    with open(path, "rb") as fp:
        for name in where:
            doc[name] = _read_array(fp, where, name, shape, path)
    return doc


def stream(
    path: str | os.PathLike[str], block: int = 1 << 14
) -> tuple[Stats, tuple[int, ...], Iterator[tuple[int, Stats]]] | None:
    """An artifact read ``block`` features at a time, in memory bounded by the block: its
    header (a :class:`Stats` with the metadata and no features), its feature shape, and an
    iterator of ``(first feature, statistics of the block)``, each block validated as
    :func:`load` does. ``None`` when the file cannot be read so (another JSON layout, scalar
    statistics, a distribution summary, arrays not as ``feature_shape`` declares): :func:`load`
    it, which names any problem. Reading on past a problem raises it."""
    path = _fspath(path)
    if not os.path.isfile(path):
        return None
    if path.lower().endswith(".npz"):
        try:
            return _stream_npz(path, block)
        except ArtifactError:
            raise
        except _NPZ_ERRORS as exc:
            raise _npz_error(exc, path) from None
    layout = _layout(path)
    if layout is None or set(layout[1]) != set(_ARRAY_KEYS) or not layout[0]["feature_shape"]:
        return None
    doc, where = layout
    header = _header(doc, path)
    if header is None:
        return None
    stack = contextlib.ExitStack()
    readers = {
        k: _array_reader(stack.enter_context(open(path, "rb")), where, k, path)  # noqa: SIM115
        for k in _ARRAY_KEYS
    }

    def finish(name: str, reader: ArrayReader) -> None:
        _check_end(
            reader, where[name][1], math.prod(doc["feature_shape"]), len(doc["feature_shape"])
        )

    return header, tuple(doc["feature_shape"]), _blocks(path, doc, readers, finish, block, stack)


_DISTRIBUTION_JSON_KEYS = ("quantile_levels", "quantiles", "quantiles_exact", "histogram")


def _header(doc: dict[str, Any], path: str) -> Stats | None:
    """The metadata of ``doc`` checked on no features; ``None`` when it has what a block
    cannot be checked alone for (a distribution summary, ``--by`` / ``--weights`` sections,
    names not one per feature)."""
    shape, features = doc["feature_shape"], doc.get("features")
    keyed = "by" in doc or "weights" in doc  # per-group sections are checked with the whole
    if (
        keyed
        or any(k in doc or f"{k}_offsets" in doc for k in _DISTRIBUTION_JSON_KEYS)
        or (isinstance(features, list) and (len(shape) != 1 or len(features) != shape[0]))
    ):
        return None
    empty = {"feature_shape": [0], "features": None if features is None else []}
    return from_dict({**doc, **empty, **{k: np.empty(0) for k in _ARRAY_KEYS}}, path)


def _stream_npz(path: str, block: int) -> tuple[Stats, tuple[int, ...], Iterator[Any]] | None:
    stack = contextlib.ExitStack()
    zf = stack.enter_context(zipfile.ZipFile(path))
    infos = {i.filename: i for i in zf.infolist()}
    if set(infos) != {f"{k}.npy" for k in ("meta", *_ARRAY_KEYS)}:
        stack.close()  # a summary, or members missing or unknown: load names them
        return None
    meta = read_npz_member(zf, infos["meta.npy"], _MAX_META_BYTES, path)
    doc = json.loads(str(meta), parse_constant=_reject_constant) if meta.dtype.kind == "U" else None
    if not isinstance(doc, dict) or not isinstance(doc.get("feature_shape"), list):
        stack.close()
        return None
    shape = _int_list(
        doc["feature_shape"], "feature_shape", lambda m: ArtifactError(m, path=path), 0
    )
    header = _header(doc, path) if shape else None
    if header is None:
        stack.close()
        return None
    limit = max(8 * math.prod(shape), 1024)
    readers = {k: NpzMember(zf, infos[f"{k}.npy"], limit, path) for k in _ARRAY_KEYS}
    if any(r.shape != tuple(shape) or (r.fortran and len(shape) > 1) for r in readers.values()):
        stack.close()
        return None
    for r in readers.values():
        stack.callback(r.fp.close)
    blocks = _blocks(path, doc, readers, lambda _, r: r.finish(), block, stack)
    return header, tuple(shape), _npz_errors_named(blocks, path)


def _npz_errors_named(blocks: Iterator[Any], path: str) -> Iterator[Any]:
    try:
        yield from blocks
    except ArtifactError:
        raise
    except _NPZ_ERRORS as exc:  # a CRC error, a member cut short
        raise _npz_error(exc, path) from None


def _blocks(
    path: str,
    doc: dict[str, Any],
    readers: dict[str, Any],
    finish: Any,
    block: int,
    stack: contextlib.ExitStack,
) -> Iterator[tuple[int, Stats]]:
    """Blocks of ``block`` features taken from each array's reader in step, each validated."""
    shape = doc["feature_shape"]
    n, features = math.prod(shape), doc.get("features")
    with stack:
        for start in range(0, n, block):
            k = min(block, n - start)
            arrays = {name: r.take(k) for name, r in readers.items()}
            short = [name for name, a in arrays.items() if a.size != k]
            if short:
                raise readers[short[0]].fail(f"holds fewer than {n} values (feature_shape)")
            part = {
                **doc,
                **arrays,
                "feature_shape": [k],
                "features": None if features is None else features[start : start + k],
            }
            yield start, from_dict(part, path)
        for name, r in readers.items():
            finish(name, r)


STREAM_BYTES = _FAST_BYTES
"""``show`` reads artifacts above this size block by block (:func:`stream`); smaller ones whole,
where the strict reader's messages name problems as they always did."""
_LINE_BYTES = 1 << 16
_ARRAY_KEYS = (*INT_KEYS, *FLOAT_KEYS)


def _layout(path: str) -> tuple[dict[str, Any], dict[str, tuple[int, int]]] | None:
    """One pass over the file as :func:`write_json` lays it out (``{``, then one ``"key":
    value`` a line, ``}``), reading lines of at most 64 KiB at a time: the values of the other
    keys, and the byte range of each statistics array (from its ``[`` to just past its ``]``),
    found without parsing it. ``None`` for any other layout."""
    doc: dict[str, Any] = {}
    where: dict[str, tuple[int, int]] = {}
    try:
        with open(path, "rb") as fp:
            if fp.readline(8) != b"{\n":
                return None
            while (line := fp.readline(_LINE_BYTES)) != b"}\n":
                start = fp.tell() - len(line)
                head, sep, value = line.partition(b": ")
                name = json.loads(head) if sep and head.startswith(b"  ") else None
                if not isinstance(name, str) or name in doc or name in where:
                    return None
                if name in _ARRAY_KEYS and value.startswith(b"["):
                    end = _line_end(fp, line)
                    where[name] = (start + len(head) + 2, end)
                    continue
                if not line.endswith(b"\n"):
                    line += fp.readline()  # a long line of another key (many feature names)
                value = line.partition(b": ")[2].rstrip(b"\n").removesuffix(b",")
                doc[name] = json.loads(value, parse_constant=_reject_constant)
            if fp.read(1):
                return None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    shape = doc.get("feature_shape")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        return None
    return doc, where


def _line_end(fp: Any, line: bytes) -> int:
    """The offset just past the ``]`` that ends an array line (``],`` or ``]`` then a newline),
    read forward in blocks; -1 when the line ends otherwise."""
    tail = line
    while not tail.endswith(b"\n"):
        more = fp.readline(1 << 20)
        if not more:
            return -1
        tail = tail[-2:] + more
    end = fp.tell() - 1
    ending = tail[:-1]
    if ending.endswith(b"],"):
        return end - 1
    return end if ending.endswith(b"]") else -1


def _read_array(
    fp: Any, where: dict[str, tuple[int, int]], name: str, shape: list[int], path: str
) -> np.ndarray:
    """One whole statistics array, checked for its number of values and its nesting."""
    reader = _array_reader(fp, where, name, path)
    a = reader.take(math.prod(shape))
    _check_end(reader, where[name][1], math.prod(shape), len(shape))
    return a.reshape(shape)


def _array_reader(fp: Any, where: dict[str, tuple[int, int]], name: str, path: str) -> ArrayReader:
    fp.seek(where[name][0])
    return ArrayReader(fp, name, path)


def _check_end(reader: ArrayReader, end: int, n: int, ndim: int) -> None:
    got = reader.read
    if reader.take(1).size or got != n:
        more = got == n
        raise reader.fail(
            f"holds {'more than ' if more else ''}{got} values, expected {n} (feature_shape)"
        )
    if not reader.done or reader.end != end:
        raise reader.fail("does not end its line (expected ']' then a newline)")
    if reader.max_depth != max(ndim, 1):
        raise reader.fail(f"is nested {reader.max_depth} deep, expected {ndim} (feature_shape)")


def _read_npz(path: str) -> dict[str, Any]:
    """The NPZ's members, each checked against what ``feature_shape`` allows *before* it is
    inflated: a small zip can declare gigabytes (a zip bomb), and only known names are read."""
    try:
        return _npz_members(path)
    except ArtifactError:
        raise
    except _NPZ_ERRORS as exc:
        raise _npz_error(exc, path) from None


def _npz_error(exc: BaseException, path: str) -> ArtifactError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ArtifactError(f"not a normstat NPZ statistics file ({reason})", path=path)


_DISTRIBUTION_KEYS = (
    "quantile_levels",
    "quantiles",
    "quantiles_exact",
    "quantiles_relative_error",
    *(f"histogram_{k}" for k in SKETCH_FIELDS),
)
_BUCKETS_PER_FEATURE = 2**20
"""A bound on the buckets of one feature's summary, far above the worst case of
docs/quantiles.md: what an NPZ may declare for a histogram member."""


def _npz_members(path: str) -> dict[str, Any]:
    allowed = {
        f"{k}.npy" for k in ("meta", *INT_KEYS, *FLOAT_KEYS, *_DISTRIBUTION_KEYS, *_KEYED_NPZ)
    }
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        unknown = sorted(set(infos) - allowed)
        if unknown:
            raise ArtifactError(f"NPZ has an unexpected member {unknown[0]!r}", path=path)
        if "meta.npy" not in infos:
            raise ArtifactError("NPZ has no 'meta' entry", path=path)
        meta = read_npz_member(zf, infos.pop("meta.npy"), _MAX_META_BYTES, path)
        if meta.dtype.kind != "U" or meta.shape != ():
            raise ArtifactError("NPZ 'meta' is not a JSON string", path=path)
        doc = json.loads(str(meta), parse_constant=_reject_constant)
        if not isinstance(doc, dict):
            raise ArtifactError("NPZ 'meta' is not a JSON object", path=path)
        shape = _int_list(
            doc.get("feature_shape"), "feature_shape", lambda m: ArtifactError(m, path=path), 0
        )
        limit = 8 * math.prod(shape)
        for name, info in infos.items():
            key = name[: -len(".npy")]
            # a histogram holds up to _BUCKETS_PER_FEATURE buckets of each feature
            cap = limit * _BUCKETS_PER_FEATURE if key.startswith("histogram_") else limit
            cap = _keyed_cap(key, doc, cap, limit)
            doc[key] = read_npz_member(zf, info, max(cap, 1024), path)
    return doc


def from_dict(doc: dict[str, Any], path: str = "<artifact>") -> Stats:
    with np.errstate(all="ignore"):  # values near float64's limits: checked, never warned about
        return _from_dict(doc, path)


def _from_owned(doc: dict[str, Any], path: str) -> Stats:
    """:func:`from_dict` of a document this module has just read, whose arrays nobody else
    holds: the statistics take them over instead of copying them (a 3M-feature artifact's
    arrays are 24 MB each). A caller's own dict goes through :func:`from_dict`, which copies,
    so that merging in place never writes into the caller's arrays."""
    with np.errstate(all="ignore"):
        return _from_dict(doc, path, owned=True)


def _from_dict(doc: dict[str, Any], path: str, owned: bool = False) -> Stats:
    def fail(msg: str) -> ArtifactError:
        return ArtifactError(msg, path=path)

    missing = [k for k in (*META_KEYS, *INT_KEYS, *FLOAT_KEYS) if k not in doc]
    if doc.get("format") != FORMAT:
        raise fail(f"'format' is {_short(doc.get('format'))}, expected {FORMAT!r}")
    if missing:
        raise fail(f"missing keys: {', '.join(missing)}")
    if doc["schema_version"] not in (SCHEMA_VERSION, GROUPS_VERSION):
        raise fail(
            f"schema_version {_short(doc['schema_version'])} is not supported "
            f"(this normstat reads {SCHEMA_VERSION} and {GROUPS_VERSION})"
        )
    shape = _int_list(doc["feature_shape"], "feature_shape", fail, minimum=0)
    axis = None if doc["axis"] is None else tuple(_int_list(doc["axis"], "axis", fail))
    ddof = doc["ddof"]
    if not isinstance(ddof, int) or isinstance(ddof, bool) or not 0 <= ddof < MAX_COUNT:
        raise fail(f"'ddof' must be a non-negative integer below 2**53, received {_short(ddof)}")
    features = doc["features"]
    if features is not None and (
        not isinstance(features, list)
        or not all(isinstance(f, str) for f in features)
        or len(shape) != 1
        or len(features) != shape[0]
    ):
        raise fail(f"'features' must be null or {math.prod(shape)} names for feature_shape {shape}")
    _check_source(doc["source"], fail)
    _check_source_lists(doc["source"], fail)
    arrays = {k: _array(doc[k], k, shape, fail, owned) for k in (*INT_KEYS, *FLOAT_KEYS)}
    weight = _load_weights(doc, shape, arrays["count"], fail)
    moments = _moments(arrays, fail, weight, owned)
    rescale = doc.get("rescale", 1.0)  # absent before --rescale: values as read
    if not isinstance(rescale, int | float) or isinstance(rescale, bool) or not rescale:
        raise fail(f"'rescale' must be a non-zero number, received {rescale!r}")
    stats = Stats(moments, tuple(shape), axis, ddof, features, doc["source"], float(rescale))
    stats.weights = None if weight is None else doc["weights"]["column"]
    stats.feature_groups = _feature_groups(doc, shape, fail)
    _check_derived(stats, arrays, fail)
    _load_distribution(doc, stats, fail)
    _load_by(doc, stats, fail)
    return stats


def _feature_groups(
    doc: dict[str, Any], shape: list[int], fail: Any
) -> list[dict[str, Any]] | None:
    """Version 2's ``feature_groups``: named, consecutive slices that cover the features exactly."""
    groups = doc.get("feature_groups")
    if groups is None:
        return None
    if doc["schema_version"] < GROUPS_VERSION:
        raise fail(f"'feature_groups' needs schema_version {GROUPS_VERSION}")
    ok = isinstance(groups, list) and len(shape) == 1
    at = 0
    for g in groups if ok else []:
        if not (
            isinstance(g, dict)
            and isinstance(g.get("name"), str)
            and isinstance(g.get("start"), int)
            and g["start"] == at
        ):
            ok = False
            break
        at += math.prod(_int_list(g.get("shape"), "feature_groups.shape", fail, minimum=1))
    if not ok or at != (shape[0] if shape else 0):
        raise fail(
            "'feature_groups' must be objects (name, shape, start) that cover the features in order"
        )
    return [{"name": g["name"], "shape": list(g["shape"]), "start": g["start"]} for g in groups]


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


_SOURCE_TYPES: dict[str, tuple[type, ...]] = {
    "paths": (list,),
    "dataset": (str, type(None)),
    "shape": (list, type(None)),
    "dtype": (str,),
    "kind": (str,),
}


def _check_source(source: Any, fail: Any) -> None:
    """The record of what was fitted: its known fields must have their types (show and merge
    read them); fields this version does not know are kept as they are."""
    if not isinstance(source, dict):
        raise fail("'source' must be an object")
    for key, types in _SOURCE_TYPES.items():
        v = source.get(key)
        if key in source and not isinstance(v, types):
            raise fail(f"'source' field {key!r} has the wrong type: {_short(v)}")
    if not all(isinstance(p, str) for p in source.get("paths") or []):
        raise fail("'source' field 'paths' must hold strings")
    shape = source.get("shape") or []
    if not all(x is None or (isinstance(x, int) and not isinstance(x, bool)) for x in shape):
        raise fail(f"'source' field 'shape' must hold integers, received {_short(shape)}")


_SOURCE_LISTS = {
    "left_out": ("name", "reason"),
    "fingerprints": ("path", "size"),
    "promoted": ("name", "to"),
}
"""Optional lists of ``source`` (newer files), and the keys each of their objects must have."""


def _check_source_lists(source: dict[str, Any], fail: Any) -> None:
    for key, needed in _SOURCE_LISTS.items():
        items = source.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and all(k in i for k in needed) for i in items
        ):
            raise fail(f"'source.{key}' must be a list of objects with {', '.join(needed)}")


def _int_list(v: Any, key: str, fail: Any, minimum: int | None = None) -> list[int]:
    ok = (
        isinstance(v, list | tuple | np.ndarray)
        and len(v) <= 32
        and all(isinstance(x, int | np.integer) and not isinstance(x, bool) for x in v)
    )
    if not ok or (minimum is not None and any(x < minimum for x in v)):
        raise fail(f"'{key}' must be a list of integers (at most 32), received {_short(v)}")
    return [int(x) for x in v]


def _array(v: Any, key: str, shape: list[int], fail: Any, owned: bool = False) -> np.ndarray:
    """A statistic as float64 of ``shape``: numbers (JSON null: NaN) only — no strings, booleans,
    complex values, or integers past float64's range, which numpy would convert silently.
    A count key (``INT_KEYS``) read as an integer array stays one: it is checked as integers
    and becomes int64 in :func:`_moments`. ``owned``: ``v`` may be returned as it is."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "iuf":
            raise fail(f"'{key}' has dtype {v.dtype}, expected integers or floats")
        if key in INT_KEYS and v.dtype.kind in "iu":
            if list(v.shape) != shape:
                raise fail(f"'{key}' has shape {list(v.shape)}, expected feature_shape {shape}")
            if v.size and (int(v.min()) < 0 or int(v.max()) >= MAX_COUNT):
                raise fail(f"'{key}' must hold non-negative integers below 2**53")
            return v if owned else v.copy()
        a = v.astype(np.float64, copy=not owned)
    else:
        try:
            obj = np.array(v, dtype=object)
        except (ValueError, TypeError, RecursionError):
            raise fail(f"'{key}' is not a numeric array") from None
        if list(obj.shape) != shape:
            raise fail(f"'{key}' has shape {list(obj.shape)}, expected feature_shape {shape}")
        kinds = set(map(type, obj.reshape(-1)))
        if not kinds <= {int, float, type(None)}:
            wrong = next(t for t in kinds if t not in (int, float, type(None)))
            raise fail(f"'{key}' holds a {wrong.__name__}, expected numbers")
        obj[obj == None] = np.nan  # noqa: E711  (elementwise: JSON null)
        try:
            a = obj.astype(np.float64)
        except OverflowError:
            raise fail(f"'{key}' holds a number too large for float64") from None
    if list(a.shape) != shape:
        raise fail(f"'{key}' has shape {list(a.shape)}, expected feature_shape {shape}")
    if key in INT_KEYS:
        ok = np.isfinite(a).all() and (a >= 0).all() and (a < MAX_COUNT).all()
        if not (ok and (a == np.round(a)).all()):
            raise fail(f"'{key}' must hold non-negative integers below 2**53")
    elif np.isinf(a).any():
        raise fail(f"'{key}' holds an infinite value")
    return a


def _moments(
    a: dict[str, np.ndarray], fail: Any, weight: np.ndarray | None = None, owned: bool = False
) -> Moments:
    """The checked moments. When every feature has values (the usual case) the arrays are
    checked and, if ``owned``, taken as they are; otherwise the empty features are left out of
    the checks and their statistics reset, in copies."""
    count = a["count"].astype(np.int64, copy=not owned).reshape(-1)
    has = count > 0
    full = bool(has.all())
    flat = {k: a[k].reshape(-1) for k in ("min", "max", "mean", "m2")}
    for k in ("mean", "m2", "min", "max"):
        v = flat[k] if full else flat[k][has]
        if np.isnan(v).any():
            raise fail(f"'{k}' is null for a feature whose count is positive")
    if ((flat["m2"] if full else flat["m2"][has]) < 0).any():
        raise fail("'m2' is negative")
    lo, hi, mean, m2 = (flat[k] if full else flat[k][has] for k in ("min", "max", "mean", "m2"))
    n = count if weight is None else weight
    _check_ranges(lo, hi, mean, m2, n if full else n[has], fail)
    if full and owned:
        return Moments(
            count=count,
            nan_count=a["nan_count"].astype(np.int64, copy=False).reshape(-1),
            dmean=np.zeros(count.shape),
            m2=flat["m2"],
            min=flat["min"],
            max=flat["max"],
            shift=flat["mean"],
            weight=weight,
        )
    return Moments(
        count=count,
        nan_count=a["nan_count"].astype(np.int64).reshape(-1),
        dmean=np.zeros(count.shape),
        m2=np.where(has, a["m2"].reshape(-1), 0.0),
        min=np.where(has, a["min"].reshape(-1), np.inf),
        max=np.where(has, a["max"].reshape(-1), -np.inf),
        shift=np.where(has, a["mean"].reshape(-1), 0.0),
        weight=weight,
    )


def _check_ranges(
    lo: np.ndarray, hi: np.ndarray, mean: np.ndarray, m2: np.ndarray, n: np.ndarray, fail: Any
) -> None:
    """What any data satisfies: min <= mean <= max, and a variance of at most (max - min)^2 / 4
    (Popoviciu), with a slack of 1e-9 of the magnitude for rounding. ``minmax`` would invert
    ranges, and z-scores be off, with a file that breaks them."""
    # in blocks of features: the temporaries stay in cache instead of a dozen full-size arrays
    for at in range(0, lo.size, _CHECK_BLOCK):
        part = slice(at, at + _CHECK_BLOCK)
        _check_block(lo[part], hi[part], mean[part], m2[part], n[part], at, fail)


_CHECK_BLOCK = 2**16


def _check_block(
    lo: np.ndarray,
    hi: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    n: np.ndarray,
    at: int,
    fail: Any,
) -> None:
    if (lo > hi).any():
        raise fail(f"'min' is above 'max' for feature {at + int(np.argmax(lo > hi))}")
    slack = 1e-9 * np.maximum(np.abs(lo), np.abs(hi))
    outside = (mean < lo - slack) | (mean > hi + slack)
    if outside.any():
        raise fail(f"'mean' lies outside [min, max] for feature {at + int(np.argmax(outside))}")
    too_wide = m2 > n * ((hi - lo) / 2 + slack) ** 2 * (1 + 1e-9)
    if too_wide.any():
        worst = at + int(np.argmax(too_wide))
        raise fail(f"'m2' is larger than [min, max] allows for feature {worst}")


def _check_derived(stats: Stats, a: dict[str, np.ndarray], fail: Any) -> None:
    """var and std are derived from m2; a file where they disagree has been edited or damaged."""
    for key in ("var", "std"):
        want, got = getattr(stats, key), a[key]
        if not np.allclose(want, got, rtol=1e-9, atol=0, equal_nan=True):
            raise fail(f"'{key}' disagrees with m2, count and ddof")


# ---------------------------------------------------------------------------------------------
# the optional per-group statistics (``fit --by``) and weights (``fit --weights``): docs/artifact.md

BY_KEYS = ("count", "nan_count", "mean", "var", "std", "min", "max", "m2")
_KEYED_NPZ = ("weights_sum", "by_keys", *(f"by_{k}" for k in (*BY_KEYS, "weights_sum")))


def _keyed_meta(stats: Stats) -> dict[str, Any]:
    """What the NPZ's ``meta`` says of them (its arrays are members of their own)."""
    out: dict[str, Any] = {}
    if stats.weights is not None:
        out["weights"] = {"column": stats.weights}
    if stats.groups is not None:
        out["by"] = {"column": stats.by, "groups": stats.groups.n_groups}
    return out


def _by_arrays(stats: Stats) -> dict[str, np.ndarray]:
    groups = stats.by_group()
    out = {k: getattr(groups, k) for k in BY_KEYS}
    if stats.weights is not None:
        out["weights_sum"] = groups.moments.total_weight.reshape(groups.feature_shape)
    return out


def _keyed(stats: Stats, nest: Any = _nested) -> dict[str, Any]:
    """``weights``: the column and the sum of the counted rows' weights per feature; ``by``:
    the column, its sorted distinct values (``keys``) and per group the statistics of the top
    level, as arrays of ``(groups, *feature_shape)``, each given to ``nest`` (nested lists for
    :func:`to_dict`; arrays for the JSON writer, which formats them in blocks)."""
    out: dict[str, Any] = {}
    if stats.weights is not None:
        w = stats.moments.total_weight.reshape(stats.feature_shape)
        out["weights"] = {"column": stats.weights, "sum": nest(w)}
    if stats.groups is not None:
        section: dict[str, Any] = {"column": stats.by, "keys": stats.groups.keys.tolist()}
        section.update({k: nest(v) for k, v in _by_arrays(stats).items()})
        out["by"] = section
    return out


def _npz_keyed(stats: Stats) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if stats.weights is not None:
        out["weights_sum"] = stats.moments.total_weight.reshape(stats.feature_shape)
    if stats.groups is not None:
        out["by_keys"] = stats.groups.keys
        out.update({f"by_{k}": v for k, v in _by_arrays(stats).items()})
    return out


def _keyed_cap(key: str, doc: dict[str, Any], cap: int, limit: int) -> int:
    """An NPZ's per-group members hold ``groups`` times a feature array (declared in meta)."""
    if not key.startswith("by_"):
        return cap
    by = doc.get("by")
    groups = by.get("groups") if isinstance(by, dict) else None
    if not isinstance(groups, int) or isinstance(groups, bool) or not 0 <= groups <= _MAX_GROUPS:
        return limit
    return max(limit, 8 * groups * (limit // 8 + 64))


_MAX_GROUPS = 2**24
"""The most groups an NPZ may declare (16M episodes or speakers): what its members may then
inflate to is bounded before they are read, as for every member (a small zip can declare
gigabytes)."""


def _load_weights(
    doc: dict[str, Any], shape: list[int], count: np.ndarray, fail: Any
) -> np.ndarray | None:
    section = doc.get("weights")
    if section is None:
        return None
    if not isinstance(section, dict) or not isinstance(section.get("column"), str):
        raise fail("'weights' must be an object with the weight 'column'")
    raw = doc.get("weights_sum", section.get("sum"))
    w = _array(raw, "weights.sum", shape, fail)
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise fail("'weights.sum' must hold finite non-negative numbers")
    if ((w > 0) != (count > 0)).any():
        raise fail("'weights.sum' is positive exactly where 'count' is: they disagree")
    return w.reshape(-1)


def _load_by(doc: dict[str, Any], stats: Stats, fail: Any) -> None:
    """The per-group statistics, checked as the top level's are; each group's moments must
    merge to the pooled ones (the count and weight exactly, the mean within rounding)."""
    section = doc.get("by")
    if section is None:
        return
    if not isinstance(section, dict) or not isinstance(section.get("column"), str):
        raise fail("'by' must be an object with the group 'column'")
    keys = _group_keys(doc.get("by_keys", section.get("keys")), fail)
    shape = [len(keys), *stats.feature_shape]

    def get(key: str) -> np.ndarray:
        v = doc.get(f"by_{key}", section.get(key))
        if not len(keys) and isinstance(v, list | np.ndarray) and not len(v):
            return np.zeros(shape)  # no group: JSON keeps no inner shape
        return _array(v, f"by.{key}", shape, fail)

    arrays = {k: get(k) for k in BY_KEYS}
    weight = None
    if stats.weights is not None:
        weight = get("weights_sum").reshape(len(keys), stats.moments.n_features)
    flat = _moments(arrays, fail, None if weight is None else weight.reshape(-1))
    n = stats.moments.n_features
    moments = moments_of(a.reshape(len(keys), n) for a in flat.arrays())
    moments.weight = weight
    groups = GroupedMoments(keys, moments)
    if not np.array_equal(moments.count.sum(axis=0), stats.moments.count):
        raise fail("'by.count' does not add up to 'count'")
    stats.moments.groups = groups
    stats.by = section["column"]
    _check_derived(stats.by_group(), arrays, fail)


def _group_keys(v: Any, fail: Any) -> np.ndarray:
    a = np.asarray(v if v is not None else [])
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iuU"):
        raise fail("'by.keys' must be a list of integers or of strings")
    a = a.astype(np.int64) if a.dtype.kind in "iu" or a.size == 0 else a.astype(str)
    if a.size > 1 and not (a[1:] > a[:-1]).all():
        raise fail("'by.keys' must be sorted and distinct")
    return a
