"""Statistics per group (``--by COL``) and weighted statistics (``--weights COL``).

Both are one kernel: the corrected two-pass formula of :mod:`normstat.core.moments`, run over
the runs of each group's rows at once with ``np.add.reduceat`` (rows sorted by group once per
chunk; not at all when each group's rows are already together, as a LeRobot file's episodes
are), every sum weighted by the row's weight (1 without weights). Weighted pooled statistics
are the same kernel with a single group.

The weighted state is the unweighted one with the count's role in Chan's update taken by the
*sum of weights* ``W`` (kept in :attr:`Moments.weight`): ``mean = sum w x / W`` and ``m2 = sum
w (x - mean)**2``, so ``var = m2 / W`` is scikit-learn's ``StandardScaler(sample_weight=w)``
and numpy's ``average(..., weights=w)``. A row of weight 0 counts as absent (not in ``count``,
``min`` or ``max``), as scikit-learn treats it: an integer weight ``k`` equals the row repeated
``k`` times, and 0 equals the row removed.

:class:`GroupedMoments` keeps one :class:`Moments` per distinct key, the keys sorted; two of
them merge by aligning their keys (a union) and running the elementwise Chan merge over the
(groups, features) arrays, so merges are exact and independent of chunking like the pooled
ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from normstat.core.moments import Moments


@dataclass(frozen=True)
class GroupIndex:
    """How a chunk's rows fall into groups: ``keys`` (sorted, distinct), and the rows taken
    in ``order`` (None: as they are) form one run per group, starting at ``starts``."""

    keys: np.ndarray
    order: np.ndarray | None
    starts: np.ndarray
    sizes: np.ndarray

    @classmethod
    def from_codes(cls, codes: np.ndarray, values: np.ndarray) -> GroupIndex:
        """``codes[i]``: the index into ``values`` (distinct, any order) of row i's key."""
        codes = np.asarray(codes)
        rank = np.empty(len(values), np.int64)
        by_key = np.argsort(values, kind="stable")
        rank[by_key] = np.arange(len(values))
        code = rank[codes] if len(codes) else codes.astype(np.int64)
        used = np.zeros(len(values), bool)
        used[code] = True  # a dictionary may hold values no row has
        if not used.all():
            keep = np.flatnonzero(used[by_key])
            remap = np.full(len(values), -1, np.int64)
            remap[keep] = np.arange(len(keep))
            code, by_key = remap[code], by_key[keep]
        return cls._runs(code, values[by_key])

    @classmethod
    def from_keys(cls, keys: np.ndarray) -> GroupIndex:
        """Rows' keys given directly (an array of numbers or strings). Keys already in order
        (a LeRobot file's episodes) are cut into runs where they change: no sort, no hash."""
        keys = np.asarray(keys)
        if keys.ndim != 1:
            raise ValueError(f"keys must be one-dimensional, received shape {list(keys.shape)}")
        if keys.dtype.kind in "iu" and len(keys) and (keys[1:] >= keys[:-1]).all():
            starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1].astype(np.int64)
            sizes = np.diff(np.r_[starts, len(keys)]).astype(np.int64)
            return cls(keys[starts].astype(np.int64), None, starts, sizes)
        values, code = np.unique(keys, return_inverse=True)
        return cls._runs(code.reshape(-1), values)

    @classmethod
    def of(cls, keys: np.ndarray | tuple[np.ndarray, np.ndarray]) -> GroupIndex:
        """From the keys (an array) or from ``(codes, values)`` (a dictionary encoding)."""
        return cls.from_codes(*keys) if isinstance(keys, tuple) else cls.from_keys(keys)

    @classmethod
    def single(cls, n: int) -> GroupIndex:
        """All ``n`` rows as one group (weighted pooled statistics)."""
        return cls(np.zeros(1, np.int64), None, np.zeros(1, np.int64), np.array([n]))

    @classmethod
    def _runs(cls, code: np.ndarray, keys: np.ndarray) -> GroupIndex:
        n = len(code)
        if n == 0:
            return cls(keys[:0], None, np.zeros(0, np.int64), np.zeros(0, np.int64))
        change = np.flatnonzero(code[1:] != code[:-1]) + 1
        together = len(change) + 1 == len(keys)  # each group's rows are one run already
        if together and (len(change) == 0 or (np.diff(code[np.r_[0, change]]) > 0).all()):
            order = None
        else:
            order = np.argsort(code, kind="stable")
            sorted_code = code[order]
            change = np.flatnonzero(sorted_code[1:] != sorted_code[:-1]) + 1
        starts = np.r_[0, change].astype(np.int64)
        sizes = np.diff(np.r_[starts, n]).astype(np.int64)
        return cls(keys, order, starts, sizes)

    @property
    def n_groups(self) -> int:
        return len(self.keys)


def moments_of(arrays: Iterable[np.ndarray]) -> Moments:
    """Moments from its fields in :meth:`Moments.arrays` order (any shape)."""
    return Moments(*arrays)  # type: ignore[arg-type]


def grouped_moments(
    columns: Sequence[np.ndarray],
    index: GroupIndex,
    weights: np.ndarray | None = None,
    work: Workspace | None = None,
) -> Moments:
    """Moments of each group (rows of the arrays) and feature (columns), one column at a time.

    ``weights``: non-negative finite float64 per row (checked by the caller, who can name the
    row), or None for unit weights. NaN values are skipped per feature; inf must have been
    refused before. The result's arrays are ``(groups, features)``. ``work``: the chunk's
    :class:`Workspace`, when the caller reduces its columns one call at a time.
    """
    if work is None:
        w = None
        if weights is not None:
            w = np.asarray(weights, np.float64)
            w = w if index.order is None else w[index.order]
        work = Workspace(index, w)
    w = work.weights
    if (weights is None) != (w is None):
        raise ValueError("the workspace was made for other weights")
    parts = [_column(np.asarray(c), index, w, work) for c in columns]
    fields = zip(*(p.arrays() for p in parts), strict=True)
    stacked = [np.stack(f, axis=1) for f in fields]
    out = moments_of(stacked)
    if w is not None:
        out.weight = np.stack([p.weight for p in parts], axis=1)  # type: ignore[misc]
    return out


def _column(
    x: np.ndarray, index: GroupIndex, w: np.ndarray | None, work: Workspace | None
) -> Moments:
    g = index.n_groups
    if g == 0:
        empty = Moments.empty(0)
        if w is not None:
            empty.weight = np.zeros(0)
        return empty
    xs = x if index.order is None else x[index.order]
    nan = np.isnan(xs) if xs.dtype.kind == "f" else None
    if nan is None or not nan.any():
        work = work or Workspace(index, w)
        return _dense(xs, index, work) if w is None else _weighted_dense(xs, index, work)
    return _masked(xs, index, w, nan)


BLOCK_ROWS = 1 << 16
"""Rows of the deviations held at once (512 KiB of float64: they stay in cache while summed),
cut at group boundaries; a larger group is a block of its own."""


class Workspace:
    """What every column of a chunk shares: each row's group, blocks of whole groups, and two
    float64 buffers of a block, reused column after column (fresh full-chunk temporaries per
    column cost more in page faults than the arithmetic)."""

    def __init__(self, index: GroupIndex, weights: np.ndarray | None = None) -> None:
        """``weights``: float64 per row, in the index's order (the rows taken by ``order``)."""
        starts, n = index.starts, int(index.sizes.sum())
        self.weights = weights
        if weights is not None and index.n_groups:
            self.positive = weights > 0
            self.all_positive = bool(self.positive.all())
            self.count = np.add.reduceat(self.positive, starts, dtype=np.int64)
            self.total = np.add.reduceat(weights, starts)
        self.row_group = np.repeat(np.arange(index.n_groups), index.sizes)
        first = np.r_[0, np.flatnonzero(np.diff(starts // BLOCK_ROWS)) + 1]
        ends = np.r_[first[1:], len(starts)]
        rows = np.r_[starts, n]
        self.blocks = [
            (int(rows[a]), int(rows[b]), int(a), int(b)) for a, b in zip(first, ends, strict=True)
        ]
        widest = max((hi - lo for lo, hi, _, _ in self.blocks), default=0)
        self.dev = np.empty(widest)
        self.square = np.empty(widest)


def _dense(xs: np.ndarray, index: GroupIndex, work: Workspace) -> Moments:
    """The corrected two-pass formula per group, the deviations a block of groups at a time."""
    starts, sizes = index.starts, index.sizes
    mean = np.add.reduceat(xs, starts, dtype=np.float64) / sizes
    corr, squares = np.empty(len(sizes)), np.empty(len(sizes))
    for lo, hi, g_lo, g_hi in work.blocks:
        dev, sq = work.dev[: hi - lo], work.square[: hi - lo]
        np.take(mean, work.row_group[lo:hi], out=dev)
        np.subtract(xs[lo:hi], dev, out=dev)
        at = starts[g_lo:g_hi] - lo
        corr[g_lo:g_hi] = np.add.reduceat(dev, at)
        squares[g_lo:g_hi] = np.add.reduceat(np.multiply(dev, dev, out=sq), at)
    m2 = squares - corr * corr / sizes
    return Moments(
        count=sizes.copy(),
        nan_count=np.zeros(len(sizes), np.int64),
        dmean=corr / sizes,
        m2=np.maximum(m2, 0.0),
        min=np.minimum.reduceat(xs, starts).astype(np.float64),
        max=np.maximum.reduceat(xs, starts).astype(np.float64),
        shift=mean,
    )


def _weighted_dense(xs: np.ndarray, index: GroupIndex, work: Workspace) -> Moments:
    """:func:`_dense` with weights (no NaN): ``mean = sum w x / W``, ``m2 = sum w (x -
    mean)**2``, the corrected two-pass per group; rows of weight 0 count nowhere."""
    assert work.weights is not None
    w, starts, g = work.weights, index.starts, index.n_groups
    total, count = work.total, work.count
    has = count > 0
    inv = np.divide(1.0, total, out=np.zeros(g), where=total > 0)
    sums, corr, squares = np.empty(g), np.empty(g), np.empty(g)
    for lo, hi, g_lo, g_hi in work.blocks:
        at = starts[g_lo:g_hi] - lo
        sums[g_lo:g_hi] = np.add.reduceat(
            np.multiply(xs[lo:hi], w[lo:hi], out=work.dev[: hi - lo]), at
        )
    mean = sums * inv
    for lo, hi, g_lo, g_hi in work.blocks:
        dev, sq = work.dev[: hi - lo], work.square[: hi - lo]
        at = starts[g_lo:g_hi] - lo
        np.take(mean, work.row_group[lo:hi], out=dev)
        np.subtract(xs[lo:hi], dev, out=dev)
        corr[g_lo:g_hi] = np.add.reduceat(np.multiply(dev, w[lo:hi], out=sq), at)
        squares[g_lo:g_hi] = np.add.reduceat(np.multiply(sq, dev, out=sq), at)
    m2 = squares - corr * corr * inv
    if work.all_positive:
        lo_, hi_ = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    else:
        counted = np.where(work.positive, xs, np.nan)
        lo_, hi_ = np.fmin.reduceat(counted, starts), np.fmax.reduceat(counted, starts)
    out = Moments(
        count=count.copy(),
        nan_count=np.zeros(g, np.int64),
        dmean=np.where(has, corr * inv, 0.0),
        m2=np.where(has, np.maximum(m2, 0.0), 0.0),
        min=np.where(has, lo_, np.inf),
        max=np.where(has, hi_, -np.inf),
        shift=np.where(has, mean, 0.0),
    )
    out.weight = np.where(has, total, 0.0)
    return out


def _masked(
    xs: np.ndarray, index: GroupIndex, w: np.ndarray | None, nan: np.ndarray | None
) -> Moments:
    starts, sizes = index.starts, index.sizes
    valid = np.ones(len(xs), bool) if nan is None else ~nan
    nan_count = np.zeros(len(sizes), np.int64) if nan is None else np.add.reduceat(nan, starts)
    if w is not None:
        valid &= w > 0
    we = valid.astype(np.float64) if w is None else np.where(valid, w, 0.0)
    x0 = np.where(valid, xs, 0.0)
    count = np.add.reduceat(valid, starts, dtype=np.int64)
    total = np.add.reduceat(we, starts)
    inv = np.divide(1.0, total, out=np.zeros(total.shape), where=total > 0)
    mean = np.add.reduceat(we * x0, starts) * inv
    dev = np.where(valid, x0 - np.repeat(mean, sizes), 0.0)
    wdev = we * dev
    corr = np.add.reduceat(wdev, starts)
    m2 = np.add.reduceat(wdev * dev, starts) - corr * corr * inv
    masked = np.where(valid, xs, np.nan)
    lo = np.fmin.reduceat(masked, starts)
    hi = np.fmax.reduceat(masked, starts)
    has = count > 0
    out = Moments(
        count=count,
        nan_count=nan_count.astype(np.int64),
        dmean=np.where(has, corr * inv, 0.0),
        m2=np.where(has, np.maximum(m2, 0.0), 0.0),
        min=np.where(has, lo, np.inf),
        max=np.where(has, hi, -np.inf),
        shift=np.where(has, mean, 0.0),
    )
    if w is not None:
        out.weight = np.where(has, total, 0.0)
    return out


def weighted_moments(
    columns: Sequence[np.ndarray], weights: np.ndarray, work: Workspace | None = None
) -> Moments:
    """Weighted moments of whole columns (one group), flat over features. ``work``: a
    :class:`Workspace` of ``GroupIndex.single(n)`` and these weights, shared by calls."""
    n = len(weights)
    if n == 0:
        out = Moments.empty(len(columns))
        out.weight = np.zeros(len(columns))
        return out
    if work is None:
        work = Workspace(GroupIndex.single(n), np.asarray(weights, np.float64))
    m = grouped_moments(columns, GroupIndex.single(n), weights, work)
    flat = moments_of(a[0] for a in m.arrays())
    flat.weight = m.weight[0]  # type: ignore[index]
    return flat


def check_weights(weights: np.ndarray) -> int | None:
    """The index of the first weight that is negative, NaN or infinite, else None."""
    w = np.asarray(weights)
    if w.dtype.kind in "iub":
        bad = w < 0 if w.dtype.kind == "i" else None
    else:
        with np.errstate(invalid="ignore"):
            bad = ~(w >= 0) | np.isinf(w)
    if bad is None or not bad.any():
        return None
    return int(np.argmax(bad))


@dataclass
class GroupedMoments:
    """Moments per group: ``keys`` sorted and distinct, ``moments`` of ``(groups, features)``."""

    keys: np.ndarray
    moments: Moments

    @property
    def n_groups(self) -> int:
        return len(self.keys)

    def merge(self, other: GroupedMoments) -> GroupedMoments:
        """Exact: each group's moments merged by Chan's update (groups one side lacks merge
        with the empty state, an exact identity)."""
        if self.keys.dtype.kind != other.keys.dtype.kind and len(self.keys) and len(other.keys):
            raise ValueError(
                f"group keys of different kinds cannot be merged: {self.keys.dtype} and "
                f"{other.keys.dtype}"
            )
        if len(self.keys) == len(other.keys) and np.array_equal(self.keys, other.keys):
            return GroupedMoments(self.keys, self.moments.merge(other.moments))
        keys = np.union1d(self.keys, other.keys)
        a = _spread(self.moments, np.searchsorted(keys, self.keys), len(keys))
        b = _spread(other.moments, np.searchsorted(keys, other.keys), len(keys))
        return GroupedMoments(keys, a.merge(b))

    @classmethod
    def join(cls, parts: Sequence[GroupedMoments]) -> GroupedMoments:
        """Groups of disjoint *features* side by side (the same rows, so the same keys)."""
        keys = parts[0].keys
        fields = zip(*(p.moments.arrays() for p in parts), strict=True)
        arrays = (np.concatenate(f, axis=1) for f in fields)
        moments = moments_of(arrays)
        weights = [p.moments.weight for p in parts]
        if all(w is not None for w in weights):
            moments.weight = np.concatenate(weights, axis=1)  # type: ignore[arg-type]
        return cls(keys, moments)

    def group(self, i: int) -> Moments:
        """The flat moments of group ``i``."""
        m = moments_of(a[i] for a in self.moments.arrays())
        if self.moments.weight is not None:
            m.weight = self.moments.weight[i]
        return m

    def flat(self) -> Moments:
        """All groups' moments flat (``groups * features``), for :class:`~normstat.core.stats.
        Stats` of feature shape ``(groups, features)``."""
        m = moments_of(a.reshape(-1) for a in self.moments.arrays())
        if self.moments.weight is not None:
            m.weight = self.moments.weight.reshape(-1)
        return m


def _spread(m: Moments, at: np.ndarray, n: int) -> Moments:
    """``m``'s rows placed at rows ``at`` of ``n`` rows; the others empty."""
    f = m.count.shape[1] if m.count.ndim == 2 else 0
    out = Moments.empty(n * f)
    arrays = [a.reshape(n, f) for a in out.arrays()]
    for dst, src in zip(arrays, m.arrays(), strict=True):
        dst[at] = src
    spread = moments_of(arrays)
    if m.weight is not None:
        spread.weight = np.zeros((n, f))
        spread.weight[at] = m.weight
    return spread


def std_change(pooled: Moments, groups: GroupedMoments, ddof: int = 0) -> np.ndarray:
    """``(groups, features)``: how much each group moves the pooled std, as the relative
    change ``(std - std_without) / std`` where ``std_without`` is the std of every row but the
    group's (positive: the group widens the pooled spread). Exact from the moments: Chan's
    merge run backwards (the pooled less the group), no pass over the data; NaN where either
    std is undefined (a group that is all the data, a constant feature)."""
    g = groups.moments
    wg, wp = g.total_weight, pooled.total_weight
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        rest = wp - wg
        delta = np.where(g.count > 0, g.mean - pooled.mean, 0.0)
        rest_m2 = pooled.m2 - g.m2 - np.where(rest > 0, wg * wp / rest, np.nan) * delta * delta
        rest_std = np.sqrt(np.maximum(rest_m2, 0.0) / (rest - ddof))
        std = np.sqrt(pooled.m2 / (wp - ddof))
        change = (std - rest_std) / std
    return np.where(np.isfinite(change), change, np.nan)
