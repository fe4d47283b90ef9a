"""The blocked transform gives the same bits as the whole-chunk float64 expression."""

from __future__ import annotations

import numpy as np
import pytest

from normstat.core.transform import TransformParams


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("shape", [(70_001, 5), (3, 32, 32, 3), (0, 4), (1, 1)])
def test_forward_and_inverse_equal_the_plain_expression(dtype, shape):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal(shape) * 40 + 100).astype(dtype)
    f = shape[-1]
    p = TransformParams(np.linspace(90.0, 110.0, f), np.linspace(0.5, 50.0, f))
    for out in (np.float32, np.float64):
        y = p.forward(x, out)
        assert y.dtype == out and y.shape == x.shape
        np.testing.assert_array_equal(y, ((x - p.shift) / p.scale).astype(out))
        np.testing.assert_array_equal(p.inverse(y, out), (y * p.scale + p.shift).astype(out))
