"""Finalised statistics: moments plus what they describe, and the derived var / std.

Zero variance is decided by a near-constant rule, never by ``std == 0``: rounding can leave m2 at
1e-32 for a constant column, and dividing by its square root would blow every value up. The rule
is scikit-learn's ``_is_constant_feature`` (the error bound of the two-pass algorithm, Chan, Golub
& LeVeque), so ``apply``, ``show`` and ``export`` agree with ``StandardScaler``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from normstat.core.moments import Moments
from normstat.core.quantiles import Sketch, merge_levels

EPS64 = float(np.finfo(np.float64).eps)


def is_constant_feature(var: np.ndarray, mean: np.ndarray, count: np.ndarray) -> np.ndarray:
    """True where a feature is indistinguishable from a constant (scikit-learn's bound)."""
    var = np.nan_to_num(np.asarray(var, np.float64))
    mean = np.nan_to_num(np.asarray(mean, np.float64))
    count = np.asarray(count, np.float64)
    bound = count * EPS64 * var + (count * mean * EPS64) ** 2
    return var <= bound


@dataclass
class Stats:
    """The result of a fit: per-feature moments with the metadata the artifact records."""

    moments: Moments
    feature_shape: tuple[int, ...]
    axis: tuple[int, ...] | None = (-1,)
    ddof: int = 0
    features: list[str] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    quantile_levels: tuple[float, ...] | None = None
    """Levels of :attr:`quantiles` (``fit --quantiles``); needs the distribution summary."""
    exact_quantiles: np.ndarray | None = None
    """``(levels, features)`` selected exactly by ``fit --exact``, in place of the summary's."""

    def _shaped(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(self.feature_shape)

    @property
    def count(self) -> np.ndarray:
        return self._shaped(self.moments.count)

    @property
    def nan_count(self) -> np.ndarray:
        return self._shaped(self.moments.nan_count)

    @property
    def mean(self) -> np.ndarray:
        """Mean per feature; NaN where the feature had no finite value."""
        return self._shaped(np.where(self.moments.count > 0, self.moments.mean, np.nan))

    @property
    def m2(self) -> np.ndarray:
        return self._shaped(np.where(self.moments.count > 0, self.moments.m2, np.nan))

    @property
    def var(self) -> np.ndarray:
        """``m2 / (count - ddof)``; NaN where that denominator is not positive."""
        denom = self.moments.count - self.ddof
        out = np.full(self.moments.count.shape, np.nan)
        np.divide(self.moments.m2, denom, out=out, where=denom > 0)
        return self._shaped(out)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    @property
    def min(self) -> np.ndarray:
        return self._shaped(np.where(self.moments.count > 0, self.moments.min, np.nan))

    @property
    def max(self) -> np.ndarray:
        return self._shaped(np.where(self.moments.count > 0, self.moments.max, np.nan))

    @property
    def constant(self) -> np.ndarray:
        """Near-constant features (tested on the population variance, whatever ``ddof``)."""
        m = self.moments
        pop = np.divide(m.m2, m.count, out=np.zeros(m.m2.shape), where=m.count > 0)
        return self._shaped(is_constant_feature(pop, m.mean, m.count))

    @property
    def scale(self) -> np.ndarray:
        """What z-scoring divides by: ``std``, or 1 for near-constant and empty features (as
        scikit-learn's ``scale_``), so no output is ever inf or NaN because of the statistics."""
        std = self.std
        return np.where(self.constant | ~np.isfinite(std), 1.0, std)

    @property
    def sketch(self) -> Sketch | None:
        """The distribution summary (``fit --quantiles`` or ``--histogram``), if kept."""
        return self.moments.sketch

    @property
    def quantiles(self) -> np.ndarray | None:
        """``(levels, *feature_shape)``: numpy's linear quantiles at :attr:`quantile_levels`
        (exact or within the bound of docs/quantiles.md); NaN for empty features."""
        if self.quantile_levels is None or self.sketch is None:
            return None
        q = self.exact_quantiles
        if q is None:
            q = self.sketch.quantiles(self.quantile_levels)
        return q.reshape((len(self.quantile_levels), *self.feature_shape))

    def merge(self, other: Stats) -> Stats:
        """Exact merge of the statistics of two disjoint parts of one dataset."""
        return Stats(
            self.moments.merge(other.moments),
            self.feature_shape,
            self.axis,
            self.ddof,
            self.features,
            dict(self.source),
            merge_levels(self.quantile_levels, other.quantile_levels),
        )
