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


class _Recorder:
    """A progress hook that records what the fit told it, and which shards were open then."""

    def __init__(self, changes: bool = True) -> None:
        self.events: list[tuple] = []
        if changes:
            self.total_changed = lambda total, exact: self.events.append(("total", total, exact))

    def start(self, total, row_bytes=0):
        from normstat.sources import shards

        self.events.append(("start", total, len(_OPENED)))
        self.shards = shards

    def advance(self, n):
        self.events.append(("advance", n))


_OPENED: list[str] = []


@pytest.fixture
def uneven_shards(tmp_path, monkeypatch):
    """Shards of 1,000, 3,000 and 10 rows: the first shard's count is no guide to the others."""
    from normstat.sources import shards

    rng = np.random.default_rng(4)
    sizes = [1000, 3000, 10, 3000, 1000, 10, 3000]
    for i, n in enumerate(sizes):
        np.save(tmp_path / f"p{i}.npy", rng.normal(size=(n, 3)).astype(np.float32))
    opened = shards.LazyShard.open_now
    _OPENED.clear()

    def recording(self):
        if self._opener is not None:  # (two threads may both get here for one shard)
            _OPENED.append(self.path)
        return opened(self)

    monkeypatch.setattr(shards.LazyShard, "open_now", recording)
    return str(tmp_path / "p*.npy"), sizes


@pytest.mark.parametrize("changes", [True, False])
def test_progress_does_not_open_every_shard_before_the_pass(uneven_shards, changes):
    """With a progress bar, shards are still opened ahead of the pass as it goes (not all
    before it): the total starts as the first shard's rows times the shards, is corrected as
    shards open, and is exact at the end; a hook without ``total_changed`` still gets every
    row."""
    import normstat

    pattern, sizes = uneven_shards
    hook = _Recorder(changes)
    stats = normstat.fit(pattern, progress=hook, chunk_size=500)
    assert stats.count.ravel()[0] == sum(sizes)
    start = next(e for e in hook.events if e[0] == "start")
    assert start == ("start", sizes[0] * len(sizes), 0)  # an estimate; no lazy shard opened
    assert sum(e[1] for e in hook.events if e[0] == "advance") == sum(sizes)
    assert len(set(_OPENED)) == len(sizes) - 1  # the others, opened during the pass
    totals = [e[1:] for e in hook.events if e[0] == "total"]
    if changes:
        assert totals[0] == (sizes[0] * len(sizes), False)
        assert totals[-1] == (sum(sizes), True)
        assert all(not exact for _, exact in totals[:-1])
    else:
        assert totals == []


def test_progress_bar_marks_an_estimated_total(uneven_shards, tmp_path):
    """On the bar, an estimated total reads ``~``; the summary gives the exact rows."""
    from normstat.cli import _ClickProgress

    bar = _ClickProgress("fit")
    bar.start(7000, 12)
    bar.total_changed(8000, False)
    assert "/~8.0k rows" in bar._info(None)
    bar.total_changed(11020, True)
    assert "/11.0k rows" in bar._info(None) and "~" not in bar._info(None)
    bar.close()
    pattern, sizes = uneven_shards
    res = CliRunner().invoke(main, ["fit", pattern, "--chunk-size", "500", "--progress"])
    assert res.exit_code == 0, res.output
    assert res.stderr.splitlines()[1].startswith(f"fit: {_count(sum(sizes))} rows in ")
