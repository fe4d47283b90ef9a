"""Axis semantics, as Keras Normalization: --axis keeps axes, the rest is reduced."""

import numpy as np
import pytest

from normstat.core.layout import AxisLayout, parse_axis
from normstat.errors import UsageError


@pytest.mark.parametrize(
    ("axis", "shape", "feature_shape"),
    [
        (-1, (10, 3), (3,)),
        (-1, (10, 8, 8, 3), (3,)),
        (1, (10, 3, 8, 8), (3,)),
        ((1, 2), (10, 8, 8, 3), (8, 8)),
        ((-3, -2), (10, 8, 8, 3), (8, 8)),
        (None, (10, 8, 8, 3), ()),
        (-1, (10,), (1,)),  # a vector of samples is one feature, as Keras
        (None, (10,), ()),
    ],
)
def test_feature_shape(axis, shape, feature_shape):
    assert AxisLayout.create(axis, shape).feature_shape == feature_shape


@pytest.mark.parametrize("axis", [0, -4, (1, 0)])
def test_sample_axis_cannot_be_kept(axis):
    with pytest.raises(UsageError, match="sample axis"):
        AxisLayout.create(axis, (5, 4, 4, 3))


def test_out_of_range_and_duplicates():
    with pytest.raises(UsageError, match="out of range"):
        AxisLayout.create(4, (5, 4, 4, 3))
    with pytest.raises(UsageError, match="twice"):
        AxisLayout.create((1, -3), (5, 4, 4, 3))


def test_to_rows_matches_moveaxis_and_rows_map_back_to_samples():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    lay = AxisLayout.create(1, x.shape)
    rows = lay.to_rows(x)
    assert rows.shape == (2 * 4 * 5, 3)
    np.testing.assert_array_equal(rows, np.moveaxis(x, 1, -1).reshape(-1, 3))
    # every matrix row of sample 1 maps back to sample 1
    assert {lay.sample_of(r) for r in range(20, 40)} == {1}
    assert lay.broadcast_shape == (3, 1, 1)


def test_parse_axis():
    assert parse_axis(()) == -1
    assert parse_axis(("none",)) is None
    assert parse_axis(("1", "2")) == [1, 2]
    with pytest.raises(UsageError, match="received 'x'"):
        parse_axis(("x",))
