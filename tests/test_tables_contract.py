"""One contract for every format: the same numbers give the same statistics, every row once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import CrashAfter
from tables_data import (
    FEATURES,
    TABLE_FORMATS,
    arrow_stream,
    numbers,
    reference,
    suffix,
    table,
    write,
    write_array,
)

import normstat
from normstat.cli import main
from normstat.errors import DataError
from normstat.sources import open_sources

ALL = ("npy", "h5", *TABLE_FORMATS, "stdin-arrow", "stdin-csv", "stdin-npy")


def _nan_matrix(x: np.ndarray, nulls: np.ndarray) -> np.ndarray:
    return np.where(nulls, np.nan, x)


def _fit(fmt: str, tmp_path, x, nulls, **options) -> dict:
    """Fit the data written as ``fmt`` through the CLI; the artifact as a dict."""
    t = table(x, nulls)
    cols = ["--columns", ",".join(FEATURES)]
    stdin = None
    if fmt in ("npy", "h5"):
        args = [write_array(fmt, _nan_matrix(x, nulls), str(tmp_path / f"d.{fmt}"))]
        cols = []
    elif fmt == "stdin-arrow":
        args, stdin = ["-", "--input-format", "arrow"], arrow_stream(t)
    elif fmt == "stdin-csv":
        path = write("csv", t, str(tmp_path / "d.csv"))
        args, stdin = ["-", "--input-format", "csv"], Path(path).read_bytes()
    elif fmt == "stdin-npy":
        path = write_array("npy", _nan_matrix(x, nulls), str(tmp_path / "d.npy"))
        args, stdin, cols = ["-", "--input-format", "npy"], Path(path).read_bytes(), []
    else:
        args = [write(fmt, t, str(tmp_path / f"d{suffix(fmt)}"))]
    extra = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    result = CliRunner().invoke(main, ["fit", *args, *cols, *extra], input=stdin)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("fmt", ALL)
@pytest.mark.parametrize("chunk_size", [None, 37])
def test_same_numbers_same_statistics(fmt, chunk_size, tmp_path):
    x, nulls = numbers()
    options = {} if chunk_size is None else {"chunk_size": chunk_size}
    doc = _fit(fmt, tmp_path, x, nulls, **options)
    ref = reference(_nan_matrix(x, nulls))
    assert doc["count"] == ref["count"].tolist()
    assert doc["nan_count"] == ref["nan_count"].tolist()
    for key in ("mean", "var", "min", "max"):
        np.testing.assert_allclose(doc[key], ref[key], rtol=1e-12, atol=0, err_msg=key)
    # every row exactly once: the row-number feature has exact count, sum and extremes
    n = x.shape[0]
    assert doc["mean"][3] * doc["count"][3] == pytest.approx(n * (n - 1) / 2, rel=1e-15)
    assert doc["source"]["shape"] == [n, 4]
    assert doc["source"]["kind"] == ("array" if fmt in ("npy", "h5", "stdin-npy") else "table")
    if doc["source"]["kind"] == "table":
        assert doc["features"] == FEATURES


@pytest.mark.parametrize("fmt", TABLE_FORMATS)
def test_chunks_cover_every_row_once(fmt, tmp_path):
    x, nulls = numbers(n=523)
    path = write(fmt, table(x, nulls), str(tmp_path / f"d{suffix(fmt)}"))
    (src,) = open_sources([path], columns=FEATURES)
    parts = list(src.chunks(41))
    assert all(p.data.shape[0] <= 41 for p in parts)
    assert [p.start for p in parts] == list(np.cumsum([0] + [p.data.shape[0] for p in parts])[:-1])
    got = np.concatenate([p.data for p in parts])
    np.testing.assert_array_equal(got, _nan_matrix(x, nulls))
    src.close()


@pytest.mark.parametrize("fmt", TABLE_FORMATS)
def test_nulls_under_nan_error_name_feature_and_row(fmt, tmp_path):
    x, nulls = numbers()
    path = write(fmt, table(x, nulls), str(tmp_path / f"d{suffix(fmt)}"))
    first = int(np.argmax(nulls[:, 1]))
    with pytest.raises(DataError) as err:
        normstat.fit(path, columns=["b"], nan="error")
    assert err.value.feature == "b" and err.value.row == first
    assert path in str(err.value)


def test_arrow_file_holding_the_stream_format(tmp_path):
    x, nulls = numbers()
    path = tmp_path / "d.arrows"
    path.write_bytes(arrow_stream(table(x, nulls)))
    s = normstat.fit(str(path), columns=FEATURES, chunk_size=64)
    np.testing.assert_allclose(s.var, reference(_nan_matrix(x, nulls))["var"], rtol=1e-12)
    assert s.source["shape"] == [x.shape[0], 4]


def test_default_features_are_the_numeric_columns(tmp_path):
    x, nulls = numbers()
    path = write("parquet", table(x, nulls), str(tmp_path / "d.parquet"))
    assert normstat.fit(path).features == ["a", "b", "c", "idx"]  # not label, not ts


@pytest.mark.parametrize("fmt", TABLE_FORMATS)
def test_shards_dir_and_glob_equal_one_file(fmt, tmp_path):
    x, nulls = numbers()
    t = table(x, nulls)
    (tmp_path / "parts").mkdir()
    for i, lo in enumerate(range(0, t.num_rows, 400)):
        write(fmt, t.slice(lo, 400), str(tmp_path / "parts" / f"p{i}{suffix(fmt)}"))
    (tmp_path / "parts" / "_SUCCESS").write_text("")
    whole = normstat.fit(write(fmt, t, str(tmp_path / f"all{suffix(fmt)}")))
    for spec in (str(tmp_path / "parts"), str(tmp_path / "parts" / f"p*{suffix(fmt)}")):
        parts = normstat.fit(spec)
        np.testing.assert_array_equal(parts.count, whole.count)
        np.testing.assert_allclose(parts.mean, whole.mean, rtol=1e-12)
        np.testing.assert_allclose(parts.var, whole.var, rtol=1e-12)
        assert len(parts.source["paths"]) == 3


@pytest.mark.parametrize("fmt", TABLE_FORMATS)
def test_shard_that_disagrees_is_named(fmt, tmp_path):
    x, nulls = numbers()
    t = table(x, nulls)
    good = write(fmt, t.slice(0, 500), str(tmp_path / f"p0{suffix(fmt)}"))
    bad_t = t.slice(500).set_column(1, "a", pa.array(["x"] * (t.num_rows - 500)))
    bad = write(fmt, bad_t, str(tmp_path / f"p1{suffix(fmt)}"))
    with pytest.raises(DataError) as err:
        normstat.fit([good, bad], columns=FEATURES)
    assert err.value.path == bad and "'a'" in str(err.value)
    with pytest.raises(DataError) as err:  # default columns: the shard has one feature fewer
        normstat.fit([good, bad])
    assert err.value.path == bad and good in str(err.value)


def test_shard_with_other_type_is_named(tmp_path):
    """Integers and floats of other widths are widened (tests/test_honest_inputs.py); a decimal
    where the first shard has integers is not."""
    x, nulls = numbers()
    t = table(x, nulls)
    good = write("parquet", t.slice(0, 500), str(tmp_path / "p0.parquet"))
    idx = t.column("idx").slice(500).cast(pa.decimal128(20, 0))
    bad = write("parquet", t.slice(500).set_column(5, "idx", idx), str(tmp_path / "p1.parquet"))
    result = CliRunner().invoke(main, ["fit", good, bad])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {bad}: column 'idx' is decimal128(20, 0), but int64")


def test_unknown_column_lists_the_columns(tmp_path):
    x, nulls = numbers()
    path = write("parquet", table(x, nulls), str(tmp_path / "d.parquet"))
    result = CliRunner().invoke(main, ["fit", path, "--columns", "a,nope"])
    assert result.exit_code == 1
    assert "no column 'nope'" in result.stderr
    assert "label (string), a (double), b (double), ts (timestamp" in result.stderr


def test_columns_on_an_array_is_a_usage_error(tmp_path):
    path = write_array("npy", np.ones((4, 2)), str(tmp_path / "d.npy"))
    result = CliRunner().invoke(main, ["fit", path, "--columns", "a"])
    assert result.exit_code == 2 and "no named columns" in result.stderr


def test_booleans_only_when_named_decimals_by_default(tmp_path):
    import decimal

    flags = [True, False, True, None]
    prices = [decimal.Decimal(v) for v in ("1.25", "2.50", "-0.75", "10.00")]
    t = pa.table({"flag": pa.array(flags), "price": pa.array(prices, pa.decimal128(6, 2))})
    pq.write_table(t, tmp_path / "d.parquet")
    path = str(tmp_path / "d.parquet")
    assert normstat.fit(path).features == ["price"]
    np.testing.assert_allclose(normstat.fit(path).mean, [np.mean([1.25, 2.5, -0.75, 10.0])])
    s = normstat.fit(path, columns=["flag", "price"])
    assert s.count.tolist() == [3, 4] and s.mean[0] == pytest.approx(2 / 3, rel=1e-15)


def test_table_axis_other_than_columns_is_refused(tmp_path):
    x, nulls = numbers()
    path = write("parquet", table(x, nulls), str(tmp_path / "d.parquet"))
    result = CliRunner().invoke(main, ["fit", path, "--axis", "none"])
    assert result.exit_code == 2 and "one statistic per column" in result.stderr


def test_import_normstat_loads_no_pyarrow():
    import subprocess
    import sys

    code = "import sys, normstat; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("crash_at", [100, 700])  # inside the first shard / inside the second
def test_resume_a_table_fit_after_a_crash(fmt, crash_at, tmp_path):
    x, nulls = numbers()
    t = table(x, nulls)
    paths = [
        write(fmt, t.slice(0, 500), str(tmp_path / f"p0{suffix(fmt)}")),
        write(fmt, t.slice(500), str(tmp_path / f"p1{suffix(fmt)}")),
    ]
    state = str(tmp_path / "state.npz")
    options = {"columns": FEATURES, "chunk_size": 37, "workers": 1, "checkpoint": state}
    with pytest.raises(RuntimeError, match="crash"):
        normstat.fit(paths, checkpoint_every=1e-9, progress=CrashAfter(crash_at), **options)
    assert Path(state).exists()
    resumed = normstat.fit(paths, resume=True, **options)
    ref = reference(_nan_matrix(x, nulls))
    assert resumed.count.tolist() == ref["count"].tolist()
    np.testing.assert_allclose(resumed.var, ref["var"], rtol=1e-12)
    assert resumed.source["shape"] == [x.shape[0], 4]
    with pytest.raises(RuntimeError, match="crash"):  # other columns: refuse to resume
        normstat.fit(paths, checkpoint_every=1e-9, progress=CrashAfter(crash_at), **options)
    with pytest.raises(DataError, match="features"):
        normstat.fit(paths, resume=True, **{**options, "columns": ["c", "a", "b", "idx"]})


@pytest.mark.parametrize("fmt", TABLE_FORMATS)
def test_chunks_of_a_row_range(fmt, tmp_path):
    x, nulls = numbers(n=523)
    path = write(fmt, table(x, nulls), str(tmp_path / f"d{suffix(fmt)}"))
    (src,) = open_sources([path], columns=FEATURES)
    parts = list(src.chunks(41, 100, 333))
    assert parts[0].start == 100 and all(p.data.shape[0] <= 41 for p in parts)
    np.testing.assert_array_equal(
        np.concatenate([p.data for p in parts]), _nan_matrix(x, nulls)[100:333]
    )
    src.close()
