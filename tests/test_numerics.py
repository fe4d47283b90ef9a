"""Numerics: the tutorial's worked example, a witness that the naive formula fails where ours
holds, the near-constant rule, and the digits example against scikit-learn."""

from __future__ import annotations

import math
from fractions import Fraction

import h5py
import numpy as np
import pytest

import normstat
from normstat.core.moments import chunk_moments, merge_all
from tests.conftest import DIGITS


def test_worked_example_column_1_2_3():
    stats = normstat.fit_arrays(np.array([[1.0], [2.0], [3.0]]))
    assert stats.mean[0] == 2.0
    assert stats.std[0] == pytest.approx(0.8165, abs=5e-5)
    assert stats.std[0] == pytest.approx(math.sqrt(2 / 3), rel=1e-15)
    z = normstat.transform(np.array([[1.0], [2.0], [3.0]]), stats, dtype=np.float64)
    np.testing.assert_allclose(z[:, 0], [-1.2247, 0.0, 1.2247], atol=5e-5)
    new = normstat.transform(np.array([[-1.0]]), stats, dtype=np.float64)
    assert new[0, 0] == pytest.approx(-3.6742, abs=5e-5)
    assert new[0, 0] == pytest.approx((-1 - 2) / math.sqrt(2 / 3), rel=1e-15)


def _large_offset_data() -> tuple[np.ndarray, float]:
    """float64 data with mean 1e9 and std 1, and its exact population variance (rationals)."""
    rng = np.random.default_rng(42)
    x = 1e9 + rng.standard_normal(20_000)
    exact_mean = sum(Fraction(v) for v in x) / len(x)
    exact_var = sum((Fraction(v) - exact_mean) ** 2 for v in x) / len(x)
    return x, float(exact_var)


def test_witness_naive_sum_of_squares_fails_on_this_data():
    x, exact = _large_offset_data()
    naive = (np.sum(x * x) - np.sum(x) ** 2 / len(x)) / len(x)
    assert abs(naive - exact) / exact > 1e-2  # the naive formula is useless here


def test_large_offset_variance_is_accurate_in_any_chunking():
    x, exact = _large_offset_data()
    for step in (x.size, 997, 64, 1):
        parts = (chunk_moments(x[i : i + step, None]) for i in range(0, x.size, step))
        m = merge_all(parts, 1)
        assert abs(m.m2[0] / m.count[0] - exact) / exact < 1e-12, step
    stats = normstat.fit_arrays(x[:, None])
    assert abs(stats.var[0] - exact) / exact < 1e-12


def test_near_constant_column_is_only_centred():
    x = np.full((1000, 1), 0.1)
    parts = np.array_split(x, 7)
    stats = normstat.fit_arrays(parts)
    m2 = stats.m2[0]
    assert stats.constant[0]
    # an exact std == 0 test would divide by sqrt(m2) when rounding leaves m2 > 0; either way the
    # output must be exactly the centred value, 0, never 5.73 or inf.
    z = normstat.transform(x, stats, dtype=np.float64)
    np.testing.assert_allclose(z, 0.0, atol=1e-15)
    assert np.isfinite(z).all()
    assert m2 >= 0
    assert normstat.export(stats, "sklearn")["scale_"] == [1.0]
    assert normstat.export(stats, "torch")["std"] == [1.0]


def test_near_constant_rule_would_bite_with_naive_zero_test():
    # Build the m2 the issue describes (about 2e-32) directly: the rule must still call it
    # constant, while a plain std == 0 test would not.
    from normstat.core.moments import Moments
    from normstat.core.stats import Stats

    m = Moments(
        np.array([1000]),
        np.array([0]),
        np.array([0.1]),
        np.array([2e-32]),
        np.array([0.1]),
        np.array([0.1]),
    )
    stats = Stats(m, (1,))
    assert stats.std[0] > 0  # the naive test says "not constant" ...
    assert stats.constant[0]  # ... the rule says constant
    assert normstat.transform(np.array([[0.1]]), stats, dtype=np.float64)[0, 0] == 0.0
    assert not Stats(
        Moments(
            np.array([1000]),
            np.array([0]),
            np.array([0.1]),
            np.array([1e-6]),
            np.array([0.09]),
            np.array([0.11]),
        ),
        (1,),
    ).constant[0]


def test_integer_data_is_exact():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(5000, 3), dtype=np.uint8)
    stats = normstat.fit_arrays(np.array_split(x, 13))
    for j in range(3):
        col = [int(v) for v in x[:, j]]
        mean = Fraction(sum(col), len(col))
        var = sum((Fraction(v) - mean) ** 2 for v in col) / len(col)
        assert stats.mean[j] == pytest.approx(float(mean), rel=1e-15)
        assert stats.var[j] == pytest.approx(float(var), rel=1e-13)


# -------------------------------------------------------------------------------------------
# The shipped example dataset against scikit-learn


@pytest.fixture(scope="module")
def digits():
    with h5py.File(DIGITS, "r") as f:
        return f["images"][...]


def test_digits_fit_equals_standard_scaler(digits):
    sklearn = pytest.importorskip("sklearn.preprocessing")
    X = digits.reshape(len(digits), -1).astype(np.float64)
    scaler = sklearn.StandardScaler().fit(X)
    stats = normstat.fit(f"{DIGITS}:/images", axis=(1, 2), chunk_size=100)
    assert stats.feature_shape == (8, 8)
    np.testing.assert_allclose(stats.mean.ravel(), scaler.mean_, rtol=1e-10, atol=0)
    np.testing.assert_allclose(stats.var.ravel(), scaler.var_, rtol=1e-10, atol=0)
    np.testing.assert_allclose(stats.scale.ravel(), scaler.scale_, rtol=1e-10, atol=0)
    # partial_fit over the same chunks agrees too
    partial = sklearn.StandardScaler()
    for i in range(0, len(X), 100):
        partial.partial_fit(X[i : i + 100])
    np.testing.assert_allclose(stats.var.ravel(), partial.var_, rtol=1e-10, atol=1e-15)


def test_digits_apply_equals_standard_scaler_transform(digits, tmp_path):
    sklearn = pytest.importorskip("sklearn.preprocessing")
    X = digits.reshape(len(digits), -1).astype(np.float64)
    want = sklearn.StandardScaler().fit(X).transform(X)
    stats = normstat.fit(f"{DIGITS}:/images", axis=(1, 2))
    out = tmp_path / "std.h5"
    normstat.apply(stats, f"{DIGITS}:/images", str(out))
    with h5py.File(out, "r") as f:
        got = f["images"][...]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.reshape(len(got), -1), want, rtol=1e-5, atol=1e-5)
    zero_var = stats.constant.ravel()
    assert zero_var.any()  # the digits have blank border pixels: only centred
    np.testing.assert_array_equal(got.reshape(len(got), -1)[:, zero_var], 0.0)
