"""Compare two sets of statistics of the same features (training A vs serving B): pure numpy.

The measures are read in A's units, because A's statistics are what the model was trained with
and what ``apply`` will use on B:

- ``mean_shift = (mean_b - mean_a) / std_a`` is the mean of B after A's z-score. Where A is
  constant (by the near-constant rule ``apply`` uses) it has no std to measure in: the shift is
  0 when B's mean equals A's value (by the same rule, applied to the two means) and +-inf when
  it does not, so a constant 0 that became a constant 1 fails any threshold.
- ``std_ratio = std_b / std_a`` is the std of B after A's z-score: 1 means unchanged. It is 1 when
  both are constant and +inf when only A is (B varies where A never did).
- ``min_change = min_b - min_a`` and ``max_change = max_b - max_a``, in raw units.
- ``missing_a``, ``missing_b``: the share of missing values (NaN, nulls) of each side,
  ``nan_count / (count + nan_count)``; ``missing_change = missing_b - missing_a``.
- ``changes``: what happened to the feature as a whole, per feature a tuple of
  :data:`CHANGES` (became all-missing, turned constant, ...).

Order, worst first: features with a change (in the order of :data:`CHANGES`), then by
``|mean_shift|``, by ``|missing_change|``, and by how far ``std_ratio`` is from 1.
``exceeding`` says which features fail a threshold (rules in ``docs/drift.md``).

Features empty on either side (count 0) have NaN measures and sort last.

With distribution summaries on both sides, a ``metric`` of :mod:`normstat.core.distances` (psi,
ks, wasserstein, js, hellinger) is added per feature; it then orders the features and is what a
threshold tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normstat.core.distances import distances
from normstat.core.stats import Stats, is_constant_feature
from normstat.errors import ArtifactError

CHANGES = (
    "became all-missing",  # values in A, none in B (every value missing, or no rows)
    "no longer all-missing",  # no value in A, values in B
    "turned constant",  # varied in A, constant in B
    "stopped being constant",  # constant in A, varies in B
    "constant value changed",  # constant in both, at different values
)


@dataclass(frozen=True)
class Drift:
    """Per-feature drift measures, flat in feature order, with ``order`` listing worst first."""

    mean_a: np.ndarray
    mean_b: np.ndarray
    std_a: np.ndarray
    std_b: np.ndarray
    min_a: np.ndarray
    min_b: np.ndarray
    max_a: np.ndarray
    max_b: np.ndarray
    missing_a: np.ndarray
    missing_b: np.ndarray
    mean_shift: np.ndarray
    std_ratio: np.ndarray
    changes: list[tuple[str, ...]]
    order: np.ndarray
    names: list[str]
    metric: str | None = None
    distance: np.ndarray | None = None  # the metric per feature, when one was asked for

    @property
    def min_change(self) -> np.ndarray:
        return self.min_b - self.min_a

    @property
    def max_change(self) -> np.ndarray:
        return self.max_b - self.max_a

    @property
    def missing_change(self) -> np.ndarray:
        return self.missing_b - self.missing_a

    def reasons(self, i: int, threshold: float, missing_threshold: float = 0.05) -> list[str]:
        """Why feature ``i`` fails the threshold (empty: it passes)."""
        out = list(self.changes[i])
        shift = self.tested[i]
        if not np.isnan(shift) and abs(shift) > threshold and not (np.isinf(shift) and out):
            out.append(f"{self.metric or '|mean_shift|'} > {threshold:g}")
        missing = self.missing_change[i]
        said = any("all-missing" in c for c in out)
        if not np.isnan(missing) and abs(missing) > missing_threshold and not said:
            out.append(f"missing rate changed by more than {missing_threshold:.0%}")
        return out

    def exceeding(self, threshold: float, missing_threshold: float = 0.05) -> np.ndarray:
        """Flat indices (worst first) of the features that fail: the tested measure (the metric,
        else ``|mean_shift|``) above ``threshold``,
        a missing rate that moved by more than ``missing_threshold``, or any change of
        :data:`CHANGES`."""
        shift = np.nan_to_num(np.abs(self.tested), nan=0.0) > threshold
        missing = np.nan_to_num(np.abs(self.missing_change), nan=0.0) > missing_threshold
        changed = np.array([bool(c) for c in self.changes], bool)
        bad = shift | missing | changed
        return self.order[bad[self.order]]

    @property
    def tested(self) -> np.ndarray:
        """What a threshold tests: the metric if one was asked for, else ``|mean_shift|``."""
        return np.abs(self.mean_shift) if self.distance is None else self.distance

    def records(self) -> list[dict[str, object]]:
        """One JSON-ready dict per feature, worst first; undefined (NaN) values are None,
        infinite ones the strings "inf" / "-inf" (so a sign is kept in JSON)."""
        cols = {k: getattr(self, k) for k in RECORD_KEYS}
        if self.metric is not None and self.distance is not None:
            cols = {self.metric: self.distance, **cols}
        return [
            {
                "feature": self.names[i],
                "changes": list(self.changes[i]),
                **{k: _finite(v[i]) for k, v in cols.items()},
            }
            for i in self.order.tolist()
        ]


RECORD_KEYS = (
    "mean_shift",
    "std_ratio",
    "missing_change",
    "missing_a",
    "missing_b",
    "min_change",
    "max_change",
    "mean_a",
    "mean_b",
    "std_a",
    "std_b",
    "min_a",
    "min_b",
    "max_a",
    "max_b",
)


def _finite(v: np.floating) -> float | str | None:
    if np.isnan(v):
        return None
    return float(v) if np.isfinite(v) else ("inf" if v > 0 else "-inf")


def check_comparable(a: Stats, b: Stats, name_a: str = "A", name_b: str = "B") -> None:
    """Raise unless A and B describe the same features (shape, axis, column names)."""
    pairs = (
        ("feature shape", list(a.feature_shape), list(b.feature_shape)),
        ("axis", _opt_list(a.axis), _opt_list(b.axis)),
        ("features", _opt_list(a.features), _opt_list(b.features)),
    )
    for what, va, vb in pairs:
        if va != vb:
            raise ArtifactError(f"{what} {vb} disagrees with {va} of {name_a}", path=name_b)


def _opt_list(v: object) -> list[object] | None:
    return None if v is None else list(v)  # type: ignore[call-overload]


def compare(a: Stats, b: Stats, names: list[str], metric: str | None = None) -> Drift:
    """Drift of B relative to A, with ``names`` of the flat features; the caller has checked
    that A and B are comparable (and, for a ``metric``, that both have a summary)."""
    flat = {key: np.asarray(getattr(s, attr), np.float64).ravel() for key, s, attr in _fields(a, b)}
    count_a, count_b = a.count.ravel(), b.count.ravel()
    const_a, const_b = a.constant.ravel(), b.constant.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = _mean_shift(flat, a.scale.ravel(), const_a, count_a, count_b)
        ratio = _std_ratio(flat["std_a"], flat["std_b"], const_a, const_b)
    missing_a, missing_b = _missing(a), _missing(b)
    changes = _changes(count_a, count_b, const_a, const_b, shift)
    distance = None
    if metric is not None and a.sketch is not None and b.sketch is not None:
        distance = distances(a.sketch, b.sketch, metric)
    tested = shift if distance is None else distance
    order = _worst_first(tested, ratio, missing_b - missing_a, changes)
    return Drift(
        **flat,
        missing_a=missing_a,
        missing_b=missing_b,
        mean_shift=shift,
        std_ratio=ratio,
        changes=changes,
        order=order,
        names=list(names),
        metric=metric,
        distance=distance,
    )


def _fields(a: Stats, b: Stats) -> list[tuple[str, Stats, str]]:
    return [
        (f"{attr}_{side}", s, attr)
        for attr in ("mean", "std", "min", "max")
        for side, s in (("a", a), ("b", b))
    ]


def _missing(s: Stats) -> np.ndarray:
    """The share of missing values per feature; NaN where there were no values at all."""
    count, nans = s.count.ravel().astype(np.float64), s.nan_count.ravel().astype(np.float64)
    total = count + nans
    return np.divide(nans, total, out=np.full(total.shape, np.nan), where=total > 0)


def _mean_shift(
    flat: dict[str, np.ndarray],
    scale_a: np.ndarray,
    const_a: np.ndarray,
    count_a: np.ndarray,
    count_b: np.ndarray,
) -> np.ndarray:
    """``(mean_b - mean_a) / std_a``; where A is constant, 0 or +-inf: the two means pooled
    (the variance between them) are constant by the near-constant rule, or they are not."""
    delta = flat["mean_b"] - flat["mean_a"]
    shift = delta / scale_a
    n = (count_a + count_b).astype(np.float64)
    frac = np.divide(count_a * count_b, n * n, out=np.zeros(n.shape), where=n > 0)
    pooled_mean = flat["mean_a"] + delta * np.divide(count_b, n, out=np.zeros(n.shape), where=n > 0)
    same = is_constant_feature(frac * delta * delta, pooled_mean, n)
    moved = np.where(same, 0.0, np.sign(delta) * np.inf)
    return np.where(const_a & np.isfinite(delta), moved, shift)


def _changes(
    count_a: np.ndarray,
    count_b: np.ndarray,
    const_a: np.ndarray,
    const_b: np.ndarray,
    shift: np.ndarray,
) -> list[tuple[str, ...]]:
    has_a, has_b = count_a > 0, count_b > 0
    masks = (
        has_a & ~has_b,
        ~has_a & has_b,
        has_a & has_b & ~const_a & const_b,
        has_a & has_b & const_a & ~const_b,
        has_a & has_b & const_a & const_b & np.isinf(shift),
    )
    table = np.stack(masks, axis=1) if masks[0].size else np.zeros((0, len(CHANGES)), bool)
    return [tuple(c for c, on in zip(CHANGES, row, strict=True) if on) for row in table.tolist()]


def _std_ratio(
    std_a: np.ndarray, std_b: np.ndarray, const_a: np.ndarray, const_b: np.ndarray
) -> np.ndarray:
    ratio = std_b / np.where(const_a, 1.0, std_a)
    ratio = np.where(const_a & const_b, 1.0, ratio)
    ratio = np.where(const_a & ~const_b, np.inf, ratio)
    return np.where(np.isfinite(std_a) & np.isfinite(std_b), ratio, np.nan)


def _worst_first(
    shift: np.ndarray, ratio: np.ndarray, missing: np.ndarray, changes: list[tuple[str, ...]]
) -> np.ndarray:
    """Changed features first (in the order of :data:`CHANGES`: all-missing is the worst), then
    by |shift|, |missing change|, |log std ratio|; NaN last."""
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.abs(np.log(ratio))
    changed = np.array(
        [max((len(CHANGES) - CHANGES.index(c) for c in cs), default=0) for cs in changes],
        np.float64,
    )

    def key(v: np.ndarray) -> np.ndarray:
        return -np.where(np.isnan(v), -1.0, np.abs(v))

    return np.lexsort((key(spread), key(missing), key(shift), -changed)).astype(np.int64)
