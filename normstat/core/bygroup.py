"""``apply --by COL``: each row standardized with its own group's statistics (per-speaker
CMVN, as Kaldi's ``apply-cmvn`` with a per-speaker table).

Every group's (shift, scale) is worked out once, vectorised over the groups, by the very
method of :func:`~normstat.core.transform.transform_params` (so the near-constant and zero-range
rules are the pooled transform's), and a row takes its group's by an index gather: no loop per
row or per group. A row whose key was not fitted is an error naming the key, unless the pooled
statistics are asked for as the fallback (said on stderr by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normstat.core.stats import Stats
from normstat.core.transform import TransformParams, _cast, transform_params
from normstat.errors import DataError


@dataclass(frozen=True)
class GroupParams:
    """The maps of every fitted group, ``(groups + 1, features)``: row ``groups`` (the last)
    is the pooled map, taken by rows whose key was not fitted when ``fallback``."""

    column: str
    keys: np.ndarray
    shift: np.ndarray
    scale: np.ndarray
    bounds: tuple[float, float] | None
    clip: bool
    fallback: bool

    @classmethod
    def create(
        cls, stats: Stats, pooled: TransformParams, column: str, fallback: bool, **how: object
    ) -> GroupParams:
        """``how``: the arguments of :func:`transform_params` that made ``pooled``."""
        per = transform_params(stats.by_group(), **how)  # type: ignore[arg-type]
        n = stats.moments.n_features
        shift = np.vstack([per.shift.reshape(-1, n), pooled.shift.reshape(1, n)])
        scale = np.vstack([per.scale.reshape(-1, n), pooled.scale.reshape(1, n)])
        keys = stats.group_keys
        assert keys is not None
        return cls(column, keys, shift, scale, pooled.bounds, pooled.clip, fallback)

    def rows(
        self, keys: np.ndarray | tuple[np.ndarray, np.ndarray], first_row: int = 0
    ) -> np.ndarray:
        """Each row's index into :attr:`shift` / :attr:`scale`, from its keys: an array, or
        ``(codes, values)`` (a dictionary encoding)."""
        if isinstance(keys, tuple):
            codes, values = keys
        else:
            values, codes = np.unique(np.asarray(keys), return_inverse=True)
            codes = codes.reshape(-1)
        values = _comparable(np.asarray(values), self.keys, self.column)
        n = len(self.keys)
        at = np.minimum(np.searchsorted(self.keys, values), max(n - 1, 0))
        known = self.keys[at] == values if n else np.zeros(len(values), bool)
        if not known.all() and not self.fallback:
            missing = values[int(np.argmin(known))]
            where = np.flatnonzero(~known[codes])
            row = first_row + int(where[0]) if len(where) else first_row
            raise DataError(
                f"group {missing.item()!r} of the --by column {self.column!r} (row {row}) was "
                "not seen when fitting, so it has no statistics (--by-fallback pooled uses the "
                "pooled statistics for such rows)",
                feature=self.column,
                row=row,
            )
        return np.where(known, at, n)[codes]

    def unseen(self, values: np.ndarray) -> np.ndarray:
        """The keys among ``values`` that were not fitted."""
        values = _comparable(np.asarray(values), self.keys, self.column)
        return np.setdiff1d(values, self.keys)

    def forward_column(
        self, x: np.ndarray, j: int, rows: np.ndarray, inverse: bool, dtype: np.dtype
    ) -> np.ndarray:
        """Feature ``j`` of the rows (a 1-D column) through each row's own map."""
        return self.forward(x.reshape(-1, 1), rows, inverse, dtype, j).reshape(-1)

    def forward(
        self,
        x: np.ndarray,
        rows: np.ndarray,
        inverse: bool,
        dtype: np.dtype,
        feature: int | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """``(n, F)`` rows (or one feature's ``(n, 1)``) through each row's map, in float64,
        cast into ``out`` (a new array unless given); bounds and overflow as the pooled
        transform (``CastOverflow`` with the position of the value)."""
        cols = slice(None) if feature is None else slice(feature, feature + 1)
        shift, scale = self.shift[rows, cols], self.scale[rows, cols]
        with np.errstate(over="ignore", invalid="ignore"):
            if inverse:
                y = np.asarray(x, np.float64) * scale + shift
            else:
                y = (np.asarray(x, np.float64) - shift) / scale
                if self.bounds is not None:
                    np.clip(y, *self.bounds, out=y)
        if out is None:
            out = np.empty(y.shape, dtype)
        limit = float(np.finfo(out.dtype).max) if out.dtype.itemsize < 8 else None
        _cast(y, out, limit, self.clip, 0)
        return out


def _comparable(values: np.ndarray, keys: np.ndarray, column: str) -> np.ndarray:
    """Keys of the data in the fitted keys' type: integers as int64, strings as str."""
    if values.dtype.kind in "iub" and (keys.dtype.kind in "iu" or not len(keys)):
        return values.astype(np.int64)
    if values.dtype.kind in "OSU" and (keys.dtype.kind == "U" or not len(keys)):
        return values.astype(str)
    raise DataError(
        f"the --by column {column!r} holds {values.dtype} keys; the statistics were fitted by "
        f"keys of {keys.dtype}",
        feature=column,
    )
