"""The fast counting kernels of :mod:`normstat.core.histogram` against independent references:
the float binning against the plain key-and-sort summary (the same canonical buckets, counts
and exact ends, bit for bit) and against ``numpy.unique`` of the coarsened keys; the byte-pair
and bincount counts against ``numpy.unique`` of each column, and the moments derived from them
against the moments kernel and numpy's float64 two-pass."""

from __future__ import annotations

import numpy as np
import pytest

from normstat.core.blocked import finite_moments
from normstat.core.histogram import _binned_sketch, _sorted_sketch, float_sketch, integer_summary
from normstat.core.moments import chunk_moments
from normstat.core.quantiles import COARSE, FIELDS, Sketch, coarsen, key_values, ordered_keys


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.int64) if a.dtype.kind == "f" else a


def _assert_same(a: Sketch, b: Sketch) -> None:
    for name in FIELDS:
        assert np.array_equal(_bits(getattr(a, name)), _bits(getattr(b, name))), name


def _floats() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    normal = rng.normal(0, 1, (6000, 3))
    return {
        "normal, shifted": rng.normal(5, 2, (10_000, 8)),
        "relu zeros": np.maximum(normal, 0),
        "negative only": -rng.lognormal(0, 3, (9999, 1)),
        "tiny values below the window": np.concatenate([normal, normal * 1e-30]),
        "negative zeros": np.where(rng.random((8000, 4)) < 0.3, -0.0, rng.normal(0, 1, (8000, 4))),
        "bucket edges (powers of two)": rng.integers(-8, 8, (8000, 3)) * 0.5,
        "float32": rng.normal(0, 1, (9000, 7)).astype(np.float32),
        "int32": rng.integers(-(10**6), 10**6, (9000, 2)).astype(np.int32),
        "int64": rng.integers(-(10**12), 10**12, (9000, 2)),
        "subnormal": normal[:, :2] * 1e-310,
        "near the float64 limit": rng.normal(0, 1e300, (5000, 2)),
        "constant": np.full((5000, 2), 3.0),
        "strided": rng.normal(0, 1, (10_000, 6))[:, ::2],
        "rows not a multiple of the wide view": rng.normal(0, 1, (4097, 3)),
    }


FLOATS = _floats()


@pytest.mark.parametrize("name", list(FLOATS))
def test_float_binning_equals_the_sorted_summary(name):
    x = FLOATS[name]
    m = finite_moments(x) or chunk_moments(x)
    binned = float_sketch(x, m.min, m.max)
    _assert_same(binned, _sorted_sketch(x))
    direct = _binned_sketch(x, m.min, m.max)
    # the binning itself, not a fallback; -0.0 in float64 data is left to the sort
    assert (direct is None) == (name == "negative zeros")
    # and an independent count: numpy.unique of each column's coarsened keys
    for j in range(x.shape[1]):
        u, c = np.unique(
            coarsen(ordered_keys(x[:, j].astype(np.float64)), COARSE), return_counts=True
        )
        lo, hi = binned.offsets[j], binned.offsets[j + 1]
        assert np.array_equal(binned.keys[lo:hi], u) and np.array_equal(binned.counts[lo:hi], c)


def test_float_binning_falls_back_when_bounds_are_wrong():
    x = np.random.default_rng(1).normal(0, 1, (5000, 2))
    wrong = float_sketch(x, np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    _assert_same(wrong, _sorted_sketch(x))


@pytest.mark.parametrize("nan", [np.nan, -np.nan])
def test_nan_chunks_take_the_sort(nan):
    x = np.random.default_rng(2).normal(0, 1, (5000, 2))
    x[::7, 0] = nan
    m = chunk_moments(x)
    assert _binned_sketch(x, m.min, m.max) is None  # the NaN's bits are beyond the bounds
    s = float_sketch(x, m.min, m.max)
    assert s.total.tolist() == [5000 - len(range(0, 5000, 7)), 5000]
    _assert_same(s, _sorted_sketch(x))


INTS = [np.uint8, np.int8, np.uint16, np.int16, np.bool_]


@pytest.mark.parametrize("dtype", INTS)
@pytest.mark.parametrize("f", [1, 2, 3, 4, 5, 6, 8, 9])
@pytest.mark.parametrize("n", [1, 7, 4096])
def test_value_counts_and_their_moments(dtype, f, n):
    rng = np.random.default_rng(f * 1000 + n)
    if dtype is np.bool_:
        x = rng.random((n, f)) < 0.3
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, int(info.max) + 1, (n, f)).astype(dtype)
    m = integer_summary(x)
    s = m.sketch
    assert s is not None and (s.drop == 0).all()
    for j in range(f):
        u, c = np.unique(x[:, j].astype(np.float64), return_counts=True)
        lo, hi = s.offsets[j], s.offsets[j + 1]
        assert np.array_equal(key_values(s.keys[lo:hi]), u)
        assert np.array_equal(s.counts[lo:hi], c)
    # the same bits as the moments kernel, and numpy's float64 statistics
    ref = finite_moments(x)
    for a, b in zip(m.arrays(), ref.arrays(), strict=True):
        assert np.array_equal(a, b)
    xf = x.astype(np.float64)
    assert np.allclose(m.mean, xf.mean(axis=0), rtol=1e-15, atol=0)
    assert np.allclose(m.m2, ((xf - xf.mean(axis=0)) ** 2).sum(axis=0), rtol=1e-12, atol=1e-9)


def test_uint8_images_counted_by_pairs_are_exact():
    """(N, 32, 32, 3) uint8 per channel: an odd number of bytes, three phases of pairs."""
    x = np.random.default_rng(3).integers(0, 256, (333, 32, 32, 3), np.uint8)
    rows = x.reshape(-1, 3)[1:]  # an odd byte count, starting off the first channel's phase
    s = integer_summary(np.ascontiguousarray(rows)).sketch
    for j in range(3):
        assert np.array_equal(
            s.counts[s.offsets[j] : s.offsets[j + 1]],
            np.bincount(rows[:, j], minlength=256)[np.unique(rows[:, j])],
        )


def test_rescaled_exact_summary_is_the_summary_of_the_scaled_values():
    x = np.random.default_rng(4).integers(0, 256, (5000, 3), np.uint8)
    for scale in (1 / 255, -0.5, 3.0):
        s = integer_summary(x, scale).sketch
        for j in range(3):
            u, c = np.unique(x[:, j].astype(np.float64) * scale, return_counts=True)
            lo, hi = s.offsets[j], s.offsets[j + 1]
            assert np.array_equal(key_values(s.keys[lo:hi]), u + 0.0)
            assert np.array_equal(s.counts[lo:hi], c)


def test_integer_values_in_float_columns_are_counted_exactly():
    """Nullable int16 columns arrive as float64 with NaN: their values are still integers of
    16 bits, counted exactly (drop 0) in every chunk; a feature with one non-integer value is
    bucketed, whatever the chunking (being an integer is a property of each value)."""
    from normstat.api.fitting import fit_arrays

    rng = np.random.default_rng(9)
    x = rng.integers(-(2**15), 2**16, (20_000, 4)).astype(np.float64)
    x[rng.random(x.shape) < 0.1] = np.nan
    x[12_345, 3] = 0.5  # one value that is not an integer
    x[:, 2] = rng.integers(-100, 100, 20_000)  # no NaN: int-valued floats
    levels = [0.0, 0.01, 0.5, 0.99, 1.0]
    whole = fit_arrays(x, quantiles=levels)
    assert whole.sketch.drop.tolist() == [0, 0, 0, COARSE]
    for j in range(3):
        c = x[:, j][~np.isnan(x[:, j])]
        assert np.array_equal(whole.quantiles[:, j], np.quantile(c, levels))
    for rows in (1000, 4096, 7777):
        parts = fit_arrays([x[i : i + rows] for i in range(0, x.shape[0], rows)], quantiles=levels)
        _assert_same(parts.sketch, whole.sketch)
        assert np.array_equal(parts.quantiles, whole.quantiles, equal_nan=True)


def test_nullable_int16_parquet_column_is_exact(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import normstat

    rng = np.random.default_rng(10)
    a = rng.integers(-300, 300, 50_000).astype(np.int16)
    missing = rng.random(a.size) < 0.1
    b = rng.normal(0, 1, a.size)
    pq.write_table(pa.table({"a": pa.array(a, mask=missing), "b": b}), tmp_path / "t.parquet",
                   row_group_size=7000)  # fmt: skip
    levels = [0.01, 0.5, 0.99]
    for chunk in (5000, None):
        s = normstat.fit(str(tmp_path / "t.parquet"), quantiles=levels, chunk_size=chunk)
        assert np.array_equal(s.quantiles[:, 0], np.quantile(a[~missing].astype(float), levels))
        got, want = s.quantiles[:, 1], np.quantile(b, levels)
        assert np.all(np.abs(got - want) <= 2.0**-7 * np.abs(want))
