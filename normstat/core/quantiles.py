"""A mergeable distribution summary: per feature, exact counts of values or of narrow buckets.

Every value ``x`` is mapped to an order-preserving integer *key*: the bits of the float64, with
negative numbers' magnitude bits flipped (the sign-flip trick), so ``x < y`` iff
``key(x) < key(y)``. A bucket drops the ``drop`` low bits of the key (:func:`coarsen`: zero
keeps a bucket of its own, so the many zeros of sparse or ReLU data count exactly):

* ``drop == 0`` (integer data of 16 bits or fewer, counted by ``np.bincount``): one bucket per
  distinct value, so every order statistic, hence every quantile, is exact.
* ``drop == 45`` (any other data): the low 45 of the 52 mantissa bits are dropped, leaving 7, so a
  bucket spans ``[m 2**e, (m + 2**-7) 2**e)`` with ``1 <= m < 2``: relative width below
  ``2**-7 = 0.78%``. An order statistic is estimated inside its bucket, so its relative error is
  below 0.78% (docs/quantiles.md has the proof, and the cases where it is exact).

The summary stores, per feature, the sorted distinct bucket keys with their counts (sparse), plus
four exact values: ``min``, ``max``, the largest negative value and the smallest non-negative one
(the two order statistics around zero, where a relative bound would otherwise fail). A merge adds
integer counts, and takes max / min of the exact values: associative and commutative without
rounding, so every chunking, shard order, merge order and engine gives the same bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from normstat.errors import UsageError

KEEP_BITS = 7
"""Mantissa bits kept in a float bucket: relative width 2**-7 < 0.79%."""
COARSE = 52 - KEEP_BITS
"""Low key bits dropped for float data."""
_MAGNITUDE = np.int64(0x7FFF_FFFF_FFFF_FFFF)
ROBUST_LEVELS = (0.25, 0.5, 0.75)


def parse_levels(spec: str | Sequence[float]) -> tuple[float, ...]:
    """Quantile levels from ``"robust"`` (0.25, 0.5, 0.75), ``"0.01,0.99"`` or numbers: sorted,
    distinct, each in [0, 1]."""
    if isinstance(spec, str):
        if spec.strip() == "robust":
            return ROBUST_LEVELS
        try:
            spec = [float(v) for v in spec.split(",")]
        except ValueError:
            raise UsageError(
                f"quantile levels must be numbers in [0, 1] separated by commas, or 'robust'; "
                f"received {spec!r}"
            ) from None
    levels = [float(v) for v in spec]
    if not levels or not all(0.0 <= v <= 1.0 for v in levels):
        raise UsageError(f"quantile levels must be in [0, 1], received {levels}")
    return tuple(sorted(set(levels)))


def merge_levels(
    a: tuple[float, ...] | None, b: tuple[float, ...] | None
) -> tuple[float, ...] | None:
    """The levels of a merge: every level either side asked for (the summary has them all)."""
    if a is None or b is None:
        return b if a is None else a
    return tuple(sorted(set(a) | set(b)))


def ordered_keys(x: np.ndarray) -> np.ndarray:
    """int64 keys ordered as the float64 values (``-0.0`` is keyed as ``+0.0``)."""
    u = np.add(x, 0.0, dtype=np.float64).view(np.int64)  # a new array, -0.0 made +0.0
    sign = u >> 63
    sign &= _MAGNITUDE
    u ^= sign
    return u


def key_values(k: np.ndarray) -> np.ndarray:
    """The float64 value of each key (the inverse of :func:`ordered_keys`)."""
    k = np.asarray(k, np.int64)
    return (k ^ ((k >> 63) & _MAGNITUDE)).view(np.float64)


def coarsen(keys: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    """Buckets of ``keys`` (or of finer buckets) without their ``shift`` low bits: ``k >> shift``
    for negative keys, ``((k - 1) >> shift) + 1`` for positive ones, so that 0 stays alone.
    Coarsening twice equals coarsening once by the sum, so summaries of any resolution merge."""
    keys = np.asarray(keys, np.int64)
    return np.where(keys > 0, ((keys - 1) >> shift) + 1, keys >> shift)


def bucket_bounds(b: np.ndarray, drop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smallest and largest value of each bucket ``b`` at resolution ``drop``."""
    mask = (np.int64(1) << drop) - 1
    lo = np.where(b > 0, ((b - 1) << drop) + 1, b << drop)
    hi = np.where(b > 0, b << drop, np.where(b < 0, (b << drop) | mask, 0))
    return key_values(lo), key_values(hi)


@dataclass(frozen=True)
class Sketch:
    """Sparse bucket counts of ``n_features`` features (flat), sorted by (feature, key).

    Entries ``offsets[f]:offsets[f + 1]`` of ``keys`` / ``counts`` belong to feature ``f``; a
    key is ``coarsen(ordered_key(x), drop[f])``. Empty features have no entries,
    ``min = pos_min = +inf`` and ``max = neg_max = -inf`` (the identities of the merge).
    """

    drop: np.ndarray  # int64 (F,)
    offsets: np.ndarray  # int64 (F + 1,)
    keys: np.ndarray  # int64 (K,)
    counts: np.ndarray  # int64 (K,)
    min: np.ndarray  # float64 (F,)
    max: np.ndarray  # float64 (F,)
    neg_max: np.ndarray  # float64 (F,): largest value < 0, -inf if none
    pos_min: np.ndarray  # float64 (F,): smallest value >= 0, +inf if none

    @classmethod
    def empty(cls, n_features: int) -> Sketch:
        z = np.zeros(n_features, np.int64)
        inf = np.full(n_features, np.inf)
        return cls(z, np.zeros(n_features + 1, np.int64), z[:0], z[:0], inf, -inf, -inf, inf)

    @property
    def n_features(self) -> int:
        return int(self.drop.shape[0])

    @property
    def total(self) -> np.ndarray:
        """Values counted per feature."""
        cum = np.concatenate(([0], np.cumsum(self.counts)))
        return cum[self.offsets[1:]] - cum[self.offsets[:-1]]

    def feature_of(self) -> np.ndarray:
        """The feature of every entry."""
        return np.repeat(np.arange(self.n_features), np.diff(self.offsets))

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in FIELDS}

    # -- the reduction --------------------------------------------------------------------

    def merge(self, other: Sketch) -> Sketch:
        """The summary of two disjoint sets of rows: counts added, exactly."""
        drop = np.maximum(self.drop, other.drop)
        if self._same_entries(other):  # dense data: every chunk has every value of each feature
            return Sketch(
                self.drop,
                self.offsets,
                self.keys,
                self.counts + other.counts,
                *(_EXACT_MERGE[k](getattr(self, k), getattr(other, k)) for k in _EXACT_FIELDS),
            )
        fa, ka, ca = self._entries(drop)
        fb, kb, cb = other._entries(drop)
        feats, keys, counts = _combine(
            np.concatenate((fa, fb)), np.concatenate((ka, kb)), np.concatenate((ca, cb))
        )
        return Sketch(
            drop=drop,
            offsets=offsets_of(feats, self.n_features),
            keys=keys,
            counts=counts,
            min=np.minimum(self.min, other.min),
            max=np.maximum(self.max, other.max),
            neg_max=np.maximum(self.neg_max, other.neg_max),
            pos_min=np.minimum(self.pos_min, other.pos_min),
        )

    def _same_entries(self, other: Sketch) -> bool:
        return (
            self.keys.size == other.keys.size
            and np.array_equal(self.drop, other.drop)
            and np.array_equal(self.offsets, other.offsets)
            and np.array_equal(self.keys, other.keys)
        )

    def _entries(self, drop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(feature, key, count) of every entry, keys coarsened to ``drop`` (may repeat)."""
        feats = self.feature_of()
        shift = (drop - self.drop)[feats]
        return feats, coarsen(self.keys, shift), self.counts

    @classmethod
    def join(cls, parts: Sequence[Sketch]) -> Sketch:
        """Summaries of disjoint *features* side by side (a table chunk, column by column)."""
        sizes = np.cumsum([0] + [int(p.counts.size) for p in parts[:-1]])
        offsets = [p.offsets[:-1] + s for p, s in zip(parts, sizes, strict=True)]
        end = sum(int(p.counts.size) for p in parts)
        return cls(
            drop=np.concatenate([p.drop for p in parts]),
            offsets=np.concatenate([*offsets, [end]]).astype(np.int64),
            keys=np.concatenate([p.keys for p in parts]),
            counts=np.concatenate([p.counts for p in parts]),
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in _EXACT_FIELDS},
        )

    # -- finalising -----------------------------------------------------------------------

    def quantiles(self, levels: Sequence[float]) -> np.ndarray:
        """``(len(levels), n_features)``: ``numpy.quantile(x, levels, method="linear")`` of each
        feature's values (exact where ``drop == 0``, else within the bound); NaN where empty."""
        n = self.total
        lo_rank, hi_rank, gamma = linear_positions(n, levels)
        with np.errstate(invalid="ignore"):  # empty features: NaN
            a, b = self.order_statistics(lo_rank), self.order_statistics(hi_rank)
            return np.where(n > 0, numpy_lerp(a, b, gamma), np.nan)

    def locate(self, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Entry holding each rank (``ranks[..., f]`` of feature ``f``), and the rank within it."""
        cum = np.cumsum(self.counts)
        before = np.concatenate(([0], cum))[self.offsets[:-1]]
        pos = np.searchsorted(cum, before + ranks, side="right")
        pos = np.minimum(pos, max(cum.size - 1, 0))
        within = before + ranks - (cum[pos] - self.counts[pos]) if cum.size else ranks * 0
        return pos, within

    def order_statistics(self, ranks: np.ndarray) -> np.ndarray:
        """The value of 0-based rank ``ranks[..., f]`` among feature ``f``'s sorted values."""
        ranks = np.asarray(ranks, np.int64)
        n = self.total
        if self.counts.size == 0:
            return np.full(ranks.shape, np.nan)
        pos, within = self.locate(ranks)
        b, drop = self.keys[pos], np.broadcast_to(self.drop, ranks.shape)
        lo, hi = bucket_bounds(b, drop)
        # every value of the bucket lies in [lo, hi], and in the exact bounds known around it
        lo = np.maximum(np.maximum(lo, self.min), np.where(b >= 0, self.pos_min, -np.inf))
        hi = np.minimum(np.minimum(hi, self.max), np.where(b < 0, self.neg_max, np.inf))
        est = lo + (hi - lo) * ((within + 0.5) / self.counts[pos])
        negatives = _negatives(self)
        exact = [
            (ranks == 0, self.min),
            (ranks == n - 1, self.max),
            (ranks == negatives - 1, self.neg_max),
            (ranks == negatives, self.pos_min),
        ]
        for where, value in exact:
            est = np.where(where, value, est)
        return np.where(drop == 0, key_values(b), est)


def linear_positions(
    n: np.ndarray, levels: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy's linear method: the ranks below and above each level's virtual index (clipped to
    the last value), and gamma, computed by the same float64 operations; ``(levels, F)``."""
    q = np.asarray(levels, np.float64).reshape(-1, 1)
    virtual = (n - 1) * q
    prev = np.floor(virtual)
    last = virtual >= n - 1
    lo_rank = np.where(last, n - 1, prev).astype(np.int64)
    hi_rank = np.where(last, n - 1, prev + 1).astype(np.int64)
    gamma = virtual - np.where(last, -1.0, prev)  # numpy's gamma (irrelevant when last)
    return np.maximum(lo_rank, 0), np.maximum(hi_rank, 0), gamma


FIELDS = ("drop", "offsets", "keys", "counts", "min", "max", "neg_max", "pos_min")
_EXACT_FIELDS = ("min", "max", "neg_max", "pos_min")
_EXACT_MERGE = {"min": np.minimum, "max": np.maximum, "neg_max": np.maximum, "pos_min": np.minimum}


def _negatives(s: Sketch) -> np.ndarray:
    """Values below zero per feature (keys are negative exactly for negative values)."""
    cum = np.concatenate(([0], np.cumsum(np.where(s.keys < 0, s.counts, 0))))
    return cum[s.offsets[1:]] - cum[s.offsets[:-1]]


def numpy_lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's ``numpy_lerp`` (the same operations, so the same bits as ``numpy.quantile``)."""
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def _combine(
    feats: np.ndarray, keys: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by (feature, key) and add the counts of equal pairs."""
    if feats.size == 0:
        return feats, keys, counts
    order = np.argsort(_composite(feats, keys), kind="stable")
    feats, keys, counts = feats[order], keys[order], counts[order]
    start = np.ones(feats.size, bool)
    start[1:] = (feats[1:] != feats[:-1]) | (keys[1:] != keys[:-1])
    idx = np.flatnonzero(start)
    return feats[idx], keys[idx], np.add.reduceat(counts, idx).astype(np.int64)


def _composite(feats: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """One int64 per entry ordered as (feature, key), so that a stable argsort (timsort: linear
    on the two sorted runs of a merge) replaces a lexsort: ``feature * span + key`` when the
    keys span little (buckets), else the key's rank among the distinct keys."""
    lo, hi = int(keys.min()), int(keys.max())
    span = hi - lo + 1
    if span * (int(feats.max()) + 1) < 2**62:
        return feats * span + (keys - lo)
    distinct, rank = np.unique(keys, return_inverse=True)
    return feats * distinct.size + rank.reshape(-1)


def offsets_of(feats: np.ndarray, n_features: int) -> np.ndarray:
    return np.searchsorted(feats, np.arange(n_features + 1)).astype(np.int64)


def well_formed(s: Sketch, n: int) -> bool:
    """Shapes agree, offsets partition the entries, counts are positive, and each feature's
    keys are strictly increasing (quantiles walk them in order)."""
    if not (
        all(getattr(s, k).shape == (n,) for k in ("drop", *_EXACT_FIELDS))
        and s.offsets.shape == (n + 1,)
        and s.keys.shape == s.counts.shape
        and s.offsets[0] == 0
        and s.offsets[-1] == s.keys.size
        and (np.diff(s.offsets) >= 0).all()
        and (s.counts > 0).all()
        and ((s.drop >= 0) & (s.drop <= 52)).all()
    ):
        return False
    rising = np.diff(s.keys) > 0
    starts = s.offsets[1:-1]
    rising[starts[(starts > 0) & (starts < s.keys.size)] - 1] = True  # a new feature begins
    return bool(rising.all())
