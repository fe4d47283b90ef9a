"""Compare two sets of statistics of the same features (training A vs serving B): pure numpy.

The measures are read in A's units, because A's statistics are what the model was trained with
and what ``apply`` will use on B:

- ``mean_shift = (mean_b - mean_a) / scale_a`` is the mean of B after A's z-score. ``scale_a`` is
  :attr:`Stats.scale` (std, or 1 for a near-constant feature, as ``apply`` uses), so a feature that
  was constant in A and moved in B gets its raw shift instead of a division by ~0.
- ``std_ratio = std_b / std_a`` is the std of B after A's z-score: 1 means unchanged. It is 1 when
  both are near-constant and +inf when only A is (B varies where A never did).
- ``min_change = min_b - min_a`` and ``max_change = max_b - max_a``, in raw units: positive
  ``max_change`` or negative ``min_change`` means B leaves A's range.

Features empty on either side (count 0) have NaN measures and sort last.

With distribution summaries on both sides, a ``metric`` of :mod:`normstat.core.distances` (psi,
ks, wasserstein, js, hellinger) is added per feature; it then orders the features and is what a
threshold tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normstat.core.distances import distances
from normstat.core.stats import Stats
from normstat.errors import ArtifactError


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
    mean_shift: np.ndarray
    std_ratio: np.ndarray
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
    def tested(self) -> np.ndarray:
        """What a threshold tests: the metric if one was asked for, else ``|mean_shift|``."""
        return np.abs(self.mean_shift) if self.distance is None else self.distance

    def exceeding(self, threshold: float) -> np.ndarray:
        """Flat indices (worst first) of features whose tested measure is above ``threshold``."""
        tested = self.tested[self.order]
        return self.order[np.nan_to_num(tested, nan=0.0) > threshold]

    def records(self) -> list[dict[str, object]]:
        """One JSON-ready dict per feature, worst first; undefined (NaN, inf) values are None."""
        cols = {k: getattr(self, k) for k in RECORD_KEYS}
        if self.metric is not None and self.distance is not None:
            cols = {self.metric: self.distance, **cols}
        return [
            {"feature": self.names[i], **{k: _finite(v[i]) for k, v in cols.items()}}
            for i in self.order.tolist()
        ]


RECORD_KEYS = (
    "mean_shift",
    "std_ratio",
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


def _finite(v: np.floating) -> float | None:
    return float(v) if np.isfinite(v) else None


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
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = (flat["mean_b"] - flat["mean_a"]) / np.asarray(a.scale, np.float64).ravel()
        ratio = _std_ratio(flat["std_a"], flat["std_b"], a.constant.ravel(), b.constant.ravel())
    distance = None
    if metric is not None and a.sketch is not None and b.sketch is not None:
        distance = distances(a.sketch, b.sketch, metric)
    order = _worst_first(shift if distance is None else distance, ratio)
    return Drift(
        **flat,
        mean_shift=shift,
        std_ratio=ratio,
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


def _std_ratio(
    std_a: np.ndarray, std_b: np.ndarray, const_a: np.ndarray, const_b: np.ndarray
) -> np.ndarray:
    ratio = std_b / np.where(const_a, 1.0, std_a)
    ratio = np.where(const_a & const_b, 1.0, ratio)
    ratio = np.where(const_a & ~const_b, np.inf, ratio)
    return np.where(np.isfinite(std_a) & np.isfinite(std_b), ratio, np.nan)


def _worst_first(shift: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """By |shift| descending, then by how far the std ratio is from 1 (in log scale); NaN last."""
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.abs(np.log(ratio))
    primary = np.where(np.isnan(shift), -1.0, np.abs(shift))
    secondary = np.where(np.isnan(spread), -1.0, spread)
    return np.lexsort((-secondary, -primary)).astype(np.int64)
