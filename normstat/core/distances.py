"""Distances between two features' distributions, read from their summaries (:class:`Sketch`).

Both summaries are brought to a common resolution (the coarser of the two, per feature), so each
is a list of counts over the same sorted buckets; a bucket stands for its values, placed at its
midpoint (its single value when the summary is exact, as for 8- and 16-bit integers).

- ``ks``: ``max |F_a - F_b|`` over the bucket edges (where both CDFs are exact). Exact for exact
  summaries (equal to ``scipy.stats.ks_2samp``'s statistic); otherwise it may miss, inside one
  bucket, at most the larger of the two bucket masses there.
- ``wasserstein``: ``sum |F_a - F_b| * gap`` between consecutive bucket midpoints (the 1-D earth
  mover's distance of the two bucket distributions). Exact for exact summaries (equal to
  ``scipy.stats.wasserstein_distance``); otherwise off by at most half a bucket per unit of mass
  on each side: ``2**-8 * (mean |x|_a + mean |x|_b)``.
- ``psi``: population stability index ``sum (b - a) ln(b / a)`` over 10 bins of equal mass in A
  (A's deciles, at bucket resolution), empty bins counting 1e-4; the industry's usual form.
- ``js``: Jensen-Shannon distance (base 2, in [0, 1]; scipy's ``jensenshannon``) and
- ``hellinger``: ``sqrt(1 - sum sqrt(a * b))`` in [0, 1], both over 100 bins of equal mass in A,
  so that neither depends on the resolution of the summary nor grows with sampling noise in its
  thousands of narrow buckets.

Features empty on either side get NaN. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from normstat.core.choices import METRICS
from normstat.core.quantiles import Sketch, bucket_bounds, coarsen
from normstat.errors import UsageError

PSI_BINS = 10
DIVERGENCE_BINS = 100
PSI_FLOOR = 1e-4


def distances(a: Sketch, b: Sketch, metric: str) -> np.ndarray:
    """``metric`` between A's and B's distribution of every feature (flat), NaN where empty."""
    if metric not in _METRICS:
        raise UsageError(f"metric must be one of {', '.join(METRICS)}, received {metric!r}")
    if a.n_features != b.n_features:
        raise UsageError(f"cannot compare {a.n_features} features with {b.n_features}")
    out = np.full(a.n_features, np.nan)
    for f in range(a.n_features):
        pa, pb, mid = _aligned(a, b, f)
        if pa.size and pa.sum() > 0 and pb.sum() > 0:
            out[f] = _METRICS[metric](pa / pa.sum(), pb / pb.sum(), mid)
    return out


def _aligned(a: Sketch, b: Sketch, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of A and B over the union of their buckets at a common resolution, and the
    buckets' midpoints (clamped to the features' observed range)."""
    drop = max(int(a.drop[f]), int(b.drop[f]))
    ka = coarsen(a.keys[a.offsets[f] : a.offsets[f + 1]], drop - int(a.drop[f]))
    kb = coarsen(b.keys[b.offsets[f] : b.offsets[f + 1]], drop - int(b.drop[f]))
    keys = np.union1d(ka, kb)
    ca = np.zeros(keys.size)
    cb = np.zeros(keys.size)
    np.add.at(ca, np.searchsorted(keys, ka), a.counts[a.offsets[f] : a.offsets[f + 1]])
    np.add.at(cb, np.searchsorted(keys, kb), b.counts[b.offsets[f] : b.offsets[f + 1]])
    lo, hi = bucket_bounds(keys, np.full(keys.size, drop, np.int64))
    low = min(float(a.min[f]), float(b.min[f]))
    high = max(float(a.max[f]), float(b.max[f]))
    mid = np.clip(lo + (hi - lo) / 2, low, high) if keys.size else lo
    return ca, cb, mid


def _ks(pa: np.ndarray, pb: np.ndarray, _mid: np.ndarray) -> float:
    return float(np.abs(np.cumsum(pa) - np.cumsum(pb)).max())


def _wasserstein(pa: np.ndarray, pb: np.ndarray, mid: np.ndarray) -> float:
    gaps = np.diff(mid)
    return float(np.sum(np.abs(np.cumsum(pa) - np.cumsum(pb))[:-1] * gaps))


def _equal_mass(pa: np.ndarray, pb: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """A's and B's mass in ``bins`` groups of consecutive buckets holding ~equal mass of A."""
    before = np.cumsum(pa) - pa
    group = np.minimum(np.floor(before * bins + 1e-9).astype(np.int64), bins - 1)
    return np.bincount(group, pa, bins), np.bincount(group, pb, bins)


def _psi(pa: np.ndarray, pb: np.ndarray, _mid: np.ndarray) -> float:
    ga, gb = _equal_mass(pa, pb, PSI_BINS)
    used = ga > 0
    ga, gb = np.maximum(ga[used], PSI_FLOOR), np.maximum(gb[used], PSI_FLOOR)
    return float(np.sum((gb - ga) * np.log(gb / ga)))


def _js(pa: np.ndarray, pb: np.ndarray, _mid: np.ndarray) -> float:
    ga, gb = _equal_mass(pa, pb, DIVERGENCE_BINS)
    m = (ga + gb) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_a = np.where(ga > 0, ga * np.log2(ga / m), 0.0).sum()
        kl_b = np.where(gb > 0, gb * np.log2(gb / m), 0.0).sum()
    return float(np.sqrt(max((kl_a + kl_b) / 2, 0.0)))


def _hellinger(pa: np.ndarray, pb: np.ndarray, _mid: np.ndarray) -> float:
    ga, gb = _equal_mass(pa, pb, DIVERGENCE_BINS)
    return float(np.sqrt(max(1.0 - np.sum(np.sqrt(ga * gb)), 0.0)))


_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "psi": _psi,
    "ks": _ks,
    "wasserstein": _wasserstein,
    "js": _js,
    "hellinger": _hellinger,
}
