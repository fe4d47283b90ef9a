"""Table chunks arrive as columns (Arrow buffers, uncopied) and are reduced column by column;
the numbers must be those of independent references: rational arithmetic at a huge offset, numpy
float64 two-pass, exact integers, and the same statistics as the row-matrix path."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import normstat
from normstat.core import blocked
from normstat.core.blocked import SUB_BLOCK_ELEMENTS, column_moments, finite_moments
from normstat.core.layout import AxisLayout
from normstat.core.moments import Moments
from normstat.engine.task import chunk_task
from normstat.errors import DataError
from normstat.sources.base import Chunk, stack_columns
from normstat.sources.table import feature_columns


def exact(col: np.ndarray) -> tuple[float, float]:
    vals = [Fraction(v) for v in col.tolist()]
    mean = sum(vals) / len(vals)
    return float(mean), float(sum((v - mean) ** 2 for v in vals))


def test_float32_column_at_a_huge_offset_matches_rational_reference():
    rng = np.random.default_rng(3)
    n = 3 * (SUB_BLOCK_ELEMENTS // 2) + 17  # several sub-blocks and a tail
    col = (rng.standard_normal(n) * 3 + 1e6).astype(np.float32)
    m = column_moments(col)
    mean, m2 = exact(col[::97])  # Fraction over all n is slow; check the kernel on a slice too
    sub = column_moments(np.ascontiguousarray(col[::97]))
    assert sub.mean[0] == pytest.approx(mean, rel=1e-15)
    assert sub.m2[0] == pytest.approx(m2, rel=1e-13)
    ref = col.astype(np.float64)
    assert m.mean[0] == pytest.approx(ref.mean(), rel=1e-14)
    assert m.m2[0] == pytest.approx(((ref - ref.mean()) ** 2).sum(), rel=1e-12)
    assert (m.min[0], m.max[0]) == (float(col.min()), float(col.max()))
    assert m.count[0] == n


def test_drift_inside_a_column_takes_the_second_pass(monkeypatch):
    """The first sub-block's mean (the shift) is many standard deviations from the column's
    mean: the shifted sums are taken again, shifted by the mean, and stay accurate."""
    rng = np.random.default_rng(6)
    head = np.full(SUB_BLOCK_ELEMENTS, 1e4)
    col = np.concatenate([head, rng.standard_normal(30 * SUB_BLOCK_ELEMENTS)])
    calls = []
    sums = blocked.column_sums
    monkeypatch.setattr(blocked, "column_sums", lambda c, k: calls.append(k) or sums(c, k))
    m = column_moments(col)
    assert len(calls) == 2 and calls[0] == 1e4
    ref = col.astype(np.longdouble)
    mean = ref.mean()
    assert m.mean[0] == pytest.approx(float(mean), rel=1e-14)
    assert m.m2[0] == pytest.approx(float(((ref - mean) ** 2).sum()), rel=1e-13)


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64, np.float16, np.bool_]
)
def test_every_column_type_matches_the_matrix_path(dtype):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 100, (5000, 3)).astype(dtype)
    by_col = Moments.join([column_moments(np.ascontiguousarray(x[:, j])) for j in range(3)])
    by_rows = finite_moments(x)
    ref = x.astype(np.float64)
    np.testing.assert_allclose(by_col.mean, ref.mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(by_col.m2, by_rows.m2, rtol=1e-13)
    np.testing.assert_array_equal(by_col.min, ref.min(axis=0))
    np.testing.assert_array_equal(by_col.max, ref.max(axis=0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_column_is_handed_back(bad):
    col = np.arange(10, dtype=np.float32)
    col[7] = bad
    assert column_moments(np.arange(10.0)) is not None
    assert column_moments(col) is None


def test_chunk_task_on_columns_names_row_and_column_of_an_inf():
    cols = (np.arange(6.0), np.array([0, 1, 2, np.inf, 4, 5.0]))
    chunk = Chunk.of_columns(cols, "t.parquet", None, 100)
    with pytest.raises(DataError, match=r"t.parquet: infinite value at row 103, feature b$"):
        chunk_task(chunk, AxisLayout.create(-1, (6, 2)), "skip", ["a", "b"])


def test_chunk_task_on_columns_skips_nan_per_column():
    cols = (np.array([1.0, np.nan, 3.0]), np.array([2.0, 4.0, 9.0], np.float32))
    m = chunk_task(Chunk.of_columns(cols, "t", None, 0), AxisLayout.create(-1, (3, 2)), "skip")
    np.testing.assert_array_equal(m.count, [2, 3])
    np.testing.assert_array_equal(m.nan_count, [1, 0])
    np.testing.assert_allclose(m.mean, [2.0, 5.0])


def test_column_chunk_builds_its_matrix_only_when_asked():
    cols = (np.array([1.0, 2.0], np.float32), np.array([3.0, 4.0], np.float32))
    chunk = Chunk.of_columns(cols, "t", None, 0)
    assert chunk.rows == 2 and chunk._data is None
    np.testing.assert_array_equal(chunk.data, [[1, 3], [2, 4]])
    assert chunk.data.dtype == np.float32 and chunk.data.flags.f_contiguous
    assert stack_columns([np.array([1], np.int64), np.array([2.5])]).dtype == np.float64


def test_null_free_numeric_columns_are_not_copied():
    batch = pa.record_batch(
        [
            pa.array(np.arange(4, dtype=np.float32)),
            pa.array(np.arange(4, dtype=np.int64)),
            pa.array([1.0, None, 2.0, 3.0]),
            pa.array([True, False, True, True]),
        ],
        names=["f", "i", "n", "b"],
    )
    f, i, n, b = feature_columns(batch, ["f", "i", "n", "b"])
    assert np.shares_memory(f, np.frombuffer(batch.column(0).buffers()[1], np.float32))
    assert np.shares_memory(i, np.frombuffer(batch.column(1).buffers()[1], np.int64))
    assert np.isnan(n[1]) and n.dtype == np.float64
    np.testing.assert_array_equal(b, [1.0, 0.0, 1.0, 1.0])


def test_parquet_fit_of_mixed_types_with_nulls_matches_numpy(tmp_path):
    rng = np.random.default_rng(5)
    n = 40_000
    cols = {
        "f32": (rng.standard_normal(n) * 2 + 1e5).astype(np.float32),
        "f64": rng.standard_normal(n) * 1e-3 - 7,
        "i64": rng.integers(-(10**12), 10**12, n),
        "u8": rng.integers(0, 256, n).astype(np.uint8),
        "i16": rng.integers(-3000, 3000, n).astype(np.int16),
    }
    masks = {"f64": rng.random(n) < 0.01, "i16": rng.random(n) < 0.02}
    table = pa.table({k: pa.array(v, mask=masks.get(k)) for k, v in cols.items()})
    pq.write_table(table, tmp_path / "m.parquet", row_group_size=7000)
    stats = normstat.fit(str(tmp_path / "m.parquet"), chunk_size=3000)
    for j, (name, v) in enumerate(cols.items()):
        ref = v.astype(np.float64)
        if name in masks:
            ref = ref[~masks[name]]
        assert stats.count[j] == ref.size, name
        assert stats.mean[j] == pytest.approx(ref.mean(), rel=1e-13), name
        assert stats.var[j] == pytest.approx(ref.var(), rel=1e-11), name
        assert (stats.min[j], stats.max[j]) == (ref.min(), ref.max()), name


def test_shards_with_other_metadata_are_not_given_the_first_shards_features(tmp_path):
    """The feature selection is remembered per schema: a shard whose metadata marks a column
    as a label (Hugging Face ClassLabel) must not reuse an earlier selection of that column."""
    import json

    from normstat.sources import open_sources

    plain = pa.table({"x": [1.0, 2.0], "y": [0, 1]})
    hf = {"info": {"features": {"y": {"_type": "ClassLabel"}}}}
    marked = plain.replace_schema_metadata({"huggingface": json.dumps(hf)})
    pq.write_table(plain, tmp_path / "a.parquet")
    pq.write_table(marked, tmp_path / "b.parquet")
    (a,) = open_sources([str(tmp_path / "a.parquet")])
    (b,) = open_sources([str(tmp_path / "b.parquet")])
    assert a.features == ["x", "y"] and b.features == ["x"]
    a.features.append("z")  # a source's list is its own, not the remembered one
    (c,) = open_sources([str(tmp_path / "a.parquet")])
    assert c.features == ["x", "y"]


def test_a_parquet_file_replaced_after_it_was_opened_is_refused(tmp_path):
    """The footer is parsed once and the file closed; a read reopens it, and a file that is no
    longer the one opened (another size, time or inode) is an error, not stale offsets."""
    from normstat.sources import open_sources

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": np.arange(100.0)}), path)
    (src,) = open_sources([str(path)])
    pq.write_table(pa.table({"x": np.arange(300.0)}), tmp_path / "other.parquet")
    (tmp_path / "other.parquet").replace(path)
    with pytest.raises(DataError, match="changed since it was opened"):
        for chunk in src.chunks(1000):
            list(chunk.columns)
    src.close()


def test_many_short_shards_match_one_file(tmp_path):
    """Short shards take the one-read, row-major path; long ones the column path: the same
    statistics as numpy's float64 two-pass over all the rows."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((3000, 5)) * [1, 2, 3, 4, 5] + 1e5).astype(np.float32)
    x[7, 2] = np.nan
    paths = []
    for i in range(30):
        p = tmp_path / f"s{i:02d}.parquet"
        pq.write_table(pa.table({f"c{j}": x[i * 100 : (i + 1) * 100, j] for j in range(5)}), p)
        paths.append(str(p))
    s = normstat.fit(paths)
    ref = x.astype(np.float64)
    np.testing.assert_array_equal(s.count, [3000, 3000, 2999, 3000, 3000])
    np.testing.assert_allclose(s.mean, np.nanmean(ref, axis=0), rtol=1e-14)
    np.testing.assert_allclose(s.var, np.nanvar(ref, axis=0), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_short_chunk_as_one_matrix_equals_its_columns_stacked(tmp_path, dtype):
    """A short chunk of plain float columns becomes its row-major matrix in one Arrow call;
    it must hold exactly what the columns give one by one (nulls as NaN, NaN kept), from any
    row of a row group on. Columns of mixed types take the column path (no matrix)."""
    from normstat.sources import open_sources

    rng = np.random.default_rng(4)
    x = rng.standard_normal((100, 4)).astype(dtype)
    x[3, 1] = np.nan
    mask = np.zeros(100, bool)
    mask[[5, 60]] = True
    cols = {f"c{j}": pa.array(x[:, j], mask=mask if j == 2 else None) for j in range(4)}
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=50)
    (src,) = open_sources([str(path)])
    chunks = list(src.chunks(100, start=10))
    assert [c.start for c in chunks] == [10]
    whole = chunks[0].columns.row_major()
    assert whole is not None and whole.dtype == dtype and whole.flags.c_contiguous
    expected = stack_columns(list(chunks[0].columns), chunks[0].rows, order="C")
    np.testing.assert_array_equal(whole, expected)  # NaN where NaN, in the same places
    ref = x[10:].astype(np.float64)
    ref[mask[10:], 2] = np.nan
    np.testing.assert_array_equal(whole.astype(np.float64), ref)
    src.close()

    mixed = tmp_path / "m.parquet"
    pq.write_table(pa.table({"a": x[:, 0], "b": np.arange(100)}), mixed, row_group_size=50)
    (src,) = open_sources([str(mixed)])
    assert next(iter(src.chunks(100))).columns.row_major() is None
    src.close()


def test_npy_shards_sharing_a_header_parse_it_once_and_still_refuse_a_bad_one(tmp_path):
    """Headers are remembered by their bytes: shards of one shape parse once; a shard whose
    header differs (another dtype) is parsed anew, and a damaged one is still refused."""
    from normstat.sources import npy

    x = np.arange(40.0).reshape(20, 2)
    for i in range(3):
        np.save(tmp_path / f"s{i}.npy", x + i)
    np.save(tmp_path / "t.npy", x.astype(np.float32))
    s = normstat.fit([str(tmp_path / f"s{i}.npy") for i in range(3)])
    ref = np.concatenate([x + i for i in range(3)])
    np.testing.assert_allclose(s.mean, ref.mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(s.var, ref.var(axis=0), rtol=1e-13)
    assert npy.NpyFile(str(tmp_path / "t.npy")).dtype == np.float32
    bad = (tmp_path / "s0.npy").read_bytes().replace(b"'descr'", b"'dascr'")
    (tmp_path / "bad.npy").write_bytes(bad)
    with pytest.raises(DataError, match="not a readable .npy"):
        npy.NpyFile(str(tmp_path / "bad.npy"))
    huge = bytearray((tmp_path / "s0.npy").read_bytes())
    huge[8:10] = (60000).to_bytes(2, "little")  # a header length beyond numpy's limit
    (tmp_path / "huge.npy").write_bytes(bytes(huge))
    with pytest.raises(DataError, match="more than 10000"):
        npy.NpyFile(str(tmp_path / "huge.npy"))
