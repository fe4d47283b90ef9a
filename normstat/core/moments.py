"""The mergeable per-feature state and its two verbs: build from a chunk, merge with another.

Sufficient statistics only (count, mean, m2, min, max, nan_count); ``ddof`` is applied when
finalising. Inside a chunk the corrected two-pass formula is used; between chunks the Chan et al.
pairwise update. Both run vectorised over the whole chunk, in float64 whatever the input dtype.

The mean is kept as ``shift + dmean``: ``shift`` is a reference value per feature (a chunk's
rounded mean) and ``dmean`` the small remainder. A float64 mean of 1e6 carries a rounding error
of ~1e-10 however it is computed, and the Chan merge multiplies the error of ``mean_b - mean_a``
into ``m2``; with shifts, that difference is ``(shift_b - shift_a) + (dmean_b - dmean_a)``, whose
first term is exact (two nearby floats subtract exactly: Sterbenz) and second is tiny. This keeps
variance accurate to ~1e-13 relative at |mean| / std = 1e6, in any chunking, without any
coordination between chunks (each picks its own shift), so the distributed engine needs none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from normstat.core.quantiles import Sketch

if TYPE_CHECKING:
    from normstat.core.groups import GroupedMoments


@dataclass
class Moments:
    """Sufficient statistics of one or more chunks, flat over features.

    For a feature with ``count == 0``: ``dmean == m2 == 0``, ``min == +inf`` and ``max == -inf``
    (the identities of the merge), which finalise to null statistics.
    """

    count: np.ndarray  # int64
    nan_count: np.ndarray  # int64
    dmean: np.ndarray  # float64: mean - shift
    m2: np.ndarray  # float64, sum of squared deviations from the mean
    min: np.ndarray  # float64
    max: np.ndarray  # float64
    shift: np.ndarray = field(default=None)  # type: ignore[arg-type]  # float64; None: zeros
    sketch: Sketch | None = None
    """The distribution summary (``fit --quantiles`` / ``--histogram``), carried beside the
    moments so that it takes the very same merges; ``None`` when not asked for (or empty)."""
    weight: np.ndarray | None = None
    """float64 sum of the weights of the counted rows (``fit --weights``), which takes the
    count's place in the mean and the merge; ``None``: every row weighs 1."""
    groups: GroupedMoments | None = None
    """The moments of each group (``fit --by``), carried beside the pooled ones through the
    very same merges, as :attr:`sketch` is; ``None`` when not asked for."""

    def __post_init__(self) -> None:
        if self.shift is None:
            self.shift = np.zeros(self.count.shape)

    @classmethod
    def empty(cls, n_features: int) -> Moments:
        return cls(
            count=np.zeros(n_features, np.int64),
            nan_count=np.zeros(n_features, np.int64),
            dmean=np.zeros(n_features),
            m2=np.zeros(n_features),
            min=np.full(n_features, np.inf),
            max=np.full(n_features, -np.inf),
        )

    @property
    def n_features(self) -> int:
        return int(self.count.shape[0])

    @property
    def mean(self) -> np.ndarray:
        return self.shift + self.dmean

    @property
    def total_weight(self) -> np.ndarray:
        """The weight of the counted rows: :attr:`weight`, else the count (float64)."""
        return self.count.astype(np.float64) if self.weight is None else self.weight

    def merge(self, other: Moments) -> Moments:
        """Chan et al.: exact combination of the moments of two disjoint parts (a new value)."""
        return self.copy().merge_into(other)

    def merge_into(self, other: Moments) -> Moments:
        """:meth:`merge`, written over this state's own arrays (returned): for a state nobody
        else holds (a merge tree's own partial results). A wide state is millions of features;
        the out-of-place formula made some twenty fresh full-size temporaries per merge, each
        page-faulted in, so this works in the left state's buffers with four scratch arrays.
        The arithmetic is the very same, operation by operation (so the same bits as before):
        the formula is, for ``a = self`` and ``b = other``::

            shift = where(a.count > 0, a.shift, b.shift)
            ma = where(a.count > 0, a.dmean + (a.shift - shift), 0)  # both means from shift;
            mb = where(b.count > 0, b.dmean + (b.shift - shift), 0)  # an empty side is 0
            w = wa + wb   # the weights, or the counts when unweighted
            frac = wb / w (0 where w == 0);  delta = mb - ma
            dmean = ma + delta * frac;  m2 = a.m2 + b.m2 + delta * delta * wa * frac
        """
        a, b = self, other
        weighted = a.weight is not None or b.weight is not None
        # the weights take the counts' place (exactly the counts when unweighted)
        wa = a.total_weight if weighted else a.count
        wb = b.total_weight if weighted else b.count
        a_has = a.count > 0
        shift = b.shift.copy()
        np.copyto(shift, a.shift, where=a_has)
        # Both means relative to the kept shift (exactly a.dmean where a's shift is kept);
        # an empty side counts as 0 so that merging with an empty state is an exact identity.
        ma = np.subtract(a.shift, shift)
        ma += a.dmean
        np.copyto(ma, 0.0, where=np.logical_not(a_has, out=a_has))
        mb = np.subtract(b.shift, shift)
        mb += b.dmean
        np.copyto(mb, 0.0, where=b.count <= 0)
        w = wa + wb
        frac = np.zeros(w.shape)
        np.divide(wb, w, out=frac, where=w > 0)
        delta = np.subtract(mb, ma, out=mb)
        term = np.multiply(delta, delta, out=a.shift)  # a's old shift is free: scratch
        term *= wa
        term *= frac
        a.m2 += b.m2
        a.m2 += term
        np.multiply(delta, frac, out=a.dmean)
        a.dmean += ma
        a.shift = shift
        a.count = a.count + b.count if weighted else w
        np.add(a.nan_count, b.nan_count, out=a.nan_count)
        np.minimum(a.min, b.min, out=a.min)
        np.maximum(a.max, b.max, out=a.max)
        a.sketch = _merge_sketches(a.sketch, b.sketch)
        a.weight = w if weighted else None
        a.groups = _merge_groups(a.groups, b.groups)
        return a

    @classmethod
    def join(cls, parts: Sequence[Moments]) -> Moments:
        """The moments of disjoint *features* side by side (a table chunk reduced column by
        column), as opposed to :meth:`merge`, which combines disjoint rows."""
        sketches = [p.sketch for p in parts]
        joined = None if any(k is None for k in sketches) else Sketch.join(sketches)  # type: ignore[arg-type]
        arrays = (np.concatenate(f) for f in zip(*(p.arrays() for p in parts), strict=True))
        joined_moments = cls(*arrays)  # type: ignore[arg-type]
        joined_moments.sketch = joined
        weights = [p.weight for p in parts]
        if all(w is not None for w in weights):
            joined_moments.weight = np.concatenate(weights)  # type: ignore[arg-type]
        groups = [p.groups for p in parts]
        if all(g is not None for g in groups) and groups:
            joined_moments.groups = type(groups[0]).join(groups)  # type: ignore[union-attr, arg-type]
        return joined_moments

    def copy(self) -> Moments:
        copied = Moments(*(a.copy() for a in self.arrays()))
        copied.sketch = self.sketch  # immutable: shared
        copied.weight = None if self.weight is None else self.weight.copy()
        copied.groups = self.groups  # never changed in place: shared
        return copied

    def arrays(self) -> tuple[np.ndarray, ...]:
        """All fields, in constructor order (for copies and serialisation)."""
        return (self.count, self.nan_count, self.dmean, self.m2, self.min, self.max, self.shift)


def _merge_groups(a: GroupedMoments | None, b: GroupedMoments | None) -> GroupedMoments | None:
    """A missing side is the identity, as for the distribution summary."""
    if a is None or b is None:
        return b if a is None else a
    return a.merge(b)


def _merge_sketches(a: Sketch | None, b: Sketch | None) -> Sketch | None:
    """A missing summary is the identity (empty moments carry none)."""
    if a is None or b is None:
        return b if a is None else a
    return a.merge(b)


FIELDS: tuple[str, ...] = ("count", "nan_count", "dmean", "m2", "min", "max", "shift")


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
    shift = total / n
    dev = rows - shift  # float64 because shift is
    corr = dev.sum(axis=0)
    m2 = np.einsum("ij,ij->j", dev, dev) - corr * corr / n
    return Moments(
        count=np.full(rows.shape[1], n, np.int64),
        nan_count=np.zeros(rows.shape[1], np.int64),
        dmean=corr / n,
        m2=np.maximum(m2, 0.0),
        min=rows.min(axis=0).astype(np.float64),
        max=rows.max(axis=0).astype(np.float64),
        shift=shift,
    )


def _masked_moments(rows: np.ndarray) -> Moments:
    nan = np.isnan(rows)
    nan_count = nan.sum(axis=0).astype(np.int64)
    count = rows.shape[0] - nan_count
    safe = np.divide(1.0, count, out=np.zeros(count.shape), where=count > 0)
    vals = np.where(nan, 0.0, rows.astype(np.float64, copy=False))
    shift = vals.sum(axis=0) * safe
    dev = np.where(nan, 0.0, vals - shift)
    corr = dev.sum(axis=0)
    m2 = np.einsum("ij,ij->j", dev, dev) - corr * corr * safe
    lo = np.fmin.reduce(rows, axis=0).astype(np.float64)
    hi = np.fmax.reduce(rows, axis=0).astype(np.float64)
    empty = count == 0
    return Moments(
        count=count,
        nan_count=nan_count,
        dmean=corr * safe,
        m2=np.maximum(m2, 0.0),
        min=np.where(empty, np.inf, lo),
        max=np.where(empty, -np.inf, hi),
        shift=shift,
    )


class TreeMerger:
    """Merge in a balanced tree (pairwise, like pairwise summation), keeping order: THE merge
    tree of every engine.

    A binary-counter stack holds O(log n) partial results, so any number of chunks merges with
    error growing like log(n) instead of n, in bounded memory. :meth:`total` can be asked at any
    time (for a checkpoint) without disturbing the tree.

    Each node merges an *aligned block* of ``2**k`` chunks (one starting at a multiple of
    ``2**k``) as ``left.merge(right)`` of its halves. A merger may start at any chunk ``first``
    (a distributed task's share of the chunks); its stack then holds the largest aligned blocks
    that tile its chunks, and two adjacent mergers join (:meth:`joined`) by merging sibling
    blocks where they meet. Every merge is one the single merger over all chunks makes, on the
    same operands in the same order: any split of the chunks into tasks, joined in any order,
    gives the local result bit for bit.
    """

    def __init__(self, n_features: int, first: int = 0) -> None:
        self.n_features = n_features
        self.first = first
        self._stack: list[tuple[int, Moments]] = []  # (level, moments of 2**level chunks)
        # Which stack entries this tree made itself (merge results nobody else holds): those are
        # merged into in place (Moments.merge_into); parts from outside are never written.
        self._mine: list[bool] = []

    @property
    def stop(self) -> int:
        """The chunks ``first:stop`` are merged here (the stack is all the state there is)."""
        return self.first + sum(1 << level for level, _ in self._stack)

    def add(self, part: Moments, level: int = 0) -> None:
        """``part``: the moments of the aligned block of ``2**level`` chunks from :attr:`stop`."""
        at, cur, mine = self.stop, part, False
        while (
            self._stack
            and self._stack[-1][0] == level
            and (at - (1 << level)) % (2 << level) == 0  # the top is the left sibling
        ):
            left = self._stack.pop()[1]
            cur = left.merge_into(cur) if self._mine.pop() else left.merge(cur)
            mine = True
            at -= 1 << level
            level += 1
        self._stack.append((level, cur))
        self._mine.append(mine)

    def joined(self, right: TreeMerger) -> TreeMerger:
        """The merger of this one's chunks followed by ``right``'s (a new value)."""
        if right.first != self.stop:
            raise ValueError(f"mergers are not adjacent: {self.stop} != {right.first}")
        out = TreeMerger(self.n_features, self.first)
        out._stack = list(self._stack)
        out._mine = [False] * len(self._stack)
        self._mine = [False] * len(self._stack)  # both trees now hold these states
        for level, part in right._stack:
            out.add(part, level)
        return out

    @property
    def pending(self) -> list[tuple[int, Moments]]:
        """The partial states waiting to be merged, as (level, moments), bottom of the stack
        first: with :meth:`restore`, all a checkpoint needs to continue the *same* tree, so a
        resumed fit merges exactly as an uninterrupted one (bit for bit). The states handed out
        are no longer merged into in place."""
        self._mine = [False] * len(self._stack)
        return list(self._stack)

    @classmethod
    def restore(cls, n_features: int, pending: Sequence[tuple[int, Moments]]) -> TreeMerger:
        """A tree holding ``pending`` (from :attr:`pending`); levels must strictly decrease."""
        levels = [level for level, _ in pending]
        if any(a <= b for a, b in zip(levels, levels[1:], strict=False)) or any(
            lv < 0 for lv in levels
        ):
            raise ValueError(f"tree levels must be non-negative and decreasing, got {levels}")
        tree = cls(n_features)
        tree._stack = list(pending)
        tree._mine = [False] * len(pending)
        return tree

    def total(self) -> Moments:
        result = Moments.empty(self.n_features)
        for _, m in self._stack:
            result = result.merge_into(m)  # result is this call's own
        return result


def merge_all(parts: Iterable[Moments], n_features: int) -> Moments:
    """The tree merge of every part, in order (see :class:`TreeMerger`)."""
    tree = TreeMerger(n_features)
    for part in parts:
        tree.add(part)
    return tree.total()
