"""Drift: the comparison against a numpy reference, and the CLI guarding a pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import normstat
from normstat.cli import main

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits.h5"

# Pixels (row, col) shifted in the copy, by how much. (0, 0) is constant 0 in the original and
# constant 1 in the copy: no std to measure in, so its shift is +inf ("constant value changed");
# (7, 7) is almost always 0 (std 1.86).
SHIFTS = {(2, 3): 4, (0, 0): 1, (5, 5): 5, (7, 7): 2}


def _reference_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    std = a64.std(axis=0)
    delta = b64.mean(axis=0) - a64.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):  # digits' constant pixels are exactly 0
        return np.where(std == 0, np.where(delta == 0, 0.0, np.sign(delta) * np.inf), delta / std)


@pytest.fixture
def shifted(tmp_path: Path, digits: np.ndarray) -> tuple[Path, np.ndarray]:
    path = tmp_path / "shifted.h5"
    shutil.copy(DIGITS, path)
    x = digits.copy()
    for (i, j), d in SHIFTS.items():
        x[:, i, j] += d
    with h5py.File(path, "r+") as f:
        f["images"][...] = x
    return path, x


def test_drift_flags_exactly_the_shifted_pixels(tmp_path, digits, shifted):
    path, x = shifted
    runner = CliRunner()
    stats = tmp_path / "train.json"
    fit = runner.invoke(
        main, ["fit", f"{DIGITS}:/images", "--axis", "1", "--axis", "2", "-o", str(stats), "-q"]
    )
    assert fit.exit_code == 0, fit.output
    res = runner.invoke(
        main, ["drift", str(stats), f"{path}:/images", "--threshold", "0.5", "--json", "-q"]
    )
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    assert set(doc["exceeding"]) == {f"[{i}, {j}]" for i, j in SHIFTS}
    assert "drift: 4 features failing: [0, 0] (constant value changed); [7, 7]" in res.stderr

    ref = _reference_shift(digits, x)
    got = {r["feature"]: r["mean_shift"] for r in doc["features"]}
    for (i, j), value in np.ndenumerate(ref):
        want = value if np.isfinite(value) else ("inf" if value > 0 else "-inf")
        assert got[f"[{i}, {j}]"] == pytest.approx(want, abs=1e-12)
    # Worst first: the first four records are the shifted pixels, by |shift| descending.
    top = [float(r["mean_shift"]) for r in doc["features"][:4]]
    assert top == sorted(top, key=abs, reverse=True)
    assert sorted(np.abs(ref).ravel())[-4:] == pytest.approx(sorted(map(abs, top)))


def test_drift_below_threshold_exits_zero_but_a_changed_constant_fails_any(tmp_path, shifted):
    path, _ = shifted
    stats = tmp_path / "train.json"
    normstat.save(normstat.fit(f"{DIGITS}:/images", axis=(1, 2)), str(stats))
    res = CliRunner().invoke(main, ["drift", str(stats), f"{DIGITS}:/images", "--threshold", "0"])
    assert res.exit_code == 0, res.output
    assert "64 features compared" in res.stdout
    assert "0 failing --threshold 0" in res.stdout
    res = CliRunner().invoke(main, ["drift", str(stats), f"{path}:/images", "--threshold", "100"])
    assert res.exit_code == 1
    assert res.stderr == "drift: 1 feature failing: [0, 0] (constant value changed)\n"


def test_compare_matches_numpy_on_random_data():
    rng = np.random.default_rng(7)
    a = rng.normal([0.0, 5.0, 100.0, 3.0], [1.0, 2.0, 10.0, 0.0], size=(500, 4))
    b = rng.normal([0.5, 5.0, 90.0, 3.0], [2.0, 1.0, 10.0, 0.5], size=(300, 4))
    d = normstat.diff(normstat.fit_arrays(a), normstat.fit_arrays(b))
    std_a, std_b = a.std(axis=0), b.std(axis=0)
    np.testing.assert_allclose(
        d.mean_shift[:3], (b.mean(0) - a.mean(0))[:3] / std_a[:3], rtol=1e-12
    )
    # Feature 3 is constant in A and moved in B: no std to measure in, both infinite.
    assert d.mean_shift[3] == np.sign(b[:, 3].mean() - 3.0) * np.inf
    assert d.std_ratio[3] == np.inf
    assert d.changes[3] == ("stopped being constant",)
    np.testing.assert_allclose(d.std_ratio[:3], std_b[:3] / std_a[:3], rtol=1e-12)
    np.testing.assert_array_equal(d.max_change, b.max(0) - a.max(0))
    np.testing.assert_array_equal(d.min_change, b.min(0) - a.min(0))
    expected = np.argsort(-np.abs(d.mean_shift), kind="stable")
    np.testing.assert_array_equal(d.order, expected)
    assert d.records()[0]["feature"] == d.names[int(expected[0])] == "[3]"
    assert [r["std_ratio"] for r in d.records() if r["feature"] == "[3]"] == ["inf"]


def test_constant_in_both_has_ratio_one():
    a = np.ones((10, 2)) * [1.0, 2.0]
    d = normstat.diff(normstat.fit_arrays(a), normstat.fit_arrays(a + [0.0, 0.5]))
    np.testing.assert_array_equal(d.std_ratio, [1.0, 1.0])
    np.testing.assert_array_equal(d.mean_shift, [0.0, np.inf])
    assert d.changes == [(), ("constant value changed",)]


def test_diff_refuses_different_features(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    normstat.save(normstat.fit_arrays(np.zeros((4, 3))), str(a))
    normstat.save(normstat.fit_arrays(np.zeros((4, 2))), str(b))
    res = CliRunner().invoke(main, ["diff", str(a), str(b)])
    assert res.exit_code == 1
    assert res.stderr.strip() == f"Error: {b}: feature shape [2] disagrees with [3] of {a}"


def test_core_drift_is_pure():
    """core/ is numpy and the standard library: no I/O, no other normstat layer."""
    import ast

    tree = ast.parse((Path(normstat.__file__).parent / "core" / "drift.py").read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    allowed = ("__future__", "dataclasses", "numpy", "normstat.core.", "normstat.errors")
    assert imported and all(m.startswith(allowed) for m in imported), imported
