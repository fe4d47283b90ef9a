"""Axis semantics, normalised once into fixed tuples (as Keras ``Normalization`` does).

``axis`` names the axes that KEEP their own statistics; every other axis is reduced. Axis 0 is the
sample (streaming) axis and can never be kept. Every chunk is viewed as a 2-D ``(rows, features)``
matrix so the numeric kernels only ever see one shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from normstat.errors import UsageError

AxisSpec = int | Sequence[int] | None
"""What a user may pass: one axis, several, or ``None`` to reduce everything to scalars."""


def parse_axis(values: Sequence[str]) -> AxisSpec:
    """Turn repeated ``--axis`` strings into an :data:`AxisSpec` (``none`` means reduce all)."""
    if not values:
        return -1
    if len(values) == 1 and values[0].strip().lower() in ("none", "null"):
        return None
    out = []
    for v in values:
        try:
            out.append(int(v))
        except ValueError:
            raise UsageError(f"--axis must be an integer or 'none', received {v!r}") from None
    return out


@dataclass(frozen=True)
class AxisLayout:
    """How an array of a given shape maps onto ``(rows, features)``.

    ``sample_shape`` is the shape of one sample (the array's shape without axis 0). One-dimensional
    data (a vector of samples) is treated as one feature, as Keras does.
    """

    axis: tuple[int, ...] | None  # as the user gave it, recorded in the artifact
    sample_shape: tuple[int, ...]
    kept: tuple[int, ...]  # normalised, positive axes of the full array, sorted
    reduced: tuple[int, ...]  # positive axes other than 0 that are reduced

    @classmethod
    def create(cls, axis: AxisSpec, shape: Sequence[int]) -> AxisLayout:
        shape = tuple(int(s) for s in shape)
        if len(shape) == 0:
            raise UsageError("a 0-dimensional array has no sample axis; expected at least 1 axis")
        if len(shape) == 1:
            shape = (shape[0], 1)  # a vector of scalar samples: one feature
        ndim = len(shape)
        given = None if axis is None else ((axis,) if isinstance(axis, int) else tuple(axis))
        kept = () if given is None else _normalise(given, ndim)
        reduced = tuple(a for a in range(1, ndim) if a not in kept)
        return cls(given, shape[1:], kept, reduced)

    @property
    def ndim(self) -> int:
        return len(self.sample_shape) + 1

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.sample_shape[a - 1] for a in self.kept)

    @property
    def n_features(self) -> int:
        return math.prod(self.feature_shape)

    @property
    def inner_size(self) -> int:
        """Matrix rows contributed by one sample (the product of the reduced axes)."""
        return math.prod(self.sample_shape[a - 1] for a in self.reduced)

    @property
    def broadcast_shape(self) -> tuple[int, ...]:
        """Shape that broadcasts per-feature values against a chunk of the full array."""
        return tuple(self.sample_shape[a - 1] if a in self.kept else 1 for a in range(1, self.ndim))

    def to_rows(self, chunk: np.ndarray) -> np.ndarray:
        """View (or, for non-trailing kept axes, copy) a chunk as ``(rows, features)``."""
        chunk = chunk.reshape((chunk.shape[0], *self.sample_shape))
        tail = tuple(range(self.ndim - len(self.kept), self.ndim))
        if self.kept != tail:
            chunk = np.moveaxis(chunk, self.kept, tail)
        return chunk.reshape(-1, self.n_features)

    def sample_of(self, matrix_row: int) -> int:
        """The sample (axis-0 index within the chunk) a row of :meth:`to_rows` came from."""
        return matrix_row // max(self.inner_size, 1)

    def feature_label(self, flat: int) -> str:
        if not self.feature_shape:
            return "(all)"
        idx = np.unravel_index(flat, self.feature_shape)
        return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def _normalise(axes: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise UsageError(f"axis {a} is out of range for data with {ndim} dimensions")
        p = a % ndim
        if p == 0:
            raise UsageError(
                f"axis {a} is the sample axis (0), which is streamed and reduced; "
                "keep feature axes only (e.g. --axis -1, --axis 1, or --axis none)"
            )
        if p in out:
            raise UsageError(f"axis {a} is given twice (received {list(axes)})")
        out.append(p)
    return tuple(sorted(out))


def feature_names(features: Sequence[str] | None, feature_shape: Sequence[int]) -> list[str]:
    """A name per feature: a table's column names, else array indices (``[0, 1]``)."""
    if features is not None:
        return list(features)
    if not feature_shape:
        return ["(all)"]
    return ["[" + ", ".join(map(str, i)) + "]" for i in np.ndindex(*feature_shape)]


def feature_names_at(
    features: Sequence[str] | None, feature_shape: Sequence[int], idx: np.ndarray, start: int = 0
) -> list[str]:
    """:func:`feature_names` of the flat indices ``idx`` only (a wide artifact has millions);
    ``features`` are the names from feature ``start`` on."""
    idx = np.asarray(idx, np.int64)
    if features is not None:
        return [features[i - start] for i in idx.tolist()]
    if not feature_shape:
        return ["(all)"] * idx.size
    where = np.unravel_index(idx, tuple(feature_shape))
    return [
        "[" + ", ".join(map(str, i)) + "]" for i in zip(*(w.tolist() for w in where), strict=True)
    ]
