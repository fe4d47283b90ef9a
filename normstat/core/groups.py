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

from collections.abc import Callable, Iterable, Sequence
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
    check: Callable[[], None] | None = None,
) -> Moments:
    """Moments of each group (rows of the arrays) and feature (columns), one column at a time.

    ``weights``: non-negative finite float64 per row (checked by the caller, who can name the
    row), or None for unit weights. NaN values are skipped per feature; inf must have been
    refused before, or ``check`` given: it is called when a column's sums show a NaN or an inf
    (seen at no extra read), before the NaN-skipping kernel runs, and raises (naming the row)
    when the value is forbidden. The result's arrays are ``(groups, features)``. ``work``: the
    chunk's :class:`Workspace`, when the caller reduces its columns one call at a time.
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
    parts = [_column(np.asarray(c), index, w, work, check) for c in columns]
    if len(parts) == 1:  # one column at a time (a table's): views, no copies
        out = moments_of(a.reshape(-1, 1) for a in parts[0].arrays())
        if w is not None:
            out.weight = parts[0].weight.reshape(-1, 1)  # type: ignore[union-attr]
        return out
    fields = zip(*(p.arrays() for p in parts), strict=True)
    stacked = [np.stack(f, axis=1) for f in fields]
    out = moments_of(stacked)
    if w is not None:
        out.weight = np.stack([p.weight for p in parts], axis=1)  # type: ignore[misc]
    return out


def pooled_moments(groups: Moments) -> Moments:
    """The flat moments of all the rows from the moments of their groups (``(groups,
    features)``): Chan's merge of every group at once, as the corrected two-pass formula over
    the groups' means (relative to the first counted group's shift, so that data far from 0
    keeps its digits). Exact as any merge; no pass over the rows."""
    count = groups.count.sum(axis=0)
    f = count.shape[0]
    weighted = groups.weight is not None
    w = groups.total_weight
    total = w.sum(axis=0)
    has = groups.count > 0
    first = np.argmax(has, axis=0)
    shift = np.where(has.any(axis=0), groups.shift[first, np.arange(f)], 0.0)
    inv = np.divide(1.0, total, out=np.zeros(f), where=total > 0)
    d = np.where(has, (groups.shift - shift) + groups.dmean, 0.0)
    dmean = (w * d).sum(axis=0) * inv
    e = np.where(has, d - dmean, 0.0)
    we = w * e
    corr = we.sum(axis=0)
    m2 = groups.m2.sum(axis=0) + (we * e).sum(axis=0) - corr * corr * inv
    out = Moments(
        count=count,
        nan_count=groups.nan_count.sum(axis=0),
        dmean=dmean + corr * inv,
        m2=np.maximum(m2, 0.0),
        min=groups.min.min(axis=0, initial=np.inf),
        max=groups.max.max(axis=0, initial=-np.inf),
        shift=shift,
    )
    if weighted:
        out.weight = total
    return out


def _column(
    x: np.ndarray,
    index: GroupIndex,
    w: np.ndarray | None,
    work: Workspace | None,
    check: Callable[[], None] | None = None,
) -> Moments:
    g = index.n_groups
    if g == 0:
        empty = Moments.empty(0)
        if w is not None:
            empty.weight = np.zeros(0)
        return empty
    xs = x if index.order is None else x[index.order]
    work = work or Workspace(index, w)
    dense = _dense(xs, index, work)
    if dense is not None:
        return dense
    if check is not None:
        check()
    nan = np.isnan(xs) if xs.dtype.kind == "f" else None
    return _masked(xs, index, w, nan)


BLOCK_ROWS = 1 << 16
"""Rows of the deviations held at once (512 KiB of float64: they stay in cache while summed);
a group across a block's edge has its sums added from both blocks."""
SHIFT_RERUN = 16.0
"""Take a group's sums again, shifted by its mean, when ``(mean - first)**2 > SHIFT_RERUN *
var`` (the rule of the pooled kernel, :data:`normstat.core.blocked.SHIFT_RERUN`)."""


class Workspace:
    """What every column of a chunk shares: the blocks of rows (each with its groups, where
    they start in it and how many of its rows each has), and two float64 buffers of a block,
    reused column after column (fresh full-chunk temporaries per column cost more in page
    faults than the arithmetic)."""

    def __init__(self, index: GroupIndex, weights: np.ndarray | None = None) -> None:
        """``weights``: float64 per row, in the index's order (the rows taken by ``order``)."""
        starts, n = index.starts, int(index.sizes.sum())
        self.weights = weights
        self.all_positive = True
        if weights is not None and index.n_groups:
            self.positive = weights > 0
            self.zero = ~self.positive
            self.all_positive = bool(self.positive.all())
            self.count = np.add.reduceat(self.positive, starts, dtype=np.int64)
            self.total = np.add.reduceat(weights, starts)
        self.blocks: list[tuple[int, int, int, int, np.ndarray, np.ndarray]] = []
        for lo in range(0, n, BLOCK_ROWS):
            hi = min(lo + BLOCK_ROWS, n)
            g_lo = int(np.searchsorted(starts, lo, "right")) - 1
            g_hi = int(np.searchsorted(starts, hi, "left"))
            at = np.maximum(starts[g_lo:g_hi], lo) - lo
            rows = np.diff(np.r_[at, hi - lo])
            self.blocks.append((lo, hi, g_lo, g_hi, at, rows))
        self.dev = np.empty(min(n, BLOCK_ROWS))
        self.square = np.empty(min(n, BLOCK_ROWS))


def _dense(xs: np.ndarray, index: GroupIndex, work: Workspace) -> Moments | None:
    """Each group's moments in one read of ``xs``, or None if it holds a NaN or an inf.

    The deviations from a shift per group (its first row, as the pooled kernel shifts by its
    first values) are formed a block at a time in cache, summed, squared and summed: ``mean =
    shift + s / W`` and ``m2 = q - s**2 / W``, the corrected two-pass formula with that shift.
    A group whose first row lies more than 4 standard deviations from its mean is summed again
    from its mean (then the corrected two-pass formula exactly)."""
    w = work.weights
    g = index.n_groups
    shift = xs[index.starts].astype(np.float64)
    with np.errstate(all="ignore"):  # inf - inf, overflowing squares: seen in the sums
        s, q = _shifted_sums(xs, shift, work)
        if not np.isfinite(q).all():
            return None
        size = index.sizes if w is None else work.total
        inv = np.divide(1.0, size, out=np.zeros(g), where=size > 0)
        m2 = q - s * s * inv
        again = s * s > SHIFT_RERUN * size * m2
        if again.any():
            shift = np.where(again, shift + s * inv, shift)
            s, q = _shifted_sums(xs, shift, work)
            m2 = q - s * s * inv
    lo, hi = _ranges(xs, work, g)
    if w is None:
        return Moments(
            count=index.sizes.copy(),
            nan_count=np.zeros(g, np.int64),
            dmean=s * inv,
            m2=np.maximum(m2, 0.0),
            min=lo,
            max=hi,
            shift=shift,
        )
    has = work.count > 0
    out = Moments(
        count=work.count.copy(),
        nan_count=np.zeros(g, np.int64),
        dmean=np.where(has, s * inv, 0.0),
        m2=np.where(has, np.maximum(m2, 0.0), 0.0),
        min=np.where(has, lo, np.inf),
        max=np.where(has, hi, -np.inf),
        shift=np.where(has, shift, 0.0),
    )
    out.weight = np.where(has, work.total, 0.0)
    return out


def _shifted_sums(
    xs: np.ndarray, shift: np.ndarray, work: Workspace
) -> tuple[np.ndarray, np.ndarray]:
    """Per group, ``sum(w (x - shift))`` and ``sum(w (x - shift)**2)`` (w = 1 unweighted),
    a block of rows at a time: cast into a float64 buffer, the block's shifts subtracted (each
    group's repeated over its rows), reduced there."""
    g = len(shift)
    s, q = np.zeros(g), np.zeros(g)
    w = work.weights
    for lo, hi, g_lo, g_hi, at, rows in work.blocks:
        d, sq = work.dev[: hi - lo], work.square[: hi - lo]
        d[...] = xs[lo:hi]  # a plain cast, then same-type arithmetic: faster than a mixed one
        if g_hi - g_lo == 1:  # one group (a long one, or the weighted pooled statistics)
            d -= shift[g_lo]
            if w is not None:
                np.multiply(d, w[lo:hi], out=sq)
                s[g_lo] += sq.sum()
                q[g_lo] += np.multiply(sq, d, out=sq).sum()
            else:
                s[g_lo] += d.sum()
                q[g_lo] += np.multiply(d, d, out=sq).sum()
            continue
        d -= np.repeat(shift[g_lo:g_hi], rows)
        if w is not None:
            np.multiply(d, w[lo:hi], out=sq)
            s[g_lo:g_hi] += np.add.reduceat(sq, at)
            q[g_lo:g_hi] += np.add.reduceat(np.multiply(sq, d, out=sq), at)
        else:
            s[g_lo:g_hi] += np.add.reduceat(d, at)
            q[g_lo:g_hi] += np.add.reduceat(np.multiply(d, d, out=sq), at)
    return s, q


def _ranges(xs: np.ndarray, work: Workspace, g: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group (``g`` of them), the min and max of the counted rows (weight > 0), as
    float64, a block at a time (the block is still in cache from the sums)."""
    lo, hi = np.full(g, np.inf), np.full(g, -np.inf)
    if not work.all_positive:  # rows of weight 0 as NaN, a block at a time, then skipped
        for b_lo, b_hi, g_lo, g_hi, at, _ in work.blocks:
            blk = work.square[: b_hi - b_lo]
            blk[...] = xs[b_lo:b_hi]
            np.copyto(blk, np.nan, where=work.zero[b_lo:b_hi])
            np.fmin(lo[g_lo:g_hi], np.fmin.reduceat(blk, at), out=lo[g_lo:g_hi])
            np.fmax(hi[g_lo:g_hi], np.fmax.reduceat(blk, at), out=hi[g_lo:g_hi])
        return lo, hi
    for b_lo, b_hi, g_lo, g_hi, at, _ in work.blocks:
        blk = xs[b_lo:b_hi]
        np.minimum(lo[g_lo:g_hi], np.minimum.reduceat(blk, at), out=lo[g_lo:g_hi])
        np.maximum(hi[g_lo:g_hi], np.maximum.reduceat(blk, at), out=hi[g_lo:g_hi])
    return lo, hi


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
    columns: Sequence[np.ndarray],
    weights: np.ndarray,
    work: Workspace | None = None,
    check: Callable[[], None] | None = None,
) -> Moments:
    """Weighted moments of whole columns (one group), flat over features. ``work``: a
    :class:`Workspace` of ``GroupIndex.single(n)`` and these weights, shared by calls.
    ``check``: as for :func:`grouped_moments`."""
    n = len(weights)
    if n == 0:
        out = Moments.empty(len(columns))
        out.weight = np.zeros(len(columns))
        return out
    if work is None:
        work = Workspace(GroupIndex.single(n), np.asarray(weights, np.float64))
    m = grouped_moments(columns, GroupIndex.single(n), weights, work, check)
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
        at_a, at_b = np.searchsorted(keys, self.keys), np.searchsorted(keys, other.keys)
        if (self.moments.weight is None) != (other.moments.weight is None):
            a, b = _spread(self.moments, at_a, len(keys)), _spread(other.moments, at_b, len(keys))
            return GroupedMoments(keys, a.merge(b))
        # A group one side lacks is the other side's as it is (its merge with the empty state
        # is an exact identity, bit for bit); only the groups both sides hold are merged.
        common, ia, ib = np.intersect1d(
            self.keys, other.keys, assume_unique=True, return_indices=True
        )
        both = _rows(self.moments, ia).merge(_rows(other.moments, ib))
        at = np.searchsorted(keys, common)
        sides = (self.moments, other.moments, both)
        weighted = self.moments.weight is not None
        fields = [m.arrays() + ((m.weight,) if m.weight is not None else ()) for m in sides]
        out = []
        for a, b, m in zip(*fields, strict=True):
            whole = np.empty((len(keys), *a.shape[1:]), a.dtype)
            whole[at_a], whole[at_b], whole[at] = a, b, m
            out.append(whole)
        merged = moments_of(out[:7])
        if weighted:
            merged.weight = out[7]
        return GroupedMoments(keys, merged)

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


def _rows(m: Moments, at: np.ndarray) -> Moments:
    """The groups ``at`` of ``m``."""
    out = moments_of(a[at] for a in m.arrays())
    if m.weight is not None:
        out.weight = m.weight[at]
    return out


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
