"""Never guess silently (issue 16, columns and inputs): what pyarrow infers from a CSV's first
block is checked, table metadata is respected, every left-out column is reported, shards of other
widths are widened, and the same data is never counted twice. Values against numpy float64
two-pass references."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import normstat
from normstat.cli import main
from normstat.errors import DataError, UsageError

N = 400_000
BAD_ROW = 200_001  # in the first 1 MiB block: rows are 4 bytes


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def ref(v: np.ndarray) -> tuple[float, float]:
    """float64 two-pass mean and population variance of the finite values."""
    v = v[np.isfinite(v)]
    mean = v.sum() / v.size
    return mean, ((v - mean) ** 2).sum() / v.size


def short_rows(tmp_path, y_cell: bytes, row: int = BAD_ROW, name: str = "d.csv") -> str:
    """``x,y`` digits, 400,000 rows of 4 bytes; ``y`` at ``row`` is ``y_cell``."""
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 10, N), rng.integers(0, 10, N)
    lines = [f"{a},{b}".encode() for a, b in zip(x.tolist(), y.tolist(), strict=True)]
    lines[row] = str(x[row]).encode() + b"," + y_cell
    path = tmp_path / name
    path.write_bytes(b"x,y\n" + b"\n".join(lines) + b"\n")
    return str(path)


@pytest.fixture(scope="module")
def late(tmp_path_factory) -> tuple[str, np.ndarray]:
    """``y`` is empty for its first 150,000 rows (more than the first 1 MiB block)."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(0, 1, N).round(4), rng.normal(5, 2, N).round(4)
    y[:150_000] = np.nan
    cells = ["" if np.isnan(v) else repr(v) for v in y.tolist()]
    path = tmp_path_factory.mktemp("late") / "late.csv"
    rows = (f"{a},{b}" for a, b in zip(x.tolist(), cells, strict=True))
    path.write_text("x,y\n" + "\n".join(rows) + "\n")
    return str(path), np.column_stack([x, y])


# --- 1. CSV types over the whole file --------------------------------------------------------


def test_column_empty_in_the_first_block_is_a_feature(late):
    path, data = late
    s = normstat.fit(path)
    assert s.features == ["x", "y"]
    assert s.count.tolist() == [N, N - 150_000] and s.nan_count.tolist() == [0, 150_000]
    for j in range(2):
        mean, var = ref(data[:, j])
        assert s.mean[j] == pytest.approx(mean, rel=1e-12)
        assert s.var[j] == pytest.approx(var, rel=1e-12)
    assert normstat.fit(path, columns=["y"]).count.tolist() == [N - 150_000]


def test_apply_reads_the_late_column_with_its_own_statistics(late, tmp_path):
    path, data = late
    out = str(tmp_path / "out.parquet")
    normstat.apply(normstat.fit(path), path, out, dtype="float64")
    y = pq.read_table(out).column("y").to_numpy(zero_copy_only=False)
    mean, var = ref(data[:, 1])
    np.testing.assert_allclose(y[150_000:], (data[150_000:, 1] - mean) / np.sqrt(var), atol=1e-12)
    assert np.isnan(y[:150_000]).all()


@pytest.mark.parametrize("cell", [b"?", b"-", b"x", b"3\xff", b"3\x004", b'"3\n4"'], ids=repr)
def test_stray_cell_in_the_first_block_names_column_and_row(tmp_path, cell):
    path = short_rows(tmp_path, cell)
    result = run("fit", path)
    assert result.exit_code == 1, result.output
    assert f"column 'y', row {BAD_ROW}:" in result.stderr


def test_stray_cell_past_the_first_block_names_its_row(tmp_path):
    """The row of the cell, not the first row of the block where the reader stopped."""
    path = short_rows(tmp_path, b"?", row=350_000)
    with pytest.raises(DataError) as err:
        normstat.fit(path)
    assert err.value.row == 350_000 and err.value.feature == "y"
    assert "column 'y', row 350000: '?' is not a number" in str(err.value)


def test_late_column_with_a_bad_cell_names_it(tmp_path):
    rows = ["1,"] * 300_000 + ["2,5"] * 10 + ["3,oops"] + ["4,6"] * 10
    path = tmp_path / "d.csv"
    path.write_text("x,y\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match="column 'y', row 300010: 'oops' is not a number"):
        normstat.fit(str(path))


def test_declared_types_and_null_spellings_override_inference(tmp_path):
    path = short_rows(tmp_path, b"?")
    s = normstat.fit(path, column_types="y:string")
    assert s.features == ["x"] and s.source["left_out"] == [{"name": "y", "reason": "string"}]
    s = normstat.fit(path, null_values="?,")
    assert s.features == ["x", "y"] and s.nan_count.tolist() == [0, 1]
    with pytest.raises(DataError, match=f"column 'y', row {BAD_ROW}: '\\?' is not a number"):
        normstat.fit(path, column_types="y:float64")  # declared, and wrong in the first block
    with pytest.raises(UsageError, match="unknown type 'float65'"):
        normstat.fit(path, column_types={"y": "float65"})


def test_text_and_empty_columns_are_left_out_and_reported(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,name,empty,flag\n1,x,,true\n2,y,,false\n")
    result = run("fit", str(path), "-o", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(
        "features: 1 (a); left out: name (string), empty (empty), "
        "flag (bool: name it in --columns to use it as 0 / 1)\n"
    )
    doc = json.loads((tmp_path / "s.json").read_text())
    assert [c["name"] for c in doc["source"]["left_out"]] == ["name", "empty", "flag"]
    assert run("fit", str(path), "-q").stderr == ""
    assert normstat.load(str(tmp_path / "s.json")).features == ["a"]
    with pytest.raises(DataError, match="column 'empty' is empty \\(no value in the file\\)"):
        normstat.fit(str(path), columns="a,empty")


# --- 2. CSV dialects, quoted names, stdin ----------------------------------------------------


def test_no_header_delimiter_and_null_values(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1;2.5;a\n3;none;b\n5;6.5;c\n")
    s = normstat.fit(str(path), header=False, delimiter=";", null_values="none")
    assert s.features == ["c0", "c1"] and s.count.tolist() == [3, 2]
    np.testing.assert_allclose(s.mean, [3.0, 4.5])
    stats = str(tmp_path / "s.json")
    args = ["--no-header", "--delimiter", ";", "--null-values", "none"]
    assert run("fit", str(path), *args, "-o", stats).exit_code == 0
    out = str(tmp_path / "o.parquet")
    result = run("apply", stats, str(path), *args, "-o", out)
    assert result.exit_code == 0, result.output
    t = pq.read_table(out)
    assert t.column_names == ["c0", "c1", "c2"] and t.column("c2").to_pylist() == ["a", "b", "c"]
    np.testing.assert_allclose(t.column("c0").to_numpy(), [-1.2247449, 0, 1.2247449], rtol=1e-6)
    # without --no-header the first row is names: the report shows it
    result = run("fit", str(path), "--delimiter", ";", "--null-values", "none")
    assert result.stderr.startswith("features: 2 (1, 2.5); left out: a (string)")


def test_stdin_takes_the_same_options(tmp_path):
    data = b"1;2.5;a\n3;;b\n5;6.5;c\n"
    args = ["--input-format", "csv", "--no-header", "--delimiter", ";"]
    stats = str(tmp_path / "s.json")
    result = run("fit", "-", *args, "--columns", "c0,c1", "-o", stats, input=data)
    assert result.exit_code == 0, result.output
    assert json.loads(Path(stats).read_text())["mean"] == [3.0, 4.5]
    result = run("apply", stats, "-", *args, "-o", "-", input=data)
    assert result.exit_code == 0, result.stderr
    t = ipc.open_stream(pa.py_buffer(result.stdout_bytes)).read_all()
    assert t.column("c1").to_pylist() == [-1.0, None, 1.0]


def test_stdin_column_empty_in_the_first_block_must_be_declared(tmp_path):
    data = b"x,y\n" + b"1,\n" * 400_000 + b"2,3\n"
    result = run("fit", "-", "--input-format", "csv", input=data)
    assert result.exit_code == 1
    assert "column 'y' is empty in the first block of the stream" in result.stderr
    result = run("fit", "-", "--input-format", "csv", "--column-types", "y:float64", input=data)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == [400_001, 1]


def test_quoted_column_names(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('"weight, kg",price,name\n70,1.5,a\n80,2.5,b\n')
    s = normstat.fit(str(path), columns='"weight, kg",price')
    assert s.features == ["weight, kg", "price"] and s.mean.tolist() == [75.0, 2.0]
    result = run("fit", str(path), "--columns", '"weight, kg"')
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith('features: 1 ("weight, kg"); left out: price (not in')


# --- 3. metadata: Hugging Face ClassLabel, pandas index; --exclude ---------------------------


def _labelled(path: str, hf: dict) -> None:
    pandas = {"index_columns": ["__index_level_0__"], "columns": [], "pandas_version": "2.2.0"}
    t = pa.table(
        {
            "a": [1.0, 2.0, 4.0],
            "b": [5, 6, 9],
            "label": [0, 1, 0],
            "name": ["p", "q", "r"],
            "__index_level_0__": [10, 11, 12],
        }
    )
    meta = {b"pandas": json.dumps(pandas).encode(), b"huggingface": json.dumps(hf).encode()}
    pq.write_table(t.replace_schema_metadata(meta), path)


@pytest.mark.parametrize(
    "hf",
    [
        {"info": {"features": {"label": {"names": ["n", "p"], "_type": "ClassLabel"}}}},
        {"features": {"label": {"num_classes": 2, "_type": "ClassLabel"}}},  # older files
    ],
)
def test_class_labels_and_pandas_index_are_not_features(tmp_path, hf):
    path = str(tmp_path / "d.parquet")
    _labelled(path, hf)
    s = normstat.fit(path)
    assert s.features == ["a", "b"]
    assert s.source["left_out"] == [
        {"name": "label", "reason": "ClassLabel"},
        {"name": "name", "reason": "string"},
        {"name": "__index_level_0__", "reason": "pandas index"},
    ]
    named = normstat.fit(path, columns=["a", "label", "__index_level_0__"])
    np.testing.assert_allclose(named.mean, [7 / 3, 1 / 3, 11.0], rtol=1e-15)
    assert normstat.fit(path, exclude="b").features == ["a"]
    result = run("fit", path, "--exclude", "b")
    assert result.stderr.startswith(
        "features: 1 (a); left out: b (excluded), label (ClassLabel), name (string), "
        "__index_level_0__ (pandas index)\n"
    )
    with pytest.raises(DataError, match="no column 'nope' \\(--exclude\\)"):
        normstat.fit(path, exclude=["nope"])
    with pytest.raises(UsageError, match="--columns and --exclude both name"):
        normstat.fit(path, columns="a", exclude="a")


# --- 5. shards of other widths ---------------------------------------------------------------


def test_shards_of_other_widths_are_widened(tmp_path):
    parts = [
        (pa.array([1, 2, 3], pa.int32()), pa.array([1.5, 2.5, 3.25], pa.float32())),
        (pa.array([4, 5], pa.int64()), pa.array([4.5, 5.5], pa.float64())),
        (pa.array([6.5], pa.float64()), pa.array([6.5], pa.float64())),
    ]
    paths = []
    for i, (a, f) in enumerate(parts):
        paths.append(str(tmp_path / f"p{i}.parquet"))
        pq.write_table(pa.table({"a": a, "f": f}), paths[-1])
    result = run("fit", *paths)
    assert result.exit_code == 0, result.output
    assert "column 'a' is int32 / int64 / double across shards: read as double" in result.stderr
    assert "column 'f' is float / double across shards: read as double" in result.stderr
    doc = json.loads(result.stdout)
    for j in range(2):
        mean, var = ref(np.concatenate([np.asarray(p[j], np.float64) for p in parts]))
        assert doc["mean"][j] == pytest.approx(mean, rel=1e-15)
        assert doc["var"][j] == pytest.approx(var, rel=1e-13)


# --- 6. a dataset named twice ----------------------------------------------------------------


def test_dataset_named_twice_is_refused(tmp_path):
    path = str(tmp_path / "c.h5")
    with h5py.File(path, "w") as f:
        f["train/images"] = np.zeros((2, 3), np.uint8)
        f["test/images"] = np.ones((1, 3), np.uint8)
    result = run("fit", f"{path}:/train/images", "--dataset", "/test/images")
    assert result.exit_code == 2
    assert "/train/images and --dataset /test/images" in result.stderr
    assert run("fit", f"{path}:/train/images", "--dataset", "train/images").exit_code == 0


# --- 7. overlaps -----------------------------------------------------------------------------


def test_fit_refuses_the_same_file_twice(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(12.0).reshape(4, 3))
    os.link(path, tmp_path / "hard.npy")
    for other in ("./x.npy", "hard.npy"):
        with pytest.raises(UsageError, match="is the same file as"):
            normstat.fit([str(path), str(tmp_path / other)])
    twice = normstat.fit([str(path), str(path)], allow_overlap=True)
    assert twice.count.tolist() == [8, 8, 8]


def test_artifact_fingerprints_and_merge_overlaps(tmp_path):
    x = np.arange(12.0).reshape(4, 3)
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", x + 1)
    (tmp_path / "copy.npy").write_bytes((tmp_path / "a.npy").read_bytes())
    for name in ("a", "b", "copy"):
        normstat.save(normstat.fit(str(tmp_path / f"{name}.npy")), str(tmp_path / f"{name}.json"))
    a, b, c = (str(tmp_path / f"{n}.json") for n in ("a", "b", "copy"))
    fp = json.loads(Path(a).read_text())["source"]["fingerprints"]
    assert fp[0]["path"] == os.path.realpath(tmp_path / "a.npy") and fp[0]["size"] == 224
    assert set(fp[0]) == {"path", "dataset", "size", "mtime_ns", "sha256_edges"}
    result = run("merge", a, a)
    assert result.exit_code == 2 and "a.json is the same file as" in result.stderr
    result = run("merge", a, c)
    assert result.exit_code == 2 and "both hold statistics of" in result.stderr
    merged = normstat.merge([a, b])
    assert merged.count.tolist() == [8, 8, 8]
    assert len(merged.source["fingerprints"]) == 2
    with pytest.raises(UsageError):
        normstat.merge([merged, a])
    assert normstat.merge([a, a], allow_overlap=True).count.tolist() == [8, 8, 8]
    assert run("merge", a, c, "--allow-overlap").exit_code == 0


# --- 8. the library takes a string of names --------------------------------------------------


def test_library_columns_as_one_string(tmp_path):
    path = str(tmp_path / "d.parquet")
    pq.write_table(pa.table({"price": [1.0, 3.0], "qty": [2, 4], "p": [0.5, 0.5]}), path)
    assert normstat.fit(path, columns="price,qty").features == ["price", "qty"]
    assert normstat.fit(path, columns="price, qty").mean.tolist() == [2.0, 3.0]
    assert normstat.fit(path, exclude="qty").features == ["price", "p"]
    with pytest.raises(UsageError, match="expects column names"):
        normstat.fit(path, columns=[1, 2])  # type: ignore[list-item]
    with pytest.raises(UsageError, match="expects names separated by commas"):
        normstat.fit(path, columns="price,,qty")


def test_options_that_do_not_apply_are_refused(tmp_path):
    table_path = str(tmp_path / "d.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0]}), table_path)
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    result = run("fit", table_path, "--delimiter", ";")
    assert result.exit_code == 2 and "apply to CSV only, not parquet" in result.stderr
    result = run("fit", str(tmp_path / "x.npy"), "--exclude", "a")
    assert result.exit_code == 2 and "--exclude applies to tables" in result.stderr


def test_apply_and_drift_read_a_csv_as_fit_did(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1;2.5\n3;4.5\n")
    stats = str(tmp_path / "s.json")
    args = ["--no-header", "--delimiter", ";"]
    assert run("fit", str(path), *args, "-o", stats).exit_code == 0
    result = run("drift", stats, str(path), *args, "--json")
    assert result.exit_code == 0, result.output
    assert [f["mean_shift"] for f in json.loads(result.stdout)["features"]] == [0.0, 0.0]
    out = str(tmp_path / "o.parquet")
    result = run("apply", stats, str(path), str(path), *args, "-o", out)
    assert result.exit_code == 2 and "is the same file as" in result.stderr
    result = run("apply", stats, str(path), str(path), *args, "-o", out, "--allow-overlap")
    assert result.exit_code == 0 and pq.read_table(out).num_rows == 4
