"""apply to a Parquet table with its columns read and transformed in parts, a thread each
(normstat/engine/columns.py): the same bytes as one batch at a time, and as numpy's float64 map."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import normstat
from normstat.engine import columns
from normstat.errors import DataError

N = 2500


def _table(seed: int = 0, n: int = N) -> pa.Table:
    rng = np.random.default_rng(seed)
    a = rng.normal(3, 2, n).astype(np.float32)
    b = rng.normal(-1, 5, n).astype(np.float32)
    d = rng.normal(100, 10, n)
    d_null = rng.random(n) < 0.1
    vec = rng.normal(0, 4, (n, 3)).astype(np.float32)
    return pa.table(
        {
            "a": a,
            "label": pa.array([f"r{i}" for i in range(n)]),
            "b": b,
            "d": pa.array(d, mask=d_null),
            "vec": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), 3),
            "k": np.arange(n, dtype=np.int64),
        }
    )


@pytest.fixture
def parquet(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(_table(), path, row_group_size=700)  # row groups cut across chunks
    return str(path)


@pytest.fixture
def parts_used(monkeypatch):
    """How many times the parts path ran (the test must exercise it, not the batch path)."""
    calls = []
    real = columns._split

    def spy(*args, **kwargs):
        calls.append(args[4])  # the parts
        return real(*args, **kwargs)

    monkeypatch.setattr(columns, "_split", spy)
    return calls


def _reference(stats, t: pa.Table, name: str) -> np.ndarray:
    """numpy's float64 map of feature column ``name`` with the artifact's shift and scale."""
    col = t.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        x = col.values.to_numpy().reshape(len(col), -1).astype(np.float64)
        idx = [stats.features.index(f"{name}[{i}]") for i in range(x.shape[1])]
    else:
        x = col.to_numpy(zero_copy_only=False).astype(np.float64)
        idx = stats.features.index(name)
    return ((x - stats.mean[idx]) / stats.scale[idx]).astype(np.float32)


@pytest.mark.parametrize("workers", [2, 3])
def test_parts_write_the_same_bytes_as_one_batch_at_a_time(parquet, tmp_path, parts_used, workers):
    stats = normstat.fit(parquet, columns=["a", "b", "d", "vec"])
    one = tmp_path / "one.parquet"
    normstat.apply(stats, parquet, str(one), chunk_size=256, workers=1)
    assert parts_used == []  # one worker: batch by batch
    split = tmp_path / "split.parquet"
    normstat.apply(stats, parquet, str(split), chunk_size=256, workers=workers)
    assert len(parts_used) == 1 and len(parts_used[0]) == workers
    assert sorted(sum(parts_used[0], [])) == sorted(["a", "label", "b", "d", "vec", "k"])
    got, want, src = pq.read_table(split), pq.read_table(one), pq.read_table(parquet)
    assert got.schema.names == src.schema.names
    assert got.equals(want)
    for name in ("a", "b", "vec"):
        ref = _reference(stats, src, name)
        col = got.column(name).combine_chunks()
        y = col.values.to_numpy().reshape(ref.shape) if name == "vec" else col.to_numpy()
        assert np.array_equal(y.view(np.uint32), ref.view(np.uint32))
    d = got.column("d").combine_chunks()
    assert d.null_count == src.column("d").null_count
    assert d.is_null().equals(src.column("d").combine_chunks().is_null())
    ref = _reference(stats, src, "d")
    valid = ~np.asarray(d.is_null())
    y = d.to_numpy(zero_copy_only=False)
    assert np.array_equal(y[valid], ref[valid])
    assert got.column("label").equals(src.column("label"))
    assert got.column("k").equals(src.column("k"))


def test_parts_on_the_arrow_stream(parquet, parts_used, monkeypatch, capsysbinary):
    stats = normstat.fit(parquet, columns=["a", "b", "vec"])
    normstat.apply(stats, parquet, "-", chunk_size=300, workers=2)
    out = ipc.open_stream(io.BytesIO(capsysbinary.readouterr().out)).read_all()
    assert len(parts_used) == 1
    src = pq.read_table(parquet)
    assert out.num_rows == N
    assert sum(len(b) for b in out.to_batches()) == N
    for name in ("a", "b"):
        assert np.array_equal(out.column(name).to_numpy(), _reference(stats, src, name))
    assert out.column("d").equals(src.column("d"))  # not a feature: passed through


def test_shards_keep_their_order_and_rows_are_named_across_them(tmp_path, parts_used):
    """Two shards, the second with a value that does not fit float32: the error names its row
    counted from the first shard's first row, as batch by batch does."""
    first, second = _table(1, 1000), _table(2, 1200)
    d = second.column("d").to_numpy(zero_copy_only=False)
    d[1100] = 1e300
    second = second.set_column(3, "d", pa.array(d))
    pq.write_table(first, tmp_path / "s1.parquet", row_group_size=333)
    pq.write_table(second, tmp_path / "s2.parquet", row_group_size=333)
    paths = [str(tmp_path / "s1.parquet"), str(tmp_path / "s2.parquet")]
    stats = normstat.fit(paths[0], columns=["a", "d"])
    errors = []
    for workers in (1, 2):
        with pytest.raises(DataError) as exc:
            normstat.apply(stats, paths, str(tmp_path / f"o{workers}.parquet"), workers=workers)
        errors.append(str(exc.value))
        assert not (tmp_path / f"o{workers}.parquet").exists()
    assert len(parts_used) == 2  # one per shard
    assert "row 2100" in errors[1] and "feature d" in errors[1]
    assert errors[0] == errors[1]
    ok = normstat.fit(paths, columns=["a", "b"])
    normstat.apply(ok, paths, str(tmp_path / "ok.parquet"), chunk_size=128, workers=2)
    got = pq.read_table(tmp_path / "ok.parquet")
    both = pa.concat_tables([first, second])
    assert np.array_equal(got.column("a").to_numpy(), _reference(ok, both, "a"))
    assert got.column("k").equals(both.column("k"))


def test_by_group_and_arrow_files_stay_batch_by_batch(tmp_path, parts_used):
    t = _table(3, 600).append_column("g", pa.array(["x", "y"] * 300))
    pq.write_table(t, tmp_path / "t.parquet", row_group_size=200)
    with ipc.new_file(str(tmp_path / "t.arrow"), t.schema) as w:
        w.write_table(t, max_chunksize=200)
    stats = normstat.fit(str(tmp_path / "t.parquet"), columns=["a", "b"], by="g")
    normstat.apply(
        stats, str(tmp_path / "t.parquet"), str(tmp_path / "o.parquet"), by="g", workers=2
    )
    plain = normstat.fit(str(tmp_path / "t.arrow"), columns=["a", "b"])
    normstat.apply(plain, str(tmp_path / "t.arrow"), str(tmp_path / "o.arrow"), workers=2)
    assert parts_used == []
    got = pq.read_table(tmp_path / "o.parquet")
    for g in ("x", "y"):  # each group z-scored with its own mean and std (numpy's, float64)
        rows = np.asarray(t.column("g").to_pylist()) == g
        for name in ("a", "b"):
            x = t.column(name).to_numpy()[rows].astype(np.float64)
            y = got.column(name).to_numpy()[rows]
            np.testing.assert_allclose(y, (x - x.mean()) / x.std(), rtol=1e-5, atol=1e-5)
    arrow = ipc.open_file(str(tmp_path / "o.arrow")).read_all()
    assert np.array_equal(arrow.column("a").to_numpy(), _reference(plain, t, "a"))


def test_default_parts_leave_a_core_to_an_encoding_writer(
    parquet, tmp_path, parts_used, monkeypatch
):
    """By default one part per core; a Parquet or CSV writer (which encodes) keeps one core."""
    monkeypatch.setattr(columns.os, "cpu_count", lambda: 2)
    stats = normstat.fit(parquet, columns=["a", "b"])
    normstat.apply(stats, parquet, str(tmp_path / "o.parquet"))
    assert parts_used == []  # 2 cores - the writer's = 1: batch by batch
    normstat.apply(stats, parquet, str(tmp_path / "o.arrow"))
    assert [len(p) for p in parts_used] == [2]
    monkeypatch.setattr(columns.os, "cpu_count", lambda: 8)
    normstat.apply(stats, parquet, str(tmp_path / "o2.parquet"), force=True)
    assert [len(p) for p in parts_used] == [2, columns._MAX_PARTS]
    src = pq.read_table(parquet)
    for out in ("o.parquet", "o2.parquet"):
        got = pq.read_table(tmp_path / out)
        assert np.array_equal(got.column("b").to_numpy(), _reference(stats, src, "b"))
    got = ipc.open_file(str(tmp_path / "o.arrow")).read_all()
    assert np.array_equal(got.column("a").to_numpy(), _reference(stats, src, "a"))
