"""Property tests: any shape, axis, dtype and chunking gives numpy's float64 two-pass answer,
and any split of the data, merged, equals the fit of the whole."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import normstat
from normstat.core.moments import Moments, chunk_moments, merge_all
from tests.conftest import reference

DTYPES = [np.uint8, np.int16, np.float32, np.float64]
PROFILE = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def arrays_and_axes(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    shape = (draw(st.integers(1, 40)), *shape[1:])
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if dtype.kind == "f":
        elements = st.floats(-1e3, 1e3, allow_nan=False, width=dtype.itemsize * 8)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    x = draw(hnp.arrays(dtype, shape, elements=elements))
    if ndim == 1:
        axis = draw(st.sampled_from([-1, None]))
    else:
        kept = draw(st.sets(st.integers(1, ndim - 1), max_size=ndim - 1))
        axis = draw(st.sampled_from([None, tuple(sorted(kept)) or -1]))
    return x, axis


def _close(stats: normstat.Stats, ref: dict, ddof: int = 0) -> None:
    for key in ("count", "mean", "m2", "min", "max"):
        want = np.asarray(ref[key], np.float64).reshape(stats.feature_shape)
        got = getattr(stats, key)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9, err_msg=key)
    with np.errstate(all="ignore"):
        want_var = np.asarray(ref["m2"] / (ref["count"] - ddof)).reshape(stats.feature_shape)
    np.testing.assert_allclose(
        stats.var,
        np.where(ref["count"] - ddof > 0, want_var, np.nan).reshape(stats.feature_shape),
        rtol=1e-10,
        atol=1e-9,
    )


def _axes(axis, ndim):
    if axis is None:
        return None
    return (axis,) if isinstance(axis, int) else axis


@PROFILE
@given(arrays_and_axes(), st.integers(1, 17), st.integers(0, 1))
def test_fit_from_file_equals_two_pass_reference(data, chunk_rows, ddof):
    x, axis = data
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=x, chunks=(min(3, x.shape[0]), *x.shape[1:]))
        stats = normstat.fit(f"{path}:/x", axis=axis, ddof=ddof, chunk_size=chunk_rows, workers=2)
    _close(stats, reference(x, _axes(axis, x.ndim)), ddof)


@PROFILE
@given(arrays_and_axes(), st.data())
def test_any_split_merged_equals_the_whole(data, draw):
    x, axis = data
    cuts = sorted(draw.draw(st.lists(st.integers(0, x.shape[0]), max_size=6)))
    parts = np.split(x, cuts)
    whole = normstat.fit_arrays(x, axis=axis)
    # as batches of one accumulator
    batched = normstat.fit_arrays([p for p in parts if p.shape[0]] or [x], axis=axis)
    # as separately fitted shards, merged
    fitted = [normstat.fit_arrays(p, axis=axis) for p in parts if p.shape[0]]
    merged = normstat.merge(fitted)
    for other in (batched, merged):
        for key in ("count", "nan_count", "min", "max"):
            np.testing.assert_array_equal(getattr(other, key), getattr(whole, key))
        np.testing.assert_allclose(other.mean, whole.mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(other.m2, whole.m2, rtol=1e-9, atol=1e-9)


@PROFILE
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 50), st.integers(1, 4)),
        elements=st.floats(-100, 100) | st.just(np.nan),
    ),
    st.integers(1, 9),
)
def test_nan_skip_counts_per_feature_like_nanmean(x, step):
    parts = [chunk_moments(x[i : i + step]) for i in range(0, x.shape[0], step)]
    m = merge_all(parts, x.shape[1])
    ref = reference(x, (-1,)) if (~np.isnan(x)).all(axis=0).any() else None
    np.testing.assert_array_equal(m.nan_count, np.isnan(x).sum(axis=0))
    np.testing.assert_array_equal(m.count, (~np.isnan(x)).sum(axis=0))
    has = m.count > 0
    if ref is not None:
        np.testing.assert_allclose(m.mean[has], ref["mean"][has], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(m.m2[has], ref["m2"][has], rtol=1e-9, atol=1e-9)
    assert (m.min[~has] == np.inf).all() and (m.max[~has] == -np.inf).all()


def test_merge_with_empty_is_identity():
    rng = np.random.default_rng(0)
    a = chunk_moments(rng.normal(size=(20, 3)))
    for m in (a.merge(Moments.empty(3)), Moments.empty(3).merge(a)):
        for got, want in zip(m.arrays(), a.arrays(), strict=True):
            np.testing.assert_array_equal(got, want)
