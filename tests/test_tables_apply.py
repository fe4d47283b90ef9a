"""apply on tables: features replaced in place, everything else passed through untouched."""

from __future__ import annotations

import io
import json

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from tables_data import FEATURES, TABLE_FORMATS, arrow_stream, numbers, suffix, table, write

import normstat
from normstat.cli import main
from normstat.errors import DataError

OTHERS = ["label", "ts"]


def read(path: str) -> pa.Table:
    if path.endswith(".parquet"):
        return pq.read_table(path)
    if path.endswith(".csv"):
        return pacsv.read_csv(path)
    return ipc.open_file(path).read_all()


@pytest.fixture
def data(tmp_path):
    x, nulls = numbers(n=777, seed=3)
    return x, nulls, table(x, nulls)


@pytest.mark.parametrize("fmt", TABLE_FORMATS)
def test_round_trip(fmt, data, tmp_path):
    x, nulls, t = data
    src = write(fmt, t, str(tmp_path / f"in{suffix(fmt)}"))
    stats = normstat.fit(src, columns=FEATURES)
    normed = str(tmp_path / f"normed{suffix(fmt)}")
    normstat.apply(stats, src, normed, chunk_size=50)
    before, after = read(src), read(normed)
    assert after.column_names == before.column_names  # same columns, same positions
    for name in OTHERS:
        assert after.column(name).equals(before.column(name)), name
    for j, name in enumerate(FEATURES):
        col = after.column(name)
        assert col.type == (pa.float64() if fmt == "csv" else pa.float32())  # CSV: text
        # a CSV reader reads the text NaN as a null
        missing = nulls[:, j] | (np.isnan(x[:, j]) if fmt == "csv" else False)
        assert col.is_null().to_numpy(zero_copy_only=False).tolist() == missing.tolist()
        want = (np.where(nulls[:, j], np.nan, x[:, j]) - stats.mean[j]) / stats.std[j]
        got = col.to_numpy(zero_copy_only=False)
        np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6, atol=1e-6)
    if fmt != "csv":
        assert after.schema.metadata[b"origin"] == b"tests"
    restored = str(tmp_path / f"restored{suffix(fmt)}")
    normstat.apply(stats, normed, restored, inverse=True, dtype="float64")
    back = read(restored)
    for j, name in enumerate(FEATURES):
        got = back.column(name).to_numpy(zero_copy_only=False)
        want = np.where(nulls[:, j], np.nan, x[:, j])
        # float32 keeps ~7 digits of the normalised value: relative to the value, and to the
        # feature's spread where the value is near 0
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * stats.std[j])
    for name in OTHERS:
        assert back.column(name).equals(before.column(name)), name


def test_pass_through_columns_are_byte_identical_in_parquet(data, tmp_path):
    _, _, t = data
    src = write("parquet", t, str(tmp_path / "in.parquet"))
    out = str(tmp_path / "out.parquet")
    normstat.apply(normstat.fit(src, columns=["a", "c"]), src, out)
    before, after = pq.read_table(src), pq.read_table(out)
    for name in ("label", "b", "ts", "idx"):  # b and idx were not selected: untouched
        a, b = before.column(name).combine_chunks(), after.column(name).combine_chunks()
        assert a.type == b.type and a.equals(b)
        assert a.is_null().equals(b.is_null())
        # the bytes of the values (those under a null are undefined in Arrow, so left out)
        a, b = a.drop_null(), b.drop_null()
        assert [_bytes(x) for x in a.buffers()[1:]] == [_bytes(x) for x in b.buffers()[1:]]


def _bytes(buf: pa.Buffer | None) -> bytes | None:
    return None if buf is None else buf.to_pybytes()


@pytest.mark.parametrize("out_fmt", ["arrow", "feather", "csv", "parquet"])
def test_output_format_follows_the_suffix(out_fmt, data, tmp_path):
    _, _, t = data
    src = write("parquet", t, str(tmp_path / "in.parquet"))
    out = str(tmp_path / f"out{suffix(out_fmt)}")
    result = CliRunner().invoke(main, ["fit", src, "-o", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["apply", str(tmp_path / "s.json"), src, "-o", out])
    assert result.exit_code == 0, result.output
    assert read(out).num_rows == t.num_rows
    assert read(out).column("label").equals(t.column("label"))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("out_suffix", [".npy", ".h5"])
def test_array_output_holds_the_features(fmt, out_suffix, data, tmp_path):
    x, nulls, t = data
    src = write(fmt, t, str(tmp_path / f"in{suffix(fmt)}"))
    stats = normstat.fit(src)
    out = str(tmp_path / f"out{out_suffix}")
    normstat.apply(stats, src, out, chunk_size=100)
    if out_suffix == ".npy":
        got = np.load(out)
    else:
        with h5py.File(out) as f:
            got = f["data"][...]
            assert json.loads(f["data"].attrs["normstat_stats"])["features"] == FEATURES
    want = (np.where(nulls, np.nan, x) - stats.mean) / stats.std
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6, atol=1e-6)


def test_pipe_writes_an_arrow_stream(data, tmp_path):
    x, nulls, t = data
    src = write("parquet", t, str(tmp_path / "in.parquet"))
    normstat.fit(src).source  # noqa: B018
    stats = str(tmp_path / "s.json")
    normstat.save(normstat.fit(src), stats)
    result = CliRunner().invoke(main, ["apply", stats, src, "-o", "-"])
    assert result.exit_code == 0, result.stderr
    got = ipc.open_stream(io.BytesIO(result.stdout_bytes)).read_all()
    assert got.column_names == t.column_names and got.column("label").equals(t.column("label"))
    assert got.column("a").type == pa.float32()


def test_stdin_stream_to_stdout_stream(data, tmp_path):
    _, _, t = data
    stats = str(tmp_path / "s.json")
    normstat.save(normstat.fit(write("arrow", t, str(tmp_path / "in.arrow"))), stats)
    runner = CliRunner()
    result = runner.invoke(
        main, ["apply", stats, "-", "--input-format", "arrow", "-o", "-"], input=arrow_stream(t)
    )
    assert result.exit_code == 0, result.stderr
    got = ipc.open_stream(io.BytesIO(result.stdout_bytes)).read_all()
    assert got.num_rows == t.num_rows and got.column("ts").equals(t.column("ts"))


def test_missing_feature_is_named_and_nothing_written(data, tmp_path):
    _, _, t = data
    stats = normstat.fit(write("parquet", t, str(tmp_path / "in.parquet")))
    other = write("parquet", t.drop_columns(["c"]), str(tmp_path / "other.parquet"))
    out = tmp_path / "out.parquet"
    with pytest.raises(DataError) as err:
        normstat.apply(stats, other, str(out))
    assert "no column 'c'" in str(err.value) and err.value.path == other
    assert not out.exists()


def test_stdin_to_npy_is_refused_before_reading(data, tmp_path):
    _, _, t = data
    stats = str(tmp_path / "s.json")
    normstat.save(normstat.fit(write("arrow", t, str(tmp_path / "in.arrow"))), stats)
    out = tmp_path / "out.npy"
    result = CliRunner().invoke(
        main,
        ["apply", stats, "-", "--input-format", "arrow", "-o", str(out)],
        input=arrow_stream(t),
    )
    assert result.exit_code == 1 and "row count of a stream" in result.stderr
    assert not out.exists()


def test_shards_with_other_columns_cannot_share_one_output(data, tmp_path):
    _, _, t = data
    a = write("parquet", t.slice(0, 300), str(tmp_path / "a.parquet"))
    b = write("parquet", t.slice(300).drop_columns(["ts"]), str(tmp_path / "b.parquet"))
    stats = normstat.fit([a, b])
    with pytest.raises(DataError) as err:
        normstat.apply(stats, [a, b], str(tmp_path / "out.parquet"))
    assert err.value.path == b


def test_drift_on_a_table_reads_the_artifacts_columns(data, tmp_path):
    x, nulls, t = data
    train = write("parquet", t, str(tmp_path / "train.parquet"))
    stats = normstat.fit(train, columns=["a", "c"])
    shifted = t.set_column(4, "c", pa.array(x[:, 2] + 3 * stats.std[1]))
    serving = write("parquet", shifted, str(tmp_path / "serving.parquet"))
    d = normstat.drift(stats, serving)
    assert d.names == ["a", "c"]
    assert d.mean_shift[0] == pytest.approx(0.0, abs=1e-12)
    assert d.mean_shift[1] == pytest.approx(3.0, rel=1e-9)


def test_shards_in_a_directory_become_one_output_in_order(data, tmp_path):
    x, nulls, t = data
    (tmp_path / "parts").mkdir()
    for i, lo in enumerate(range(0, t.num_rows, 300)):
        write("parquet", t.slice(lo, 300), str(tmp_path / "parts" / f"p{i}.parquet"))
    stats = normstat.fit(str(tmp_path / "parts"))
    out = str(tmp_path / "out.arrow")
    normstat.apply(stats, str(tmp_path / "parts"), out)
    got = read(out)
    assert got.num_rows == t.num_rows and got.column("label").equals(t.column("label"))
    want = (np.where(nulls[:, 3], np.nan, x[:, 3]) - stats.mean[3]) / stats.std[3]
    np.testing.assert_allclose(got.column("idx").to_numpy(), want.astype(np.float32), rtol=1e-6)


def test_what_the_dask_engine_cannot_do_with_tables_is_refused_up_front(data, tmp_path):
    """Refused before any cluster is started (none is given here, so one would be)."""
    _, _, t = data
    csv = write("csv", t, str(tmp_path / "in.csv"))
    stream = tmp_path / "in.arrow"
    stream.write_bytes(arrow_stream(t))  # the IPC stream format: no index of its batches
    src = write("parquet", t, str(tmp_path / "in.parquet"))
    stats = str(tmp_path / "s.json")
    normstat.save(normstat.fit(src), stats)
    for path in (csv, str(stream)):
        result = CliRunner().invoke(main, ["fit", path, "--engine", "dask"])
        assert result.exit_code == 2, result.output
        assert f"Error: {path}: --engine dask splits a table by row groups" in result.stderr
        assert "use --engine local, or convert it to Parquet" in result.stderr
    two = [src, write("parquet", t, str(tmp_path / "in2.parquet"))]
    for out, why in [
        ("one.parquet", "give OUT without a suffix, or use --engine local for one file"),
        ("one.h5", "--engine dask cannot write hdf5"),
    ]:
        args = ["apply", stats, *two, "-o", str(tmp_path / out), "--engine", "dask"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and why in result.stderr, result.output
        assert not (tmp_path / out).exists()
