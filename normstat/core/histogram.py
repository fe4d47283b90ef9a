"""The distribution summary of one chunk: exact counts per value, or per bucket of keys.

Integers of 16 bits or fewer are counted value by value (``np.bincount``); for them the counts
also give the exact moments, so one counting read of the chunk feeds both (:func:`integer_summary`).
Bytes with few features are counted two at a time: the chunk's bytes viewed as 16-bit pairs,
one 65,536-bin count per phase of the pair, then marginalised. Other data is binned by its
bucket (:mod:`normstat.core.quantiles`) with ``np.bincount`` over a window of 64 binades below
the feature's largest magnitude, computed block by block in cache; the rare values below the
window (zeros, tiny values) and small chunks are keyed and sorted instead. Every route gives
the same summary: the summary is a canonical list of (bucket, count).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from normstat.core.blocked import moments_from_sums
from normstat.core.exact import Refinement
from normstat.core.moments import Moments
from normstat.core.quantiles import (
    COARSE,
    Sketch,
    _combine,
    coarsen,
    key_values,
    offsets_of,
    ordered_keys,
)

_BINCOUNT_BINS = 2**22
"""Bins per np.bincount call (features are counted in groups): 32 MiB of int64 counts."""
_BLOCK_ELEMENTS = 2**16
"""Values per block of the integer counting kernels: their temporaries stay in cache."""
_FLOAT_BLOCK = 2**17
"""Values per block of the float binning kernel (best of 2**14 ... 2**17 measured)."""
_SENTINEL = np.iinfo(np.int64).max
"""The key of a missing value: never a bucket key (a float64 key is below it, even unshifted)."""
_MAGNITUDE = np.int64(0x7FFF_FFFF_FFFF_FFFF)
_WINDOW = 64 << (52 - COARSE)
"""Buckets per sign binned directly: 64 binades below the feature's largest magnitude."""
_MIN_BINNED_ROWS = 4096
"""Fewer rows than this are keyed and sorted (binning costs a scan of the bins per chunk)."""
_WIDE = 1024
"""Inner length of the binning kernel's views (per-feature constants tiled to it)."""


@dataclass(frozen=True)
class SketchSpec:
    """What the per-chunk step summarises beside the moments (picklable, for any engine): the
    summary of every value times ``scale`` (``fit --rescale``), or, in a refinement pass of
    ``--exact``, of the target buckets."""

    refine: Refinement | None = None
    scale: float = 1.0

    def counts_values(self, dtype: np.dtype) -> bool:
        """The chunk is counted value by value, and its moments come from the counts."""
        return self.refine is None and exact_dtype(dtype)

    def summarise(self, rows: np.ndarray) -> Moments:
        """Moments and summary of an exact-dtype chunk, from one counting read."""
        return integer_summary(rows, self.scale)

    def build(self, rows: np.ndarray, first: int = 0, bounds: Moments | None = None) -> Sketch:
        """The summary of ``rows``, whose columns are features ``first, first + 1, ...``;
        ``bounds``: the chunk's moments (their min and max place the binning window)."""
        if self.refine is not None:
            return self.refine.build(_scaled(rows, self.scale), first)
        if exact_dtype(rows.dtype):
            return integer_summary(rows, self.scale).sketch  # type: ignore[return-value]
        small = _small_integer_features(rows, bounds)
        if small is not None:  # integer values in float or wide columns (nullable int16, ...)
            parts = [(np.flatnonzero(small), _integral_sketch(rows[:, small], self.scale))]
            if not small.all():
                rest = Moments(*(a[~small] for a in bounds.arrays()))  # type: ignore[union-attr]
                parts.append((np.flatnonzero(~small), self.build(rows[:, ~small], bounds=rest)))
            return _scatter(rows.shape[1], parts)
        lo = hi = None
        if bounds is not None:
            lo, hi = bounds.min * self.scale, bounds.max * self.scale
            if self.scale < 0:
                lo, hi = hi, lo
        return float_sketch(_scaled(rows, self.scale), lo, hi)


_SMALL_LOW, _SMALL_SPAN = -(2**15), 3 * 2**15
"""Integer values from int16's lowest to uint16's highest are counted exactly in any dtype."""
_HEAD_ROWS = 256
"""Rows looked at first: float data rarely holds only integers, and shows it at once."""


def _small_integer_features(rows: np.ndarray, bounds: Moments | None) -> np.ndarray | None:
    """Features (a bool mask) of a float or wide-integer chunk whose every value (NaN aside)
    is an integer of 16 bits (in -32768 ... 65535), or None if there are none. Being such a
    value is a property of each value, so a feature is counted exactly in every chunk or is
    coarsened when merged: the result does not depend on the chunking."""
    if bounds is None or rows.shape[0] == 0:
        return None
    lo, hi = bounds.min, bounds.max
    cand = (lo >= _SMALL_LOW) & (hi < _SMALL_LOW + _SMALL_SPAN)
    if not cand.any():
        return None
    with np.errstate(invalid="ignore"):
        for part in (rows[:_HEAD_ROWS], rows):
            if rows.dtype.kind in "iu":
                break  # integers in range are integral
            x = part[:, cand]
            integral = ((x == np.floor(x)) | np.isnan(x)).all(axis=0)
            cand[np.flatnonzero(cand)[~integral]] = False
            if not cand.any():
                return None
    return cand


def _integral_sketch(x: np.ndarray, scale: float) -> Sketch:
    """The exact summary of integer values in -32768 ... 65535 (NaN skipped), by np.bincount."""
    n, f = x.shape
    group = _BINCOUNT_BINS // _SMALL_SPAN
    if f > group:  # bounded bins per call
        cols = [np.arange(g, min(g + group, f)) for g in range(0, f, group)]
        return _scatter(f, [(c, _integral_sketch(x[:, c], scale)) for c in cols])
    total = f * _SMALL_SPAN
    with np.errstate(invalid="ignore"):
        idx = np.subtract(x, _SMALL_LOW, dtype=np.float64)
        idx += np.arange(f) * float(_SMALL_SPAN)
        idx[np.isnan(idx)] = total
    dense = np.bincount(idx.astype(np.intp).ravel(), minlength=total + 1)[:total]
    nz = np.flatnonzero(dense)
    feats, values = nz // _SMALL_SPAN, nz % _SMALL_SPAN + _SMALL_LOW
    return _values_sketch(feats, values, dense[nz], f, scale)


def _scatter(f: int, parts: list[tuple[np.ndarray, Sketch]]) -> Sketch:
    """One summary of ``f`` features from summaries of some of them (``(features, summary)``)."""
    empty = Sketch.empty(f)
    fields = {k: v.copy() for k, v in empty.arrays().items() if k not in ("offsets", "keys")}
    feats, keys, counts = [], [], []
    for cols, part in parts:
        for k in fields:
            if k != "counts":
                fields[k][cols] = getattr(part, k)
        feats.append(cols[part.feature_of()])
        keys.append(part.keys)
        counts.append(part.counts)
    fl, kl, cl = _combine(np.concatenate(feats), np.concatenate(keys), np.concatenate(counts))
    fields["counts"] = cl
    return Sketch(offsets=offsets_of(fl, f), keys=kl, **fields)


def _scaled(rows: np.ndarray, scale: float) -> np.ndarray:
    """``rows * scale`` in float64 (the values the statistics describe)."""
    if scale == 1.0:
        return rows
    return np.multiply(rows, scale, dtype=np.float64)


def exact_dtype(dtype: np.dtype) -> bool:
    """Data counted value by value: bool and integers of 16 bits or fewer."""
    return dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize <= 2)


def chunk_sketch(rows: np.ndarray) -> Sketch:
    """The summary of a ``(rows, features)`` chunk; NaN is skipped (inf must have been refused:
    it would land in a bucket of its own and make the maximum infinite)."""
    if exact_dtype(rows.dtype):
        return integer_summary(rows).sketch  # type: ignore[return-value]
    return float_sketch(rows)


# ---------------------------------------------------------------------------------------------
# integers of 16 bits or fewer: exact counts, and the moments from them


def integer_summary(rows: np.ndarray, scale: float = 1.0) -> Moments:
    """Exact moments and exact summary of a chunk of bool or integers of 16 bits or fewer:
    the counts of each value give the exact integer sums the moments kernel would compute
    (so the moments are the same bits), and the sorted values with their counts."""
    n, f = rows.shape
    if n == 0:
        m = Moments.empty(f)
        m.sketch = Sketch.empty(f)
        return m
    if rows.dtype.kind == "b":
        rows = rows.view(np.uint8)
    lowest, span = _value_range(rows.dtype)
    feats, values, counts = [], [], []
    s, q = np.zeros(f, np.int64), np.zeros(f, np.int64)
    lo, hi = np.zeros(f, np.int64), np.zeros(f, np.int64)
    group = max(1, _BINCOUNT_BINS // span)
    for g in range(0, f, group):
        dense = _value_counts(rows[:, g : g + group], lowest, span)  # (features, span)
        v = np.arange(span, dtype=np.int64) + lowest
        s[g : g + group] = dense @ v
        q[g : g + group] = dense @ (v * v)
        seen = dense > 0
        lo[g : g + group] = v[np.argmax(seen, axis=1)]
        hi[g : g + group] = v[span - 1 - np.argmax(seen[:, ::-1], axis=1)]
        nz = np.flatnonzero(dense)
        feats.append(nz // span + g)
        values.append(nz % span + lowest)
        counts.append(dense.ravel()[nz])
    moments = moments_from_sums(n, s, q, lo.astype(np.float64), hi.astype(np.float64))
    moments.sketch = _values_sketch(
        np.concatenate(feats), np.concatenate(values), np.concatenate(counts), f, scale
    )
    return moments


def _values_sketch(
    feats: np.ndarray, values: np.ndarray, counts: np.ndarray, f: int, scale: float
) -> Sketch:
    """The exact summary of distinct values (sorted by feature, value) and their counts, the
    values multiplied by ``scale`` first (a negative scale reverses their order)."""
    fl = values.astype(np.float64)
    if scale != 1.0:
        fl = fl * scale
        order = np.lexsort((fl, feats))
        feats, fl, counts = feats[order], fl[order], counts[order]
    keys = ordered_keys(fl)
    if scale != 1.0:  # distinct values may meet after scaling
        feats, keys, counts = _combine(feats, keys, counts)
        fl = key_values(keys)
    offsets = offsets_of(feats, f)
    drop = np.zeros(f, np.int64)
    return Sketch(drop, offsets, keys, counts.astype(np.int64), *_ends(fl, offsets))


def _ends(fl: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, ...]:
    """min, max, largest negative and smallest non-negative value of each feature, from its
    sorted distinct values ``fl[offsets[j]:offsets[j + 1]]``."""
    start, stop = offsets[:-1], offsets[1:]
    has = stop > start
    below = np.concatenate(([0], np.cumsum(fl < 0)))
    neg = below[stop] - below[start]  # negative values per feature

    def at(i: np.ndarray, ok: np.ndarray, default: float) -> np.ndarray:
        return np.where(ok, fl[np.clip(i, 0, max(fl.size - 1, 0))] if fl.size else default, default)

    return (
        at(start, has, np.inf),
        at(stop - 1, has, -np.inf),
        at(start + neg - 1, neg > 0, -np.inf),
        at(start + neg, neg < stop - start, np.inf),
    )


def _value_range(dtype: np.dtype) -> tuple[int, int]:
    """Lowest value and number of values of an exact dtype."""
    if dtype.kind == "b":
        return 0, 2
    info = np.iinfo(dtype)
    return int(info.min), int(info.max) - int(info.min) + 1


def _value_counts(rows: np.ndarray, lowest: int, span: int) -> np.ndarray:
    """``(features, span)`` counts of each value of each feature."""
    n, f = rows.shape
    period = f if f % 2 else f // 2
    if rows.dtype.itemsize == 1 and period <= 4 and rows.flags.c_contiguous and n * f >= 2:
        return _byte_pair_counts(rows, lowest, period)
    return _bincount(rows, lowest, span).reshape(f, span)


def _byte_pair_counts(rows: np.ndarray, lowest: int, period: int) -> np.ndarray:
    """Counts of the bytes of a contiguous chunk, two at a time: pair ``k`` (bytes ``2k`` and
    ``2k + 1``) holds features ``2k mod f`` and ``2k + 1 mod f``, so pairs of one phase
    ``k mod period`` share a 65,536-bin count whose row and column sums are the two features'
    counts. Half the np.bincount work of counting bytes one by one."""
    n, f = rows.shape
    flat = rows.reshape(-1).view(np.uint8)
    pairs = flat[: flat.size // 2 * 2].view(np.uint16)
    counts = np.zeros((f, 256), np.int64)
    step = _BLOCK_ELEMENTS * 4 * period
    for p in range(period):
        table = np.zeros(65536, np.int64)
        for i in range(p, pairs.size, step):
            table += np.bincount(pairs[i : i + step : period], minlength=65536)
        table2 = table.reshape(256, 256)  # [high byte, low byte]
        first, second = table2.sum(axis=0), table2.sum(axis=1)
        if sys.byteorder != "little":
            first, second = second, first
        counts[(2 * p) % f] += first
        counts[(2 * p + 1) % f] += second
    if flat.size % 2:
        counts[(flat.size - 1) % f, flat[-1]] += 1
    if lowest < 0:  # signed bytes: byte b is the value b - 256 from 128 up
        counts = np.roll(counts, 128, axis=1)
    return counts


def _bincount(rows: np.ndarray, lowest: int, span: int) -> np.ndarray:
    """Counts of ``(value, feature)`` pairs, bins ``feature * span + value - lowest``. The bin
    numbers of a block are laid out feature by feature (a transposed copy), so consecutive
    counts hit one feature's few bins, in cache, not one bin of every feature in turn."""
    n, f = rows.shape
    shift = (np.arange(f, dtype=np.intp) * span - lowest).reshape(f, 1)
    counts = np.zeros(f * span, np.int64)
    # at least as many values per call as bins: each call returns (and adds) all the bins
    step = max(1, max(_BLOCK_ELEMENTS, 2 * f * span) // f)
    idx = np.empty((f, min(step, n)), np.intp)
    for i in range(0, n, step):
        block = rows[i : i + step]
        part = idx[:, : block.shape[0]]
        np.add(block.T, shift, out=part, casting="unsafe")
        counts += np.bincount(part.ravel(), minlength=f * span)
    return counts


# ---------------------------------------------------------------------------------------------
# other data: buckets of 7 mantissa bits


def float_sketch(
    rows: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None
) -> Sketch:
    """The summary of float (or wide integer) data; ``lo``, ``hi``: each feature's smallest
    and largest value (the chunk's moments), which place the binning window."""
    n, f = rows.shape
    if n == 0:
        return Sketch.empty(f)
    if lo is None or hi is None or n < _MIN_BINNED_ROWS:
        return _sorted_sketch(rows)
    binned = _binned_sketch(rows, lo, hi)
    return binned if binned is not None else _sorted_sketch(rows)


def _sorted_sketch(rows: np.ndarray, drop: int = COARSE) -> Sketch:
    """One sort of each feature's full-resolution keys (NaN keyed last) gives everything: the
    exact min, max, largest negative and smallest non-negative values, then, coarsened in place
    (coarsening keeps the order), the runs of equal buckets."""
    n, f = rows.shape
    if n == 0:
        return Sketch.empty(f)
    x = np.ascontiguousarray(rows.T)  # each feature's values contiguous, to sort them
    cols = ordered_keys(x)
    if x.dtype.kind == "f":
        cols[np.isnan(x)] = _SENTINEL
    del x  # the keys are all that is needed now: one chunk-sized float64 array less
    cols.sort(axis=1)
    count = np.count_nonzero(cols != _SENTINEL, axis=1)
    zero = np.count_nonzero(cols < 0, axis=1)
    ends = _end_values(cols, count, zero)
    positive = cols > 0
    cols -= positive
    cols >>= drop
    cols += positive
    feats, ukeys, counts = _runs(cols.ravel(), n)
    keep = ukeys != coarsen(np.array([_SENTINEL]), drop)[0]
    feats, ukeys, counts = feats[keep], ukeys[keep], counts[keep]
    return Sketch(np.full(f, drop, np.int64), offsets_of(feats, f), ukeys, counts, *ends)


def _end_values(cols: np.ndarray, count: np.ndarray, zero: np.ndarray) -> tuple[np.ndarray, ...]:
    """min, max, neg_max, pos_min of features whose sorted keys are ``cols``, valid up to
    ``count``, the non-negative ones from ``zero``."""
    rows = np.arange(cols.shape[0])
    last = cols.shape[1] - 1

    def at(i: np.ndarray, ok: np.ndarray, default: float) -> np.ndarray:
        return np.where(ok, key_values(cols[rows, np.clip(i, 0, last)]), default)

    return (
        at(np.zeros_like(count), count > 0, np.inf),
        at(count - 1, count > 0, -np.inf),
        at(zero - 1, zero > 0, -np.inf),
        at(zero, zero < count, np.inf),
    )


def _runs(flat: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature, key, count) of the runs of equal keys in features' sorted rows of length n."""
    if flat.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    start = np.ones(flat.size, bool)
    start[1:] = flat[1:] != flat[:-1]
    start[::n] = True
    idx = np.flatnonzero(start)
    counts = np.diff(np.append(idx, flat.size)).astype(np.int64)
    return (idx // n).astype(np.int64), flat[idx], counts


def _binned_sketch(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Sketch | None:
    """The summary by np.bincount, in one read of the chunk. A value's bin: its feature's base,
    plus twice its magnitude bucket's place in a window of ``_WINDOW`` buckets below the
    feature's largest magnitude ``max(|lo|, |hi|)``, plus one when negative; the two lowest bins
    take what lies below the window (zeros, tiny values), which is then keyed and sorted.
    Four reductions of the bits give the exact ends, and check the bounds: ``None`` (sort
    instead) when they are not the data's (a NaN's bits are beyond them), and when a ``-0.0``
    is among the values (its bits are the smallest of all: the sort keys it as zero)."""
    n, f = rows.shape
    width = 2 * _WINDOW + 2
    if f * width > _BINCOUNT_BINS:
        return None
    top = np.maximum(np.abs(lo), np.abs(hi)) + 0.0
    if not (np.isfinite(top).all() and (lo <= hi).all()):
        return None
    low = _magnitude_bucket(top.view(np.int64)) - _WINDOW + 1  # lowest bucket in the window
    base = np.arange(f, dtype=np.int64) * width
    r = max(1, -(-_WIDE // f))
    step = max(r, _FLOAT_BLOCK // (f * r) * r)
    consts = (np.tile(base // 2 - low + 2, r), np.tile(base, r))
    direct = rows.dtype == np.float64 and rows.flags.c_contiguous  # no copy: read the bits
    buf = np.empty((0 if direct else min(step, n), f), np.float64)
    sign = np.empty((min(step, n), f), np.int64)
    bins = np.empty(sign.shape, np.int64)
    counts = np.zeros(f * width, np.int64)
    ends = _Ends(f)
    for i in range(0, n, step):
        k = min(step, n - i)
        x = rows[i : i + k] if direct else np.add(rows[i : i + k], 0.0, out=buf[:k])
        main = k // r * r
        for a, b, reps in ((0, main, r), (main, k, 1)):
            if a == b:
                continue
            w = f * reps
            raw = x[a:b].reshape(-1, w).view(np.int64)
            _bin_block(raw, sign[a:b].reshape(-1, w), bins[a:b].reshape(-1, w), consts, w)
            ends.add(raw)
        block_counts = np.bincount(bins[:k].ravel(), minlength=f * width)
        if block_counts.size != counts.size:
            return None  # a value above the bounds (checked by the ends, below, in any case)
        counts += block_counts
    if ends.negative_zero():
        return None
    mn, mx, neg_max, pos_min = ends.values()
    if not (np.array_equal(mn, lo + 0.0) and np.array_equal(mx, hi + 0.0)):
        return None
    nz = np.flatnonzero(counts)
    feats = nz // width
    local = nz - base[feats]
    window = local >= 2
    feats, local, c = feats[window], local[window], counts[nz][window]
    m = local // 2 - 1 + low[feats]
    keys = np.where(local & 1 == 1, -m - 1, m)
    parts = [(feats, keys, c)]
    for j in np.flatnonzero(counts.reshape(f, width)[:, :2].sum(axis=1)).tolist():
        s = _sorted_sketch(_below_window(rows[:, j], int(low[j])).reshape(-1, 1))
        parts.append((np.full(s.keys.size, j, np.int64), s.keys, s.counts))
    feats, keys, c = _combine(*(np.concatenate(p) for p in zip(*parts, strict=True)))
    drop = np.full(f, COARSE, np.int64)
    return Sketch(drop, offsets_of(feats, f), keys, c, mn, mx, neg_max, pos_min)


def _below_window(col: np.ndarray, low: int) -> np.ndarray:
    """The values of ``col`` whose magnitude bucket is below ``low`` (zeros, tiny values)."""
    x = np.add(col, 0.0, dtype=np.float64)
    return x[_magnitude_bucket(x.view(np.int64)) < low]


def _magnitude_bucket(raw: np.ndarray) -> np.ndarray:
    """The bucket of ``|x|`` from the float64 bits ``raw`` (+0.0 is 0): the canonical bucket
    (:func:`coarsen`) is this for ``x >= 0`` and ``-1 -`` this for ``x < 0``."""
    sign = raw >> 63
    return (((raw & _MAGNITUDE) - sign - 1) >> COARSE) + 1 + sign


def _bin_block(
    raw: np.ndarray,
    sign: np.ndarray,
    out: np.ndarray,
    consts: tuple[np.ndarray, np.ndarray],
    w: int,
) -> None:
    """:func:`_magnitude_bucket` placed in the window, in place, in cache."""
    shift, floor = (c[:w] for c in consts)
    np.right_shift(raw, 63, out=sign)
    np.bitwise_and(raw, _MAGNITUDE, out=out)
    out -= sign
    out -= 1
    out >>= COARSE
    out += sign
    out += shift
    out <<= 1
    np.maximum(out, floor, out=out)  # below the window: the lowest bin (no value is above it)
    out -= sign


class _Ends:
    """The exact min, max, largest negative and smallest non-negative value, from the largest
    and smallest float64 bits read as signed and as unsigned integers (non-negative floats
    order as their bits; negative ones have the sign bit, and order backwards)."""

    _OPS = (np.minimum, np.maximum, np.minimum, np.maximum)

    def __init__(self, f: int) -> None:
        self.f = f
        self.parts: list[list[np.ndarray]] = [[], [], [], []]  # imin, imax, umin, umax

    def add(self, raw: np.ndarray) -> None:
        """Reduce a block (a wide view: features repeat along its rows)."""
        u = raw.view(np.uint64)
        for acc, a, op in zip(self.parts, (raw, raw, u, u), self._OPS, strict=True):
            acc.append(op.reduce(a, axis=0))

    def _folded(self) -> list[np.ndarray]:
        return [
            op.reduce(np.concatenate(acc).reshape(-1, self.f), axis=0)
            for acc, op in zip(self.parts, self._OPS, strict=True)
        ]

    def negative_zero(self) -> bool:
        """Some value is ``-0.0`` (its bits, the sign bit alone, are the smallest int64)."""
        return bool((self._folded()[0] == np.iinfo(np.int64).min).any())

    def values(self) -> tuple[np.ndarray, ...]:
        imin, imax, umin, umax = self._folded()
        neg = imin < 0  # some value is negative
        nonneg = umin < np.uint64(2**63)

        def as_float(bits: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(bits).view(np.int64).view(np.float64)

        return (
            np.where(neg, as_float(umax), as_float(imin)),
            np.where(nonneg, as_float(imax), as_float(imin)),
            np.where(neg, as_float(imin), -np.inf),
            np.where(nonneg, as_float(umin), np.inf),
        )
