"""The show table: readable numbers, aligned columns, long feature sets summarised."""

from __future__ import annotations

import numpy as np
import pytest

import normstat
from normstat.report import _num, table


@pytest.mark.parametrize(
    ("v", "text"),
    [
        (0.0, "0"),
        (16.0, "16"),
        (0.30384000001, "0.30384"),
        (1234567.891, "1,234,568"),
        (12.5, "12.5"),
        (1.2345e-5, "1.2345e-05"),
        (3.1e12, "3.1000e+12"),
        (float("nan"), "-"),
        (float("inf"), "inf"),
    ],
)
def test_number_format(v, text):
    assert _num(v) == text


def test_per_pixel_images_are_summarised():
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = 7  # one constant feature
    stats = normstat.fit_arrays(x, axis=(1, 2, 3))
    lines = table(stats).splitlines()
    assert lines[0].split() == [
        "feature", "count", "nan_count", "mean", "std", "min", "max", "note"
    ]  # fmt: skip
    assert lines[1].split()[:3] == ["[0,", "0,", "0]"]
    assert lines[1].split()[3:] == ["64", "0", "7.00", "0.000", "7", "7", "constant"]
    assert lines[16] == "..."
    assert lines[-1] == "3052 features not shown (use --all to list every one)"
    means = x.reshape(64, -1).astype(np.float64).mean(axis=0)
    assert f"mean {_num(means.min())} .. {_num(means.max())}" in lines[-2]
    assert "1 constant, 0 near-constant, 0 empty" in lines[-2]
    assert len(table(stats, None).splitlines()) == 3072 + 2


def test_decimal_points_line_up():
    # Three features whose means are 0.5, 12.25 and 100: the mean column is the 4th.
    x = np.array([[0.0, 12.0, 100.0], [1.0, 12.5, 100.0]])
    lines = table(normstat.fit_arrays(x)).splitlines()[1:4]
    mean_end = len(lines[0].split("  ")[0])  # after the feature name
    cells = [ln[mean_end:].split()[2] for ln in lines]
    assert cells == ["0.50", "12.25", "100.00"]  # one number of decimals per column
    dots = [
        ln.index(c) + (c.index(".") if "." in c else len(c))
        for ln, c in zip(lines, cells, strict=True)
    ]
    assert len(set(dots)) == 1, lines
