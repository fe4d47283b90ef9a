"""Cross-check against DuckDB, an independent engine reading the same Parquet file."""

from __future__ import annotations

import numpy as np
import pytest
from tables_data import numbers, table, write

import normstat

duckdb = pytest.importorskip("duckdb")


def duckdb_stats(path: str, columns: list[str]) -> dict[str, np.ndarray]:
    aggs = ", ".join(
        f'count("{c}"), avg("{c}"), var_pop("{c}"), min("{c}"), max("{c}")' for c in columns
    )
    row = duckdb.connect().execute(f"SELECT {aggs} FROM read_parquet('{path}')").fetchone()
    per = np.array(row, dtype=np.float64).reshape(len(columns), 5).T
    return dict(zip(("count", "mean", "var", "min", "max"), per, strict=True))


def test_parquet_with_nulls_agrees_with_duckdb(tmp_path):
    x, nulls = numbers(n=5003, seed=11)
    x[:, 0] = np.nan_to_num(x[:, 0], nan=2.0)  # DuckDB counts NaN as a value; nulls it skips
    nulls[::7, 0] = True
    nulls[::13, 2] = True
    path = write("parquet", table(x, nulls), str(tmp_path / "d.parquet"))
    stats = normstat.fit(path, chunk_size=300)
    ref = duckdb_stats(path, stats.features)
    assert stats.features == ["a", "b", "c", "idx"]
    np.testing.assert_array_equal(stats.count, ref["count"])
    assert stats.nan_count.tolist() == (5003 - ref["count"]).astype(int).tolist()
    for key in ("mean", "var", "min", "max"):
        np.testing.assert_allclose(getattr(stats, key), ref[key], rtol=1e-10, atol=0, err_msg=key)
