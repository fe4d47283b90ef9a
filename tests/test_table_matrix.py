"""Float32 table columns stay float32 on the way to the kernel (no widening copy), with the same
statistics as the float64 reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import normstat
from normstat.sources.base import stack_columns
from normstat.sources.table import feature_columns


def to_matrix(b: pa.RecordBatch, names: list[str]) -> np.ndarray:
    return stack_columns(feature_columns(b, names))


def test_all_float32_columns_give_a_float32_matrix_with_nan_for_null():
    b = pa.record_batch(
        [pa.array([1.5, None, 3.0], pa.float32()), pa.array([1.0, 2.0, None], pa.float32())],
        names=["a", "b"],
    )
    m = to_matrix(b, ["a", "b"])
    assert m.dtype == np.float32 and m.flags.f_contiguous
    np.testing.assert_array_equal(m, [[1.5, 1.0], [np.nan, 2.0], [3.0, np.nan]])


def test_mixed_columns_still_give_float64():
    b = pa.record_batch(
        [pa.array([1.5, 2.5], pa.float32()), pa.array([1, 2], pa.int64())], names=["a", "b"]
    )
    assert to_matrix(b, ["a", "b"]).dtype == np.float64


def test_float32_parquet_fit_matches_float64_reference(tmp_path):
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((20_000, 3)) + [1e4, 1e5, 1e6]).astype(np.float32)
    mask = rng.random(x.shape) < 0.05
    cols = [pa.array(x[:, j], mask=mask[:, j]) for j in range(3)]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table(cols, names=["a", "b", "c"]), path)
    stats = normstat.fit(str(path), chunk_size=4096)
    ref = np.where(mask, np.nan, x.astype(np.float64))
    np.testing.assert_array_equal(stats.count, (~mask).sum(axis=0))
    np.testing.assert_allclose(stats.mean, np.nanmean(ref, axis=0), rtol=1e-14)
    np.testing.assert_allclose(stats.var, np.nanvar(ref, axis=0), rtol=1e-11)
