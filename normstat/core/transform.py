"""Transforms as one affine map ``y = (x - shift) / scale`` and its inverse ``x = y*scale + shift``.

Every method reduces to a (shift, scale) pair, so forward and inverse share one kernel and the
zero-range rules live in one place: z-score divides by :attr:`Stats.scale` (1 for near-constant
features, so they are only centred); min-max treats a zero range as 1 (a constant feature maps to
the low end of the range, as scikit-learn's ``MinMaxScaler``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normstat.core.layout import AxisLayout
from normstat.core.stats import Stats
from normstat.errors import UsageError

METHODS: tuple[str, ...] = ("zscore", "minmax", "center")


@dataclass(frozen=True)
class TransformParams:
    shift: np.ndarray  # float64, feature_shape
    scale: np.ndarray  # float64, feature_shape, never 0, inf or NaN

    def forward(self, x: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
        return ((x - self.shift) / self.scale).astype(dtype, copy=False)

    def inverse(self, y: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
        return (y * self.scale + self.shift).astype(dtype, copy=False)

    def broadcast(self, shape: tuple[int, ...]) -> TransformParams:
        """Reshape the per-feature values to broadcast against a chunk laid out as ``shape``."""
        return TransformParams(self.shift.reshape(shape), self.scale.reshape(shape))


def transform_params(
    stats: Stats, method: str = "zscore", feature_range: tuple[float, float] = (0.0, 1.0)
) -> TransformParams:
    empty = stats.count == 0  # no statistics: leave such features unchanged
    if method == "zscore":
        shift, scale = stats.mean, stats.scale
    elif method == "center":
        shift, scale = stats.mean, np.ones(stats.feature_shape)
    elif method == "minmax":
        lo, hi = (float(v) for v in feature_range)
        if not hi > lo:
            raise UsageError(f"--range must be increasing, received {lo} {hi}")
        span = stats.max - stats.min
        span = np.where((span > 0) & np.isfinite(span), span, 1.0)
        scale = span / (hi - lo)
        shift = stats.min - lo * scale
    else:
        raise UsageError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    shift = np.where(empty, 0.0, shift)
    scale = np.where(empty, 1.0, scale)
    return TransformParams(np.asarray(shift, np.float64), np.asarray(scale, np.float64))


def transform_block(
    x: np.ndarray, layout: AxisLayout, params: TransformParams, inverse: bool, dtype: np.dtype
) -> np.ndarray:
    """Transform one block of samples; shared by every engine so their outputs are identical."""
    block = x.reshape((x.shape[0], *layout.sample_shape))
    y = params.inverse(block, dtype) if inverse else params.forward(block, dtype)
    return y.reshape(x.shape)
