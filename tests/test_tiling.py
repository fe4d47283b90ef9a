"""Table tasks without a scheduler: read units, tasks of whole row groups, and merge trees.

The Dask engine's table fit is only as exact as these: chunks are the same whichever unit a read
starts at, tasks cover every row once in whole units, and joining the tasks' merge trees in any
order rebuilds the local engine's merge tree bit for bit.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import normstat
from normstat.core.layout import AxisLayout
from normstat.core.moments import TreeMerger, chunk_moments, merge_all
from normstat.engine.plan import fit_tasks
from normstat.engine.ranged import fit_range
from normstat.sources import open_sources
from normstat.sources.blocks import exact_batches, read_units


def _same(a, b) -> None:
    for x, y in zip(a.arrays(), b.arrays(), strict=True):
        np.testing.assert_array_equal(x, y)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 70),
    cuts=st.lists(st.integers(1, 69), max_size=12),
    order=st.randoms(use_true_random=False),
)
def test_trees_of_any_split_joined_in_any_order_are_the_local_merge_tree(n, cuts, order):
    rng = np.random.default_rng(n)
    parts = [chunk_moments(rng.normal(1e5, 1.0, (int(rng.integers(1, 6)), 2))) for _ in range(n)]
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    trees = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        t = TreeMerger(2, lo)
        for i in range(lo, hi):
            t.add(parts[i])
        trees.append(t)
    while len(trees) > 1:  # join adjacent tasks in a random order, as a cluster might
        i = order.randrange(len(trees) - 1)
        trees[i : i + 2] = [trees[i].joined(trees[i + 1])]
    assert [lv for lv, _ in trees[0]._stack] == [k for k in range(7, -1, -1) if n >> k & 1]
    _same(trees[0].total(), merge_all(parts, 2))


def test_joining_trees_that_do_not_meet_is_a_bug_not_a_result():
    m = chunk_moments(np.ones((2, 1)))
    a, b = TreeMerger(1, 0), TreeMerger(1, 2)
    a.add(m)
    b.add(m)
    with pytest.raises(ValueError, match="not adjacent"):
        a.joined(b)


@settings(max_examples=80, deadline=None)
@given(blocks=st.lists(st.integers(0, 30), max_size=12), rows=st.integers(1, 20))
def test_read_units_cover_the_blocks_in_order_and_pack_only_small_ones(blocks, rows):
    units = read_units(blocks, rows)
    assert sum(u.stop - u.start for u in units) == sum(blocks)
    at = 0
    for u in units:
        assert u.start == at == sum(blocks[: u.lo]) and u.stop == sum(blocks[: u.hi])
        assert u.stop > u.start  # no empty unit
        assert u.stop - u.start <= rows or sum(b > 0 for b in blocks[u.lo : u.hi]) == 1
        at = u.stop


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=8), rows=st.integers(1, 7))
def test_exact_batches_cut_at_every_multiple_of_rows(sizes, rows):
    values = np.arange(sum(sizes))
    bounds = np.cumsum((0, *sizes))
    batches = [
        pa.record_batch([pa.array(values[a:b])], names=["v"])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    got = list(exact_batches(batches, rows))
    assert [b.num_rows for b in got] == [
        min(rows, len(values) - s) for s in range(0, len(values), rows)
    ]
    flat = np.concatenate([b.column(0).to_numpy() for b in got]) if got else values[:0]
    np.testing.assert_array_equal(flat, values)


@pytest.fixture
def tables(tmp_path):
    """Three shards as Parquet (row groups of 1 to 250 rows) and as Arrow IPC files."""
    rng = np.random.default_rng(4)
    x = rng.normal(50.0, 4.0, (1234, 3))
    x[rng.random(x.shape) < 0.03] = np.nan
    paths = {"parquet": [], "arrow": []}
    for i, (lo, hi, rg) in enumerate([(0, 600, 7), (600, 601, 1), (601, 1234, 250)]):
        t = pa.table({"id": np.arange(lo, hi), **{f"f{j}": x[lo:hi, j] for j in range(3)}})
        pq.write_table(t, tmp_path / f"s{i}.parquet", row_group_size=rg)
        with ipc.new_file(str(tmp_path / f"s{i}.arrow"), t.schema) as w:
            for b in t.to_batches(max_chunksize=rg + 3):
                w.write_batch(b)
        paths["parquet"].append(str(tmp_path / f"s{i}.parquet"))
        paths["arrow"].append(str(tmp_path / f"s{i}.arrow"))
    return paths, x


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_reading_from_any_unit_gives_the_chunks_of_a_whole_read(tables, fmt):
    paths, _ = tables
    (src,) = open_sources(paths[fmt][2:])
    whole = list(src.chunks(16))
    units = src.read_units(16)
    want = [(s, min(s + 16, u.stop)) for u in units for s in range(u.start, u.stop, 16)]
    assert [(c.start, c.start + c.data.shape[0]) for c in whole] == want  # never across units
    for u in units:
        tail = list(src.chunks(16, u.start))
        assert [c.start for c in tail] == [c.start for c in whole if c.start >= u.start]
        for a, b in zip(tail, [c for c in whole if c.start >= u.start], strict=True):
            np.testing.assert_array_equal(a.data, b.data)
    src.close()


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
@pytest.mark.parametrize("task_rows", [1, 40, 333, 10**6])
def test_tasks_of_whole_units_rebuild_the_local_fit_bit_for_bit(tables, fmt, task_rows):
    paths, x = tables
    srcs = open_sources(paths[fmt], columns=["f0", "f1", "f2"])
    tasks = fit_tasks(srcs, 16, task_rows)
    starts = {s.path: {u.start for u in s.read_units(16)} for s in srcs}
    covered = []
    for t in tasks:
        for p in t.pieces:
            assert p.start in starts[p.label]  # whole row groups / record batches
            assert p.stop in starts[p.label] | {p.stop} and p.columns == ("f0", "f1", "f2")
            covered += [(p.label, r) for r in range(p.start, p.stop)]
    assert covered == [(s.path, r) for s in srcs for r in range(s.shape[0])]
    assert [t.first for t in tasks] == list(np.cumsum([0] + [t.chunks for t in tasks[:-1]]))
    layout = AxisLayout.create(-1, (0, 3))
    trees = [fit_range(t, 16, layout, "skip") for t in tasks]
    result = trees[0]
    for t in trees[1:]:
        result = result.joined(t)
    local = normstat.fit(paths[fmt], chunk_size=16, columns=["f0", "f1", "f2"])
    _same(result.total(), local.moments)
    np.testing.assert_allclose(local.mean, np.nanmean(x, axis=0), rtol=1e-13)
    for s in srcs:
        s.close()


def test_a_file_that_changed_since_the_plan_is_an_error(tables, tmp_path):
    paths, _ = tables
    srcs = open_sources(paths["parquet"][:1])
    (task,) = fit_tasks(srcs, 16, 10**6)
    pq.write_table(pq.read_table(paths["parquet"][0]).slice(0, 500), paths["parquet"][0])
    with pytest.raises(normstat.DataError, match="did the file change during the fit"):
        fit_range(task, 16, AxisLayout.create(-1, (0, 4)), "skip")
