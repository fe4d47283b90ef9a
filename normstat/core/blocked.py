"""Cache-blocked kernels for chunks without NaN or inf: one read of the data, temporaries in L2.

Why not the textbook two-pass over the whole chunk: it reads the chunk three or four times and
materialises a float64 copy twice its size, so it runs at a third of memory speed. Here:

* **Wide rows.** A reduction over axis 0 with a short inner dimension (3 channels, 64 columns)
  spends its time in loop overhead. A C-contiguous ``(rows, f)`` chunk is viewed as
  ``(rows / r, r * f)`` with ``r * f >= 1024``; the ``r`` partial results per feature are folded at
  the end. Reductions (min, max, sums) then run over long contiguous inner loops.
* **Sub-blocks.** The float64 deviations exist only for a sub-block of ~2 MB, which stays in cache
  while it is summed and squared, instead of a full-chunk float64 temporary.
* **Floats: shifted sums, exact fallback.** Sums of ``d = x - K`` and ``d * d`` with ``K`` the mean
  of the first sub-block give ``mean = K + s / n`` and ``m2 = q - s**2 / n`` (the corrected two-pass
  formula with shift ``K``; ``K`` becomes the moments' ``shift`` and ``s / n`` their ``dmean``).
  Its error is ``eps * (1 + (mean - K)**2 / var)`` relative, so when the
  shift is more than 4 standard deviations off (data that drifts inside a chunk) the sums are taken
  again with ``K = mean``: that is the corrected two-pass exactly, and the error stays ``~17 eps``.
* **Small integers: exact.** For 8- and 16-bit integers (and bool) the sum and the sum of squares
  are computed in integer arithmetic, so a chunk's ``count``, ``mean`` and ``m2`` are exact up to
  the final rounding to float64; chunks are then merged with Chan's update like any other.

Every function returns ``None`` when the chunk holds a NaN or an inf: the caller then locates it
(to name row and feature) or takes the NaN-skipping path, exactly as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from normstat.core.moments import Moments

SUB_BLOCK_ELEMENTS = 2**18
"""Elements per sub-block: 2 MiB of float64 deviations, L2-to-L3 sized (the measurements that
chose it: docs/performance.md, "The design that got there")."""
MIN_WIDTH = 1024
"""Inner length from which axis-0 reductions run at full speed."""
SHIFT_RERUN = 16.0
"""Take the sums again, shifted by the mean, when ``(mean - K)**2 > SHIFT_RERUN * var``."""

# dtype of x*x and of the per-sub-block sums of x*x, for the integer types summed exactly
_MAX_BLOCK_ROWS = 2**15
"""Rows per sub-block of squares: 2**15 * 255**2 < 2**32, so the 32-bit block sums cannot wrap."""
_BYTE_BLOCK_ROWS = 256
"""Rows per float32 block of 1-byte integers: 256 * 255**2 < 2**24, so every sum is exact."""
_SQUARE: dict[str, tuple[type, type]] = {
    "uint8": (np.uint16, np.uint32),
    "int8": (np.int16, np.int32),
    "uint16": (np.uint32, np.int64),
    "int16": (np.int32, np.int64),
}


def finite_moments(rows: np.ndarray) -> Moments | None:
    """Moments of a ``(rows, features)`` chunk, or ``None`` if it holds a NaN or an inf."""
    n, f = rows.shape
    if n == 0:
        return Moments.empty(f)
    if rows.dtype.kind == "b":
        rows = rows.view(np.uint8)
    if rows.dtype.name in _SQUARE:
        return _exact_int_moments(rows)
    return _float_moments(rows)


def wide_parts(rows: np.ndarray) -> Iterator[tuple[np.ndarray, int]]:
    """``(view, r)`` pairs covering ``rows``: ``view[:, k*f:(k+1)*f]`` holds rows ``r*i + k``.

    The bulk is one wide view (no copy); leftover rows, or a non-contiguous chunk, come as
    ``r = 1``.
    """
    n, f = rows.shape
    r = max(1, -(-MIN_WIDTH // max(f, 1)))
    main = n // r * r if rows.flags.c_contiguous else 0
    if r > 1 and main > 0:
        yield rows[:main].reshape(main // r, r * f), r
        rows = rows[main:]
    if rows.shape[0]:
        yield rows, 1


def _fold(wide: np.ndarray, r: int, op: np.ufunc) -> np.ndarray:
    return op.reduce(wide.reshape(r, -1), axis=0)


def _sub_blocks(view: np.ndarray) -> Iterator[np.ndarray]:
    step = max(1, SUB_BLOCK_ELEMENTS // max(view.shape[1], 1))
    for i in range(0, view.shape[0], step):
        yield view[i : i + step]


WIDE_TILE_ROWS = 64
"""Rows of a tile of a chunk whose rows are wider than ``SUB_BLOCK_ELEMENTS / 64``."""


def _tile_shape(view: np.ndarray, max_rows: int) -> tuple[int, int]:
    """Rows and columns of the tiles :func:`_tiles` cuts ``view`` into."""
    n, w = view.shape
    step = max(1, min(n, max_rows, max(WIDE_TILE_ROWS, SUB_BLOCK_ELEMENTS // max(w, 1))))
    cols = w if step * w <= SUB_BLOCK_ELEMENTS else max(MIN_WIDTH, SUB_BLOCK_ELEMENTS // step)
    return step, cols


def _tiles(view: np.ndarray, max_rows: int) -> Iterator[tuple[slice, np.ndarray]]:
    """``(columns, block)`` pairs covering ``view``: blocks of at most ``max_rows`` rows of
    about ``SUB_BLOCK_ELEMENTS`` values. A chunk of narrow rows is cut into row blocks only (as
    :func:`_sub_blocks`); rows wider than that (per-pixel features: 150,528 a row) are cut into
    column slices too, so a tile still holds many rows: reduced one row at a time, every
    operation is a pass over memory, and a fit of 224x224x3 images took 8x as long."""
    n, w = view.shape
    step, width = _tile_shape(view, max_rows)
    for c0 in range(0, w, width):
        cols = slice(c0, min(w, c0 + width))
        part = view if width >= w else view[:, cols]
        for i in range(0, n, step):
            yield cols, part[i : i + step]


class _Range:
    """Running per-column min and max of one wide view, kept in the data's own dtype."""

    def __init__(self, first_row: np.ndarray) -> None:
        self.lo, self.hi = first_row.copy(), first_row.copy()

    def add(self, blk: np.ndarray, cols: slice = slice(None)) -> None:
        """Fold in ``blk``, a block of rows of the columns ``cols``."""
        lo, hi = self.lo[cols], self.hi[cols]
        if blk.shape[0] == 1:  # a one-row block: no reduced copy of the row
            np.minimum(lo, blk[0], out=lo)
            np.maximum(hi, blk[0], out=hi)
            return
        np.minimum(lo, blk.min(axis=0), out=lo)
        np.maximum(hi, blk.max(axis=0), out=hi)

    def folded(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        if r == 1:
            return self.lo.astype(np.float64), self.hi.astype(np.float64)
        return (
            _fold(self.lo, r, np.minimum).astype(np.float64),
            _fold(self.hi, r, np.maximum).astype(np.float64),
        )


# ---------------------------------------------------------------------------------------------
# floats (and wide integers): shifted sums in float64


def _float_moments(rows: np.ndarray) -> Moments | None:
    with np.errstate(all="ignore"):  # inf - inf, overflowing squares: detected from the results
        return _float_moments_quiet(rows)


def _float_moments_quiet(rows: np.ndarray) -> Moments | None:
    n, f = rows.shape
    first = next(_sub_blocks(rows))
    shift = first.sum(axis=0, dtype=np.float64) / first.shape[0]
    if not np.isfinite(shift).all():
        return None
    s, q, lo, hi = shifted_sums(rows, shift)
    if not (np.isfinite(s).all() and np.isfinite(lo).all() and np.isfinite(hi).all()):
        return None
    m2 = _m2(q, s, n)
    if (s * s > SHIFT_RERUN * n * m2).any():  # shift too far from the mean: two-pass exactly
        shift = shift + s / n
        s, q, _, _ = shifted_sums(rows, shift)
        m2 = _m2(q, s, n)
    return Moments(
        count=np.full(f, n, np.int64),
        nan_count=np.zeros(f, np.int64),
        dmean=s / n,
        m2=np.maximum(m2, 0.0, out=m2),
        min=lo,
        max=hi,
        shift=shift,
    )


def _m2(q: np.ndarray, s: np.ndarray, n: int) -> np.ndarray:
    """``q - s * s / n``, written over ``q`` (one temporary instead of three: a wide chunk's
    features are millions)."""
    t = s * s
    t /= n
    return np.subtract(q, t, out=q)


def shifted_sums(rows: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per feature, ``sum(x - shift)``, ``sum((x - shift)**2)`` (float64), min and max, in one
    read of ``rows``: each sub-block is cast into an L2-sized float64 buffer and reduced there."""
    if rows.flags.f_contiguous and (rows.shape[1] == 1 or not rows.flags.c_contiguous):
        return _column_major_sums(rows, shift)  # one column, or columns laid out one by one
    f = rows.shape[1]
    s, q = np.zeros(f), np.zeros(f)
    lo, hi = np.full(f, np.inf), np.full(f, -np.inf)
    for view, r in wide_parts(rows):
        k = np.tile(shift, r)
        s_w, q_w, rng = np.zeros(k.size), np.zeros(k.size), _Range(view[0])
        buf = np.empty(_tile_shape(view, view.shape[0]))
        for cols, blk in _tiles(view, view.shape[0]):
            d = buf[: blk.shape[0], : blk.shape[1]]
            d[...] = blk  # a plain cast, then same-type arithmetic: faster than a mixed subtract
            d -= k[cols]
            # a one-row block is its own sum: added as it is, without a reduced copy of the row
            # (the same bits)
            s_w[cols] += d[0] if d.shape[0] == 1 else d.sum(axis=0)
            d *= d
            q_w[cols] += d[0] if d.shape[0] == 1 else d.sum(axis=0)
            rng.add(blk, cols)
        s += s_w if r == 1 else _fold(s_w, r, np.add)
        q += q_w if r == 1 else _fold(q_w, r, np.add)
        v_lo, v_hi = rng.folded(r)
        np.minimum(lo, v_lo, out=lo)
        np.maximum(hi, v_hi, out=hi)
    return s, q, lo, hi


def _column_major_sums(rows: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`shifted_sums` for a column-major chunk: every feature is a contiguous row of
    ``rows.T``, reduced by :func:`column_sums`."""
    parts = [column_sums(col, float(k)) for col, k in zip(rows.T, shift, strict=True)]
    return tuple(np.array(v, np.float64) for v in zip(*parts, strict=True))


def column_sums(col: np.ndarray, shift: float) -> tuple[float, float, float, float]:
    """``sum(x - shift)``, ``sum((x - shift)**2)``, min and max of one contiguous column, read
    once: each block is cast into this thread's float64 buffer, shifted there, summed, squared
    in place and summed again (numpy's pairwise sums: the error grows like log(n); ``einsum``
    or BLAS ``ddot`` for the squares accumulate sequentially, and gave 7e-14 instead of 5e-16 on
    the benchmark table); min and max are taken on the column's own dtype."""
    n = col.shape[0]
    step = min(n, COLUMN_BLOCK_ELEMENTS) or 1
    buf = _column_buffer(step)
    s = q = 0.0
    for i in range(0, n, step):
        blk = col[i : i + step]
        d = buf[: blk.shape[0]]
        d[...] = blk  # a plain cast, then same-type arithmetic: faster than a mixed subtract
        d -= shift
        s += float(d.sum())
        d *= d
        q += float(d.sum())
    return s, q, float(col.min()), float(col.max())


COLUMN_BLOCK_ELEMENTS = 2**18
"""Values per block of a column: one row group's column of 262,144 rows is one block. Larger
blocks than the matrix kernel's: per block, Python's calls cost more than the cache misses."""

_COLUMN_SHIFT_VALUES = 4096
"""Values whose mean is a column's shift: enough that ``(mean - shift)**2`` is ~1/4096 of the
variance for data in random order; data that drifts is caught by ``SHIFT_RERUN``."""

_LOCAL = threading.local()


def _column_buffer(n: int) -> np.ndarray:
    """This thread's float64 scratch buffer of at least ``n`` values, kept between columns (a
    fresh 2 MB buffer per column is a fresh mapping, whose page faults cost as much as the sum)."""
    buf: np.ndarray | None = getattr(_LOCAL, "buf", None)
    if buf is None or buf.shape[0] < n:
        buf = np.empty(max(n, COLUMN_BLOCK_ELEMENTS))
        _LOCAL.buf = buf
    return buf


def column_moments(col: np.ndarray) -> Moments | None:
    """Moments of one feature given as its column (1-D, as a table reader decodes it), or
    ``None`` if it holds a NaN or an inf. The column is reduced where it lies (see
    :func:`column_sums`): a table chunk is never copied into a ``(rows, features)`` matrix,
    which cost more than the kernel itself."""
    if col.ndim != 1 or col.dtype.kind != "f" or not col.flags.c_contiguous or col.size == 0:
        return finite_moments(col.reshape(-1, 1))
    with np.errstate(all="ignore"):  # inf - inf, overflowing squares: detected from the results
        n = col.shape[0]
        first = col[:_COLUMN_SHIFT_VALUES]  # not more: a mixed-type sum is the slowest pass
        shift = float(first.sum(dtype=np.float64)) / first.shape[0]
        if not np.isfinite(shift):
            return None
        s, q, lo, hi = column_sums(col, shift)
        if not np.isfinite([s, lo, hi]).all():
            return None
        m2 = q - s * s / n
        if s * s > SHIFT_RERUN * n * m2:  # shift too far from the mean: two-pass exactly
            shift = shift + s / n
            s, q, _, _ = column_sums(col, shift)
            m2 = q - s * s / n
    return Moments(
        count=np.full(1, n, np.int64),
        nan_count=np.zeros(1, np.int64),
        dmean=np.array([s / n]),
        m2=np.array([max(m2, 0.0)]),
        min=np.array([lo]),
        max=np.array([hi]),
        shift=np.array([shift]),
    )


# ---------------------------------------------------------------------------------------------
# 8- and 16-bit integers: exact integer sums


def _exact_int_moments(rows: np.ndarray) -> Moments:
    n = rows.shape[0]
    s, q, lo, hi = integer_sums(rows)
    return moments_from_sums(n, s, q, lo, hi)


def moments_from_sums(
    n: int, s: np.ndarray, q: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> Moments:
    """Moments of ``n`` integer values per feature from their exact sums ``s`` and sums of
    squares ``q`` (int64), shared by the kernel above and the value counts of
    :mod:`normstat.core.histogram`, so both give the same bits."""
    # m2 = sum((x - a)**2) - b**2 / n for any integer a, with b = s - n*a. The first term is an
    # exact integer; a = round(s / n) makes |b| <= n/2, so the second is at most half the first
    # (no cancellation) and m2 comes out within one ulp of the exact value.
    a = (2 * s + n) // (2 * n)
    b = s - n * a
    whole = q - 2 * a * s + n * a * a  # exact in int64
    m2 = whole.astype(np.float64) - b.astype(np.float64) ** 2 / n
    return Moments(
        count=np.full(s.shape[0], n, np.int64),
        nan_count=np.zeros(s.shape[0], np.int64),
        dmean=b / n,  # mean = a + b / n: the integer part exact, the remainder below 1/2
        m2=np.maximum(m2, 0.0),
        min=lo,
        max=hi,
        shift=a.astype(np.float64),
    )


def integer_sums(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per feature, the exact ``sum(x)`` and ``sum(x*x)`` (int64) of 8- or 16-bit integers, and
    min and max (float64), in one read of ``rows``."""
    if rows.dtype.itemsize == 1:
        return byte_sums(rows)
    square_t, block_sum_t = _SQUARE[rows.dtype.name]
    f = rows.shape[1]
    s, q = np.zeros(f, np.int64), np.zeros(f, np.int64)
    lo, hi = np.full(f, np.inf), np.full(f, -np.inf)
    for view, r in wide_parts(rows):
        w = view.shape[1]
        s_w, q_w, rng = np.zeros(w, np.int64), np.zeros(w, np.int64), _Range(view[0])
        buf: np.ndarray = np.empty(_tile_shape(view, _MAX_BLOCK_ROWS), square_t)
        for cols, blk in _tiles(view, _MAX_BLOCK_ROWS):
            sq = buf[: blk.shape[0], : blk.shape[1]]
            np.multiply(blk, blk, out=sq, dtype=square_t)
            s_w[cols] += blk.sum(axis=0, dtype=block_sum_t)
            q_w[cols] += sq.sum(axis=0, dtype=block_sum_t)
            rng.add(blk, cols)
        s += _fold(s_w, r, np.add)
        q += _fold(q_w, r, np.add)
        v_lo, v_hi = rng.folded(r)
        lo, hi = np.minimum(lo, v_lo), np.maximum(hi, v_hi)
    return s, q, lo, hi


def byte_sums(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`integer_sums` for 1-byte integers, through float32 matrix-vector products.

    Exact: a value and its square (at most 128**2 or 255**2) are integers below 2**24, and so is
    every partial sum over a block of ``_BYTE_BLOCK_ROWS`` rows (255**2 * 256 < 2**24), so float32
    arithmetic loses nothing, in whatever order BLAS adds; a cast plus two ``sgemv`` beat
    integer multiply-and-sum with widening casts (docs/performance.md).
    """
    f = rows.shape[1]
    s, q = np.zeros(f, np.int64), np.zeros(f, np.int64)
    lo, hi = np.full(f, np.inf), np.full(f, -np.inf)
    for view, r in wide_parts(rows):
        w = view.shape[1]
        s_w, q_w, rng = np.zeros(w, np.int64), np.zeros(w, np.int64), _Range(view[0])
        buf = np.empty(_tile_shape(view, _BYTE_BLOCK_ROWS), np.float32)
        ones = np.ones(buf.shape[0], np.float32)
        for cols, blk in _tiles(view, _BYTE_BLOCK_ROWS):
            x, one = buf[: blk.shape[0], : blk.shape[1]], ones[: blk.shape[0]]
            x[...] = blk
            s_w[cols] += (one @ x).astype(np.int64)
            x *= x
            q_w[cols] += (one @ x).astype(np.int64)
            rng.add(blk, cols)
        s += _fold(s_w, r, np.add)
        q += _fold(q_w, r, np.add)
        v_lo, v_hi = rng.folded(r)
        lo, hi = np.minimum(lo, v_lo), np.maximum(hi, v_hi)
    return s, q, lo, hi
