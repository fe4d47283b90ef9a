"""Many small shards: opened ahead of the pass (lazily, on a thread), small ones read whole once,
their rows gathered into full chunks. What must not change: the statistics (against numpy
float64 and the one-file fit), the record of what was read, the error a bad shard gets (found
late: nothing written), and the open files, bounded whatever the number of shards."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CrashAfter

import normstat
from normstat.errors import DataError
from normstat.sources import describe, open_sources, read_ahead, settle
from normstat.sources.base import fingerprint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows(seed: int, sizes: list[int], width: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((n, width)) * (1 + j) + 1000.0).astype(np.float32)
        for n, j in zip(sizes, range(len(sizes)), strict=True)
    ]


def _npy_shards(tmp_path, parts: list[np.ndarray]) -> list[str]:
    paths = []
    for i, p in enumerate(parts):
        path = str(tmp_path / f"part-{i:04d}.npy")
        np.save(path, p)
        paths.append(path)
    return paths


def _table(p: np.ndarray) -> pa.Table:
    return pa.table({f"c{j}": p[:, j] for j in range(p.shape[1])})


def _parquet_shards(tmp_path, parts: list[np.ndarray]) -> list[str]:
    paths = []
    for i, p in enumerate(parts):
        path = str(tmp_path / f"part-{i:04d}.parquet")
        pq.write_table(_table(p), path)
        paths.append(path)
    return paths


SIZES = [7, 1, 0, 40, 3, 129, 64, 2, 17, 300, 5, 1, 1, 90, 33] * 3


def _check_against_numpy(stats, x: np.ndarray) -> None:
    ref = x.astype(np.float64)
    mean = ref.mean(axis=0)
    var = ((ref - mean) ** 2).mean(axis=0)  # two-pass
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-13, atol=0)
    np.testing.assert_allclose(stats.var, var, rtol=1e-10, atol=0)
    np.testing.assert_array_equal(stats.min, ref.min(axis=0))
    np.testing.assert_array_equal(stats.max, ref.max(axis=0))
    assert stats.source["shape"][0] == len(x)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
@pytest.mark.parametrize("chunk_size", [None, 37, 128])
def test_many_shards_equal_numpy_and_one_file(tmp_path, fmt, chunk_size):
    """Shards of uneven sizes (an empty one, one larger than a chunk), gathered into chunks
    that cut across shards: the numpy float64 two-pass reference, and the fit of one file
    holding the same rows."""
    parts = _rows(1, SIZES)
    write = _npy_shards if fmt == "npy" else _parquet_shards
    paths = write(tmp_path, parts)
    x = np.concatenate(parts)
    stats = normstat.fit(paths, chunk_size=chunk_size)
    _check_against_numpy(stats, x)
    one = tmp_path / "one"
    one.mkdir()
    (one_path,) = write(one, [x])
    whole = normstat.fit(one_path, chunk_size=chunk_size)
    np.testing.assert_allclose(stats.mean, whole.mean, rtol=1e-14, atol=0)
    np.testing.assert_allclose(stats.var, whole.var, rtol=1e-12, atol=0)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_record_of_what_was_read_is_unchanged(tmp_path, fmt):
    """Paths, shape, dtype and fingerprints (taken from the bytes read whole) are what opening
    every shard up front and fingerprinting each file records."""
    parts = _rows(2, SIZES)
    paths = (_npy_shards if fmt == "npy" else _parquet_shards)(tmp_path, parts)
    stats = normstat.fit(paths)
    eager = open_sources(paths)
    try:
        expected = describe(eager)
    finally:
        for s in eager:
            s.close()
    assert stats.source == expected
    assert stats.source["fingerprints"] == [fingerprint(p) for p in paths]
    assert len(stats.source["paths"]) == len(paths)


def _late_disagreement(tmp_path, fmt: str) -> tuple[list[str], str]:
    parts = _rows(3, [20] * 40)
    if fmt == "npy":
        paths = _npy_shards(tmp_path, parts)
        np.save(paths[33], np.zeros((20, 6), np.float32))  # one feature too many
    else:
        paths = _parquet_shards(tmp_path, parts)
        t = _table(parts[33]).rename_columns(["c0", "c1", "cX", "c3", "c4"])
        pq.write_table(t, paths[33])
    return paths, paths[33]


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_disagreeing_shard_found_late_is_named_and_nothing_is_written(tmp_path, fmt):
    paths, bad = _late_disagreement(tmp_path, fmt)
    with pytest.raises(DataError) as up_front:  # the message of the check before the pass
        open_sources(paths)
    out = tmp_path / "stats.json"
    with pytest.raises(DataError) as err:
        normstat.fit(paths, output=str(out))
    assert str(err.value) == str(up_front.value)
    assert bad in str(err.value)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)
    _no_thread_left()


def test_unreadable_shard_found_late_is_named(tmp_path):
    paths = _npy_shards(tmp_path, _rows(4, [10] * 30))
    with open(paths[21], "wb") as f:
        f.write(b"\x93NUMPY garbage")
    with pytest.raises(DataError) as err:
        normstat.fit(paths)
    assert paths[21] in str(err.value) and "not a readable .npy file" in str(err.value)
    _no_thread_left()


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_nan_in_a_gathered_chunk_names_its_shard_and_row(tmp_path, fmt):
    parts = _rows(5, [30] * 20)
    parts[13][17, 2] = np.nan
    paths = (_npy_shards if fmt == "npy" else _parquet_shards)(tmp_path, parts)
    with pytest.raises(DataError) as err:
        normstat.fit(paths, nan="error")
    assert paths[13] in str(err.value)
    assert "row 17" in str(err.value)
    skipped = normstat.fit(paths, nan="skip")
    x = np.concatenate(parts).astype(np.float64)
    np.testing.assert_allclose(skipped.mean, np.nanmean(x, axis=0), rtol=1e-13)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_checkpointed_fit_of_shards_resumes_to_the_same_statistics(tmp_path, fmt):
    parts = _rows(6, SIZES)
    paths = (_npy_shards if fmt == "npy" else _parquet_shards)(tmp_path, parts)
    ck = str(tmp_path / "fit.ckpt")
    with pytest.raises(RuntimeError, match="crash"):
        normstat.fit(paths, checkpoint=ck, checkpoint_every=1e-9, progress=CrashAfter(900))
    assert os.path.exists(ck)
    stats = normstat.fit(paths, checkpoint=ck, resume=True)
    _check_against_numpy(stats, np.concatenate(parts))
    assert not os.path.exists(ck)
    _no_thread_left()


def _no_thread_left() -> None:
    for _ in range(100):
        if not any(t.name == "normstat-open-ahead" for t in threading.enumerate()):
            return
        time.sleep(0.01)
    raise AssertionError("the read-ahead thread outlived the fit")


def test_read_ahead_thread_ends_with_the_fit(tmp_path):
    paths = _npy_shards(tmp_path, _rows(7, [4] * 100))
    normstat.fit(paths)
    _no_thread_left()


_LIMITED = """
import glob, resource, sys
import numpy as np
import normstat
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
paths = sorted(glob.glob(sys.argv[1]))
stats = normstat.fit(paths)
print(len(paths), stats.source["shape"][0], repr(float(stats.mean[0])))
"""


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_open_files_stay_bounded(tmp_path, fmt):
    """2,000 shards under a limit of 256 open files: the read-ahead holds no file open."""
    parts = _rows(8, [3] * 2000, width=2)
    (_npy_shards if fmt == "npy" else _parquet_shards)(tmp_path, parts)
    env = {**os.environ, "PYTHONPATH": REPO}
    out = subprocess.run(
        [sys.executable, "-c", _LIMITED, str(tmp_path / f"*.{fmt}")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    n, rows, mean = out.stdout.split()
    x = np.concatenate(parts).astype(np.float64)
    assert (int(n), int(rows)) == (2000, 6000)
    assert float(mean) == pytest.approx(x[:, 0].mean(), rel=1e-13)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_read_ahead_reads_small_shards_whole_and_up_front_opening_does_not(tmp_path, fmt):
    """During the pass (the read-ahead running) a small shard is read once, whole, its
    fingerprint taken from those bytes; opened before the pass (``settle``: a Dask plan, a
    checkpoint, a progress total), it is not read whole, so memory does not follow the
    number of shards."""
    parts = _rows(9, [50] * 40)
    paths = (_npy_shards if fmt == "npy" else _parquet_shards)(tmp_path, parts)
    srcs = open_sources(paths, lazy=True)
    try:
        settle(srcs)
        assert all(getattr(s, "known_fingerprint", None) is None for s in srcs)
    finally:
        for s in srcs:
            s.close()
    srcs = open_sources(paths, lazy=True)
    try:
        ahead = read_ahead(srcs)
        assert ahead is not None
        got = [np.asarray(c.data, np.float64) for s in srcs for c in s.chunks(1000)]
        ahead.stop()
        settle(srcs)
        np.testing.assert_array_equal(np.concatenate(got), np.concatenate(parts))
        assert [s.known_fingerprint for s in srcs[1:]] == [fingerprint(p) for p in paths[1:]]
    finally:
        for s in srcs:
            s.close()
    _no_thread_left()
