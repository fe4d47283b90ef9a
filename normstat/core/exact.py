"""Exact quantiles of any data: radix selection over further passes (``fit --exact``).

The one-pass summary (:class:`Sketch`) names, for each level, the buckets that hold the two order
statistics it needs, and their ranks inside them. A further pass counts only the values in those
buckets (:class:`Refinement`, run by the per-chunk step of any engine and merged by the same
tree), at full resolution, so the order statistics become single values; a bucket too full to
list is narrowed 16 bits at a time instead. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from normstat.core.quantiles import (
    Sketch,
    coarsen,
    key_values,
    linear_positions,
    numpy_lerp,
    offsets_of,
    ordered_keys,
)
from normstat.errors import DataError


@dataclass(frozen=True)
class Refinement:
    """A later pass of an exact selection: count only the values whose bucket at ``within[f]`` is
    one of feature ``f``'s target buckets, at the finer resolution ``drop[f]``."""

    within: np.ndarray  # int64 (F,)
    drop: np.ndarray  # int64 (F,)
    feats: np.ndarray  # int64 (T,): the targets' features, sorted
    prefixes: np.ndarray  # int64 (T,): the target buckets (keys at ``within``)

    def build(self, rows: np.ndarray, first: int) -> Sketch:
        x = np.asarray(rows, np.float64)
        f = x.shape[1]
        feats, keys, counts = [], [], []
        for j in range(f):
            g = first + j
            lo, hi = np.searchsorted(self.feats, g), np.searchsorted(self.feats, g, "right")
            if lo == hi:
                continue
            col = x[:, j]
            k = ordered_keys(col[~np.isnan(col)])
            k = coarsen(k[np.isin(coarsen(k, self.within[g]), self.prefixes[lo:hi])], self.drop[g])
            u, c = np.unique(k, return_counts=True)
            feats.append(np.full(u.size, j, np.int64))
            keys.append(u)
            counts.append(c.astype(np.int64))
        empty = Sketch.empty(f)
        fl = np.concatenate(feats) if feats else empty.keys
        return Sketch(
            self.drop[first : first + f].copy(),
            offsets_of(fl, f),
            np.concatenate(keys) if keys else empty.keys,
            np.concatenate(counts) if counts else empty.counts,
            empty.min,
            empty.max,
            empty.neg_max,
            empty.pos_min,
        )


REFINE_BITS = 16
"""Key bits resolved per refinement pass when a target bucket holds too many values to list."""
LIST_LIMIT = 2**20
"""A target bucket with at most this many values is resolved to exact values in one pass."""


class ExactSearch:
    """Exact quantiles by radix selection over passes: pass 1's summary names, for each level,
    the buckets holding the two order statistics needed; each further pass counts only the values
    in those buckets, more finely, until the order statistics are single values (``drop == 0``).

    Usually one more pass (a bucket 0.8% wide rarely holds more than ``LIST_LIMIT`` values);
    memory stays bounded by ``LIST_LIMIT`` or ``2**REFINE_BITS`` entries per target.
    """

    def __init__(self, sketch: Sketch, levels: Sequence[float]) -> None:
        self.n = sketch.total
        lo, hi, self.gamma = linear_positions(self.n, levels)
        ranks = np.stack((lo, hi))  # (2, L, F)
        self.shape = ranks.shape
        self.feat = np.broadcast_to(np.arange(sketch.n_features), ranks.shape).ravel()
        pos, within = sketch.locate(ranks)
        pos, self.within = pos.ravel(), within.ravel()
        has = (self.n[self.feat] > 0) & (sketch.keys.size > 0)
        self.prefix = np.where(has, sketch.keys[pos] if has.any() else 0, 0)
        self.size = np.where(has, sketch.counts[pos] if has.any() else 0, 0)
        self.drop = np.where(has, sketch.drop[self.feat], 0)
        self.n_features = sketch.n_features
        self._pending: Refinement | None = None

    def next_refinement(self) -> Refinement | None:
        """What the next pass counts, or ``None`` when every order statistic is exact."""
        open_ = self.drop > 0
        if not open_.any():
            return None
        within = np.zeros(self.n_features, np.int64)
        np.maximum.at(within, self.feat, self.drop)
        biggest = np.zeros(self.n_features, np.int64)
        np.maximum.at(biggest, self.feat[open_], self.size[open_])
        drop = np.where(biggest <= LIST_LIMIT, 0, np.maximum(within - REFINE_BITS, 0))
        pairs = np.unique(np.stack((self.feat[open_], self.prefix[open_]), axis=1), axis=0)
        self._pending = Refinement(within, drop, pairs[:, 0].copy(), pairs[:, 1].copy())
        return self._pending

    def absorb(self, counted: Sketch) -> None:
        """Narrow every open order statistic to the finer entry of ``counted`` that holds it."""
        r = self._pending
        assert r is not None
        for f in np.unique(self.feat[self.drop > 0]).tolist():
            idx = np.flatnonzero((self.feat == f) & (self.drop > 0))
            keys = counted.keys[counted.offsets[f] : counted.offsets[f + 1]]
            counts = counted.counts[counted.offsets[f] : counted.offsets[f + 1]]
            cum = np.cumsum(counts)
            parents = coarsen(keys, r.within[f] - r.drop[f])
            start = np.searchsorted(parents, self.prefix[idx])
            stop = np.searchsorted(parents, self.prefix[idx], side="right")
            base = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0)
            held = np.where(stop > 0, cum[np.maximum(stop - 1, 0)], 0) - base
            if (held != self.size[idx]).any():
                bad = int(np.argmax(held != self.size[idx]))
                raise DataError(
                    "the data changed between the passes of --exact (a bucket held "
                    f"{int(self.size[idx][bad])} values, then {int(held[bad])})"
                )
            at = np.searchsorted(cum, base + self.within[idx], side="right")
            self.within[idx] = base + self.within[idx] - (cum[at] - counts[at])
            self.prefix[idx], self.size[idx] = keys[at], counts[at]
            self.drop[idx] = r.drop[f]

    def quantiles(self) -> np.ndarray:
        """``(levels, F)``: the exact quantiles (once :meth:`next_refinement` gives ``None``)."""
        values = key_values(self.prefix).reshape(self.shape)
        return np.where(self.n > 0, numpy_lerp(values[0], values[1], self.gamma), np.nan)
