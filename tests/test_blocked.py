"""The cache-blocked kernels against independent references: exact rational arithmetic
(``fractions.Fraction``) for integers and for float data with a huge offset, numpy float64 two-pass
elsewhere; the NaN / inf hand-off to the locating path; and split-invariance (hypothesis)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from normstat.core import blocked
from normstat.core.blocked import finite_moments, wide_parts
from normstat.core.layout import AxisLayout
from normstat.core.moments import Moments, merge_all
from normstat.engine.task import chunk_task
from normstat.errors import DataError
from normstat.sources.base import Chunk

SMALL_INTS = [np.uint8, np.int8, np.uint16, np.int16]


def exact_mean_m2(col: np.ndarray) -> tuple[float, float]:
    """Correctly rounded mean and m2 of one column, in rational arithmetic."""
    vals = [Fraction(v) for v in col.tolist()]
    n = len(vals)
    mean = sum(vals) / n
    return float(mean), float(sum((v - mean) ** 2 for v in vals))


def two_pass(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    d = x - x.mean(axis=0)
    return x.mean(axis=0), (d * d).sum(axis=0) - d.sum(axis=0) ** 2 / x.shape[0]


@pytest.mark.parametrize("dtype", [*SMALL_INTS, np.bool_])
def test_small_integers_are_exact(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(np.uint8 if dtype is np.bool_ else dtype)
    x = rng.integers(int(info.min), int(info.max), (3001, 5), endpoint=True).astype(dtype)
    m = finite_moments(x)
    for j in range(x.shape[1]):
        mean, m2 = exact_mean_m2(x[:, j].astype(np.int64))
        assert m.mean[j] == mean
        assert m.m2[j] == m2
    np.testing.assert_array_equal(m.min, x.min(axis=0).astype(np.float64))
    np.testing.assert_array_equal(m.max, x.max(axis=0).astype(np.float64))
    np.testing.assert_array_equal(m.count, 3001)


def test_uint8_images_per_channel_exact_where_two_pass_is_not():
    """Witness: on a 32 MB-like uint8 chunk the plain float64 two-pass is ~1e-11 off; exact here."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (400_000, 3), dtype=np.uint8)
    m = finite_moments(x)
    _, naive = two_pass(x)
    for j in range(3):
        c = x[:, j].astype(np.int64)
        n, s, q = c.size, int(c.sum()), int((c * c).sum())
        exact = Fraction(n * q - s * s, n)
        assert abs(m.m2[j] - float(exact)) <= np.spacing(float(exact))
        assert abs(m.mean[j] - s / n) <= np.spacing(s / n)
    assert np.max(np.abs(naive - m.m2) / m.m2) > 0  # the reference itself is not exact


def test_float32_with_large_offset_matches_rational_reference():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((20_000, 4)) + [1e4, 1e5, 1e6, 3e6]).astype(np.float32)
    m = finite_moments(x)
    for j in range(4):
        mean, m2 = exact_mean_m2(x[:, j])
        assert abs(m.mean[j] - mean) <= 1e-15 * abs(mean)
        assert abs(m.m2[j] - m2) <= 1e-13 * m2


def test_drifting_chunk_takes_the_second_pass_and_stays_accurate():
    """The first sub-block is far from the chunk mean: the shift is redone at the mean."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50_000, 2)) + 1e7
    x[: blocked.SUB_BLOCK_ELEMENTS // 2] += 1e3  # the whole first sub-block is 1000 std away
    m = finite_moments(x)
    for j in range(2):
        mean, m2 = exact_mean_m2(x[:, j])
        assert abs(m.m2[j] - m2) <= 1e-13 * m2


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32, np.uint32, np.float16])
def test_other_types_match_two_pass(dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((7777, 3)) * 100 + 50).astype(dtype)
    m = finite_moments(x)
    mean, m2 = two_pass(x)
    np.testing.assert_allclose(m.mean, mean, rtol=1e-13)
    np.testing.assert_allclose(m.m2, m2, rtol=1e-11)


@pytest.mark.parametrize("n_rows", [1, 15, 16, 17, 1025])
@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_layouts_and_tails(n_rows, order):
    """Wide views need C order and whole groups of rows; everything else goes the narrow way."""
    rng = np.random.default_rng(6)
    base = rng.standard_normal((n_rows * 2, 64)) + 1e5
    x = {"C": base[:n_rows], "F": np.asfortranarray(base[:n_rows]), "strided": base[::2]}[order]
    m = finite_moments(x)
    mean, m2 = two_pass(x)
    np.testing.assert_allclose(m.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(m.m2, m2, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(m.min, x.min(axis=0))
    np.testing.assert_array_equal(m.max, x.max(axis=0))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_rows_wider_than_a_sub_block_are_cut_into_tiles(dtype):
    """Per-pixel features (rows of 150,528 values and more) are reduced in tiles of many rows
    and a slice of the columns: every column slice and row block counted once, min and max
    found in whichever tile holds them, against numpy's float64 two-pass (exact for the
    integers, so compared bit for bit)."""
    rng = np.random.default_rng(11)
    w = blocked.SUB_BLOCK_ELEMENTS + 4099  # more than one column slice at any row count
    n = 2 * blocked.WIDE_TILE_ROWS + 3  # several row blocks, a short last one
    if np.dtype(dtype).kind == "f":
        x = (rng.standard_normal((n, w)) * 3 + 1e6).astype(dtype)
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, (n, w), endpoint=True).astype(dtype)
    x[n - 1, w - 1], x[n // 2, 5] = x.max(), x.min()  # extremes in the last and a middle tile
    step, cols = blocked._tile_shape(x, n)
    assert step * cols <= blocked.SUB_BLOCK_ELEMENTS and cols < w  # tiles, bounded
    m = finite_moments(x)
    mean, m2 = two_pass(x)
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(m.mean, mean, rtol=1e-14)
        np.testing.assert_allclose(m.m2, m2, rtol=1e-8)
    else:
        exact = np.array([exact_mean_m2(x[:, j]) for j in (0, 5, w // 2, w - 1)])
        got = np.stack([m.mean, m.m2], axis=1)[[0, 5, w // 2, w - 1]]
        np.testing.assert_array_equal(got, exact)
        np.testing.assert_allclose(m.m2, m2, rtol=1e-12)
    np.testing.assert_array_equal(m.min, x.min(axis=0))
    np.testing.assert_array_equal(m.max, x.max(axis=0))
    np.testing.assert_array_equal(m.count, np.full(w, n))


def test_wide_parts_cover_every_row_once():
    x = np.arange(1000 * 3).reshape(1000, 3)
    parts = list(wide_parts(x))
    assert [(v.shape, r) for v, r in parts] == [((2, 1026), 342), ((316, 3), 1)]
    covered = np.concatenate([v.reshape(-1, 3) for v, _ in parts])
    np.testing.assert_array_equal(covered, x)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_handed_back(bad):
    x = np.ones((5000, 3), np.float32)
    x[4321, 1] = bad
    assert finite_moments(x) is None


def test_nan_is_skipped_per_feature_through_chunk_task():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3000, 4)).astype(np.float32) + 1e3
    x[rng.random(x.shape) < 0.1] = np.nan
    layout = AxisLayout.create(-1, x.shape)
    m = chunk_task(Chunk(x, "mem", None, 0), layout, "skip")
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(m.nan_count, np.isnan(x).sum(axis=0))
    np.testing.assert_allclose(m.mean, np.nanmean(x64, axis=0), rtol=1e-14)
    np.testing.assert_allclose(m.m2 / m.count, np.nanvar(x64, axis=0), rtol=1e-11)


def test_inf_error_names_row_and_feature():
    x = np.zeros((10, 8, 3), np.float32)
    x[6, 2, 1] = np.inf
    layout = AxisLayout.create(-1, x.shape)
    with pytest.raises(DataError, match=r"infinite value at row 106, feature \[1\]"):
        chunk_task(Chunk(x, "f.h5", "/x", 100), layout, "skip")


def _split_fit(x: np.ndarray, cuts: list[int]) -> Moments:
    layout = AxisLayout.create(-1, x.shape)
    edges = [0, *sorted(set(cuts)), x.shape[0]]
    parts = (
        chunk_task(Chunk(x[a:b], "mem", None, a), layout, "skip")
        for a, b in zip(edges[:-1], edges[1:], strict=True)
        if b > a
    )
    return merge_all(parts, layout.n_features)


@st.composite
def data_and_cuts(draw):
    dtype = np.dtype(draw(st.sampled_from([np.uint8, np.int16, np.float32, np.float64])))
    n = draw(st.integers(2, 3000))
    f = draw(st.integers(1, 5))
    if dtype.kind == "f":
        offset = draw(st.sampled_from([0.0, 1e4, 1e6]))
        elements = st.floats(-100, 100, allow_nan=False, width=dtype.itemsize * 8)
    else:
        offset, info = 0, np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    x = draw(hnp.arrays(dtype, (n, f), elements=elements))
    x = (x + dtype.type(offset)) if offset else x
    cuts = draw(st.lists(st.integers(1, n - 1), max_size=6))
    return x, cuts


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data_and_cuts())
def test_split_points_do_not_matter(case):
    x, cuts = case
    whole, split = _split_fit(x, []), _split_fit(x, cuts)
    scale = np.maximum(np.abs(whole.mean), 1.0)
    np.testing.assert_array_equal(split.count, whole.count)
    np.testing.assert_array_equal(split.min, whole.min)
    np.testing.assert_array_equal(split.max, whole.max)
    assert np.all(np.abs(split.mean - whole.mean) <= 1e-13 * scale)
    bound = 1e-12 * whole.m2 + 1e-15 * whole.count * whole.mean**2  # near-constant floor
    assert np.all(np.abs(split.m2 - whole.m2) <= bound)
