"""The progress bar: off when stderr is not a terminal, forced by --progress, silenced by -q."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from normstat.cli import _count, main


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(3).normal(size=(2500, 4)))
    return str(path)


def test_silent_when_stderr_is_not_a_terminal(data):
    res = CliRunner().invoke(main, ["fit", data, "--chunk-size", "1000"])
    assert res.exit_code == 0
    assert "rows" not in res.stderr


def test_forced_progress_reports_rows_and_rate(data):
    res = CliRunner().invoke(main, ["fit", data, "--chunk-size", "1000", "--progress"])
    assert res.exit_code == 0, res.output
    lines = res.stderr.splitlines()
    assert lines[0] == "fit"  # click prints the label once when not on a terminal
    assert lines[1].startswith("fit: 2.5k rows in ")
    # 2,500 rows of 4 float64: 80 kB read; the rate in rows and bytes per second
    assert re.search(r" rows/s, [0-9.]+[kMG]?B/s\)$", lines[1]), lines[1]


def test_quiet_wins_over_progress(data, tmp_path):
    out = tmp_path / "s.json"
    res = CliRunner().invoke(main, ["fit", data, "--progress", "-q", "-o", str(out)])
    assert res.exit_code == 0
    assert res.stderr == ""


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0"), (999, "999"), (1234, "1.2k"), (5.6e6, "5.6M"), (2e9, "2.0G")]
)
def test_count_format(n, text):
    assert _count(n) == text


def test_no_summary_after_a_failure(tmp_path):
    x = np.zeros((2500, 2))
    x[1500, 1] = np.inf
    path = tmp_path / "bad.npy"
    np.save(path, x)
    res = CliRunner().invoke(main, ["fit", str(path), "--chunk-size", "1000", "--progress"])
    assert res.exit_code == 1
    assert "rows in" not in res.stderr
    assert res.stderr.splitlines()[-1].startswith("Error: ")
