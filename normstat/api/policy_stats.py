"""The statistics files robot-learning frameworks read: LeRobot's ``meta/stats.json`` and
openpi's ``norm_stats.json``, one entry per feature group.

Layouts matched (docs/frameworks.md says which versions): LeRobot ``compute_stats.py`` /
``aggregate_stats`` give each feature ``mean``, ``std``, ``min``, ``max`` as arrays of the
feature's shape (``(1,)`` for a scalar, ``(C, 1, 1)`` on the 0-1 scale for an image), ``count``
as ``[rows]``, and the quantiles ``q01``, ``q10``, ``q50``, ``q90``, ``q99`` (named
``f"q{int(q * 100):02d}"``); openpi ``shared/normalize.py`` reads
``{"norm_stats": {key: {"mean", "std", "q01", "q99"}}}``.

``std`` is the population standard deviation as both compute it (numpy's default), 0 where a
feature is constant by normstat's near-constant rule (rounding never leaves a tiny std there):
both frameworks add their own epsilon when they divide.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from normstat.core.stats import Stats
from normstat.errors import UsageError

IMAGE_SCALE = {"uint8": 255.0, "uint16": 65535.0}
"""Divisors to LeRobot's 0-1 scale for images of these pixel types (none for floats)."""


def lerobot_stats(stats: Stats) -> dict[str, Any]:
    """LeRobot's ``stats.json``: per group ``mean``, ``std``, ``min``, ``max``, ``count`` and the
    fitted quantiles whose level is a whole percent (``q01``...)."""
    if (stats.source or {}).get("samples") == "images":
        return {_image_key(stats): _image_entry(stats)}
    out = {}
    for name, shape, cols in _groups(stats, "lerobot"):
        out[name] = _entry(stats, shape or (1,), cols)
    return out


def openpi_norm_stats(stats: Stats) -> dict[str, Any]:
    """openpi's ``norm_stats.json``: per group ``mean``, ``std``, and ``q01`` / ``q99`` when the
    fit kept those quantiles (openpi's quantile normalization needs them; z-scoring does not)."""
    out = {}
    for name, shape, cols in _groups(stats, "openpi"):
        entry = _entry(stats, shape or (1,), cols)
        out[name] = {k: entry[k] for k in ("mean", "std", "q01", "q99") if k in entry}
    return {"norm_stats": out}


def _groups(stats: Stats, to: str) -> list[tuple[str, tuple[int, ...], slice]]:
    groups = stats.feature_group_slices()
    if not groups:
        raise UsageError(
            f"to: {to} takes statistics per named column (a table fit) or of images; these have "
            f"feature shape {list(stats.feature_shape)} without names"
        )
    return groups


def _entry(stats: Stats, shape: tuple[int, ...], cols: slice) -> dict[str, Any]:
    def part(a: np.ndarray) -> list[Any]:
        return _plain(np.asarray(a, np.float64).reshape(-1)[cols].reshape(shape))

    return _stats_entry(stats, part, int(stats.count.reshape(-1)[cols].max(initial=0)))


def _stats_entry(stats: Stats, part: Any, count: int) -> dict[str, Any]:
    """mean, std (0 for constant features), min, max, count and ``q01``..., each array laid
    out by ``part``."""
    std = np.where(stats.constant, 0.0, stats.std)
    entry: dict[str, Any] = {
        "mean": part(stats.mean),
        "std": part(std),
        "min": part(stats.min),
        "max": part(stats.max),
        "count": [count],
    }
    entry.update(_quantiles(stats, part))
    return entry


def _quantiles(stats: Stats, part: Any) -> dict[str, Any]:
    """``q01``... for every fitted level that is a whole percent."""
    q = stats.quantiles
    if q is None or stats.quantile_levels is None:
        return {}
    out = {}
    for level, values in zip(stats.quantile_levels, q, strict=True):
        pct = level * 100
        if abs(pct - round(pct)) < 1e-9 and 0 < round(pct) < 100:
            out[f"q{round(pct):02d}"] = part(values)
    return out


def _image_key(stats: Stats) -> str:
    column = (stats.source or {}).get("column")
    return column if isinstance(column, str) else "observation.image"


def _image_entry(stats: Stats) -> dict[str, Any]:
    """Per channel, as LeRobot keeps image statistics: shape ``(C, 1, 1)`` on the 0-1 scale
    (integer pixels divided by their maximum unless ``fit --rescale`` already scaled them),
    ``count`` the number of images."""
    if stats.features is not None or len(stats.feature_shape) != 1:
        raise UsageError(
            "to: lerobot keeps image statistics per channel: fit images with the channel axis "
            f"kept (the default), not feature shape {list(stats.feature_shape)}"
        )
    source = stats.source or {}
    divisor = IMAGE_SCALE.get(str(source.get("dtype")), 1.0) if stats.rescale == 1.0 else 1.0
    channels = stats.feature_shape[0]

    def part(a: np.ndarray) -> list[Any]:
        return _plain((np.asarray(a, np.float64) / divisor).reshape(channels, 1, 1))

    return _stats_entry(stats, part, int(source.get("images") or 0))


def _plain(a: np.ndarray) -> list[Any]:
    """Nested lists, ``None`` (JSON null) where a statistic is undefined (an empty feature)."""
    obj = a.astype(object)
    obj[~np.isfinite(a)] = None
    return obj.tolist()
