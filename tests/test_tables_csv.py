"""CSV as people write it: a header, quoted fields, empty cells, a column of text."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import normstat
from normstat.cli import main
from normstat.errors import DataError

CSV = '''id,name,height,weight,note
1,"Smith, John",1.80,80.5,"said ""hi"""
2,Jane,,61.0,
3,"O'Brien",1.65,,"multi
line"
4,Ann,1.72,70.25,ok
5,"",1.90,95,NA
'''


@pytest.fixture
def people(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    return str(path)


def test_numeric_columns_are_features_text_is_not(people):
    s = normstat.fit(people)
    assert s.features == ["id", "height", "weight"]
    heights = np.array([1.80, 1.65, 1.72, 1.90])
    weights = np.array([80.5, 61.0, 70.25, 95.0])
    assert s.count.tolist() == [5, 4, 4] and s.nan_count.tolist() == [0, 1, 1]
    np.testing.assert_allclose(s.mean, [3.0, heights.mean(), weights.mean()], rtol=1e-15)
    np.testing.assert_allclose(s.var, [2.0, heights.var(), weights.var()], rtol=1e-13)
    np.testing.assert_allclose(s.min, [1.0, 1.65, 61.0])
    assert s.source["shape"] == [5, 3] and s.source["kind"] == "table"


def test_text_column_named_is_an_error(people):
    result = CliRunner().invoke(main, ["fit", people, "--columns", "height,name"])
    assert result.exit_code == 1
    assert "column 'name' is string, not numeric" in result.stderr


def test_empty_cell_under_nan_error_names_row(people):
    with pytest.raises(DataError) as err:
        normstat.fit(people, columns=["weight"], nan="error")
    assert err.value.row == 2 and err.value.feature == "weight"


def test_integer_column_that_turns_float_later(tmp_path, monkeypatch):
    # types are inferred from the first block (made small here); a float comes much later
    import normstat.sources.csv

    monkeypatch.setattr(normstat.sources.csv, "_BLOCK_BYTES", 1 << 16)
    n = 50_000
    lines = ["x,y"] + [f"{i},{i % 7}" for i in range(n)] + ["0.5,1.5"]
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")
    s = normstat.fit(str(path))
    xs = np.append(np.arange(n, dtype=np.float64), 0.5)
    assert s.count.tolist() == [n + 1, n + 1]
    np.testing.assert_allclose(s.mean[0], xs.mean(), rtol=1e-14)


def test_csv_apply_keeps_text_columns_and_quotes(people, tmp_path):
    stats = normstat.fit(people, columns=["height", "weight"])
    out = str(tmp_path / "out.csv")
    normstat.apply(stats, people, out)
    import pyarrow.csv as pacsv

    before, after = pacsv.read_csv(people), pacsv.read_csv(out)
    assert after.column_names == before.column_names
    for name in ("id", "name", "note"):
        assert after.column(name).equals(before.column(name)), name
    h = after.column("height").to_pylist()
    assert h[1] is None
    np.testing.assert_allclose(
        [v for v in h if v is not None],
        (np.array([1.80, 1.65, 1.72, 1.90]) - stats.mean[0]) / stats.std[0],
        rtol=1e-6,
    )


def test_progress_counts_rows_when_the_total_is_unknown(people):
    result = CliRunner().invoke(main, ["fit", people, "--progress", "-o", "-"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip().startswith("fit: 5 rows in ")


def test_apply_columns_must_repeat_the_artifact(people, tmp_path):
    stats = str(tmp_path / "s.json")
    normstat.save(normstat.fit(people, columns=["height", "weight"]), stats)
    out = tmp_path / "o.csv"
    result = CliRunner().invoke(
        main, ["apply", stats, people, "--columns", "weight", "-o", str(out)]
    )
    assert result.exit_code == 2
    assert "--columns: ['weight'] disagree with the features of the statistics" in result.stderr
    assert not out.exists()
