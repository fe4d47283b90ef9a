"""The per-chunk step shared by every engine: validate, then compute moments.

A clean chunk (no NaN, no inf: the common case) takes the cache-blocked single-read kernel, which
notices non-finite values on the way; only then is the chunk searched for the value to blame, or
reduced by the NaN-skipping kernel.
"""

from __future__ import annotations

from normstat.core.blocked import finite_moments
from normstat.core.checks import NanPolicy, find_forbidden
from normstat.core.layout import AxisLayout
from normstat.core.moments import Moments, chunk_moments
from normstat.errors import DataError
from normstat.sources.base import Chunk


def chunk_task(
    chunk: Chunk, layout: AxisLayout, nan_policy: NanPolicy, features: list[str] | None = None
) -> Moments:
    rows = layout.to_rows(chunk.data)
    clean = finite_moments(rows)
    if clean is not None:
        return clean
    bad = find_forbidden(rows, nan_policy)
    if bad is not None:
        what, r, f = bad
        row = chunk.start + layout.sample_of(r)
        feature = features[f] if features else layout.feature_label(f)
        hint = " (use --nan skip to ignore NaN)" if what == "NaN" else ""
        raise DataError(
            f"{what} at row {row}, feature {feature}{hint}",
            path=chunk.path,
            dataset=chunk.dataset,
            feature=feature,
            row=row,
        )
    return chunk_moments(rows)
