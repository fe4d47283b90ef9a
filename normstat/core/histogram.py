"""The distribution summary of one chunk: exact counts per value, or per bucket of keys.

Integers of 16 bits or fewer are counted by ``np.bincount`` (one bin per possible value of each
feature, over blocks of rows that stay in cache); other data is keyed, sorted once per feature
(the ends come out exact) and coarsened to buckets of 7 mantissa bits. See
:mod:`normstat.core.quantiles` for the summary itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normstat.core.exact import Refinement
from normstat.core.quantiles import COARSE, Sketch, coarsen, key_values, offsets_of, ordered_keys

_BINCOUNT_BINS = 2**22
"""Bins per np.bincount call (features are counted in groups): 32 MiB of int64 counts."""
_BLOCK_ELEMENTS = 2**16
"""Values per np.bincount call: their bin numbers stay in cache."""
_SENTINEL = np.iinfo(np.int64).max
"""The key of a missing value: never a bucket key (a float64 key is below it, even unshifted)."""


@dataclass(frozen=True)
class SketchSpec:
    """What the per-chunk step summarises beside the moments (picklable, for any engine): the
    summary of every value, or, in a refinement pass of ``--exact``, of the target buckets."""

    refine: Refinement | None = None

    def build(self, rows: np.ndarray, first: int = 0) -> Sketch:
        """The summary of ``rows``, whose columns are features ``first, first + 1, ...``."""
        if self.refine is not None:
            return self.refine.build(rows, first)
        return chunk_sketch(rows)


def exact_dtype(dtype: np.dtype) -> bool:
    """Data counted value by value: bool and integers of 16 bits or fewer."""
    return dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize <= 2)


def chunk_sketch(rows: np.ndarray) -> Sketch:
    """The summary of a ``(rows, features)`` chunk; NaN is skipped (inf must have been refused:
    it would land in a bucket of its own and make the maximum infinite)."""
    if exact_dtype(rows.dtype):
        return _integer_sketch(rows)
    return _float_sketch(rows, COARSE)


def _float_sketch(rows: np.ndarray, drop: int) -> Sketch:
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


def _integer_sketch(rows: np.ndarray) -> Sketch:
    """Exact counts per value with ``np.bincount``: feature ``j``'s values go to bins
    ``j * span + (value - lowest)`` (span: 2, 256 or 65,536 by dtype), over blocks of rows that
    stay in cache and groups of features of bounded bins."""
    n, f = rows.shape
    if n == 0:
        return Sketch.empty(f)
    lowest, span = _value_range(rows.dtype)
    group = max(1, _BINCOUNT_BINS // span)
    counts = np.concatenate(
        [_bincount(rows[:, g : g + group], lowest, span) for g in range(0, f, group)]
    )
    nz = np.flatnonzero(counts)
    feats, values = nz // span, nz % span + lowest
    fl = values.astype(np.float64)
    return Sketch(
        drop=np.zeros(f, np.int64),
        offsets=offsets_of(feats, f),
        keys=ordered_keys(fl),
        counts=counts[nz],
        min=_per_feature(np.minimum, fl, feats, f, np.inf),
        max=_per_feature(np.maximum, fl, feats, f, -np.inf),
        neg_max=_per_feature(np.maximum, np.where(fl < 0, fl, -np.inf), feats, f, -np.inf),
        pos_min=_per_feature(np.minimum, np.where(fl >= 0, fl, np.inf), feats, f, np.inf),
    )


def _value_range(dtype: np.dtype) -> tuple[int, int]:
    """Lowest value and number of values of an exact dtype."""
    if dtype.kind == "b":
        return 0, 2
    info = np.iinfo(dtype)
    return int(info.min), int(info.max) - int(info.min) + 1


def _bincount(rows: np.ndarray, lowest: int, span: int) -> np.ndarray:
    n, f = rows.shape
    shift = np.arange(f, dtype=np.intp) * span - lowest
    counts = np.zeros(f * span, np.int64)
    step = max(1, _BLOCK_ELEMENTS // f)
    idx = np.empty((min(step, n), f), np.intp)
    for i in range(0, n, step):
        block = rows[i : i + step]
        part = idx[: block.shape[0]]
        np.add(block, shift, out=part, casting="unsafe")
        counts += np.bincount(part.ravel(), minlength=f * span)
    return counts


def _per_feature(
    op: np.ufunc, values: np.ndarray, feats: np.ndarray, n: int, identity: float
) -> np.ndarray:
    out = np.full(n, identity)
    op.at(out, feats, values)
    return out
