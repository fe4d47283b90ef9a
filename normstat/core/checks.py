"""Locate the first value a policy forbids, so errors can name the feature and the row."""

from __future__ import annotations

from typing import Literal

import numpy as np

NanPolicy = Literal["skip", "error"]


def find_forbidden(rows: np.ndarray, nan_policy: NanPolicy) -> tuple[str, int, int] | None:
    """Return ``(what, row, feature)`` of the first inf (always forbidden) or NaN (forbidden
    under ``nan_policy='error'``) in a ``(rows, features)`` chunk, or ``None``.

    The cheap test first: a finite column sum proves there is neither NaN nor inf.
    """
    if rows.dtype.kind not in "fc" or rows.size == 0:
        return None
    if np.isfinite(rows.sum(axis=0, dtype=np.float64)).all():
        return None
    bad = np.isinf(rows)
    if nan_policy == "error":
        bad |= np.isnan(rows)
    if not bad.any():
        return None
    r, f = np.unravel_index(int(np.argmax(bad)), bad.shape)
    what = "NaN" if np.isnan(rows[r, f]) else "infinite value"
    return what, int(r), int(f)
