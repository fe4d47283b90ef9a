"""Row ranges, task plans and parallel-writable targets, without any scheduler.

The Dask engine is only as right as these: every task reads exactly its rows, the tasks of a
plan cover the dataset exactly once, and writes by range rebuild the whole array in any order.
"""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import normstat
from normstat.core.layout import AxisLayout
from normstat.core.moments import merge_all
from normstat.engine.plan import aligned, concat_tasks, fit_tasks, rows_per_task
from normstat.engine.ranged import fit_range
from normstat.engine.task import chunk_task
from normstat.sinks import OUTPUTS, OutputSpec, atomic_directory, range_target
from normstat.sinks.npy import NpyTarget
from normstat.sources import open_sources
from normstat.sources.ranges import RowRange, read_range


class _Shard:
    """Just what the planners look at."""

    format, dataset, kind = "npy", None, "array"

    def __init__(self, n: int, i: int) -> None:
        self.shape, self.path, self.dtype = (n, 3), f"s{i}.npy", np.dtype("f8")


def _covered(pieces):
    return [(p.path, r) for p in pieces for r in range(p.start, p.stop)]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    chunk=st.integers(1, 9),
    task=st.integers(1, 50),
)
def test_fit_tasks_cover_every_row_once_in_order_on_chunk_boundaries(sizes, chunk, task):
    shards = [_Shard(n, i) for i, n in enumerate(sizes)]
    tasks = fit_tasks(shards, chunk, task)
    rows = _covered(p for t in tasks for p in t.pieces)
    expected = [(p, r) for s in shards for p, r in zip(itertools.repeat(s.path), range(s.shape[0]))]
    assert [(r[0].rsplit("/", 1)[-1], r[1]) for r in rows] == expected
    first = 0
    for t in tasks:
        assert all(p.start % chunk == 0 for p in t.pieces)  # the local engine's chunks
        assert t.first == first and t.chunks == sum(-(-p.rows // chunk) for p in t.pieces)
        assert t.rows <= max(task, chunk)  # near the budget, one chunk at least
        first += t.chunks


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    task=st.integers(1, 30),
    align=st.integers(1, 8),
)
def test_write_tasks_are_aligned_in_output_rows_and_cover_once(sizes, task, align):
    shards = [_Shard(n, i) for i, n in enumerate(sizes)]
    total = sum(sizes)
    rows = aligned(task, align, total)
    tasks = concat_tasks(shards, rows)
    assert all(start % align == 0 for _, start in tasks)
    assert [start for _, start in tasks] == list(range(0, total, rows))
    assert sum(p.rows for pieces, _ in tasks for p in pieces) == total
    expected = [(s.path, r) for s in shards for r in range(s.shape[0])]
    covered = _covered(p for pieces, _ in tasks for p in pieces)
    assert [(p.rsplit("/", 1)[-1], r) for p, r in covered] == expected


def test_rows_per_task_is_whole_chunks_near_the_budget():
    assert rows_per_task(100, 8, 64 * 2**20) == 100 * (64 * 2**20 // 800)
    assert rows_per_task(100, 8, 10) == 100  # never less than one chunk
    assert aligned(250, 64, 1000) == 192 and aligned(10, 64, 1000) == 64
    assert aligned(10, None, 1000) == 1000


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.normal(3.0, 2.0, (103, 2, 3))
    np.save(tmp_path / "a.npy", a)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("/g/d", data=a, chunks=(10, 2, 3))
    return tmp_path, a


@pytest.mark.parametrize("spec", ["a.npy", "a.h5:/g/d"])
def test_read_range_reopens_the_source_and_reads_exactly_its_rows(files, spec):
    root, a = files
    (src,) = open_sources([str(root / spec)])
    r = RowRange.of(src, 17, 64)
    src.close()
    chunks = list(read_range(r, 20))
    assert [c.start for c in chunks] == [17, 37, 57]
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), a[17:64])


def test_a_fit_task_equals_the_local_engine_on_its_chunks(files):
    root, a = files
    (src,) = open_sources([str(root / "a.npy")])
    layout = AxisLayout.create(-1, src.shape)
    tasks = fit_tasks([src], 8, 32)  # 13 chunks: tasks of 4, 4, 4, then 1
    assert [t.chunks for t in tasks] == [4, 4, 4, 1]
    trees = [fit_range(t, 8, layout, "skip") for t in tasks]
    got = trees[0].joined(trees[1]).joined(trees[2].joined(trees[3])).total()
    want = merge_all((chunk_task(c, layout, "skip") for c in src.chunks(8)), layout.n_features)
    src.close()
    for g, w in zip(got.arrays(), want.arrays(), strict=True):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_allclose(got.mean, a.reshape(-1, 3).mean(axis=0), rtol=1e-13)


def test_npy_target_rebuilds_the_array_from_ranges_written_in_any_order(tmp_path):
    x = np.random.default_rng(5).normal(size=(50, 4)).astype(np.float32)
    target = NpyTarget(str(tmp_path / "o.npy"), x.shape, "<f4")
    target.create()
    for lo in (40, 0, 20, 10, 30):  # as workers might finish
        w = target.open(lo)
        w.write(x[lo : lo + 5])
        w.write(x[lo + 5 : lo + 10])
        w.close()
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), x)


def test_task_ranges_use_absolute_paths_for_workers_elsewhere(files, monkeypatch):
    root, _ = files
    monkeypatch.chdir(root)
    (src,) = open_sources(["a.npy"])
    (((r,), _),) = concat_tasks([src], 1000)
    src.close()
    assert r.path == str(root / "a.npy") and (r.start, r.stop) == (0, 103)


def test_atomic_directory_leaves_nothing_on_failure_and_replaces_on_success(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_directory(str(out)) as tmp:
        (tmp_path / tmp / "x").write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    out.mkdir()
    (out / "old").write_text("old")
    with atomic_directory(str(out)) as tmp:
        (tmp_path / tmp / "new").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["new"]


def test_hdf5_has_no_parallel_target():
    with pytest.raises(normstat.UsageError, match="cannot be written by parallel workers"):
        hdf5 = next(f for f in OUTPUTS if f.name == "hdf5")
        range_target(hdf5, "/tmp/x.h5", OutputSpec((3, 2), np.dtype("f4")))


@pytest.fixture
def in_process(monkeypatch):
    """Dask apply's jobs run here, in reverse order (as a cluster might finish them)."""
    from normstat.engine.ranged import apply_range

    def run_jobs(jobs, o):
        return [apply_range(j, o.rows, o.step) for j in reversed(jobs)][::-1]

    monkeypatch.setattr("normstat.engine.dask.run_jobs", run_jobs)


def _shards(tmp_path, n=3):
    rng = np.random.default_rng(9)
    xs = [rng.normal(i, 1.0 + i, (20 + 13 * i, 4)) for i in range(n)]
    paths = []
    for i, x in enumerate(xs):
        np.save(tmp_path / f"p{i}.npy", x)
        paths.append(str(tmp_path / f"p{i}.npy"))
    return paths, np.concatenate(xs)


@pytest.mark.parametrize("out", ["parts", "one.npy"])
def test_parallel_apply_outputs_equal_the_transform_in_memory(tmp_path, out, in_process):
    paths, x = _shards(tmp_path)
    stats = normstat.fit(paths)
    normstat.apply(stats, paths, str(tmp_path / out), engine="dask", chunk_size=7, task_size=8)
    want = normstat.transform(x, stats)
    if out == "parts":
        got = np.concatenate([np.load(tmp_path / "parts" / f"p{i}.npy") for i in range(3)])
    else:
        got = np.load(tmp_path / out)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("out", ["parts", "one.npy"])
def test_a_failed_parallel_apply_leaves_no_output(tmp_path, out, monkeypatch):
    paths, _ = _shards(tmp_path)
    stats = normstat.fit(paths)

    def run_jobs(jobs, o):
        raise normstat.DataError("a task failed")

    monkeypatch.setattr("normstat.engine.dask.run_jobs", run_jobs)
    with pytest.raises(normstat.DataError):
        normstat.apply(stats, paths, str(tmp_path / out), engine="dask", task_size=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p0.npy", "p1.npy", "p2.npy"]


def test_parts_refuse_duplicate_names_and_an_output_holding_an_input(tmp_path, in_process):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "x.npy", np.ones((3, 2)))
    np.save(tmp_path / "b" / "x.npy", np.ones((3, 2)))
    paths = [str(tmp_path / "a" / "x.npy"), str(tmp_path / "b" / "x.npy")]
    stats = normstat.fit(paths)
    with pytest.raises(normstat.UsageError, match="share the file name 'x.npy'"):
        normstat.apply(stats, paths, str(tmp_path / "out"), engine="dask")
    with pytest.raises(normstat.UsageError, match="would contain this input"):
        normstat.apply(stats, paths, str(tmp_path), engine="dask", force=True)
