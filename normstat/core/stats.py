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

from normstat.core.groups import GroupedMoments
from normstat.core.moments import Moments
from normstat.core.quantiles import KEEP_BITS, Sketch, merge_levels

EPS64 = float(np.finfo(np.float64).eps)


def is_constant_feature(
    var: np.ndarray, mean: np.ndarray, count: np.ndarray, tol: float | None = None
) -> np.ndarray:
    """True where a feature is treated as constant (only centred by z-scoring).

    ``tol=None``: scikit-learn's bound, the rounding error of the two-pass variance, which grows
    with ``count``. ``tol``: the explicit rule ``std <= tol * max(1, |mean|)``, the same at any
    row count (see ``docs/numerics.md``).
    """
    var = np.nan_to_num(np.asarray(var, np.float64))
    mean = np.nan_to_num(np.asarray(mean, np.float64))
    if tol is not None:
        return np.sqrt(np.maximum(var, 0.0)) <= tol * np.maximum(1.0, np.abs(mean))
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
    rescale: float = 1.0  # the statistics describe x * rescale (Keras ``Rescaling``)
    quantile_levels: tuple[float, ...] | None = None
    """Levels of :attr:`quantiles` (``fit --quantiles``); needs the distribution summary."""
    exact_quantiles: np.ndarray | None = None
    """``(levels, features)`` selected exactly by ``fit --exact``, in place of the summary's."""
    by: str | None = None
    """The column whose values the per-group statistics (:attr:`groups`) are kept by."""
    weights: str | None = None
    """The column whose values weighted the rows (``fit --weights``); ``None``: unweighted."""
    feature_groups: list[dict[str, Any]] | None = None
    """Feature groups of a table (vectors, tensors: ``name``, ``shape``, ``start``, the first of
    its ``prod(shape)`` consecutive features); None when the features are not grouped."""

    def feature_group_slices(self) -> list[tuple[str, tuple[int, ...], slice]]:
        """``(name, shape, features)`` of each group; every table feature is its own group of
        shape ``()`` when the fit recorded none (a table of scalar columns, a version 1 file)."""
        if self.feature_groups is not None:
            out = []
            for g in self.feature_groups:
                shape = tuple(g["shape"])
                n = int(np.prod(shape)) if shape else 1
                out.append((g["name"], shape, slice(g["start"], g["start"] + n)))
            return out
        return [(name, (), slice(j, j + 1)) for j, name in enumerate(self.features or [])]

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
        """``m2 / (count - ddof)`` (weighted: ``m2 / (sum of weights - ddof)``, the weights
        as frequencies); NaN where that denominator is not positive."""
        denom = self.moments.total_weight - self.ddof
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
        """Near-constant features by scikit-learn's rule (see :meth:`constant_with`)."""
        return self.constant_with(None)

    def constant_with(self, tol: float | None) -> np.ndarray:
        """Features treated as constant, tested on the population variance whatever ``ddof``;
        False for empty features (count 0), which have no statistics at all."""
        m = self.moments
        w = m.total_weight
        pop = np.divide(m.m2, w, out=np.zeros(m.m2.shape), where=m.count > 0)
        return self._shaped(is_constant_feature(pop, m.mean, m.count, tol) & (m.count > 0))

    def near_constant(self, tol: float | None = None) -> np.ndarray:
        """Features treated as constant although their values differ (``min < max``): z-scoring
        only centres them, which the caller should hear about."""
        m = self.moments
        return self.constant_with(tol) & self._shaped((m.count > 0) & (m.max > m.min))

    @property
    def scale(self) -> np.ndarray:
        """What z-scoring divides by: ``std``, or 1 for near-constant and empty features (as
        scikit-learn's ``scale_``), so no output is ever inf or NaN because of the statistics."""
        return self.scale_with(None)

    def scale_with(self, tol: float | None) -> np.ndarray:
        """:attr:`scale` with the constant rule of :meth:`constant_with`."""
        std = self.std
        return np.where(self.constant_with(tol) | ~np.isfinite(std), 1.0, std)

    def rescaled(self, scale: float) -> Stats:
        """The statistics of ``x * scale``, from those of ``x``: the moments transform exactly
        (mean and the extremes by ``scale``, m2 by ``scale**2``), no pass over the data; each
        group's (``fit --by``) as the pooled ones."""
        return Stats(
            scaled_moments(self.moments, scale),
            self.feature_shape,
            self.axis,
            self.ddof,
            self.features,
            dict(self.source),
            rescale=self.rescale * scale,
            by=self.by,
            weights=self.weights,
            feature_groups=self.feature_groups,
        )

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

    @property
    def quantile_error(self) -> float | None:
        """The largest relative error of :attr:`quantiles` against ``numpy.quantile``: 0.0 when
        exact (``fit --exact``, or every feature counted value by value), else the summary's
        bound ``2**-7`` (docs/quantiles.md); ``None`` without quantiles."""
        if self.quantile_levels is None or self.sketch is None:
            return None
        s = self.sketch
        if self.exact_quantiles is not None or not (s.drop[s.total > 0] > 0).any():
            return 0.0
        return 2.0**-KEEP_BITS

    def merge(self, other: Stats) -> Stats:
        """Exact merge of the statistics of two disjoint parts of one dataset."""
        return Stats(
            self.moments.merge(other.moments),
            self.feature_shape,
            self.axis,
            self.ddof,
            self.features,
            dict(self.source),
            rescale=self.rescale,
            quantile_levels=merge_levels(self.quantile_levels, other.quantile_levels),
            feature_groups=self.feature_groups,
            by=self.by,
            weights=self.weights,
        )

    @property
    def groups(self) -> GroupedMoments | None:
        """The moments of each group of :attr:`by` (``fit --by``), if kept."""
        return self.moments.groups

    @property
    def group_keys(self) -> np.ndarray | None:
        """The distinct values of :attr:`by`, sorted; row ``i`` of :meth:`by_group` is
        ``group_keys[i]``'s."""
        return None if self.groups is None else self.groups.keys

    def by_group(self) -> Stats:
        """The per-group statistics as one :class:`Stats` of feature shape ``(groups,
        *feature_shape)``: ``.mean[i]`` is group ``group_keys[i]``'s mean, and so on."""
        if self.groups is None:
            raise ValueError("these statistics were not fitted by group (fit --by)")
        return Stats(
            self.groups.flat(),
            (self.groups.n_groups, *self.feature_shape),
            self.axis,
            self.ddof,
            None,
            {},
            rescale=self.rescale,
            weights=self.weights,
        )


def scaled_moments(m: Moments, scale: float) -> Moments:
    """The moments of ``x * scale`` from those of ``x`` (any shape; the per-group moments
    too). The distribution summary is not carried: it is built from the scaled values."""
    lo, hi = (m.min, m.max) if scale > 0 else (m.max, m.min)
    groups = None
    if m.groups is not None:
        groups = GroupedMoments(m.groups.keys, scaled_moments(m.groups.moments, scale))
    return Moments(
        count=m.count.copy(),
        nan_count=m.nan_count.copy(),
        dmean=m.dmean * scale,
        m2=m.m2 * (scale * scale),
        min=lo * scale,
        max=hi * scale,
        shift=m.shift * scale,
        weight=None if m.weight is None else m.weight.copy(),
        groups=groups,
    )
