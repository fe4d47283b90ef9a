"""Transforms as one affine map ``y = (x - shift) / scale`` and its inverse ``x = y*scale + shift``.

Every method reduces to a (shift, scale) pair, so forward and inverse share one kernel and the
zero-range rules live in one place: z-score divides by :attr:`Stats.scale` (1 for near-constant
features, so they are only centred); min-max treats a zero range as 1 (a constant feature maps to
the low end of the range, as scikit-learn's ``MinMaxScaler``). Robust scaling divides by the
interquartile range, 1 where it is below ``10 * eps`` (scikit-learn's ``_handle_zeros_in_scale``);
the quantile method is min-max with two quantiles in place of min and max, onto [-1, 1].

``bounds`` (``--clip``: the output bounded) is applied after the forward map, so the inverse is
undefined outside them: an inverse never clips.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from normstat.core.choices import METHODS
from normstat.core.layout import AxisLayout
from normstat.core.stats import Stats
from normstat.errors import DataError, UsageError


class CastOverflow(DataError):
    """A transformed value does not fit the output dtype (e.g. 1e39 in float32). ``index`` is
    its position in the array being transformed, for the caller to name feature and row."""

    def __init__(self, message: str, index: tuple[int, ...]) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class TransformParams:
    shift: np.ndarray  # float64, feature_shape
    scale: np.ndarray  # float64, feature_shape, never 0, inf or NaN
    clip: bool = False  # values beyond the output dtype's range: clip (True) or raise
    bounds: tuple[float, float] | None = None  # --clip: the output bounded to the range

    def forward(
        self, x: np.ndarray, dtype: np.dtype | type = np.float32, out: np.ndarray | None = None
    ) -> np.ndarray:
        return _blocked(x, dtype, self._forward, out, self.clip)

    def inverse(
        self, y: np.ndarray, dtype: np.dtype | type = np.float32, out: np.ndarray | None = None
    ) -> np.ndarray:
        return _blocked(y, dtype, self._inverse, out, self.clip)

    def _forward(self, block: np.ndarray, tmp: np.ndarray | None) -> np.ndarray:
        y = np.divide(np.subtract(block, self.shift, out=tmp), self.scale, out=tmp)
        return y if self.bounds is None else np.clip(y, *self.bounds, out=y)

    def _inverse(self, block: np.ndarray, tmp: np.ndarray | None) -> np.ndarray:
        return np.add(np.multiply(block, self.scale, out=tmp), self.shift, out=tmp)

    def feature(self, j: int) -> TransformParams:
        """The map of feature ``j`` alone (scalars), to transform one table column: the same
        operations per element as on the whole matrix, so the same bits."""
        return TransformParams(
            self.shift.reshape(-1)[j], self.scale.reshape(-1)[j], self.clip, self.bounds
        )

    def broadcast(self, shape: tuple[int, ...]) -> TransformParams:
        """Reshape the per-feature values to broadcast against a chunk laid out as ``shape``."""
        return TransformParams(
            self.shift.reshape(shape), self.scale.reshape(shape), self.clip, self.bounds
        )


_BLOCK_ELEMENTS = 2**18
_scratch = threading.local()


def _float64_scratch(shape: tuple[int, ...]) -> np.ndarray:
    """This thread's float64 block of ``shape`` (at most ``_BLOCK_ELEMENTS`` values), reused
    across calls: ``apply`` of a table transforms one column at a time, and a fresh temporary per
    column cost more in page faults than the arithmetic itself."""
    buf = getattr(_scratch, "buf", None)
    if buf is None:
        buf = _scratch.buf = np.empty(_BLOCK_ELEMENTS)
    n = math.prod(shape)
    if n > buf.size:  # a single sample wider than a block
        return np.empty(shape)
    return buf[:n].reshape(shape)


def _blocked(
    x: np.ndarray,
    dtype: np.dtype | type,
    kernel: Callable[..., Any],
    out: np.ndarray | None = None,
    clip: bool = False,
) -> np.ndarray:
    """``kernel(block, tmp)`` in float64 over L2-sized blocks of samples, cast into ``out`` (a
    new array unless given: a reused one saves faulting in fresh pages for every chunk).

    The same operations per element as one whole-chunk expression (so the same bits), without
    two full-chunk float64 temporaries (docs/performance.md, "Figures behind the code").
    """
    x = np.asarray(x)
    if out is None:
        out = np.empty(x.shape, dtype)
    limit = float(np.finfo(out.dtype).max) if out.dtype.itemsize < 8 else None
    # a signalling NaN in the data becomes a NaN, and values near 1e308 may overflow float64 to
    # inf, without a RuntimeWarning per block; casts to narrower dtypes are checked in _cast
    if x.ndim == 0 or x.shape[0] == 0:
        if x.size:
            with np.errstate(over="ignore", invalid="ignore"):
                y = kernel(x.astype(np.float64), None)
            _cast(y, out[...], limit, clip, 0)
        return out
    step = max(1, _BLOCK_ELEMENTS // max(x[0].size, 1))
    tmp = _float64_scratch((min(step, x.shape[0]), *x.shape[1:]))
    for i in range(0, x.shape[0], step):
        block = x[i : i + step]
        with np.errstate(over="ignore", invalid="ignore"):
            y = kernel(block, tmp[: block.shape[0]])
        _cast(y, out[i : i + step], limit, clip, i)
    return out


def _cast(y: np.ndarray, out: np.ndarray, limit: float | None, clip: bool, first: int) -> None:
    """``out[...] = y`` (float64 into the output dtype); a finite value beyond the dtype's range
    is clipped to it (``clip``) or raises :class:`CastOverflow`: never an inf written silently.
    The check is one vectorised pass, only for dtypes narrower than float64."""
    if limit is None:
        out[...] = y
        return
    with np.errstate(over="ignore", invalid="ignore"):
        out[...] = y
    if not np.isinf(out).any():
        return
    over = np.isinf(out) & np.isfinite(y)
    if not over.any():
        return  # infinite input stays infinite, as in float64
    if clip:
        np.copyto(out, np.clip(y, -limit, limit).astype(out.dtype), where=over)
        return
    index = np.unravel_index(int(np.argmax(over)), over.shape)
    value = float(y[index])
    raise CastOverflow(
        f"value {value:.6g} does not fit {out.dtype} (largest {limit:.6g}); use a wider dtype "
        f"(float64), or clip_to_dtype (--clip-to-dtype) to clip",
        (first + int(index[0]), *map(int, index[1:])) if index else (),
    )


def transform_params(
    stats: Stats,
    method: str = "zscore",
    feature_range: tuple[float, float] = (0.0, 1.0),
    constant_tol: float | None = None,
    clip: bool = False,
    quantile_range: tuple[float, float] | None = None,
    bounds: bool = False,
) -> TransformParams:
    """The map of ``method``; ``constant_tol``: the near-constant rule of z-scoring (None:
    scikit-learn's, see :meth:`Stats.constant_with`); ``clip``: values beyond the output dtype
    are clipped (see :func:`_cast`); ``quantile_range`` (levels) is robust's (default 0.25,
    0.75) and quantile's (default 0.01, 0.99); ``bounds`` bounds the output to minmax's
    ``feature_range`` or quantile's [-1, 1]."""
    empty = stats.count == 0  # no statistics: leave such features unchanged
    limits = _clip_bounds(method, feature_range) if bounds else None
    if method in ("robust", "quantile"):
        shift, scale = _quantile_map(stats, method, quantile_range)
    elif method == "zscore":
        shift, scale = stats.mean, stats.scale_with(constant_tol)
    elif method == "center":
        shift, scale = stats.mean, np.ones(stats.feature_shape)
    elif method == "minmax":
        lo, hi = (float(v) for v in feature_range)
        if not hi > lo:
            raise UsageError(f"feature_range: must be increasing, received ({lo}, {hi})")
        span = stats.max - stats.min
        span = np.where((span > 0) & np.isfinite(span), span, 1.0)
        scale = span / (hi - lo)
        shift = stats.min - lo * scale
    else:
        raise UsageError(f"method: expected one of {', '.join(METHODS)}, received {method!r}")
    shift = np.where(empty | ~np.isfinite(shift), 0.0, shift)
    scale = np.where(empty | ~np.isfinite(scale), 1.0, scale)
    if stats.rescale != 1.0:
        # statistics of x * r: (x * r - shift) / scale == (x - shift / r) / (scale / r), one map
        shift, scale = shift / stats.rescale, scale / stats.rescale
    return TransformParams(
        np.asarray(shift, np.float64), np.asarray(scale, np.float64), clip, limits
    )


def _clip_bounds(method: str, feature_range: tuple[float, float]) -> tuple[float, float]:
    if method == "minmax":
        return (float(feature_range[0]), float(feature_range[1]))
    if method == "quantile":
        return (-1.0, 1.0)
    raise UsageError(f"clip bounds the output of methods minmax and quantile, not {method}")


def _quantile_map(
    stats: Stats, method: str, quantile_range: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """robust: ``(x - median) / (q_hi - q_lo)``; quantile: ``q_lo -> -1``, ``q_hi -> 1``."""
    default = (0.25, 0.75) if method == "robust" else (0.01, 0.99)
    lo, hi = (float(v) for v in (quantile_range or default))
    if not 0.0 <= lo < hi <= 1.0:
        raise UsageError(
            f"the quantile range must be increasing levels in [0, 1], received {lo} {hi}"
        )
    wanted = (lo, 0.5, hi) if method == "robust" else (lo, hi)
    q = quantiles_at(stats, wanted)
    if method == "robust":
        span = q[2] - q[0]
        return q[1], np.where(span < 10 * np.finfo(np.float64).eps, 1.0, span)
    span = q[1] - q[0]
    scale = np.where((span > 0) & np.isfinite(span), span, 1.0) / 2.0
    return q[0] + scale, scale


def quantiles_at(stats: Stats, levels: tuple[float, ...]) -> np.ndarray:
    """The fitted quantiles at ``levels`` (one array of feature shape each), or a clear error."""
    fitted = stats.quantile_levels or ()
    missing = [v for v in levels if v not in fitted]
    if missing or stats.quantiles is None:
        have = ", ".join(map(str, fitted)) if fitted else "none"
        raise UsageError(
            f"this method needs the quantiles at {', '.join(map(str, levels))}; the statistics "
            f"have {have}: fit with --quantiles {','.join(map(str, levels))}"
        )
    table = stats.quantiles
    return np.stack([table[fitted.index(v)] for v in levels])


def transform_block(
    x: np.ndarray,
    layout: AxisLayout,
    params: TransformParams,
    inverse: bool,
    dtype: np.dtype,
    out: np.ndarray | None = None,
    first_row: int = 0,
    names: list[str] | None = None,
) -> np.ndarray:
    """Transform one block of samples; shared by every engine so their outputs are identical.
    ``out``: where to write (shaped like ``x``), else a new array. ``first_row`` and ``names``
    (of the flat features) name the place of a value that overflows the output dtype."""
    shape = (x.shape[0], *layout.sample_shape)
    block = x.reshape(shape)
    target = None if out is None else out.reshape(shape)
    try:
        y = (
            params.inverse(block, dtype, target)
            if inverse
            else params.forward(block, dtype, target)
        )
    except CastOverflow as exc:
        raise _located(exc, layout, first_row, names) from None
    return y.reshape(x.shape)


def _located(
    exc: CastOverflow, layout: AxisLayout, first_row: int, names: list[str] | None
) -> DataError:
    index = exc.index or (0,)
    kept = [index[a] for a in layout.kept]
    flat = int(np.ravel_multi_index(kept, layout.feature_shape)) if kept else 0
    feature = names[flat] if names else layout.feature_label(flat)
    row = first_row + index[0]
    return DataError(f"feature {feature}, row {row}: {exc.message}", feature=feature, row=row)
