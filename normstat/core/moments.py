"""The mergeable per-feature state and its two verbs: build from a chunk, merge with another.

Sufficient statistics only (count, mean, m2, min, max, nan_count); ``ddof`` is applied when
finalising. Inside a chunk the corrected two-pass formula is used; between chunks the Chan et al.
pairwise update. Both run vectorised over the whole chunk, in float64 whatever the input dtype.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass
class Moments:
    """Sufficient statistics of one or more chunks, flat over features.

    For a feature with ``count == 0``: ``mean == m2 == 0``, ``min == +inf`` and ``max == -inf``
    (the identities of the merge), which finalise to null statistics.
    """

    count: np.ndarray  # int64
    nan_count: np.ndarray  # int64
    mean: np.ndarray  # float64
    m2: np.ndarray  # float64, sum of squared deviations from the mean
    min: np.ndarray  # float64
    max: np.ndarray  # float64

    @classmethod
    def empty(cls, n_features: int) -> Moments:
        return cls(
            count=np.zeros(n_features, np.int64),
            nan_count=np.zeros(n_features, np.int64),
            mean=np.zeros(n_features),
            m2=np.zeros(n_features),
            min=np.full(n_features, np.inf),
            max=np.full(n_features, -np.inf),
        )

    @property
    def n_features(self) -> int:
        return int(self.count.shape[0])

    def merge(self, other: Moments) -> Moments:
        """Chan et al.: exact combination of the moments of two disjoint parts."""
        n = self.count + other.count
        frac = np.divide(other.count, n, out=np.zeros(n.shape), where=n > 0)
        delta = other.mean - self.mean
        return Moments(
            count=n,
            nan_count=self.nan_count + other.nan_count,
            mean=self.mean + delta * frac,
            m2=self.m2 + other.m2 + delta * delta * self.count * frac,
            min=np.minimum(self.min, other.min),
            max=np.maximum(self.max, other.max),
        )

    def copy(self) -> Moments:
        return Moments(*(a.copy() for a in self.arrays()))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.count, self.nan_count, self.mean, self.m2, self.min, self.max)


def chunk_moments(rows: np.ndarray) -> Moments:
    """Moments of a ``(rows, features)`` chunk. NaN is skipped per feature; inf must be checked
    by the caller (it would poison mean and m2, and the caller knows the row to blame)."""
    n_rows, n_feat = rows.shape
    if n_rows == 0:
        return Moments.empty(n_feat)
    if rows.dtype.kind in "biu":
        return _dense_moments(rows)
    total = rows.sum(axis=0, dtype=np.float64)
    if np.isfinite(total).all():
        return _dense_moments(rows, total)
    return _masked_moments(rows)


def _dense_moments(rows: np.ndarray, total: np.ndarray | None = None) -> Moments:
    n = rows.shape[0]
    if total is None:
        total = rows.sum(axis=0, dtype=np.float64)
    mean = total / n
    dev = rows - mean  # float64 because mean is
    corr = dev.sum(axis=0)
    m2 = np.einsum("ij,ij->j", dev, dev) - corr * corr / n
    return Moments(
        count=np.full(rows.shape[1], n, np.int64),
        nan_count=np.zeros(rows.shape[1], np.int64),
        mean=mean + corr / n,
        m2=np.maximum(m2, 0.0),
        min=rows.min(axis=0).astype(np.float64),
        max=rows.max(axis=0).astype(np.float64),
    )


def _masked_moments(rows: np.ndarray) -> Moments:
    nan = np.isnan(rows)
    nan_count = nan.sum(axis=0).astype(np.int64)
    count = rows.shape[0] - nan_count
    safe = np.divide(1.0, count, out=np.zeros(count.shape), where=count > 0)
    vals = np.where(nan, 0.0, rows.astype(np.float64, copy=False))
    mean = vals.sum(axis=0) * safe
    dev = np.where(nan, 0.0, vals - mean)
    corr = dev.sum(axis=0)
    m2 = np.einsum("ij,ij->j", dev, dev) - corr * corr * safe
    lo = np.fmin.reduce(rows, axis=0).astype(np.float64)
    hi = np.fmax.reduce(rows, axis=0).astype(np.float64)
    empty = count == 0
    return Moments(
        count=count,
        nan_count=nan_count,
        mean=mean + corr * safe,
        m2=np.maximum(m2, 0.0),
        min=np.where(empty, np.inf, lo),
        max=np.where(empty, -np.inf, hi),
    )


def merge_all(parts: Iterable[Moments], n_features: int) -> Moments:
    """Merge in a balanced tree (pairwise, like pairwise summation), keeping order.

    A binary-counter stack holds O(log n) partial results, so any number of chunks merges with
    error growing like log(n) instead of n, in bounded memory.
    """
    stack: list[tuple[int, Moments]] = []
    for part in parts:
        level, cur = 0, part
        while stack and stack[-1][0] == level:
            cur = stack.pop()[1].merge(cur)
            level += 1
        stack.append((level, cur))
    result = Moments.empty(n_features)
    for _, m in stack:
        result = result.merge(m)
    return result
