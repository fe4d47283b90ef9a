"""Issue 16, "never guess silently": each test is a reproduction that passed silently before.

Values are checked against independent references (numpy, scikit-learn, pandas).
"""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import normstat
from normstat.cli import main
from normstat.errors import NormstatWarning


def run(*args: object, code: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.stderr
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


# ------------------------------------------------------------------- 2. apply --inverse


@pytest.fixture
def zscored(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(5, 2, size=(50, 3))
    src = tmp_path / "x.h5"
    with h5py.File(src, "w") as f:
        f["data"] = x
    stats = tmp_path / "s.json"
    run("fit", src, "-o", stats)
    out = tmp_path / "z.h5"
    run("apply", stats, src, "-o", out, "--dtype", "float64")
    return x, stats, out


def test_inverse_uses_the_method_recorded_in_the_output(zscored, tmp_path):
    x, stats, out = zscored
    back = tmp_path / "back.h5"
    run("apply", stats, out, "-o", back, "--inverse", "--dtype", "float64")
    with h5py.File(back) as f:
        np.testing.assert_allclose(f["data"][:], x, rtol=1e-12)


def test_inverse_refuses_another_method_than_the_recorded_one(zscored, tmp_path):
    _, stats, out = zscored
    r = run("apply", stats, out, "-o", tmp_path / "b.h5", "--inverse", "--method", "minmax", code=2)
    assert "with method 'zscore'" in r.stderr and "'minmax'" in r.stderr
    assert not (tmp_path / "b.h5").exists()


# ------------------------------------------------------------------- 3. near-constant


def _big_offset(n):
    rng = np.random.default_rng(3)
    return (1e9 + 0.3 * rng.standard_normal(n)).reshape(-1, 1)


def test_near_constant_rule_follows_scikit_learn_and_says_so():
    sklearn = pytest.importorskip("sklearn.preprocessing")
    for n in (20_000, 2_000_000):
        x = _big_offset(n)
        stats = normstat.fit_arrays(x)
        ref = sklearn.StandardScaler().fit(x)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            z = normstat.transform(x[:5], stats, dtype=np.float64)
        np.testing.assert_allclose(z, ref.transform(x[:5]), rtol=1e-6, atol=1e-6)
        centred_only = ref.scale_[0] == 1.0
        assert centred_only == (n == 2_000_000)  # scikit-learn's rule grows with the rows
        said = [str(w.message) for w in seen if issubclass(w.category, NormstatWarning)]
        assert said == (
            [
                "feature [0] is near-constant: centred only "
                "(constant_tol / --constant-tol sets the rule)"
            ]
            if centred_only
            else []
        )
        # an explicit rule is the same at any row count: std 0.3 > 1e-12 * 1e9
        z = normstat.transform(x[:5], stats, dtype=np.float64, constant_tol=1e-12)
        np.testing.assert_allclose(z, (x[:5] - x.mean()) / x.std(), rtol=1e-6)


def test_constant_tol_on_the_command_line(tmp_path):
    x = _big_offset(2_000_000)
    np.save(tmp_path / "x.npy", x)
    run("fit", tmp_path / "x.npy", "-o", tmp_path / "s.json")
    r = run("apply", tmp_path / "s.json", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert "Warning: feature [0] is near-constant: centred only" in r.stderr
    r = run(
        "apply",
        tmp_path / "s.json",
        tmp_path / "x.npy",
        "-o",
        tmp_path / "y2.npy",
        "--constant-tol",
        "1e-12",
        "--dtype",
        "float64",
    )
    assert "near-constant" not in r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y2.npy").std(), 1.0, rtol=1e-6)
    assert "near-constant" in run("show", tmp_path / "s.json").stdout


# ------------------------------------------------------------------- 4. empty inputs


@pytest.fixture
def empty_column(tmp_path):
    x = np.column_stack([np.arange(5.0), np.full(5, np.nan)])
    np.save(tmp_path / "x.npy", x)
    return tmp_path


def test_fit_warns_about_features_without_values(empty_column):
    r = run("fit", empty_column / "x.npy", "-o", empty_column / "s.json")
    assert "Warning: 1 feature has no finite value (count 0), of 2: [1]" in r.stderr
    assert "Warning" not in run("fit", empty_column / "x.npy", "-q").stderr


def test_fit_warns_about_a_file_without_rows(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((0, 3)))
    r = run("fit", tmp_path / "z.npy", "-o", tmp_path / "s.json")
    assert "Warning: the data has no rows: no feature has statistics ([0], [1], [2])" in r.stderr


def test_export_and_apply_refuse_empty_features_unless_allowed(empty_column):
    d = empty_column
    run("fit", d / "x.npy", "-o", d / "s.json", "-q")
    r = run("export", d / "s.json", "--to", "torch", code=1)
    assert "1 feature has no statistics (count 0): [1]" in r.stderr
    r = run("apply", d / "s.json", d / "x.npy", "-o", d / "y.npy", code=1)
    assert "[1]" in r.stderr and not (d / "y.npy").exists()
    assert json.loads(run("export", d / "s.json", "--to", "torch", "--allow-empty").stdout) == {
        "mean": [2.0, 0.0],
        "std": [np.sqrt(2.0), 1.0],
    }
    run("apply", d / "s.json", d / "x.npy", "-o", d / "y.npy", "--allow-empty")
    with pytest.raises(normstat.DataError, match=r"\[1\]"):
        normstat.export(d / "s.json", "keras")


# ------------------------------------------------------------------- 5. export: one path


@pytest.fixture
def perpix(tmp_path):
    x = np.random.default_rng(5).random((10, 4, 4, 3))
    stats = normstat.fit_arrays(x, axis=(1, 2))
    normstat.save(stats, tmp_path / "perpix.json")
    chans = normstat.fit_arrays(x)
    normstat.save(chans, tmp_path / "chans.json")
    return tmp_path


@pytest.mark.parametrize(("name", "to"), [("perpix", "torch"), ("chans", "sklearn")])
def test_export_cli_refuses_what_the_library_refuses(perpix, name, to):
    path = perpix / f"{name}.json"
    with pytest.raises(normstat.UsageError) as lib:
        normstat.export(path, to)
    r = run("export", path, "--to", to, code=2)
    # the same error; the CLI names the option where the library names the parameter
    assert str(lib.value).startswith("to: ")
    assert r.stderr.strip() == f"Error: --{lib.value}"


def test_export_sklearn_has_feature_names_and_one_line_per_array(tmp_path):
    sklearn = pytest.importorskip("sklearn.preprocessing")
    csv = tmp_path / "t.csv"
    csv.write_text("price,qty\n1.5,10\n2.5,30\n4.0,20\n")
    run("fit", csv, "-o", tmp_path / "s.json", "-q")
    out = run("export", tmp_path / "s.json", "--to", "sklearn").stdout
    values = json.loads(out)
    ref = sklearn.StandardScaler().fit(np.array([[1.5, 10], [2.5, 30], [4.0, 20]]))
    assert values["feature_names_in_"] == ["price", "qty"]
    np.testing.assert_allclose(values["scale_"], ref.scale_, rtol=1e-12)
    assert len(out.strip().splitlines()) == 2 + len(values)  # braces + one line per key


# ------------------------------------------------------------------- 6. the Python API


def test_every_function_takes_a_path_or_pathlike(tmp_path):
    x = np.random.default_rng(6).normal(size=(20, 3))
    np.save(tmp_path / "x.npy", x)
    stats = normstat.fit(tmp_path / "x.npy")
    normstat.save(stats, tmp_path / "s.json")
    for path in (tmp_path / "s.json", str(tmp_path / "s.json")):
        loaded = normstat.load(path)
        np.testing.assert_allclose(
            normstat.transform(x, path), (x - x.mean(0)) / x.std(0), rtol=1e-6
        )
        normstat.apply(path, tmp_path / "x.npy", tmp_path / "y.npy", force=True)
    np.testing.assert_allclose(loaded.mean, x.mean(0), rtol=1e-12)
    assert normstat.merge([tmp_path / "s.json"]).count.tolist() == [20, 20, 20]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: normstat.fit(np.ones((3, 2))), "sources: expected a path or a sequence"),
        (
            lambda: normstat.fit_arrays(np.ones((3, 2)), axis="none"),
            "axis: expected an int, a sequence of ints or None, received 'none'",
        ),
        (lambda: normstat.fit_arrays(np.ones((3, 2)), ddof=-1), "ddof: expected an integer >= 0"),
        (lambda: normstat.fit_arrays(np.array(["a", "b"])), "batches: expected numbers"),
        (lambda: normstat.transform(np.ones((3, 2)), 42), "stats: expected normstat.Stats"),
        (lambda: normstat.load(42), "path: expected a str or os.PathLike"),
        (
            lambda: normstat.transform(
                np.ones((3, 2)), normstat.fit_arrays(np.ones((3, 2))), constant_tol=-1
            ),
            "constant_tol: expected a non-negative",
        ),
    ],
)
def test_library_errors_are_normstat_errors_naming_the_parameter(call, message):
    with pytest.raises(normstat.UsageError) as exc:
        call()
    assert message in str(exc.value)


def test_a_list_of_rows_is_one_array_as_in_scikit_learn():
    sklearn = pytest.importorskip("sklearn.preprocessing")
    rows = [[1, 10], [3, 30], [5, 50]]
    stats = normstat.fit_arrays(rows)
    ref = sklearn.StandardScaler().fit(rows)
    assert stats.count.tolist() == [3, 3]
    np.testing.assert_allclose(stats.mean, ref.mean_)
    np.testing.assert_allclose(stats.var, ref.var_)
    # a list of arrays stays a list of batches
    batched = normstat.fit_arrays([np.array(rows[:1]), np.array(rows[1:])])
    np.testing.assert_allclose(batched.mean, ref.mean_)


def test_arrow_tables_are_fitted_per_column():
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"price": [1.0, 2.0, None, 4.0], "qty": [10, 30, 20, 40], "tag": list("abcd")})
    with pytest.warns(NormstatWarning, match="non-numeric columns left out: tag"):
        stats = normstat.fit_arrays(table)
    assert stats.features == ["price", "qty"]
    assert stats.count.tolist() == [3, 4] and stats.nan_count.tolist() == [1, 0]
    np.testing.assert_allclose(stats.mean, [7 / 3, 25.0])


def test_dataframes_by_column_name_as_scikit_learn_feature_names_in():
    pd = pytest.importorskip("pandas")
    sklearn = pytest.importorskip("sklearn.preprocessing")
    df = pd.DataFrame({"price": [1.5, 2.5, 4.0, 3.0], "qty": [10, 30, 20, 40]})
    stats = normstat.fit_arrays(df)
    ref = sklearn.StandardScaler().fit(df)
    assert stats.features == list(ref.feature_names_in_)
    np.testing.assert_allclose(stats.mean, ref.mean_)
    swapped = df[["qty", "price"]]
    np.testing.assert_allclose(
        normstat.transform(swapped, stats, dtype=np.float64), ref.transform(df), rtol=1e-12
    )
    with pytest.raises(normstat.UsageError, match=r"x: columns \['qty'\] are not in the table"):
        normstat.transform(df[["price"]], stats)
    # pandas nullable integers: missing values are skipped, as NaN
    nullable = pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64")})
    assert normstat.fit_arrays(nullable).count.tolist() == [2]


def test_polars_dataframes():
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4, 5, None]})
    stats = normstat.fit_arrays(df)
    assert stats.features == ["a", "b"] and stats.count.tolist() == [3, 2]
    np.testing.assert_allclose(stats.mean, [2.0, 4.5])


def test_import_normstat_does_not_import_dataframe_libraries():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, normstat; normstat.fit_arrays(np.ones((3, 2)));"
        "print(sorted(m for m in ('pandas', 'polars', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------- 7. overflow on cast


def test_overflow_in_the_output_dtype_names_feature_and_row(tmp_path):
    x = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 1e6], [3.0, 3.0]])
    np.save(tmp_path / "x.npy", x)
    stats = normstat.fit_arrays(x[[0, 1, 3]] * [1, 1e-3])  # tiny std for feature 1
    normstat.save(stats, tmp_path / "s.json")
    r = run(
        "apply",
        tmp_path / "s.json",
        tmp_path / "x.npy",
        "-o",
        tmp_path / "y.npy",
        "--dtype",
        "float16",
        "--chunk-size",
        "1",
        code=1,
    )
    assert "feature [1], row 2:" in r.stderr and "does not fit float16" in r.stderr
    assert "RuntimeWarning" not in r.stderr and not (tmp_path / "y.npy").exists()
    run(
        "apply",
        tmp_path / "s.json",
        tmp_path / "x.npy",
        "-o",
        tmp_path / "y.npy",
        "--dtype",
        "float16",
        "--clip-to-dtype",
    )
    y = np.load(tmp_path / "y.npy")
    assert np.isfinite(y).all() and y[2, 1] == np.finfo(np.float16).max


def test_overflow_in_transform_on_a_dataframe_names_the_column():
    pd = pytest.importorskip("pandas")
    stats = normstat.fit_arrays(pd.DataFrame({"a": [0.0, 1.0], "b": [0.0, 1e-45]}))
    with pytest.raises(normstat.DataError, match="feature b, row 1"):
        normstat.transform(pd.DataFrame({"b": [0.0, 1.0], "a": [1.0, 1.0]}), stats)


# ------------------------------------------------------------------- 8. show


def _cells(table: str, feature: str) -> list[str]:
    header = table.splitlines()[0].split()
    row = next(line for line in table.splitlines() if line.startswith(feature + " "))
    return dict(zip(header, row.split(), strict=False))


def test_show_tells_max_from_mean_and_marks_constant_near_constant_and_empty(tmp_path):
    rng = np.random.default_rng(8)
    n = 2_000_000
    x = np.column_stack(
        [1e9 + 0.3 * rng.standard_normal(n), np.full(n, 7.0), np.full(n, np.nan), rng.random(n)]
    )
    with pytest.warns(NormstatWarning):
        stats = normstat.fit_arrays(x)
    normstat.save(stats, tmp_path / "s.json")
    table = run("show", tmp_path / "s.json").stdout
    first = _cells(table, "[0]")
    mean, mx, mn = (float(first[k].replace(",", "")) for k in ("mean", "max", "min"))
    assert mn < mean < mx  # distinguishable as printed (before: 1,000,000,000 vs 1.0000e+09)
    assert first["note"] == "near-constant"
    assert _cells(table, "[1]")["note"] == "constant"
    assert _cells(table, "[2]")["note"] == "empty"
    assert "note" not in _cells(table, "[3]")
    for col in ("mean", "min", "max"):  # one notation per column, decimal points aligned
        numbers = [_cells(table, f"[{i}]")[col] for i in (0, 1, 3)]
        assert len({"e" in c for c in numbers}) == 1, numbers
        # right-aligned cells with as many characters after the point: the points align
        assert len({len(c) - c.index(".") for c in numbers}) == 1, numbers


def test_show_overview_does_not_count_an_empty_feature_as_constant():
    from normstat.report import _overview

    stats = normstat.fit_arrays(np.column_stack([np.full(4, np.nan), np.arange(4.0)]))
    assert "0 constant, 0 near-constant, 1 empty" in _overview(stats)


# ------------------------------------------------------------------- 1. drift and diff


@pytest.fixture
def serving(tmp_path):
    """Training and serving tables: `gone` is all-null in serving, `holes` goes from 5% to 62%
    missing, `flag` is always 0 in training and always 1 in serving, `ok` barely moves."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    n = 1000

    def table(missing, gone, flag, shift):
        holes = rng.normal(size=n)
        holes[rng.permutation(n)[: int(missing * n)]] = np.nan
        cols = {
            "ok": rng.normal(shift, 1, n),
            "holes": holes,
            "gone": np.full(n, np.nan) if gone else rng.normal(size=n),
            "flag": np.full(n, flag),
        }
        return pa.table({k: pa.array(v, from_pandas=True) for k, v in cols.items()}), cols

    train, train_cols = table(0.05, False, 0.0, 0.0)
    serve, serve_cols = table(0.62, True, 1.0, 0.01)
    pq.write_table(train, tmp_path / "train.parquet")
    pq.write_table(serve, tmp_path / "serve.parquet")
    run("fit", tmp_path / "train.parquet", "-o", tmp_path / "train.json", "-q")
    run("fit", tmp_path / "serve.parquet", "-o", tmp_path / "serve.json", "-q")
    return tmp_path, train_cols, serve_cols


@pytest.mark.parametrize("command", ["drift", "diff"])
def test_drift_reports_missing_rates_and_constant_flips_and_fails_on_them(serving, command):
    d, train, serve = serving
    b = d / ("serve.parquet" if command == "drift" else "serve.json")
    quiet = ["-q"] if command == "drift" else []
    r = run(command, d / "train.json", b, "--threshold", "3", "--json", *quiet, code=1)
    doc = json.loads(r.stdout)
    by = {f["feature"]: f for f in doc["features"]}
    for name in ("ok", "holes", "gone", "flag"):  # numpy's isnan().mean() as the reference
        assert by[name]["missing_a"] == pytest.approx(np.isnan(train[name]).mean())
        assert by[name]["missing_b"] == pytest.approx(np.isnan(serve[name]).mean())
    assert by["gone"]["changes"] == ["became all-missing"]
    assert by["flag"]["changes"] == ["constant value changed"]
    assert by["flag"]["mean_shift"] == "inf"
    assert by["holes"]["missing_change"] == pytest.approx(0.57)
    assert [f["feature"] for f in doc["features"]][:3] == ["gone", "flag", "holes"]
    assert doc["exceeding"] == ["gone", "flag", "holes"]
    assert r.stderr == (
        "drift: 3 features failing: gone (became all-missing); flag (constant value changed); "
        "holes (missing rate changed by more than 5%)\n"
    )
    table = run(command, d / "train.json", b, *quiet).stdout  # no threshold: reported, exit 0
    assert "became all-missing" in table and "5.0% -> 62.0%" in table
    assert table.splitlines()[1].split()[:2] == ["gone", "-"]


def test_turned_constant_and_stopped_being_constant():
    rng = np.random.default_rng(4)
    a = np.column_stack([rng.normal(size=100), np.full(100, 2.0)])
    b = np.column_stack([np.full(100, 0.1), rng.normal(2.0, 1.0, 100)])
    d = normstat.diff(normstat.fit_arrays(a), normstat.fit_arrays(b))
    assert d.changes == [("turned constant",), ("stopped being constant",)]
    assert sorted(d.exceeding(1e9).tolist()) == [0, 1]


@pytest.mark.parametrize("suffix", ["parquet", "npy"])
def test_overflow_in_a_table_names_the_column_and_the_row(tmp_path, suffix):
    (tmp_path / "t.csv").write_text("a,b\n0,0\n1,0.000001\n2,0\n")
    (tmp_path / "u.csv").write_text("a,b\n0,0\n1,0\n2,1e6\n")
    run("fit", tmp_path / "t.csv", "-o", tmp_path / "t.json", "-q")
    out = tmp_path / f"u.{suffix}"
    r = run("apply", tmp_path / "t.json", tmp_path / "u.csv", "-o", out, "--dtype", "float16",
            code=1)  # fmt: skip
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
    assert "feature b, row 2: value 2.12132e+12 does not fit float16" in r.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: normstat.fit(p, columns=[1, 2]), "columns expects column names"),
        (lambda p: normstat.merge([]), "parts: nothing to merge"),
        (lambda p: normstat.apply(42, p, "out.npy"), "stats: expected normstat.Stats"),
        (
            lambda p: normstat.transform(np.ones((2, 2)), normstat.fit(p), method="std"),
            "method: expected one of zscore, minmax, center, robust, quantile, received 'std'",
        ),
        (
            lambda p: normstat.transform(np.ones((2, 2)), normstat.fit(p), dtype="int8"),
            "dtype: expected a floating type",
        ),
    ],
)
def test_more_library_errors_name_the_parameter(tmp_path, call, message):
    np.save(tmp_path / "x.npy", np.arange(6.0).reshape(3, 2))
    with pytest.raises(normstat.UsageError) as exc:
        call(tmp_path / "x.npy")
    assert message in str(exc.value)


def test_overflow_under_the_dask_engine_names_feature_and_row(tmp_path):
    pytest.importorskip("dask.distributed")
    x = np.zeros((40, 2))
    x[33, 1] = 1e6
    np.save(tmp_path / "x.npy", x)
    normstat.save(normstat.fit_arrays(np.array([[0.0, 0.0], [1.0, 0.001]])), tmp_path / "s.json")
    r = run("apply", tmp_path / "s.json", tmp_path / "x.npy", "-o", tmp_path / "y.npy",
            "--dtype", "float16", "--engine", "dask", "--workers", "1", "--chunk-size", "8",
            code=1)  # fmt: skip
    assert "feature [1], row 33:" in r.stderr and not (tmp_path / "y.npy").exists()
